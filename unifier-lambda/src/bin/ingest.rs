//! The ingest Lambda function (a function URL or API Gateway): glue only — the handler is
//! `braid_unifier::lambda::handle_ingest`. Environment: `BRAID_FORWARD_SECRET` (shared with
//! the edge), `BRAID_BUCKET`, and the standard AWS variables (see `S3Store::from_env`).

use braid_core::Limits;
use braid_unifier::IngestSettings;
use braid_unifier::lambda::{handle_ingest, init_tracing};
use braid_unifier::store::S3Store;
use lambda_http::{Error, Request, run, service_fn};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = S3Store::from_env()?;
    let settings = IngestSettings {
        secret: std::env::var("BRAID_FORWARD_SECRET")
            .map_err(|_| "BRAID_FORWARD_SECRET is not set")?
            .into_bytes(),
        limits: Limits::default(),
    };
    run(service_fn(|request: Request| {
        let (store, settings) = (&store, &settings);
        async move { handle_ingest(store, settings, &request, OffsetDateTime::now_utc()).await }
    }))
    .await
}
