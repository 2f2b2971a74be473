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
//! [`CountEvents`] only counts. The Lambda function calls [`unify_objects`] with the keys of a
//! notification; `braid serve` with the keys of each group commit.

use std::future::Future;

use braid_core::catalogue::lake::{
    DEAD_LETTER_PREFIX, checkpoint_key, is_compacted, is_raw_object,
};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::object::{MAX_OBJECT_BYTES, gunzip, lines};
use super::store::{ObjectStore, StoreError, is_valid_key};

/// A failure of a [`Unify`] step: whether trying again may succeed, and a stable name for its
/// kind (Lambda's `errorType`).
pub trait StepError: std::error::Error + Send + Sync + 'static {
    /// Whether trying again may succeed.
    fn is_retriable(&self) -> bool;
    /// A stable name for the kind of failure.
    fn kind(&self) -> &'static str;
}

impl StepError for std::convert::Infallible {
    fn is_retriable(&self) -> bool {
        match *self {}
    }

    fn kind(&self) -> &'static str {
        match *self {}
    }
}

/// Why applying new objects stopped: the lake's store, or the unify step (`E`).
#[derive(Debug, thiserror::Error)]
pub enum UnifyError<E: StepError> {
    /// The lake's store failed (reading an object, writing a checkpoint).
    #[error(transparent)]
    Lake(#[from] StoreError),
    /// The unify step failed.
    #[error(transparent)]
    Step(E),
}

impl<E: StepError> UnifyError<E> {
    /// Whether the invocation should be retried (the objects without a checkpoint are
    /// applied again, a no-op for what was).
    pub fn is_retriable(&self) -> bool {
        match self {
            UnifyError::Lake(error) => error.is_retriable(),
            UnifyError::Step(error) => error.is_retriable(),
        }
    }

    /// A stable name for the kind of failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            UnifyError::Lake(error) => error.kind(),
            UnifyError::Step(error) => error.kind(),
        }
    }
}

/// What is done with the events of one lake object.
pub trait Unify: Send + Sync {
    /// What fails.
    type Error: StepError;

    /// Applies the NDJSON `events` of the object `key`, giving how many events it applied. It
    /// is called at least once per object (again when a later step of the same invocation
    /// fails), so it must be idempotent: events carry a `messageId` for that.
    fn apply(
        &self,
        key: &str,
        events: &[u8],
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// Makes what every `apply` so far did durable; the objects are checkpointed (counted as
    /// applied) only after it returns `Ok`.
    fn commit(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
}

/// A step that only counts the events (`braid compact` before compaction, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountEvents;

impl Unify for CountEvents {
    type Error = std::convert::Infallible;

    async fn apply(&self, _key: &str, events: &[u8]) -> Result<usize, Self::Error> {
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
/// [`UnifyError`] when the store or the unify step fails; objects applied before the failure
/// keep their checkpoints.
pub async fn unify_objects<S: ObjectStore, U: Unify>(
    store: &S,
    unify: &U,
    keys: &[String],
    now: OffsetDateTime,
) -> Result<UnifySummary, UnifyError<U::Error>> {
    let mut summary = UnifySummary::default();
    let mut applied = Vec::new();
    let mut failure = None;
    for key in keys {
        // Compacted objects hold events unify has seen in the objects they replace.
        if !is_raw_object(key) || !is_valid_key(key) || is_compacted(key) {
            summary.ignored += 1;
            continue;
        }
        let checkpoint = checkpoint_key(key);
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
                failure = Some(UnifyError::Step(error));
                break;
            }
        }
    }
    // What was applied becomes durable, then counts as applied; a failure before this point
    // leaves the objects without checkpoints, to be applied again (a no-op for what was).
    if !applied.is_empty() {
        unify.commit().await.map_err(UnifyError::Step)?;
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
) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::lake::object::gzip;
    use crate::lake::store::LocalStore;

    fn now() -> OffsetDateTime {
        braid_core::timestamp::parse("2024-05-01T11:00:00Z").unwrap()
    }

    const KEY: &str = "raw/workspace=shop/date=2024-05-01/hour=10/abc.ndjson.gz";

    #[derive(Default)]
    struct Recorder(AtomicUsize);

    impl Unify for Recorder {
        type Error = std::convert::Infallible;

        async fn apply(&self, _key: &str, events: &[u8]) -> Result<usize, Self::Error> {
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
}
