//! The lake layout: where events land, as specified in `docs/lake-layout.md`.
//!
//! `raw/workspace=W/date=YYYY-MM-DD/hour=HH/<batch-id>.ndjson.gz` holds accepted events, one
//! enriched event per line; `failed/` has the same partitions and holds rejected events with
//! their reason. Partitions are by the time the server received the events (UTC). The lines of
//! one request's worth of events travel to a writer as a [`LakeWrite`]; failure records are
//! [`FailedEvent`]s.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use super::validate::ValidationError;
use crate::{hex, timestamp};

/// The two areas of the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// Accepted, enriched events.
    Raw,
    /// Rejected events with their reason.
    Failed,
}

impl Area {
    /// The top-level folder.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Raw => "raw",
            Area::Failed => "failed",
        }
    }
}

/// The suffix of every lake object.
pub const OBJECT_SUFFIX: &str = ".ndjson.gz";

/// The partition folder of events of `workspace` received at `at`:
/// `raw/workspace=W/date=YYYY-MM-DD/hour=HH`.
pub fn partition(area: Area, workspace: &str, at: OffsetDateTime) -> String {
    let utc = at.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(64);
    out.push_str(area.as_str());
    out.push_str("/workspace=");
    out.push_str(workspace);
    out.push_str("/date=");
    let date = timestamp::format(utc);
    out.push_str(date.get(..10).unwrap_or(&date));
    out.push_str("/hour=");
    out.push_str(date.get(11..13).unwrap_or("00"));
    out
}

/// When the hour of the partition a key is in starts: `date=YYYY-MM-DD/hour=HH` of
/// `raw/workspace=W/date=YYYY-MM-DD/hour=HH[/...]` (either area).
pub fn partition_hour(key: &str) -> Option<OffsetDateTime> {
    let mut date = None;
    let mut hour = None;
    for segment in key.split('/') {
        if let Some(value) = segment.strip_prefix("date=") {
            date = Some(value);
        } else if let Some(value) = segment.strip_prefix("hour=") {
            hour = Some(value);
        }
    }
    timestamp::parse(&format!("{}T{}:00:00Z", date?, hour?)).ok()
}

/// The folder of one workspace's objects in an area: `raw/workspace=W/`.
pub fn workspace_prefix(area: Area, workspace: &str) -> String {
    format!("{}/workspace={workspace}/", area.as_str())
}

/// The workspace of a key in an area (`raw/workspace=W/...` gives `W`), when it names a valid
/// one.
pub fn workspace_of(area: Area, key: &str) -> Option<&str> {
    let rest = key
        .strip_prefix(area.as_str())?
        .strip_prefix("/workspace=")?;
    let (workspace, _) = rest.split_once('/')?;
    is_valid_workspace(workspace).then_some(workspace)
}

/// Where the unify step records each object it has applied: `checkpoints/unify/<key>`.
pub const CHECKPOINT_PREFIX: &str = "checkpoints/unify/";

/// Where a replay of `failed/` records the lines of each object it landed:
/// `replays/<failed key>.json`.
pub const REPLAY_PREFIX: &str = "replays/";

/// The record of what a replay landed of the `failed/` object `key`.
pub fn replay_key(key: &str) -> String {
    format!("{REPLAY_PREFIX}{key}.json")
}

/// Where unify records an object it could not read: `dead-letter/unify/<key>.json`.
pub const DEAD_LETTER_PREFIX: &str = "dead-letter/unify/";

/// Where compaction keeps each partition's manifest: `manifests/compaction/<partition>.json`.
pub const MANIFEST_PREFIX: &str = "manifests/compaction/";

/// The file-name prefix of compacted objects (`compacted-<id>.ndjson.gz`).
pub const COMPACTED_PREFIX: &str = "compacted-";

/// The origin of a lake line, for unify to tell a copy of an event on another line from the
/// same line applied again: the first 8 bytes of SHA-256 over the object's key, a unit
/// separator and the line's number (from 1, big-endian). Never 0 (which means unknown).
pub fn line_origin(key: &str, line: usize) -> u64 {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(key.as_bytes());
    hash.update([0x1f]);
    hash.update((line as u64).to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first).max(1)
}

/// The checkpoint of a lake object.
pub fn checkpoint_key(key: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{key}")
}

/// The manifest of a partition (`raw/workspace=W/date=D/hour=H`).
pub fn manifest_key(partition: &str) -> String {
    format!("{MANIFEST_PREFIX}{partition}.json")
}

/// Whether `key` is a compacted object.
pub fn is_compacted(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(COMPACTED_PREFIX))
}

