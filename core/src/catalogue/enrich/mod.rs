//! Enrichment: what Braid adds to a valid event before it lands in the lake — the time it was
//! received, a clock-skew-corrected timestamp, the (anonymised) client IP, the parsed user agent
//! and a bot flag, UTM campaign fields, the referrer's class, and a deterministic `messageId`.
//!
//! Each step is switched by [`EnrichConfig`]; what each adds is specified in
//! `docs/wire-format.md`.

mod agent;
mod campaign;
mod config;
mod ip;
mod message_id;
mod referrer;
mod skew;
mod steps;
#[cfg(test)]
mod tests;
mod url;

pub use agent::{Agent, AgentCache, DeviceType};
pub use config::{EnrichConfig, IpPolicy};
pub use ip::anonymize;
pub use referrer::{ReferrerClass, classify};
pub use steps::{EnrichInput, enrich};
