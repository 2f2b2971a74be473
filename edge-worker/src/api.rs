//! [`Api`]: every HTTP route of Braid as a platform-neutral handler. A request comes in as plain
//! data; [`Api::handle`] answers at once, or says what the platform must do first (store
//! events, read a profile, read a file) and how to answer once it has.
//!
//! | route | handler | step |
//! |---|---|---|
//! | `POST /v1/{batch,track,identify,page,screen,group,alias}` (and short forms) | `collect.rs` | store |
//! | `POST /v1/forward` | `forward.rs` | store |
//! | `GET /v1/profiles/{type}:{value}[/events]` | `profiles.rs` | read a profile |
//! | `GET /v1/catalogue[/events]` | `catalogue.rs` | read the data map |
//! | `GET /v1/destinations` | `destinations.rs` | report the destinations |
//! | `GET /v1/personalize` | `personalize.rs` | read an edge entry |
//! | `GET /sdk/<file>` (`collect.sdk.path`) | `sdk.rs` | read a file |
//! | `GET /health`, `OPTIONS *` | here | — |
//!
//! The contract is `docs/http-api.md`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use braid_core::EventType;
use braid_core::catalogue::lake::is_valid_workspace;
use braid_core::{Config, ConfigError};
use serde_json::json;
use time::OffsetDateTime;

use crate::cors;
use crate::error::ApiError;
use crate::handled::{Counts, Handled, SdkRead};
use crate::http::{HttpRequest, HttpResponse};
use crate::rate::TokenBucket;

/// Every route, built once from the configuration and shared by all requests.
#[derive(Debug)]
pub struct Api {
    pub(crate) config: Config,
    /// Write key → index into `config.workspaces`, and whether it is a server key.
    pub(crate) keys: HashMap<String, (usize, bool)>,
    limiters: Vec<Option<Mutex<TokenBucket>>>,
}

