//! `braid serve`: Braid on one machine, one process, one data folder. The same handlers as the
//! Worker and the Lambda functions (`braid_edge::Api`) over HTTP with axum, the lake written
//! with group commit ([`GroupCommit`]), and the unify loop applying each new object to the
//! profile store as it lands — what the cloud does with S3 notifications.
//!
//! The data folder holds the lake (`raw/`, `failed/`, `checkpoints/`, `manifests/`) and the
//! profile stores (`profiles/`, one writer: `profiles/LOCK`).

mod http;
mod metrics;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use braid_core::catalogue::CompactionConfig;
use braid_core::{Config, ConfigError};
use braid_edge::Api;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use braid_core::activate::destination::Destination;

use crate::activate::AnySink;
use crate::activate::Deliverer;
use crate::client::ClientError;
use crate::lake::compact::{CompactSettings, compact_closed_hours};
use crate::lake::feed::{Unify, UnifyError, UnifySummary, unify_objects};
use crate::lake::group::GroupCommit;
use crate::lake::store::{LocalStore, ObjectStore as _, StoreError};
use crate::profiles::kv::{KvError, LocalHome, SlateOptions};
use crate::profiles::{ProfileError, ProfileUnify};

pub use upstream::UpstreamError;

/// Identity resolution and profiles over a data folder: the lake in it, the profile stores
/// under `profiles/`.
pub type LocalProfiles = ProfileUnify<LocalStore, LocalHome>;

/// The profiles of a data folder under the configuration's rules, in stores opened by `home`.
pub fn local_profiles(config: &Config, lake: &LocalStore, home: LocalHome) -> LocalProfiles {
    ProfileUnify::new(
        lake.clone(),
        home,
        config.unify.identity.clone(),
        config.unify.profiles.clone(),
        config.unify.store.clone(),
    )
    .with_strict_identity(config.strict_identity_workspaces())
    .with_data_map(config.catalogue.data_map)
    .with_segmentation(crate::profiles::Segmentation::of(config))
    .with_workspaces(config.workspaces.iter().map(|w| w.name.clone()))
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration does not check.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The data folder cannot be opened.
    #[error("cannot open the data folder {}: {source}", path.display())]
    DataFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The profile stores cannot be opened (another process writes them, say).
    #[error("cannot open the profile stores: {0}")]
    ProfileStores(#[from] KvError),
    /// A workspace's profiles cannot be opened or rebuilt.
    #[error("cannot open the profiles of {workspace:?}: {source}")]
    Profiles {
        /// The workspace.
        workspace: String,
        /// Why.
        source: ProfileError,
    },
    /// Edge mode without a secret to sign with.
    #[error("collect.upstream needs collect.forward_secret (or BRAID_FORWARD_SECRET) to sign with")]
    UnsignedUpstream,
    /// The upstream is not a URL this client can send to.
    #[error(transparent)]
    Upstream(#[from] ClientError),
    /// Serving HTTP failed.
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    /// A destination cannot be delivered to (its key is missing, its URL unusable).
    #[error("{0}")]
    Destination(String),
    /// Closing the profile stores failed: what they had not made durable is applied again at
    /// the next start.
    #[error("cannot close the profile stores: {0}")]
    Close(ProfileError),
}

impl ServeError {
    /// Whether starting again may succeed as it is (the profile stores were busy, the store
    /// was unavailable), as opposed to a configuration or a data folder to fix.
    pub fn is_retriable(&self) -> bool {
        match self {
            ServeError::ProfileStores(error) => error.is_retriable(),
            ServeError::Profiles { source, .. } | ServeError::Close(source) => {
                source.is_retriable()
            }
            ServeError::Http(_) => true,
            ServeError::Config(_)
            | ServeError::DataFolder { .. }
            | ServeError::UnsignedUpstream
            | ServeError::Upstream(_)
            | ServeError::Destination(_) => false,
        }
    }
}

/// What [`Server::open`] starts.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Open the profile stores and run the unify loop (off: collection only, as `braid bench`
    /// measures it).
    pub unify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { unify: true }
    }
}

/// What a workspace's profiles were opened as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedWorkspace {
    /// The workspace.
    pub workspace: String,
    /// The generation of its store.
    pub generation: u64,
    /// The events applied when it was rebuilt from the lake at this start (new rules, or no
    /// store beside a unified lake).
    pub rebuilt: Option<usize>,
}

