//! `braid replay`: lands the events a tracking plan blocked (`failed/`, reasons
//! `plan_violation` and `unplanned_event`) that the plan in force allows, in the hour they were
//! received, then unifies them. A running `braid serve` owns the data folder: replay through
//! it with `POST /v1/catalogue/replay` (`docs/catalogue.md`).

use std::path::PathBuf;

use anyhow::Context as _;
use braid_core::catalogue::plan::TrackingPlan;
use braid_core::catalogue::replay::ReplayFilter;
use braid_unifier::lake::replay::replay;
use braid_unifier::profiles::kv::KvError;
use braid_unifier::serve::unify_pending;
use time::OffsetDateTime;

use crate::profiles::{ProfilesArgs, open_data, workspaces_in, writable};

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    common: ProfilesArgs,
    /// The tracking plan to judge by (default: the configuration's; none: everything lands).
    #[arg(long)]
    tracking_plan: Option<PathBuf>,
    /// Only events received at or after this time (RFC 3339, UTC: 2024-05-01T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    from: Option<OffsetDateTime>,
    /// Only events received before this time.
    #[arg(long, value_parser = parse_time)]
    to: Option<OffsetDateTime>,
    #[arg(
        long = "reason",
        help = "Only records of this reason (plan_violation, unplanned_event; default both), repeatable."
    )]
    reasons: Vec<String>,
    /// Say what would land; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    braid_core::timestamp::parse(text)
        .map_err(|_| format!("{text:?} is not an RFC 3339 date-time (2024-05-01T10:00:00Z)"))
}

pub(crate) async fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let filter = ReplayFilter::new(args.from, args.to, args.reasons.clone())?;
    let (mut config, lake) = open_data(args.common.config.as_deref(), args.common.data.as_deref())?;
    if let Some(file) = &args.tracking_plan {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the tracking plan {}", file.display()))?;
        config.catalogue.plan = Some(
            TrackingPlan::parse(&text).with_context(|| format!("invalid {}", file.display()))?,
        );
    }
    let data = config.server.data.clone();
    // The profile lock: no server applies the lake while this writes to it and unifies.
    let profiles = match writable(&config, &lake) {
        Ok(profiles) => profiles,
        Err(error) if matches!(error.downcast_ref(), Some(KvError::Locked { .. })) => {
            anyhow::bail!(
                "braid serve is running on {}: replay through it, with the catalogue token:\n  \
                 curl -X POST -H \"Authorization: Bearer $BRAID_CATALOGUE_TOKEN\" \
                 -d '{{\"dryRun\": true}}' http://{}/v1/catalogue/replay",
                data.display(),
                config.server.listen
            );
        }
        Err(error) => return Err(error),
    };
    let workspaces = match &args.common.workspace {
        Some(workspace) => vec![workspace.clone()],
        None => workspaces_in(&data, &["failed"])?,
    };
    let plan = config.catalogue.plan.as_ref();
    let mut written = 0;
    for workspace in &workspaces {
        let summary = replay(&lake, workspace, plan, &filter, args.dry_run)
            .await
            .with_context(|| format!("cannot replay {workspace:?}"))?;
        written += summary.written.len();
        let refused: Vec<String> = summary
            .still_refused
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        let unreplayable: Vec<String> = summary
            .not_replayable
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        eprintln!(
            "workspace {workspace:?}: {} failure records selected in {} objects; {} {}, {} landed before; refused still: {}; not replayable: {}",
            summary.selected,
            summary.objects,
            summary.landed,
            if args.dry_run { "would land" } else { "landed" },
            summary.landed_before,
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            },
            if unreplayable.is_empty() {
                "none".to_owned()
            } else {
                unreplayable.join(", ")
            },
        );
    }
    if written > 0 {
        let unified = unify_pending(&lake, &profiles).await?;
        eprintln!(
            "unified: {} new events from {} objects (an event landed before is applied once)",
            unified.events, unified.applied
        );
    }
    profiles.close().await?;
    Ok(())
}
