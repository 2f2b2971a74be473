//! The compact function (scheduled, e.g. every 15 minutes): glue only — the handler is
//! `braid_unifier::lambda::handle_compact`. Whatever the event, it compacts the closed hours
//! under `raw/`, as `[catalogue.compaction]` of `BRAID_CONFIG` says (grace, target size, and
//! whether only objects unify has applied are merged). Environment: `BRAID_CONFIG`,
//! `BRAID_BUCKET` and the AWS variables.

use braid_unifier::lake::compact::CompactSettings;
use braid_unifier::lambda::{Bucket, config_from_env, handle_compact, init_tracing};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = Bucket::from_env()?.lake();
    let settings = CompactSettings::from(&config_from_env()?.catalogue.compaction);
    run(service_fn(|event: LambdaEvent<Value>| {
        let (store, settings) = (&store, &settings);
        async move { handle_compact(store, settings, event, OffsetDateTime::now_utc()).await }
    }))
    .await
}
