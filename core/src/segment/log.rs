//! The change log as a store keeps it: the changes of one evaluation of one profile (one
//! profile, one time, consecutive numbers) in one stored group, keyed by its last number, and
//! read back as the entries [`Logged::to_json`] shows. A profile's first event often enters a
//! dozen audiences and changes a few computed traits: one group is one write where an entry each
//! was a dozen, and the profile and time are written once.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::stream::{Logged, LoggedChange};
use crate::hex;
use crate::timestamp;

/// A stored group that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a change log entry: {0}")]
pub struct LogError(String);

/// The stable id of a change ([`Logged::id`]): of its profile, kind (`entered`, `exited`,
/// `computed`), audience or trait, and time.
pub(super) fn entry_id(profile: &str, kind: &str, key: &str, at: i64) -> String {
    let text = format!("{profile}\0{kind}\0{key}\0{at}");
    hex::encode(
        Sha256::digest(text.as_bytes())
            .get(..16)
            .unwrap_or_default(),
    )
}

/// A change as a group stores it: its type and what it names.
pub(super) fn stored_change(change: &LoggedChange) -> Value {
    match change {
        LoggedChange::Entered { audience, reasons } => {
            json!({"type": "audience_entered", "audience": &*audience.key, "name": audience.name,
                   "reasons": reasons.words(audience)})
        }
        LoggedChange::Exited { audience, reasons } => {
            json!({"type": "audience_exited", "audience": &*audience.key, "name": audience.name,
                   "reasons": reasons.words(audience)})
        }
        LoggedChange::Computed {
            name,
            value,
            approximate,
        } => json!({"type": "computed_trait", "trait": &**name, "value": value,
                    "approximate": approximate}),
    }
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
/// profile at one time, as its last number and its bytes.
pub fn stored_groups(logged: &[Logged]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for group in
        logged.chunk_by(|a, b| a.profile == b.profile && a.at == b.at && b.number == a.number + 1)
    {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let changes: Vec<Value> = group.iter().map(|l| stored_change(&l.change)).collect();
        let value = json!({"profile": &*first.profile, "at": first.at, "first": first.number,
                           "changes": changes});
        out.push((last.number, value.to_string().into_bytes()));
    }
    out
}

/// The entries of a stored group numbered above `after`, in order. (A store written before
/// groups holds one entry per key, as the API shows it: read as it is.)
///
/// # Errors
///
/// When the bytes are not a group.
pub fn read_group(bytes: &[u8], after: u64) -> Result<Vec<Value>, LogError> {
    let group: Value = serde_json::from_slice(bytes).map_err(|e| LogError(e.to_string()))?;
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
