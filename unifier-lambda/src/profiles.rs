//! The unify step with identity resolution and profiles, kept in a persistent profile store:
//! a [`Unify`] implementation over the core's [`Unifier`] and a key-value store ([`Kv`]),
//! which `braid serve` runs on its data folder and the unify Lambda on its bucket.
//!
//! Each workspace has its own store (one writer each), `profiles/workspace=W/g<N>`, where `N`
//! is its generation: a rebuild from the lake writes generation `N + 1` beside the old one and
//! switches to it by rewriting `profiles/workspace=W/CURRENT` in the lake's store, so a
//! rebuild that stops half-way leaves the old profiles in place. A store built under other
//! rules (their fingerprint is in `CURRENT`) is rebuilt when it is opened. The keys:
//!
//! | key | value |
//! |---|---|
//! | `meta` | the counters a unifier resumes from |
//! | `p/<profile id>` | the profile's record (`braid_core::identity::encode_record`) |
//! | `i/<type>\0<value>` | the id of the profile that has the identifier |
//! | `m/<messageId>` | when the event was received (ms), kept for the dedupe window |
//! | `e/<profile id>/<sequence, 16 hex>` | the lake line of an event applied to the profile |
//!
//! Applying an object: the events' lookups that the working set does not hold are read from
//! the store, the events are applied in memory, and everything they changed is written in one
//! atomic batch. [`Unify::commit`] then makes the batches durable before the unify entry point
//! writes its checkpoints: an object's effects are durable before it counts as applied, and a
//! crash in between re-applies it, which its `messageId`s make a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use braid_core::identity::{
    Applied, Identifier, IdentityRules, Profile, ProfileConfig, ProfileIds, StoredCounters,
    Unifier, decode_record, fingerprint, lineage, profile_view,
};
use braid_core::lake::{Area, workspace_of, workspace_prefix};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compact::live_objects;
use crate::kv::{Kv, KvError, KvHome, KvWrite, prefix_end};
use crate::object::{gunzip, lines};
use crate::store::ObjectStore;
use crate::unify::{CHECKPOINT_PREFIX, HandlerError, Unify};

/// The most a lake object may decompress to when it is replayed.
const MAX_OBJECT_BYTES: usize = 1 << 30;

/// Reads of a store in flight at once.
const CONCURRENT_READS: usize = 32;

/// Entries read per scan of a store.
const SCAN_PAGE: usize = 1_000;

/// How the profile store is kept (`[profile_store]` in `braid.toml`). Changing these does
/// not change any profile, so they are not part of the rules' fingerprint.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Profiles each workspace keeps in memory between batches (the least recently used are
    /// evicted beyond it, and read back from the store when needed).
    pub cache_profiles: usize,
    /// How long each profile's events are kept for the events API (from when they were
    /// unified); 0 keeps none.
    pub event_retention_days: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            cache_profiles: 200_000,
            event_retention_days: 90,
        }
    }
}

/// What `profiles/workspace=W/CURRENT` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Current {
    generation: u64,
    fingerprint: String,
}

impl From<KvError> for HandlerError {
    fn from(error: KvError) -> HandlerError {
        HandlerError {
            error_type: if error.retriable {
                "ProfileStoreUnavailable"
            } else {
                "ProfileStoreFailed"
            },
            message: error.to_string(),
            retriable: error.retriable,
        }
    }
}

fn corrupt(message: String) -> HandlerError {
    HandlerError {
        error_type: "ProfileStoreCorrupt",
        message,
        retriable: false,
    }
}

fn identifier_key(id: &Identifier) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + id.kind.as_str().len() + id.value.len());
    key.extend_from_slice(b"i/");
    key.extend_from_slice(id.kind.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(id.value.as_bytes());
    key
}

fn profile_key(id: &str) -> Vec<u8> {
    format!("p/{id}").into_bytes()
}

fn seen_key(message_id: &str) -> Vec<u8> {
    format!("m/{message_id}").into_bytes()
}

fn event_key(profile: &str, sequence: u64) -> Vec<u8> {
    format!("e/{profile}/{sequence:016x}").into_bytes()
}

const META_KEY: &[u8] = b"meta";

const DAY_MILLIS: u64 = 86_400_000;

/// One workspace's store and working set.
struct Workspace<K> {
    kv: K,
    /// The store's generation.
    generation: u64,
    /// One batch at a time: a batch's lookups, application and write go together.
    writer: tokio::sync::Mutex<()>,
    state: std::sync::Mutex<Unifier>,
    unflushed: AtomicBool,
    rules: IdentityRules,
    config: ProfileConfig,
}

