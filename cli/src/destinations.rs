//! `braid destinations status`: each destination's state as its deliverer last saved it in the
//! data folder (beside a running `braid serve`, which delivers): delivered, retrying, failed,
//! dead-lettered, the cursor, the lag and the last error. `braid destinations replay`: a request
//! that the deliverer sends a destination's dead letters again (by time and failure class).

use std::path::PathBuf;

use braid_core::activate::replay::{ReplayRequest, ReplayResult};
use braid_unifier::activate::{dead_prefix, read_state, replay_prefix};
use braid_unifier::lake::store::ObjectStore as _;
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum DestinationsCommand {
    /// Each destination's deliveries: counts, cursor, lag, retry, last error.
    Status(StatusArgs),
    /// Send a destination's dead letters again (`braid serve` does, within seconds), with their
    /// ids; those delivered leave the dead letters.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The destination's key.
    destination: String,
    /// Only dead letters kept at or after this time (2026-12-07 or 2026-12-07T10:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Only dead letters kept before this time.
    #[arg(long)]
    to: Option<String>,
    /// Only dead letters of this failure class: `refused`, `retries_exhausted`.
    #[arg(long)]
    class: Option<String>,
    /// Wait up to this many seconds for the replay's result (0: request it and return).
    #[arg(long, default_value_t = 0)]
    wait: u64,
    /// Configuration file (default: ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// A time as `--from` and `--to` take it: a date (its first instant, UTC) or a timestamp (ms).
fn time_arg(flag: &str, text: &str) -> anyhow::Result<i64> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    braid_core::timestamp::parse(&full)
        .map(braid_core::timestamp::unix_millis)
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag}: {text:?} is not a date (2026-12-07) or a time (2026-12-07T10:00:00Z)"
            )
        })
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let (config, lake) = crate::profiles::open_data(args.config.as_deref(), args.data.as_deref())?;
    let destinations = config.destinations()?;
    let Some(destination) = destinations.iter().find(|d| d.key() == args.destination) else {
        anyhow::bail!(
            "destination: {:?} is not a configured destination ({})",
            args.destination,
            destinations
                .iter()
                .map(braid_core::activate::destination::Destination::key)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut workspace = destination.workspace.clone();
    if workspace.is_empty() {
        workspace = state_workspace(&lake, destination.key())
            .await?
            .unwrap_or_default();
    }
    let now = time::OffsetDateTime::now_utc();
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let request = ReplayRequest {
        id: format!(
            "{:013}-{}",
            braid_core::timestamp::unix_millis(now),
            braid_core::hex::encode(&random)
        ),
        from: args
            .from
            .as_deref()
            .map(|t| time_arg("--from", t))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|t| time_arg("--to", t))
            .transpose()?,
        class: args.class,
    };
    request.check().map_err(anyhow::Error::msg)?;
    let prefix = replay_prefix(&workspace, destination.key());
    lake.put(
        &format!("{prefix}requests/{}.json", request.id),
        serde_json::to_vec_pretty(&request)?,
    )
    .await?;
    println!(
        "replay {} of {} requested: braid serve sends its dead letters again within seconds",
        request.id,
        destination.key()
    );
    if args.wait == 0 {
        return Ok(());
    }
    let done = format!("{prefix}done/{}.json", request.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    while std::time::Instant::now() < deadline {
        if let Some(bytes) = lake.get(&done).await? {
            let result: ReplayResult = serde_json::from_slice(&bytes)?;
            println!(
                "delivered {}; kept as dead letters {}{}",
                result.delivered,
                result.kept,
                result
                    .error
                    .map(|e| format!("; stopped: {e}"))
                    .unwrap_or_default()
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "no result in {} s: is braid serve running with {} enabled? (the request stays)",
        args.wait,
        destination.key()
    )
}

/// The workspace whose state a destination of a document without workspaces has.
async fn state_workspace(
    lake: &braid_unifier::lake::store::LocalStore,
    key: &str,
) -> anyhow::Result<Option<String>> {
    let states = lake.list("destinations/").await?;
    let suffix = format!("/{key}/state.json");
    Ok(states
        .iter()
        .find(|o| o.key.ends_with(&suffix))
        .map(|found| {
            found
                .key
                .trim_start_matches("destinations/workspace=")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        }))
}

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// Configuration file (default: ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print JSON (one object per destination, one per line).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: DestinationsCommand) -> anyhow::Result<()> {
    let args = match command {
        DestinationsCommand::Status(args) => args,
        DestinationsCommand::Replay(args) => return replay(args).await,
    };
    let (config, lake) = crate::profiles::open_data(args.config.as_deref(), args.data.as_deref())?;
    let destinations = config.destinations()?;
    if destinations.is_empty() {
        println!("no destinations are configured ([[activate.destinations]])");
        return Ok(());
    }
    let now = braid_core::timestamp::unix_millis(time::OffsetDateTime::now_utc());
    for mut destination in destinations {
        if destination.workspace.is_empty() {
            // A document without workspaces (`braid serve` named it by a flag): the one that
            // holds this destination's state.
            if let Some(workspace) = state_workspace(&lake, destination.key()).await? {
                destination.workspace = workspace;
            }
        }
        let state = read_state(&lake, &destination.workspace, destination.key()).await?;
        let dead_objects = lake
            .list(&dead_prefix(&destination.workspace, destination.key()))
            .await?
            .len();
        let status = state.status(destination.config.enabled);
        let lag_seconds = state.lag_millis(now).map(|lag| lag / 1000);
        if args.json {
            let mut report = state.report(&destination, now);
            if let Some(fields) = report.as_object_mut() {
                fields.insert("dead_letter_objects".into(), json!(dead_objects));
            }
            println!("{report}");
            continue;
        }
        println!(
            "{} ({}, workspace {}): {status}",
            destination.key(),
            destination.shown_url(),
            destination.workspace
        );
        println!(
            "  delivered {} messages in {} requests; skipped {}; dead-lettered {} (in {dead_objects} objects); replayed {}; failed attempts {}; expired {}",
            state.delivered,
            state.requests,
            state.skipped,
            state.dead_lettered,
            state.replayed,
            state.failed_attempts,
            state.expired
        );
        if let Some(copy) = &state.copy {
            println!(
                "  copying every profile: {} written, after {:?} (then the changes after {})",
                state.copied, copy.after, copy.through
            );
        }
        println!(
            "  cursor: change {} (generation {}); lag {}",
            state.after,
            state.generation,
            lag_seconds.map_or("none".to_owned(), |s| format!("{s} s"))
        );
        if let Some(retrying) = &state.retrying {
            println!(
                "  retrying: {} attempts failed, next in {} s",
                retrying.attempts,
                ((retrying.next_at - now).max(0)) / 1000
            );
        }
        if let Some(disabled) = &state.disabled {
            println!("  disabled: {}", disabled.reason);
        }
        if let Some(error) = &state.last_error {
            println!("  last error: {error}");
        }
    }
    Ok(())
}
