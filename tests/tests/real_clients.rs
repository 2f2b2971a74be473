//! Wire compatibility: the real Segment and RudderStack client libraries, pointed at `braid
//! serve` by changing only the host, deliver every event type into the lake.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use std::path::Path;

use braid_tests::{Server, python, read_lake, run_client};
use serde_json::Value;

/// Checks the seven events one client script sends (see `tests/clients/*`).
fn check_delivered(server: &Server, user: &str, run: &str, library: &str) {
    let events = read_lake(&server.data, "raw");
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["userId"] == user || e["anonymousId"] == format!("anon-{run}"))
        .collect();
    let kinds = |kind: &str| mine.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(mine.len(), 7, "expected 7 events for {user}, got {mine:#?}");
    for kind in ["identify", "page", "screen", "group", "alias"] {
        assert_eq!(kinds(kind), 1, "{kind} for {user}");
    }
    assert_eq!(kinds("track"), 2);
    let find = |kind: &str| {
        *mine
            .iter()
            .find(|e| e["type"] == kind && e["userId"] == user)
            .unwrap()
    };
    assert_eq!(
        find("identify")["traits"]["email"],
        format!("{user}@example.com")
    );
    assert_eq!(find("identify")["traits"]["plan"], "pro");
    let order = find("track");
    assert_eq!(order["event"], "Order Completed");
    assert_eq!(order["properties"]["revenue"], 42.5);
    assert_eq!(find("page")["context"]["campaign"]["source"], "news");
    assert_eq!(find("group")["groupId"], format!("grp-{run}"));
    assert_eq!(find("alias")["previousId"], format!("prev-{run}"));
    for event in &mine {
        assert!(
            event["messageId"].as_str().is_some_and(|id| !id.is_empty()),
            "{event}"
        );
        assert!(
            event["receivedAt"].is_string() && event["timestamp"].is_string(),
            "{event}"
        );
        assert_eq!(event["context"]["library"]["name"], library, "{event}");
        assert_eq!(event["context"]["ip"], "127.0.0.0", "anonymised client IP");
        assert!(event.get("writeKey").is_none());
    }
    let failed = read_lake(&server.data, "failed");
    assert!(failed.is_empty(), "nothing should fail: {failed:#?}");
}

#[test]
fn real_client_segment_analytics_python() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    run_client(&python(), "segment_python.py", &server, "a", false);
    check_delivered(&server, "py-seg-a", "a", "analytics-python");
    run_client(&python(), "segment_python.py", &server, "gz", true);
    check_delivered(&server, "py-seg-gz", "gz", "analytics-python");
}

#[test]
fn real_client_rudder_sdk_python() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    run_client(&python(), "rudder_python.py", &server, "b", false);
    check_delivered(&server, "py-rud-b", "b", "analytics-python");
    run_client(&python(), "rudder_python.py", &server, "gz", true);
    check_delivered(&server, "py-rud-gz", "gz", "analytics-python");
}

#[test]
fn real_client_segment_analytics_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    run_client(Path::new("node"), "segment_node.mjs", &server, "c", false);
    check_delivered(&server, "node-seg-c", "c", "@segment/analytics-node");
}

#[test]
fn real_client_rudder_sdk_node_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    run_client(Path::new("node"), "rudder_node.mjs", &server, "d", false);
    check_delivered(&server, "node-rud-d", "d", "analytics-node");
}
