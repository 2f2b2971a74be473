//! The ingest function (a function URL or API Gateway): glue only — the handler is
//! `braid_unifier::lambda::handle_ingest`. Environment: `BRAID_CONFIG` (the document of
//! `braid.toml`; optional) and `BRAID_FORWARD_SECRET` (shared with the edge, or
//! `[collect] forward_secret`), `BRAID_BUCKET`, and the standard AWS variables.

use braid_edge::Api;
use braid_unifier::lambda::{Bucket, config_from_env, handle_ingest, init_tracing};
use lambda_http::{Error, Request, run, service_fn};
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = Bucket::from_env()?.lake();
    let config = config_from_env()?;
    if config.collect.forward_secret.is_none() {
        return Err("BRAID_FORWARD_SECRET (or [collect] forward_secret) is not set".into());
    }
    let api = Api::new(config)?;
    run(service_fn(|request: Request| {
        let (api, store) = (&api, &store);
        async move { handle_ingest(api, store, &request, OffsetDateTime::now_utc()).await }
    }))
    .await
}
