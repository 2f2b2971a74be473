//! `braid compact`: unify first applies what it has not (as `braid serve` does), so that
//! compaction only merges objects unify has read; then the closed hours of the local lake are
//! merged, as the compact function does in the cloud (`docs/lake-layout.md`). Beside a running
//! `braid serve` (which holds the profiles, and compacts by itself) it merges what the server
//! has unified.

use std::path::PathBuf;

use braid_unifier::lake::compact::{CompactSettings, compact_closed_hours};
use braid_unifier::serve::unify_pending;

#[derive(clap::Args)]
pub(crate) struct CompactArgs {
    /// Configuration file, for `[unify]` and `[catalogue.compaction]` (default: ./braid.toml
    /// when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Minutes after an hour ends before it is compacted (default: the configuration's, 15).
    #[arg(long)]
    grace_minutes: Option<i64>,
    /// Uncompressed megabytes per compacted object (default: the configuration's, 64).
    #[arg(long)]
    target_mb: Option<usize>,
}

pub(crate) async fn run(args: &CompactArgs) -> anyhow::Result<()> {
    let (mut config, lake) =
        crate::profiles::open_data(args.config.as_deref(), args.data.as_deref())?;
    match crate::profiles::writable(&config, &lake) {
        Ok(profiles) => {
            if let Err(error) = unify_pending(&lake, &profiles).await {
                tracing::warn!(
                    %error,
                    "unify failed: the objects it could not apply are left as they are"
                );
            }
            profiles.close().await?;
        }
        // braid serve holds the profiles: it unifies (and compacts, every
        // [catalogue.compaction] every_minutes) itself; what it has unified is merged here.
        Err(error) if is_locked(&error) => println!(
            "braid serve is running on {}: it unifies and compacts this folder itself; \
             compacting now what it has unified",
            config.server.data.display()
        ),
        Err(error) => return Err(error),
    }
    let compaction = &mut config.catalogue.compaction;
    if let Some(minutes) = args.grace_minutes {
        compaction.grace_minutes = minutes;
    }
    if let Some(megabytes) = args.target_mb {
        compaction.target_megabytes = megabytes;
    }
    // Never merge what unify has not applied: it would be taken away unread.
    compaction.require_unified = true;
    let settings = CompactSettings::from(&*compaction);
    let summary = compact_closed_hours(&lake, &settings, time::OffsetDateTime::now_utc()).await?;
    println!(
        "compacted {} partitions: {} objects merged into {}",
        summary.partitions, summary.merged, summary.written
    );
    if summary.waiting_for_unify > 0 {
        println!(
            "{} objects were left: unify could not apply them",
            summary.waiting_for_unify
        );
    }
    Ok(())
}

/// Whether opening the profiles failed because another process (braid serve) holds them.
fn is_locked(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<braid_unifier::profiles::kv::KvError>(),
            Some(braid_unifier::profiles::kv::KvError::Locked { .. })
        )
    })
}
