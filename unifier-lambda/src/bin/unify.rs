//! The unify function (S3 object-created notifications, directly or through SQS): glue only —
//! the handler is `braid_unifier::lambda::handle_unify`, over identity resolution and profiles
//! kept in the bucket (`profiles/workspace=W/`, SlateDB), under the `[unify]` rules of
//! `BRAID_CONFIG`. Retriable failures are returned as errors so that Lambda (or SQS) delivers
//! the notification again; checkpoints and `messageId`s make that safe. One writer per
//! workspace: deploy it with reserved concurrency 1.

use braid_unifier::lambda::{Bucket, config_from_env, handle_unify, init_tracing};
use braid_unifier::profiles::kv::SlateOptions;
use braid_unifier::profiles::{ProfileUnify, Segmentation};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let bucket = Bucket::from_env()?;
    let store = bucket.lake();
    let config = config_from_env()?;
    let strict = config.strict_identity_workspaces();
    let data_map = config.catalogue.data_map;
    let segmentation = Segmentation::of(&config);
    let workspaces: Vec<String> = config.workspaces.iter().map(|w| w.name.clone()).collect();
    let profiles = ProfileUnify::new(
        store.clone(),
        bucket.profile_home(SlateOptions::default())?,
        config.unify.identity,
        config.unify.profiles,
        config.unify.store,
    )
    .with_strict_identity(strict)
    .with_data_map(data_map)
    .with_segmentation(segmentation)
    .with_workspaces(workspaces);
    run(service_fn(|event: LambdaEvent<Value>| {
        let (store, profiles) = (&store, &profiles);
        async move { handle_unify(store, profiles, event, OffsetDateTime::now_utc()).await }
    }))
    .await
}
