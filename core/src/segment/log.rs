//! The change log: its entries (audience entries and exits, computed traits' new values, and —
//! when a destination receives them — profiles updated and merged, each numbered) and how a store keeps them — the changes of one evaluation of one profile (one
//! profile, one time, consecutive numbers) in one stored group, keyed by its last number, and
//! read back as the entries [`Logged::to_json`] shows. A profile's first event often enters a
//! dozen audiences and changes a few computed traits: one group is one write where an entry
//! each was a dozen, and the profile and time are written once.

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeSeq as _, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::hex;
use crate::timestamp;

/// One change of a profile, numbered in the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// Its number in the workspace's change log.
    pub number: u64,
    /// The profile (shared by the changes of one evaluation).
    pub profile: Arc<str>,
    /// When it happened (ms).
    pub at: i64,
    /// What changed.
    pub change: LoggedChange,
}

/// What changed. An audience is shared with the compiled audiences, and reasons are kept as
/// places in its tree until they are shown: a change costs no text until it is written.
#[derive(Clone, Debug, PartialEq)]
pub enum LoggedChange {
    /// The profile entered an audience, for these reasons (the conditions that decided).
    Entered {
        /// The audience.
        audience: Arc<AudienceInfo>,
        /// The conditions that decided.
        reasons: Reasons,
    },
    /// The profile left an audience.
    Exited {
        /// The audience.
        audience: Arc<AudienceInfo>,
        /// The conditions that decided.
        reasons: Reasons,
    },
    /// A computed trait's value changed.
    Computed {
        /// The computed trait.
        name: Arc<str>,
        /// Its value.
        value: Value,
        /// Whether it is a lower bound.
        approximate: bool,
    },
    /// The profile's traits, identifiers or consent may have changed, or it is new (logged
    /// only when a destination receives profile changes: [`super::Segments::log_profiles`]).
    Updated,
    /// The profile was merged into another and is gone.
    Merged {
        /// The profile it is now part of.
        into: Arc<str>,
    },
}

/// An audience as the change log names it: its key, its name, and its leaf conditions in
/// words, in the order of the tree (the reasons of an entry or an exit name them by place).
#[derive(Debug, PartialEq)]
pub struct AudienceInfo {
    /// Its key.
    pub key: Arc<str>,
    /// Its name.
    pub name: String,
    pub(super) leaves: Box<[String]>,
}

impl AudienceInfo {
    /// An audience known by its key alone (one no longer configured).
    pub(super) fn unnamed(key: &Arc<str>) -> Arc<AudienceInfo> {
        Arc::new(AudienceInfo {
            key: Arc::clone(key),
            name: key.to_string(),
            leaves: Box::default(),
        })
    }
}

/// The conditions that decided an entry or an exit: leaves of the audience's tree, by place,
/// with whether each holds, or a reason in words (a merge, a removed audience).
#[derive(Clone, Debug, PartialEq)]
pub enum Reasons {
    /// Leaves by place, each with whether it holds.
    Picked(Arc<[(u16, bool)]>),
    /// A reason in words.
    Text(Arc<str>),
}

impl Reasons {
    /// A reason in words.
    pub fn text(words: &str) -> Reasons {
        Reasons::Text(Arc::from(words))
    }

    /// These leaves.
    pub(super) fn picked(picks: Vec<(u16, bool)>) -> Reasons {
        Reasons::Picked(Arc::from(picks))
    }

    /// The reasons in words, leaves read from `audience`: each deciding condition, as
    /// `not (...)` where it does not hold — as the change log writes them.
    pub fn words(&self, audience: &AudienceInfo) -> Vec<String> {
        serde_json::to_value(StoredReasons(audience, self))
            .ok()
            .and_then(|words| serde_json::from_value(words).ok())
            .unwrap_or_default()
    }
}

impl Logged {
    /// A stable id: the same change (profile, kind, audience or trait, time) has the same id
    /// in every rebuild, so a receiver can recognize a redelivery.
    pub fn id(&self) -> String {
        let (kind, key): (&str, &str) = match &self.change {
            LoggedChange::Entered { audience, .. } => ("entered", &audience.key),
            LoggedChange::Exited { audience, .. } => ("exited", &audience.key),
            LoggedChange::Computed { name, .. } => ("computed", name),
            LoggedChange::Updated => ("updated", ""),
            LoggedChange::Merged { into } => ("merged", into),
        };
        entry_id(&self.profile, kind, key, self.at)
    }

