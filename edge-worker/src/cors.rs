//! Cross-origin headers, so browsers on the customer's site may send events.

use crate::http::{HttpRequest, HttpResponse};
use braid_core::collect::CorsConfig;

/// Adds `Access-Control-Allow-*` headers for an `Origin` that may read the answer, or nothing
/// for a request without one or from another origin.
///
/// Credentials (cookies: the identity cookie, the browser's credential) are allowed only for
/// the configured origins, never for `null` or any origin: a page of another site must not read
/// what a visitor's cookies open (`/v1/personalize`, the anonymous id of an answer). Without
/// configured origins, collection stays open to every origin, without credentials.
pub(crate) fn add_headers(
    request: &HttpRequest<'_>,
    config: &CorsConfig,
    response: &mut HttpResponse,
) {
    let Some(origin) = request.header("origin") else {
        return;
    };
    response.headers.push(("vary", "Origin".to_owned()));
    let listed = config.allowed_origins.iter().any(|o| o == origin);
    if !config.allowed_origins.is_empty() && !listed {
        return;
    }
    response
        .headers
        .push(("access-control-allow-origin", origin.to_owned()));
    if listed {
        response
            .headers
            .push(("access-control-allow-credentials", "true".to_owned()));
    }
    // The SDK reads Retry-After of a 429 or 503 to know when to send again.
    response
        .headers
        .push(("access-control-expose-headers", "Retry-After".to_owned()));
}

/// The answer to a preflight `OPTIONS` request.
pub(crate) fn preflight(request: &HttpRequest<'_>, config: &CorsConfig) -> HttpResponse {
    let mut response = HttpResponse {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    };
    add_headers(request, config, &mut response);
    if response.header("access-control-allow-origin").is_some() {
        let allowed = request
            .header("access-control-request-headers")
            .filter(|h| !h.trim().is_empty())
            .unwrap_or("authorization, content-type, content-encoding");
        response.headers.push((
            "access-control-allow-methods",
            "POST, GET, OPTIONS".to_owned(),
        ));
        response
            .headers
            .push(("access-control-allow-headers", allowed.to_owned()));
        response
            .headers
            .push(("access-control-max-age", config.max_age_seconds.to_string()));
    }
    response
}
