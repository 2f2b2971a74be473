//! Braid's pure core: the Segment Spec event model, validation, enrichment and the lake layout.
//!
//! Nothing in this crate does I/O or reads a clock or a random source: the time an event was
//! received, the client's address and everything else that comes from the platform are
//! arguments. The same input gives the same output on every platform, including
//! `wasm32-unknown-unknown`.
//!
//! The contracts this crate implements are written down in `docs/` at the repository root:
//! `docs/wire-format.md` (what clients send, what is rejected and why) and `docs/lake-layout.md`
//! (what lands on disk).

pub mod enrich;
pub mod event;
pub mod forward;
pub mod identity;
pub mod ingest;
mod json;
pub mod lake;
pub mod personalize;
pub mod resolve;
pub mod timestamp;
pub mod validate;

pub use event::{Event, EventType};
pub use ingest::{BatchOutcome, FailedEvent, IngestConfig, RequestInfo, process_batch};
pub use validate::{Limits, ValidationError};
