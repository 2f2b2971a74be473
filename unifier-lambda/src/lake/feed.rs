//! The unify entry point: new `raw/` lake objects in (from S3 object-created notifications,
//! possibly wrapped in SQS, or from `braid serve`), their events handed to a [`Unify`] step.
//!
//! Each object is applied once: after its events are applied, a checkpoint object
//! (`checkpoints/unify/<key>`) is written, and an object with a checkpoint is skipped. A
//! redelivered notification is therefore a no-op, and a batch that failed half-way is retried
//! from the first object without a checkpoint. An object that cannot be read (not gzip) is
//! recorded under `dead-letter/unify/<key>.json` with the reason — the object itself stays in
//! the lake — and does not block the rest. A line that is not an event by the rule validation
//! applies ([`braid_core::event::lake_lines`]) is quarantined: the object's other events are
//! applied, and the same record names the lines and why; `braid profiles rebuild` reads the
//! lake by the same rule, so live and rebuilt profiles agree.
//!
//! `failed/` objects are applied once in the same way, their failure records handed to
//! [`Unify::apply_failures`] (the data map counts their reasons).
//!
//! Identity resolution is a [`Unify`] implementation (`crate::profiles::ProfileUnify`), whose
//! writes [`Unify::commit`] makes durable before the objects' checkpoints are written;
//! [`CountEvents`] only counts. The Lambda function calls [`unify_objects`] with the keys of a
//! notification; `braid serve` with the keys of each group commit.

use std::future::Future;

use braid_core::catalogue::lake::{
    DEAD_LETTER_PREFIX, checkpoint_key, is_compacted, is_failed_object, is_raw_object,
};
use braid_core::event::{LineError, lake_lines};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::object::{MAX_OBJECT_BYTES, gunzip};
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

/// What a [`Unify`] step did with one object's lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinesApplied {
    /// Events applied.
    pub events: usize,
    /// The lines that are not events (numbered from 1), and why: kept out of the profiles.
    pub quarantined: Vec<(usize, LineError)>,
    /// Events applied although another sender had used their `messageId` within the window.
    pub collisions: u64,
    /// The lines (numbered from 1) that copy an event applied before from another line of the
    /// lake (a client's retry, within the dedupe window): compaction leaves them out.
    pub duplicates: Vec<usize>,
}

impl LinesApplied {
    /// Reads NDJSON lake content by the one rule ([`lake_lines`]): the events, by the lines
    /// they are on, and the lines that are none, in `quarantined`.
    pub fn read(content: &[u8]) -> (Vec<LineEvent<'_>>, LinesApplied) {
        let mut events = Vec::new();
        let mut applied = LinesApplied::default();
        for line in lake_lines(content) {
            match line.event {
                Ok(event) => events.push(LineEvent {
                    event,
                    text: line.text,
                    number: line.number,
                }),
                Err(error) => applied.quarantined.push((line.number, error)),
            }
        }
        (events, applied)
    }
}

/// An event of a lake object: the event, its line's bytes, and the line's number (from 1).
pub struct LineEvent<'a> {
    /// The event.
    pub event: braid_core::Event<'a>,
    /// Its line, without the newline.
    pub text: &'a [u8],
    /// Its line's number in the object, from 1.
    pub number: usize,
}

/// What is done with the events of one lake object.
pub trait Unify: Send + Sync {
    /// What fails.
    type Error: StepError;

    /// Applies the NDJSON `events` of the object `key`, read with [`LinesApplied::read`]. It
    /// is called at least once per object (again when a later step of the same invocation
    /// fails), so it must be idempotent: events carry a `messageId` for that.
    fn apply(
        &self,
        key: &str,
        events: &[u8],
    ) -> impl Future<Output = Result<LinesApplied, Self::Error>> + Send;

