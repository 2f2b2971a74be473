//! `braid`: Braid on one machine.
//!
//! - `braid serve` runs the Segment-compatible collection endpoint and writes the lake under
//!   one local folder.
//! - `braid bench` measures throughput: HTTP → validation → enrichment → fsync'ed lake, the
//!   core pipeline alone, and unification (the core alone, and into the profile store).
//! - `braid profiles rebuild|export` recomputes profiles from the lake, or writes them out.

/// mimalloc instead of the system allocator: the pipeline makes a few short-lived allocations
/// per event, and glibc's allocator costs several percent of its time (see `braid bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod client;
mod config;
mod import;
mod lake;
mod metrics;
mod resolve;
mod server;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use braid_edge::{Collector, WorkspaceConfig};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::ServeConfig;

/// Identity resolution and profiles over the data folder: the lake in it, the profile stores
/// under `profiles/`.
pub(crate) type Profiles =
    braid_unifier::profiles::ProfileUnify<braid_unifier::LocalStore, braid_unifier::kv::LocalHome>;

#[derive(Parser)]
#[command(
    name = "braid",
    version,
    about = "Braid, an open-source customer data platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collection endpoint with the lake on a local folder.
    Serve(ServeArgs),
    /// Measure ingestion throughput on this machine.
    Bench(bench::BenchArgs),
    /// Merge the small objects of closed hours in the local lake (as the compact function does
    /// in the cloud).
    Compact(CompactArgs),
    /// Profiles: rebuild them from the lake, or export them.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Find the records of one person among CRM-like CSV records (fuzzy matching).
    Resolve(resolve::ResolveArgs),
    /// Import CRM-like CSV records into profiles: matched as `braid resolve` does, then sent as
    /// identify calls to a Braid endpoint.
    Import(import::ImportArgs),
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// Recompute every profile from the lake (as after a rule change), replacing the profile
    /// store; `braid serve` must not be running on the data folder.
    Rebuild(ProfilesArgs),
    /// Write every profile of the profile store as NDJSON (stdout or a file), or the edge's
    /// personalization entries (--edge).
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ProfilesArgs {
    /// Configuration file, for `[identity]`, `[profiles]` and `[profile_store]` (default:
    /// ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The workspace (default: every workspace of the lake).
    #[arg(long)]
    workspace: Option<String>,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    common: ProfilesArgs,
    /// Write here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the edge's personalization entries instead (JSON for `wrangler kv bulk put`:
    /// `[{"key", "value"}]`), keyed with `[personalize] key_secret`, with its `traits`.
    #[arg(long)]
    edge: bool,
}

/// The configuration of a `braid profiles` command, and the profiles of its data folder.
fn open_profiles(args: &ProfilesArgs) -> anyhow::Result<(ServeConfig, Profiles, Vec<String>)> {
    let (config, store, workspaces) = read_config_and_workspaces(args)?;
    let profiles = local_profiles(&config, &store)?;
    Ok((config, profiles, workspaces))
}

/// The profiles of a data folder's lake `store` in the stores of `home`, under the
/// configuration's rules.
fn profiles_in(
    config: &ServeConfig,
    store: &braid_unifier::LocalStore,
    home: braid_unifier::kv::LocalHome,
) -> Profiles {
    braid_unifier::profiles::ProfileUnify::new(
        store.clone(),
        home,
        config.identity.clone(),
        config.profiles.clone(),
        config.profile_store.clone(),
    )
}

/// The configuration of a `braid profiles` command, its data folder's lake, and the
/// workspaces it names.
fn read_config_and_workspaces(
    args: &ProfilesArgs,
) -> anyhow::Result<(ServeConfig, braid_unifier::LocalStore, Vec<String>)> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None if std::path::Path::new("braid.toml").exists() => {
            ServeConfig::load(std::path::Path::new("braid.toml"))?
        }
        None => ServeConfig::default(),
    };
    if let Some(data) = &args.data {
        config.data.clone_from(data);
    }
    let store = braid_unifier::LocalStore::open(&config.data)
        .with_context(|| format!("cannot open {}", config.data.display()))?;
    let workspaces = match &args.workspace {
        Some(workspace) => vec![workspace.clone()],
        None => lake_workspaces(&config.data)?,
    };
    Ok((config, store, workspaces))
}

