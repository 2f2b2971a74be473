//! `braid profiles rebuild|export`: the profile stores of a data folder, recomputed from the
//! lake or written out (beside a running `braid serve`, read-only: what it made durable).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use braid_core::Config;
use braid_unifier::lake::store::LocalStore;
use braid_unifier::profiles::kv::{KvHome as _, LocalHome, SlateOptions};
use braid_unifier::serve::{LocalProfiles, local_profiles};

#[derive(clap::Subcommand)]
pub(crate) enum ProfilesCommand {
    /// Recompute every profile from the lake (as after a rule change), replacing the profile
    /// store; `braid serve` must not be running on the data folder.
    Rebuild(ProfilesArgs),
    /// Write every profile of the profile store as NDJSON (stdout or a file), or the edge's
    /// personalization entries (--edge).
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub(crate) struct ProfilesArgs {
    /// Configuration file, for `[unify]` (default: ./braid.toml when it exists).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// The workspace (default: every workspace of the lake).
    #[arg(long)]
    pub(crate) workspace: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    common: ProfilesArgs,
    /// Write here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the edge's personalization entries instead (JSON for `wrangler kv bulk put`:
    /// `[{"key", "value"}]`), keyed with `[activate.personalize] key_secret`, with its `traits`.
    #[arg(long)]
    edge: bool,
}

pub(crate) async fn run(command: ProfilesCommand) -> anyhow::Result<()> {
    match command {
        ProfilesCommand::Rebuild(args) => rebuild(&args).await,
        ProfilesCommand::Export(args) => export(&args).await,
    }
}

/// The configuration of a data folder command (`--data` over the file's), and its lake.
pub(crate) fn open_data(
    config: Option<&Path>,
    data: Option<&Path>,
) -> anyhow::Result<(Config, LocalStore)> {
    let mut config = crate::config::load(config)?;
    if let Some(data) = data {
        data.clone_into(&mut config.server.data);
    }
    let lake = LocalStore::open(&config.server.data)
        .with_context(|| format!("cannot open {}", config.server.data.display()))?;
    Ok((config, lake))
}

/// The workspaces a command works on: the one named, or every workspace that has events in
/// the lake of `data` (`raw/workspace=W`) or a profile store (`profiles/workspace=W`).
pub(crate) fn workspaces(args: &ProfilesArgs, data: &Path) -> anyhow::Result<Vec<String>> {
    if let Some(workspace) = &args.workspace {
        return Ok(vec![workspace.clone()]);
    }
    workspaces_in(data, &["raw", "profiles"])
}

/// The workspaces with a folder (`workspace=W`) in one of the `areas` of the data folder.
pub(crate) fn workspaces_in(data: &Path, areas: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for area in areas {
        let Ok(entries) = std::fs::read_dir(data.join(area)) else {
            continue;
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(workspace) = name.to_str().and_then(|n| n.strip_prefix("workspace=")) {
                names.insert(workspace.to_owned());
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// The profiles of a data folder, as their one writer.
pub(crate) fn writable(config: &Config, lake: &LocalStore) -> anyhow::Result<LocalProfiles> {
    let home = LocalHome::open(&config.server.data, SlateOptions::default())?;
    Ok(local_profiles(config, lake, home))
}

/// `braid profiles rebuild` (and `braid catalogue rebuild`): every profile, and the data map,
/// recomputed from the lake, in a new generation of each workspace's store.
pub(crate) async fn rebuild(args: &ProfilesArgs) -> anyhow::Result<()> {
    let (config, lake) = open_data(args.config.as_deref(), args.data.as_deref())?;
    let profiles = writable(&config, &lake)?;
    for workspace in workspaces(args, &config.server.data)? {
        let started = std::time::Instant::now();
        let opened = profiles
            .rebuild(&workspace)
            .await
            .with_context(|| format!("cannot rebuild {workspace:?}"))?;
        let count = profiles.snapshot(&workspace).await?.len();
        let map = profiles.data_map(&workspace).await?.unwrap_or_default();
        eprintln!(
            "workspace {workspace:?}: {count} profiles from {} events in {:.2} s (generation {}); data map of {} events, {} paths",
            opened.rebuilt.unwrap_or(0),
            started.elapsed().as_secs_f64(),
            opened.generation,
            map.events.len(),
            map.path_count()
        );
    }
    profiles.close().await?;
    Ok(())
}

/// `braid profiles export`: every profile of the store, one JSON line each, or the edge's
/// entries.
async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let (config, lake) = open_data(args.common.config.as_deref(), args.common.data.as_deref())?;
    // Read-only when another process (a running `braid serve`) writes the profiles.
    let home = LocalHome::open_to_read(&config.server.data, SlateOptions::default())?;
    if home.read_only() {
        eprintln!(
            "braid serve is running on {}: reading what its profile store has made durable",
            config.server.data.display()
        );
    }
    let profiles = local_profiles(&config, &lake, home);
    let workspaces = workspaces(&args.common, &config.server.data)?;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if args.edge {
        let Some(personalize) = config
            .activate
            .personalize
            .filter(|p| !p.key_secret.is_empty())
        else {
            anyhow::bail!("--edge needs [activate.personalize] key_secret in the configuration");
        };
        let mut entries = Vec::new();
        for workspace in &workspaces {
            for (key, value) in profiles
                .edge_entries(
                    workspace,
                    personalize.key_secret.as_bytes(),
                    &personalize.traits,
                )
                .await?
            {
                entries.push(serde_json::json!({"key": key, "value": value}));
            }
        }
        serde_json::to_writer(&mut out, &entries)?;
        writeln!(out)?;
        out.flush()?;
        eprintln!("{} edge entries", entries.len());
        return Ok(());
    }
    let mut count = 0;
    for workspace in &workspaces {
        for profile in profiles.snapshot(workspace).await? {
            writeln!(out, "{profile}")?;
            count += 1;
        }
    }
    out.flush()?;
    profiles.close().await?;
    eprintln!("{count} profiles");
    Ok(())
}
