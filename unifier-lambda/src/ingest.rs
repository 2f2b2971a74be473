//! The ingest function: takes a batch the edge forwarded (see `braid_core::forward`), checks its
//! signature, validates every event again with the core, and writes one lake object per batch
//! (plus one `failed/` object when some events failed), answering 2xx only once the store has
//! confirmed every write.
//!
//! Objects are named by their content (`braid_core::lake::batch_id`), so a batch that is
//! retried, or replayed within the signature's freshness window, rewrites its own objects: no
//! duplicate events.

use braid_core::forward::{ForwardBatch, verify};
use braid_core::lake::{self, Area};
use braid_core::validate::validate_event;
use braid_core::{FailedEvent, Limits};
use serde_json::json;
use time::OffsetDateTime;

use crate::object::gzip;
use crate::store::ObjectStore;

/// What ingest is configured with.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// The secret shared with the edge, which signs what it forwards.
    pub secret: Vec<u8>,
    /// The event limits (the edge applies the same).
    pub limits: Limits,
}

/// A forwarded request, as any HTTP front end hands it over.
#[derive(Clone, Copy, Debug)]
pub struct ForwardRequest<'a> {
    /// The `X-Braid-Timestamp` header.
    pub timestamp: Option<&'a str>,
    /// The `X-Braid-Signature` header.
    pub signature: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// The HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// A JSON body.
    pub body: String,
    /// Seconds for a `Retry-After` header (503).
    pub retry_after: Option<u32>,
}

impl Reply {
    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply {
            status,
            body: json!({"ok": false, "error": code, "message": message}).to_string(),
            retry_after: None,
        }
    }
}

/// Handles one forwarded batch.
pub async fn ingest<S: ObjectStore>(
    store: &S,
    settings: &IngestSettings,
    request: ForwardRequest<'_>,
    now: OffsetDateTime,
) -> Reply {
    if let Err(error) = verify(
        &settings.secret,
        request.timestamp,
        request.signature,
        request.body,
        now,
    ) {
        return Reply::error(401, "unauthorized", &error.to_string());
    }
    let batch = match ForwardBatch::parse(request.body) {
        Ok(batch) => batch,
        Err(error) => return Reply::error(400, "bad_body", &error.to_string()),
    };
    if !lake::is_valid_workspace(&batch.workspace) {
        return Reply::error(
            400,
            "bad_workspace",
            "workspace must be 1 to 64 characters of a-z, 0-9, _ and -",
        );
    }
    let limit = settings.limits.max_batch_events;
    if batch.events.len() + batch.failed.len() > limit {
        return Reply::error(
            413,
            "too_many_events",
            &format!(
                "the batch holds {} events, over the limit of {limit}",
                batch.events.len() + batch.failed.len()
            ),
        );
    }
    let (accepted, failed, counts) = build_objects(&batch, &settings.limits);
    let mut keys = Vec::new();
    for (area, content) in [(Area::Raw, accepted), (Area::Failed, failed)] {
        if content.is_empty() {
            continue;
        }
        let key = lake::object_key(
            area,
            &batch.workspace,
            batch.received_at,
            &lake::batch_id(&content),
        );
        if let Err(error) = store.put(&key, gzip(&content)).await {
            tracing::warn!(%error, "ingest: the store refused a lake object");
            let mut reply = Reply::error(
                if error.retriable { 503 } else { 500 },
                "store_failed",
                "the events could not be stored; send them again",
            );
            reply.retry_after = error.retriable.then_some(1);
            return reply;
        }
        keys.push(key);
    }
    Reply {
        status: 200,
        body: json!({"ok": true, "accepted": counts.0, "failed": counts.1, "objects": keys})
            .to_string(),
        retry_after: None,
    }
}

