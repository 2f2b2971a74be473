//! Identity resolution: identifiers (`type:value`), their normalisation and the rules that
//! govern linking them, extraction from events, and the identity graph that turns fragments of
//! identity into one profile per person.

mod extract;
mod graph;
mod id;
mod normalize;
mod rules;

pub use extract::{DropReason, Dropped, Extracted, extract, sender_of};
pub use graph::{
    Applied, Change, GraphChanges, IdentityGraph, LogEntry, MAX_LISTED_DROPS,
    MAX_SENDERS_PER_MESSAGE_ID, ProfileId, ProfileIds, Seen,
};
pub use id::{IdType, Identifier};
pub use normalize::normalize;
pub use rules::{DEFAULT_BLOCKED, IdentityRules, PLACEHOLDERS, RulesError, TypeRule};
