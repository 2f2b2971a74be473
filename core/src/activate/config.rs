//! `[activate]`: who may read profiles, and what of them: the profile API for servers, and
//! personalization at the edge for pages.

use serde::{Deserialize, Serialize};

/// The activation step's part of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivateConfig {
    /// `GET /v1/profiles/...` (off when absent).
    pub profile_api: Option<ProfileApiConfig>,
    /// `GET /v1/personalize` and the edge store's entries (off when absent).
    pub personalize: Option<PersonalizeConfig>,
    /// Where the change log is delivered (`[[activate.destinations]]`, `docs/destinations.md`).
    pub destinations: Vec<super::destination::DestinationConfig>,
}

/// The profile API: whole profiles and their events, for a server that holds the token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileApiConfig {
    /// The bearer token (`Authorization: Bearer <token>`). Secret: may come from
    /// `BRAID_PROFILE_TOKEN` instead.
    pub token: String,
}

/// Personalization reads (`docs/personalization.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalizeConfig {
    /// The secret of the edge store's keys, shared by the unifier that writes them and the edge
    /// that reads them. Secret: may come from `BRAID_EDGE_KEY_SECRET` instead.
    pub key_secret: String,
    /// The secret of the tokens a site's server signs for logged-in users; without it only the
    /// identity cookie identifies the caller. Secret: may come from `BRAID_TOKEN_SECRET`.
    pub token_secret: Option<String>,
    /// Trait names visible at the edge; every other trait stays in Braid.
    pub traits: Vec<String>,
}
