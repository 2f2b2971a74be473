//! `braid destinations status`: each destination's state as its deliverer last saved it in the
//! data folder (beside a running `braid serve`, which delivers): delivered, retrying, failed,
//! dead-lettered, the cursor, the lag and the last error.

use std::path::PathBuf;

use braid_unifier::activate::{dead_prefix, read_state};
use braid_unifier::lake::store::ObjectStore as _;
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum DestinationsCommand {
    /// Each destination's deliveries: counts, cursor, lag, retry, last error.
    Status(StatusArgs),
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
    let DestinationsCommand::Status(args) = command;
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
            let states = lake.list("destinations/").await?;
            let suffix = format!("/{}/state.json", destination.key());
            if let Some(found) = states.iter().find(|o| o.key.ends_with(&suffix)) {
                found
                    .key
                    .trim_start_matches("destinations/workspace=")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .clone_into(&mut destination.workspace);
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
            println!(
                "{}",
                json!({"destination": destination.key(), "workspace": destination.workspace,
                       "status": status, "state": state, "dead_letter_objects": dead_objects,
                       "lag_seconds": lag_seconds})
            );
            continue;
        }
        println!(
            "{} ({}, workspace {}): {status}",
            destination.key(),
            destination.shown_url(),
            destination.workspace
        );
        println!(
            "  delivered {} messages in {} requests; skipped {}; dead-lettered {} (in {dead_objects} objects); failed attempts {}; expired {}",
            state.delivered,
            state.requests,
            state.skipped,
            state.dead_lettered,
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
