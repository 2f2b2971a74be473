//! Identity resolution: identifiers (`type:value`), their normalisation and the rules that
//! govern linking them, extraction from events, and the identity graph that turns fragments of
//! identity into one profile per person. Pure and deterministic, like the rest of the core.

mod extract;
mod graph;
mod id;
mod normalize;
mod profile;
mod rules;
#[cfg(test)]
mod tests;

pub use extract::{DropReason, Dropped, Extracted, extract};
pub use graph::{Applied, Change, IdentityGraph, LogEntry, ProfileId, ProfileIds};
pub use id::{IdType, Identifier};
pub use normalize::normalize;
pub use profile::{
    Aggregate, AggregateOp, Profile, ProfileConfig, Survivorship, TraitValue, Unifier,
};
pub use rules::{DEFAULT_BLOCKED, IdentityRules, PLACEHOLDERS, TypeRule};
