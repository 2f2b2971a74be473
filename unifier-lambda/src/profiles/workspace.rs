//! One workspace's profile store and its working set: applying lake lines (the keys they read
//! loaded from the store first, the changes written back in one atomic batch), flushing, and
//! reading records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use braid_core::activate::destination::ProfileView;
use braid_core::catalogue::lake::line_origin;
use braid_core::catalogue::map::{DataMap, EventEntry, EventKey, KnownIds};
use braid_core::segment::{Logged, Segments};
use braid_core::unify::{
    Applied, Changes, Identifier, IdentityRules, Profile, ProfileConfig, ProfileIds,
    ProfileStoreConfig, StoredCounters, StoredSeen, Unifier, decode_record, decode_seen,
    encode_preview_row, encode_seen,
};

use super::error::{ProfileError, corrupt};
use super::keys::{
    DAY_MILLIS, MAP_FAILURES_KEY, MAP_META_KEY, MAP_PREFIX, META_KEY, TIMER_PREFIX, change_key,
    event_key, identifier_key, map_key, parse_timer, profile_key, seen_key, timer_key,
    timers_until,
};
use super::kv::{Kv, KvWrite, Pages};
use super::preview::PreviewRows;
use crate::lake::feed::{LineEvent, LinesApplied};

/// What [`Workspace::apply_lines`] did with the events of an object.
struct EventsApplied {
    /// Applied to a profile.
    events: usize,
    /// Applied although another sender had used their `messageId`.
    collisions: u64,
    /// The lines that are copies of events applied from other lines.
    copies: Vec<usize>,
}

/// Segmentation as a workspace keeps it: the audiences and computed traits, and how long the
/// change log keeps an entry.
#[derive(Clone, Debug, Default)]
pub struct Segmentation {
    /// The compiled audiences and computed traits.
    pub segments: Arc<Segments>,
    /// How long the change log keeps an entry, in days.
    pub change_log_days: u64,
}

impl Segmentation {
    /// The configuration's audiences and computed traits.
    pub fn of(config: &braid_core::Config) -> Segmentation {
        Segmentation {
            // Checked with the configuration (`Config::check`): one that got here compiles.
            segments: Arc::new(config.segments().unwrap_or_default()),
            change_log_days: config.segment.change_log_days,
        }
    }
}

/// Timers read per page of a sweep.
const TIMER_PAGE: usize = 512;

/// Reads of a store in flight at once.
const CONCURRENT_READS: usize = 32;

/// Entries read per scan of a store.
const SCAN_PAGE: usize = 1_000;

/// One workspace's store and working set.
pub(super) struct Workspace<K> {
    pub(super) kv: K,
    /// The store's generation.
    pub(super) generation: u64,
    /// One batch at a time: a batch's lookups, application and write go together.
    writer: tokio::sync::Mutex<()>,
    state: std::sync::Mutex<Unifier>,
    /// The data map, kept with the profiles: what an event adds to it is written in the batch
    /// that applies the event, so a re-applied object (its events now copies) adds nothing.
    map: std::sync::Mutex<DataMap>,
    /// Whether the map is kept (`[catalogue] data_map`).
    keep_map: bool,
    unflushed: AtomicBool,
    /// The change log's last number written to the store, and the last made durable: readers
    /// that act on it (destinations) read no further than the durable one, so that nothing
    /// is delivered that a crash could take back.
    logged_written: AtomicU64,
    logged_durable: AtomicU64,
    rules: IdentityRules,
    config: ProfileConfig,
    /// The paths unify reads identifiers from: the map does not count them as identity
    /// candidates.
    identifier_paths: BTreeSet<String>,
    segmentation: Segmentation,
    /// Every profile's preview row, once the workspace was previewed (then kept current by
    /// every batch).
    preview: std::sync::OnceLock<Arc<PreviewRows>>,
}

/// The rows a batch changes in the preview's copy (set after the batch is written).
type PreviewChanges = Vec<(String, Option<Vec<u8>>)>;

/// The map paths of the traits unify reads identifiers from (`traits.email`, ...).
fn identifier_paths(rules: &IdentityRules) -> BTreeSet<String> {
    let names = ["email", "phone"]
        .into_iter()
        .chain(rules.trait_identifiers.keys().map(String::as_str));
    names
        .flat_map(|name| [format!("traits.{name}"), format!("context.traits.{name}")])
        .collect()
}

