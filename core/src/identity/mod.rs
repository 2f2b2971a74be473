//! Identity resolution: identifiers (`type:value`), their normalisation and the rules that
//! govern linking them, extraction from events, and the identity graph that turns fragments of
//! identity into one profile per person. Pure and deterministic, like the rest of the core.

mod extract;
mod graph;
mod id;
mod normalize;
mod profile;
mod record;
mod rules;
#[cfg(test)]
mod tests;
mod view;

pub use extract::{DropReason, Dropped, Extracted, extract};
pub use graph::{Applied, Change, GraphChanges, IdentityGraph, LogEntry, ProfileId, ProfileIds};
pub use id::{IdType, Identifier};
pub use normalize::normalize;
pub use profile::{
    Aggregate, AggregateOp, Changes, Lookups, Profile, ProfileConfig, Survivorship, TraitValue,
    Unifier,
};
pub use record::{
    RECORD_VERSION, RecordError, StoredCounters, decode_record, encode_record, fingerprint,
    from_millis, lineage, millis,
};
pub use rules::{DEFAULT_BLOCKED, IdentityRules, PLACEHOLDERS, TypeRule};
pub use view::{profile_view, reason_text};
