//! `POST /v1/forward` on a real `braid serve`: the ingest handler of the Lambda function, over
//! the data folder, taking batches an edge signed (`docs/forward.md`).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use braid_core::collect::forward::{ForwardBatch, sign};
use braid_tests::{Server, read_lake, request};
use time::OffsetDateTime;

const SECRET: &str = "forward-secret-for-tests";

/// The workspace [`Server`] configures.
const WORKSPACE: &str = "test";

fn signed(server: &Server, body: &[u8], secret: &str, at: i64) -> braid_tests::Response {
    let signature = sign(secret.as_bytes(), at, body);
    let at = at.to_string();
    request(
        server.addr,
        "POST",
        "/v1/forward",
        &[
            ("content-type", "application/json"),
            ("x-braid-timestamp", &at),
            ("x-braid-signature", &signature),
        ],
        body,
    )
    .unwrap()
}

fn batch() -> Vec<u8> {
    let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let events = concat!(
        r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"f-1","context":{"location":{"country":"FR"}}}"#,
        "\n",
        r#"{"type":"identify","anonymousId":"a1","messageId":"f-2","traits":{"email":"x@example.com"}}"#,
        "\n",
        r#"{"type":"track","userId":"u1","messageId":"f-3"}"#,
        "\n"
    );
    ForwardBatch::write(WORKSPACE, received, events.as_bytes(), b"")
}

#[test]
fn signed_batches_land_once_and_the_rest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--forward-secret", SECRET],
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let body = batch();

    let reply = signed(&server, &body, SECRET, now);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["accepted"], 2);
    assert_eq!(reply.json()["failed"], 1);
    // The edge retries (its first answer was lost): the same objects, no duplicate events.
    assert_eq!(signed(&server, &body, SECRET, now + 1).status, 200);

    let raw = read_lake(&server.data, "raw");
    let mut ids: Vec<&str> = raw
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["f-1", "f-2"]);
    assert_eq!(raw[0]["context"]["location"]["country"], "FR");
    let failed = read_lake(&server.data, "failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["field"], "event");
    let lake = server
        .data
        .join("raw/workspace=test/date=2024-05-01/hour=10");
    assert_eq!(std::fs::read_dir(lake).unwrap().count(), 1);

    let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let elsewhere = ForwardBatch::write(
        "elsewhere",
        received,
        br#"{"type":"track","event":"E","userId":"u1"}"#,
        b"",
    );
    let refused = [
        (
            signed(&server, &body, "wrong-secret", now),
            401,
            "unauthorized",
        ),
        (
            signed(&server, &body, SECRET, now - 301),
            401,
            "unauthorized",
        ),
        (signed(&server, b"{}", SECRET, now), 400, "bad_body"),
        (
            signed(&server, &elsewhere, SECRET, now),
            400,
            "unknown_workspace",
        ),
        (
            request(server.addr, "POST", "/v1/forward", &[], &body).unwrap(),
            401,
            "unauthorized",
        ),
    ];
    for (i, (reply, status, code)) in refused.iter().enumerate() {
        assert_eq!(reply.status, *status, "case {i}: {}", reply.text());
        assert_eq!(reply.json()["errors"][0]["code"], *code, "case {i}");
    }
    // A stale request with a wrong signature is refused for the signature: the clock is told
    // only to who holds the secret.
    let stale_forgery = signed(&server, &body, "wrong-secret", now - 301);
    assert!(
        stale_forgery.text().contains("does not match"),
        "{}",
        stale_forgery.text()
    );
    assert_eq!(
        read_lake(&server.data, "raw").len(),
        2,
        "refused batches stored nothing"
    );
}

#[test]
fn without_a_secret_forwarding_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let reply = signed(&server, &batch(), SECRET, now);
    assert_eq!(reply.status, 404, "{}", reply.text());
}

/// Edge mode with the upstream down: the client gets 503 with Retry-After (so it keeps the
/// events), and nothing is written locally.
#[test]
fn an_edge_whose_upstream_is_down_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let upstream = format!("http://{}/v1/forward", braid_tests::free_addr());
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--upstream", &upstream, "--forward-secret", SECRET],
    );
    let reply = server.post(
        "/v1/track",
        br#"{"event":"Kept by the client","userId":"u"}"#,
    );
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
    assert!(read_lake(&server.data, "raw").is_empty());
}

/// A forwarded batch reaches the profiles at once, as collection does: the unify loop applies
/// what every write path commits.
#[test]
fn forwarded_batches_reach_the_profiles_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--forward-secret", SECRET, "--profile-token", "token"],
    );
    // Enriched, as an edge forwards events.
    let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
    let event = r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"f-1","timestamp":"2024-05-01T09:59:59.000Z","receivedAt":"2024-05-01T10:00:00.000Z"}"#;
    let body = ForwardBatch::write(WORKSPACE, received, event.as_bytes(), b"");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(signed(&server, &body, SECRET, now).status, 200);
    braid_tests::wait_unified(&server.data);
    let profile = request(
        server.addr,
        "GET",
        "/v1/profiles/user_id:u1?workspace=test",
        &[("authorization", "Bearer token")],
        b"",
    )
    .unwrap();
    assert_eq!(profile.status, 200, "{}", profile.text());
    assert_eq!(profile.json()["eventCounts"]["Order Completed"], 1);
}
