//! Activation, the fourth step of the CDP: what reaches the tools and pages that act on
//! customers. Today: personalization at the edge (the entries the edge's key-value store holds,
//! and the tokens that prove who may read one).
//!
//! Planned here (see the open issues): destination payloads and field mappings, the outbox of
//! profile and audience changes, and deletion plans.

mod config;
pub mod personalize;

pub use config::{ActivateConfig, PersonalizeConfig, ProfileApiConfig};
