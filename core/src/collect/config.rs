//! `[collect]` and `[[workspaces]]`: who may send (write keys, their workspace and rate limit),
//! from where (CORS), the first-party identity cookie, the browser SDK's files, and the hand-off
//! between an edge and ingest.

use serde::{Deserialize, Serialize};

/// The collection step's part of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Which browser origins may send events.
    pub cors: CorsConfig,
    /// A first-party cookie holding the visitor's anonymous id, set on every collection answer
    /// (off when absent).
    pub identity_cookie: Option<CookieConfig>,
    /// The secret an edge signs forwarded batches with and ingest checks (`docs/forward.md`);
    /// without it, `POST /v1/forward` is refused and nothing is forwarded. Secret: may come
    /// from `BRAID_FORWARD_SECRET` instead.
    pub forward_secret: Option<String>,
    /// Edge mode: accepted events are forwarded, signed, to this ingest
    /// (`https://host/v1/forward`) instead of being stored here. The Cloudflare Worker needs it.
    pub upstream: Option<String>,
    /// The browser SDK's files, served first-party.
    pub sdk: SdkConfig,
    /// The identity secret of workspaces that name none (`docs/trust.md`): the key of the HMAC
    /// a site's server gives its pages to prove a `userId` or email. Secret: may come from
    /// `BRAID_IDENTITY_SECRET` instead.
    pub identity_secret: Option<String>,
}

/// One workspace: a name (a lake partition) and the write keys that send to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Name: 1–64 characters of `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// Write keys of this workspace's sources (none on a platform that only receives forwarded
    /// batches, such as the ingest function behind an edge).
    #[serde(default)]
    pub write_keys: Vec<String>,
    /// An optional event rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Keys of server-side sources (secret, never in a page): their events' identifiers count
    /// as proven (`docs/trust.md`). Use one for `braid import`.
    #[serde(default)]
    pub server_keys: Vec<String>,
    /// This workspace's identity secret (else `[collect] identity_secret`).
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// Strict identity: a user id or email a client claims without proof is kept in the lake
    /// but links nothing, and such an event never changes the traits of a profile that holds a
    /// user id or email (`docs/trust.md`).
    #[serde(default)]
    pub verify_identity: bool,
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
    /// The name of the browser's credential cookie: a random value the server issues
    /// (`HttpOnly`), by which personalization finds the visitor's profile (`docs/trust.md`).
    pub credential: String,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "braid_aid".to_owned(),
            domain: None,
            max_age_days: 365,
            secure: true,
            credential: "braid_key".to_owned(),
        }
    }
}

/// Where the browser SDK's files (`sdk-js/dist`, built by `npm run build`) are and the URL path
/// they are served under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdkConfig {
    /// `braid serve`: the folder; without it the SDK is not served. Relative to the
    /// configuration file's folder. (The Worker serves its `SDK` assets binding.)
    pub dir: Option<std::path::PathBuf>,
    /// The URL path prefix (the snippet's `sdkPath`): starts with `/`, does not end with one.
    pub path: String,
}

impl Default for SdkConfig {
    fn default() -> Self {
        SdkConfig {
            dir: None,
            path: "/sdk".to_owned(),
        }
    }
}