/// Braid on one machine, opened on its data folder and ready to serve.
pub struct Server {
    api: Api,
    config: Config,
    lake: LocalStore,
    profiles: Option<Arc<LocalProfiles>>,
    opened: Vec<OpenedWorkspace>,
    unify: Option<mpsc::UnboundedReceiver<Vec<String>>>,
    written: Option<mpsc::UnboundedSender<Vec<String>>>,
    /// The destinations delivered to, each with its sender.
    destinations: Vec<(Destination, AnySink<LocalStore>)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the data folder of `config`: the lake, and (with [`Options::unify`]) the profile
    /// stores of every configured workspace, rebuilt from the lake first where the rules
    /// changed.
    ///
    /// # Errors
    ///
    /// [`ServeError`] naming what could not be opened.
    pub async fn open(config: Config, options: Options) -> Result<Server, ServeError> {
        let api = Api::new(config.clone())?;
        let config = api.config().clone();
        if config.collect.upstream.is_some() && config.collect.forward_secret.is_none() {
            return Err(ServeError::UnsignedUpstream);
        }
        let data = config.server.data.clone();
        let lake = LocalStore::open(&data).map_err(|source| ServeError::DataFolder {
            path: data.clone(),
            source,
        })?;
        let mut server = Server {
            api,
            config,
            lake,
            profiles: None,
            opened: Vec::new(),
            unify: None,
            written: None,
            destinations: Vec::new(),
        };
        if options.unify {
            let home = LocalHome::open(&data, SlateOptions::default())?;
            let profiles = Arc::new(local_profiles(&server.config, &server.lake, home));
            for workspace in &server.config.workspaces {
                let opened = profiles.open(&workspace.name).await.map_err(|source| {
                    ServeError::Profiles {
                        workspace: workspace.name.clone(),
                        source,
                    }
                })?;
                server.opened.push(OpenedWorkspace {
                    workspace: workspace.name.clone(),
                    generation: opened.generation,
                    rebuilt: opened.rebuilt,
                });
            }
            for destination in server.config.destinations()? {
                if !destination.config.enabled {
                    continue;
                }
                let sink = AnySink::of(&destination, server.lake.clone())
                    .map_err(ServeError::Destination)?;
                server.destinations.push((destination, sink));
            }
            let (written, unify) = mpsc::unbounded_channel();
            server.profiles = Some(profiles);
            server.unify = Some(unify);
            server.written = Some(written);
        }
        Ok(server)
    }

    /// The configuration it serves (checked).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The workspaces whose profiles were opened, and how.
    pub fn opened(&self) -> &[OpenedWorkspace] {
        &self.opened
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the requests in flight,
    /// closes the lake (every acknowledged event is in it), lets the unify loop apply what it
    /// has, and closes the profile stores.
    ///
    /// # Errors
    ///
    /// [`ServeError`] when serving or closing fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            api,
            config,
            lake,
            profiles,
            unify,
            written,
            destinations,
            ..
        } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let compacting = (profiles.is_some() && config.catalogue.compaction.every_minutes > 0)
            .then(|| {
                tokio::spawn(compact_loop(
                    lake.clone(),
                    config.catalogue.compaction.clone(),
                    Arc::clone(&stop),
                ))
            });
        // Until the unify loop has applied the objects left from before the start, timers
        // wait (see `sweep_loop`).
        let caught_up = Arc::new(AtomicBool::new(false));
        let sweeping = spawn_sweeps(profiles.as_ref(), &config, &stop, &caught_up);
        let unifying = match (&profiles, unify) {
            (Some(profiles), Some(new_objects)) => Some(tokio::spawn(unify_loop(
                lake.clone(),
                Arc::clone(profiles),
                new_objects,
                Arc::clone(&stop),
                caught_up,
            ))),
            _ => None,
        };
        // Deliveries stop after the unify loop and the timers, so that what they logged last
        // is delivered before the stores close (or at the next start).
        let delivering_stop = Arc::new(AtomicBool::new(false));
        let board = crate::activate::Board::default();
        let delivering = match &profiles {
            Some(profiles) => {
                spawn_deliveries(destinations, &lake, profiles, &delivering_stop, &board)
            }
            None => Vec::new(),
        };
        let replayed = written.clone();
        let writer =
            GroupCommit::open(&lake, written).map_err(|source| ServeError::DataFolder {
                path: config.server.data.clone(),
                source,
            })?;
        let upstream = match (&config.collect.upstream, &config.collect.forward_secret) {
            (Some(url), Some(secret)) => Some(upstream::Upstream::new(url, secret.as_bytes())?),
            _ => None,
        };
        let app = Arc::new(http::App {
            api,
            writer,
            lake: lake.clone(),
            replayed,
            upstream,
            profiles: profiles.clone(),
            metrics: metrics::Metrics::default(),
            trust_forwarded_for: config.server.trust_forwarded_for,
            sdk_dir: config.collect.sdk.dir.clone(),
            body_timeout: Duration::from_secs(config.server.body_timeout_seconds),
            board,
        });
        let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
        let connections = http::Connections {
            header_timeout: Duration::from_secs(config.server.header_timeout_seconds),
            max: config.server.max_connections,
            grace,
        };
        http::serve(listener, app, connections, shutdown)
            .await
            .map_err(ServeError::Http)?;
        // The lake is closed (its writer stopped, which ends the unify loop's channel): the
        // loop applies what it has for the grace period, then stops after the objects at hand
        // (the rest is applied at the next start), then the stores are closed.
        if let Some(mut unifying) = unifying {
            let finished = if let Ok(finished) = tokio::time::timeout(grace, &mut unifying).await {
                finished
            } else {
                tracing::info!(
                    message = "Unify stops after the objects at hand; the rest is applied at \
                               the next start."
                );
                stop.store(true, Ordering::Relaxed);
                unifying.await
            };
            if finished.is_err() {
                tracing::error!(message = "The unify loop panicked.");
            }
        }
        stop_sweeps(sweeping, &stop).await;
        delivering_stop.store(true, Ordering::Relaxed);
        stop_background(delivering, compacting, &stop).await;
        if let Some(profiles) = profiles {
            profiles.close().await.map_err(ServeError::Close)?;
        }
        Ok(())
    }
}