    /// The entry as the change log and the API show it.
    pub fn to_json(&self) -> Value {
        entry(
            self.number,
            &self.profile,
            self.at,
            stored_change(&self.change),
        )
    }
}

/// A stored group that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a change log entry: {0}")]
pub struct LogError(String);

/// The stable id of a change ([`Logged::id`]): of its profile, kind (`entered`, `exited`,
/// `computed`, `updated`, `merged`), audience, trait or surviving profile, and time.
pub(super) fn entry_id(profile: &str, kind: &str, key: &str, at: i64) -> String {
    let text = format!("{profile}\0{kind}\0{key}\0{at}");
    hex::encode(
        Sha256::digest(text.as_bytes())
            .get(..16)
            .unwrap_or_default(),
    )
}

/// A change as a group stores it: its type and what it names. Serialized straight from the
/// change (no JSON tree, no reason texts built): a new profile's first event writes a dozen.
#[derive(Serialize)]
#[serde(tag = "type")]
enum StoredChange<'a> {
    #[serde(rename = "audience_entered")]
    Entered {
        audience: &'a str,
        name: &'a str,
        reasons: StoredReasons<'a>,
    },
    #[serde(rename = "audience_exited")]
    Exited {
        audience: &'a str,
        name: &'a str,
        reasons: StoredReasons<'a>,
    },
    #[serde(rename = "computed_trait")]
    Computed {
        #[serde(rename = "trait")]
        name: &'a str,
        value: &'a Value,
        approximate: bool,
    },
    #[serde(rename = "profile_updated")]
    Updated,
    #[serde(rename = "profile_merged")]
    Merged { into: &'a str },
}

impl<'a> StoredChange<'a> {
    fn of(change: &'a LoggedChange) -> StoredChange<'a> {
        match change {
            LoggedChange::Entered { audience, reasons } => StoredChange::Entered {
                audience: &audience.key,
                name: &audience.name,
                reasons: StoredReasons(audience, reasons),
            },
            LoggedChange::Exited { audience, reasons } => StoredChange::Exited {
                audience: &audience.key,
                name: &audience.name,
                reasons: StoredReasons(audience, reasons),
            },
            LoggedChange::Computed {
                name,
                value,
                approximate,
            } => StoredChange::Computed {
                name,
                value,
                approximate: *approximate,
            },
            LoggedChange::Updated => StoredChange::Updated,
            LoggedChange::Merged { into } => StoredChange::Merged { into },
        }
    }
}

/// Reasons written as [`Reasons::words`] gives them, each text written where it lies.
struct StoredReasons<'a>(&'a AudienceInfo, &'a Reasons);

impl Serialize for StoredReasons<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let StoredReasons(audience, reasons) = *self;
        match reasons {
            Reasons::Text(words) => [&**words].serialize(serializer),
            Reasons::Picked(picks) => {
                let mut seq = serializer.serialize_seq(None)?;
                for &(leaf, holds) in picks.iter() {
                    let Some(text) = audience.leaves.get(usize::from(leaf)) else {
                        continue;
                    };
                    if holds {
                        seq.serialize_element(text)?;
                    } else {
                        seq.serialize_element(&Negated(text))?;
                    }
                }
                seq.end()
            }
        }
    }
}

/// A leaf that does not hold, in words: `not (<text>)`, written without building it.
struct Negated<'a>(&'a str);

impl Serialize for Negated<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("not ({})", self.0))
    }
}

/// A change as a group stores it, as JSON.
pub(super) fn stored_change(change: &LoggedChange) -> Value {
    serde_json::to_value(StoredChange::of(change)).unwrap_or_default()
}

