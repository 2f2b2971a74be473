//! Unification, the third step of the CDP: identity resolution into one profile per person (the
//! identity graph and its rules), the profile itself (traits under survivorship rules, computed
//! fields and aggregates), the working set a platform keeps over its profile store with the
//! records that store holds, the profile API's view, and the matching of CRM-like records
//! (`braid resolve`, `braid import`).
//!
//! Pure and deterministic like the rest of the core: the same events in the same order give the
//! same profiles on every platform. The contract is `docs/profiles.md`.

pub mod computed;
mod config;
mod identity;
pub mod matching;
mod profile;
mod record;
pub mod sketch;
#[cfg(test)]
mod tests;
mod unifier;
mod view;

pub use config::{ProfileStoreConfig, UnifyConfig};
pub use identity::{
    Applied, Change, DEFAULT_BLOCKED, DropReason, Dropped, Extracted, GraphChanges, IdType,
    Identifier, IdentityGraph, IdentityRules, LogEntry, MAX_LISTED_DROPS,
    MAX_SENDERS_PER_MESSAGE_ID, PLACEHOLDERS, ProfileId, ProfileIds, RulesError, Seen, TypeRule,
    extract, normalize, sender_of,
};
pub use profile::{
    Aggregate, AggregateOp, ComputedValues, MAX_CONSENT_CATEGORIES, MAX_COUNTED_VALUES,
    MAX_LIST_ITEMS, Memberships, Profile, ProfileConfig, Segmented, Survivorship, TraitValue,
    counted_name,
};
pub use record::{
    RECORD_VERSION, RecordError, RowReads, StoredCounters, StoredSeen, decode_preview_row,
    decode_preview_row_reading, decode_record, decode_seen, encode_preview_row, encode_record,
    encode_seen, fingerprint, lineage,
};
pub use unifier::{Absorbed, Changes, Lookups, TimerChange, Unifier};
pub use view::{profile_view, reason_text};
