//! Webhook destinations end to end: `braid serve` delivers the change log to a real receiver
//! that verifies every request with the Standard Webhooks reference library
//! (`tests/clients/webhook_receiver.py`), and Segment's `X-Signature` with Python's `hmac`. The
//! receiver fails for a while and recovers, and receives every change exactly once by id; a
//! receiver that answers 410 disables its destination; one that never answers does not slow the
//! others; after a `kill -9` during deliveries nothing is lost and no change arrives under
//! another id.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use braid_tests::{Server, python, request};
use serde_json::{Value, json};

const TOKEN: &str = "destinations-e2e-token";
const ADMIN: &str = "destinations-e2e-admin";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The `crm` destination also signs as Segment's webhooks do.
const SEGMENT_SECRET: &str = "segment-shared-secret";

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn receiver(record: &Path, fail_first: usize) -> Receiver {
    let script = braid_tests::repo_root().join("tests/clients/webhook_receiver.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(SECRET)
        .arg(record)
        .arg(fail_first.to_string())
        .arg(SEGMENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap();
    Receiver { child, port }
}

fn config(port: u16) -> String {
    format!(
        r#"
[activate.profile_api]
token = "{TOKEN}"

[catalogue.api]
token = "{ADMIN}"

[[unify.profiles.computed]]
name = "orders"
event = "Order Completed"
op = "count"

[segment.audiences.buyers]
when = {{performed = "Order Completed"}}

[segment.audiences.repeat]
when = {{performed = "Order Completed", at_least = 2}}

[[activate.destinations]]
key = "crm"
type = "webhook"
url = "http://127.0.0.1:{port}/ok"
secret = "{SECRET}"
segment_secret = "{SEGMENT_SECRET}"
traits = ["plan"]
retry_seconds = [1, 1, 1, 1, 1]
allow_addresses = ["127.0.0.1"]

[[activate.destinations]]
key = "gone"
type = "webhook"
url = "http://127.0.0.1:{port}/gone"
secret = "{SECRET}"
allow_addresses = ["127.0.0.1"]

[[activate.destinations]]
key = "stuck"
type = "webhook"
url = "http://127.0.0.1:{port}/slow"
secret = "{SECRET}"
timeout_seconds = 2
retry_seconds = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
allow_addresses = ["127.0.0.1"]

[[activate.destinations]]
key = "private"
type = "webhook"
url = "http://127.0.0.1:{port}/ok"
secret = "{SECRET}"
retry_seconds = []
"#
    )
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every change log entry's id, from the API.
fn change_ids(server: &Server) -> BTreeSet<String> {
    let auth = format!("Bearer {TOKEN}");
    let reply = request(
        server.addr,
        "GET",
        "/v1/audiences/changes?limit=1000",
        &[("authorization", auth.as_str())],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids the receiver took (answered 200 on /ok), with how many times each.
fn delivered(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for record in records(path) {
        if record["path"] == "/ok" && record["status"] == 200 {
            for id in record["ids"].as_array().unwrap() {
                *out.entry(id.as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    out
}

fn orders(server: &Server, users: std::ops::Range<usize>, round: usize) {
    let batch: Vec<Value> = users
        .map(|u| {
            json!({"type": "track", "event": "Order Completed", "userId": format!("user-{u}"),
                   "messageId": format!("order-{u}-{round}"),
                   "context": {"traits": {"plan": "pro"}}})
        })
        .collect();
    let reply = server.post("/v1/batch", json!({"batch": batch}).to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Waits until the receiver took every change the API lists (and at least `least`).
fn wait_delivered(server: &Server, record: &Path, least: usize) -> BTreeSet<String> {
    let started = Instant::now();
    loop {
        let changes = change_ids(server);
        let taken: BTreeSet<String> = delivered(record).into_keys().collect();
        if changes.len() >= least && changes.is_subset(&taken) {
            return changes;
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "{} changes, {} delivered; log:\n{}",
            changes.len(),
            taken.len(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The destinations' status, by key (the configuration is beside the data folder).
fn status(data: &Path) -> BTreeMap<String, Value> {
    braid_tests::destinations_status(data, &data.parent().unwrap().join("braid.toml"))
}

#[test]
fn changes_reach_a_verifying_receiver_exactly_once_through_failures_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.ndjson");
    let receiver = receiver(&record, 3);
    let config = dir.path().join("braid.toml");
    std::fs::write(&config, self::config(receiver.port)).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("braid.log");
    let start = || {
        Server::start_with(
            data.clone(),
            log.clone(),
            &["--config", config.to_str().unwrap()],
        )
    };
    let mut server = start();
    let started = Instant::now();
    orders(&server, 0..20, 1);
    // 20 profiles enter `buyers` and get `orders` = 1: 40 changes, the first three
    // deliveries answered 503 and retried a second later each.
    let first = wait_delivered(&server, &record, 40);
    let took = started.elapsed();
    let requests = records(&record);
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "every request verifies"
    );
    let ok: Vec<&Value> = requests.iter().filter(|r| r["path"] == "/ok").collect();
    assert!(
        ok.iter().all(|r| r["segment_verified"] == true),
        "every request to the destination with a segment_secret carries its X-Signature"
    );
    let failed: Vec<&Value> = ok.iter().copied().filter(|r| r["status"] == 503).collect();
    assert_eq!(failed.len(), 3);
    // Retried with the same id, and nothing after it went first (the log's order).
    let first_ok = ok.iter().position(|r| r["status"] == 200).unwrap();
    assert_eq!(first_ok, 3);
    for failure in &failed {
        assert_eq!(failure["webhook_id"], ok[first_ok]["webhook_id"]);
    }
    let counts = delivered(&record);
    assert!(
        counts.values().all(|n| *n == 1),
        "each exactly once: {counts:?}"
    );
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), first);
    // The stuck receiver held its destination for 2 s per attempt; the healthy one finished
    // on its own schedule (3 retries of 1 s and 40 requests) meanwhile.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Private addresses are refused without the allow-list: nothing reached the receiver.
    let mut states = status(&data);
    while states["private"]["state"]["dead_lettered"] != 40 {
        assert!(started.elapsed() < Duration::from_mins(1), "{states:?}");
        std::thread::sleep(Duration::from_millis(200));
        states = status(&data);
    }
    assert!(
        states["private"]["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1 is loopback"),
        "{states:?}"
    );
    // A replay of its dead letters, asked for on the command line, is taken up by the running
    // server, which tries again and stops at the first refusal, keeping them.
    let replay = braid_tests::braid(&[
        "destinations".as_ref(),
        "replay".as_ref(),
        "private".as_ref(),
        "--class".as_ref(),
        "retries_exhausted".as_ref(),
        "--wait".as_ref(),
        "20".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&replay.stdout);
    assert!(
        said.contains("delivered 0; kept as dead letters 1; stopped: ")
            && said.contains("127.0.0.1 is loopback"),
        "{said}"
    );
    let states = status(&data);
    assert_eq!(states["private"]["state"]["dead_lettered"], 40);
    assert_eq!(states["private"]["state"]["replayed"], 0);
    // The running server reports the same through its API (the catalogue's admin token) and
    // its metrics.
    let auth = format!("Bearer {ADMIN}");
    let answer = request(
        server.addr,
        "GET",
        "/v1/destinations",
        &[("authorization", auth.as_str())],
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let reported: BTreeMap<String, Value> = answer.json()["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["destination"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    assert_eq!(
        reported.keys().collect::<Vec<_>>(),
        ["crm", "gone", "private", "stuck"]
    );
    assert_eq!(reported["gone"]["status"], "disabled");
    assert_eq!(reported["private"]["state"]["dead_lettered"], 40);
    assert!(reported["crm"]["state"]["delivered"].as_u64().unwrap() >= 40);
    let metrics = request(server.addr, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    for line in [
        "braid_destination_disabled{destination=\"gone\",workspace=\"test\"} 1",
        "braid_destination_disabled{destination=\"crm\",workspace=\"test\"} 0",
        "braid_destination_dead_lettered_total{destination=\"private\",workspace=\"test\"} 40",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let gone: Vec<&Value> = requests.iter().filter(|r| r["path"] == "/gone").collect();
    assert_eq!(gone.len(), 1, "410 disables at once");
    assert_eq!(states["gone"]["status"], "disabled");
    assert_eq!(states["crm"]["status"], "delivering");
    assert_eq!(states["crm"]["state"]["failed_attempts"], 3);
    assert!(
        requests.iter().any(|r| r["path"] == "/slow"),
        "the stuck destination was tried"
    );
    assert_eq!(states["stuck"]["status"], "retrying");

    // A crash during deliveries: nothing is lost, nothing arrives under another id.
    orders(&server, 0..40, 2);
    std::thread::sleep(Duration::from_millis(150));
    server.kill_9();
    server = start();
    let all = wait_delivered(&server, &record, 40 + 20 + 40);
    let counts = delivered(&record);
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), all);
    // A message sent again after the crash has its id (batch = 1: the request's id is the
    // message's).
    for record in records(&record) {
        if record["path"] == "/ok" {
            let id = record["ids"][0].as_str().unwrap();
            assert_eq!(record["webhook_id"], format!("msg_{id}"));
        }
    }
    assert!(server.terminate(), "a clean stop");
    let states = status(&data);
    // Its count is of the messages taken: one sent again after the crash (taken before it,
    // not yet in the saved state) counts once.
    assert_eq!(
        states["crm"]["state"]["delivered"].as_u64().unwrap(),
        counts.len() as u64,
        "{states:?}"
    );
}
