//! Compaction: the small per-batch objects of a closed hour are merged into a few large ones
//! (`compacted-<id>.ndjson.gz`, up to [`CompactSettings::target_bytes`] each), so that readers
//! open a handful of files instead of thousands.
//!
//! Readers must never see an event twice nor miss one, and S3 cannot swap several objects at
//! once, so the switch is one object: a manifest per partition
//! (`manifests/compaction/<partition>.json`) listing the compacted objects and the objects they
//! replace. A run
//! 1. finishes a previous run first: deletes what the existing manifest says was replaced;
//! 2. merges the partition's remaining objects (in the order they were written, then by key, so
//!    the output is the same every time and events keep their order) and writes the compacted
//!    objects — not yet live;
//! 3. writes the manifest — the switch;
//! 4. deletes the replaced objects.
//!
//! A crash anywhere leaves a state that [`live_objects`] reads correctly and that the next run
//! completes; running again changes nothing. Readers that follow the manifest ([`live_objects`],
//! `docs/lake-layout.md`) see each event exactly once at every moment; a plain glob over
//! `*.ndjson.gz` can see a compacted object beside the objects it replaces for the few seconds
//! between steps 2 and 4.
//!
//! With `require_unified`, an object is merged only once the unify step has applied it (it has a
//! checkpoint): compaction never takes an object away before unify has read it. Unify skips
//! compacted objects, whose events it has seen in the small ones.

use std::collections::{BTreeMap, BTreeSet};

use braid_core::catalogue::CompactionConfig;
use braid_core::catalogue::lake::{
    self, COMPACTED_PREFIX, OBJECT_SUFFIX, checkpoint_key, is_compacted, manifest_key,
};
use braid_core::event::lake_lines;
use braid_core::unify::{MAX_SENDERS_PER_MESSAGE_ID, sender_of};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::object::{MAX_OBJECT_BYTES, gunzip, gzip};
use super::store::{ObjectInfo, ObjectStore, StoreError};

/// Why a compaction run (or a read of the live objects) stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest is not one.
    #[error("{key}: not a compaction manifest: {detail}")]
    BadManifest {
        /// The manifest's key.
        key: String,
        /// What the parser said.
        detail: String,
    },
    /// An object listed a moment ago is gone (a concurrent run): the next run finishes.
    #[error("{key} disappeared during compaction")]
    ObjectVanished {
        /// The object's key.
        key: String,
    },
    /// An object cannot be read (not gzip, or too large).
    #[error("{key}: {detail}")]
    UnreadableObject {
        /// The object's key.
        key: String,
        /// What failed.
        detail: String,
    },
}

impl CompactError {
    /// Whether the run should be tried again.
    pub fn is_retriable(&self) -> bool {
        match self {
            CompactError::Store(error) => error.is_retriable(),
            CompactError::ObjectVanished { .. } => true,
            CompactError::BadManifest { .. } | CompactError::UnreadableObject { .. } => false,
        }
    }

    /// A stable name for the kind of failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            CompactError::Store(error) => error.kind(),
            CompactError::BadManifest { .. } => "BadManifest",
            CompactError::ObjectVanished { .. } => "ObjectVanished",
            CompactError::UnreadableObject { .. } => "UnreadableObject",
        }
    }
}

/// How compaction runs.
#[derive(Clone, Debug)]
pub struct CompactSettings {
    /// How long after an hour ends before it is compacted (late retries land in their hour).
    pub grace: Duration,
    /// Uncompressed bytes per compacted object (the last one may be smaller).
    pub target_bytes: usize,
    /// Merge only objects the unify step has applied.
    pub require_unified: bool,
}

impl Default for CompactSettings {
    fn default() -> Self {
        CompactSettings {
            grace: Duration::minutes(15),
            target_bytes: 64 * 1024 * 1024,
            require_unified: false,
        }
    }
}

