//! The configuration of Braid: one document, grouped by the steps of the CDP, read the same way
//! on every platform (`docs/configuration.md`).
//!
//! - `braid serve` reads `braid.toml` (or `--config FILE`), then its flags;
//! - the Cloudflare Worker and the Lambda functions read the same document from
//!   `BRAID_CONFIG` (TOML, or the same structure as JSON);
//! - every platform then takes the secrets it keeps apart from the document, by name, from its
//!   environment ([`SECRETS`]), and checks the whole ([`Config::load`]).
//!
//! Strict: a key the model does not have is an error that names it. Every setting has a
//! default, so an empty document is a valid configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::activate::ActivateConfig;
use crate::catalogue::CatalogueConfig;
use crate::catalogue::lake::is_valid_workspace;
use crate::collect::{CollectConfig, WorkspaceConfig};
use crate::segment::{SegmentConfig, SegmentError, Segments};
use crate::unify::{RulesError, UnifyConfig};

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `braid serve`: where to listen and where the data lives.
    pub server: ServerConfig,
    /// The workspaces; each write key belongs to exactly one.
    pub workspaces: Vec<WorkspaceConfig>,
    /// Collection: CORS, the identity cookie, the SDK's files, the edge → ingest hand-off.
    pub collect: CollectConfig,
    /// The catalogue: limits, enrichment, compaction.
    pub catalogue: CatalogueConfig,
    /// Unification: identity rules, profiles, the profile store.
    pub unify: UnifyConfig,
    /// Segmentation: audiences.
    pub segment: SegmentConfig,
    /// Activation: the profile API and personalization.
    pub activate: ActivateConfig,
}

/// `[server]`: what only `braid serve` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The data folder: the lake (`raw/`, `failed/`) and the profile stores (`profiles/`).
    /// Relative to the configuration file's folder.
    pub data: PathBuf,
    /// Take the client's address from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may stay idle between requests, in seconds.
    pub header_timeout_seconds: u64,
    /// How long a client may take to send a request's body, in seconds (408 after).
    pub body_timeout_seconds: u64,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// On SIGTERM: how long requests in flight and the unify loop's backlog may go on, in
    /// seconds. What unify has not applied by then is applied at the next start.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("braid-data"),
            trust_forwarded_for: false,
            header_timeout_seconds: 30,
            body_timeout_seconds: 30,
            max_connections: 1_000,
            shutdown_grace_seconds: 10,
        }
    }
}

/// The secrets a platform may keep out of the document, by the name of the environment
/// variable (or Worker secret) that holds each, and the setting it fills.
pub const SECRETS: [(&str, &str); 6] = [
    ("BRAID_FORWARD_SECRET", "collect.forward_secret"),
    ("BRAID_IDENTITY_SECRET", "collect.identity_secret"),
    ("BRAID_PROFILE_TOKEN", "activate.profile_api.token"),
    ("BRAID_CATALOGUE_TOKEN", "catalogue.api.token"),
    ("BRAID_EDGE_KEY_SECRET", "activate.personalize.key_secret"),
    ("BRAID_TOKEN_SECRET", "activate.personalize.token_secret"),
];

/// The environment variable (or Worker secret) that holds the document on the Worker and the
/// Lambda functions.
pub const DOCUMENT_VARIABLE: &str = "BRAID_CONFIG";

/// A configuration that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The document is not TOML (or JSON) of the model: a syntax error, a wrong type, or a key
    /// the model does not have, in the parser's words.
    #[error("{format}: {message}")]
    Syntax {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The parser's message, naming the key and where it is.
        message: String,
    },
    /// An identity rule cannot be used.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A workspace name is not path-safe.
    #[error("workspaces: name {name:?} must be 1-64 characters of a-z, 0-9, '_' and '-'")]
    BadWorkspace {
        /// The name.
        name: String,
    },
    /// Two workspaces have the same name.
    #[error("workspaces: {name:?} is listed twice")]
    DuplicateWorkspace {
        /// The name.
        name: String,
    },
    /// A workspace has an empty write key.
    #[error("workspaces: {workspace:?} has an empty write key")]
    EmptyWriteKey {
        /// The workspace.
        workspace: String,
    },
    /// A write key belongs to two workspaces.
    #[error("workspaces: write key {key:?} belongs to two workspaces")]
    SharedWriteKey {
        /// The key, shortened.
        key: String,
    },
    /// A computed trait cannot be used.
    #[error("{0}")]
    Profiles(String),
    /// An audience cannot be used.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The tracking plan cannot be used.
    #[error(transparent)]
    Plan(#[from] crate::catalogue::plan::PlanError),
    /// `catalogue.tracking_plan` names a file that this platform did not read (the Worker and
    /// the Lambda functions take the plan inline, as `catalogue.plan`).
    #[error(
        "catalogue.tracking_plan: {path:?} is a file, which this platform cannot read: put the plan in the configuration as catalogue.plan"
    )]
    PlanNotRead {
        /// The file.
        path: String,
    },
    /// An API token is also a write key.
    #[error("{setting} must not be a write key: write keys are public, the token is not")]
    TokenIsWriteKey {
        /// The setting.
        setting: &'static str,
    },
    /// `collect.sdk.path` is not a path prefix.
    #[error("collect.sdk.path must start with / and not end with one: {path:?}")]
    BadSdkPath {
        /// The value.
        path: String,
    },
    /// A destination cannot be used.
    #[error(transparent)]
    Destination(#[from] crate::activate::destination::DestinationError),
    /// `[collect.cors] allowed_origins` holds what is not an origin (`null`, `*`, a path).
    #[error(
        "collect.cors.allowed_origins: {origin:?} is not an origin (scheme://host[:port], \
         without a path; never null or *)"
    )]
    BadOrigin {
        /// The value.
        origin: String,
    },
}

