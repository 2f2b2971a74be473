//! Why a request was refused, the HTTP status each reason maps to, and the one error body every
//! route answers with (`docs/http-api.md`):
//!
//! ```json
//! {"success": false, "errors": [{"code": "...", "message": "...", "field": null, "index": null, "limit": null}]}
//! ```
//!
//! `code` is stable and machine-readable, `message` names the bad value and the limit; `field`,
//! `index` (an event's position in its batch) and `limit` are set where they apply.

use braid_core::catalogue::validate::ValidationError;
use braid_core::collect::forward::ForwardError;
use serde_json::{Value, json};

use crate::http::HttpResponse;

/// A request that could not be accepted (as a whole).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no endpoint at {path:?}")]
    NotFound {
        /// The path.
        path: String,
    },
    /// No profile has the identifier.
    #[error("no profile has {identifier}")]
    NoProfile {
        /// The identifier, as asked.
        identifier: String,
    },
    /// No audience has the key.
    #[error("no audience has the key {key:?}")]
    NoAudience {
        /// The key asked for.
        key: String,
    },
    /// A condition tree cannot be used (the message names the place in the tree).
    #[error("{0}")]
    BadCondition(String),
    /// The data map has no such event (or property).
    #[error("the catalogue has no {what}")]
    NotInCatalogue {
        /// The event (and property) asked for.
        what: String,
    },
    /// The route exists but is switched off by the configuration.
    #[error("{what} is off: {how}")]
    Off {
        /// What (`the profile API`).
        what: &'static str,
        /// How to switch it on.
        how: &'static str,
    },
    /// The route exists but not for this method.
    #[error("{method} is not allowed on {path:?}")]
    MethodNotAllowed {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// `Content-Encoding` is neither gzip nor identity.
    #[error("\"Content-Encoding\" must be gzip or identity: {encoding:?}")]
    UnsupportedEncoding {
        /// The header value.
        encoding: String,
    },
    /// `Content-Type` is not one that carries JSON.
    #[error("\"Content-Type\" must be application/json or text/plain: {content_type:?}")]
    UnsupportedContentType {
        /// The header value.
        content_type: String,
    },
    /// The body could not be read to its end (the connection broke).
    #[error("cannot read the body: {detail}")]
    UnreadableBody {
        /// What the platform saw.
        detail: String,
    },
    /// The body is not valid gzip.
    #[error("body is not valid gzip: {detail}")]
    BadGzip {
        /// The decoder's message.
        detail: String,
    },
    /// No write key in `Authorization` or `writeKey`.
    #[error(
        "a write key is required: send it as the Basic-auth user or as \"writeKey\" in the body"
    )]
    MissingWriteKey,
    /// The write key belongs to no workspace.
    #[error("unknown write key {key:?}")]
    UnknownWriteKey {
        /// The key, shortened.
        key: String,
    },
    /// A route that needs a server's secret was called without valid proof of it: a profile
    /// token, a forward signature, a personalization token.
    #[error("{reason}")]
    Unauthorized {
        /// What is missing or wrong.
        reason: String,
    },
    /// The workspace's event rate limit is exhausted.
    #[error(
        "rate limit of {limit} events per second exceeded: retry after {retry_after_seconds} s"
    )]
    RateLimited {
        /// The sustained limit.
        limit: u32,
        /// When enough capacity is back.
        retry_after_seconds: u64,
    },
    /// The body or its events broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A forwarded body is not a forward batch.
    #[error("the body is not a forward batch: {detail}")]
    BadForward {
        /// What is wrong.
        detail: String,
    },
    /// A workspace name that is not one.
    #[error("\"workspace\" is not a workspace name: {name:?}")]
    BadWorkspace {
        /// The name.
        name: String,
    },
    /// A workspace the configuration does not list.
    #[error("workspace {name:?} is not in this server's configuration")]
    UnknownWorkspace {
        /// The name.
        name: String,
    },
    /// The profile API's path names no identifier.
    #[error("the path must be /v1/profiles/TYPE:VALUE, not {path:?}")]
    BadIdentifier {
        /// The path.
        path: String,
    },
    /// A query parameter is out of its range.
    /// A replay's filter selects nothing a replay can land.
    #[error(transparent)]
    BadReplay(#[from] braid_core::catalogue::replay::FilterError),
    #[error("{field:?} must be {expected}")]
    BadParameter {
        /// The parameter.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// Its upper bound, where it has one.
        limit: Option<usize>,
    },
    /// The platform could not store the events durably.
    #[error("events could not be stored; retry later")]
    StorageUnavailable,
    /// The platform's profile store failed.
    #[error("the profile store failed: {message}")]
    ProfileStoreFailed {
        /// What failed.
        message: String,
    },
    /// The platform's lake could not be read or written (a replay).
    #[error("the lake failed: {message}")]
    LakeFailed {
        /// What failed.
        message: String,
    },
    /// The client did not send its body within the time allowed.
    #[error("the body did not arrive within {seconds} s")]
    BodyTimeout {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The server holds as many connections as it may.
    #[error("the server holds its limit of {limit} connections; retry later")]
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound { .. }
            | ApiError::NoProfile { .. }
            | ApiError::NoAudience { .. }
            | ApiError::NotInCatalogue { .. }
            | ApiError::Off { .. } => 404,
            ApiError::BadCondition(_) => 422,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::UnsupportedEncoding { .. } | ApiError::UnsupportedContentType { .. } => 415,
            ApiError::MissingWriteKey
            | ApiError::UnknownWriteKey { .. }
            | ApiError::Unauthorized { .. } => 401,
            ApiError::RateLimited { .. } => 429,
            ApiError::Invalid(error) if error.is_size_limit() => 413,
            ApiError::Invalid(_)
            | ApiError::BadGzip { .. }
            | ApiError::UnreadableBody { .. }
            | ApiError::BadForward { .. }
            | ApiError::BadWorkspace { .. }
            | ApiError::UnknownWorkspace { .. }
            | ApiError::BadIdentifier { .. }
            | ApiError::BadReplay(_)
            | ApiError::BadParameter { .. } => 400,
            ApiError::BodyTimeout { .. } => 408,
            ApiError::StorageUnavailable
            | ApiError::ProfileStoreFailed { .. }
            | ApiError::LakeFailed { .. }
            | ApiError::TooManyConnections { .. } => 503,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. }
            | ApiError::NoProfile { .. }
            | ApiError::NoAudience { .. }
            | ApiError::NotInCatalogue { .. }
            | ApiError::Off { .. } => "not_found",
            ApiError::BadCondition(_) => "bad_condition",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::UnsupportedEncoding { .. } => "unsupported_encoding",
            ApiError::UnsupportedContentType { .. } => "unsupported_content_type",
            ApiError::BadGzip { .. } => "bad_gzip",
            ApiError::UnreadableBody { .. } => "unreadable_body",
            ApiError::MissingWriteKey => "missing_write_key",
            ApiError::UnknownWriteKey { .. } => "unknown_write_key",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Invalid(error) => error.code(),
            ApiError::BadForward { .. } => "bad_body",
            ApiError::BadWorkspace { .. } => "bad_workspace",
            ApiError::UnknownWorkspace { .. } => "unknown_workspace",
            ApiError::BadIdentifier { .. } => "bad_identifier",
            ApiError::BadParameter { .. } | ApiError::BadReplay(_) => "bad_parameter",
            ApiError::StorageUnavailable => "storage_unavailable",
            ApiError::ProfileStoreFailed { .. } | ApiError::LakeFailed { .. } => "store_failed",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::TooManyConnections { .. } => "too_many_connections",
        }
    }

    /// Whether the client should send the same request again later (it gets `Retry-After`).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::StorageUnavailable
                | ApiError::ProfileStoreFailed { .. }
                | ApiError::LakeFailed { .. }
                | ApiError::BodyTimeout { .. }
                | ApiError::TooManyConnections { .. }
        )
    }

    /// The JSON error response.
    pub fn to_response(&self) -> HttpResponse {
        let mut response = error_response(self.status(), &[self.entry()]);
        match self {
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => {
                response
                    .headers
                    .push(("retry-after", retry_after_seconds.to_string()));
            }
            _ if self.is_retriable() => {
                response.headers.push(("retry-after", "1".to_owned()));
            }
            _ => {}
        }
        response
    }

    /// This error as an entry of `errors`.
    fn entry(&self) -> Value {
        match self {
            ApiError::Invalid(error) => validation_entry(error),
            ApiError::RateLimited { limit, .. } => entry(
                self.code(),
                &self.to_string(),
                None,
                None,
                Some(u64::from(*limit)),
            ),
            ApiError::BadParameter { field, limit, .. } => entry(
                self.code(),
                &self.to_string(),
                Some(field),
                None,
                limit.and_then(|l| u64::try_from(l).ok()),
            ),
            ApiError::BadReplay(error) => entry(
                self.code(),
                &self.to_string(),
                Some(match error {
                    braid_core::catalogue::replay::FilterError::NotReplayable(_) => "reasons",
                    braid_core::catalogue::replay::FilterError::EmptyRange => "from",
                }),
                None,
                None,
            ),
            ApiError::BadWorkspace { .. } | ApiError::UnknownWorkspace { .. } => entry(
                self.code(),
                &self.to_string(),
                Some("workspace"),
                None,
                None,
            ),
            ApiError::BodyTimeout { seconds } => {
                entry(self.code(), &self.to_string(), None, None, Some(*seconds))
            }
            ApiError::TooManyConnections { limit } => entry(
                self.code(),
                &self.to_string(),
                None,
                None,
                u64::try_from(*limit).ok(),
            ),
            _ => entry(self.code(), &self.to_string(), None, None, None),
        }
    }
}

impl From<ForwardError> for ApiError {
    fn from(error: ForwardError) -> ApiError {
        match error {
            ForwardError::BadBody(detail) => ApiError::BadForward { detail },
            other => ApiError::Unauthorized {
                reason: other.to_string(),
            },
        }
    }
}

/// One entry of `errors`: every key always present, `null` where it does not apply.
fn entry(
    code: &str,
    message: &str,
    field: Option<&str>,
    index: Option<usize>,
    limit: Option<u64>,
) -> Value {
    json!({"code": code, "message": message, "field": field, "index": index, "limit": limit})
}

/// One validation error as an entry of `errors`: its event's index, the field, the limit.
pub(crate) fn validation_entry(error: &ValidationError) -> Value {
    entry(
        error.code(),
        &error.to_string(),
        error.field(),
        error.index(),
        error.limit().and_then(|l| u64::try_from(l).ok()),
    )
}

/// The error body with `errors`, as `status`.
pub(crate) fn error_response(status: u16, errors: &[Value]) -> HttpResponse {
    HttpResponse::json(status, &json!({"success": false, "errors": errors}))
}
