//! An acknowledged event is never lost: kill -9 the server while clients are sending, restart
//! it, and every event that got a 2xx is in the lake, once, with no corrupt object — and the
//! profile store, crashed in the middle of unifying, counts every lake event exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_tests::{Server, basic_auth, read_lake, request};
use serde_json::json;

#[test]
fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("braid.log");
    let mut server = Server::start_with(data.clone(), log.clone(), &[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let auth = basic_auth(&server.key);
    let senders: Vec<_> = (0..6)
        .map(|sender| {
            let (acked, stop, auth) = (Arc::clone(&acked), Arc::clone(&stop), auth.clone());
            std::thread::spawn(move || {
                for batch in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ids: Vec<String> = (0..50).map(|i| format!("s{sender}-b{batch}-e{i}")).collect();
                    let events: Vec<_> =
                        ids.iter().map(|id| json!({"type": "track", "event": "E", "userId": "u", "messageId": id})).collect();
                    let body = json!({"batch": events}).to_string();
                    match request(addr, "POST", "/v1/batch", &[("Authorization", &auth)], body.as_bytes()) {
                        Ok(response) if response.status == 200 => acked.lock().unwrap().extend(ids),
                        Ok(_) | Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Let the senders get going, then crash the server under load.
    while acked.lock().unwrap().len() < 20_000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Restart on the same folder: leftovers of interrupted writes are cleared, the lake is whole.
    let server = Server::start_with(data.clone(), log, &["--profile-token", "t"]);
    let stored = read_lake(&server.data, "raw");
    let stored_ids: HashSet<&str> = stored
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(stored_ids.len(), stored.len(), "an event was written twice");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored_ids.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    // The lake areas only: the unify loop, already running, writes its own checkpoints
    // (through a temporary file each) beside them.
    let mut leftovers = Vec::new();
    for area in ["raw", "failed"] {
        if data.join(area).exists() {
            find_tmp(&data.join(area), &mut leftovers);
        }
    }
    assert!(
        leftovers.is_empty(),
        "interrupted writes left behind: {leftovers:?}"
    );
    // The unify step was cut off too: what it had not made durable is applied again, what it
    // had is not applied twice.
    braid_tests::wait_unified(&data);
    let profile = request(
        server.addr,
        "GET",
        "/v1/profiles/user_id:u",
        &[("Authorization", "Bearer t")],
        b"",
    )
    .unwrap()
    .json();
    assert_eq!(
        profile["eventCounts"]["E"].as_u64(),
        Some(stored.len() as u64),
        "every lake event counted once"
    );
}

fn find_tmp(folder: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            find_tmp(&path, out);
        } else if path.extension().is_some_and(|e| e == "tmp") {
            out.push(path);
        }
    }
}
