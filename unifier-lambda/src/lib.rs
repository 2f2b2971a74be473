//! Braid's back end: the handlers behind the edge, generic over a small storage trait so that
//! the same code runs as AWS Lambda functions over S3 (`src/bin/*`, feature `lambda`) and inside
//! `braid serve` over a local folder.
//!
//! - [`ingest`]: forwarded batches in, one lake object per batch out;
//! - [`unify`]: the entry point for new lake objects, with a durable checkpoint so that a
//!   redelivered notification does nothing twice;
//! - [`compact`]: merges the small objects of closed hours, switching by a manifest so that
//!   readers see every event once;
//! - [`store`]: the storage trait and its local-folder and S3 implementations.

pub mod compact;
pub mod ingest;
pub mod kv;
pub mod object;
pub mod profiles;
pub mod store;
pub mod unify;

pub use ingest::{ForwardRequest, IngestSettings, Reply, ingest};
pub use store::{LocalStore, ObjectInfo, ObjectStore, StoreError};
#[cfg(feature = "lambda")]
pub mod lambda;