/// Whether `key` is a `failed/` lake object.
pub fn is_failed_object(key: &str) -> bool {
    key.starts_with("failed/") && key.ends_with(OBJECT_SUFFIX)
}

/// Whether `key` is a `raw/` lake object (compacted or not).
pub fn is_raw_object(key: &str) -> bool {
    key.starts_with("raw/") && key.ends_with(OBJECT_SUFFIX)
}

/// The key of a lake object: its partition and `<batch_id>.ndjson.gz`.
pub fn object_key(area: Area, workspace: &str, at: OffsetDateTime, batch_id: &str) -> String {
    let mut key = partition(area, workspace, at);
    key.push('/');
    key.push_str(batch_id);
    key.push_str(OBJECT_SUFFIX);
    key
}

/// The batch id of an object with this (uncompressed) content: 32 hex digits of its SHA-256,
/// so that writing the same content twice gives the same key, never a duplicate object.
pub fn batch_id(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content).get(..16).unwrap_or_default())
}

/// Whether `name` can be a workspace name: 1–64 characters of `a-z`, `0-9`, `_` and `-`, so it
/// is safe as a path segment and a Hive partition value.
pub fn is_valid_workspace(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An event that failed validation, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedEvent {
    /// Why it failed.
    pub error: ValidationError,
    /// The event's JSON (or the whole body) as received.
    pub payload: String,
    /// For an event a tracking plan blocked: the event as it would have landed in `raw/`
    /// (stamped with what its request proved, and enriched), so that `braid replay` lands it
    /// as it would have landed, once the plan is fixed (`super::replay`). `None` for an event
    /// that failed validation: it never became an event.
    pub event: Option<String>,
}

impl FailedEvent {
    /// Writes the failure record as one NDJSON line (with its newline): `receivedAt`,
    /// `workspace`, `index`, `code`, `field`, `limit`, `message`, and the `payload` as received,
    /// as a string, so that any payload, even one that is not JSON, can be kept (without the
    /// identity proofs a client put in `context.braid`: credentials); for an event a
    /// plan blocked, also the `event` that would have landed, as a string (written exactly as a
    /// `raw/` line).
    pub fn write_json(&self, workspace: &str, received_at: OffsetDateTime, out: &mut Vec<u8>) {
        let mut record = Map::new();
        record.insert(
            "receivedAt".to_owned(),
            Value::String(timestamp::format(received_at)),
        );
        record.insert("workspace".to_owned(), Value::String(workspace.to_owned()));
        record.insert(
            "index".to_owned(),
            self.error.index().map_or(Value::Null, Value::from),
        );
        record.insert(
            "code".to_owned(),
            Value::String(self.error.code().to_owned()),
        );
        record.insert(
            "field".to_owned(),
            self.error.field().map_or(Value::Null, Value::from),
        );
        record.insert(
            "limit".to_owned(),
            self.error.limit().map_or(Value::Null, Value::from),
        );
        record.insert("message".to_owned(), Value::String(self.error.to_string()));
        record.insert(
            "payload".to_owned(),
            Value::String(crate::event::without_proofs(&self.payload).into_owned()),
        );
        if let Some(event) = &self.event {
            record.insert("event".to_owned(), Value::String(event.clone()));
        }
        if serde_json::to_writer(&mut *out, &record).is_ok() {
            out.push(b'\n');
        }
    }
}

/// A failure record read back (a `failed/` line, as [`FailedEvent::write_json`] writes it):
/// the fields its readers use, the data map and replays.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    /// When the event was received (RFC 3339).
    #[serde(default)]
    pub received_at: Option<String>,
    /// Its workspace.
    #[serde(default)]
    pub workspace: String,
    /// Why it failed.
    pub code: String,
    /// What was wrong (names the field and the limit, never a value).
    #[serde(default)]
    pub message: String,
    /// The event (or body) as received.
    #[serde(default)]
    pub payload: Option<String>,
    /// For an event a plan blocked: as it would have landed ([`FailedEvent::event`]).
    #[serde(default)]
    pub event: Option<String>,
}

impl FailureRecord {
    /// Reads a `failed/` line; `None` for a line that is no failure record (its `code` is not
    /// one of the server's: lowercase letters and `_`, at most 64).
    pub fn read(line: &[u8]) -> Option<FailureRecord> {
        let record: FailureRecord = serde_json::from_slice(line).ok()?;
        let code = record.code.as_bytes();
        (!code.is_empty()
            && code.len() <= 64
            && code.iter().all(|&b| b.is_ascii_lowercase() || b == b'_'))
        .then_some(record)
    }
}

