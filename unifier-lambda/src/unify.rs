//! The unify entry point: new `raw/` lake objects in (from S3 object-created notifications,
//! possibly wrapped in SQS, or from `braid serve`), their events handed to a [`Unify`] step.
//!
//! Each object is applied once: after its events are applied, a checkpoint object
//! (`checkpoints/unify/<key>`) is written, and an object with a checkpoint is skipped. A
//! redelivered notification is therefore a no-op, and a batch that failed half-way is retried
//! from the first object without a checkpoint. An object that cannot be read (not gzip, not
//! NDJSON) is recorded under `dead-letter/unify/<key>` with the reason — the object itself stays
//! in the lake — and does not block the rest.
//!
//! Identity resolution is a [`Unify`] implementation (`crate::profiles::ProfileUnify`), whose
//! writes [`Unify::commit`] makes durable before the objects' checkpoints are written;
//! [`CountEvents`] only counts.

use std::future::Future;

use braid_core::lake::OBJECT_SUFFIX;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::compact::is_compacted;
use crate::object::{gunzip, lines};
use crate::store::{ObjectStore, StoreError, is_valid_key};

/// Where checkpoints live.
pub const CHECKPOINT_PREFIX: &str = "checkpoints/unify/";

/// Where unreadable objects are recorded.
pub const DEAD_LETTER_PREFIX: &str = "dead-letter/unify/";

/// The most an object may decompress to.
const MAX_OBJECT_BYTES: usize = 1 << 30;

/// A failure of a handler, with a stable `error_type` for Lambda's diagnostics.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct HandlerError {
    /// A stable name for the kind of failure (`StoreUnavailable`, `BadNotification`, ...).
    pub error_type: &'static str,
    /// What happened.
    pub message: String,
    /// Whether the invocation should be retried.
    pub retriable: bool,
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> HandlerError {
        HandlerError {
            error_type: if error.retriable {
                "StoreUnavailable"
            } else {
                "StoreRefused"
            },
            message: error.to_string(),
            retriable: error.retriable,
        }
    }
}

/// What is done with the events of one lake object.
pub trait Unify: Send + Sync {
    /// Applies the NDJSON `events` of the object `key`, giving how many events it applied. It
    /// is called at least once per object (again when a later step of the same invocation
    /// fails), so it must be idempotent: events carry a `messageId` for that.
    fn apply(
        &self,
        key: &str,
        events: &[u8],
    ) -> impl Future<Output = Result<usize, HandlerError>> + Send;

    /// Makes what every `apply` so far did durable; the objects are checkpointed (counted as
    /// applied) only after it returns `Ok`.
    fn commit(&self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }
}

/// A step that only counts the events (`braid compact` before compaction, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountEvents;

impl Unify for CountEvents {
    async fn apply(&self, _key: &str, events: &[u8]) -> Result<usize, HandlerError> {
        Ok(lines(events).count())
    }
}

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnifySummary {
    /// Objects applied now.
    pub applied: usize,
    /// Objects skipped because a checkpoint says they were applied before.
    pub already_applied: usize,
    /// Keys that are not `raw/` lake objects, or objects that no longer exist.
    pub ignored: usize,
    /// Objects recorded in the dead-letter area.
    pub dead_lettered: usize,
    /// Events applied now.
    pub events: usize,
}

/// Applies the lake objects `keys` that have not been applied before.
///
/// # Errors
///
/// A retriable [`HandlerError`] when the store or the unify step fails; objects applied before
/// the failure keep their checkpoints.
pub async fn unify_objects<S: ObjectStore, U: Unify>(
    store: &S,
    unify: &U,
    keys: &[String],
    now: OffsetDateTime,
) -> Result<UnifySummary, HandlerError> {
    let mut summary = UnifySummary::default();
    let mut applied = Vec::new();
    let mut failure = None;
    for key in keys {
        // Compacted objects hold events unify has seen in the objects they replace.
        let is_lake_object = key.starts_with("raw/") && key.ends_with(OBJECT_SUFFIX);
        if !is_lake_object || !is_valid_key(key) || is_compacted(key) {
            summary.ignored += 1;
            continue;
        }
        let checkpoint = format!("{CHECKPOINT_PREFIX}{key}");
        let again = applied.iter().any(|(done, _)| *done == checkpoint);
        if again || store.get(&checkpoint).await?.is_some() {
            summary.already_applied += 1;
            continue;
        }
        let Some(packed) = store.get(key).await? else {
            tracing::warn!(key, "unify: notified of an object that no longer exists");
            summary.ignored += 1;
            continue;
        };
        let content = match gunzip(&packed, MAX_OBJECT_BYTES) {
            Ok(content) => content,
            Err(error) => {
                dead_letter(store, key, &error.to_string(), now).await?;
                summary.dead_lettered += 1;
                continue;
            }
        };
        if let Some(line) = lines(&content).position(|line| !is_json_object(line)) {
            let reason = format!("line {} is not a JSON object", line + 1);
            dead_letter(store, key, &reason, now).await?;
            summary.dead_lettered += 1;
            continue;
        }
        match unify.apply(key, &content).await {
            Ok(events) => applied.push((checkpoint, events)),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // What was applied becomes durable, then counts as applied; a failure before this point
    // leaves the objects without checkpoints, to be applied again (a no-op for what was).
    if !applied.is_empty() {
        unify.commit().await?;
    }
    for (checkpoint, events) in applied {
        let record = json!({"events": events, "appliedAt": braid_core::timestamp::format(now)});
        store
            .put(&checkpoint, record.to_string().into_bytes())
            .await?;
        summary.applied += 1;
        summary.events += events;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(summary)
}

fn is_json_object(line: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(line), Ok(Value::Object(_)))
}

async fn dead_letter<S: ObjectStore>(
    store: &S,
    key: &str,
    reason: &str,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    tracing::warn!(key, reason, "unify: object sent to the dead-letter area");
    let record = json!({
        "key": key,
        "reason": reason,
        "at": braid_core::timestamp::format(now),
    });
    let dead = format!("{DEAD_LETTER_PREFIX}{key}.json");
    store.put(&dead, record.to_string().into_bytes()).await?;
    Ok(())
}

/// The object keys named by a notification: an S3 event (`Records[].s3.object.key`), or an
/// SQS event whose messages' bodies are S3 events (S3 → SQS), or a test event (`s3:TestEvent`,
/// no records). Keys arrive URL-encoded and are decoded here.
///
/// # Errors
///
/// A `BadNotification` [`HandlerError`] (not retriable) when the payload is neither.
pub fn keys_from_notification(payload: &Value) -> Result<Vec<String>, HandlerError> {
    let bad = |message: String| HandlerError {
        error_type: "BadNotification",
        message,
        retriable: false,
    };
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the event has no \"Records\" array".to_owned()))?;
    let mut keys = Vec::new();
    for record in records {
        if let Some(encoded) = record.pointer("/s3/object/key").and_then(Value::as_str) {
            keys.push(
                url_decode(encoded).ok_or_else(|| bad(format!("undecodable key {encoded:?}")))?,
            );
        } else if let Some(body) = record.get("body").and_then(Value::as_str) {
            let inner: Value = serde_json::from_str(body)
                .map_err(|e| bad(format!("an SQS message body is not JSON: {e}")))?;
            keys.extend(keys_from_notification(&inner)?);
        } else {
            return Err(bad("a record is neither an S3 nor an SQS record".to_owned()));
        }
    }
    Ok(keys)
}