/// Which handler a path names.
enum Route<'p> {
    Health,
    Personalize,
    Forward,
    Profiles(&'p str),
    Catalogue(&'p str),
    Audiences(&'p str),
    Destinations,
    Sdk(&'p str),
    Collect(Option<EventType>),
}

impl Api {
    /// Builds every route from the configuration, which it checks ([`Config::check`]).
    ///
    /// # Errors
    ///
    /// When the configuration does not check ([`ConfigError`]).
    pub fn new(config: Config) -> Result<Api, ConfigError> {
        let config = config.check()?;
        let mut keys = HashMap::new();
        let mut limiters = Vec::new();
        for (index, workspace) in config.workspaces.iter().enumerate() {
            for key in &workspace.write_keys {
                keys.insert(key.clone(), (index, false));
            }
            for key in &workspace.server_keys {
                keys.insert(key.clone(), (index, true));
            }
            limiters.push(
                workspace
                    .rate_limit
                    .map(|limit| Mutex::new(TokenBucket::new(limit))),
            );
        }
        Ok(Api {
            config,
            keys,
            limiters,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The most body bytes a request to `path` may carry: what a platform reads of a body (one
    /// byte more, so that the handler sees it is too large). Forwarded batches are enriched,
    /// so larger than what clients send: twice the client limit.
    pub fn body_limit(&self, path: &str) -> usize {
        let limit = self.config.catalogue.limits.max_batch_bytes;
        if path.strip_suffix('/').unwrap_or(path) == "/v1/forward" {
            limit.saturating_mul(2)
        } else {
            limit
        }
    }

    /// The workspace reads answer for when a request names none: the first configured one.
    pub fn default_workspace(&self) -> &str {
        self.config
            .workspaces
            .first()
            .map_or("default", |w| w.name.as_str())
    }

    /// The workspace a read names (`?workspace=W`, checked), or the first configured one.
    pub(crate) fn requested_workspace(
        &self,
        request: &HttpRequest<'_>,
    ) -> Result<String, ApiError> {
        match request.query_value("workspace") {
            None => Ok(self.default_workspace().to_owned()),
            Some(name) => {
                self.check_workspace(&name)?;
                Ok(name.into_owned())
            }
        }
    }

    /// Whether a workspace named by a request exists: a valid name the configuration lists.
    pub(crate) fn check_workspace(&self, name: &str) -> Result<(), ApiError> {
        if !is_valid_workspace(name) {
            return Err(ApiError::BadWorkspace {
                name: name.to_owned(),
            });
        }
        if self.config.workspace(name).is_none() {
            return Err(ApiError::UnknownWorkspace {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn route<'p>(&self, path: &'p str) -> Option<Route<'p>> {
        if let Some(name) = path
            .strip_prefix(self.config.collect.sdk.path.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        {
            return Some(Route::Sdk(name));
        }
        if let Some(rest) = path.strip_prefix("/v1/profiles/") {
            return Some(Route::Profiles(rest));
        }
        if let Some(rest) = path.strip_prefix("/v1/catalogue") {
            return Some(Route::Catalogue(rest));
        }
        if let Some(rest) = path.strip_prefix("/v1/audiences/") {
            return Some(Route::Audiences(rest));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let kind = match path {
            "/health" => return Some(Route::Health),
            "/v1/personalize" => return Some(Route::Personalize),
            "/v1/forward" => return Some(Route::Forward),
            "/v1/destinations" => return Some(Route::Destinations),
            "/v1/batch" | "/v1/b" | "/v1/import" => None,
            "/v1/track" | "/v1/t" => Some(EventType::Track),
            "/v1/identify" | "/v1/i" => Some(EventType::Identify),
            "/v1/page" | "/v1/p" => Some(EventType::Page),
            "/v1/screen" | "/v1/s" => Some(EventType::Screen),
            "/v1/group" | "/v1/g" => Some(EventType::Group),
            "/v1/alias" | "/v1/a" => Some(EventType::Alias),
            _ => return None,
        };
        Some(Route::Collect(kind))
    }

    /// Handles one request received at `now`.
    pub fn handle(&self, request: &HttpRequest<'_>, now: OffsetDateTime) -> Handled {
        let Some(route) = self.route(request.path) else {
            return self.refuse(
                request,
                &ApiError::NotFound {
                    path: request.path.to_owned(),
                },
                0,
            );
        };
        match (route, request.method) {
            (Route::Sdk(name), _) => Handled::Sdk(SdkRead::new(request.method, name)),
            (_, "OPTIONS") => Handled::respond(cors::preflight(request, &self.config.collect.cors)),
            (Route::Health, "GET" | "HEAD") => {
                self.respond(request, HttpResponse::json(200, &json!({"status": "ok"})))
            }
            (Route::Collect(kind), "POST") => self.collect(request, kind, now),
            (Route::Forward, "POST") => self.forward(request, now),
            (Route::Profiles(rest), "GET") => self.profiles(request, rest),
            (Route::Catalogue(rest), "GET") => self.catalogue(request, rest),
            (Route::Catalogue("/replay"), "POST") => self.replay(request),
            (Route::Audiences(rest), _) => self.audiences(request, rest),
            (Route::Personalize, "GET") => self.personalize(request, now),
            (Route::Destinations, "GET") => self.destinations(request),
            _ => self.refuse(
                request,
                &ApiError::MethodNotAllowed {
                    method: request.method.to_owned(),
                    path: request.path.to_owned(),
                },
                0,
            ),
        }
    }

    /// Takes `events` from the workspace's rate limit, or says when to retry.
    pub(crate) fn take_rate(
        &self,
        index: usize,
        events: usize,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let Some(Some(limiter)) = self.limiters.get(index) else {
            return Ok(());
        };
        let taken = limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(events, now);
        taken.map_err(|retry_after_seconds| ApiError::RateLimited {
            limit: self
                .config
                .workspaces
                .get(index)
                .and_then(|w| w.rate_limit)
                .map_or(0, |l| l.events_per_second),
            retry_after_seconds,
        })
    }

    pub(crate) fn workspace_name(&self, index: usize) -> &str {
        self.config
            .workspaces
            .get(index)
            .map_or("", |w| w.name.as_str())
    }

    /// `response` with the CORS headers of the request's origin, at once.
    pub(crate) fn respond(&self, request: &HttpRequest<'_>, mut response: HttpResponse) -> Handled {
        cors::add_headers(request, &self.config.collect.cors, &mut response);
        Handled::respond(response)
    }

    /// The error's answer, with CORS headers, counting the body's bytes.
    pub(crate) fn refuse(
        &self,
        request: &HttpRequest<'_>,
        error: &ApiError,
        bytes: usize,
    ) -> Handled {
        let mut response = error.to_response();
        cors::add_headers(request, &self.config.collect.cors, &mut response);
        Handled::Respond(
            response,
            Counts {
                bytes,
                ..Counts::default()
            },
        )
    }
}
