//! The S3 side of `braid-unifier` against a real S3-compatible server (`s3s-fs`, which checks
//! `SigV4` signatures), through the real `aws-sdk-s3` client with a custom endpoint and path-style
//! addressing: the store's operations, multipart uploads, and the ingest and unify handlers
//! writing to a bucket.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use aws_sdk_s3::Client;
use aws_sdk_s3::config::Credentials;
use braid_core::collect::forward::ForwardBatch;
use braid_tests::{FaultyProxy, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, ingest_forward};
use braid_unifier::lake::compact::{CompactSettings, compact_partition, live_objects};
use braid_unifier::lake::feed::{CountEvents, unify_objects};
use braid_unifier::lake::object::{gunzip, gzip, lines};
use braid_unifier::lake::store::ObjectStore;
use braid_unifier::lake::store::{MULTIPART_THRESHOLD, S3Store, s3_client};
use time::OffsetDateTime;

const BUCKET: &str = "braid-lake";

fn client(server: &S3Server, secret: &str) -> Client {
    let credentials = Credentials::new(S3_ACCESS_KEY, secret, None, None, "test");
    s3_client("us-east-1", credentials, Some(&server.endpoint))
}

async fn bucket(server: &S3Server) -> S3Store {
    let client = client(server, S3_SECRET_KEY);
    client.create_bucket().bucket(BUCKET).send().await.unwrap();
    S3Store::new(client, BUCKET)
}

#[tokio::test]
async fn the_store_puts_gets_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = bucket(&server).await;
    store.put("raw/w=a/1.gz", b"one".to_vec()).await.unwrap();
    store.put("raw/w=a/2.gz", b"two!".to_vec()).await.unwrap();
    store.put("failed/w=a/1.gz", b"f".to_vec()).await.unwrap();
    store.put("raw/w=a/1.gz", b"uno".to_vec()).await.unwrap();
    assert_eq!(
        store.get("raw/w=a/1.gz").await.unwrap().as_deref(),
        Some(&b"uno"[..])
    );
    assert_eq!(store.get("raw/w=a/none.gz").await.unwrap(), None);
    let listed = store.list("raw/").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["raw/w=a/1.gz", "raw/w=a/2.gz"]);
    assert_eq!(listed[1].size, 4);
    store.delete("raw/w=a/1.gz").await.unwrap();
    store.delete("raw/w=a/1.gz").await.unwrap();
    assert_eq!(store.list("raw/").await.unwrap().len(), 1);
    let error = store.put("../escape", b"x".to_vec()).await.unwrap_err();
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn large_objects_go_up_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = bucket(&server).await;
    let size = MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17;
    let body: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
    store.put("compacted/big.gz", body.clone()).await.unwrap();
    let back = store.get("compacted/big.gz").await.unwrap().unwrap();
    assert_eq!(back.len(), size);
    assert!(back == body, "the parts came back in order");
    assert_eq!(store.list("compacted/").await.unwrap()[0].size, size as u64);
}

#[tokio::test]
async fn a_wrong_signature_is_refused_for_good_and_a_dead_server_is_worth_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    bucket(&server).await;
    let impostor = S3Store::new(client(&server, "not-the-secret"), BUCKET);
    let error = impostor.put("raw/x.gz", b"x".to_vec()).await.unwrap_err();
    assert!(!error.is_retriable(), "{error}");
    assert!(error.to_string().contains("Signature"), "{error}");
    let addr = server.addr;
    drop(server);
    let credentials = Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
    let gone = S3Store::new(
        s3_client("us-east-1", credentials, Some(&format!("http://{addr}"))),
        BUCKET,
    );
    let error = gone.put("raw/x.gz", b"x".to_vec()).await.unwrap_err();
    assert!(error.is_retriable(), "{error}");
}

