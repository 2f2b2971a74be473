//! The unify Lambda function (S3 object-created notifications, directly or through SQS): glue
//! only — the handler is `braid_unifier::lambda::handle_unify`. Retriable failures are returned
//! as errors so that Lambda (or SQS) delivers the notification again; checkpoints make that safe.

use braid_unifier::lambda::{handle_unify, init_tracing};
use braid_unifier::store::S3Store;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = S3Store::from_env()?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move { handle_unify(store, event, OffsetDateTime::now_utc()).await }
    }))
    .await
}
