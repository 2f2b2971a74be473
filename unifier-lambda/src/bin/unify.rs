//! The unify Lambda function (S3 object-created notifications, directly or through SQS): glue
//! only — the handler is `braid_unifier::unify`. Retriable failures are returned as errors so
//! that Lambda (or SQS) delivers the notification again; checkpoints make that safe.

use braid_unifier::store::S3Store;
use braid_unifier::unify::{
    CountEvents, HandlerError, UnifySummary, keys_from_notification, unify_objects,
};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    braid_unifier::lambda::init_tracing();
    let store = S3Store::from_env()?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move { handle(store, &event.payload).await }
    }))
    .await
}

async fn handle(store: &S3Store, payload: &Value) -> Result<UnifySummary, HandlerError> {
    let keys = keys_from_notification(payload)?;
    let summary = unify_objects(store, &CountEvents, &keys, OffsetDateTime::now_utc()).await?;
    tracing::info!(?summary, "unify");
    Ok(summary)
}