impl Config {
    /// Reads a document: JSON when it starts with `{`, TOML otherwise. Nothing is checked
    /// beyond the model's shape ([`Config::check`] does).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Syntax`] naming what is wrong and where.
    pub fn parse(document: &str) -> Result<Config, ConfigError> {
        if document.trim_start().starts_with('{') {
            serde_json::from_str(document).map_err(|e| ConfigError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })
        } else {
            toml::from_str(document).map_err(|e| ConfigError::Syntax {
                format: "TOML",
                message: e.to_string().trim_end().to_owned(),
            })
        }
    }

    /// The configuration of a platform: its document (none: every default), the secrets of
    /// [`SECRETS`] that `secret` finds (they win over the document), checked.
    ///
    /// # Errors
    ///
    /// When the document does not parse, or the whole does not check ([`ConfigError`]).
    pub fn load(
        document: Option<&str>,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let config = match document.filter(|d| !d.trim().is_empty()) {
            Some(document) => Config::parse(document)?,
            None => Config::default(),
        };
        config.with_secrets(secret).check()
    }

    /// The configuration with the secrets that `secret` finds (by the names of [`SECRETS`])
    /// in place of the document's; an empty value counts as absent.
    #[must_use]
    pub fn with_secrets(mut self, secret: impl Fn(&str) -> Option<String>) -> Config {
        let found = |name: &str| secret(name).filter(|value| !value.is_empty());
        if let Some(value) = found("BRAID_FORWARD_SECRET") {
            self.collect.forward_secret = Some(value);
        }
        if let Some(value) = found("BRAID_IDENTITY_SECRET") {
            self.collect.identity_secret = Some(value);
        }
        if let Some(value) = found("BRAID_PROFILE_TOKEN") {
            self.activate
                .profile_api
                .get_or_insert_with(Default::default)
                .token = value;
        }
        if let Some(value) = found("BRAID_CATALOGUE_TOKEN") {
            self.catalogue
                .api
                .get_or_insert_with(Default::default)
                .token = value;
        }
        if let Some(value) = found("BRAID_EDGE_KEY_SECRET") {
            self.activate
                .personalize
                .get_or_insert_with(Default::default)
                .key_secret = value;
        }
        if let Some(value) = found("BRAID_TOKEN_SECRET")
            && let Some(personalize) = &mut self.activate.personalize
        {
            personalize.token_secret = Some(value);
        }
        for destination in &mut self.activate.destinations {
            let name = crate::activate::destination::secret_variable(&destination.key);
            if let Some(value) = found(&name) {
                destination.secret = value;
            }
            let name = crate::activate::destination::segment_secret_variable(&destination.key);
            if let Some(value) = found(&name) {
                destination.segment_secret = value;
            }
        }
        self
    }

    /// Checks what the model's shape cannot say: identity rules compile (and are kept
    /// compiled), workspace names are path-safe, each write key belongs to one workspace, the
    /// SDK path is a prefix. Empty secrets count as absent.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn check(mut self) -> Result<Config, ConfigError> {
        self.unify.identity = self.unify.identity.compiled()?;
        let segments = self.segments()?;
        self.unify.profiles.audience_series = segments.audience_series().to_vec();
        if let Some(problem) = self.unify.profiles.problem() {
            return Err(ConfigError::Profiles(problem));
        }
        let mut keys = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for workspace in &self.workspaces {
            if !is_valid_workspace(&workspace.name) {
                return Err(ConfigError::BadWorkspace {
                    name: workspace.name.clone(),
                });
            }
            if !names.insert(workspace.name.as_str()) {
                return Err(ConfigError::DuplicateWorkspace {
                    name: workspace.name.clone(),
                });
            }
            for key in workspace.write_keys.iter().chain(&workspace.server_keys) {
                if key.is_empty() {
                    return Err(ConfigError::EmptyWriteKey {
                        workspace: workspace.name.clone(),
                    });
                }
                if !keys.insert(key.as_str()) {
                    return Err(ConfigError::SharedWriteKey {
                        key: shorten_key(key),
                    });
                }
            }
        }
        let path = &self.collect.sdk.path;
        if !path.starts_with('/') || path.ends_with('/') {
            return Err(ConfigError::BadSdkPath { path: path.clone() });
        }
        if let Some(origin) = self
            .collect
            .cors
            .allowed_origins
            .iter()
            .find(|o| !is_origin(o))
        {
            return Err(ConfigError::BadOrigin {
                origin: origin.clone(),
            });
        }
        if self.collect.forward_secret.as_deref() == Some("") {
            self.collect.forward_secret = None;
        }
        if self.collect.identity_secret.as_deref() == Some("") {
            self.collect.identity_secret = None;
        }
        if self
            .activate
            .profile_api
            .as_ref()
            .is_some_and(|api| api.token.is_empty())
        {
            self.activate.profile_api = None;
        }
        if self
            .catalogue
            .api
            .as_ref()
            .is_some_and(|api| api.token.is_empty())
        {
            self.catalogue.api = None;
        }
        // An admin token that is also a write key (public in every page) would open the map to
        // anyone.
        for (name, token) in [
            (
                "catalogue.api.token",
                self.catalogue.api.as_ref().map(|a| &a.token),
            ),
            (
                "activate.profile_api.token",
                self.activate.profile_api.as_ref().map(|a| &a.token),
            ),
        ] {
            if token.is_some_and(|t| keys.contains(t.as_str())) {
                return Err(ConfigError::TokenIsWriteKey { setting: name });
            }
        }
        if let Some(personalize) = &mut self.activate.personalize
            && personalize.token_secret.as_deref() == Some("")
        {
            personalize.token_secret = None;
        }
        self.destinations()?;
        match (&self.catalogue.plan, &self.catalogue.tracking_plan) {
            (Some(plan), _) => plan.check()?,
            (None, Some(path)) => {
                return Err(ConfigError::PlanNotRead {
                    path: path.display().to_string(),
                });
            }
            (None, None) => {}
        }
        Ok(self)
    }

    /// The audiences and computed traits, compiled.
    ///
    /// # Errors
    ///
    /// When they cannot be used ([`SegmentError`]).
    pub fn segments(&self) -> Result<Segments, SegmentError> {
        let mut segments = Segments::compile(&self.unify.profiles, &self.segment)?;
        // Profiles updated and merged are logged only when a destination receives them: a
        // change log entry for each is work unify does for nothing otherwise.
        segments.log_profiles = self.activate.destinations.iter().any(|d| {
            d.kinds()
                .contains(&crate::activate::destination::MessageKind::ProfileChanged)
        });
        Ok(segments)
    }

    /// The destinations, checked (`[[activate.destinations]]`).
    ///
    /// # Errors
    ///
    /// The first destination that cannot be used.
    pub fn destinations(
        &self,
    ) -> Result<Vec<crate::activate::destination::Destination>, ConfigError> {
        let workspaces: Vec<&str> = self.workspaces.iter().map(|w| w.name.as_str()).collect();
        Ok(crate::activate::destination::check_all(
            &self.activate.destinations,
            &workspaces,
        )?)
    }

    /// The paths of the document taken as relative to `folder` (the configuration file's):
    /// the data folder, the SDK's folder and the tracking plan.
    #[must_use]
    pub fn relative_to(mut self, folder: &Path) -> Config {
        if self.server.data.is_relative() {
            self.server.data = folder.join(&self.server.data);
        }
        if let Some(dir) = &mut self.collect.sdk.dir
            && dir.is_relative()
        {
            *dir = folder.join(&*dir);
        }
        if let Some(plan) = &mut self.catalogue.tracking_plan
            && plan.is_relative()
        {
            *plan = folder.join(&*plan);
        }
        self
    }

    /// The workspace of this name, if the configuration lists it: a workspace it does not list
    /// does not exist, whoever names it.
    pub fn workspace(&self, name: &str) -> Option<&WorkspaceConfig> {
        self.workspaces.iter().find(|w| w.name == name)
    }

    /// The identity secret of the workspace at `index` (`docs/trust.md`): its own, else
    /// `[collect] identity_secret`.
    pub fn identity_secret(&self, index: usize) -> Option<&str> {
        self.workspaces
            .get(index)
            .and_then(|w| w.identity_secret.as_deref())
            .or(self.collect.identity_secret.as_deref())
            .filter(|secret| !secret.is_empty())
    }

    /// The names of the workspaces under strict identity (`verify_identity`).
    pub fn strict_identity_workspaces(&self) -> Vec<String> {
        self.workspaces
            .iter()
            .filter(|w| w.verify_identity)
            .map(|w| w.name.clone())
            .collect()
    }
}

/// A key shortened for a message, so that a long secret-looking value is not echoed whole.
pub fn shorten_key(key: &str) -> String {
    match key.char_indices().nth(12) {
        Some((cut, _)) => format!("{}…", key.get(..cut).unwrap_or("")),
        None => key.to_owned(),
    }
}

/// Whether `text` is a browser origin as `Origin` headers carry it: `http` or `https`, `://`, a
/// host (and port), nothing after.
fn is_origin(text: &str) -> bool {
    let Some((scheme, host)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests;
