//! The unify step with identity resolution and profiles: a [`Unify`] implementation over the
//! core's [`Unifier`], which `braid serve` runs on its local lake.
//!
//! State is in memory: at start it is rebuilt from the lake (every live object, in the order it
//! was written), then kept up to date object by object. A persistent profile store comes next.

use std::sync::Mutex;

use braid_core::identity::{Identifier, IdentityRules, ProfileConfig, Unifier};
use serde_json::Value;

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