/// The NDJSON content of the batch's `raw/` and `failed/` objects, and their event counts.
/// Events are validated again: the lake must stay valid whatever an edge sends.
fn build_objects(batch: &ForwardBatch<'_>, limits: &Limits) -> (Vec<u8>, Vec<u8>, (usize, usize)) {
    let mut accepted = Vec::with_capacity(batch.events.iter().map(|e| e.get().len() + 1).sum());
    let mut failed = Vec::new();
    let mut counts = (0, 0);
    for (index, raw) in batch.events.iter().enumerate() {
        match validate_event(index, raw.get(), None, limits) {
            Ok(event) => {
                event.write_json(&mut accepted);
                accepted.push(b'\n');
                counts.0 += 1;
            }
            Err(error) => {
                let record = FailedEvent {
                    error,
                    payload: raw.get().to_owned(),
                };
                record.write_json(&batch.workspace, batch.received_at, &mut failed);
                counts.1 += 1;
            }
        }
    }
    for record in &batch.failed {
        failed.extend_from_slice(record.get().as_bytes());
        failed.push(b'\n');
        counts.1 += 1;
    }
    (accepted, failed, counts)
}

#[cfg(test)]
mod tests {
    use braid_core::forward::sign;
    use serde_json::Value;

    use super::*;
    use crate::object::{gunzip, lines};
    use crate::store::LocalStore;

    const SECRET: &[u8] = b"edge-secret";

    fn now() -> OffsetDateTime {
        braid_core::timestamp::parse("2024-05-01T10:00:30Z").unwrap()
    }

    fn settings() -> IngestSettings {
        IngestSettings {
            secret: SECRET.to_vec(),
            limits: Limits::default(),
        }
    }

    fn body(events: &str, failed: &str) -> Vec<u8> {
        let received = braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap();
        ForwardBatch::write("shop", received, events.as_bytes(), failed.as_bytes())
    }

    async fn send(store: &LocalStore, body: &[u8]) -> Reply {
        let ts = now().unix_timestamp();
        let signature = sign(SECRET, ts, body);
        let ts = ts.to_string();
        let request = ForwardRequest {
            timestamp: Some(&ts),
            signature: Some(&signature),
            body,
        };
        ingest(store, &settings(), request, now()).await
    }

    async fn read(store: &LocalStore, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for object in store.list(prefix).await.unwrap() {
            let packed = store.get(&object.key).await.unwrap().unwrap();
            for line in lines(&gunzip(&packed, 1 << 20).unwrap()) {
                out.push(serde_json::from_slice(line).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn writes_one_object_per_batch_and_retries_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let events = "{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"messageId\":\"m1\"}\n\
                      {\"type\":\"track\",\"userId\":\"u\"}\n";
        let failed = r#"{"code":"malformed_json","payload":"{"}"#;
        let body = body(events, failed);
        let reply = send(&store, &body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(answer["accepted"], 1);
        assert_eq!(answer["failed"], 2);
        assert_eq!(send(&store, &body).await.status, 200);
        let raw = store
            .list("raw/workspace=shop/date=2024-05-01/hour=10/")
            .await
            .unwrap();
        assert_eq!(raw.len(), 1, "a retry rewrites the same object");
        let stored = read(&store, "raw/").await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["messageId"], "m1");
        let failures = read(&store, "failed/").await;
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0]["code"], "missing_field");
        assert_eq!(failures[0]["field"], "event");
        assert_eq!(failures[1]["code"], "malformed_json");
    }

    #[tokio::test]
    async fn refuses_unsigned_stale_and_malformed_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let good = body("{\"type\":\"page\",\"userId\":\"u\"}\n", "");
        let request = |ts: Option<&'static str>, signature: Option<&'static str>| ForwardRequest {
            timestamp: ts,
            signature,
            body: &good,
        };
        let reply = ingest(&store, &settings(), request(None, None), now()).await;
        assert_eq!(reply.status, 401);
        assert!(reply.body.contains("x-braid-timestamp"), "{}", reply.body);
        let old = now().unix_timestamp() - 301;
        let signature = sign(SECRET, old, &good);
        let old = old.to_string();
        let stale = ForwardRequest {
            timestamp: Some(&old),
            signature: Some(&signature),
            body: &good,
        };
        let reply = ingest(&store, &settings(), stale, now()).await;
        assert_eq!(reply.status, 401);
        assert!(
            reply.body.contains("over the limit of 300 s"),
            "{}",
            reply.body
        );
        assert_eq!(send(&store, b"{\"events\":[]}").await.status, 400);
        let bad_workspace = ForwardBatch::write("../x", now(), b"", b"");
        let reply = send(&store, &bad_workspace).await;
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("bad_workspace"));
        assert!(store.list("").await.unwrap().is_empty(), "nothing stored");
    }
}
