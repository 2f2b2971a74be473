//! `braid.toml`: where to listen, where the data lives, workspaces, limits, enrichment and CORS.
//! Every setting has a default, so no file is needed to start.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use braid_core::enrich::EnrichConfig;
use braid_core::identity::{IdentityRules, ProfileConfig};
use braid_core::validate::Limits;
use braid_edge::{CookieConfig, CorsConfig, EdgeConfig, PersonalizeConfig, WorkspaceConfig};
use braid_unifier::profiles::StoreSettings;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServeConfig {
    /// Address to listen on.
    pub(crate) listen: SocketAddr,
    /// The data folder (lake under `raw/` and `failed/`).
    pub(crate) data: PathBuf,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy you run).
    pub(crate) trust_forwarded_for: bool,
    /// Workspaces and their write keys.
    pub(crate) workspaces: Vec<WorkspaceConfig>,
    /// Size and count limits.
    pub(crate) limits: Limits,
    /// Enrichment switches.
    pub(crate) enrich: EnrichConfig,
    /// Browser origins.
    pub(crate) cors: CorsConfig,
    /// A first-party cookie with the visitor's anonymous id on every collection answer.
    pub(crate) identity_cookie: Option<CookieConfig>,
    /// The secret an edge (the Cloudflare Worker) signs forwarded batches with; without it,
    /// `POST /v1/forward` is refused. Also read from `BRAID_FORWARD_SECRET`.
    pub(crate) forward_secret: Option<String>,
    /// Edge mode: forward accepted events to this ingest (`http://host:port/v1/forward`),
    /// signed with `forward_secret`, instead of writing the local lake.
    pub(crate) upstream: Option<String>,
    /// The bearer token of the profile API (`GET /v1/profiles/...`); without it the API is off.
    /// Also read from `BRAID_PROFILE_TOKEN`.
    pub(crate) profile_token: Option<String>,
    /// Identity resolution rules.
    pub(crate) identity: IdentityRules,
    /// How profiles are computed.
    pub(crate) profiles: ProfileConfig,
    /// How the profile store is kept (memory, event retention).
    pub(crate) profile_store: StoreSettings,
    /// The browser SDK, served first-party.
    pub(crate) sdk: SdkConfig,
    /// `GET /v1/personalize` and the edge store export (`braid profiles export --edge`).
    pub(crate) personalize: Option<PersonalizeConfig>,
}

/// Where the browser SDK's files (`sdk-js/dist`, built by `npm run build`) are and the path
/// they are served under.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SdkConfig {
    /// The folder; without it the SDK is not served. Relative to the config file's folder.
    pub(crate) dir: Option<PathBuf>,
    /// The URL path prefix (the snippet's `sdkPath`).
    pub(crate) path: String,
}

impl Default for SdkConfig {
    fn default() -> Self {
        SdkConfig {
            dir: None,
            path: "/sdk".to_owned(),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("braid-data"),
            trust_forwarded_for: false,
            workspaces: Vec::new(),
            limits: Limits::default(),
            enrich: EnrichConfig::default(),
            cors: CorsConfig::default(),
            identity_cookie: None,
            forward_secret: None,
            upstream: None,
            profile_token: None,
            identity: IdentityRules::default(),
            profiles: ProfileConfig::default(),
            profile_store: StoreSettings::default(),
            sdk: SdkConfig::default(),
            personalize: None,
        }
    }
}

impl ServeConfig {
    /// Reads a config file. A relative `data` is relative to the file's folder.
    pub(crate) fn load(path: &Path) -> anyhow::Result<ServeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: ServeConfig =
            toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        config.identity = config
            .identity
            .compiled()
            .map_err(|e| anyhow::anyhow!("invalid {}: {e}", path.display()))?;
        if config.data.is_relative()
            && let Some(folder) = path.parent()
        {
            config.data = folder.join(&config.data);
        }
        if let (Some(dir), Some(folder)) = (&mut config.sdk.dir, path.parent())
            && dir.is_relative()
        {
            *dir = folder.join(&*dir);
        }
        if !config.sdk.path.starts_with('/') || config.sdk.path.ends_with('/') {
            anyhow::bail!(
                "invalid {}: sdk.path must start with / and not end with one: {:?}",
                path.display(),
                config.sdk.path
            );
        }
        Ok(config)
    }

    /// The endpoint's part of the configuration.
    pub(crate) fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            workspaces: self.workspaces.clone(),
            limits: self.limits.clone(),
            enrich: self.enrich.clone(),
            cors: self.cors.clone(),
            identity_cookie: self.identity_cookie.clone(),
            personalize: self.personalize.clone(),
        }
    }
}

/// The demo workspace's write key: kept in the data folder so it stays the same across
/// restarts, made at random on first start.
pub(crate) fn demo_write_key(data: &Path) -> anyhow::Result<String> {
    let path = data.join("demo-write-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim();
        if !key.is_empty() {
            return Ok(key.to_owned());
        }
    }
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let key = bytes.iter().fold(String::from("demo_"), |mut key, b| {
        let _ = write!(key, "{b:02x}");
        key
    });
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    std::fs::write(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let config: ServeConfig = toml::from_str(include_str!("../../braid.example.toml")).unwrap();
        assert_eq!(config.workspaces[0].name, "shop");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.enrich, EnrichConfig::default());
        assert_eq!(config.cors, CorsConfig::default());
        assert_eq!(config.listen, ServeConfig::default().listen);
    }

    #[test]
    fn unknown_settings_are_errors() {
        let error = toml::from_str::<ServeConfig>("[limits]\nmax_events = 3\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `max_events`"),
            "{error}"
        );
    }
}
