//! Reading the profile store: a profile, its events, every profile, and the edge's
//! personalization entries.

use braid_core::segment::Condition;
use braid_core::unify::{Identifier, lineage, profile_view};
use serde_json::Value;

use std::sync::Arc;

use super::ProfileUnify;
use super::error::{ProfileError, corrupt};
use super::keys::{CHANGE_PREFIX, change_key, event_key};
use super::kv::{Kv as _, KvHome, prefix_end};
use super::preview::{Ask, Found};
use super::workspace::Workspace;
use crate::lake::store::ObjectStore;

impl<S: ObjectStore, H: KvHome> ProfileUnify<S, H> {
    /// The profile of an identifier, as the profile API shows it.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn profile(
        &self,
        workspace: &str,
        id: &Identifier,
    ) -> Result<Option<Value>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        Ok(store
            .record_of(id)
            .await?
            .map(|(ids, profile)| profile_view(&ids, &profile)))
    }

    /// The data map of a workspace (`braid_core::catalogue::map`), as its profile store holds
    /// it; `None` for a workspace without a store.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn data_map(
        &self,
        workspace: &str,
    ) -> Result<Option<braid_core::catalogue::map::DataMap>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        store.map().map(Some)
    }

    /// The edge's personalization value for `id` (`braid_core::activate::personalize::edge_value`),
    /// when its profile answers it (`answers`).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn edge_value(
        &self,
        workspace: &str,
        id: &Identifier,
        visible: &[String],
    ) -> Result<Option<String>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        Ok(store.record_of(id).await?.and_then(|(ids, profile)| {
            braid_core::activate::personalize::answers(&ids, id)
                .then(|| braid_core::activate::personalize::edge_value(&profile, visible))
        }))
    }

    /// Every entry of the edge's personalization store
    /// (`braid_core::activate::personalize::profile_edge_entries`), sorted by key.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn edge_entries(
        &self,
        workspace: &str,
        secret: &[u8],
        visible: &[String],
    ) -> Result<Vec<(String, String)>, ProfileError> {
        let mut entries = Vec::new();
        if let Some(store) = self.existing(workspace).await? {
            store
                .for_each_record(|ids, profile| {
                    entries.extend(braid_core::activate::personalize::profile_edge_entries(
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
    pub async fn snapshot(&self, workspace: &str) -> Result<Vec<Value>, ProfileError> {
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
    /// `[unify.store] event_retention_days`.
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
    ) -> Result<Option<(Vec<Value>, Option<u64>)>, ProfileError> {
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

    /// Why the profile of `id` is in or out of the audience `key` at `now` (ms)
    /// (`braid_core::segment::Segments::explain`): `None` when no profile has `id`, or there is
    /// no such audience.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn explain(
        &self,
        workspace: &str,
        id: &Identifier,
        key: &str,
        now: i64,
    ) -> Result<Option<Value>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        let Some((ids, profile)) = store.record_of(id).await? else {
            return Ok(None);
        };
        Ok(self
            .segmentation
            .segments
            .explain(&ids, &profile, &self.config, key, now))
    }

    /// Who meets `condition` at `now` (ms) among the current profiles: how many of how many,
    /// the first `sample` (by profile id, with their identifiers), and — for an edit of the
    /// saved audience `compare` — how many would enter and leave it.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn preview(
        &self,
        workspace: &str,
        condition: &Condition,
        compare: Option<&str>,
        now: i64,
        sample: usize,
    ) -> Result<Value, ProfileError> {
        let found = match self.existing(workspace).await? {
            Some(store) => {
                let rows = store.preview_rows().await?;
                let segments = Arc::clone(&self.segmentation.segments);
                let config = self.config.clone();
                let condition = condition.clone();
                let compare = compare.map(str::to_owned);
                // Decoding every profile is the work of a second or more: off the runtime's
                // threads, on every core.
                tokio::task::spawn_blocking(move || {
                    let reads = segments.row_reads(&condition, &config, compare.as_deref());
                    let ask = Ask {
                        segments: &segments,
                        config: &config,
                        condition: &condition,
                        reads: &reads,
                        compare: compare.as_deref(),
                        now,
                        sample,
                    };
                    let threads = std::thread::available_parallelism().map_or(1, usize::from);
                    rows.preview(&ask, threads)
                })
                .await
                .map_err(|e| corrupt(format!("a preview failed: {e}")))?
            }
            None => Found::default(),
        };
        let brief = |list: Vec<(String, Vec<String>)>| -> Vec<Value> {
            list.into_iter()
                .map(|(id, identifiers)| serde_json::json!({"id": id, "identifiers": identifiers}))
                .collect()
        };
        let at = braid_core::timestamp::from_unix_millis(now).map(braid_core::timestamp::format);
        let mut out = serde_json::json!({
            "at": at, "profiles": found.total, "size": found.size,
            "sample": brief(found.members),
        });
        if let (Some(key), Value::Object(fields)) = (compare, &mut out) {
            fields.insert(
                "compared".to_owned(),
                serde_json::json!({"audience": key, "entering": found.entering,
                                   "leaving": found.leaving,
                                   "enteringSample": brief(found.enter),
                                   "leavingSample": brief(found.leave)}),
            );
        }
        Ok(out)
    }

    /// A page of a workspace's change log (audience entries and exits, computed traits'
    /// values, `braid_core::segment::Logged::to_json`): up to `limit` entries after the one
    /// numbered `after`, in order.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn changes(
        &self,
        workspace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Value>, ProfileError> {
        match self.existing(workspace).await? {
            Some(store) => changes_of(&store, after, limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Where a workspace's change log is: its store's generation and the number of the last
    /// entry that is durable; `None` for a workspace without a store.
    ///
    /// # Errors
    ///
    /// When a store fails to open.
    pub async fn log_position(&self, workspace: &str) -> Result<Option<(u64, u64)>, ProfileError> {
        Ok(self
            .existing(workspace)
            .await?
            .map(|store| (store.generation, store.logged_durable())))
    }

    /// What a destination delivers next: the store's generation, the number of the last
    /// change log entry that is durable, and up to `limit` entries after the one numbered
    /// `after`, no further than that (an entry a crash could take back is not delivered).
    /// `None` for a workspace without a store.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn durable_changes(
        &self,
        workspace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Option<(u64, u64, Vec<Value>)>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(None);
        };
        let durable = store.logged_durable();
        if durable <= after {
            return Ok(Some((store.generation, durable, Vec::new())));
        }
        let mut entries = changes_of(&store, after, limit).await?;
        entries.retain(|entry| {
            entry
                .get("number")
                .and_then(Value::as_u64)
                .is_some_and(|n| n <= durable)
        });
        Ok(Some((store.generation, durable, entries)))
    }

    /// The profiles `ids` as a destination's messages carry them (identifiers, `traits`,
    /// consent, and with `whole` the profile as the profile API shows it), as they are now;
    /// `None` for one that is gone (merged into another).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn delivery_views(
        &self,
        workspace: &str,
        ids: &[&str],
        traits: &[String],
        whole: bool,
    ) -> Result<Vec<Option<braid_core::activate::destination::ProfileView>>, ProfileError> {
        let Some(store) = self.existing(workspace).await? else {
            return Ok(vec![None; ids.len()]);
        };
        store.views(ids, traits, whole).await
    }

    /// A page of a workspace's profile ids, in order: up to `limit` after `after` (from the
    /// first when empty).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn profile_ids(
        &self,
        workspace: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, ProfileError> {
        match self.existing(workspace).await? {
            Some(store) => store.profile_ids(after, limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Makes everything durable and closes every store.
    ///
    /// # Errors
    ///
    /// When a store fails to flush.
    pub async fn close(&self) -> Result<(), ProfileError> {
        let mut open = self.workspaces.lock().await;
        for (_, store) in std::mem::take(&mut *open) {
            store.flush().await?;
            store.kv.close().await?;
        }
        Ok(())
    }
}

/// A page of a store's change log ([`ProfileUnify::changes`]).
async fn changes_of<K: super::kv::Kv>(
    store: &Workspace<K>,
    after: u64,
    limit: usize,
) -> Result<Vec<Value>, ProfileError> {
    // Groups are keyed by their last number: the first at or after `after + 1` holds
    // it; each holds one change or more, so `limit` groups hold enough.
    let page = store
        .kv
        .scan(
            &change_key(after.saturating_add(1)),
            &prefix_end(CHANGE_PREFIX),
            limit,
        )
        .await?;
    let mut out = Vec::with_capacity(limit);
    for (_, value) in page {
        let entries = braid_core::segment::log::read_group(&value, after)
            .map_err(|e| corrupt(e.to_string()))?;
        out.extend(entries.into_iter().take(limit - out.len()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
