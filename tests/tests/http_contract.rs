//! The HTTP contract over a real socket: bad input gets the right status and a JSON body naming
//! the index, field and limit; the good events of a partly bad batch land; analytics.js's short
//! paths, text/plain bodies and CORS preflights work.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use braid_tests::{Server, read_lake, request};
use serde_json::{Value, json};

#[test]
fn bad_input_gets_clear_errors_and_good_events_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let response = server.post("/v1/batch", b"{not json");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["errors"][0]["code"], "malformed_json");

    let response = request(
        server.addr,
        "POST",
        "/v1/batch",
        &[],
        br#"{"writeKey":"nope","batch":[{"type":"track","event":"E","userId":"u"}]}"#,
    )
    .unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["errors"][0]["message"],
        "unknown write key \"nope\""
    );

    let events: Vec<Value> = (0..2_501)
        .map(|i| json!({"type": "track", "event": "E", "userId": format!("u{i}")}))
        .collect();
    let response = server.post("/v1/batch", json!({"batch": events}).to_string().as_bytes());
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["errors"][0]["limit"], 2_500);

    let huge = "x".repeat(600 * 1024);
    let response = server.post(
        "/v1/track",
        json!({"event": "E", "userId": "u", "properties": {"p": huge}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["errors"][0]["limit"], 512_000);

    let batch = json!({"batch": [
        {"type": "track", "event": "Kept", "userId": "good", "messageId": "keep-1"},
        {"type": "track", "userId": "bad"},
        {"type": "identify", "userId": "bad", "timestamp": "yesterday"},
        {"type": "page", "name": "Home"},
        {"type": "track", "event": "E", "userId": "bad", "messageId": "m".repeat(101)},
        {"type": "track", "event": "E", "userId": "bad", "properties": {"p": "x".repeat(33 * 1024)}},
        {"type": "track", "event": "E", "userId": ["bad"]},
    ]});
    let response = server.post("/v1/batch", batch.to_string().as_bytes());
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(
        (body["accepted"].as_u64(), body["failed"].as_u64()),
        (Some(1), Some(6))
    );
    let messages: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages[0], "event 1: track event requires \"event\"");
    assert_eq!(
        messages[1],
        "event 2: \"timestamp\" is not an RFC 3339 date: \"yesterday\""
    );
    assert_eq!(
        messages[2],
        "event 3: event requires \"userId\" or \"anonymousId\" (not blank, not a placeholder such as \"null\")"
    );
    assert!(
        messages[3].starts_with("event 4: \"messageId\" is 101 characters, over the limit of 100")
    );
    assert!(messages[4].starts_with("event 5: event is 33"));
    assert_eq!(
        messages[5],
        "event 6: \"userId\" must be a string or a number, not an array"
    );

    let raw = read_lake(&server.data, "raw");
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["messageId"], "keep-1");
    let failed = read_lake(&server.data, "failed");
    // The six bad events, the malformed body and the 2,501-event batch (their sender was known
    // by Basic auth); the 600 KB body was not read past the limit, so it is not kept.
    assert_eq!(failed.len(), 8, "{failed:#?}");
    assert!(
        failed
            .iter()
            .any(|f| f["code"] == "too_many_events" && f["limit"] == 2_500)
    );
    assert!(
        failed
            .iter()
            .any(|f| f["code"] == "malformed_json" && f["payload"] == "{not json")
    );
    assert!(
        failed
            .iter()
            .any(|f| f["index"] == 2 && f["field"] == "timestamp")
    );
}

#[test]
fn analytics_js_short_paths_text_plain_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let preflight = request(
        server.addr,
        "OPTIONS",
        "/v1/t",
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("authorization,content-type")
    );
    assert!(preflight.header("access-control-max-age").is_some());

    for (path, body) in [
        ("/v1/t", json!({"event": "Clicked", "anonymousId": "a1"})),
        ("/v1/i", json!({"userId": "u1", "traits": {"name": "Ada"}})),
        ("/v1/p", json!({"anonymousId": "a1", "name": "Home"})),
        ("/v1/s", json!({"anonymousId": "a1", "name": "Home"})),
        ("/v1/g", json!({"userId": "u1", "groupId": "g1"})),
        ("/v1/a", json!({"userId": "u1", "previousId": "a1"})),
        (
            "/v1/b",
            json!({"batch": [{"type": "track", "event": "Batched", "anonymousId": "a1"}]}),
        ),
    ] {
        let mut body = body;
        body["writeKey"] = json!(server.key);
        let response = request(
            server.addr,
            "POST",
            path,
            &[
                ("Origin", "https://shop.example"),
                ("Content-Type", "text/plain"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(response.status, 200, "{path}: {:?}", response.json());
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("https://shop.example")
        );
    }
    let kinds: Vec<String> = read_lake(&server.data, "raw")
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["track", "identify", "page", "screen", "group", "alias"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}

#[test]
fn graceful_shutdown_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let response = server.post("/v1/track", br#"{"event":"Before Stop","userId":"u"}"#);
    assert_eq!(response.status, 200);
    assert!(
        server.terminate(),
        "exit status after SIGTERM; log:\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("Stopped."));
    assert_eq!(read_lake(&server.data, "raw").len(), 1);
}

#[test]
fn metrics_count_received_accepted_failed_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let body =
        br#"{"batch":[{"type":"track","event":"E","userId":"u"},{"type":"track","userId":"u"}]}"#;
    assert_eq!(server.post("/v1/batch", body).status, 200);
    let metrics = String::from_utf8(
        request(server.addr, "GET", "/metrics", &[], b"")
            .unwrap()
            .body,
    )
    .unwrap();
    for line in [
        "braid_events_received_total 2",
        "braid_events_accepted_total 1",
        "braid_events_failed_total 1",
        &format!("braid_received_bytes_total {}", body.len()),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from\n{metrics}"
        );
    }
}
