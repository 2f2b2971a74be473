//! A profile as the profile API shows it: identifiers with when each was first seen, traits
//! with their source and time, computed fields, aggregates, and the history that explains it.

use serde_json::{Map, Value, json};

use super::identity::{Change, DropReason, Identifier, LogEntry, ProfileIds};
use super::profile::Profile;
use crate::timestamp;

/// The profile API's view of one profile.
pub fn profile_view(ids: &ProfileIds, profile: &Profile) -> Value {
    let identifiers: Vec<Value> = ids
        .identifiers
        .iter()
        .map(|(identifier, first_seen)| {
            json!({
                "type": identifier.kind.as_str(),
                "value": identifier.value,
                "firstSeen": timestamp::format(*first_seen),
            })
        })
        .collect();
    let traits: Map<String, Value> = profile
        .traits
        .iter()
        .map(|(key, t)| {
            let value = json!({
                "value": t.value,
                "at": timestamp::format(t.at),
                "source": t.source,
                "messageId": t.message_id,
            });
            (key.clone(), value)
        })
        .collect();
    let history: Vec<Value> = ids.history.iter().map(history_entry).collect();
    // Computed traits and audiences as of the profile's last evaluation (which its timer keeps
    // current: a value that the clock alone changes is evaluated again at that time).
    let computed: Map<String, Value> = profile
        .segment
        .values
        .iter()
        .map(|(name, (value, _))| (name.to_string(), value.clone()))
        .collect();
    let audiences: Map<String, Value> = profile
        .segment
        .audiences
        .iter()
        .map(|(key, entered)| {
            let entered = timestamp::from_unix_millis(*entered).map(timestamp::format);
            (key.to_string(), json!({"enteredAt": entered}))
        })
        .collect();
    let mut view = json!({
        "id": ids.id,
        "identifiers": identifiers,
        "traits": traits,
        "firstSeen": timestamp::format(profile.first_seen),
        "lastSeen": timestamp::format(profile.last_seen),
        "eventCounts": profile.event_counts,
        "sessions": profile.sessions,
        "aggregates": profile.aggregates,
        "computedTraits": computed,
        "audiences": audiences,
        "history": history,
    });
    if let Value::Object(fields) = &mut view {
        let approximate: Vec<&str> = profile
            .segment
            .values
            .iter()
            .filter(|(_, (_, approximate))| *approximate)
            .map(|(name, _)| &**name)
            .collect();
        if !approximate.is_empty() {
            fields.insert("approximateTraits".to_owned(), json!(approximate));
        }
        if let Some(at) = profile
            .segment
            .next_check
            .and_then(timestamp::from_unix_millis)
        {
            fields.insert("nextCheck".to_owned(), json!(timestamp::format(at)));
        }
    }
    // What the profile's bounds kept out, counted (docs/profiles.md), when anything was.
    let over = [
        ("eventsOfUncountedNames", profile.other_events),
        ("refusedTraits", profile.refused_traits),
        ("unlistedDrops", ids.unlisted_drops),
    ];
    if over.iter().any(|(_, n)| *n > 0)
        && let Value::Object(fields) = &mut view
    {
        let over: Map<String, Value> = over
            .into_iter()
            .map(|(name, n)| (name.to_owned(), Value::from(n)))
            .collect();
        fields.insert("overLimits".to_owned(), Value::Object(over));
    }
    view
}

fn names(ids: &[Identifier]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn history_entry(entry: &LogEntry) -> Value {
    let mut out = match &entry.change {
        Change::Created {
            profile,
            identifiers,
        } => json!({"change": "created", "profile": profile, "identifiers": names(identifiers)}),
        Change::Linked {
            profile,
            identifiers,
        } => json!({"change": "linked", "profile": profile, "identifiers": names(identifiers)}),
        Change::Merged { into, from, via } => {
            json!({"change": "merged", "into": into, "from": from, "via": names(via)})
        }
        Change::Dropped(dropped) => {
            let identifier = format!("{}:{}", dropped.kind.as_str(), dropped.value);
            json!({"change": "dropped", "identifier": identifier,
                   "reason": reason_text(&dropped.reason)})
        }
    };
    if let Value::Object(fields) = &mut out {
        fields.insert("messageId".into(), Value::from(entry.message_id.clone()));
        fields.insert("at".into(), Value::from(timestamp::format(entry.at)));
    }
    out
}

/// Why an identifier was left out, in words.
pub fn reason_text(reason: &DropReason) -> String {
    match reason {
        DropReason::Invalid => "not a valid value for its type".to_owned(),
        DropReason::Blocked(pattern) => format!("blocked value ({pattern})"),
        DropReason::Unique => {
            "linking it would put two values of a unique type in one profile".to_owned()
        }
        DropReason::Limit(limit) => {
            format!("linking it would exceed the limit of {limit} values of its type per profile")
        }
        DropReason::TooManyIdentifiers(limit) => {
            format!("linking it would exceed the limit of {limit} identifiers per profile")
        }
        DropReason::TooManyMerges(limit) => {
            format!("linking it would exceed the limit of {limit} merges per profile")
        }
        DropReason::Unverified => {
            "strict identity: the event does not prove it (docs/trust.md)".to_owned()
        }
    }
}