/// Applies to `unify` the objects of the lake it has not applied yet (a previous run may have
/// stopped first), in the order they were written, as it would have met them.
///
/// # Errors
///
/// [`UnifyError`] when the lake or the unify step fails; what was applied keeps its checkpoint.
pub async fn unify_pending<U: Unify>(
    lake: &LocalStore,
    unify: &U,
) -> Result<UnifySummary, UnifyError<U::Error>> {
    let keys = pending_keys(lake).await?;
    unify_objects(lake, unify, &keys, now()).await
}

/// The lake's objects (events, and failure records for the data map) in the order they were
/// written.
async fn pending_keys(lake: &LocalStore) -> Result<Vec<String>, StoreError> {
    let mut objects = lake.list("raw/").await?;
    objects.extend(lake.list("failed/").await?);
    objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
    Ok(objects.into_iter().map(|o| o.key).collect())
}

/// How many pending objects the unify loop applies (and makes durable) at a time when it
/// starts: it checks between them whether to stop.
const PENDING_AT_A_TIME: usize = 32;

/// The unify loop: what is pending first, then each group commit's objects as they land,
/// until the lake's writer stops or `stop` is set (checked between batches of objects; what
/// is left has no checkpoint and is applied at the next start).
async fn unify_loop<U: Unify>(
    lake: LocalStore,
    unify: Arc<U>,
    mut new_objects: mpsc::UnboundedReceiver<Vec<String>>,
    stop: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
) {
    let stopped = || stop.load(Ordering::Relaxed);
    match pending_keys(&lake).await {
        Ok(keys) => {
            for keys in keys.chunks(PENDING_AT_A_TIME) {
                if stopped() {
                    return;
                }
                apply_logged(&lake, unify.as_ref(), keys).await;
            }
        }
        Err(error) => tracing::warn!(%error, "unify: the lake cannot be listed"),
    }
    caught_up.store(new_objects.is_empty(), Ordering::Relaxed);
    while let Some(keys) = new_objects.recv().await {
        caught_up.store(false, Ordering::Relaxed);
        if stopped() {
            return;
        }
        apply_logged(&lake, unify.as_ref(), &keys).await;
        caught_up.store(new_objects.is_empty(), Ordering::Relaxed);
    }
}

/// Waits for the delivery loops (stopped: each saves its state) and stops compaction.
async fn stop_background(
    delivering: Vec<tokio::task::JoinHandle<()>>,
    compacting: Option<tokio::task::JoinHandle<()>>,
    stop: &AtomicBool,
) {
    for delivery in delivering {
        if delivery.await.is_err() {
            tracing::error!(message = "A delivery loop panicked.");
        }
    }
    if let Some(compacting) = compacting {
        stop.store(true, Ordering::Relaxed);
        compacting.abort();
        // A run cut short leaves what the next run finishes (docs/lake-layout.md).
        if let Err(error) = compacting.await
            && error.is_panic()
        {
            tracing::error!(message = "The compaction loop panicked.");
        }
    }
}

/// How often an idle deliverer looks for new changes.
const DELIVERY_POLL: Duration = Duration::from_millis(200);

