//! Why a request was refused, and the HTTP status and JSON body each reason maps to.

use braid_core::ValidationError;
use serde_json::{Value, json};

use crate::http::HttpResponse;

/// A request that could not be accepted (as a whole).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No route has this path.
    #[error("no endpoint at {path:?}")]
    NotFound {
        /// The path.
        path: String,
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
    /// The platform could not store the events durably.
    #[error("events could not be stored; retry later")]
    StorageUnavailable,
}

impl RequestError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::NotFound { .. } => 404,
            RequestError::MethodNotAllowed { .. } => 405,
            RequestError::UnsupportedEncoding { .. }
            | RequestError::UnsupportedContentType { .. } => 415,
            RequestError::MissingWriteKey | RequestError::UnknownWriteKey { .. } => 401,
            RequestError::RateLimited { .. } => 429,
            RequestError::Invalid(error) if error.is_size_limit() => 413,
            RequestError::Invalid(_) | RequestError::BadGzip { .. } => 400,
            RequestError::StorageUnavailable => 503,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NotFound { .. } => "not_found",
            RequestError::MethodNotAllowed { .. } => "method_not_allowed",
            RequestError::UnsupportedEncoding { .. } => "unsupported_encoding",
            RequestError::UnsupportedContentType { .. } => "unsupported_content_type",
            RequestError::BadGzip { .. } => "bad_gzip",
            RequestError::MissingWriteKey => "missing_write_key",
            RequestError::UnknownWriteKey { .. } => "unknown_write_key",
            RequestError::RateLimited { .. } => "rate_limited",
            RequestError::Invalid(error) => error.code(),
            RequestError::StorageUnavailable => "storage_unavailable",
        }
    }

    /// Whether the client should send the same request again later.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            RequestError::RateLimited { .. } | RequestError::StorageUnavailable
        )
    }

    /// The JSON error response.
    pub fn to_response(&self) -> HttpResponse {
        let mut response = HttpResponse::json(
            self.status(),
            &json!({"success": false, "errors": [self.to_json()]}),
        );
        match self {
            RequestError::RateLimited {
                retry_after_seconds,
                ..
            } => {
                response
                    .headers
                    .push(("retry-after", retry_after_seconds.to_string()));
            }
            RequestError::StorageUnavailable => {
                response.headers.push(("retry-after", "1".to_owned()));
            }
            _ => {}
        }
        response
    }

    fn to_json(&self) -> Value {
        match self {
            RequestError::Invalid(error) => validation_json(error),
            RequestError::RateLimited { limit, .. } => {
                json!({"code": self.code(), "message": self.to_string(), "limit": limit})
            }
            _ => json!({"code": self.code(), "message": self.to_string()}),
        }
    }
}

/// One validation error as the response lists it: index, field, code, limit, message.
pub(crate) fn validation_json(error: &ValidationError) -> Value {
    json!({
        "index": error.index(),
        "field": error.field(),
        "code": error.code(),
        "limit": error.limit(),
        "message": error.to_string(),
    })
}
