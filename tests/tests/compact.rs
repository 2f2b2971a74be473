//! `braid serve`'s unify loop and `braid compact` on the local lake: the same handlers as the
//! cloud's unify and compact functions, run against what a real `braid serve` wrote.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use braid_tests::{Server, braid_bin, read_lake};

#[test]
fn compacts_the_local_lake_keeping_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    for i in 0..4 {
        let body = format!(r#"{{"event":"E{i}","userId":"u","messageId":"c-{i}"}}"#);
        assert_eq!(server.post("/v1/track", body.as_bytes()).status, 200);
    }
    // The server's unify loop applies each new object once, leaving a checkpoint.
    let objects = |folder: &str| {
        let mut out = Vec::new();
        braid_tests::collect(&server.data.join(folder), &mut out);
        out.len()
    };
    let started = std::time::Instant::now();
    while objects("checkpoints/unify/raw") < objects("raw") {
        assert!(started.elapsed().as_secs() < 10, "unify did not catch up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.terminate());
    let before = read_lake(&server.data, "raw").len();
    assert_eq!(before, 4);
    let files = |server: &Server| {
        let mut out = Vec::new();
        braid_tests::collect(&server.data.join("raw"), &mut out);
        out
    };
    assert!(files(&server).len() > 1);
    // A grace period that ended two hours ago makes the current hour closed.
    let output = std::process::Command::new(braid_bin())
        .args(["compact", "--data"])
        .arg(&server.data)
        .arg("--grace-minutes=-120")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let after = files(&server);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].to_string_lossy().contains("compacted-"));
    let mut ids: Vec<String> = read_lake(&server.data, "raw")
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["c-0", "c-1", "c-2", "c-3"]);
}
