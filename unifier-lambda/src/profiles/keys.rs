//! The profile store's keys (`docs/profiles.md`): in each workspace's database, and beside it in
//! the lake's store (the `CURRENT` pointer to the live generation).
//!
//! | key | value |
//! |---|---|
//! | `meta` | the counters a unifier resumes from |
//! | `p/<profile id>` | the profile's record (`braid_core::unify::encode_record`) |
//! | `i/<type>\0<value>` | the id of the profile that has the identifier |
//! | `m/<messageId>` | when the event was received (ms), kept for the dedupe window |
//! | `e/<profile id>/<sequence, 16 hex>` | the lake line of an event applied to the profile |
//! | `c/e/<type>\0<source>\0<name>` | the data map's entry of an event (`braid_core::catalogue::map`) |
//! | `c/meta` | the data map's counters |
//! | `c/failures` | the data map's count of refusals (`failed/`), by reason |
//! | `a/<number, 16 hex>` | the change log: an audience entry or exit, or a computed trait's new value (`braid_core::segment::Logged`), kept `[segment] change_log_days` |
//! | `t/<due ms, 16 hex>/<profile id>` | a profile's timer: when the clock alone can change its audiences or computed traits (empty value) |

use braid_core::catalogue::map::EventKey;
use braid_core::unify::Identifier;
use serde::{Deserialize, Serialize};

pub(super) fn identifier_key(id: &Identifier) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + id.kind.as_str().len() + id.value.len());
    key.extend_from_slice(b"i/");
    key.extend_from_slice(id.kind.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(id.value.as_bytes());
    key
}

pub(super) fn profile_key(id: &str) -> Vec<u8> {
    format!("p/{id}").into_bytes()
}

pub(super) fn seen_key(message_id: &str) -> Vec<u8> {
    format!("m/{message_id}").into_bytes()
}

pub(super) fn event_key(profile: &str, sequence: u64) -> Vec<u8> {
    format!("e/{profile}/{sequence:016x}").into_bytes()
}

pub(super) const META_KEY: &[u8] = b"meta";

/// The prefix of the change log.
pub(super) const CHANGE_PREFIX: &[u8] = b"a/";

pub(super) fn change_key(number: u64) -> Vec<u8> {
    format!("a/{number:016x}").into_bytes()
}

/// The prefix of the timers.
pub(super) const TIMER_PREFIX: &[u8] = b"t/";

/// A timer's key: times sort as their 16 hex digits (a time before 1970 is not a due time).
pub(super) fn timer_key(due: i64, profile: &str) -> Vec<u8> {
    let due = u64::try_from(due).unwrap_or(0);
    format!("t/{due:016x}/{profile}").into_bytes()
}

/// The end of the timers due at or before `now`.
pub(super) fn timers_until(now: i64) -> Vec<u8> {
    let after = u64::try_from(now).unwrap_or(0).saturating_add(1);
    format!("t/{after:016x}").into_bytes()
}

/// A timer key's time and profile.
pub(super) fn parse_timer(key: &[u8]) -> Option<(i64, String)> {
    let text = std::str::from_utf8(key.strip_prefix(TIMER_PREFIX)?).ok()?;
    let (due, profile) = text.split_once('/')?;
    let due = i64::try_from(u64::from_str_radix(due, 16).ok()?).ok()?;
    Some((due, profile.to_owned()))
}

/// The prefix of the data map's event entries.
pub(super) const MAP_PREFIX: &[u8] = b"c/e/";

/// The data map's counters.
pub(super) const MAP_META_KEY: &[u8] = b"c/meta";

/// The data map's count of refusals.
pub(super) const MAP_FAILURES_KEY: &[u8] = b"c/failures";

pub(super) fn map_key(event: &EventKey) -> Vec<u8> {
    let mut key = MAP_PREFIX.to_vec();
    for (i, part) in [&event.kind, &event.source, &event.name].iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

pub(super) const DAY_MILLIS: u64 = 86_400_000;

/// What `profiles/workspace=W/CURRENT` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Current {
    pub(super) generation: u64,
    pub(super) fingerprint: String,
}

/// Where a workspace's `CURRENT` pointer is, in the lake's store.
pub(super) fn current_key(workspace: &str) -> String {
    format!("profiles/workspace={workspace}/CURRENT")
}

/// Where a workspace's database of a generation is.
pub(super) fn store_path(workspace: &str, generation: u64) -> String {
    format!("profiles/workspace={workspace}/g{generation}")
}
