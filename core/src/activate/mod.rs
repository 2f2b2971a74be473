//! Activation, the fourth step of the CDP: what reaches the tools and pages that act on
//! customers. Today: personalization at the edge (the entries the edge's key-value store holds,
//! and the tokens that prove who may read one), and the first parts of webhook destinations
//! (signatures, outcomes, retries, the address rule: [`webhook`]).
//!
//! Planned here (see the open issues): the destination runtime over the change log,
//! destination payloads and field mappings, and deletion plans.

mod config;
pub mod personalize;
pub mod webhook;

pub use config::{ActivateConfig, PersonalizeConfig, ProfileApiConfig};
