//! Braid's back end, by role, over storage traits that tests implement in memory:
//!
//! - [`ingest`]: the HTTP handlers with what they accept written to an object store;
//! - [`lake`]: the lake's I/O — object stores (a local folder, S3), writing what collection
//!   accepted, the unify feed (each new object applied once), compaction;
//! - [`profiles`]: the profile store — identity resolution and profiles kept in a key-value
//!   store per workspace (SlateDB), rebuilt from the lake when the rules change, and read by the
//!   profile API and personalization;
//! - [`activate`]: destinations — the change log delivered to each, with its own cursor,
//!   retries, dead letters and state in the lake.
//!
//! On top, thin platform glue: [`lambda`] (feature `lambda`) holds the AWS Lambda functions'
//! handlers, with `src/bin/` running them; [`serve`] (feature `serve`) is `braid serve`, Braid on
//! one machine over a local folder. Both run the same HTTP handlers (`braid_edge::Api`) and the
//! same unify step.

pub mod activate;
#[cfg(feature = "serve")]
pub mod client;
pub mod ingest;
pub mod lake;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod profiles;
#[cfg(feature = "serve")]
pub mod serve;
