//! The object storage the lake needs, as one small trait: put, get, list and delete whole
//! objects by key. [`LocalStore`] keeps them in a folder (`braid serve`, tests); `S3Store` (feature
//! `s3`) in a bucket. Keys are lake keys (`raw/workspace=W/date=.../x.ndjson.gz`): `/`-separated,
//! relative, without `.` or `..` segments.

mod local;
#[cfg(feature = "s3")]
mod s3;

use std::future::Future;

pub use local::LocalStore;
#[cfg(feature = "s3")]
pub use s3::{MULTIPART_THRESHOLD, S3Store, client as s3_client};

/// One stored object, as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, in nanoseconds since the Unix epoch (0 when the store does not
    /// say). Objects of one writer are in write order by it: a rebuild replays them that way.
    pub modified: i128,
}

/// A storage operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// [`ObjectStore::put`].
    Put,
    /// [`ObjectStore::get`].
    Get,
    /// [`ObjectStore::list`].
    List,
    /// [`ObjectStore::delete`].
    Delete,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Delete => "delete",
        })
    }
}

/// A storage operation that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key is not one the stores accept ([`is_valid_key`]): it will never work.
    #[error("{operation} {key:?}: not a valid object key")]
    InvalidKey {
        /// What was attempted.
        operation: Operation,
        /// The key.
        key: String,
    },
    /// The store could not do it now (throttled, unavailable, a full disk): trying again may
    /// succeed.
    #[error("{operation} {key}: {message}")]
    Unavailable {
        /// What was attempted.
        operation: Operation,
        /// The key (or prefix).
        key: String,
        /// What went wrong.
        message: String,
    },
    /// The store refused it for good (denied access, a bad request).
    #[error("{operation} {key}: {message}")]
    Refused {
        /// What was attempted.
        operation: Operation,
        /// The key (or prefix).
        key: String,
        /// What went wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// A stable name for the kind of failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::InvalidKey { .. } => "InvalidKey",
            StoreError::Unavailable { .. } => "StoreUnavailable",
            StoreError::Refused { .. } => "StoreRefused",
        }
    }

    /// A failure, retriable or not.
    pub(crate) fn new(
        operation: Operation,
        key: &str,
        message: impl Into<String>,
        retriable: bool,
    ) -> StoreError {
        let (key, message) = (key.to_owned(), message.into());
        if retriable {
            StoreError::Unavailable {
                operation,
                key,
                message,
            }
        } else {
            StoreError::Refused {
                operation,
                key,
                message,
            }
        }
    }
}

/// Whole-object storage by key.
///
/// A `put` that returns `Ok` is durable: the handlers acknowledge events on the strength of it.
/// A `put` to an existing key replaces the object atomically: readers see the old or the new
/// object, never a mix.
pub trait ObjectStore: Send + Sync {
    /// Stores `body` under `key`.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The object under `key`, or `None` when there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>, StoreError>> + Send;

    /// Removes the object under `key` (nothing happens when there is none).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Whether `key` is a key the stores accept: relative, `/`-separated, no empty, `.` or `..`
/// segment, no segment starting with `.` (temporary files of [`LocalStore`] do).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1_024
        && key.split('/').all(|segment| {
            !segment.is_empty() && !segment.starts_with('.') && !segment.contains('\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_store() {
        assert!(is_valid_key(
            "raw/workspace=w/date=2024-05-01/hour=10/a.ndjson.gz"
        ));
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", "a/./b", ".hidden", "a/.x.tmp", "a\\b",
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }
}
