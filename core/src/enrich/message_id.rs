//! Deterministic message ids for events sent without one.

use sha2::{Digest, Sha256};

/// `braid-` and 32 hex digits of SHA-256 over the workspace and the event's JSON as received, so
/// that a client retrying the same request gets the same id and deduplication works.
pub(super) fn derive(workspace: &str, raw_event: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(workspace.as_bytes());
    hasher.update([0]);
    hasher.update(raw_event.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(38);
    id.push_str("braid-");
    for byte in digest.iter().take(16) {
        push_hex(&mut id, *byte);
    }
    id
}

pub(crate) fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for nibble in [byte >> 4, byte & 0x0f] {
        out.push(char::from(
            DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
        ));
    }
}
