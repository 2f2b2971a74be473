//! Braid's collection endpoint as platform-neutral handlers: a request comes in as plain data, a
//! response goes out as plain data, and storing the accepted events is left to the platform.
//!
//! `braid serve` runs these handlers natively (tokio + axum); the Cloudflare Worker runs the
//! very same handlers in workerd. Nothing here knows about a server framework, a clock or a
//! disk: the time of the request and the client's address are arguments, and a request that
//! carries events comes back as [`Handled::Store`] — a [`LakeWrite`] for the platform to make
//! durable and a [`Reply`] that gives the response once it has.
//!
//! The HTTP contract (routes, auth, statuses, bodies) is `docs/wire-format.md`.

mod auth;
mod collector;
mod config;
mod cors;
mod decode;
mod error;
mod http;
mod personalize;
mod rate;
mod sdk;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "wasm32")]
mod worker_glue;

pub use collector::{Collector, Counts, Handled, LakeWrite, Reply};
pub use config::{
    CookieConfig, CorsConfig, EdgeConfig, PersonalizeConfig, RateLimit, WorkspaceConfig,
};
pub use error::RequestError;
pub use http::{HttpRequest, HttpResponse};
pub use personalize::Personalization;
pub use sdk::{sdk_content_type, sdk_response};
