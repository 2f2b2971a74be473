//! The collection endpoint: routes, the write-key check, decoding, the core pipeline, and the
//! response once the platform has stored the events.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use braid_core::ingest::ParsedBody;
use braid_core::lake::is_valid_workspace;
use braid_core::{
    EventType, FailedEvent, IngestConfig, RequestInfo, ValidationError, process_batch,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::auth::{basic_user, shorten_key};
use crate::config::EdgeConfig;
use crate::cors;
use crate::decode::{check_content_type, decode_body};
use crate::error::{RequestError, validation_json};
use crate::http::{HttpRequest, HttpResponse};
use crate::rate::TokenBucket;

/// The collection endpoint, built once from its configuration and shared by all requests.
#[derive(Debug)]
pub struct Collector {
    config: EdgeConfig,
    ingest: IngestConfig,
    /// Write key → index into `config.workspaces`.
    keys: HashMap<String, usize>,
    limiters: Vec<Option<Mutex<TokenBucket>>>,
}

/// What happened to a request, for the platform's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events in the body (0 when it could not be parsed).
    pub received: usize,
    /// Events accepted into the lake.
    pub accepted: usize,
    /// Events rejected into `failed/`.
    pub failed: usize,
    /// Body bytes as received.
    pub bytes: usize,
}

/// Events for the platform to store durably before answering.
#[derive(Debug)]
pub struct LakeWrite {
    /// The workspace (a lake partition).
    pub workspace: String,
    /// When the request was received (the lake partition's date and hour).
    pub received_at: OffsetDateTime,
    /// Accepted events, NDJSON.
    pub accepted: Vec<u8>,
    /// Failure records, NDJSON.
    pub failed: Vec<u8>,
    /// Event counts.
    pub counts: Counts,
}

/// The response to give once the [`LakeWrite`] is durable (or has failed).
#[derive(Debug)]
pub struct Reply {
    response: HttpResponse,
}

impl Reply {
    /// The response to send: the prepared one when the events are stored, else 503 with
    /// `Retry-After` so the client keeps them and tries again.
    pub fn finish(self, stored: bool) -> HttpResponse {
        if stored {
            return self.response;
        }
        let mut failure = RequestError::StorageUnavailable.to_response();
        // Keep the CORS headers, or the browser cannot read the 503.
        failure.headers.extend(
            self.response
                .headers
                .into_iter()
                .filter(|(k, _)| k.starts_with("access-control") || *k == "vary"),
        );
        failure
    }
}

/// The outcome of handling a request.
#[derive(Debug)]
pub enum Handled {
    /// Answer at once; nothing to store.
    Respond(HttpResponse, Counts),
    /// Store the events, then answer with `reply.finish(stored)`.
    Store(LakeWrite, Reply),
    /// Look up the caller's edge profile, then answer with `personalization.finish(value)`.
    Personalize(crate::personalize::Personalization),
}

impl Handled {
    fn respond(response: HttpResponse) -> Handled {
        Handled::Respond(response, Counts::default())
    }
}

/// Which endpoint a path names.
enum Route {
    Health,
    Personalize,
    Collect(Option<EventType>),
}

