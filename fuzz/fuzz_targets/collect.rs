//! A collection request, whole: the write key, the body (as sent, or gzip — the fuzzer's own
//! bytes or its bytes compressed), decoding, parsing, validation, enrichment. Beyond not
//! panicking: every line collection accepts is an event by the rule unify reads the lake with
//! (`Event::from_lake_line`) and a JSON object to serde_json, as many as it says.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use braid_core::Config;
use braid_core::collect::WorkspaceConfig;
use braid_core::event::lake_lines;
use braid_edge::{Api, Handled, HttpRequest};
use libfuzzer_sys::fuzz_target;

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let mut config = Config::default();
        config.workspaces.push(WorkspaceConfig {
            name: "fuzz".into(),
            write_keys: vec!["fuzz-key".into()],
            ..WorkspaceConfig::default()
        });
        Api::new(config).expect("the fuzz configuration checks")
    })
}

const PATHS: [&str; 4] = ["/v1/batch", "/v1/track", "/v1/identify", "/v1/page"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let gzipped;
    let (body, encoding) = match mode & 3 {
        // The fuzzer's bytes, declared gzip: the decoder meets junk and bombs.
        1 => (body, Some("gzip")),
        // Its bytes compressed: the parser behind the decoder.
        2 => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body).expect("a Vec takes every write");
            gzipped = encoder.finish().expect("a Vec takes every write");
            (gzipped.as_slice(), Some("gzip"))
        }
        _ => (body, None),
    };
    let mut headers = vec![
        ("authorization", "Basic ZnV6ei1rZXk6"),
        ("content-type", "application/json"),
    ];
    if let Some(encoding) = encoding {
        headers.push(("content-encoding", encoding));
    }
    let request = HttpRequest {
        method: "POST",
        path: PATHS[usize::from(mode >> 2) % PATHS.len()],
        query: None,
        headers,
        body,
        client_ip: None,
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    if let Handled::Store(write, _, _) = api().handle(&request, now) {
        let mut lines = 0;
        for line in lake_lines(&write.accepted) {
            lines += 1;
            assert!(
                line.event.is_ok(),
                "accepted but unify refuses it: {:?}",
                line.event.err()
            );
            let value: serde_json::Value =
                serde_json::from_slice(line.text).expect("accepted but not JSON to serde_json");
            assert!(value.is_object());
        }
        assert_eq!(lines, write.accepted_count);
    }
});
