//! The HTTP glue of `braid serve`: axum requests into `braid_edge::Api`, and its steps finished
//! on this machine — events to the group-commit lake (or the upstream in edge mode), profile and
//! personalization reads from the local profile stores, SDK files from a folder. `/metrics`
//! (the process's counters) is the one route of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use braid_edge::{
    Api, ApiError, AudienceQuery, AudienceRead, Handled, HttpRequest, HttpResponse, ProfileAnswer,
    ProfileQuery, ProfileRead,
};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::metrics::Metrics;
use super::upstream::Upstream;
use super::{LocalProfiles, now};
use crate::lake::group::GroupCommit;
use crate::lake::store::LocalStore;

/// Shared state of the running server.
pub(super) struct App {
    pub(super) api: Api,
    pub(super) writer: GroupCommit,
    /// The lake (for replays of `failed/`), and where the objects a replay writes go to be
    /// unified (none: collection only; the next start unifies them).
    pub(super) lake: LocalStore,
    pub(super) replayed: Option<mpsc::UnboundedSender<Vec<String>>>,
    /// Edge mode: accepted events go to this upstream ingest instead of the local lake.
    pub(super) upstream: Option<Upstream>,
    /// Identity resolution and profiles, kept up to date by the unify loop (none: collection
    /// only).
    pub(super) profiles: Option<Arc<LocalProfiles>>,
    pub(super) metrics: Metrics,
    pub(super) trust_forwarded_for: bool,
    /// The browser SDK's files, when served.
    pub(super) sdk_dir: Option<PathBuf>,
    /// How long a client may take to send a body.
    pub(super) body_timeout: Duration,
    /// The destinations' states, as their deliverers post them.
    pub(super) board: crate::activate::Board,
}

/// How `braid serve` treats connections (`[server]` of the configuration).
#[derive(Clone, Copy, Debug)]
pub(super) struct Connections {
    /// To send a request's headers, and to stay idle between two requests.
    pub(super) header_timeout: Duration,
    /// Most open at once.
    pub(super) max: usize,
    /// For requests in flight once shutdown begins.
    pub(super) grace: Duration,
}

/// Serves until `shutdown` completes, then lets requests in flight finish (for the grace
/// period at most, then cuts them off) and closes the lake.
///
/// Each connection is served by hyper with a header read timeout (which also bounds how long a
/// kept-alive connection may sit idle), and at most `connections.max` are open: one more is
/// answered 503 and closed, so that idle or slow clients cannot take every file descriptor.
pub(super) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    connections: Connections,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&app));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(connections.header_timeout);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(connections.max));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most often: wait for connections to close.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            app.metrics.record_refused_connection();
            tasks.spawn(refuse(stream, connections.max));
            continue;
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    drop(router);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(connections.grace) => {
            tracing::warn!(
                message = "Requests still in flight after the grace period are cut off.",
                grace_seconds = connections.grace.as_secs()
            );
        }
    }
    tasks.shutdown().await;
    let (received, accepted, failed, bytes) = app.metrics.totals();
    tracing::info!(message = "Stopped.", received, accepted, failed, bytes);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.writer.close();
    } else {
        tracing::error!(
            message = "A request outlived the server: the lake writer stops with the process."
        );
    }
    Ok(())
}

/// Answers a connection over the limit with 503 (and `Retry-After`), then closes it.
async fn refuse(mut stream: TcpStream, limit: usize) {
    use tokio::io::AsyncWriteExt as _;
    let response = ApiError::TooManyConnections { limit }.to_response();
    let mut head = format!(
        "HTTP/1.1 {} Service Unavailable\r\nconnection: close\r\ncontent-length: {}\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        for part in [*name, ": ", value, "\r\n"] {
            head.push_str(part);
        }
    }
    head.push_str("\r\n");
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&response.body).await?;
        stream.shutdown().await
    };
    // A client that does not read gets nothing: the connection is closed all the same.
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), write).await {
        tracing::debug!(%error, "a refused connection broke");
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/metrics" && parts.method == "GET" {
        return to_axum(HttpResponse {
            status: 200,
            headers: vec![("content-type", "text/plain; version=0.0.4".to_owned())],
            body: app.metrics.render(&app.board).into_bytes(),
        });
    }
    let limit = app.api.body_limit(parts.uri.path());
    let body = match tokio::time::timeout(app.body_timeout, read_limited(body, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            let error = ApiError::UnreadableBody {
                detail: error.to_string(),
            };
            return to_axum(error.to_response());
        }
        Err(_) => {
            let error = ApiError::BodyTimeout {
                seconds: app.body_timeout.as_secs(),
            };
            let mut response = to_axum(error.to_response());
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            return response;
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
    let cookies = app.api.config().collect.identity_cookie.is_some();
    let fresh_id = cookies.then(random_uuid).flatten();
    let fresh_key = cookies.then(random_uuid).flatten();
    let http_request = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers,
        body: &body,
        client_ip,
        fresh_id: fresh_id.as_deref(),
        fresh_key: fresh_key.as_deref(),
        location: None,
        edge: None,
    };
    let handled = app.api.handle(&http_request, now());
    to_axum(finish(&app, handled).await)
}

