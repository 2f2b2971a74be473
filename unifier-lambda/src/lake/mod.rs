//! The lake's I/O: object stores (a local folder, S3), lake objects (gzip NDJSON), writing what
//! collection accepted (one object per request for the ingest function, group commit for
//! `braid serve`), the unify feed (each new object applied once, with checkpoints),
//! compaction, and replays of `failed/`. The layout itself is `braid_core::catalogue::lake` (`docs/lake-layout.md`).

pub mod compact;
pub mod feed;
pub mod group;
pub mod object;
pub mod replay;
pub mod store;
pub mod write;