impl<K: Kv> Workspace<K> {
    async fn open(
        kv: K,
        generation: u64,
        rules: &IdentityRules,
        config: &ProfileConfig,
    ) -> Result<Workspace<K>, HandlerError> {
        let workspace = Workspace {
            kv,
            generation,
            writer: tokio::sync::Mutex::new(()),
            state: std::sync::Mutex::new(Unifier::new(rules.clone(), config.clone())),
            unflushed: AtomicBool::new(false),
            rules: rules.clone(),
            config: config.clone(),
        };
        workspace.reset().await?;
        Ok(workspace)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, Unifier>, HandlerError> {
        self.state
            .lock()
            .map_err(|_| corrupt("a unify step panicked".to_owned()))
    }

    /// Drops the working set and starts again from what the store holds.
    async fn reset(&self) -> Result<(), HandlerError> {
        let counters: StoredCounters = match self.kv.get(META_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("the profile store's meta entry: {e}")))?,
            None => StoredCounters::default(),
        };
        let mut unifier = Unifier::new(self.rules.clone(), self.config.clone());
        unifier.load_counters(&counters);
        *self.state()? = unifier;
        Ok(())
    }

    /// Applies NDJSON lake lines, giving how many were applied to a profile.
    async fn apply_lines(
        &self,
        content: &[u8],
        settings: &StoreSettings,
    ) -> Result<usize, HandlerError> {
        let _writer = self.writer.lock().await;
        let mut events = Vec::new();
        for line in lines(content) {
            if let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) {
                events.push((event, line));
            }
        }
        if events.is_empty() {
            return Ok(0);
        }
        let result = self.apply_events(&events, settings).await;
        if result.is_err() {
            // The working set may hold changes the store does not: start again from the store.
            let _ = self.reset().await;
        }
        result
    }

    async fn apply_events(
        &self,
        events: &[(serde_json::Map<String, Value>, &[u8])],
        settings: &StoreSettings,
    ) -> Result<usize, HandlerError> {
        let (seen, records) = self.read_missing(events).await?;
        // Apply in memory.
        let mut indexed = Vec::new();
        let (changes, applied) = {
            let mut unifier = self.state()?;
            for (id, received) in seen {
                unifier.load_seen(&id, received);
            }
            for record in records {
                unifier
                    .load_record(&record)
                    .map_err(|e| corrupt(e.to_string()))?;
            }
            let mut applied = 0;
            for (event, line) in events {
                if let Applied::Profile(profile) = unifier.apply(event) {
                    applied += 1;
                    indexed.push((event_key(&profile, unifier.sequence()), *line));
                }
            }
            let changes = unifier.take_changes();
            unifier.forget_seen();
            unifier.take_log();
            (changes, applied)
        };
        // Write back, in one batch.
        let batch = self.batch(changes, indexed, settings);
        self.kv.write(batch).await?;
        self.unflushed.store(true, Ordering::SeqCst);
        self.state()?.evict_to(settings.cache_profiles);
        Ok(applied)
    }

    /// What the events read that the working set does not hold, read from the store: the
    /// dedupe entries of their `messageId`s, and the records of the profiles their
    /// identifiers belong to.
    async fn read_missing(
        &self,
        events: &[(serde_json::Map<String, Value>, &[u8])],
    ) -> Result<(Vec<(String, i64)>, Vec<Vec<u8>>), HandlerError> {
        let (message_ids, identifiers) = {
            let unifier = self.state()?;
            let mut message_ids = BTreeSet::new();
            let mut identifiers = BTreeSet::new();
            for (event, _) in events {
                let lookups = unifier.lookups(event);
                if let Some(id) = lookups.message_id
                    && !unifier.graph().holds_message(&id)
                {
                    message_ids.insert(id);
                }
                for id in lookups.identifiers {
                    if !unifier.graph().holds(&id) {
                        identifiers.insert(id);
                    }
                }
            }
            (message_ids, identifiers)
        };
        let mut seen = Vec::new();
        let keys = message_ids.iter().map(|id| seen_key(id));
        for (id, found) in message_ids.iter().zip(self.get_many(keys).await?) {
            if let Some(bytes) = found {
                let received = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| corrupt(format!("the dedupe entry of {id:?}")))?;
                seen.push((id.clone(), received));
            }
        }
        let mut profiles = BTreeSet::new();
        let keys = identifiers.iter().map(identifier_key);
        for (id, found) in identifiers.iter().zip(self.get_many(keys).await?) {
            if let Some(bytes) = found {
                let profile = String::from_utf8(bytes)
                    .map_err(|_| corrupt(format!("the index entry of {id}")))?;
                profiles.insert(profile);
            }
        }
        {
            let unifier = self.state()?;
            profiles.retain(|p| !unifier.graph().holds_profile(p));
        }
        let mut records = Vec::new();
        let keys = profiles.iter().map(|p| profile_key(p));
        for (profile, found) in profiles.iter().zip(self.get_many(keys).await?) {
            match found {
                Some(record) => records.push(record),
                None => return Err(corrupt(format!("{profile} is indexed but has no record"))),
            }
        }
        Ok((seen, records))
    }

    /// The writes of what a batch changed.
    fn batch(
        &self,
        changes: braid_core::identity::Changes,
        indexed: Vec<(Vec<u8>, &[u8])>,
        settings: &StoreSettings,
    ) -> Vec<KvWrite> {
        let mut batch = Vec::with_capacity(
            changes.profiles.len() + changes.identifiers.len() + changes.seen.len() + 2,
        );
        for (id, record) in changes.profiles {
            batch.push(KvWrite::Put {
                key: profile_key(&id),
                value: record,
                ttl_millis: None,
            });
        }
        for id in changes.removed {
            batch.push(KvWrite::Delete {
                key: profile_key(&id),
            });
        }
        for (id, profile) in changes.identifiers {
            batch.push(KvWrite::Put {
                key: identifier_key(&id),
                value: profile.into_bytes(),
                ttl_millis: None,
            });
        }
        // Kept a day past the window, so that an object unified a little late still finds
        // the entries it needs (the window itself is checked on the times, not by expiry).
        let window = u64::try_from(self.rules.dedupe_window_days.max(0)).unwrap_or(0) + 1;
        for (id, received) in changes.seen {
            batch.push(KvWrite::Put {
                key: seen_key(&id),
                value: received.to_string().into_bytes(),
                ttl_millis: Some(window * DAY_MILLIS),
            });
        }
        if settings.event_retention_days > 0 {
            for (key, line) in indexed {
                batch.push(KvWrite::Put {
                    key,
                    value: line.to_vec(),
                    ttl_millis: Some(settings.event_retention_days * DAY_MILLIS),
                });
            }
        }
        batch.push(KvWrite::Put {
            key: META_KEY.to_vec(),
            value: serde_json::to_vec(&changes.counters).unwrap_or_default(),
            ttl_millis: None,
        });
        batch
    }

    /// The values of `keys`, in their order, read a few at a time (on object storage each
    /// read that misses the caches is a round trip).
    async fn get_many(
        &self,
        keys: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Vec<Option<Vec<u8>>>, HandlerError> {
        let keys: Vec<Vec<u8>> = keys.collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CONCURRENT_READS) {
            let reads = chunk.iter().map(|key| self.kv.get(key));
            out.extend(futures_util::future::try_join_all(reads).await?);
        }
        Ok(out)
    }

    async fn flush(&self) -> Result<(), HandlerError> {
        if !self.unflushed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let flushed = self.kv.flush().await.map_err(HandlerError::from);
        if flushed.is_err() {
            self.unflushed.store(true, Ordering::SeqCst);
            let _writer = self.writer.lock().await;
            let _ = self.reset().await;
        }
        flushed
    }

    /// The record of the profile that has `id`, from the working set or the store.
    async fn record_of(
        &self,
        id: &Identifier,
    ) -> Result<Option<(ProfileIds, Profile)>, HandlerError> {
        {
            let unifier = self.state()?;
            if let Some(ids) = unifier.graph().profile_of(id)
                && let Some(profile) = unifier.profile(&ids.id)
            {
                return Ok(Some((ids.clone(), profile.clone())));
            }
        }
        let Some(form) = self.rules.normalized(id) else {
            return Ok(None);
        };
        let Some(profile) = self.kv.get(&identifier_key(&form)).await? else {
            return Ok(None);
        };
        let profile = String::from_utf8(profile)
            .map_err(|_| corrupt(format!("the index entry of {form}")))?;
        let Some(record) = self.kv.get(&profile_key(&profile)).await? else {
            return Ok(None);
        };
        decode_record(&record)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Every record, in profile id order, a page at a time.
    async fn for_each_record(
        &self,
        mut each: impl FnMut(ProfileIds, Profile),
    ) -> Result<(), HandlerError> {
        let end = prefix_end(b"p/");
        let mut start = b"p/".to_vec();
        loop {
            let page = self.kv.scan(&start, &end, SCAN_PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            start.clone_from(last);
            start.push(0);
            for (_, record) in page {
                let (ids, profile) = decode_record(&record).map_err(|e| corrupt(e.to_string()))?;
                each(ids, profile);
            }
        }
    }
}

/// Identity resolution and profiles for every workspace of a lake, each in its own store.
pub struct ProfileUnify<S, H: KvHome> {
    lake: S,
    home: H,
    rules: IdentityRules,
    config: ProfileConfig,
    settings: StoreSettings,
    fingerprint: String,
    workspaces: tokio::sync::Mutex<BTreeMap<String, Arc<Workspace<H::Kv>>>>,
}

impl<S, H: KvHome> std::fmt::Debug for ProfileUnify<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileUnify")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What opening a workspace's profiles did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Its generation.
    pub generation: u64,
    /// Whether it was rebuilt from the lake (new rules, or no store beside a lake that was
    /// unified), and how many events that applied.
    pub rebuilt: Option<usize>,
}

