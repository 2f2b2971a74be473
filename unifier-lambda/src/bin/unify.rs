//! The unify Lambda function (S3 object-created notifications, directly or through SQS): glue
//! only — the handler is `braid_unifier::lambda::handle_unify`, over identity resolution and
//! profiles kept in the bucket (`profiles/workspace=W/`, SlateDB). Retriable failures are
//! returned as errors so that Lambda (or SQS) delivers the notification again; checkpoints and
//! `messageId`s make that safe. One writer per workspace: deploy it with reserved concurrency 1.

use braid_unifier::kv::{S3Home, SlateOptions};
use braid_unifier::lambda::{UnifyConfig, handle_unify, init_tracing};
use braid_unifier::profiles::ProfileUnify;
use braid_unifier::store::S3Store;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = S3Store::from_env()?;
    let config = UnifyConfig::from_env()?;
    let home = S3Home::from_env(SlateOptions::default())?;
    let profiles = ProfileUnify::new(
        store.clone(),
        home,
        config.identity,
        config.profiles,
        config.profile_store,
    );
    run(service_fn(|event: LambdaEvent<Value>| {
        let (store, profiles) = (&store, &profiles);
        async move { handle_unify(store, profiles, event, OffsetDateTime::now_utc()).await }
    }))
    .await
}