impl<K: Kv> Workspace<K> {
    pub(super) async fn open(
        kv: K,
        generation: u64,
        rules: &IdentityRules,
        config: &ProfileConfig,
        data_map: bool,
        segmentation: Segmentation,
    ) -> Result<Workspace<K>, ProfileError> {
        let workspace = Workspace {
            kv,
            generation,
            writer: tokio::sync::Mutex::new(()),
            state: std::sync::Mutex::new(Unifier::new(rules.clone(), config.clone())),
            map: std::sync::Mutex::new(DataMap::default()),
            keep_map: data_map,
            unflushed: AtomicBool::new(false),
            logged_written: AtomicU64::new(0),
            logged_durable: AtomicU64::new(0),
            rules: rules.clone(),
            config: config.clone(),
            identifier_paths: identifier_paths(rules),
            segmentation,
            preview: std::sync::OnceLock::new(),
        };
        workspace.reset().await?;
        Ok(workspace)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, Unifier>, ProfileError> {
        self.state
            .lock()
            .map_err(|_| corrupt("a unify step panicked".to_owned()))
    }

    fn data_map(&self) -> Result<std::sync::MutexGuard<'_, DataMap>, ProfileError> {
        self.map
            .lock()
            .map_err(|_| corrupt("a unify step panicked".to_owned()))
    }

    /// The data map as the store holds it (with what the working set applied).
    pub(super) fn map(&self) -> Result<DataMap, ProfileError> {
        self.data_map().map(|map| map.clone())
    }

    /// [`Workspace::reset`] after a failure, which is what the caller reports: a reset that
    /// fails too (the store is still down) leaves an empty working set that the next batch
    /// reads again.
    async fn reset_after_failure(&self) {
        if let Err(error) = self.reset().await {
            tracing::warn!(%error, "The profile store could not be read again after a failure.");
            if let Ok(mut state) = self.state() {
                *state = Unifier::new(self.rules.clone(), self.config.clone());
            }
        }
    }

