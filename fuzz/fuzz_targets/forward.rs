//! The forward signature (edge → ingest): any headers and body are refused or accepted without
//! panicking, and a body signed with the secret is always accepted.
#![no_main]

use braid_core::collect::forward::{sign, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(timestamp), Some(signature), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (timestamp, signature) = (
        String::from_utf8_lossy(timestamp),
        String::from_utf8_lossy(signature),
    );
    let _ = verify(
        b"fuzz-secret",
        Some(&timestamp),
        Some(&signature),
        body,
        now,
    );
    let seconds = now.unix_timestamp();
    let good = sign(b"fuzz-secret", seconds, body);
    assert!(
        verify(
            b"fuzz-secret",
            Some(&seconds.to_string()),
            Some(&good),
            body,
            now
        )
        .is_ok()
    );
});
