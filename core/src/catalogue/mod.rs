//! The catalogue, the second step of the CDP: what an event must be (validation against the
//! Segment Spec and the limits), what Braid adds to it (enrichment), and where it lands (the lake
//! layout, with the failure records of what was rejected).
//!
//! The data map of every source, event and property is `map/`; tracking plans, enforced in
//! collection, are `plan/`, and `replay` lands what a plan blocked once the plan is fixed.

mod config;
pub mod enrich;
pub mod lake;
pub mod map;
pub mod plan;
pub mod replay;
pub mod validate;

pub use config::{CatalogueApiConfig, CatalogueConfig, CompactionConfig};