/// What one request adds to the lake, for a platform to make durable before it answers: the
/// accepted events and the failure records of one workspace, received at one time (their
/// partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeWrite {
    /// The workspace (a lake partition).
    pub workspace: String,
    /// When the events were received (the partition's date and hour).
    pub received_at: OffsetDateTime,
    /// Accepted events, NDJSON: the lines of `raw/`.
    pub accepted: Vec<u8>,
    /// Failure records, NDJSON: the lines of `failed/`.
    pub failed: Vec<u8>,
    /// How many lines `accepted` holds.
    pub accepted_count: usize,
    /// How many lines `failed` holds.
    pub failed_count: usize,
}

impl LakeWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty() && self.failed.is_empty()
    }

    /// The content of each area that has any: `(Area::Raw, accepted)`, `(Area::Failed,
    /// failed)`.
    pub fn areas(&self) -> impl Iterator<Item = (Area, &[u8])> {
        [(Area::Raw, &self.accepted), (Area::Failed, &self.failed)]
            .into_iter()
            .filter(|(_, content)| !content.is_empty())
            .map(|(area, content)| (area, content.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp;

    #[test]
    fn keys_follow_the_hive_layout_in_utc() {
        let at = timestamp::parse("2024-05-01T01:30:00+02:00").unwrap();
        assert_eq!(
            object_key(Area::Raw, "shop", at, "abc"),
            "raw/workspace=shop/date=2024-04-30/hour=23/abc.ndjson.gz"
        );
        assert_eq!(
            partition(Area::Failed, "shop", at),
            "failed/workspace=shop/date=2024-04-30/hour=23"
        );
        let key = object_key(Area::Raw, "shop", at, "abc");
        assert!(key.starts_with(&workspace_prefix(Area::Raw, "shop")));
        assert_eq!(workspace_of(Area::Raw, &key), Some("shop"));
        assert_eq!(workspace_of(Area::Failed, &key), None);
        assert_eq!(
            workspace_of(Area::Raw, "raw/workspace=Bad/x.ndjson.gz"),
            None
        );
        assert_eq!(workspace_of(Area::Raw, "raw/workspace=shop"), None);
        assert_eq!(
            partition_hour(&partition(Area::Failed, "shop", at)),
            Some(timestamp::parse("2024-04-30T23:00:00Z").unwrap())
        );
        assert_eq!(partition_hour("raw/workspace=shop/date=2024-04-30"), None);
    }

    #[test]
    fn failure_records_keep_no_identity_proofs() {
        let record = |payload: &str| -> serde_json::Value {
            let mut out = Vec::new();
            FailedEvent {
                error: ValidationError::EmptyBatch,
                payload: payload.to_owned(),
                event: None,
            }
            .write_json(
                "shop",
                timestamp::parse("2024-05-01T10:00:00Z").unwrap(),
                &mut out,
            );
            serde_json::from_slice(&out).unwrap()
        };
        let event = r#"{"type":"track","userId":"u","context":{"braid":{"userHash":"ab12","emailHash":"cd34","other":1},"ip":"1.2.3.4"}}"#;
        let kept: serde_json::Value =
            serde_json::from_str(record(event)["payload"].as_str().unwrap()).unwrap();
        assert_eq!(kept["context"]["braid"], serde_json::json!({"other": 1}));
        assert_eq!(kept["context"]["ip"], "1.2.3.4");
        assert_eq!(kept["userId"], "u");
        let body = format!(r#"{{"batch":[{event},{event}],"sentAt":"x"}}"#);
        let kept = record(&body)["payload"].as_str().unwrap().to_owned();
        assert!(
            !kept.contains("userHash") && !kept.contains("emailHash"),
            "{kept}"
        );
        assert!(kept.contains("sentAt"));
        // Anything else is kept as received, byte for byte.
        for payload in [
            r#"{"type": "track",  "note": "userHash"}"#,
            "{not json userHash",
            "plain",
        ] {
            assert_eq!(record(payload)["payload"], payload);
        }
    }

    #[test]
    fn batch_ids_depend_on_content_only() {
        assert_eq!(batch_id(b"a\n"), batch_id(b"a\n"));
        assert_ne!(batch_id(b"a\n"), batch_id(b"b\n"));
        assert_eq!(batch_id(b"").len(), 32);
    }

    #[test]
    fn workspace_names_are_path_safe() {
        assert!(is_valid_workspace("shop-eu_1"));
        for bad in ["", "Shop", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(!is_valid_workspace(bad), "{bad}");
        }
    }
}
