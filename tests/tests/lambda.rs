//! The Lambda functions under a Lambda emulator (`cargo lambda watch`, the runtime API offline),
//! invoked with real AWS event payloads — a function URL request, an SQS-wrapped S3
//! notification, an `EventBridge` scheduled event — storing in a real S3-compatible server.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::let_underscore_must_use,
    clippy::too_many_lines,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::Credentials;
use braid_core::collect::forward::{ForwardBatch, sign};
use braid_tests::{
    S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, Server, free_addr, python, repo_root, request,
    run_client, wait_for_port,
};
use braid_unifier::lake::compact::live_objects;
use braid_unifier::lake::object::{gunzip, lines};
use braid_unifier::lake::store::ObjectStore;
use braid_unifier::lake::store::{S3Store, s3_client};
use braid_unifier::profiles::ProfileUnify;
use serde_json::{Value, json};
use time::OffsetDateTime;

const BUCKET: &str = "braid-lambda";
const SECRET: &str = "lambda-forward-secret";

/// The workspaces the functions take batches for: the tests' own, and the one of the `braid
/// serve` edge ([`Server`] configures `test`). Ingest refuses any other.
const WORKSPACES: &str = "[[workspaces]]\nname = \"shop\"\n\n[[workspaces]]\nname = \"test\"\n\n";

/// `cargo lambda watch` on a free port, with the functions' environment.
struct Emulator {
    child: Child,
    addr: SocketAddr,
}

