//! The compact Lambda function (scheduled, e.g. every 15 minutes): glue only — the handler is
//! `braid_unifier::lambda::handle_compact`. Whatever the event, it compacts the closed hours under `raw/`.
//! Environment: `BRAID_BUCKET`, the AWS variables, and optionally
//! `BRAID_COMPACT_TARGET_MB` (default 64), `BRAID_COMPACT_GRACE_MINUTES` (default 15) and
//! `BRAID_COMPACT_REQUIRE_UNIFIED` (default `true`: merge only objects unify has applied).

use braid_unifier::compact::CompactSettings;
use braid_unifier::lambda::{handle_compact, init_tracing};
use braid_unifier::store::S3Store;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let store = S3Store::from_env()?;
    let number = |name: &str, default: i64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let settings = CompactSettings {
        grace: Duration::minutes(number("BRAID_COMPACT_GRACE_MINUTES", 15)),
        target_bytes: usize::try_from(number("BRAID_COMPACT_TARGET_MB", 64))
            .unwrap_or(64)
            .saturating_mul(1024 * 1024),
        require_unified: std::env::var("BRAID_COMPACT_REQUIRE_UNIFIED").as_deref() != Ok("false"),
    };
    run(service_fn(|event: LambdaEvent<Value>| {
        let (store, settings) = (&store, &settings);
        async move { handle_compact(store, settings, event, OffsetDateTime::now_utc()).await }
    }))
    .await
}