fn route(path: &str) -> Option<Route> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let kind = match path {
        "/health" => return Some(Route::Health),
        "/v1/personalize" => return Some(Route::Personalize),
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

impl Collector {
    /// Builds the endpoint.
    ///
    /// # Errors
    ///
    /// Returns a message when a workspace name is not path-safe, or a write key is empty or
    /// belongs to two workspaces.
    pub fn new(config: EdgeConfig) -> Result<Collector, String> {
        let mut keys = HashMap::new();
        let mut limiters = Vec::new();
        for (index, workspace) in config.workspaces.iter().enumerate() {
            if !is_valid_workspace(&workspace.name) {
                return Err(format!(
                    "workspace name {:?} must be 1-64 characters of a-z, 0-9, '_' and '-'",
                    workspace.name
                ));
            }
            for key in &workspace.write_keys {
                if key.is_empty() {
                    return Err(format!(
                        "workspace {:?} has an empty write key",
                        workspace.name
                    ));
                }
                if keys.insert(key.clone(), index).is_some() {
                    return Err(format!(
                        "write key {:?} belongs to two workspaces",
                        shorten_key(key)
                    ));
                }
            }
            limiters.push(
                workspace
                    .rate_limit
                    .map(|limit| Mutex::new(TokenBucket::new(limit))),
            );
        }
        let ingest = IngestConfig {
            limits: config.limits.clone(),
            enrich: config.enrich.clone(),
        };
        Ok(Collector {
            config,
            ingest,
            keys,
            limiters,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Handles one request received at `now`.
    pub fn handle(&self, request: &HttpRequest<'_>, now: OffsetDateTime) -> Handled {
        let Some(route) = route(request.path) else {
            return self.refuse(
                request,
                &RequestError::NotFound {
                    path: request.path.to_owned(),
                },
                0,
            );
        };
        match (route, request.method) {
            (_, "OPTIONS") => Handled::respond(cors::preflight(request, &self.config.cors)),
            (Route::Health, "GET" | "HEAD") => {
                self.with_cors(request, HttpResponse::json(200, &json!({"status": "ok"})))
            }
            (Route::Collect(kind), "POST") => self.collect(request, kind, now),
            (Route::Personalize, "GET") => {
                match crate::personalize::personalize(
                    request,
                    self.config.personalize.as_ref(),
                    self.config.identity_cookie.as_ref(),
                    &self.config.cors,
                    now,
                ) {
                    crate::personalize::Step::Respond(response) => Handled::respond(response),
                    crate::personalize::Step::Lookup(lookup) => Handled::Personalize(lookup),
                }
            }
            _ => self.refuse(
                request,
                &RequestError::MethodNotAllowed {
                    method: request.method.to_owned(),
                    path: request.path.to_owned(),
                },
                0,
            ),
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the request pipeline reads best in one place, step by step"
    )]
    fn collect(
        &self,
        request: &HttpRequest<'_>,
        kind: Option<EventType>,
        now: OffsetDateTime,
    ) -> Handled {
        let bytes = request.body.len();
        let limits = &self.config.limits;
        if bytes > limits.max_batch_bytes {
            let error = ValidationError::BatchTooLarge {
                size: bytes,
                limit: limits.max_batch_bytes,
            };
            return self.refuse(request, &error.into(), bytes);
        }
        if let Err(error) = check_content_type(request.header("content-type")) {
            return self.refuse(request, &error, bytes);
        }
        let header_key = basic_user(request.header("authorization"));
        let header_workspace = header_key
            .as_deref()
            .and_then(|key| self.keys.get(key).copied());
        let body = match decode_body(
            request.body,
            request.header("content-encoding"),
            limits.max_batch_bytes,
        ) {
            Ok(body) => body,
            Err(error) => return self.refuse_and_keep(request, error, header_workspace, now),
        };
        let parsed = match ParsedBody::parse(&body, kind, limits) {
            Ok(parsed) => parsed,
            Err(error) => {
                let keep = if error.is_size_limit() && body.len() > limits.max_batch_bytes {
                    None
                } else {
                    header_workspace
                };
                return self.refuse_and_keep(request, error.into(), keep, now);
            }
        };
        let key = header_key.as_deref().or_else(|| parsed.write_key());
        let Some(key) = key else {
            return self.refuse(request, &RequestError::MissingWriteKey, bytes);
        };
        let Some(&index) = self.keys.get(key) else {
            return self.refuse(
                request,
                &RequestError::UnknownWriteKey {
                    key: shorten_key(key),
                },
                bytes,
            );
        };
        if let Some(Some(limiter)) = self.limiters.get(index) {
            let taken = limiter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(parsed.len(), now);
            if let Err(retry_after_seconds) = taken {
                let limit = self
                    .config
                    .workspaces
                    .get(index)
                    .and_then(|w| w.rate_limit)
                    .map_or(0, |l| l.events_per_second);
                return self.refuse(
                    request,
                    &RequestError::RateLimited {
                        limit,
                        retry_after_seconds,
                    },
                    bytes,
                );
            }
        }
        let workspace = self.workspace_name(index);
        let cookie_id = self.cookie_id(request, &parsed);
        let info = RequestInfo {
            workspace,
            received_at: now,
            client_ip: request.client_ip,
            user_agent: request.header("user-agent"),
            anonymous_id: cookie_id.as_deref(),
            location: request.location,
            edge: request.edge,
        };
        let received = parsed.len();
        let outcome = process_batch(parsed, &info, &self.ingest);
        let mut failed = Vec::new();
        for failure in &outcome.failed {
            failure.write_json(workspace, now, &mut failed);
        }
        let counts = Counts {
            received,
            accepted: outcome.accepted_count,
            failed: outcome.failed.len(),
            bytes,
        };
        let errors: Vec<Value> = outcome
            .failed
            .iter()
            .map(|f| validation_json(&f.error))
            .collect();
        let status = if outcome.accepted_count == 0 {
            400
        } else {
            200
        };
        let mut answer = json!({
            "success": status == 200,
            "accepted": outcome.accepted_count,
            "failed": outcome.failed.len(),
            "errors": errors,
        });
        if let (Some(id), Value::Object(fields)) = (&cookie_id, &mut answer) {
            fields.insert("anonymousId".into(), Value::from(id.as_str()));
        }
        let mut response = HttpResponse::json(status, &answer);
        if let (Some(id), Some(cookie)) = (&cookie_id, &self.config.identity_cookie) {
            response
                .headers
                .push(("set-cookie", set_cookie(cookie, id)));
        }
        if let Some(token) = request.query_param("ack").filter(|t| is_cookie_id(t))
            && status == 200
        {
            // The browser SDK's receipt for a batch whose answer its page may never see (sent
            // as the page unloads): the next page reads it and does not send the batch again.
            // Set only when the events are stored (a failed store answers 503 without it).
            let domain = self
                .config
                .identity_cookie
                .as_ref()
                .and_then(|c| c.domain.as_deref());
            let mut value = format!("braid_ack={token}; Path=/; Max-Age=604800; SameSite=Lax");
            if let Some(domain) = domain {
                value.push_str("; Domain=");
                value.push_str(domain);
            }
            response.headers.push(("set-cookie", value));
        }
        cors::add_headers(request, &self.config.cors, &mut response);
        let write = LakeWrite {
            workspace: workspace.to_owned(),
            received_at: now,
            accepted: outcome.accepted,
            failed,
            counts,
        };
        Handled::Store(write, Reply { response })
    }

    /// The visitor's anonymous id when the identity cookie is on: the cookie's, when it holds a
    /// well-formed id, else the platform's fresh one.
    /// The visitor's id for the identity cookie: the cookie's, else (a first visit) the id the
    /// client already gives its events, so that the SDK's id and the cookie agree from the
    /// start, else a fresh one.
    fn cookie_id(&self, request: &HttpRequest<'_>, parsed: &ParsedBody<'_>) -> Option<String> {
        let cookie = self.config.identity_cookie.as_ref()?;
        sent_cookie_id(request, cookie)
            .map(str::to_owned)
            .or_else(|| {
                parsed
                    .first_anonymous_id()
                    .filter(|id| is_cookie_id(id))
                    .map(std::borrow::Cow::into_owned)
            })
            .or_else(|| {
                request
                    .fresh_id
                    .filter(|id| is_cookie_id(id))
                    .map(str::to_owned)
            })
    }

    fn workspace_name(&self, index: usize) -> &str {
        self.config
            .workspaces
            .get(index)
            .map_or("", |w| w.name.as_str())
    }

    fn with_cors(&self, request: &HttpRequest<'_>, mut response: HttpResponse) -> Handled {
        cors::add_headers(request, &self.config.cors, &mut response);
        Handled::respond(response)
    }

    fn refuse(&self, request: &HttpRequest<'_>, error: &RequestError, bytes: usize) -> Handled {
        let mut response = error.to_response();
        cors::add_headers(request, &self.config.cors, &mut response);
        Handled::Respond(
            response,
            Counts {
                bytes,
                ..Counts::default()
            },
        )
    }

    /// Refuses a whole body; when the sender is known (a valid key in `Authorization`), the
    /// body is also kept in `failed/` so that it can be inspected and replayed.
    fn refuse_and_keep(
        &self,
        request: &HttpRequest<'_>,
        error: RequestError,
        workspace: Option<usize>,
        now: OffsetDateTime,
    ) -> Handled {
        let bytes = request.body.len();
        let Some(index) = workspace else {
            return self.refuse(request, &error, bytes);
        };
        let mut response = error.to_response();
        cors::add_headers(request, &self.config.cors, &mut response);
        let validation = match error {
            RequestError::Invalid(validation) => validation,
            other => ValidationError::MalformedBody {
                detail: format!(": {other}"),
            },
        };
        let payload = if let Ok(text) = std::str::from_utf8(request.body) {
            text.to_owned()
        } else {
            use base64::Engine as _;
            format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(request.body)
            )
        };
        let workspace = self.workspace_name(index);
        let mut failed = Vec::new();
        FailedEvent {
            error: validation,
            payload,
        }
        .write_json(workspace, now, &mut failed);
        let write = LakeWrite {
            workspace: workspace.to_owned(),
            received_at: now,
            accepted: Vec::new(),
            failed,
            counts: Counts {
                received: 0,
                accepted: 0,
                failed: 1,
                bytes,
            },
        };
        Handled::Store(write, Reply { response })
    }
}

/// Whether a cookie value can be an anonymous id: 8 to 64 of `A-Z a-z 0-9 - _` (a UUID, or an id
/// an SDK made), so that nothing else from a cookie reaches the lake.
/// The identity cookie's id as the request sent it, when well-formed.
pub(crate) fn sent_cookie_id<'r>(
    request: &'r HttpRequest<'_>,
    cookie: &crate::config::CookieConfig,
) -> Option<&'r str> {
    request.header("cookie")?.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == cookie.name && is_cookie_id(value)).then_some(value)
    })
}

pub(crate) fn is_cookie_id(value: &str) -> bool {
    (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value: `HttpOnly; SameSite=Lax`, `Secure` unless configured off, one year by
/// default, on the configured domain.
fn set_cookie(cookie: &crate::config::CookieConfig, id: &str) -> String {
    let mut value = format!(
        "{}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        cookie.name,
        u64::from(cookie.max_age_days) * 86_400
    );
    if cookie.secure {
        value.push_str("; Secure");
    }
    if let Some(domain) = &cookie.domain {
        value.push_str("; Domain=");
        value.push_str(domain);
    }
    value
}
