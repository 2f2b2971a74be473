//! Wire compatibility: the real Segment and RudderStack client libraries, pointed at `braid
//! serve` by changing only the host, deliver every event type into the lake.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    reason = "test code"
)]

use std::path::Path;

use braid_tests::{Server, check_client_events, python, run_client};

fn check_delivered(server: &Server, user: &str, run: &str, library: &str) {
    check_client_events(&server.data, user, run, library);
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
