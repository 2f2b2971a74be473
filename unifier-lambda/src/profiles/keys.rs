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
