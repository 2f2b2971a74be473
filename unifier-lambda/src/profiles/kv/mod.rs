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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store could not do it now: trying again may succeed.
    #[error("profile store: {operation}: {message}")]
    Unavailable {
        /// What was attempted (`get`, `scan`, `write`, `flush`, `open`).
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Another writer opened the store: this one must be opened again (and is no longer the
    /// writer).
    #[error(
        "profile store: {operation}: another writer opened this profile store (this one is fenced)"
    )]
    Fenced {
        /// What was attempted.
        operation: &'static str,
    },
    /// Another process holds the data folder's lock (`profiles/LOCK`): it writes these
    /// stores.
    #[error(
        "profile store: another braid process is using the profiles of {folder} ({lock} is locked)"
    )]
    Locked {
        /// The data folder.
        folder: String,
        /// The lock file.
        lock: String,
    },
    /// A write was asked of a store opened read-only.
    #[error("profile store: {operation}: the profile store is open read-only")]
    ReadOnly {
        /// What was attempted.
        operation: &'static str,
    },
    /// The store failed for good (corrupt, or not a store).
    #[error("profile store: {operation}: {message}")]
    Failed {
        /// What was attempted.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl KvError {
    /// A failure, retriable or not.
    pub(crate) fn new(
        operation: &'static str,
        message: impl Into<String>,
        retriable: bool,
    ) -> KvError {
        let message = message.into();
        if retriable {
            KvError::Unavailable { operation, message }
        } else {
            KvError::Failed { operation, message }
        }
    }

    /// Whether trying again may succeed (as opposed to a store that will always fail until it
    /// is opened again: corrupt, fenced, read-only).
    pub fn is_retriable(&self) -> bool {
        matches!(self, KvError::Unavailable { .. })
    }
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

/// The entries under a prefix, a page at a time, in key order.
pub struct Pages {
    start: Vec<u8>,
    end: Vec<u8>,
    size: usize,
}

impl Pages {
    /// The entries whose keys start with `prefix`, `size` at a time.
    pub fn of(prefix: &[u8], size: usize) -> Pages {
        Pages {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
            size,
        }
    }

    /// The next page; `None` once every entry was read.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn next(&mut self, kv: &impl Kv) -> Result<Option<Vec<Entry>>, KvError> {
        let page = kv.scan(&self.start, &self.end, self.size).await?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        self.start.clone_from(last);
        self.start.push(0);
        Ok(Some(page))
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
