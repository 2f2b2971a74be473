//! The ingest Lambda function (a function URL or API Gateway): glue only — the handler is
//! `braid_unifier::ingest`. Environment: `BRAID_FORWARD_SECRET` (shared with the edge),
//! `BRAID_BUCKET`, and the standard AWS variables (see `S3Store::from_env`).

use braid_core::Limits;
use braid_core::forward::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use braid_unifier::store::S3Store;
use braid_unifier::{ForwardRequest, IngestSettings, ingest};
use lambda_http::{Body, Error, Request, Response, run, service_fn};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    braid_unifier::lambda::init_tracing();
    let store = S3Store::from_env()?;
    let settings = IngestSettings {
        secret: std::env::var("BRAID_FORWARD_SECRET")
            .map_err(|_| "BRAID_FORWARD_SECRET is not set")?
            .into_bytes(),
        limits: Limits::default(),
    };
    run(service_fn(|request: Request| {
        let store = &store;
        let settings = &settings;
        async move { handle(store, settings, &request).await }
    }))
    .await
}

async fn handle(
    store: &S3Store,
    settings: &IngestSettings,
    request: &Request,
) -> Result<Response<Body>, Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let forward = ForwardRequest {
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: request.body().as_ref(),
    };
    let reply = ingest(store, settings, forward, OffsetDateTime::now_utc()).await;
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    if let Some(seconds) = reply.retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    Ok(response.body(Body::from(reply.body))?)
}
