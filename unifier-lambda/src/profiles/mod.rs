//! The profile store: identity resolution and profiles kept in a persistent store, as the unify
//! step ([`ProfileUnify`], a [`Unify`] implementation over the core's `Unifier`) and the reads
//! of the profile API and personalization. `braid serve` keeps it on its data folder, the unify
//! Lambda in its bucket; both over the key-value trait [`kv::Kv`] (SlateDB, `kv/`).
//!
//! Each workspace has its own store (one writer each), `profiles/workspace=W/g<N>`, where `N`
//! is its generation: a rebuild from the lake writes generation `N + 1` beside the old one and
//! switches to it by rewriting `profiles/workspace=W/CURRENT` in the lake's store, so a
//! rebuild that stops half-way leaves the old profiles in place. A store built under other
//! rules (their fingerprint is in `CURRENT`) is rebuilt when it is opened. Its keys are
//! `keys.rs`.
//!
//! Applying an object: the events' lookups that the working set does not hold are read from
//! the store, the events are applied in memory, and everything they changed is written in one
//! atomic batch. [`Unify::commit`] then makes the batches durable before the unify entry point
//! writes its checkpoints: an object's effects are durable before it counts as applied, and a
//! crash in between re-applies it, which its `messageId`s make a no-op.

mod error;
mod keys;
pub mod kv;
mod preview;
mod read;
#[cfg(test)]
mod tests;
mod workspace;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use braid_core::catalogue::lake::{
    Area, checkpoint_key, is_failed_object, workspace_of, workspace_prefix,
};
use braid_core::unify::{IdentityRules, ProfileConfig, ProfileStoreConfig, fingerprint};
use error::corrupt;
use keys::{Current, current_key, store_path};
use kv::{Kv as _, KvHome};
use workspace::Workspace;

pub use error::ProfileError;
pub use workspace::Segmentation;

use crate::lake::compact::live_objects;
use crate::lake::feed::{LinesApplied, Unify};
use crate::lake::object::{MAX_OBJECT_BYTES, gunzip};
use crate::lake::store::ObjectStore;

/// Identity resolution and profiles for every workspace of a lake, each in its own store.
pub struct ProfileUnify<S, H: KvHome> {
    lake: S,
    home: H,
    rules: IdentityRules,
    config: ProfileConfig,
    settings: ProfileStoreConfig,
    /// Workspaces under strict identity (`verify_identity`, `docs/trust.md`).
    strict: BTreeSet<String>,
    /// Whether the data map is kept with the profiles.
    data_map: bool,
    /// The audiences and computed traits.
    segmentation: Segmentation,
    /// The configured workspaces (a sweep opens them).
    known: BTreeSet<String>,
    workspaces: tokio::sync::Mutex<BTreeMap<String, Arc<Workspace<H::Kv>>>>,
}

