//! `braid serve`: the collection handlers of `braid-edge` over HTTP with axum, and the lake on
//! the local folder.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use braid_core::forward::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use braid_core::identity::Identifier;
use braid_edge::{Collector, Handled, HttpRequest, HttpResponse};
use braid_unifier::{ForwardRequest, IngestSettings, LocalStore, ingest};
use http_body_util::BodyExt as _;
use tokio::net::TcpListener;

use crate::lake::{self, Lake};
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// Shared state of the running server.
pub(crate) struct App {
    pub(crate) collector: Collector,
    pub(crate) lake: Lake,
    pub(crate) metrics: Metrics,
    pub(crate) trust_forwarded_for: bool,
    /// `POST /v1/forward`: the ingest handler over the data folder, when a secret is set.
    pub(crate) forward: Option<Forward>,
    /// Edge mode: accepted events go to this upstream ingest instead of the local lake.
    pub(crate) upstream: Option<Upstream>,
    /// Identity resolution and profiles, kept up to date by the unify loop.
    pub(crate) profiles: Arc<crate::Profiles>,
    /// The workspace the profile API and personalization answer for when a request names
    /// none (the first configured one).
    pub(crate) profile_workspace: String,
    /// The profile API's bearer token; `None`: the API is off.
    pub(crate) profile_token: Option<String>,
    /// The browser SDK's files, when served.
    pub(crate) sdk: Option<Sdk>,
}

/// The browser SDK's folder and the path prefix it is served under (ending in `/`).
pub(crate) struct Sdk {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) prefix: String,
}

/// What `POST /v1/forward` needs: the same ingest handler as the Lambda function, over the
/// data folder instead of a bucket.
pub(crate) struct Forward {
    pub(crate) store: LocalStore,
    pub(crate) settings: IngestSettings,
}

/// Serves until `shutdown` completes, then drains in-flight requests and closes the lake.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&app));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    let (received, accepted, failed, bytes) = app.metrics.totals();
    tracing::info!(message = "Stopped.", received, accepted, failed, bytes);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.lake.close();
    }
    Ok(())
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/metrics" && parts.method == "GET" {
        return text_response(200, "text/plain; version=0.0.4", app.metrics.render());
    }
    if parts.uri.path() == "/v1/forward" {
        return forward(&app, &parts, body).await;
    }
    if let Some(id) = parts.uri.path().strip_prefix("/v1/profiles/") {
        return profile(&app, &parts, id).await;
    }
    if let Some(sdk) = &app.sdk
        && let Some(name) = parts.uri.path().strip_prefix(sdk.prefix.as_str())
    {
        // Only plain file names are read: no folders, no dot files.
        let file = match braid_edge::sdk_content_type(name) {
            Some(_) => tokio::fs::read(sdk.dir.join(name)).await.ok(),
            None => None,
        };
        return to_axum(braid_edge::sdk_response(parts.method.as_str(), name, file));
    }
    let limit = app.collector.config().limits.max_batch_bytes;
    let body = match read_limited(body, limit).await {
        Ok(body) => body,
        Err(error) => {
            return text_response(400, "text/plain", format!("cannot read the body: {error}"));
        }
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let client_ip = app
        .trust_forwarded_for
        .then(|| {
            parts
                .headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .flatten()
        .or(Some(peer.ip()));
    let fresh_id = app
        .collector
        .config()
        .identity_cookie
        .is_some()
        .then(random_uuid)
        .flatten();
    let http_request = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers,
        body: &body,
        client_ip,
        fresh_id: fresh_id.as_deref(),
        location: None,
        edge: None,
    };
    let handled = app.collector.handle(&http_request, lake::now());
    let response = match handled {
        Handled::Respond(response, counts) => {
            app.metrics.record(counts);
            response
        }
        Handled::Store(write, reply) => {
            let counts = write.counts;
            let stored = match &app.upstream {
                Some(upstream) => upstream.forward(&write).await.map_err(|error| {
                    tracing::warn!(%error, "the upstream did not take a batch");
                }),
                None => app.lake.store(write).await.map_err(|_| ()),
            };
            if stored.is_err() {
                app.metrics.record_store_error();
            }
            app.metrics.record(counts);
            reply.finish(stored.is_ok())
        }
        Handled::Personalize(lookup) => return personalize(&app, lookup).await,
    };
    to_axum(response)
}

/// `GET /v1/personalize`: the local profiles stand in for the edge's store.
async fn personalize(app: &App, lookup: braid_edge::Personalization) -> Response {
    let visible = app
        .collector
        .config()
        .personalize
        .as_ref()
        .map_or(&[][..], |p| p.traits.as_slice());
    match app
        .profiles
        .edge_value(&app.profile_workspace, &lookup.identifier, visible)
        .await
    {
        Ok(value) => to_axum(lookup.finish(value)),
        Err(error) => {
            tracing::warn!(%error, "personalize: the profile store failed");
            json_error(503, "store_failed", &error.to_string())
        }
    }
}

/// A random (version 4) UUID, for a new visitor's anonymous id.
fn random_uuid() -> Option<String> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    let [b6, b8] = [bytes.get(6).copied()?, bytes.get(8).copied()?];
    bytes[6] = (b6 & 0x0f) | 0x40;
    bytes[8] = (b8 & 0x3f) | 0x80;
    let mut hex = String::with_capacity(32);
    for byte in bytes {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8)?,
        hex.get(8..12)?,
        hex.get(12..16)?,
        hex.get(16..20)?,
        hex.get(20..32)?
    ))
}

