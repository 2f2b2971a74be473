//! The lake layout: where events land, as specified in `docs/lake-layout.md`.
//!
//! `raw/workspace=W/date=YYYY-MM-DD/hour=HH/<batch-id>.ndjson.gz` holds accepted events, one
//! enriched event per line; `failed/` has the same partitions and holds rejected events with
//! their reason. Partitions are by the time the server received the events (UTC).

use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use crate::enrich::push_hex;

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
    let date = crate::timestamp::format(utc);
    out.push_str(date.get(..10).unwrap_or(&date));
    out.push_str("/hour=");
    out.push_str(date.get(11..13).unwrap_or("00"));
    out
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
    let digest = Sha256::digest(content);
    let mut id = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        push_hex(&mut id, *byte);
    }
    id
}

/// Whether `name` can be a workspace name: 1–64 characters of `a-z`, `0-9`, `_` and `-`, so it
/// is safe as a path segment and a Hive partition value.
pub fn is_valid_workspace(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
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