impl<S, H: KvHome> std::fmt::Debug for ProfileUnify<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileUnify")
            .field("strict", &self.strict)
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
        settings: ProfileStoreConfig,
    ) -> ProfileUnify<S, H> {
        ProfileUnify {
            lake,
            home,
            rules,
            config,
            settings,
            strict: BTreeSet::new(),
            data_map: true,
            segmentation: Segmentation::default(),
            known: BTreeSet::new(),
            workspaces: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The same, evaluating audiences and computed traits (`[segment]`); the computed traits
    /// and the audiences' event conditions must be those of the profile configuration (as
    /// `braid_core::Config::check` makes them).
    #[must_use]
    pub fn with_segmentation(mut self, segmentation: Segmentation) -> Self {
        self.segmentation = segmentation;
        self
    }

    /// The same, knowing the workspaces: a sweep opens those that have a store.
    #[must_use]
    pub fn with_workspaces(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.known = names.into_iter().collect();
        self
    }

    /// Fires the timers due at `now` (ms) in every workspace with a store (those known and
    /// those open) and makes what they changed durable: how many profiles were due.
    ///
    /// # Errors
    ///
    /// When a store fails (what was swept before stays swept).
    pub async fn sweep(&self, now: i64) -> Result<usize, ProfileError> {
        let mut names: BTreeSet<String> = self.workspaces.lock().await.keys().cloned().collect();
        names.extend(self.known.iter().cloned());
        let mut fired = 0;
        for workspace in names {
            let Some(store) = self.existing(&workspace).await? else {
                continue;
            };
            let swept = store.sweep(now, &self.settings).await;
            let swept = match swept {
                Ok(n) => store.flush().await.map(|()| n),
                Err(error) => Err(error),
            };
            match swept {
                Ok(n) => fired += n,
                Err(error) => {
                    self.forget_if_failed(&workspace, &error).await;
                    return Err(error);
                }
            }
        }
        Ok(fired)
    }

    /// The same, with `workspaces` under strict identity (`verify_identity`).
    #[must_use]
    pub fn with_strict_identity(mut self, workspaces: impl IntoIterator<Item = String>) -> Self {
        self.strict = workspaces.into_iter().collect();
        self
    }

    /// The same, keeping the data map (`braid_core::catalogue::map`) or not (on by default).
    #[must_use]
    pub fn with_data_map(mut self, on: bool) -> Self {
        self.data_map = on;
        self
    }

    /// The identity rules of a workspace.
    fn rules_of(&self, workspace: &str) -> IdentityRules {
        let mut rules = self.rules.clone();
        rules.verify_identity = self.strict.contains(workspace);
        rules
    }

    /// The fingerprint of a workspace's rules, kept in its `CURRENT`.
    fn fingerprint_of(&self, workspace: &str) -> String {
        fingerprint(&self.rules_of(workspace), &self.config)
    }

    async fn current(&self, workspace: &str) -> Result<Option<Current>, ProfileError> {
        let Some(bytes) = self.lake.get(&current_key(workspace)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("{}: {e}", current_key(workspace))))
    }

    /// Opens a workspace's profiles (rebuilding them from the lake when the store was built
    /// under other rules, or when there is none beside a lake that was unified), keeping them
    /// open.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn open(&self, workspace: &str) -> Result<Opened, ProfileError> {
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
    ) -> Result<(Opened, Workspace<H::Kv>), ProfileError> {
        let fingerprint = self.fingerprint_of(workspace);
        match self.current(workspace).await? {
            Some(current) if current.fingerprint == fingerprint || self.home.read_only() => {
                if current.fingerprint != fingerprint {
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
            None if self.home.read_only() => Err(ProfileError::NoStore {
                workspace: workspace.to_owned(),
            }),
            None if self.lake_was_unified(workspace).await? => {
                tracing::info!(workspace, "No profile store: building it from the lake.");
                self.rebuild_locked(workspace, None).await
            }
            None => {
                let opened = self.open_generation(workspace, 1).await?;
                let current = Current {
                    generation: 1,
                    fingerprint,
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
    ) -> Result<(Opened, Workspace<H::Kv>), ProfileError> {
        let kv = self.home.open(&store_path(workspace, generation)).await?;
        let store = Workspace::open(
            kv,
            generation,
            &self.rules_of(workspace),
            &self.config,
            self.data_map,
            self.segmentation.clone(),
        )
        .await?;
        let opened = Opened {
            generation,
            rebuilt: None,
        };
        Ok((opened, store))
    }

    async fn write_current(&self, workspace: &str, current: &Current) -> Result<(), ProfileError> {
        let body = serde_json::to_vec(current).unwrap_or_default();
        self.lake.put(&current_key(workspace), body).await?;
        Ok(())
    }

    /// Whether the unify step has applied objects of the workspace (without a store: an
    /// older Braid did, or the store was deleted).
    async fn lake_was_unified(&self, workspace: &str) -> Result<bool, ProfileError> {
        let prefix = checkpoint_key(&workspace_prefix(Area::Raw, workspace));
        Ok(!self.lake.list(&prefix).await?.is_empty())
    }

    /// Recomputes a workspace's profiles from the lake — every live object in the order it was
    /// written, as the live path unified them — into a new generation, then switches to it.
    ///
    /// # Errors
    ///
    /// When a store fails; the previous generation then stays in place.
    pub async fn rebuild(&self, workspace: &str) -> Result<Opened, ProfileError> {
        if self.home.read_only() {
            return Err(ProfileError::ReadOnly);
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
    ) -> Result<(Opened, Workspace<H::Kv>), ProfileError> {
        let generation = previous.map_or(1, |g| g + 1);
        let path = store_path(workspace, generation);
        // Whatever an interrupted rebuild left at this generation goes first.
        self.remove_objects(&format!("{path}/")).await?;
        let (_, store) = self.open_generation(workspace, generation).await?;
        let mut objects = live_objects(&self.lake, &workspace_prefix(Area::Raw, workspace)).await?;
        // The failure records too, for the data map's reasons, as the live path counted them.
        objects.extend(
            self.lake
                .list(&workspace_prefix(Area::Failed, workspace))
                .await?
                .into_iter()
                .filter(|o| is_failed_object(&o.key)),
        );
        objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        let mut events = 0;
        for (i, object) in objects.iter().enumerate() {
            let Some(packed) = self.lake.get(&object.key).await? else {
                continue;
            };
            match gunzip(&packed, MAX_OBJECT_BYTES) {
                Ok(content) if is_failed_object(&object.key) => {
                    store.apply_failures(&content).await?;
                }
                Ok(content) => {
                    let applied = store
                        .apply_lines(Some(&object.key), &content, &self.settings)
                        .await?;
                    events += applied.events;
                    if !applied.quarantined.is_empty() {
                        // By the rule of the live path, which recorded them in the dead-letter
                        // area when it applied the object.
                        tracing::warn!(
                            key = object.key,
                            lines = applied.quarantined.len(),
                            "rebuild: lines that are not events were kept out"
                        );
                    }
                }
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
            fingerprint: self.fingerprint_of(workspace),
        };
        self.write_current(workspace, &current).await?;
        if let Some(old) = previous {
            self.remove_objects(&format!("{}/", store_path(workspace, old)))
                .await?;
        }
        let opened = Opened {
            generation,
            rebuilt: Some(events),
        };
        Ok((opened, store))
    }

    async fn remove_objects(&self, prefix: &str) -> Result<(), ProfileError> {
        for object in self.lake.list(prefix).await? {
            self.lake.delete(&object.key).await?;
        }
        Ok(())
    }

    /// A workspace's profiles, opened when they are not.
    async fn workspace(&self, workspace: &str) -> Result<Arc<Workspace<H::Kv>>, ProfileError> {
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
    ) -> Result<Option<Arc<Workspace<H::Kv>>>, ProfileError> {
        if let Some(store) = self.workspaces.lock().await.get(workspace) {
            return Ok(Some(Arc::clone(store)));
        }
        if self.current(workspace).await?.is_none() {
            return Ok(None);
        }
        self.workspace(workspace).await.map(Some)
    }

    /// Applies NDJSON lake lines to a workspace's profiles, giving how many events were applied
    /// to a profile (not yet durable: see [`Unify::commit`]) and the lines that are not events.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn apply_lines(
        &self,
        workspace: &str,
        content: &[u8],
    ) -> Result<LinesApplied, ProfileError> {
        self.apply_object(workspace, None, content).await
    }

    /// [`ProfileUnify::apply_lines`] for the lake object `key` (when known: copies of events
    /// applied from other lines are then named in [`LinesApplied::duplicates`]).
    async fn apply_object(
        &self,
        workspace: &str,
        key: Option<&str>,
        content: &[u8],
    ) -> Result<LinesApplied, ProfileError> {
        let store = self.workspace(workspace).await?;
        let applied = store.apply_lines(key, content, &self.settings).await;
        if let Err(error) = &applied {
            self.forget_if_failed(workspace, error).await;
        }
        applied
    }

    /// A store that failed for good (another writer fenced it, say) is closed, and opened
    /// again at the next use.
    async fn forget_if_failed(&self, workspace: &str, error: &ProfileError) {
        if error.needs_reopen() {
            tracing::warn!(workspace, %error, "The profile store failed: it will be opened again.");
            self.workspaces.lock().await.remove(workspace);
        }
    }
}

impl<S: ObjectStore, H: KvHome> Unify for ProfileUnify<S, H> {
    type Error = ProfileError;

    async fn apply(&self, key: &str, events: &[u8]) -> Result<LinesApplied, ProfileError> {
        match workspace_of(Area::Raw, key) {
            Some(workspace) => self.apply_object(workspace, Some(key), events).await,
            None => Ok(LinesApplied::default()),
        }
    }

    async fn apply_failures(&self, key: &str, records: &[u8]) -> Result<usize, ProfileError> {
        let Some(workspace) = workspace_of(Area::Failed, key) else {
            return Ok(0);
        };
        let store = self.workspace(workspace).await?;
        let counted = store.apply_failures(records).await;
        if let Err(error) = &counted {
            self.forget_if_failed(workspace, error).await;
        }
        counted
    }

    async fn sweep(&self, now: i64) -> Result<usize, ProfileError> {
        ProfileUnify::sweep(self, now).await
    }

    async fn commit(&self) -> Result<(), ProfileError> {
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
