//! The unify step with identity resolution and profiles: a [`Unify`] implementation over the
//! core's [`Unifier`], which `braid serve` runs on its local lake.
//!
//! State is in memory: at start it is rebuilt from the lake (every live object, in the order it
//! was written), then kept up to date object by object. A persistent profile store comes next.

use std::sync::Mutex;

use braid_core::identity::{Identifier, IdentityRules, ProfileConfig, Unifier, extract};
use serde_json::Value;
#[cfg(test)]
use time::OffsetDateTime;

use crate::compact::live_objects;
use crate::object::{gunzip, lines};
use crate::store::ObjectStore;
use crate::unify::{HandlerError, Unify};

/// The most a lake object may decompress to when it is replayed.
const MAX_OBJECT_BYTES: usize = 1 << 30;

/// Identity resolution and profiles behind a lock.
#[derive(Debug)]
pub struct ProfileUnify {
    unifier: Mutex<Unifier>,
}

impl ProfileUnify {
    /// An empty state.
    pub fn new(rules: IdentityRules, config: ProfileConfig) -> ProfileUnify {
        ProfileUnify {
            unifier: Mutex::new(Unifier::new(rules, config)),
        }
    }

    /// Applies NDJSON lake lines, giving how many were events with an identity.
    pub fn apply_lines(&self, content: &[u8]) -> usize {
        let Ok(mut unifier) = self.unifier.lock() else {
            return 0;
        };
        let mut applied = 0;
        for line in lines(content) {
            if let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) {
                let outcome = unifier.apply(&event);
                applied +=
                    usize::from(matches!(outcome, braid_core::identity::Applied::Profile(_)));
            }
        }
        applied
    }

    /// Rebuilds the state from every live object under `raw/`, in the order they were written
    /// (then by key): the order the live path unified them in, so that the rebuilt profiles
    /// are the same, ids included.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn replay<S: ObjectStore>(&self, store: &S) -> Result<usize, HandlerError> {
        let mut events = 0;
        let mut objects = live_objects(store, "raw/").await?;
        objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        for object in objects {
            let Some(packed) = store.get(&object.key).await? else {
                continue;
            };
            match gunzip(&packed, MAX_OBJECT_BYTES) {
                Ok(content) => events += self.apply_lines(&content),
                Err(error) => tracing::warn!(key = object.key, %error, "replay: unreadable object"),
            }
        }
        Ok(events)
    }

    /// The profile of an identifier, as the profile API shows it.
    pub fn profile(&self, id: &Identifier) -> Option<Value> {
        self.unifier.lock().ok()?.profile_json(id)
    }

    /// The edge's personalization value for `id` (`braid_core::personalize::edge_value`).
    pub fn edge_value(&self, id: &Identifier, visible: &[String]) -> Option<String> {
        let unifier = self.unifier.lock().ok()?;
        braid_core::personalize::edge_value(&unifier, id, visible)
    }

    /// Every entry of the edge's personalization store (`braid_core::personalize::edge_entries`).
    pub fn edge_entries(&self, secret: &[u8], visible: &[String]) -> Vec<(String, String)> {
        self.unifier.lock().map_or_else(
            |_| Vec::new(),
            |unifier| braid_core::personalize::edge_entries(&unifier, secret, visible),
        )
    }

    /// A page of the events of the profile that `id` belongs to, in the order they were
    /// unified: the `offset`-th matching event and up to `limit` after it, and the offset of
    /// the next page when there is one. `None` when no profile has `id`.
    ///
    /// It reads the lake (every live object, in write order) on each call: fine for the
    /// embedded default; the persistent profile store will index events by profile.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn events<S: ObjectStore>(
        &self,
        store: &S,
        id: &Identifier,
        offset: usize,
        limit: usize,
    ) -> Result<Option<(Vec<Value>, Option<usize>)>, HandlerError> {
        let Some(profile) = self.profile_id(id) else {
            return Ok(None);
        };
        let mut objects = live_objects(store, "raw/").await?;
        objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
        let mut matched = 0;
        let mut page = Vec::new();
        for object in objects {
            let Some(packed) = store.get(&object.key).await? else {
                continue;
            };
            let Ok(content) = gunzip(&packed, MAX_OBJECT_BYTES) else {
                continue;
            };
            for line in lines(&content) {
                let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) else {
                    continue;
                };
                if !self.belongs_to(&event, &profile) {
                    continue;
                }
                if matched >= offset {
                    if page.len() == limit {
                        return Ok(Some((page, Some(matched))));
                    }
                    page.push(Value::Object(event));
                }
                matched += 1;
            }
        }
        Ok(Some((page, None)))
    }

    fn profile_id(&self, id: &Identifier) -> Option<String> {
        let unifier = self.unifier.lock().ok()?;
        unifier.graph().profile_of(id).map(|p| p.id.clone())
    }

    /// Whether an event's identifiers lead to `profile` now.
    fn belongs_to(&self, event: &serde_json::Map<String, Value>, profile: &str) -> bool {
        let Ok(unifier) = self.unifier.lock() else {
            return false;
        };
        let extracted = extract(event, unifier.graph().rules());
        extracted.ids.iter().any(|id| {
            unifier
                .graph()
                .profile_of(id)
                .is_some_and(|p| p.id == profile)
        })
    }

    /// Every profile, sorted by id.
    pub fn snapshot(&self) -> Vec<Value> {
        self.unifier
            .lock()
            .map(|u| u.snapshot())
            .unwrap_or_default()
    }

    /// How many profiles there are.
    pub fn len(&self) -> usize {
        self.unifier.lock().map_or(0, |u| u.graph().len())
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Unify for ProfileUnify {
    async fn apply(&self, _key: &str, events: &[u8]) -> Result<usize, HandlerError> {
        Ok(self.apply_lines(events))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::compact::{CompactSettings, compact_partition};
    use crate::object::gzip;
    use crate::store::LocalStore;
    use crate::unify::unify_objects;

    /// Rebuilding from the lake gives the profiles the live path built — object by object as
    /// they were committed — ids included, before and after compaction.
    #[tokio::test]
    async fn a_rebuild_equals_the_incremental_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let config: ProfileConfig = serde_json::from_value(json!({"aggregates": [
            {"name": "revenue", "event": "Buy", "property": "amount", "op": "sum"}]}))
        .unwrap();
        let live = ProfileUnify::new(IdentityRules::default(), config.clone());
        let mut state: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut sequence = 0;
        for hour in 10..13 {
            let partition = format!("raw/workspace=w/date=2024-05-01/hour={hour}");
            for _ in 0..30 {
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
                    "{partition}/{}.ndjson.gz",
                    braid_core::lake::batch_id(content.as_bytes())
                );
                store.put(&key, gzip(content.as_bytes())).await.unwrap();
                unify_objects(&store, &live, &[key], OffsetDateTime::UNIX_EPOCH)
                    .await
                    .unwrap();
            }
        }
        let reference = live.snapshot();
        assert!(reference.len() > 50);
        let rebuilt = ProfileUnify::new(IdentityRules::default(), config.clone());
        rebuilt.replay(&store).await.unwrap();
        assert!(
            rebuilt.snapshot() == reference,
            "a rebuild differs from the live profiles"
        );
        compact_partition(
            &store,
            &CompactSettings::default(),
            "raw/workspace=w/date=2024-05-01/hour=11",
        )
        .await
        .unwrap();
        let after_compaction = ProfileUnify::new(IdentityRules::default(), config);
        after_compaction.replay(&store).await.unwrap();
        assert!(
            after_compaction.snapshot() == reference,
            "compaction changed the rebuild"
        );
    }
}
