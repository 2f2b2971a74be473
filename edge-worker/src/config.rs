//! The endpoint's configuration: workspaces and their write keys, limits, enrichment, CORS.

use braid_core::enrich::EnrichConfig;
use braid_core::validate::Limits;
use serde::{Deserialize, Serialize};

/// Everything the collection endpoint needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// The workspaces; each write key belongs to exactly one.
    pub workspaces: Vec<WorkspaceConfig>,
    /// Size and count limits.
    pub limits: Limits,
    /// Enrichment switches.
    pub enrich: EnrichConfig,
    /// Cross-origin rules for browsers.
    pub cors: CorsConfig,
    /// A first-party cookie holding the visitor's anonymous id, set on every collection answer
    /// (off when absent).
    pub identity_cookie: Option<CookieConfig>,
    /// `GET /v1/personalize` (off when absent).
    pub personalize: Option<PersonalizeConfig>,
}

/// Personalization reads (`docs/personalization.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalizeConfig {
    /// The secret of the store's keys, shared with the unifier that writes them.
    pub key_secret: String,
    /// The secret of the tokens a site's server signs for logged-in users; without it only the
    /// identity cookie identifies the caller.
    pub token_secret: Option<String>,
    /// Trait names visible at the edge (`braid serve` and the export read them).
    pub traits: Vec<String>,
}

/// The first-party identity cookie: set by the server, so it outlives the 7-day cap browsers
/// (Safari) put on cookies that scripts write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    /// Its name.
    pub name: String,
    /// Its `Domain` (`shop.example` to share it with subdomains); none: this host only.
    pub domain: Option<String>,
    /// Its lifetime in days.
    pub max_age_days: u32,
    /// Whether it is `Secure` (HTTPS only). Off only for local testing over plain HTTP.
    pub secure: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "braid_aid".to_owned(),
            domain: None,
            max_age_days: 365,
            secure: true,
        }
    }
}

/// One workspace: a name (a lake partition) and the write keys that send to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Name: 1–64 characters of `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// Write keys of this workspace's sources.
    pub write_keys: Vec<String>,
    /// An optional event rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A token-bucket rate limit on events (not requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained events per second.
    pub events_per_second: u32,
    /// Largest burst, in events (at least one full batch).
    pub burst: u32,
}

/// Which browser origins may send events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins (`https://shop.example`); empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds.
    pub max_age_seconds: u32,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            max_age_seconds: 86_400,
        }
    }
}