impl Emulator {
    /// The functions read `BRAID_CONFIG`: the workspaces they take batches for, and `config`.
    fn start(s3: &S3Server, log: &std::path::Path, config: &str) -> Emulator {
        let bin = repo_root().join(".venv/bin/cargo-lambda");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)",
            bin.display()
        );
        let addr = free_addr();
        let port = addr.port();
        let env = [
            format!("BRAID_BUCKET={BUCKET}"),
            format!("BRAID_S3_ENDPOINT={}", s3.endpoint),
            format!("AWS_ACCESS_KEY_ID={S3_ACCESS_KEY}"),
            format!("AWS_SECRET_ACCESS_KEY={S3_SECRET_KEY}"),
            "AWS_REGION=us-east-1".to_owned(),
            format!("BRAID_FORWARD_SECRET={SECRET}"),
            format!("BRAID_CONFIG={WORKSPACES}{config}"),
        ];
        let mut command = Command::new(bin);
        command
            .current_dir(repo_root())
            .args(["lambda", "watch", "--ignore-changes", "--locked"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .args(["-p", "braid-unifier", "--features", "lambda"]);
        for pair in &env {
            command.args(["--env-var", pair]);
        }
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(addr, Duration::from_mins(2), "cargo lambda watch");
        Emulator { child, addr }
    }

    /// Invokes a function with an event, as Lambda's Invoke API does.
    fn invoke(&self, function: &str, event: &Value) -> Value {
        let path = format!("/2015-03-31/functions/{function}/invocations");
        let body = event.to_string();
        let reply = retry(|| request(self.addr, "POST", &path, &[], body.as_bytes()));
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("{function}: {}", reply.text()))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first invocation of a function builds and starts it: allow for that.
fn retry(send: impl Fn() -> std::io::Result<braid_tests::Response>) -> braid_tests::Response {
    let started = Instant::now();
    loop {
        match send() {
            Ok(reply) => return reply,
            Err(error) if started.elapsed() < Duration::from_mins(5) => {
                eprintln!("waiting for the function: {error}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => panic!("the function did not answer: {error}"),
        }
    }
}

fn forward(emulator: &Emulator, body: &[u8], secret: &str) -> braid_tests::Response {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let signature = sign(secret.as_bytes(), now, body);
    let now = now.to_string();
    retry(|| {
        request(
            emulator.addr,
            "POST",
            "/lambda-url/ingest/v1/forward",
            &[
                ("content-type", "application/json"),
                ("x-braid-timestamp", &now),
                ("x-braid-signature", &signature),
            ],
            body,
        )
    })
}

/// An S3 object-created notification for `keys`, delivered through SQS, as AWS sends it.
fn sqs_notification(keys: &[String]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|key| {
            let encoded = key.replace('=', "%3D");
            let s3_event = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2024-05-01T10:00:01.000Z", "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "2"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "unify",
                       "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "A"},
                                  "arn": format!("arn:aws:s3:::{BUCKET}")},
                       "object": {"key": encoded, "size": 100, "eTag": "x", "sequencer": "1"}}
            }]});
            json!({
                "messageId": "m", "receiptHandle": "r", "body": s3_event.to_string(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:unify",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({"Records": records})
}

/// The profile stores in the test bucket, as the unify function opens them.
fn bucket_profiles(
    store: &S3Store,
    s3: &S3Server,
    config: &str,
) -> ProfileUnify<S3Store, braid_unifier::profiles::kv::S3Home> {
    let config = braid_core::Config::parse(&format!("{WORKSPACES}{config}"))
        .unwrap()
        .check()
        .unwrap();
    let home = braid_unifier::profiles::kv::S3Home::new(
        BUCKET,
        "us-east-1",
        (S3_ACCESS_KEY, S3_SECRET_KEY, None),
        Some(&s3.endpoint),
        braid_unifier::profiles::kv::SlateOptions::default(),
    )
    .unwrap();
    ProfileUnify::new(
        store.clone(),
        home,
        config.unify.identity.clone(),
        config.unify.profiles.clone(),
        config.unify.store.clone(),
    )
    .with_segmentation(braid_unifier::profiles::Segmentation::of(&config))
}

/// An audience that the clock alone changes, for the unify function's schedule (as tables: the
/// emulator splits its environment variables at commas, so no inline table).
const NEW_SIGNUPS: &str = "[segment.audiences.new_signups.when]\ntrait = \"signed_up_at\"\nop = \"within_last_days\"\nvalue = 7\n";

#[test]
fn ingest_unify_and_compact_under_the_lambda_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let credentials = Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
    let client = s3_client("us-east-1", credentials, Some(&s3.endpoint));
    runtime
        .block_on(client.create_bucket().bucket(BUCKET).send())
        .unwrap();
    let store = S3Store::new(client, BUCKET);
    let emulator = Emulator::start(&s3, &dir.path().join("cargo-lambda.log"), NEW_SIGNUPS);

    // Two batches received two hours ago (a closed hour), through the function URL. The user
    // signed up 7 days before that less an hour: in "new sign-ups" when the events arrived,
    // out an hour later (an hour ago), which only the schedule's sweep can see.
    let received = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let signed_up = received - time::Duration::days(7) + time::Duration::hours(1);
    let mut expected = Vec::new();
    for batch in 0..2 {
        let mut events = String::new();
        for i in 0..3 {
            let id = format!("lambda-{batch}-{i}");
            // As the edge enriched it: the times are set.
            let at = braid_core::timestamp::format(received);
            let mut event = json!({"type": "track", "event": "E", "userId": "u", "messageId": id,
                                   "timestamp": at, "receivedAt": at});
            if batch == 0 && i == 0 {
                event["context"] = json!({"traits": {
                    "signed_up_at": braid_core::timestamp::format(signed_up)}});
            }
            events.push_str(&event.to_string());
            events.push('\n');
            expected.push(id);
        }
        let body = ForwardBatch::write("shop", received, events.as_bytes(), b"");
        let reply = forward(&emulator, &body, SECRET);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["accepted"], 3);
    }
    let refused = forward(&emulator, b"{}", "not-the-secret");
    assert_eq!(refused.status, 401, "{}", refused.text());

    let keys: Vec<String> = runtime
        .block_on(store.list("raw/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys.len(), 2);

    // S3 → SQS → unify, delivered twice: the second delivery does nothing.
    let notification = sqs_notification(&keys);
    let first = emulator.invoke("unify", &notification);
    assert_eq!(first["applied"], 2, "{first}");
    assert_eq!(first["events"], 6, "{first}");
    let again = emulator.invoke("unify", &notification);
    assert_eq!(again["already_applied"], 2, "{again}");
    // The same objects notified directly (S3 → Lambda, no queue): already applied.
    let direct = json!({"Records": notification["Records"].as_array().unwrap().iter()
        .flat_map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["Records"].as_array().unwrap().clone())
        .collect::<Vec<_>>()});
    let direct = emulator.invoke("unify", &direct);
    assert_eq!(direct["already_applied"], 2, "{direct}");
    let bad = emulator.invoke("unify", &json!({"detail": "not a notification"}));
    assert_eq!(bad["errorType"], "BadNotification", "{bad}");
    // The unify function's schedule fires the timer: out at its exact time, an hour ago. (Before
    // this test opens the store below: a second writer would fence the function's.)
    let swept = emulator.invoke("unify", &json!({"braid": "sweep"}));
    assert_eq!(swept["timers"], 1, "{swept}");

    // The profile is in the bucket's profile store, each event counted once.
    let user = braid_core::unify::Identifier::parse("user_id:u").unwrap();
    let profiles = bucket_profiles(&store, &s3, NEW_SIGNUPS);
    let profile = runtime
        .block_on(profiles.profile("shop", &user))
        .unwrap()
        .unwrap();
    assert_eq!(profile["eventCounts"]["E"], 6, "{profile}");
    assert_eq!(profile["audiences"], json!({}), "{profile}");
    let (events, _) = runtime
        .block_on(profiles.events("shop", &user, None, 100))
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 6);
    // In "new sign-ups" when the events arrived, out at the timer's time.
    let changes = runtime.block_on(profiles.changes("shop", 0, 10)).unwrap();
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["at"].as_str().unwrap()))
        .collect();
    let exit = braid_core::timestamp::format(signed_up + time::Duration::days(7));
    assert_eq!(
        kinds,
        [
            (
                "audience_entered",
                braid_core::timestamp::format(received).as_str()
            ),
            ("audience_exited", exit.as_str())
        ]
    );
    runtime.block_on(profiles.close()).unwrap();

    // The schedule: the closed hour becomes one object, every event once.
    let scheduled = json!({
        "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "1", "time": "2024-05-01T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:1:rule/braid-compact"], "detail": {}
    });
    let compacted = emulator.invoke("compact", &scheduled);
    assert_eq!(compacted["merged"], 2, "{compacted}");
    assert_eq!(compacted["written"], 1, "{compacted}");
    let live = runtime.block_on(live_objects(&store, "raw/")).unwrap();
    assert_eq!(live.len(), 1);
    let content = runtime.block_on(store.get(&live[0].key)).unwrap().unwrap();
    let mut ids: Vec<String> = lines(&gunzip(&content, 1 << 20).unwrap())
        .map(|line| {
            let event: Value = serde_json::from_slice(line).unwrap();
            event["messageId"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
}

/// The whole cloud path: a real Segment client → `braid serve` in edge mode (the collection
/// handlers, forwarding signed batches) → the ingest function under the emulator → S3 →
/// the compact function: the lake holds each event exactly once.
#[test]
fn a_segment_client_through_an_edge_to_lambda_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let credentials = Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
    let client = s3_client("us-east-1", credentials, Some(&s3.endpoint));
    runtime
        .block_on(client.create_bucket().bucket(BUCKET).send())
        .unwrap();
    let store = S3Store::new(client, BUCKET);
    // Compact the current hour (a grace period that ended two hours ago), without unify.
    let emulator = Emulator::start(
        &s3,
        &dir.path().join("cargo-lambda.log"),
        "[catalogue.compaction]\ngrace_minutes = -120\nrequire_unified = false\n",
    );
    let upstream = format!("http://{}/lambda-url/ingest/v1/forward", emulator.addr);
    let edge = Server::start_with(
        dir.path().join("edge-data"),
        dir.path().join("edge.log"),
        &["--upstream", &upstream, "--forward-secret", SECRET],
    );
    run_client(&python(), "segment_python.py", &edge, "cloud", false);
    run_client(&python(), "segment_python.py", &edge, "cloud2", true);

    let compacted = emulator.invoke("compact", &json!({"source": "aws.events"}));
    assert!(compacted["merged"].as_u64().unwrap() >= 2, "{compacted}");
    let live = runtime.block_on(live_objects(&store, "raw/")).unwrap();
    let mut events = Vec::new();
    for object in &live {
        let content = runtime.block_on(store.get(&object.key)).unwrap().unwrap();
        for line in lines(&gunzip(&content, 1 << 20).unwrap()) {
            events.push(serde_json::from_slice::<Value>(line).unwrap());
        }
    }
    assert_eq!(events.len(), 14, "7 events per client run, each once");
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 14);
    let order = events
        .iter()
        .find(|e| e["event"] == "Order Completed" && e["userId"] == "py-seg-cloud")
        .unwrap();
    assert_eq!(order["properties"]["revenue"], 42.5);
    assert!(
        order["context"]["ip"].is_string(),
        "enriched at the edge: {order}"
    );
    assert!(
        !edge.data.join("raw").exists(),
        "in edge mode nothing is written locally"
    );
}