impl From<&CompactionConfig> for CompactSettings {
    fn from(config: &CompactionConfig) -> CompactSettings {
        CompactSettings {
            grace: Duration::minutes(config.grace_minutes),
            target_bytes: config.target_megabytes.saturating_mul(1024 * 1024),
            require_unified: config.require_unified,
        }
    }
}

/// A partition's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The live compacted objects of the partition.
    pub objects: Vec<String>,
    /// Objects the compacted ones replace: not live, deleted by the run that wrote this.
    pub replaces: Vec<String>,
    /// For each compacted object, the write time of the first object it holds: readers that
    /// replay the lake in write order put it there.
    #[serde(default)]
    pub written: BTreeMap<String, i128>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CompactSummary {
    /// Partitions compacted now.
    pub partitions: usize,
    /// Objects merged (and deleted).
    pub merged: usize,
    /// Compacted objects written.
    pub written: usize,
    /// Objects left alone because unify has not applied them yet.
    pub waiting_for_unify: usize,
    /// Events left out as copies of one merged before them (the same `messageId` from the
    /// same sender: a client's retry).
    pub duplicates: usize,
    /// Events kept although another sender's event in the partition had their `messageId`.
    pub collisions: usize,
}

async fn read_manifest<S: ObjectStore>(
    store: &S,
    partition: &str,
) -> Result<Manifest, CompactError> {
    match store.get(&manifest_key(partition)).await? {
        None => Ok(Manifest::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| CompactError::BadManifest {
            key: manifest_key(partition),
            detail: e.to_string(),
        }),
    }
}

