//! Activation, the fourth step of the CDP: what reaches the tools and pages that act on
//! customers. Today: personalization at the edge (the entries the edge's key-value store holds,
//! and the tokens that prove who may read one), and destinations of the change log
//! ([`destination`]: what each receives, its mapping, how a failure moves it; [`webhook`]:
//! signatures, outcomes, retries, the address rule; [`postgres`]: tables kept equal to the
//! profiles).
//!
//! Planned here (see the open issues): destinations of event streams, files and the edge's
//! store, and deletion plans.

mod config;
pub mod destination;
pub mod files;
pub mod personalize;
pub mod postgres;
pub mod replay;
pub mod settings;
pub mod webhook;

pub use config::{ActivateConfig, PersonalizeConfig, ProfileApiConfig};