    /// Counts the failure records of the `failed/` object `key` (the data map's reasons):
    /// how many lines were records. Called once per object, as `apply` is.
    fn apply_failures(
        &self,
        _key: &str,
        _records: &[u8],
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send {
        async { Ok(0) }
    }

    /// Makes what every `apply` so far did durable; the objects are checkpointed (counted as
    /// applied) only after it returns `Ok`.
    fn commit(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Fires the timers due at `now` (ms since the epoch: audiences and computed traits that
    /// the clock alone changes) and makes what they changed durable: how many were due.
    fn sweep(&self, _now: i64) -> impl Future<Output = Result<usize, Self::Error>> + Send {
        async { Ok(0) }
    }
}

/// A step that only counts the events (`braid compact` before compaction, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountEvents;

impl Unify for CountEvents {
    type Error = std::convert::Infallible;

    async fn apply(&self, _key: &str, events: &[u8]) -> Result<LinesApplied, Self::Error> {
        let (events, mut applied) = LinesApplied::read(events);
        applied.events = events.len();
        Ok(applied)
    }
}

/// How many quarantined lines a dead-letter record names (it counts them all).
const MAX_NAMED_LINES: usize = 100;

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnifySummary {
    /// Objects applied now.
    pub applied: usize,
    /// Objects skipped because a checkpoint says they were applied before.
    pub already_applied: usize,
    /// Keys that are not `raw/` lake objects, or objects that no longer exist.
    pub ignored: usize,
    /// Objects recorded in the dead-letter area as unreadable.
    pub dead_lettered: usize,
    /// Events applied now.
    pub events: usize,
    /// Lines of the objects applied now that are not events (named in the dead-letter area).
    pub quarantined_lines: usize,
    /// Events applied now although another sender had used their `messageId`.
    pub collisions: u64,
    /// Profiles whose timer was due (a scheduled sweep).
    #[serde(skip_serializing_if = "is_zero")]
    pub timers: usize,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if takes &T"
)]
fn is_zero(n: &usize) -> bool {
    *n == 0
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
        let failed = is_failed_object(key);
        // Compacted objects hold events unify has seen in the objects they replace.
        if !(is_raw_object(key) || failed) || !is_valid_key(key) || is_compacted(key) {
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
                let record = json!({"key": key, "reason": error.to_string()});
                dead_letter(store, key, record, now).await?;
                summary.dead_lettered += 1;
                continue;
            }
        };
        if failed {
            match unify.apply_failures(key, &content).await {
                // Its checkpoint counts no events: the records are no events.
                Ok(_) => applied.push((checkpoint, LinesApplied::default())),
                Err(error) => {
                    failure = Some(UnifyError::Step(error));
                    break;
                }
            }
            continue;
        }
        match unify.apply(key, &content).await {
            Ok(lines) => {
                if !lines.quarantined.is_empty() {
                    quarantine(store, key, &lines.quarantined, now).await?;
                }
                applied.push((checkpoint, lines));
            }
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
    for (checkpoint, lines) in applied {
        let record = json!({
            "events": lines.events,
            "quarantined": lines.quarantined.len(),
            "collisions": lines.collisions,
            "duplicates": lines.duplicates,
            "appliedAt": braid_core::timestamp::format(now),
        });
        store
            .put(&checkpoint, record.to_string().into_bytes())
            .await?;
        summary.applied += 1;
        summary.events += lines.events;
        summary.quarantined_lines += lines.quarantined.len();
        summary.collisions += lines.collisions;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(summary)
}

/// Records the lines of `key` that are not events: the first [`MAX_NAMED_LINES`] by number
/// and reason, and how many there are.
async fn quarantine<S: ObjectStore>(
    store: &S,
    key: &str,
    quarantined: &[(usize, LineError)],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let named: Vec<_> = quarantined
        .iter()
        .take(MAX_NAMED_LINES)
        .map(|(line, error)| json!({"line": line, "reason": error.to_string()}))
        .collect();
    let record = json!({
        "key": key,
        "reason": format!("{} lines are not events; the object's other events were applied", quarantined.len()),
        "quarantined": quarantined.len(),
        "lines": named,
    });
    dead_letter(store, key, record, now).await
}

/// Writes `record`, with the time, to `dead-letter/unify/<key>.json`.
async fn dead_letter<S: ObjectStore>(
    store: &S,
    key: &str,
    mut record: serde_json::Value,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tracing::warn!(key, %record, "unify: recorded in the dead-letter area");
    if let Some(fields) = record.as_object_mut() {
        fields.insert("at".to_owned(), braid_core::timestamp::format(now).into());
    }
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

        async fn apply(&self, key: &str, events: &[u8]) -> Result<LinesApplied, Self::Error> {
            let applied = CountEvents.apply(key, events).await?;
            self.0.fetch_add(applied.events, Ordering::SeqCst);
            Ok(applied)
        }
    }

    #[tokio::test]
    async fn applies_each_object_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .put(
                KEY,
                gzip(b"{\"type\":\"track\",\"messageId\":\"a\"}\n{\"type\":\"page\",\"messageId\":\"b\"}\n"),
            )
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
        store.put(KEY, b"not gzip".to_vec()).await.unwrap();
        let keys = vec![KEY.to_owned()];
        let summary = unify_objects(&store, &CountEvents, &keys, now())
            .await
            .unwrap();
        assert_eq!((summary.dead_lettered, summary.applied), (1, 0));
        let record = store
            .get(&format!("{DEAD_LETTER_PREFIX}{KEY}.json"))
            .await
            .unwrap()
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["key"], KEY);
        assert!(store.get(KEY).await.unwrap().is_some(), "the object stays");
    }

    /// One bad line keeps only itself out: the object's other events are applied, and the
    /// record names the line and why.
    #[tokio::test]
    async fn a_line_that_is_no_event_is_quarantined_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let content = concat!(
            "{\"type\":\"track\",\"messageId\":\"a\"}\n",
            "{\"type\":\"track\",\"n\":1e400}\n",
            "[1]\n",
            "\n",
            "{\"type\":\"sleep\"}\n",
            "{\"type\":\"identify\",\"messageId\":\"b\"}\n",
        );
        store.put(KEY, gzip(content.as_bytes())).await.unwrap();
        let recorder = Recorder::default();
        let summary = unify_objects(&store, &recorder, &[KEY.to_owned()], now())
            .await
            .unwrap();
        assert_eq!(
            summary,
            UnifySummary {
                applied: 1,
                events: 2,
                quarantined_lines: 3,
                ..UnifySummary::default()
            }
        );
        assert_eq!(recorder.0.load(Ordering::SeqCst), 2);
        let record = store
            .get(&format!("{DEAD_LETTER_PREFIX}{KEY}.json"))
            .await
            .unwrap()
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["quarantined"], 3);
        let lines: Vec<u64> = record["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [2, 3, 5]);
        assert!(
            record["lines"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("64-bit float"),
            "{record}"
        );
    }
}
