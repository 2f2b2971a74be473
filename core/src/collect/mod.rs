//! Collection, the first step of the CDP: the Segment HTTP Tracking API's request bodies, one
//! body through the pipeline (validated, normalised and enriched by the catalogue's rules into
//! lake lines), and the signed hand-off from an edge to ingest.
//!
//! Planned here (see the open issues): inbound webhooks mapped to events, and source connectors.

mod batch;
mod body;
mod config;
pub mod forward;
mod trust;

pub use batch::{BatchOutcome, RequestInfo, process_batch};
pub use body::ParsedBody;
pub use config::{CollectConfig, CookieConfig, CorsConfig, RateLimit, SdkConfig, WorkspaceConfig};
pub use trust::{EMAIL_HASH, Trust, USER_HASH, browser_id, identity_hash};