/// The entry the API shows of a stored change numbered `number`.
pub(super) fn entry(number: u64, profile: &str, at: i64, change: Value) -> Value {
    let text = |field: &str| {
        change
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (kind, event, key) = match text("type") {
        "audience_entered" => ("entered", Some("Audience Entered"), text("audience")),
        "audience_exited" => ("exited", Some("Audience Exited"), text("audience")),
        "profile_updated" => ("updated", None, ""),
        "profile_merged" => ("merged", None, text("into")),
        _ => ("computed", None, text("trait")),
    };
    let mut out = Map::new();
    out.insert("id".into(), json!(entry_id(profile, kind, key, at)));
    out.insert("number".into(), json!(number));
    out.insert("profile".into(), json!(profile));
    let time = timestamp::from_unix_millis(at).map(timestamp::format);
    out.insert("at".into(), json!(time));
    if let Some(event) = event {
        out.insert("event".into(), json!(event));
    }
    if let Value::Object(fields) = change {
        out.extend(fields);
    }
    Value::Object(out)
}

/// The groups to store for `logged` (in the order they were logged): each run of changes of one
/// profile at one time, as its last number and its bytes (JSON, compressed with LZ4: a group's
/// entries repeat their words, and a quarter of the bytes is a quarter of the store's writes).
pub fn stored_groups(logged: &[Logged]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for group in
        logged.chunk_by(|a, b| a.profile == b.profile && a.at == b.at && b.number == a.number + 1)
    {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let stored = StoredGroup {
            profile: &first.profile,
            at: first.at,
            first: first.number,
            changes: group.iter().map(|l| StoredChange::of(&l.change)).collect(),
        };
        let json = serde_json::to_vec(&stored).unwrap_or_default();
        let mut bytes = Vec::with_capacity(json.len() / 3);
        bytes.push(LZ4);
        bytes.extend(lz4_flex::compress_prepend_size(&json));
        out.push((last.number, bytes));
    }
    out
}

/// The first byte of a group compressed with LZ4 (its size prepended, as `lz4_flex` writes
/// it); a group written before compression is JSON, which starts with `{`.
const LZ4: u8 = 1;

/// The largest group read back: a profile's evaluation changes at most every audience and
/// computed trait (500 each, a few hundred bytes each).
const MAX_GROUP_BYTES: usize = 16 << 20;

/// A group as stored.
#[derive(Serialize)]
struct StoredGroup<'a> {
    profile: &'a str,
    at: i64,
    first: u64,
    changes: Vec<StoredChange<'a>>,
}

/// The entries of a stored group numbered above `after`, in order. (A store written before
/// groups holds one entry per key, as the API shows it: read as it is.)
///
/// # Errors
///
/// When the bytes are not a group.
pub fn read_group(bytes: &[u8], after: u64) -> Result<Vec<Value>, LogError> {
    let group: Value = match bytes.split_first() {
        Some((&LZ4, compressed)) => {
            let size = compressed
                .get(..4)
                .and_then(|size| <[u8; 4]>::try_from(size).ok())
                .map_or(usize::MAX, |size| {
                    usize::try_from(u32::from_le_bytes(size)).unwrap_or(usize::MAX)
                });
            if size > MAX_GROUP_BYTES {
                return Err(LogError(format!(
                    "a group of {size} bytes, past {MAX_GROUP_BYTES}"
                )));
            }
            let json = lz4_flex::decompress_size_prepended(compressed)
                .map_err(|e| LogError(e.to_string()))?;
            serde_json::from_slice(&json)
        }
        _ => serde_json::from_slice(bytes),
    }
    .map_err(|e| LogError(e.to_string()))?;
    let Some(changes) = group.get("changes").and_then(Value::as_array) else {
        let number = group.get("number").and_then(Value::as_u64);
        return match number {
            Some(number) if number > after => Ok(vec![group]),
            Some(_) => Ok(Vec::new()),
            None => Err(LogError("neither a group nor an entry".to_owned())),
        };
    };
    let field = |name: &str| group.get(name);
    let (Some(profile), Some(at), Some(first)) = (
        field("profile").and_then(Value::as_str),
        field("at").and_then(Value::as_i64),
        field("first").and_then(Value::as_u64),
    ) else {
        return Err(LogError(
            "a group without its profile, time or number".to_owned(),
        ));
    };
    Ok(changes
        .iter()
        .zip(first..)
        .filter(|(_, number)| *number > after)
        .map(|(change, number)| entry(number, profile, at, change.clone()))
        .collect())
}
