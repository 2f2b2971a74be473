//! Deterministic message ids for events sent without one.

use sha2::{Digest, Sha256};

/// `braid-` and 32 hex digits of SHA-256 over the workspace and the event's JSON as received, so
/// that a client retrying the same request gets the same id and deduplication works.
pub(super) fn derive(workspace: &str, raw_event: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(workspace.as_bytes());
    hasher.update([0]);
    hasher.update(raw_event.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(38);
    id.push_str("braid-");
    crate::hex::push(&mut id, digest.get(..16).unwrap_or_default());
    id
}