impl<S: ObjectStore, H: KvHome> ProfileUnify<S, H> {
    /// Profiles of the lake `lake`, in stores opened by `home`, under `rules` and `config`.
    pub fn new(
        lake: S,
        home: H,
        rules: IdentityRules,
        config: ProfileConfig,
        settings: StoreSettings,
    ) -> ProfileUnify<S, H> {
        let fingerprint = fingerprint(&rules, &config);
        ProfileUnify {
            lake,
            home,
            rules,
            config,
            settings,
            fingerprint,
            workspaces: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn current_key(workspace: &str) -> String {
        format!("profiles/workspace={workspace}/CURRENT")
    }

    fn store_path(workspace: &str, generation: u64) -> String {
        format!("profiles/workspace={workspace}/g{generation}")
    }

    async fn current(&self, workspace: &str) -> Result<Option<Current>, HandlerError> {
        let Some(bytes) = self.lake.get(&Self::current_key(workspace)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("{}: {e}", Self::current_key(workspace))))
    }

    /// Opens a workspace's profiles (rebuilding them from the lake when the store was built
    /// under other rules, or when there is none beside a lake that was unified), keeping them
    /// open.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn open(&self, workspace: &str) -> Result<Opened, HandlerError> {
        let mut open = self.workspaces.lock().await;
        if let Some(store) = open.get(workspace) {
            return Ok(Opened {
                generation: store.generation,
                rebuilt: None,
            });
        }
        let (opened, store) = self.open_locked(workspace).await?;
        open.insert(workspace.to_owned(), Arc::new(store));
        Ok(opened)
    }