/// A delivery loop per destination (`crate::activate`), each on its own.
fn spawn_deliveries(
    destinations: Vec<(Destination, AnySink<LocalStore>)>,
    lake: &LocalStore,
    profiles: &Arc<LocalProfiles>,
    stop: &Arc<AtomicBool>,
    board: &crate::activate::Board,
) -> Vec<tokio::task::JoinHandle<()>> {
    destinations
        .into_iter()
        .map(|(destination, sink)| {
            let (lake, profiles, stop) = (lake.clone(), Arc::clone(profiles), Arc::clone(stop));
            let board = board.clone();
            tokio::spawn(async move {
                let key = destination.key().to_owned();
                match Deliverer::open(destination, lake, profiles, sink).await {
                    Ok(deliverer) => deliverer.on_board(&board).run(DELIVERY_POLL, stop).await,
                    Err(error) => {
                        tracing::error!(destination = key, %error, "a destination cannot start");
                    }
                }
            })
        })
        .collect()
}

/// The timer loop, when there are audiences or computed traits.
fn spawn_sweeps(
    profiles: Option<&Arc<LocalProfiles>>,
    config: &Config,
    stop: &Arc<AtomicBool>,
    caught_up: &Arc<AtomicBool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let segments = config.segments().ok()?;
    if segments.is_empty() {
        return None;
    }
    let profiles = Arc::clone(profiles?);
    let every = config.segment.timer_sweep_seconds.max(1);
    Some(tokio::spawn(sweep_loop(
        profiles,
        every,
        Arc::clone(stop),
        Arc::clone(caught_up),
    )))
}

/// How far behind the clock a sweep fires timers: an event received before a timer's time is
/// in an object the unify loop holds (or soon will: the lake commits within milliseconds)
/// when the timer fires, so it is applied first, at its own time, as a rebuild would.
const SWEEP_BEHIND_MILLIS: i64 = 2_000;

/// Stops the timer loop after the sweep at hand (a sweep cut short is done again at the
/// next start: its effects are written with the profiles).
async fn stop_sweeps(sweeping: Option<tokio::task::JoinHandle<()>>, stop: &AtomicBool) {
    if let Some(sweeping) = sweeping {
        stop.store(true, Ordering::Relaxed);
        if sweeping.await.is_err() {
            tracing::error!(message = "The timer loop panicked.");
        }
    }
}

/// Fires the profiles' timers (audiences and computed traits the clock alone changes) every
/// `every` seconds, until `stop` is set: due up to [`SWEEP_BEHIND_MILLIS`] ago, and only when
/// the unify loop has applied every object it knows of (a timer fired past events still to
/// apply would evaluate them at its later time, where a rebuild evaluates them at theirs).
async fn sweep_loop(
    profiles: Arc<LocalProfiles>,
    every: u64,
    stop: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
) {
    let period = Duration::from_secs(every);
    loop {
        // Short sleeps, so that a stop is seen within a fraction of a second.
        let due = tokio::time::Instant::now() + period;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
        if !caught_up.load(Ordering::Relaxed) {
            continue;
        }
        let until = braid_core::timestamp::unix_millis(now()) - SWEEP_BEHIND_MILLIS;
        match profiles.sweep(until).await {
            Ok(0) => {}
            Ok(due) => tracing::debug!(due, "timers fired"),
            Err(error) => tracing::warn!(%error, "the timer sweep failed; the next one goes on"),
        }
    }
}

/// Compacts the closed hours of the lake every `every_minutes` (the first time a few seconds
/// after the start), merging only what unify has applied, until `stop` is set.
async fn compact_loop(lake: LocalStore, config: CompactionConfig, stop: Arc<AtomicBool>) {
    let mut settings = CompactSettings::from(&config);
    settings.require_unified = true;
    let every = Duration::from_secs(config.every_minutes.saturating_mul(60));
    let mut wait = Duration::from_secs(5).min(every);
    loop {
        tokio::time::sleep(wait).await;
        wait = every;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match compact_closed_hours(&lake, &settings, now()).await {
            Ok(summary) if summary.written > 0 => tracing::info!(
                partitions = summary.partitions,
                merged = summary.merged,
                written = summary.written,
                duplicates = summary.duplicates,
                "compacted"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "compaction failed; the next run goes on"),
        }
    }
}

/// Applies objects, saying how it went (objects without a checkpoint are applied again later).
async fn apply_logged<U: Unify>(lake: &LocalStore, unify: &U, keys: &[String]) {
    match unify_objects(lake, unify, keys, now()).await {
        Ok(summary) => tracing::debug!(?summary, "unify"),
        Err(error) => tracing::warn!(%error, "unify failed"),
    }
}

/// The current time, for request handling and checkpoints (the one place the server reads the
/// clock).
pub(crate) fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