/// The answer to a handled request, once its step is done on this machine.
async fn finish(app: &App, handled: Handled) -> HttpResponse {
    match handled {
        Handled::Respond(response, counts) => {
            app.metrics.record(counts);
            response
        }
        Handled::Store(write, reply, counts) => {
            let stored = match &app.upstream {
                Some(upstream) => upstream.forward(&write).await.map_err(|error| {
                    tracing::warn!(%error, "the upstream did not take a batch");
                }),
                None => app.writer.store(write).await.map_err(|_| ()),
            };
            if stored.is_err() {
                app.metrics.record_store_error();
            }
            app.metrics.record(counts);
            reply.finish(stored.is_ok())
        }
        Handled::Personalize(lookup) => {
            let found = match &app.profiles {
                Some(profiles) => {
                    profiles
                        .edge_value(&lookup.workspace, &lookup.identifier, &lookup.traits)
                        .await
                }
                None => Ok(None),
            };
            match found {
                Ok(value) => lookup.finish(value),
                Err(error) => {
                    tracing::warn!(%error, "personalize: the profile store failed");
                    lookup.fail(&error.to_string())
                }
            }
        }
        Handled::Profile(read) => profile(app.profiles.as_deref(), read).await,
        Handled::Audiences(read) => audiences(app.profiles.as_deref(), read).await,
        Handled::Catalogue(read) => match app.profiles.as_deref() {
            Some(profiles) => {
                let map = profiles.data_map(&read.workspace).await;
                read.finish(map)
            }
            None => read.finish(Err("this server keeps no profiles")),
        },
        Handled::Destinations(read) => {
            let now = braid_core::timestamp::unix_millis(time::OffsetDateTime::now_utc());
            let reports: Vec<_> = app
                .board
                .all()
                .iter()
                .map(|(destination, state)| state.report(destination, now))
                .collect();
            read.finish(&reports)
        }
        Handled::Replay(replay) => {
            let plan = app.api.config().catalogue.plan.as_ref();
            let (response, written) = crate::lake::replay::answer(&app.lake, plan, replay).await;
            if !written.is_empty()
                && let Some(unify) = &app.replayed
                && unify.send(written).is_err()
            {
                tracing::warn!("replay: the unify loop has stopped; the next start unifies it");
            }
            response
        }
        Handled::Sdk(read) => {
            let file = match (&app.sdk_dir, read.name()) {
                (Some(dir), Some(name)) => tokio::fs::read(dir.join(name)).await.ok(),
                _ => None,
            };
            read.finish(file)
        }
    }
}

/// The profile API from the local profile stores.
async fn profile(profiles: Option<&LocalProfiles>, read: ProfileRead) -> HttpResponse {
    let Some(profiles) = profiles else {
        return read.finish(Err("this server keeps no profiles"));
    };
    let found = match &read.query {
        ProfileQuery::Profile => profiles
            .profile(&read.workspace, &read.identifier)
            .await
            .map(|found| found.map_or(ProfileAnswer::Unknown, ProfileAnswer::Profile)),
        ProfileQuery::Explain { audience } => profiles
            .explain(
                &read.workspace,
                &read.identifier,
                audience,
                braid_core::timestamp::unix_millis(now()),
            )
            .await
            .map(|found| found.map_or(ProfileAnswer::Unknown, ProfileAnswer::Profile)),
        ProfileQuery::Events { after, limit } => profiles
            .events(&read.workspace, &read.identifier, *after, *limit)
            .await
            .map(|found| {
                found.map_or(ProfileAnswer::Unknown, |(events, next)| {
                    ProfileAnswer::Events { events, next }
                })
            }),
    };
    read.finish(found)
}

/// Answers an audience read (a preview, the change log) from the profile store.
async fn audiences(profiles: Option<&LocalProfiles>, read: AudienceRead) -> HttpResponse {
    let Some(profiles) = profiles else {
        return read.finish(Err("this server keeps no profiles"));
    };
    let found = match &read.query {
        AudienceQuery::Preview {
            condition,
            compare,
            sample,
        } => {
            let now = braid_core::timestamp::unix_millis(now());
            profiles
                .preview(&read.workspace, condition, compare.as_deref(), now, *sample)
                .await
        }
        AudienceQuery::Changes { after, limit } => profiles
            .changes(&read.workspace, *after, *limit)
            .await
            .map(serde_json::Value::Array),
    };
    read.finish(found)
}

/// A random (version 4) UUID, for a new visitor's anonymous id.
fn random_uuid() -> Option<String> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    let [b6, b8] = [bytes.get(6).copied()?, bytes.get(8).copied()?];
    bytes[6] = (b6 & 0x0f) | 0x40;
    bytes[8] = (b8 & 0x3f) | 0x80;
    let hex = braid_core::hex::encode(&bytes);
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8)?,
        hex.get(8..12)?,
        hex.get(12..16)?,
        hex.get(16..20)?,
        hex.get(20..32)?
    ))
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
