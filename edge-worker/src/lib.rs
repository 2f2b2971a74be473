//! Every HTTP route of Braid as a platform-neutral handler ([`Api`]): a request comes in as
//! plain data, a response goes out as plain data, and whatever needs a platform — storing
//! events, reading a profile or a file — is handed back to it as a step to finish.
//!
//! `braid serve` runs these handlers natively (`braid_unifier::serve`, over axum); the
//! Cloudflare Worker runs the very same handlers in workerd (`worker.rs`, wasm32 only); the
//! ingest Lambda function runs them behind a function URL (`braid_unifier::lambda`). Nothing
//! here knows about a server framework, a clock or a disk: the time of the request and the
//! client's address are arguments.
//!
//! The HTTP contract (routes, auth, statuses, the one error body) is `docs/http-api.md`.

mod api;
mod audiences;
mod auth;
mod catalogue;
mod collect;
mod cookie;
mod cors;
mod decode;
mod destinations;
mod error;
mod forward;
mod handled;
mod http;
mod personalize;
mod profiles;
mod rate;
mod sdk;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "wasm32")]
mod worker;

pub use api::Api;
pub use error::ApiError;
pub use handled::{
    AudienceQuery, AudienceRead, CatalogueQuery, CatalogueRead, Counts, DestinationsRead, Handled,
    Personalization, ProfileAnswer, ProfileQuery, ProfileRead, ReplayRequest, Reply, SdkRead,
};
pub use http::{HttpRequest, HttpResponse, percent_decode};