    /// [`ProfileUnify::open`] with the map of open workspaces locked by the caller.
    async fn open_locked(
        &self,
        workspace: &str,
    ) -> Result<(Opened, Workspace<H::Kv>), HandlerError> {
        match self.current(workspace).await? {
            Some(current) if current.fingerprint == self.fingerprint || self.home.read_only() => {
                if current.fingerprint != self.fingerprint {
                    tracing::warn!(
                        workspace,
                        "The profile store was built under other rules (read-only: not rebuilt)."
                    );
                }
                self.open_generation(workspace, current.generation).await
            }
            Some(current) => {
                tracing::info!(
                    workspace,
                    "The identity or profile rules changed: rebuilding profiles from the lake."
                );
                self.rebuild_locked(workspace, Some(current.generation))
                    .await
            }
            None if self.home.read_only() => Err(HandlerError {
                error_type: "NoProfileStore",
                message: format!("workspace {workspace:?} has no profile store yet"),
                retriable: false,
            }),
            None if self.lake_was_unified(workspace).await? => {
                tracing::info!(workspace, "No profile store: building it from the lake.");
                self.rebuild_locked(workspace, None).await
            }
            None => {
                let opened = self.open_generation(workspace, 1).await?;
                let current = Current {
                    generation: 1,
                    fingerprint: self.fingerprint.clone(),
                };
                self.write_current(workspace, &current).await?;
                Ok(opened)
            }
        }
    }

    /// The store of a generation, as it is.
    async fn open_generation(
        &self,
        workspace: &str,
        generation: u64,
    ) -> Result<(Opened, Workspace<H::Kv>), HandlerError> {
        let kv = self
            .home
            .open(&Self::store_path(workspace, generation))
            .await?;
        let store = Workspace::open(kv, generation, &self.rules, &self.config).await?;
        let opened = Opened {
            generation,
            rebuilt: None,
        };
        Ok((opened, store))
    }

    async fn write_current(&self, workspace: &str, current: &Current) -> Result<(), HandlerError> {
        let body = serde_json::to_vec(current).unwrap_or_default();
        self.lake.put(&Self::current_key(workspace), body).await?;
        Ok(())
    }

    /// Whether the unify step has applied objects of the workspace (without a store: an
    /// older Braid did, or the store was deleted).
    async fn lake_was_unified(&self, workspace: &str) -> Result<bool, HandlerError> {
        let prefix = format!(
            "{CHECKPOINT_PREFIX}{}",
            workspace_prefix(Area::Raw, workspace)
        );
        Ok(!self.lake.list(&prefix).await?.is_empty())
    }

    /// Recomputes a workspace's profiles from the lake — every live object in the order it was
    /// written, as the live path unified them — into a new generation, then switches to it.
    ///
    /// # Errors
    ///
    /// When a store fails; the previous generation then stays in place.
    pub async fn rebuild(&self, workspace: &str) -> Result<Opened, HandlerError> {
        if self.home.read_only() {
            return Err(HandlerError {
                error_type: "ReadOnly",
                message: "the profile stores are open read-only".to_owned(),
                retriable: false,
            });
        }
        let mut open = self.workspaces.lock().await;
        if let Some(previous) = open.remove(workspace) {
            previous.flush().await?;
            previous.kv.close().await?;
        }
        let previous = self.current(workspace).await?.map(|c| c.generation);
        let (opened, store) = self.rebuild_locked(workspace, previous).await?;
        open.insert(workspace.to_owned(), Arc::new(store));
        Ok(opened)
    }

