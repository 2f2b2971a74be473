//! Why a profile-store operation failed.

use crate::lake::feed::StepError;
use crate::lake::store::StoreError;

use super::kv::KvError;

/// A profile-store operation that failed: applying events, opening or rebuilding a store,
/// reading a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The key-value store failed (unavailable, or fenced by another writer).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The lake's store failed (reading objects for a rebuild, the `CURRENT` pointer).
    #[error(transparent)]
    Lake(#[from] StoreError),
    /// A compacted partition's manifest could not be read during a rebuild.
    #[error(transparent)]
    Compaction(#[from] crate::lake::compact::CompactError),
    /// What the store holds is not what Braid wrote: it needs a rebuild.
    #[error("the profile store is corrupt: {detail}")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// Read-only beside a writer, and this workspace has no store yet.
    #[error("workspace {workspace:?} has no profile store yet")]
    NoStore {
        /// The workspace.
        workspace: String,
    },
    /// A write was asked of stores opened read-only.
    #[error("the profile stores are open read-only")]
    ReadOnly,
}

impl StepError for ProfileError {
    fn is_retriable(&self) -> bool {
        ProfileError::is_retriable(self)
    }

    fn kind(&self) -> &'static str {
        ProfileError::kind(self)
    }
}

impl ProfileError {
    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ProfileError::Kv(error) => error.is_retriable(),
            ProfileError::Lake(error) => error.is_retriable(),
            ProfileError::Compaction(error) => error.is_retriable(),
            ProfileError::Corrupt { .. }
            | ProfileError::NoStore { .. }
            | ProfileError::ReadOnly => false,
        }
    }

    /// Whether the store failed for good and must be opened again (another writer fenced it).
    pub(super) fn needs_reopen(&self) -> bool {
        matches!(self, ProfileError::Kv(error) if !error.is_retriable())
    }

    /// A stable name for the kind of failure (Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProfileError::Kv(error) if error.is_retriable() => "ProfileStoreUnavailable",
            ProfileError::Kv(_) => "ProfileStoreFailed",
            ProfileError::Lake(error) => error.kind(),
            ProfileError::Compaction(error) => error.kind(),
            ProfileError::Corrupt { .. } => "ProfileStoreCorrupt",
            ProfileError::NoStore { .. } => "NoProfileStore",
            ProfileError::ReadOnly => "ReadOnly",
        }
    }
}

pub(super) fn corrupt(detail: String) -> ProfileError {
    ProfileError::Corrupt { detail }
}