#[tokio::test]
async fn ingest_and_unify_over_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = bucket(&server).await;
    let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let events = concat!(
        r#"{"type":"track","event":"A","userId":"u","messageId":"s3-1"}"#,
        "\n",
        r#"{"type":"page","anonymousId":"a","messageId":"s3-2"}"#,
        "\n"
    );
    let body = ForwardBatch::write("shop", received, events.as_bytes(), b"");
    let now = OffsetDateTime::now_utc();
    for _ in 0..2 {
        let reply = ingest_forward(&store, "s", &body, now).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let objects = store.list("raw/workspace=shop/").await.unwrap();
    assert_eq!(objects.len(), 1, "a retried batch rewrites its object");
    let key = objects[0].key.clone();
    assert!(key.starts_with("raw/workspace=shop/date=2024-05-01/hour=10/"));
    let content = gunzip(&store.get(&key).await.unwrap().unwrap(), 1 << 20).unwrap();
    assert_eq!(lines(&content).count(), 2);

    let keys = vec![key.clone()];
    let first = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!((first.applied, first.events), (1, 2));
    let again = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 1));
    assert!(
        store
            .get(&format!("checkpoints/unify/{key}"))
            .await
            .unwrap()
            .is_some()
    );

    store
        .put(
            "raw/workspace=shop/date=2024-05-01/hour=11/bad.ndjson.gz",
            gzip(b"[1]\n"),
        )
        .await
        .unwrap();
    let bad = vec!["raw/workspace=shop/date=2024-05-01/hour=11/bad.ndjson.gz".to_owned()];
    let summary = unify_objects(&store, &CountEvents, &bad, now)
        .await
        .unwrap();
    assert_eq!((summary.quarantined_lines, summary.applied), (1, 1));
    assert_eq!(store.list("dead-letter/unify/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn compaction_over_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = bucket(&server).await;
    let partition = "raw/workspace=shop/date=2024-05-01/hour=09";
    for i in 0..5 {
        let content = format!("{{\"messageId\":\"c-{i}\"}}\n");
        store
            .put(
                &format!("{partition}/b{i}.ndjson.gz"),
                gzip(content.as_bytes()),
            )
            .await
            .unwrap();
    }
    let summary = compact_partition(&store, &CompactSettings::default(), partition)
        .await
        .unwrap();
    assert_eq!((summary.merged, summary.written), (5, 1));
    let live = live_objects(&store, "raw/").await.unwrap();
    assert_eq!(live.len(), 1);
    let content = gunzip(&store.get(&live[0].key).await.unwrap().unwrap(), 1 << 20).unwrap();
    assert_eq!(lines(&content).count(), 5);
    assert_eq!(store.list(&format!("{partition}/")).await.unwrap().len(), 1);
}

/// S3 throttles (503 `SlowDown`) between ingest and the bucket: a passing fault is retried by the
/// client; a lasting one makes ingest answer 503 with Retry-After, the edge sends again, and the
/// bucket ends with each event exactly once.
#[tokio::test]
async fn throttling_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    bucket(&server).await;
    let proxy = FaultyProxy::start(server.addr);
    let credentials = Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test");
    let through_proxy = || {
        S3Store::new(
            s3_client("us-east-1", credentials.clone(), Some(&proxy.endpoint)),
            BUCKET,
        )
    };
    let send = |store: S3Store, body: Vec<u8>| async move {
        ingest_forward(&store, "s", &body, OffsetDateTime::now_utc()).await
    };
    let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let batch = |id: &str| {
        let event = format!(
            "{{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"messageId\":\"{id}\"}}\n"
        );
        ForwardBatch::write("shop", received, event.as_bytes(), b"")
    };

    // One throttled answer: the client's own retry gets through.
    proxy.fail_next(1);
    let reply = send(through_proxy(), batch("t-1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(proxy.faulted(), 1);

    // Throttled for longer than the client retries: 503 with Retry-After, nothing claimed.
    proxy.fail_next(1_000);
    let reply = send(through_proxy(), batch("t-2")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.retry_after, Some(1));
    // The edge sends the batch again once S3 recovers.
    proxy.fail_next(0);
    let reply = send(through_proxy(), batch("t-2")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let store = S3Store::new(client(&server, S3_SECRET_KEY), BUCKET);
    let mut ids = Vec::new();
    for object in store.list("raw/").await.unwrap() {
        let content = gunzip(&store.get(&object.key).await.unwrap().unwrap(), 1 << 20).unwrap();
        for line in lines(&content) {
            let event: serde_json::Value = serde_json::from_slice(line).unwrap();
            ids.push(event["messageId"].as_str().unwrap().to_owned());
        }
    }
    ids.sort();
    assert_eq!(ids, ["t-1", "t-2"]);
}

/// The ingest function over a bucket: a tracking plan blocks an event into `failed/`, the
/// bucket's unify step counts the record once, and `POST /v1/catalogue/replay` lands it under
/// the fixed plan, once.
#[tokio::test]
async fn a_blocked_event_is_replayed_over_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = bucket(&server).await;
    let api = |total: &str| {
        let mut config = braid_tests::forwarding_config("s", &["shop"]);
        config.workspaces[0].write_keys = vec!["wk_shop".to_owned()];
        let plan = serde_json::json!({"events": [{"type": "track", "name": "Order Completed",
            "mode": "block", "schema": {"type": "object", "properties": {"properties": {
                "type": "object", "properties": {"total": {"type": total}}}}}}]});
        config.catalogue.plan =
            Some(braid_core::catalogue::plan::TrackingPlan::parse(&plan.to_string()).unwrap());
        config.catalogue.api = Some(braid_core::catalogue::CatalogueApiConfig {
            token: "admin-token".to_owned(),
        });
        braid_edge::Api::new(config).unwrap()
    };
    let now = OffsetDateTime::now_utc();
    let strict = api("number");
    let body = br#"{"writeKey": "wk_shop", "batch": [
        {"type": "track", "event": "Order Completed", "userId": "u", "messageId": "s3-order",
         "properties": {"total": "12.50"}}]}"#;
    let collected = braid_unifier::ingest::handle(
        &strict,
        &store,
        &braid_tests::http_request(
            "POST",
            "/v1/batch",
            vec![("content-type", "application/json")],
            body,
        ),
        now,
    )
    .await;
    // Every event of the batch refused: 400 with the reason, and the event kept in failed/.
    let answer = String::from_utf8_lossy(&collected.body).into_owned();
    assert_eq!(collected.status, 400, "{answer}");
    assert!(answer.contains("plan_violation"), "{answer}");
    let failed = store.list("failed/workspace=shop/").await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(store.list("raw/").await.unwrap().is_empty());
    // The bucket notifies unify of the failed/ object as of raw/ ones: applied once.
    let keys = vec![failed[0].key.clone()];
    let first = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!((first.applied, first.events), (1, 0));
    let again = unify_objects(&store, &CountEvents, &keys, now)
        .await
        .unwrap();
    assert_eq!(again.already_applied, 1);

    let refused = replay(&strict, &store, now).await;
    assert_eq!(
        (
            refused["landed"].as_u64(),
            refused["stillRefused"]["plan_violation/type"].as_u64()
        ),
        (Some(0), Some(1)),
        "{refused}"
    );
    let fixed = api("string");
    let landed = replay(&fixed, &store, now).await;
    assert_eq!(landed["landed"], 1, "{landed}");
    let raw = store.list("raw/workspace=shop/").await.unwrap();
    assert_eq!(raw.len(), 1);
    let content = gunzip(&store.get(&raw[0].key).await.unwrap().unwrap(), 1 << 20).unwrap();
    let event: serde_json::Value = serde_json::from_slice(lines(&content).next().unwrap()).unwrap();
    assert_eq!(event["messageId"], "s3-order");
    assert_eq!(event["properties"]["total"], "12.50");
    let twice = replay(&fixed, &store, now).await;
    assert_eq!(
        (twice["landed"].as_u64(), twice["landedBefore"].as_u64()),
        (Some(0), Some(1)),
        "{twice}"
    );
    assert_eq!(store.list("raw/").await.unwrap().len(), 1);
}

/// `POST /v1/catalogue/replay` through the ingest function's handler: the answer.
async fn replay(api: &braid_edge::Api, store: &S3Store, now: OffsetDateTime) -> serde_json::Value {
    let request = braid_tests::http_request(
        "POST",
        "/v1/catalogue/replay",
        vec![("authorization", "Bearer admin-token")],
        b"{}",
    );
    let response = braid_unifier::ingest::handle(api, store, &request, now).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice(&response.body).unwrap()
}