/// `POST /v1/forward`: a batch an edge validated, enriched and signed (`docs/forward.md`).
async fn forward(app: &App, parts: &axum::http::request::Parts, body: Body) -> Response {
    let Some(forward) = &app.forward else {
        return json_error(
            404,
            "not_found",
            "this server takes no forwarded batches (no forward_secret)",
        );
    };
    if parts.method != "POST" {
        return json_error(405, "method_not_allowed", "use POST");
    }
    // Enriched events are larger than what clients sent: allow twice the client limit.
    let limit = app.collector.config().limits.max_batch_bytes * 2;
    let body = match read_limited(body, limit).await {
        Ok(body) if body.len() <= limit => body,
        Ok(body) => {
            let message = format!(
                "body is {} bytes, over the limit of {limit} bytes",
                body.len()
            );
            return json_error(413, "body_too_large", &message);
        }
        Err(error) => {
            return json_error(400, "bad_body", &format!("cannot read the body: {error}"));
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request = ForwardRequest {
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: &body,
    };
    let reply = ingest(&forward.store, &forward.settings, request, lake::now()).await;
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(seconds) = reply.retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    to_axum(HttpResponse {
        status: reply.status,
        headers,
        body: reply.body.into_bytes(),
    })
}

/// `GET /v1/profiles/{type}:{value}`: a profile, with a bearer token separate from write keys;
/// `GET /v1/profiles/{type}:{value}/events?limit=N&cursor=C`: its events, a page at a time.
/// Both take `?workspace=W` (default: the first configured workspace).
async fn profile(app: &App, parts: &axum::http::request::Parts, path: &str) -> Response {
    let Some(token) = &app.profile_token else {
        return json_error(
            404,
            "not_found",
            "the profile API is off (no profile_token)",
        );
    };
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), token.as_bytes())) {
        return json_error(
            401,
            "unauthorized",
            "send the profile token as Authorization: Bearer",
        );
    }
    if parts.method != "GET" {
        return json_error(405, "method_not_allowed", "use GET");
    }
    let (id, events) = match path.strip_suffix("/events") {
        Some(id) => (id, true),
        None => (path, false),
    };
    let decoded = percent_decode(id);
    let Some(identifier) = decoded.as_deref().and_then(Identifier::parse) else {
        return json_error(
            400,
            "bad_identifier",
            "the path must be /v1/profiles/TYPE:VALUE",
        );
    };
    let workspace = match query(parts, "workspace") {
        None => app.profile_workspace.clone(),
        Some(name) if braid_core::lake::is_valid_workspace(&name) => name,
        Some(name) => {
            return json_error(
                400,
                "bad_workspace",
                &format!("\"workspace\" is not a workspace name: {name:?}"),
            );
        }
    };
    if events {
        return profile_events(app, parts, &workspace, &identifier).await;
    }
    match app.profiles.profile(&workspace, &identifier).await {
        Ok(Some(profile)) => text_response(200, "application/json", profile.to_string()),
        Ok(None) => json_error(404, "not_found", &format!("no profile has {identifier}")),
        Err(error) => json_error(503, "store_failed", &error.to_string()),
    }
}

/// The value of a query parameter (percent-decoded).
fn query(parts: &axum::http::request::Parts, name: &str) -> Option<String> {
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| percent_decode(v))
    })
}

async fn profile_events(
    app: &App,
    parts: &axum::http::request::Parts,
    workspace: &str,
    identifier: &Identifier,
) -> Response {
    let limit = match query(parts, "limit").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1_000).contains(&n) => n,
        Some(_) => return json_error(400, "bad_limit", "\"limit\" must be 1 to 1000"),
    };
    let after = match query(parts, "cursor").map(|v| u64::from_str_radix(&v, 16)) {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(_)) => {
            return json_error(
                400,
                "bad_cursor",
                "\"cursor\" must be the nextCursor of a previous page",
            );
        }
    };
    match app
        .profiles
        .events(workspace, identifier, after, limit)
        .await
    {
        Ok(Some((events, next))) => {
            let body = serde_json::json!({"events": events,
                "nextCursor": next.map(|n| format!("{n:x}"))});
            text_response(200, "application/json", body.to_string())
        }
        Ok(None) => json_error(404, "not_found", &format!("no profile has {identifier}")),
        Err(error) => json_error(503, "store_failed", &error.to_string()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Decodes `%XX` escapes of a path segment.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn json_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"ok": false, "error": code, "message": message}).to_string();
    text_response(status, "application/json", body)
}

/// Reads at most `limit + 1` bytes: enough for the handler to see that a body is too large
/// without holding an unbounded one in memory.
async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, axum::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = (limit + 1).saturating_sub(out.len());
            out.extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&data));
            if out.len() > limit {
                break;
            }
        }
    }
    Ok(out)
}

fn to_axum(response: HttpResponse) -> Response {
    let mut out = Response::new(Body::from(response.body));
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.headers_mut()
                .append(HeaderName::from_static(name), value);
        }
    }
    out
}

fn text_response(status: u16, content_type: &'static str, body: String) -> Response {
    to_axum(HttpResponse {
        status,
        headers: vec![("content-type", content_type.to_owned())],
        body: body.into_bytes(),
    })
}