/// The lake objects under `prefix` that a reader should read: every object once, whatever a
/// compaction run is doing.
///
/// # Errors
///
/// When the store fails or a manifest is unreadable.
pub async fn live_objects<S: ObjectStore>(
    store: &S,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, CompactError> {
    let objects = store.list(prefix).await?;
    let mut by_partition: BTreeMap<&str, Vec<&ObjectInfo>> = BTreeMap::new();
    for object in &objects {
        if object.key.ends_with(OBJECT_SUFFIX)
            && let Some((partition, _)) = object.key.rsplit_once('/')
        {
            by_partition.entry(partition).or_default().push(object);
        }
    }
    let mut live = Vec::new();
    for (partition, objects) in by_partition {
        let manifest = read_manifest(store, partition).await?;
        let current: BTreeSet<&str> = manifest.objects.iter().map(String::as_str).collect();
        let replaced: BTreeSet<&str> = manifest.replaces.iter().map(String::as_str).collect();
        for object in objects {
            let key = object.key.as_str();
            let is_live = if is_compacted(key) {
                current.contains(key)
            } else {
                !replaced.contains(key)
            };
            if is_live {
                let mut object = object.clone();
                if let Some(written) = manifest.written.get(key) {
                    object.modified = *written;
                }
                live.push(object);
            }
        }
    }
    Ok(live)
}

/// The hour partitions under `raw/` that ended at least `grace` before `now`.
fn closed_partitions(objects: &[ObjectInfo], now: OffsetDateTime, grace: Duration) -> Vec<String> {
    let mut partitions = BTreeSet::new();
    for object in objects {
        let Some((partition, _)) = object.key.rsplit_once('/') else {
            continue;
        };
        if let Some(end) = partition_end(partition)
            && end + grace <= now
        {
            partitions.insert(partition.to_owned());
        }
    }
    partitions.into_iter().collect()
}

/// When the hour of a partition `raw/workspace=W/date=YYYY-MM-DD/hour=HH` ends.
fn partition_end(partition: &str) -> Option<OffsetDateTime> {
    lake::partition_hour(partition).map(|start| start + Duration::hours(1))
}

/// Compacts every closed hour under `raw/` (the scheduled run).
///
/// # Errors
///
/// [`CompactError`] when the store fails; partitions finished before stay finished.
pub async fn compact_closed_hours<S: ObjectStore>(
    store: &S,
    settings: &CompactSettings,
    now: OffsetDateTime,
) -> Result<CompactSummary, CompactError> {
    let objects = store.list("raw/").await?;
    let mut summary = CompactSummary::default();
    for partition in closed_partitions(&objects, now, settings.grace) {
        let done = compact_partition(store, settings, &partition).await?;
        summary.partitions += usize::from(done.written > 0);
        summary.merged += done.merged;
        summary.written += done.written;
        summary.waiting_for_unify += done.waiting_for_unify;
        summary.duplicates += done.duplicates;
        summary.collisions += done.collisions;
    }
    Ok(summary)
}

/// What [`merge`] made: each output's content and the write time of its first input, and
/// what it left out.
#[derive(Default)]
struct Merged {
    outputs: Vec<Vec<u8>>,
    firsts: Vec<i128>,
    duplicates: usize,
    collisions: usize,
}

/// Reads `inputs` in order into outputs of about `target_bytes`, each event once: a line whose
/// `messageId` and sender ([`sender_of`], the rule unify dedupes by) an earlier line had is a
/// client's retry and is left out, and so is a line unify found to copy an event of another
/// object (`copied`, by object, the lines' numbers). Lines that are not events are kept as they
/// are.
async fn merge<S: ObjectStore>(
    store: &S,
    inputs: &[String],
    written_at: &BTreeMap<String, i128>,
    copied: &BTreeMap<String, BTreeSet<usize>>,
    target_bytes: usize,
) -> Result<Merged, CompactError> {
    let mut merged = Merged {
        outputs: vec![Vec::new()],
        ..Merged::default()
    };
    let mut senders: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for key in inputs {
        let packed = store
            .get(key)
            .await?
            .ok_or_else(|| CompactError::ObjectVanished { key: key.clone() })?;
        let content =
            gunzip(&packed, MAX_OBJECT_BYTES).map_err(|e| CompactError::UnreadableObject {
                key: key.clone(),
                detail: e.to_string(),
            })?;
        let current = merged.outputs.last().map_or(0, Vec::len);
        if current > 0 && current + content.len() > target_bytes {
            merged.outputs.push(Vec::new());
        }
        if merged.firsts.len() < merged.outputs.len() {
            merged
                .firsts
                .push(written_at.get(key).copied().unwrap_or(0));
        }
        let Some(output) = merged.outputs.last_mut() else {
            continue;
        };
        let copies_here = copied.get(key);
        for line in lake_lines(&content) {
            if copies_here.is_some_and(|c| c.contains(&line.number)) {
                merged.duplicates += 1;
                continue;
            }
            if let Ok(event) = &line.event
                && let Some(message_id) = event.message_id()
            {
                let sender = sender_of(event);
                let seen = senders.entry(message_id.into_owned()).or_default();
                if seen.contains(&sender) {
                    merged.duplicates += 1;
                    continue;
                }
                if !seen.is_empty() {
                    merged.collisions += 1;
                }
                // As unify remembers a messageId for so many senders only (and applies the
                // others' retries), so does this: live and rebuilt profiles agree.
                if seen.len() < MAX_SENDERS_PER_MESSAGE_ID {
                    seen.push(sender);
                }
            }
            output.extend_from_slice(line.text);
            output.push(b'\n');
        }
    }
    Ok(merged)
}

/// The lines a unify checkpoint names as copies (`duplicates`); none when it names none or is
/// not one (an older checkpoint).
fn copied_lines(checkpoint: &[u8]) -> BTreeSet<usize> {
    #[derive(Deserialize)]
    struct Checkpoint {
        #[serde(default)]
        duplicates: BTreeSet<usize>,
    }
    serde_json::from_slice::<Checkpoint>(checkpoint)
        .map(|c| c.duplicates)
        .unwrap_or_default()
}

/// Compacts one partition (`raw/workspace=W/date=D/hour=H`), whether or not its hour is closed.
///
/// # Errors
///
/// [`CompactError`] when the store fails (retriable), or an object or the manifest is
/// unreadable (not).
pub async fn compact_partition<S: ObjectStore>(
    store: &S,
    settings: &CompactSettings,
    partition: &str,
) -> Result<CompactSummary, CompactError> {
    let mut summary = CompactSummary::default();
    let previous = read_manifest(store, partition).await?;
    // 1. Finish what a previous run left undone.
    for key in &previous.replaces {
        store.delete(key).await?;
    }
    let prefix = format!("{partition}/");
    let mut inputs = Vec::new();
    let mut written_at = BTreeMap::new();
    let mut copied = BTreeMap::new();
    for object in store.list(&prefix).await? {
        let key = object.key;
        written_at.insert(key.clone(), object.modified);
        if !key.ends_with(OBJECT_SUFFIX) || key.get(prefix.len()..).is_some_and(|r| r.contains('/'))
        {
            continue;
        }
        if is_compacted(&key) {
            if previous.objects.contains(&key) {
                inputs.push(key);
            } else {
                // Written by a run that crashed before its manifest: not live, and rewritten
                // (with the same name, as the content is the same) below if still needed.
                store.delete(&key).await?;
            }
            continue;
        }
        let checkpoint = store.get(&checkpoint_key(&key)).await?;
        if settings.require_unified && checkpoint.is_none() {
            summary.waiting_for_unify += 1;
            continue;
        }
        // The lines unify found to copy an event applied from another object (a retry that
        // landed in another hour, say).
        if let Some(copies) = checkpoint.as_deref().map(copied_lines)
            && !copies.is_empty()
        {
            copied.insert(key.clone(), copies);
        }
        inputs.push(key);
    }
    let small = inputs.iter().filter(|k| !is_compacted(k)).count();
    if small == 0 && inputs.len() <= 1 {
        return Ok(summary);
    }
    // 2. Merge, in the order the objects were written (then by key), into objects of about
    //    `target_bytes`: events keep the order they were unified in.
    for (key, at) in &previous.written {
        written_at.insert(key.clone(), *at);
    }
    inputs.sort_by(|a, b| (written_at.get(a), a).cmp(&(written_at.get(b), b)));
    let merged = merge(store, &inputs, &written_at, &copied, settings.target_bytes).await?;
    summary.duplicates = merged.duplicates;
    summary.collisions = merged.collisions;
    let mut written = Vec::new();
    let mut first_written = BTreeMap::new();
    for (content, first) in merged
        .outputs
        .iter()
        .zip(&merged.firsts)
        .filter(|(c, _)| !c.is_empty())
    {
        let key = format!(
            "{prefix}{COMPACTED_PREFIX}{}{OBJECT_SUFFIX}",
            lake::batch_id(content)
        );
        store.put(&key, gzip(content)).await?;
        first_written.insert(key.clone(), *first);
        written.push(key);
    }
    // 3. The switch.
    let replaces: Vec<String> = inputs
        .iter()
        .filter(|k| !written.contains(k))
        .cloned()
        .collect();
    let manifest = Manifest {
        objects: written.clone(),
        replaces: replaces.clone(),
        written: first_written,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    store.put(&manifest_key(partition), bytes).await?;
    // 4. Clean up.
    for key in &replaces {
        store.delete(key).await?;
    }
    summary.merged = replaces.len();
    summary.written = written.len();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::object::lines;
    use crate::lake::store::LocalStore;

    const HOUR_10: &str = "raw/workspace=shop/date=2024-05-01/hour=10";
    const HOUR_11: &str = "raw/workspace=shop/date=2024-05-01/hour=11";

    fn at(text: &str) -> OffsetDateTime {
        braid_core::timestamp::parse(text).unwrap()
    }

    async fn small(store: &LocalStore, partition: &str, ids: &[&str]) -> String {
        let mut content = String::new();
        for id in ids {
            content.push_str("{\"messageId\":\"");
            content.push_str(id);
            content.push_str("\"}\n");
        }
        let key = format!(
            "{partition}/{}{OBJECT_SUFFIX}",
            lake::batch_id(content.as_bytes())
        );
        store.put(&key, gzip(content.as_bytes())).await.unwrap();
        key
    }

    /// Every event a manifest-following reader sees, sorted.
    async fn events(store: &LocalStore, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for object in live_objects(store, prefix).await.unwrap() {
            let content = gunzip(&store.get(&object.key).await.unwrap().unwrap(), 1 << 20).unwrap();
            for line in lines(&content) {
                let event: serde_json::Value = serde_json::from_slice(line).unwrap();
                ids.push(event["messageId"].as_str().unwrap().to_owned());
            }
        }
        ids.sort();
        ids
    }

    async fn objects(store: &LocalStore, partition: &str) -> Vec<String> {
        let listed = store.list(&format!("{partition}/")).await.unwrap();
        listed.into_iter().map(|o| o.key).collect()
    }

    /// An object of track events, each `(messageId, userId)`.
    async fn tracked(store: &LocalStore, partition: &str, events: &[(&str, &str)]) {
        let mut content = String::new();
        for (id, user) in events {
            let line = serde_json::json!({"type": "track", "event": "E", "messageId": id,
                "userId": user});
            content.push_str(&line.to_string());
            content.push('\n');
        }
        let key = format!(
            "{partition}/{}{OBJECT_SUFFIX}",
            lake::batch_id(content.as_bytes())
        );
        store.put(&key, gzip(content.as_bytes())).await.unwrap();
    }

    /// A client's retry lands a second copy; compaction keeps one. Another user's event that
    /// reuses the messageId is that user's, kept and counted.
    #[tokio::test]
    async fn a_retried_event_is_compacted_into_one_row_and_a_reused_id_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        tracked(&store, HOUR_10, &[("m1", "u1"), ("m2", "u1")]).await;
        tracked(&store, HOUR_10, &[("m2", "u1"), ("m3", "u1")]).await;
        tracked(&store, HOUR_10, &[("m1", "u1"), ("m1", "u2")]).await;
        let settings = CompactSettings::default();
        let summary = compact_closed_hours(&store, &settings, at("2024-05-01T11:20:00Z"))
            .await
            .unwrap();
        assert_eq!((summary.duplicates, summary.collisions), (2, 1));
        let mut rows = Vec::new();
        for object in live_objects(&store, "raw/").await.unwrap() {
            let content = gunzip(&store.get(&object.key).await.unwrap().unwrap(), 1 << 20).unwrap();
            for line in lines(&content) {
                let event: serde_json::Value = serde_json::from_slice(line).unwrap();
                rows.push(format!("{}/{}", event["messageId"], event["userId"]));
            }
        }
        assert_eq!(
            rows,
            [
                r#""m1"/"u1""#,
                r#""m2"/"u1""#,
                r#""m3"/"u1""#,
                r#""m1"/"u2""#
            ]
        );
    }

    #[tokio::test]
    async fn merges_closed_hours_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        small(&store, HOUR_10, &["a", "b"]).await;
        small(&store, HOUR_10, &["c"]).await;
        small(&store, HOUR_10, &["d", "e"]).await;
        small(&store, HOUR_11, &["f"]).await;
        let settings = CompactSettings::default();
        let before = events(&store, "raw/").await;
        // 11:10 is within the grace period of hour 10: nothing happens.
        let early = compact_closed_hours(&store, &settings, at("2024-05-01T11:10:00Z"))
            .await
            .unwrap();
        assert_eq!(early, CompactSummary::default());
        let summary = compact_closed_hours(&store, &settings, at("2024-05-01T11:20:00Z"))
            .await
            .unwrap();
        assert_eq!(
            (summary.partitions, summary.merged, summary.written),
            (1, 3, 1)
        );
        let hour_10 = objects(&store, HOUR_10).await;
        assert_eq!(hour_10.len(), 1);
        assert!(is_compacted(&hour_10[0]));
        assert_eq!(
            objects(&store, HOUR_11).await.len(),
            1,
            "the open hour is left alone"
        );
        assert_eq!(events(&store, "raw/").await, before);
        let again = compact_closed_hours(&store, &settings, at("2024-05-01T11:20:00Z"))
            .await
            .unwrap();
        assert_eq!(
            again,
            CompactSummary::default(),
            "running again changes nothing"
        );
        assert_eq!(objects(&store, HOUR_10).await, hour_10);
    }

    #[tokio::test]
    async fn readers_see_each_event_once_whatever_step_a_run_stopped_at() {
        // A finished run, to learn what the compacted object and manifest look like.
        let done = tempfile::tempdir().unwrap();
        let finished = LocalStore::open(done.path()).unwrap();
        let keys = [
            small(&finished, HOUR_10, &["a", "b"]).await,
            small(&finished, HOUR_10, &["c"]).await,
        ];
        compact_partition(&finished, &CompactSettings::default(), HOUR_10)
            .await
            .unwrap();
        let compacted = objects(&finished, HOUR_10).await.remove(0);
        let compacted_bytes = finished.get(&compacted).await.unwrap().unwrap();
        let manifest_bytes = finished.get(&manifest_key(HOUR_10)).await.unwrap().unwrap();

        for stopped_after in [2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::open(dir.path()).unwrap();
            small(&store, HOUR_10, &["a", "b"]).await;
            small(&store, HOUR_10, &["c"]).await;
            store
                .put(&compacted, compacted_bytes.clone())
                .await
                .unwrap();
            if stopped_after == 3 {
                store
                    .put(&manifest_key(HOUR_10), manifest_bytes.clone())
                    .await
                    .unwrap();
            }
            assert_eq!(
                events(&store, "raw/").await,
                ["a", "b", "c"],
                "after step {stopped_after}"
            );
            compact_partition(&store, &CompactSettings::default(), HOUR_10)
                .await
                .unwrap();
            assert_eq!(
                objects(&store, HOUR_10).await,
                std::slice::from_ref(&compacted)
            );
            assert_eq!(events(&store, "raw/").await, ["a", "b", "c"]);
            for key in &keys {
                assert!(store.get(key).await.unwrap().is_none());
            }
        }
    }

    #[tokio::test]
    async fn late_objects_are_merged_into_the_next_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let first = small(&store, HOUR_10, &["a"]).await;
        small(&store, HOUR_10, &["b"]).await;
        let settings = CompactSettings::default();
        compact_partition(&store, &settings, HOUR_10).await.unwrap();
        let old = objects(&store, HOUR_10).await;
        // A late retry of an already merged batch, and a late new batch.
        small(&store, HOUR_10, &["a"]).await;
        small(&store, HOUR_10, &["z"]).await;
        assert_eq!(events(&store, "raw/").await, ["a", "b", "z"]);
        let summary = compact_partition(&store, &settings, HOUR_10).await.unwrap();
        assert_eq!(summary.written, 1);
        let now = objects(&store, HOUR_10).await;
        assert_eq!(now.len(), 1);
        assert_ne!(now, old);
        assert!(store.get(&first).await.unwrap().is_none());
        assert_eq!(events(&store, "raw/").await, ["a", "b", "z"]);
    }

    #[tokio::test]
    async fn waits_for_unify_and_splits_large_hours() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let unified = small(&store, HOUR_10, &["a", "b", "c"]).await;
        let also = small(&store, HOUR_10, &["d", "e", "f"]).await;
        small(&store, HOUR_10, &["g"]).await;
        for key in [&unified, &also] {
            store
                .put(&checkpoint_key(key), b"{}".to_vec())
                .await
                .unwrap();
        }
        let settings = CompactSettings {
            require_unified: true,
            target_bytes: 40,
            ..CompactSettings::default()
        };
        let summary = compact_partition(&store, &settings, HOUR_10).await.unwrap();
        assert_eq!(summary.waiting_for_unify, 1);
        assert_eq!(
            (summary.merged, summary.written),
            (2, 2),
            "40 bytes per object: two"
        );
        assert_eq!(
            events(&store, "raw/").await,
            ["a", "b", "c", "d", "e", "f", "g"]
        );
    }
}