    /// Drops the working set and starts again from what the store holds.
    async fn reset(&self) -> Result<(), ProfileError> {
        let counters: StoredCounters = match self.kv.get(META_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("the profile store's meta entry: {e}")))?,
            None => StoredCounters::default(),
        };
        let mut unifier = Unifier::new(self.rules.clone(), self.config.clone());
        unifier.load_counters(&counters);
        // What the store holds when it is opened is durable.
        self.logged_written.store(counters.logged, Ordering::SeqCst);
        self.logged_durable.store(counters.logged, Ordering::SeqCst);
        *self.state()? = unifier;
        *self.data_map()? = self.read_map().await?;
        Ok(())
    }

    /// Reads the data map from the store.
    async fn read_map(&self) -> Result<DataMap, ProfileError> {
        let mut entries = Vec::new();
        let mut pages = Pages::of(MAP_PREFIX, SCAN_PAGE);
        while let Some(page) = pages.next(&self.kv).await? {
            for (key, value) in page {
                let corrupt_entry = || {
                    corrupt(format!(
                        "the data map entry {}",
                        String::from_utf8_lossy(&key)
                    ))
                };
                let mut parts = key
                    .get(MAP_PREFIX.len()..)
                    .unwrap_or_default()
                    .split(|&b| b == 0);
                let mut part = || {
                    parts
                        .next()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                };
                let (Some(kind), Some(source), Some(name)) = (part(), part(), part()) else {
                    return Err(corrupt_entry());
                };
                let entry: EventEntry =
                    serde_json::from_slice(&value).map_err(|_| corrupt_entry())?;
                entries.push((EventKey { source, kind, name }, entry));
            }
        }
        let mut map = DataMap::from_entries(entries);
        if let Some(bytes) = self.kv.get(MAP_META_KEY).await? {
            let meta: MapMeta = serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("the data map's counters: {e}")))?;
            map.other_events = meta.other_events;
        }
        if let Some(bytes) = self.kv.get(MAP_FAILURES_KEY).await? {
            map.failures = serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("the data map's refusals: {e}")))?;
        }
        Ok(map)
    }

    /// Applies NDJSON lake lines (of the object `key`, when known: then copies of events
    /// applied from other lines are named): how many events were applied to a profile, the
    /// lines that are not events, the lines that are copies.
    pub(super) async fn apply_lines(
        &self,
        key: Option<&str>,
        content: &[u8],
        settings: &ProfileStoreConfig,
    ) -> Result<LinesApplied, ProfileError> {
        let _writer = self.writer.lock().await;
        let (events, mut applied) = LinesApplied::read(content);
        if events.is_empty() {
            return Ok(applied);
        }
        let result = self.apply_events(key, &events, settings).await;
        if result.is_err() {
            // The working set may hold changes the store does not: start again from the store.
            self.reset_after_failure().await;
        }
        let done = result?;
        (applied.events, applied.collisions, applied.duplicates) =
            (done.events, done.collisions, done.copies);
        Ok(applied)
    }

    /// Counts the failure records of a `failed/` object in the data map (nothing else reads
    /// them): how many lines were records.
    pub(super) async fn apply_failures(&self, content: &[u8]) -> Result<usize, ProfileError> {
        if !self.keep_map {
            return Ok(0);
        }
        let _writer = self.writer.lock().await;
        let (counted, writes) = {
            let mut map = self.data_map()?;
            let counted = crate::lake::object::lines(content)
                .filter(|line| map.observe_failure(line))
                .count();
            (counted, map_writes(&mut map, false))
        };
        if !writes.is_empty() {
            if let Err(error) = self.kv.write(writes).await {
                self.reset_after_failure().await;
                return Err(error.into());
            }
            self.unflushed.store(true, Ordering::SeqCst);
        }
        Ok(counted)
    }

    /// Applies events (of the object `key`, when known).
    async fn apply_events(
        &self,
        key: Option<&str>,
        events: &[LineEvent<'_>],
        settings: &ProfileStoreConfig,
    ) -> Result<EventsApplied, ProfileError> {
        let (seen, records) = self.read_missing(events).await?;
        // Apply in memory.
        let mut indexed = Vec::new();
        let mut copies = Vec::new();
        let mut logged = Vec::new();
        let segments = Arc::clone(&self.segmentation.segments);
        let (changes, applied, collisions, map_writes, previewed) = {
            let mut unifier = self.state()?;
            // The events applied to a profile (not copies of applied ones) are what the map
            // counts, each with the identifiers its profile has once it is applied.
            let mut map = if self.keep_map {
                Some(self.data_map()?)
            } else {
                None
            };
            let collisions_before = unifier.counters().collisions;
            for (id, senders) in seen {
                unifier.load_seen(&id, &senders);
            }
            for record in records {
                unifier
                    .load_record(&record)
                    .map_err(|e| corrupt(e.to_string()))?;
            }
            let mut applied = 0;
            for line in events {
                let origin = key.map_or(0, |key| line_origin(key, line.number));
                match segments.apply(&mut unifier, &line.event, origin, &mut logged) {
                    Applied::Profile(profile) => {
                        applied += 1;
                        if let Some(map) = map.as_mut() {
                            let known = unifier.graph().profile(&profile).map(|ids| {
                                KnownIds::new(
                                    ids.identifiers
                                        .keys()
                                        .map(|id| (id.kind.as_str(), id.value.as_str())),
                                    &self.identifier_paths,
                                )
                            });
                            map.observe_known(&line.event, known.as_ref());
                        }
                        indexed.push((event_key(&profile, unifier.sequence()), line.text));
                    }
                    Applied::Copy => copies.push(line.number),
                    Applied::Duplicate | Applied::NoIdentity => {}
                }
            }
            let changes = unifier.take_changes();
            let previewed = self.preview_changes(&unifier, &changes);
            let collisions = changes.counters.collisions - collisions_before;
            unifier.forget_seen();
            unifier.take_log();
            let map_writes = map
                .map(|mut map| map_writes(&mut map, applied > 0))
                .unwrap_or_default();
            (changes, applied, collisions, map_writes, previewed)
        };
        // Write back, in one batch.
        let mut batch = self.batch(changes, indexed, settings);
        batch.extend(self.log_writes(&logged));
        batch.extend(map_writes);
        self.kv.write(batch).await?;
        self.note_written(&logged);
        self.apply_preview(previewed);
        self.unflushed.store(true, Ordering::SeqCst);
        self.state()?.evict_to(settings.cache_profiles);
        Ok(EventsApplied {
            events: applied,
            collisions,
            copies,
        })
    }

    /// What the events read that the working set does not hold, read from the store: the
    /// dedupe entries of their `messageId`s, and the records of the profiles their
    /// identifiers belong to.
    async fn read_missing(
        &self,
        events: &[LineEvent<'_>],
    ) -> Result<(Vec<(String, Vec<StoredSeen>)>, Vec<Vec<u8>>), ProfileError> {
        let (message_ids, identifiers) = {
            let unifier = self.state()?;
            let mut message_ids = BTreeSet::new();
            let mut identifiers = BTreeSet::new();
            for line in events {
                let lookups = unifier.lookups(&line.event);
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
                let senders = decode_seen(&bytes)
                    .map_err(|_| corrupt(format!("the dedupe entry of {id:?}")))?;
                seen.push((id.clone(), senders));
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

    /// The change log's writes of what segmentation logged: the changes of one evaluation of
    /// a profile in one group (`braid_core::segment::log`), keyed by its last number.
    fn log_writes(&self, logged: &[Logged]) -> Vec<KvWrite> {
        let ttl = self.segmentation.change_log_days.max(1) * DAY_MILLIS;
        braid_core::segment::log::stored_groups(logged)
            .into_iter()
            .map(|(last, value)| KvWrite::Put {
                key: change_key(last),
                value,
                ttl_millis: Some(ttl),
            })
            .collect()
    }

    /// Fires the timers due at `now` (ms): each profile is evaluated at its timer's own time
    /// (as often as it is due), and what changed is written in one batch per page of timers.
    /// How many profiles were due.
    pub(super) async fn sweep(
        &self,
        now: i64,
        settings: &ProfileStoreConfig,
    ) -> Result<usize, ProfileError> {
        let _writer = self.writer.lock().await;
        let result = self.sweep_locked(now, settings).await;
        if result.is_err() {
            self.reset_after_failure().await;
        }
        result
    }

    async fn sweep_locked(
        &self,
        now: i64,
        settings: &ProfileStoreConfig,
    ) -> Result<usize, ProfileError> {
        let end = timers_until(now);
        let segments = Arc::clone(&self.segmentation.segments);
        let mut fired = 0;
        loop {
            let page = self.kv.scan(TIMER_PREFIX, &end, TIMER_PAGE).await?;
            if page.is_empty() {
                return Ok(fired);
            }
            let full = page.len() == TIMER_PAGE;
            let due: Vec<(Vec<u8>, String)> = page
                .into_iter()
                .filter_map(|(key, _)| parse_timer(&key).map(|(_, profile)| (key, profile)))
                .collect();
            let missing: Vec<String> = {
                let unifier = self.state()?;
                due.iter()
                    .map(|(_, p)| p.clone())
                    .filter(|p| unifier.profile(p).is_none())
                    .collect()
            };
            let records = self
                .get_many(missing.iter().map(|p| profile_key(p)))
                .await?;
            let mut logged = Vec::new();
            let changes = {
                let mut unifier = self.state()?;
                for record in records.into_iter().flatten() {
                    unifier
                        .load_record(&record)
                        .map_err(|e| corrupt(e.to_string()))?;
                }
                for (_, profile) in &due {
                    if segments.fire_due(&mut unifier, profile, now, &mut logged) {
                        fired += 1;
                    }
                }
                let changes = unifier.take_changes();
                let previewed = self.preview_changes(&unifier, &changes);
                (changes, previewed)
            };
            let (changes, previewed) = changes;
            // Every timer read is done with: those that moved were put again at their new time.
            let mut batch: Vec<KvWrite> = due
                .into_iter()
                .map(|(key, _)| KvWrite::Delete { key })
                .collect();
            batch.extend(self.batch(changes, Vec::new(), settings));
            batch.extend(self.log_writes(&logged));
            self.kv.write(batch).await?;
            self.note_written(&logged);
            self.apply_preview(previewed);
            self.unflushed.store(true, Ordering::SeqCst);
            self.state()?.evict_to(settings.cache_profiles);
            if !full {
                return Ok(fired);
            }
        }
    }

    /// The rows of a batch's changed profiles for the preview's copy, when there is one: each
    /// changed profile's preview row, or none for a profile merged into another.
    fn preview_changes(&self, unifier: &Unifier, changes: &Changes) -> PreviewChanges {
        if self.preview.get().is_none() {
            return Vec::new();
        }
        let mut out: PreviewChanges = changes
            .profiles
            .iter()
            .filter_map(|(id, _)| {
                let (ids, profile) = unifier.profile_and_ids(id)?;
                Some((
                    id.clone(),
                    Some(encode_preview_row(ids, profile, &self.config)),
                ))
            })
            .collect();
        out.extend(changes.removed.iter().map(|id| (id.clone(), None)));
        out
    }

    /// Applies a written batch's rows to the preview's copy.
    fn apply_preview(&self, changes: PreviewChanges) {
        let Some(rows) = self.preview.get() else {
            return;
        };
        for (id, row) in changes {
            match row {
                Some(row) => rows.put(id, row),
                None => rows.remove(&id),
            }
        }
    }

    /// The preview's copy of every profile, read from the store the first time (batches wait
    /// meanwhile, so that none is missed).
    pub(super) async fn preview_rows(&self) -> Result<Arc<PreviewRows>, ProfileError> {
        if let Some(rows) = self.preview.get() {
            return Ok(Arc::clone(rows));
        }
        let _writer = self.writer.lock().await;
        if let Some(rows) = self.preview.get() {
            return Ok(Arc::clone(rows));
        }
        // Each page of records is decoded and encoded on every core, off the runtime's threads
        // (on the bench's store that is a sixth of the copy's time; reading the pages from
        // the store is the rest).
        let rows = Arc::new(PreviewRows::new());
        let config = Arc::new(self.config.clone());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut pages = Pages::of(b"p/", SCAN_PAGE);
        while let Some(page) = pages.next(&self.kv).await? {
            let (into, config) = (Arc::clone(&rows), Arc::clone(&config));
            tokio::task::spawn_blocking(move || copy_rows(&into, &config, &page, threads))
                .await
                .map_err(|e| corrupt(format!("copying profiles for a preview failed: {e}")))??;
        }
        Ok(Arc::clone(self.preview.get_or_init(|| rows)))
    }

    /// The writes of what a batch changed.
    fn batch(
        &self,
        changes: Changes,
        indexed: Vec<(Vec<u8>, &[u8])>,
        settings: &ProfileStoreConfig,
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
        for (id, senders) in changes.seen {
            batch.push(KvWrite::Put {
                key: seen_key(&id),
                value: encode_seen(&senders),
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
        for timer in changes.timers {
            if let Some(old) = timer.old {
                batch.push(KvWrite::Delete {
                    key: timer_key(old, &timer.profile),
                });
            }
            if let Some(new) = timer.new {
                batch.push(KvWrite::Put {
                    key: timer_key(new, &timer.profile),
                    value: Vec::new(),
                    ttl_millis: None,
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
    ) -> Result<Vec<Option<Vec<u8>>>, ProfileError> {
        let keys: Vec<Vec<u8>> = keys.collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CONCURRENT_READS) {
            let reads = chunk.iter().map(|key| self.kv.get(key));
            out.extend(futures_util::future::try_join_all(reads).await?);
        }
        Ok(out)
    }

    /// Notes the change log's entries of a batch just written.
    fn note_written(&self, logged: &[Logged]) {
        if let Some(last) = logged.iter().map(|l| l.number).max() {
            self.logged_written.fetch_max(last, Ordering::SeqCst);
        }
    }

    /// The change log's last number that is durable.
    pub(super) fn logged_durable(&self) -> u64 {
        self.logged_durable.load(Ordering::SeqCst)
    }

    pub(super) async fn flush(&self) -> Result<(), ProfileError> {
        if !self.unflushed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        // Entries written after this read may not be in the flush: they wait for the next.
        let written = self.logged_written.load(Ordering::SeqCst);
        let flushed = self.kv.flush().await.map_err(ProfileError::from);
        if flushed.is_ok() {
            self.logged_durable.fetch_max(written, Ordering::SeqCst);
        }
        if flushed.is_err() {
            self.unflushed.store(true, Ordering::SeqCst);
            let _writer = self.writer.lock().await;
            self.reset_after_failure().await;
        }
        flushed
    }

    /// The record of the profile that has `id`, from the working set or the store.
    pub(super) async fn record_of(
        &self,
        id: &Identifier,
    ) -> Result<Option<(ProfileIds, Profile)>, ProfileError> {
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
        decode_record(&record, &self.config)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// The views of profiles by id (from the working set, else the store) that destinations'
    /// messages carry; `None` for a profile that is gone.
    pub(super) async fn views(
        &self,
        ids: &[&str],
        traits: &[String],
        whole: bool,
    ) -> Result<Vec<Option<ProfileView>>, ProfileError> {
        let view = |profile_ids: &ProfileIds, profile: &Profile| {
            let view = ProfileView::of(profile_ids, profile, traits);
            if whole {
                view.with_profile(profile_ids, profile)
            } else {
                view
            }
        };
        let mut out = vec![None; ids.len()];
        let mut missing = Vec::new();
        {
            let unifier = self.state()?;
            for (slot, id) in out.iter_mut().zip(ids) {
                match unifier.profile_and_ids(id) {
                    Some((profile_ids, profile)) => {
                        *slot = Some(view(profile_ids, profile));
                    }
                    None => missing.push(*id),
                }
            }
        }
        let keys = missing.iter().map(|id| profile_key(id));
        let mut read = std::collections::HashMap::new();
        for (id, found) in missing.iter().zip(self.get_many(keys).await?) {
            if let Some(record) = found {
                let (profile_ids, profile) =
                    decode_record(&record, &self.config).map_err(|e| corrupt(e.to_string()))?;
                read.insert(*id, view(&profile_ids, &profile));
            }
        }
        for (slot, id) in out.iter_mut().zip(ids) {
            if slot.is_none() {
                *slot = read.get(id).cloned();
            }
        }
        Ok(out)
    }

    /// Every record, in profile id order, a page at a time.
    /// Up to `limit` profile ids after `after` (from the first when empty), in order.
    pub(super) async fn profile_ids(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, ProfileError> {
        let mut start = profile_key(after);
        if !after.is_empty() {
            start.push(0);
        }
        let page = self
            .kv
            .scan(&start, &super::kv::prefix_end(b"p/"), limit)
            .await?;
        page.into_iter()
            .map(|(key, _)| {
                key.strip_prefix(b"p/")
                    .and_then(|id| String::from_utf8(id.to_vec()).ok())
                    .ok_or_else(|| corrupt("a profile key that is not text".to_owned()))
            })
            .collect()
    }

    pub(super) async fn for_each_record(
        &self,
        mut each: impl FnMut(ProfileIds, Profile),
    ) -> Result<(), ProfileError> {
        let mut pages = Pages::of(b"p/", SCAN_PAGE);
        while let Some(page) = pages.next(&self.kv).await? {
            for (_, record) in page {
                let (ids, profile) =
                    decode_record(&record, &self.config).map_err(|e| corrupt(e.to_string()))?;
                each(ids, profile);
            }
        }
        Ok(())
    }
}

/// Puts the preview rows of `records` (a page of `p/` entries) into `rows`, on `threads`
/// threads.
fn copy_rows(
    rows: &PreviewRows,
    config: &ProfileConfig,
    records: &[(Vec<u8>, Vec<u8>)],
    threads: usize,
) -> Result<(), ProfileError> {
    let share = records.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    for (_, record) in part {
                        let (ids, profile) =
                            decode_record(record, config).map_err(|e| corrupt(e.to_string()))?;
                        rows.put(ids.id.clone(), encode_preview_row(&ids, &profile, config));
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| Err(corrupt("a preview copy's thread panicked".to_owned())))
        })
    })
}

/// The data map's counters, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct MapMeta {
    other_events: u64,
}

/// The writes of what changed in the data map since the last batch.
fn map_writes(map: &mut DataMap, observed: bool) -> Vec<KvWrite> {
    let meta = MapMeta {
        other_events: map.other_events,
    };
    // Written only when they change: refusals are rare beside events.
    let failures = map.failures_changed().then(|| KvWrite::Put {
        key: MAP_FAILURES_KEY.to_vec(),
        value: serde_json::to_vec(&map.failures).unwrap_or_default(),
        ttl_millis: None,
    });
    let mut writes: Vec<KvWrite> = map
        .take_changed()
        .into_iter()
        .map(|(key, entry)| KvWrite::Put {
            key: map_key(&key),
            value: serde_json::to_vec(entry).unwrap_or_default(),
            ttl_millis: None,
        })
        .collect();
    if observed {
        writes.push(KvWrite::Put {
            key: MAP_META_KEY.to_vec(),
            value: serde_json::to_vec(&meta).unwrap_or_default(),
            ttl_millis: None,
        });
    }
    writes.extend(failures);
    writes
}