/// Decodes a key as S3 notifications encode it (`+` for space, `%XX` escapes).
fn url_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = encoded.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::object::gzip;
    use crate::store::LocalStore;

    fn now() -> OffsetDateTime {
        braid_core::timestamp::parse("2024-05-01T11:00:00Z").unwrap()
    }

    const KEY: &str = "raw/workspace=shop/date=2024-05-01/hour=10/abc.ndjson.gz";

    #[derive(Default)]
    struct Recorder(AtomicUsize);

    impl Unify for Recorder {
        async fn apply(&self, _key: &str, events: &[u8]) -> Result<usize, HandlerError> {
            let n = lines(events).count();
            self.0.fetch_add(n, Ordering::SeqCst);
            Ok(n)
        }
    }

    #[tokio::test]
    async fn applies_each_object_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .put(KEY, gzip(b"{\"messageId\":\"a\"}\n{\"messageId\":\"b\"}\n"))
            .await
            .unwrap();
        let recorder = Recorder::default();
        let keys = vec![KEY.to_owned(), "failed/x.ndjson.gz".to_owned()];
        let first = unify_objects(&store, &recorder, &keys, now())
            .await
            .unwrap();
        assert_eq!(
            first,
            UnifySummary {
                applied: 1,
                ignored: 1,
                events: 2,
                ..UnifySummary::default()
            }
        );
        let again = unify_objects(&store, &recorder, &keys, now())
            .await
            .unwrap();
        assert_eq!(again.already_applied, 1);
        assert_eq!(again.applied, 0);
        assert_eq!(
            recorder.0.load(Ordering::SeqCst),
            2,
            "redelivery applied nothing"
        );
    }

    #[tokio::test]
    async fn unreadable_objects_go_to_the_dead_letter_area() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let other = "raw/workspace=shop/date=2024-05-01/hour=10/def.ndjson.gz";
        store.put(KEY, b"not gzip".to_vec()).await.unwrap();
        store.put(other, gzip(b"{\"ok\":1}\n[1]\n")).await.unwrap();
        let keys = vec![KEY.to_owned(), other.to_owned()];
        let summary = unify_objects(&store, &CountEvents, &keys, now())
            .await
            .unwrap();
        assert_eq!(summary.dead_lettered, 2);
        let dead = store.list(DEAD_LETTER_PREFIX).await.unwrap();
        assert_eq!(dead.len(), 2);
        let record = store.get(&dead[0].key).await.unwrap().unwrap();
        let record: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["key"], KEY);
        assert!(store.get(KEY).await.unwrap().is_some(), "the object stays");
    }

    #[test]
    fn reads_s3_and_sqs_wrapped_notifications() {
        let s3 = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"},
            "object": {"key": "raw/workspace%3Dshop/date%3D2024-05-01/hour%3D10/a+b.ndjson.gz"}}}]});
        assert_eq!(
            keys_from_notification(&s3).unwrap(),
            ["raw/workspace=shop/date=2024-05-01/hour=10/a b.ndjson.gz"]
        );
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": s3.to_string()},
            {"eventSource": "aws:sqs", "body": json!({"Event": "s3:TestEvent"}).to_string()}]});
        assert_eq!(keys_from_notification(&sqs).unwrap().len(), 1);
        let error = keys_from_notification(&json!({"detail": {}})).unwrap_err();
        assert_eq!(error.error_type, "BadNotification");
        assert!(!error.retriable);
        assert!(
            keys_from_notification(&json!({"Records": [{"s3": {"object": {"key": "%zz"}}}]}))
                .is_err()
        );
    }
}
