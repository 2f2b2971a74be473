//! `[unify]`: the rules of identity resolution, how profiles are computed, and how the profile
//! store is kept.

use serde::{Deserialize, Serialize};

use super::identity::IdentityRules;
use super::profile::ProfileConfig;

/// The unify step's part of the configuration. Changing `identity` or `profiles` changes the
/// profiles (a store built under other rules is rebuilt from the lake); changing `store` does
/// not.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnifyConfig {
    /// Identity resolution rules.
    pub identity: IdentityRules,
    /// How profiles are computed.
    pub profiles: ProfileConfig,
    /// How the profile store is kept.
    pub store: ProfileStoreConfig,
}

/// How the profile store is kept. Changing these does not change any profile, so they are not
/// part of the rules' fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileStoreConfig {
    /// Profiles each workspace keeps in memory between batches (the least recently used are
    /// evicted beyond it, and read back from the store when needed).
    pub cache_profiles: usize,
    /// How long each profile's events are kept for the events API (from when they were
    /// unified); 0 keeps none.
    pub event_retention_days: u64,
}

impl Default for ProfileStoreConfig {
    fn default() -> Self {
        ProfileStoreConfig {
            cache_profiles: 200_000,
            event_retention_days: 90,
        }
    }
}