    async fn rebuild_locked(
        &self,
        workspace: &str,
        previous: Option<u64>,
    ) -> Result<(Opened, Workspace<H::Kv>), HandlerError> {
        let generation = previous.map_or(1, |g| g + 1);
        let path = Self::store_path(workspace, generation);
        // Whatever an interrupted rebuild left at this generation goes first.
        self.remove_objects(&format!("{path}/")).await?;
        let (_, store) = self.open_generation(workspace, generation).await?;
        let mut objects = live_objects(&self.lake, &workspace_prefix(Area::Raw, workspace)).await?;
        objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        let mut events = 0;
        for (i, object) in objects.iter().enumerate() {
            let Some(packed) = self.lake.get(&object.key).await? else {
                continue;
            };
            match gunzip(&packed, MAX_OBJECT_BYTES) {
                Ok(content) => events += store.apply_lines(&content, &self.settings).await?,
                Err(error) => {
                    tracing::warn!(key = object.key, %error, "rebuild: unreadable object");
                }
            }
            if i % 64 == 63 {
                store.flush().await?;
            }
        }
        store.flush().await?;
        let current = Current {
            generation,
            fingerprint: self.fingerprint.clone(),
        };
        self.write_current(workspace, &current).await?;
        if let Some(old) = previous {
            self.remove_objects(&format!("{}/", Self::store_path(workspace, old)))
                .await?;
        }
        let opened = Opened {
            generation,
            rebuilt: Some(events),
        };
        Ok((opened, store))
    }

    async fn remove_objects(&self, prefix: &str) -> Result<(), HandlerError> {
        for object in self.lake.list(prefix).await? {
            self.lake.delete(&object.key).await?;
        }
        Ok(())
    }

    /// A workspace's profiles, opened when they are not.
    async fn workspace(&self, workspace: &str) -> Result<Arc<Workspace<H::Kv>>, HandlerError> {
        let mut open = self.workspaces.lock().await;
        if let Some(store) = open.get(workspace) {
            return Ok(Arc::clone(store));
        }
        let (_, store) = self.open_locked(workspace).await?;
        let store = Arc::new(store);
        open.insert(workspace.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// A workspace's profiles for reading: `None` for a workspace without a store.
    async fn existing(
        &self,
        workspace: &str,
    ) -> Result<Option<Arc<Workspace<H::Kv>>>, HandlerError> {
        if let Some(store) = self.workspaces.lock().await.get(workspace) {
            return Ok(Some(Arc::clone(store)));
        }
        if self.current(workspace).await?.is_none() {
            return Ok(None);
        }
        self.workspace(workspace).await.map(Some)
    }

    /// Applies NDJSON lake lines to a workspace's profiles, giving how many were applied to a
    /// profile (not yet durable: see [`Unify::commit`]).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn apply_lines(
        &self,
        workspace: &str,
        content: &[u8],
    ) -> Result<usize, HandlerError> {
        let store = self.workspace(workspace).await?;
        let applied = store.apply_lines(content, &self.settings).await;
        if let Err(error) = &applied {
            self.forget_if_failed(workspace, error).await;
        }
        applied
    }

    /// A store that failed for good (another writer fenced it, say) is closed, and opened
    /// again at the next use.
    async fn forget_if_failed(&self, workspace: &str, error: &HandlerError) {
        if error.error_type == "ProfileStoreFailed" {
            tracing::warn!(workspace, %error, "The profile store failed: it will be opened again.");
            self.workspaces.lock().await.remove(workspace);
        }
    }

    /// The profile of an identifier, as the profile API shows it.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn profile(
        &self,
        workspace: &str,
        id: &Identifier,
    ) -> Result<Option<Value>, HandlerError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        Ok(store
            .record_of(id)
            .await?
            .map(|(ids, profile)| profile_view(&ids, &profile)))
    }

    /// The edge's personalization value for `id` (`braid_core::personalize::edge_value`).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn edge_value(
        &self,
        workspace: &str,
        id: &Identifier,
        visible: &[String],
    ) -> Result<Option<String>, HandlerError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        Ok(store
            .record_of(id)
            .await?
            .map(|(_, profile)| braid_core::personalize::edge_value(&profile, visible)))
    }

    /// Every entry of the edge's personalization store
    /// (`braid_core::personalize::profile_edge_entries`), sorted by key.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn edge_entries(
        &self,
        workspace: &str,
        secret: &[u8],
        visible: &[String],
    ) -> Result<Vec<(String, String)>, HandlerError> {
        let mut entries = Vec::new();
        if let Some(store) = self.existing(workspace).await? {
            store
                .for_each_record(|ids, profile| {
                    entries.extend(braid_core::personalize::profile_edge_entries(
                        &ids, &profile, secret, visible,
                    ));
                })
                .await?;
        }
        entries.sort();
        Ok(entries)
    }

    /// Every profile of a workspace as the profile API shows it, sorted by id.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn snapshot(&self, workspace: &str) -> Result<Vec<Value>, HandlerError> {
        let mut out = Vec::new();
        if let Some(store) = self.existing(workspace).await? {
            store
                .for_each_record(|ids, profile| out.push(profile_view(&ids, &profile)))
                .await?;
        }
        Ok(out)
    }

    /// A page of the events of the profile that `id` belongs to (and of the profiles merged
    /// into it), in the order they were unified: up to `limit` events after the event numbered
    /// `after` (from the start when `None`), and the number to continue after when there are
    /// more. `None` when no profile has `id`. Events are kept for
    /// [`StoreSettings::event_retention_days`].
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn events(
        &self,
        workspace: &str,
        id: &Identifier,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<(Vec<Value>, Option<u64>)>, HandlerError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        let Some((ids, _)) = store.record_of(id).await? else {
            return Ok(None);
        };
        let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
        for profile in lineage(&ids) {
            let prefix = format!("e/{profile}/").into_bytes();
            let start = match after {
                Some(after) => event_key(&profile, after.saturating_add(1)),
                None => prefix.clone(),
            };
            let page = store
                .kv
                .scan(&start, &prefix_end(&prefix), limit.saturating_add(1))
                .await?;
            for (key, line) in page {
                let sequence = key
                    .get(prefix.len()..)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| corrupt("an event key".to_owned()))?;
                found.push((sequence, line));
            }
        }
        found.sort_by_key(|(sequence, _)| *sequence);
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more {
            found.last().map(|(sequence, _)| *sequence)
        } else {
            None
        };
        let events = found
            .into_iter()
            .filter_map(|(_, line)| serde_json::from_slice(&line).ok())
            .collect();
        Ok(Some((events, next)))
    }

    /// Makes everything durable and closes every store.
    ///
    /// # Errors
    ///
    /// When a store fails to flush.
    pub async fn close(&self) -> Result<(), HandlerError> {
        let mut open = self.workspaces.lock().await;
        for (_, store) in std::mem::take(&mut *open) {
            store.flush().await?;
            store.kv.close().await?;
        }
        Ok(())
    }
}

