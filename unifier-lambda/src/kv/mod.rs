//! The key-value storage the profile store needs, as one small trait: point reads, ordered
//! range reads, atomic write batches, and a flush that makes every write before it durable.
//! [`SlateKv`] is SlateDB, an LSM tree on object storage, on a local folder (`braid serve`) or
//! a bucket (the unify Lambda); [`MemoryKv`] is a map, for tests.

mod memory;
mod slate;

use std::future::Future;

pub use memory::{MemoryHome, MemoryKv};
#[cfg(feature = "s3")]
pub use slate::S3Home;
pub use slate::{LocalHome, SlateKv, SlateOptions};

/// A key-value operation that failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("profile store: {operation}: {message}")]
pub struct KvError {
    /// What was attempted (`get`, `scan`, `write`, `flush`, `open`).
    pub operation: &'static str,
    /// What went wrong.
    pub message: String,
    /// Whether trying again may succeed (an unavailable store), as opposed to one that will
    /// always fail (a corrupt store, or one another writer has taken over).
    pub retriable: bool,
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvWrite {
    /// Sets `key` to `value`, kept for `ttl_millis` after the write when given (then it reads
    /// as absent).
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// How long it is kept, in milliseconds (`None`: for ever).
        ttl_millis: Option<u64>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// Ordered key-value storage with one writer.
///
/// A [`Kv::write`] is atomic (all of the batch or none of it) and visible to reads at once;
/// it is durable only once a later [`Kv::flush`] returns `Ok`. Writes become durable in the
/// order they were made.
pub trait Kv: Send + Sync {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send;

    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, KvError>> + Send;

    /// Applies `batch` atomically.
    fn write(&self, batch: Vec<KvWrite>) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Makes every write made so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Flushes and closes the store; nothing may use it after.
    fn close(&self) -> impl Future<Output = Result<(), KvError>> + Send;
}

/// Where the stores live: opens (creating) the store at a path.
pub trait KvHome: Send + Sync {
    /// The stores.
    type Kv: Kv + 'static;

    /// Opens (creating) the store at `path` (`/`-separated, relative).
    fn open(&self, path: &str) -> impl Future<Output = Result<Self::Kv, KvError>> + Send;

    /// Whether its stores are opened read-only (beside a writer elsewhere): they are then
    /// never created, rebuilt or written.
    fn read_only(&self) -> bool {
        false
    }
}

/// The end of the range of keys that start with `prefix` (for [`Kv::scan`]).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xFF (or the prefix was empty): to the end of the key space.
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_their_prefix() {
        assert_eq!(prefix_end(b"p/"), b"p0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        let end = prefix_end(b"e/p_1/");
        assert!(b"e/p_1/ffffffffffffffff".as_slice() < end.as_slice());
        assert!(b"e/p_10".as_slice() >= end.as_slice());
    }
}
