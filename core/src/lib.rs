//! Braid's pure core: the logic of the four steps of a customer data platform, one folder each,
//! over a shared vocabulary.
//!
//! | module | step | holds |
//! |---|---|---|
//! | [`collect`] | collect | request bodies of the Segment HTTP API, one body through the pipeline, the edge → ingest hand-off |
//! | [`catalogue`] | catalogue | validation, enrichment, the lake layout and its failure records |
//! | [`unify`] | unify | identity resolution, profiles, the working set over a profile store, record matching |
//! | [`activate`] | activate | personalization at the edge: store entries and the tokens that prove who reads |
//!
//! Shared vocabulary: [`event`] (the one typed view of an event, from the request to the lake
//! and from the lake to profiles), [`timestamp`], [`hex`], the configuration model ([`config`]),
//! and a domain-free JSON reader (`json`).
//!
//! Nothing in this crate does I/O or reads a clock or a random source: the time an event was
//! received, the client's address and everything else that comes from the platform are
//! arguments (`clippy.toml` here refuses the clocks and random sources). The same input gives
//! the same output on every platform, including `wasm32-unknown-unknown`.
//!
//! The contracts this crate implements are written down in `docs/` at the repository root.

pub mod activate;
pub mod catalogue;
pub mod collect;
pub mod config;
pub mod event;
pub mod hex;
mod hll;
mod json;
mod mac;
pub mod segment;
pub mod timestamp;
pub mod unify;

pub use config::{Config, ConfigError};
pub use event::{Event, EventType};