impl<S: ObjectStore, H: KvHome> Unify for ProfileUnify<S, H> {
    async fn apply(&self, key: &str, events: &[u8]) -> Result<usize, HandlerError> {
        match workspace_of(Area::Raw, key) {
            Some(workspace) => self.apply_lines(workspace, events).await,
            None => Ok(0),
        }
    }

    async fn commit(&self) -> Result<(), HandlerError> {
        let open: Vec<(String, Arc<Workspace<H::Kv>>)> = self
            .workspaces
            .lock()
            .await
            .iter()
            .map(|(name, store)| (name.clone(), Arc::clone(store)))
            .collect();
        for (workspace, store) in open {
            if let Err(error) = store.flush().await {
                self.forget_if_failed(&workspace, &error).await;
                return Err(error);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::compact::{CompactSettings, compact_partition};
    use crate::kv::MemoryHome;
    use crate::object::gzip;
    use crate::store::LocalStore;
    use crate::unify::unify_objects;

    fn config() -> ProfileConfig {
        serde_json::from_value(json!({"aggregates": [
            {"name": "revenue", "event": "Buy", "property": "amount", "op": "sum"}]}))
        .unwrap()
    }

    fn small_cache() -> StoreSettings {
        StoreSettings {
            cache_profiles: 5,
            ..StoreSettings::default()
        }
    }

    type Profiles = ProfileUnify<LocalStore, MemoryHome>;

    fn profiles(lake: &LocalStore, home: &MemoryHome, rules: IdentityRules) -> Profiles {
        ProfileUnify::new(lake.clone(), home.clone(), rules, config(), small_cache())
    }

    /// Writes `objects` objects of 40 random events each to the lake (three hours), unifying
    /// each as it lands, as `braid serve` does.
    async fn live(lake: &LocalStore, unify: &Profiles, objects: usize) {
        let mut state: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut sequence = 0;
        for object in 0..objects {
            let hour = 10 + object * 3 / objects;
            let mut content = String::new();
            for _ in 0..40 {
                sequence += 1;
                let mut event = json!({
                    "type": "track", "event": "Buy", "messageId": format!("m{sequence}"),
                    "anonymousId": format!("a{}", next(300)),
                    "timestamp": format!("2024-05-01T{hour}:{:02}:00.000Z", next(60)),
                    "properties": {"amount": next(50)}
                });
                if next(4) == 0 {
                    event["type"] = json!("identify");
                    event["userId"] = json!(format!("u{}", next(80)));
                    event["traits"] =
                        json!({"tier": next(3), "email": format!("e{}@x.example", next(100))});
                }
                content.push_str(&event.to_string());
                content.push('\n');
            }
            let key = format!(
                "raw/workspace=w/date=2024-05-01/hour={hour}/{}.ndjson.gz",
                braid_core::lake::batch_id(content.as_bytes())
            );
            lake.put(&key, gzip(content.as_bytes())).await.unwrap();
            unify_objects(lake, unify, &[key], OffsetDateTime::UNIX_EPOCH)
                .await
                .unwrap();
        }
    }

    /// The profiles of every lake event in write order, by one unifier that holds everything.
    async fn in_memory(lake: &LocalStore, rules: IdentityRules) -> Vec<Value> {
        let mut whole = Unifier::new(rules, config());
        let mut objects = lake.list("raw/").await.unwrap();
        objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        for object in &objects {
            let content = gunzip(&lake.get(&object.key).await.unwrap().unwrap(), 1 << 20).unwrap();
            for line in lines(&content) {
                if let Ok(Value::Object(event)) = serde_json::from_slice(line) {
                    whole.apply(&event);
                }
            }
        }
        whole.snapshot()
    }

    /// Rebuilding from the lake gives the profiles the live path built — object by object as
    /// they were committed, through a working set that keeps only 5 profiles between objects —
    /// ids included, before and after compaction.
    #[tokio::test]
    async fn a_rebuild_equals_the_incremental_path() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::open(dir.path()).unwrap();
        let home = MemoryHome::default();
        let unify = profiles(&lake, &home, IdentityRules::default());
        live(&lake, &unify, 90).await;
        let reference = unify.snapshot("w").await.unwrap();
        assert!(reference.len() > 50, "{} profiles", reference.len());
        // The same events in memory, all at once: the store changed nothing.
        assert!(
            in_memory(&lake, IdentityRules::default()).await == reference,
            "the store changed the profiles"
        );
        let rebuilt = unify.rebuild("w").await.unwrap();
        assert_eq!(rebuilt.generation, 2);
        assert_eq!(rebuilt.rebuilt, Some(90 * 40));
        assert!(
            unify.snapshot("w").await.unwrap() == reference,
            "a rebuild differs"
        );
        compact_partition(
            &lake,
            &CompactSettings::default(),
            "raw/workspace=w/date=2024-05-01/hour=11",
        )
        .await
        .unwrap();
        unify.rebuild("w").await.unwrap();
        assert!(
            unify.snapshot("w").await.unwrap() == reference,
            "compaction changed the rebuild"
        );
        assert_eq!(
            home.paths(),
            [
                "profiles/workspace=w/g1",
                "profiles/workspace=w/g2",
                "profiles/workspace=w/g3"
            ]
        );
    }

    #[tokio::test]
    async fn profiles_persist_and_new_rules_rebuild_them() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::open(dir.path()).unwrap();
        let home = MemoryHome::default();
        let first = profiles(&lake, &home, IdentityRules::default());
        live(&lake, &first, 30).await;
        let before = first.snapshot("w").await.unwrap();
        let someone = Identifier::parse("user_id:u7").unwrap();
        let profile = first.profile("w", &someone).await.unwrap().unwrap();
        first.close().await.unwrap();
        // Opened again under the same rules: the store answers, nothing is rebuilt.
        let again = profiles(&lake, &home, IdentityRules::default());
        assert_eq!(
            again.open("w").await.unwrap(),
            Opened {
                generation: 1,
                rebuilt: None
            }
        );
        assert_eq!(again.profile("w", &someone).await.unwrap(), Some(profile));
        assert!(again.snapshot("w").await.unwrap() == before);
        again.close().await.unwrap();
        // Emails blocked: every profile that an email held together splits.
        let mut rules = IdentityRules::default();
        rules.types.get_mut("email").unwrap().blocked = vec![".*".into()];
        let rules = rules.compiled().unwrap();
        let stricter = profiles(&lake, &home, rules.clone());
        let opened = stricter.open("w").await.unwrap();
        assert_eq!(opened.generation, 2);
        assert_eq!(opened.rebuilt, Some(30 * 40));
        let after = stricter.snapshot("w").await.unwrap();
        assert!(after != before);
        assert!(after == in_memory(&lake, rules.clone()).await);
        assert!(
            after.iter().all(|p| {
                p["identifiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|id| id["type"] != "email")
            }),
            "no email links anything"
        );
        let current: Value = serde_json::from_slice(
            &lake
                .get("profiles/workspace=w/CURRENT")
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(current["generation"], 2);
        assert_eq!(current["fingerprint"], fingerprint(&rules, &config()));
    }

    #[tokio::test]
    async fn a_lake_without_a_store_is_unified_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::open(dir.path()).unwrap();
        let counted = crate::unify::CountEvents;
        // An older Braid (or a deleted store) unified these without profiles.
        for n in 0..3 {
            let line = json!({"type": "identify", "messageId": format!("old{n}"), "userId": "u",
                              "timestamp": "2024-05-01T10:00:00.000Z"});
            let key = format!("raw/workspace=w/date=2024-05-01/hour=10/o{n}.ndjson.gz");
            lake.put(&key, gzip(format!("{line}\n").as_bytes()))
                .await
                .unwrap();
            unify_objects(&lake, &counted, &[key], OffsetDateTime::UNIX_EPOCH)
                .await
                .unwrap();
        }
        let unify = profiles(&lake, &MemoryHome::default(), IdentityRules::default());
        let opened = unify.open("w").await.unwrap();
        assert_eq!(opened.rebuilt, Some(3));
        let profile = unify
            .profile("w", &Identifier::parse("user_id:u").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(profile["eventCounts"]["identify"], 3);
        assert!(
            unify
                .profile("nowhere", &Identifier::parse("user_id:u").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }

    fn event(id: &str, at: &str, body: &Value) -> String {
        let mut event = body.clone();
        event["messageId"] = json!(id);
        event["timestamp"] = json!(at);
        format!("{event}\n")
    }

    #[tokio::test]
    async fn events_are_paged_across_merges_and_redeliveries_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::open(dir.path()).unwrap();
        let unify = profiles(&lake, &MemoryHome::default(), IdentityRules::default());
        let laptop = json!({"type": "page", "anonymousId": "laptop"});
        let phone = json!({"type": "page", "anonymousId": "phone"});
        let mut first = String::new();
        for i in 0..5 {
            first.push_str(&event(
                &format!("l{i}"),
                "2024-05-01T10:00:00.000Z",
                &laptop,
            ));
            first.push_str(&event(&format!("p{i}"), "2024-05-01T10:01:00.000Z", &phone));
        }
        let login = |id: &str, anonymous: &str| {
            event(
                id,
                "2024-05-01T10:05:00.000Z",
                &json!({"type": "identify", "anonymousId": anonymous, "userId": "u"}),
            )
        };
        unify.apply_lines("w", first.as_bytes()).await.unwrap();
        let second = login("login-laptop", "laptop") + &login("login-phone", "phone");
        assert_eq!(unify.apply_lines("w", second.as_bytes()).await.unwrap(), 2);
        // The same lines again (a client's retry), and the first batch again.
        assert_eq!(unify.apply_lines("w", second.as_bytes()).await.unwrap(), 0);
        assert_eq!(unify.apply_lines("w", first.as_bytes()).await.unwrap(), 0);
        unify.commit().await.unwrap();
        let user = Identifier::parse("user_id:u").unwrap();
        let profile = unify.profile("w", &user).await.unwrap().unwrap();
        assert_eq!(profile["eventCounts"]["page"], 10);
        assert_eq!(profile["eventCounts"]["identify"], 2);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = unify.events("w", &user, after, 3).await.unwrap().unwrap();
            assert!(page.len() <= 3);
            seen.extend(
                page.iter()
                    .map(|e| e["messageId"].as_str().unwrap().to_owned()),
            );
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..5)
            .flat_map(|i| [format!("l{i}"), format!("p{i}")])
            .collect();
        expected.extend(["login-laptop".to_owned(), "login-phone".to_owned()]);
        assert_eq!(seen, expected, "every event once, in the order unified");
        assert!(
            unify
                .events("w", &Identifier::parse("user_id:nobody").unwrap(), None, 3)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_failed_write_loses_nothing_and_is_retried_whole() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::open(dir.path()).unwrap();
        let home = MemoryHome::default();
        let unify = profiles(&lake, &home, IdentityRules::default());
        let one = event(
            "e1",
            "2024-05-01T10:00:00.000Z",
            &json!({"type": "identify", "anonymousId": "a", "userId": "u", "traits": {"plan": "pro"}}),
        );
        unify.apply_lines("w", one.as_bytes()).await.unwrap();
        let kv = home.open("profiles/workspace=w/g1").await.unwrap();
        kv.set_failing(true);
        let two = event(
            "e2",
            "2024-05-01T10:01:00.000Z",
            &json!({"type": "track", "event": "Buy", "anonymousId": "a", "properties": {"amount": 5}}),
        );
        let error = unify.apply_lines("w", two.as_bytes()).await.unwrap_err();
        assert_eq!(error.error_type, "ProfileStoreUnavailable");
        assert!(error.retriable);
        // The failed batch left no trace: not in memory either.
        let user = Identifier::parse("user_id:u").unwrap();
        let profile = unify.profile("w", &user).await.unwrap().unwrap();
        assert!(profile["eventCounts"].get("Buy").is_none(), "{profile}");
        kv.set_failing(false);
        assert_eq!(unify.apply_lines("w", two.as_bytes()).await.unwrap(), 1);
        let profile = unify.profile("w", &user).await.unwrap().unwrap();
        assert_eq!(profile["eventCounts"]["Buy"], 1);
        assert_eq!(profile["aggregates"]["revenue"], 5.0);
    }
}