/// [`open_profiles`], read-only when another process (a running `braid serve`) writes the
/// profiles: what it made durable.
fn open_profiles_to_read(
    args: &ProfilesArgs,
) -> anyhow::Result<(ServeConfig, Profiles, Vec<String>)> {
    use braid_unifier::kv::KvHome as _;
    let (config, store, workspaces) = read_config_and_workspaces(args)?;
    let home = braid_unifier::kv::LocalHome::open_to_read(
        &config.data,
        braid_unifier::kv::SlateOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if home.read_only() {
        eprintln!(
            "braid serve is running on {}: reading what its profile store has made durable",
            config.data.display()
        );
    }
    let profiles = profiles_in(&config, &store, home);
    Ok((config, profiles, workspaces))
}

/// The profiles of `store`'s data folder, under the configuration's rules.
fn local_profiles(
    config: &ServeConfig,
    store: &braid_unifier::LocalStore,
) -> anyhow::Result<Profiles> {
    let home = braid_unifier::kv::LocalHome::open(
        &config.data,
        braid_unifier::kv::SlateOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(profiles_in(config, store, home))
}

/// The workspaces that have events in the lake of `data` (`raw/workspace=W`) or a profile
/// store (`profiles/workspace=W`).
fn lake_workspaces(data: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for area in ["raw", "profiles"] {
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

/// `braid profiles rebuild`: every profile recomputed from the lake, in a new generation of
/// each workspace's store.
async fn profiles_rebuild(args: &ProfilesArgs) -> anyhow::Result<()> {
    let (_, profiles, workspaces) = open_profiles(args)?;
    for workspace in &workspaces {
        let started = std::time::Instant::now();
        let opened = profiles
            .rebuild(workspace)
            .await
            .map_err(|e| anyhow::anyhow!("cannot rebuild {workspace:?}: {e}"))?;
        let count = profiles
            .snapshot(workspace)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
        eprintln!(
            "workspace {workspace:?}: {count} profiles from {} events in {:.2} s (generation {})",
            opened.rebuilt.unwrap_or(0),
            started.elapsed().as_secs_f64(),
            opened.generation
        );
    }
    profiles.close().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// `braid profiles export`: every profile of the store, one JSON line each, or the edge's
/// entries.
async fn profiles_export(args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (config, profiles, workspaces) = open_profiles_to_read(&args.common)?;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let failed = |e: braid_unifier::unify::HandlerError| anyhow::anyhow!("{e}");
    if args.edge {
        let Some(personalize) = config.personalize.filter(|p| !p.key_secret.is_empty()) else {
            anyhow::bail!("--edge needs [personalize] key_secret in the configuration");
        };
        let mut entries = Vec::new();
        for workspace in &workspaces {
            for (key, value) in profiles
                .edge_entries(
                    workspace,
                    personalize.key_secret.as_bytes(),
                    &personalize.traits,
                )
                .await
                .map_err(failed)?
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
        for profile in profiles.snapshot(workspace).await.map_err(failed)? {
            writeln!(out, "{profile}")?;
            count += 1;
        }
    }
    out.flush()?;
    profiles.close().await.map_err(failed)?;
    eprintln!("{count} profiles");
    Ok(())
}

#[derive(clap::Args)]
struct CompactArgs {
    /// Configuration file, for the rules of the profiles unified first (default:
    /// ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: the configuration's, or ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Minutes after an hour ends before it is compacted.
    #[arg(long, default_value_t = 15)]
    grace_minutes: i64,
    /// Uncompressed megabytes per compacted object.
    #[arg(long, default_value_t = 64)]
    target_mb: usize,
}

/// Applies the unify step to the objects already in the lake that it has not applied (a
/// previous run may have stopped first), then to each object the lake writer commits.
async fn unify_loop<U: braid_unifier::unify::Unify>(
    store: braid_unifier::LocalStore,
    unify: Arc<U>,
    mut new_objects: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
) {
    use braid_unifier::ObjectStore as _;
    use braid_unifier::unify::unify_objects;
    // In the order they were written, as the unify step would have met them.
    let existing = match store.list("raw/").await {
        Ok(mut objects) => {
            objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
            objects.into_iter().map(|o| o.key).collect()
        }
        Err(error) => {
            tracing::warn!(%error, "unify: cannot list the lake");
            Vec::new()
        }
    };
    let mut batch = existing;
    loop {
        if !batch.is_empty() {
            match unify_objects(&store, unify.as_ref(), &batch, lake::now()).await {
                Ok(summary) => tracing::debug!(?summary, "unify"),
                // Objects without a checkpoint are applied at the next start.
                Err(error) => tracing::warn!(%error, "unify failed"),
            }
        }
        match new_objects.recv().await {
            Some(keys) => batch = keys,
            None => break,
        }
    }
}

async fn compact(args: &CompactArgs) -> anyhow::Result<()> {
    let (config, store, _) = read_config_and_workspaces(&ProfilesArgs {
        config: args.config.clone(),
        data: args.data.clone(),
        workspace: None,
    })?;
    let profiles = local_profiles(&config, &store)?;
    // Unify first applies what it has not (as `braid serve` does): compaction then only
    // merges objects unify has read.
    let (done, finished) = tokio::sync::mpsc::unbounded_channel();
    drop(done);
    let profiles = Arc::new(profiles);
    unify_loop(store.clone(), Arc::clone(&profiles), finished).await;
    profiles
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("cannot close the profile stores: {e}"))?;
    let settings = braid_unifier::compact::CompactSettings {
        grace: time::Duration::minutes(args.grace_minutes),
        target_bytes: args.target_mb.saturating_mul(1024 * 1024),
        require_unified: true,
    };
    let summary = braid_unifier::compact::compact_closed_hours(&store, &settings, lake::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (default: ./braid.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data folder (default ./braid-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A write key to accept, for the workspace named by --workspace.
    #[arg(long)]
    write_key: Vec<String>,
    /// The workspace that --write-key keys send to.
    #[arg(long, default_value = "default")]
    workspace: String,
    /// Accept batches forwarded by a Braid edge on POST /v1/forward, signed with this secret
    /// (or set `BRAID_FORWARD_SECRET`, or `forward_secret` in `braid.toml`).
    #[arg(long)]
    forward_secret: Option<String>,
    /// Edge mode: forward accepted events, signed with the forward secret, to this ingest
    /// (`http://host:port/v1/forward`) instead of writing the local lake.
    #[arg(long)]
    upstream: Option<String>,
    /// The bearer token of the profile API, GET /v1/profiles/TYPE:VALUE (or set
    /// `BRAID_PROFILE_TOKEN`, or `profile_token` in `braid.toml`).
    #[arg(long)]
    profile_token: Option<String>,
    /// Serve the browser SDK from this folder (`sdk-js/dist`) under /sdk.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BRAID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(args) => runtime.block_on(bench::run(&args)),
        Command::Compact(args) => runtime.block_on(compact(&args)),
        Command::Profiles(ProfilesCommand::Rebuild(args)) => {
            runtime.block_on(profiles_rebuild(&args))
        }
        Command::Profiles(ProfilesCommand::Export(args)) => {
            runtime.block_on(profiles_export(&args))
        }
        Command::Resolve(args) => resolve::run(&args),
        Command::Import(args) => runtime.block_on(import::run(&args)),
    }
}

/// The configuration: the file (given, or `./braid.toml`, or defaults), then the flags.
fn load_config(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None if std::path::Path::new("braid.toml").exists() => {
            ServeConfig::load(std::path::Path::new("braid.toml"))?
        }
        None => ServeConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(secret) = args.forward_secret {
        config.forward_secret = Some(secret);
    }
    if let Some(upstream) = args.upstream {
        config.upstream = Some(upstream);
    }
    if let Some(token) = args.profile_token {
        config.profile_token = Some(token);
    }
    if let Some(dir) = args.sdk {
        config.sdk.dir = Some(dir);
    }
    if !args.write_key.is_empty() {
        match config
            .workspaces
            .iter_mut()
            .find(|w| w.name == args.workspace)
        {
            Some(workspace) => workspace.write_keys.extend(args.write_key),
            None => config.workspaces.push(WorkspaceConfig {
                name: args.workspace.clone(),
                write_keys: args.write_key,
                rate_limit: None,
            }),
        }
    }
    if config.workspaces.is_empty() {
        let key = config::demo_write_key(&config.data)?;
        config.workspaces.push(WorkspaceConfig {
            name: "demo".into(),
            write_keys: vec![key],
            rate_limit: None,
        });
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    let collector =
        Collector::new(config.edge()).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let store = braid_unifier::LocalStore::open(&config.data)
        .with_context(|| format!("cannot open {}", config.data.display()))?;
    // Identity resolution and profiles in the profile store under the data folder, kept up
    // to date by the unify entry point (as in the cloud): each new raw/ object once.
    let profiles = Arc::new(local_profiles(&config, &store)?);
    for workspace in &config.workspaces {
        let opened = profiles.open(&workspace.name).await.map_err(|e| {
            anyhow::anyhow!("cannot open the profiles of {:?}: {e}", workspace.name)
        })?;
        if let Some(events) = opened.rebuilt {
            tracing::info!(
                workspace = workspace.name,
                events,
                generation = opened.generation,
                "Profiles rebuilt from the lake."
            );
        }
    }
    let (written, new_objects) = tokio::sync::mpsc::unbounded_channel();
    let unifying = tokio::spawn(unify_loop(
        store.clone(),
        Arc::clone(&profiles),
        new_objects,
    ));
    let lake = lake::Lake::open(&store, Some(written))
        .with_context(|| format!("cannot open {}", config.data.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    print_banner(&config, address);
    let forward_secret = config
        .forward_secret
        .clone()
        .or_else(|| std::env::var("BRAID_FORWARD_SECRET").ok())
        .filter(|secret| !secret.is_empty());
    let upstream = match (&config.upstream, &forward_secret) {
        (Some(url), Some(secret)) => Some(upstream::Upstream::new(url, secret.as_bytes())?),
        (Some(_), None) => anyhow::bail!("an upstream needs a forward secret to sign with"),
        (None, _) => None,
    };
    let forward = match forward_secret {
        Some(secret) => Some(server::Forward {
            store: store.clone(),
            settings: braid_unifier::IngestSettings {
                secret: secret.into_bytes(),
                limits: config.limits.clone(),
            },
        }),
        None => None,
    };
    let app = Arc::new(server::App {
        collector,
        lake,
        metrics: metrics::Metrics::default(),
        trust_forwarded_for: config.trust_forwarded_for,
        forward,
        upstream,
        profiles: Arc::clone(&profiles),
        profile_workspace: config
            .workspaces
            .first()
            .map_or_else(|| "default".to_owned(), |w| w.name.clone()),
        profile_token: config
            .profile_token
            .clone()
            .or_else(|| std::env::var("BRAID_PROFILE_TOKEN").ok())
            .filter(|t| !t.is_empty()),
        sdk: config.sdk.dir.clone().map(|dir| server::Sdk {
            dir,
            prefix: format!("{}/", config.sdk.path),
        }),
    });
    server::serve(listener, app, shutdown_signal()).await?;
    // The lake is closed: the unify loop applies what it has, then the stores are closed.
    if unifying.await.is_err() {
        tracing::error!(message = "The unify loop panicked.");
    }
    profiles
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("cannot close the profile stores: {e}"))
}

fn print_banner(config: &ServeConfig, address: std::net::SocketAddr) {
    let data = config.data.display();
    println!("Braid is running.");
    println!("  listening on  http://{address}");
    for workspace in &config.workspaces {
        for key in &workspace.write_keys {
            println!("  write key     {key}  (workspace {:?})", workspace.name);
        }
    }
    println!("  data          {data}/raw (events), {data}/failed (rejected events)");
    let api = if config.profile_token.is_some() || std::env::var_os("BRAID_PROFILE_TOKEN").is_some()
    {
        format!("GET http://{address}/v1/profiles/TYPE:VALUE with the profile token")
    } else {
        "start with --profile-token T to read them over HTTP".to_owned()
    };
    println!("  profiles      {data}/profiles ({api})");
    if let Some(dir) = &config.sdk.dir {
        println!(
            "  browser SDK   http://{address}{}/braid.js  (paste {} into your pages)",
            config.sdk.path,
            dir.join("snippet.min.js").display()
        );
    }
    if let Some(key) = config.workspaces.first().and_then(|w| w.write_keys.first()) {
        println!("Try it:");
        println!(
            "  curl -u '{key}:' -H 'content-type: application/json' http://{address}/v1/track \\\n    -d '{{\"event\": \"Tried Braid\", \"userId\": \"me\"}}'"
        );
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!(message = "Shutting down: finishing requests and flushing the lake.");
}
