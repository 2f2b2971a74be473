//! The identity graph: which identifiers belong to one person, decided event by event under
//! the rules, with every decision logged so that "why are these one profile?" has an answer and
//! a rebuild from the lake under new rules gives the new answer.
//!
//! Applying an event:
//! 1. a `messageId` already applied within the dedupe window does nothing;
//! 2. the event's identifiers, strongest first (rule priority), are checked against the profiles
//!    they touch: if linking them all would put two values of a unique type in one profile, or
//!    more values of a type than its limit, the event's weakest identifier is dropped (logged
//!    with the reason) and the check runs again — as Segment's Unify does;
//! 3. no profile touched: a new profile; one: the new identifiers join it; several: they merge
//!    into the oldest (by its first event's time, then id), whose id survives.
//!
//! The graph is deterministic: the same events in the same order give the same profiles and
//! log on every platform, however the stream is split into batches and whatever is redelivered.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::extract::{DropReason, Dropped, Extracted};
use super::id::{IdType, Identifier};
use super::normalize::normalize;
use super::rules::IdentityRules;
use crate::enrich::push_hex;

/// A profile's id: `p_` and 20 hex digits derived from the `messageId` of its first event.
pub type ProfileId = String;

/// A profile, as far as identity goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileIds {
    /// Its id.
    pub id: ProfileId,
    /// The time of its first event (the older profile's id survives a merge).
    pub created_at: OffsetDateTime,
    /// Its identifiers, with when each was first seen.
    pub identifiers: BTreeMap<Identifier, OffsetDateTime>,
}

/// One decision of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new profile.
    Created {
        /// Its id.
        profile: ProfileId,
        /// Its first identifiers.
        identifiers: Vec<Identifier>,
    },
    /// Identifiers joined a profile.
    Linked {
        /// The profile.
        profile: ProfileId,
        /// The identifiers.
        identifiers: Vec<Identifier>,
    },
    /// A profile was merged into another, because an event carried identifiers of both.
    Merged {
        /// The survivor.
        into: ProfileId,
        /// The profile that no longer exists.
        from: ProfileId,
        /// The event's identifiers that linked them.
        via: Vec<Identifier>,
    },
    /// An identifier of the event was not used.
    Dropped(Dropped),
}

/// A logged decision with the event that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The event's `messageId`.
    pub message_id: String,
    /// The event's time.
    pub at: OffsetDateTime,
    /// What was decided.
    pub change: Change,
}

/// What applying an event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Its `messageId` was applied before: nothing.
    Duplicate,
    /// It carried no usable identifier.
    NoIdentity,
    /// It belongs to this profile.
    Profile(ProfileId),
}

/// The identity graph of one workspace.
#[derive(Clone, Debug)]
pub struct IdentityGraph {
    rules: IdentityRules,
    profiles: HashMap<ProfileId, ProfileIds>,
    index: HashMap<Identifier, ProfileId>,
    seen: HashMap<String, OffsetDateTime>,
    latest: Option<OffsetDateTime>,
    log: Vec<LogEntry>,
}

impl IdentityGraph {
    /// An empty graph under `rules`.
    pub fn new(rules: IdentityRules) -> IdentityGraph {
        IdentityGraph {
            rules,
            profiles: HashMap::default(),
            index: HashMap::default(),
            seen: HashMap::default(),
            latest: None,
            log: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// Applies one event: its `messageId`, time, and what [`super::extract`] found in it.
    pub fn apply(&mut self, message_id: &str, at: OffsetDateTime, extracted: Extracted) -> Applied {
        if self.seen.contains_key(message_id) {
            return Applied::Duplicate;
        }
        self.remember(message_id, at);
        let Extracted {
            mut ids,
            previous_id,
            dropped,
        } = extracted;
        for dropped in dropped {
            self.record(message_id, at, Change::Dropped(dropped));
        }
        let mut previous = None;
        if let Some(value) = previous_id {
            // A known user id, else (analytics.js's alias from the anonymous id) an anonymous id.
            let as_user = Identifier::new(IdType::UserId, value.clone());
            let id = if self.index.contains_key(&as_user) {
                as_user
            } else {
                Identifier::new(IdType::AnonymousId, value)
            };
            if !ids.contains(&id) {
                ids.push(id.clone());
                previous = Some(id);
            }
        }
        // Strongest first; among equals, an alias's previousId is weaker than the event's own
        // ids (the event belongs to its userId).
        let rules = &self.rules;
        ids.sort_by(|a, b| {
            let key = |id: &Identifier| (rules.priority(&id.kind), previous.as_ref() == Some(id));
            (key(a), a).cmp(&(key(b), b))
        });
        if let Some(profile) = self.already_linked(&ids) {
            return Applied::Profile(profile);
        }
        let touched = loop {
            if ids.is_empty() {
                return Applied::NoIdentity;
            }
            let touched: BTreeSet<ProfileId> = ids
                .iter()
                .filter_map(|id| self.index.get(id).cloned())
                .collect();
            match self.violation(&ids, &touched, at) {
                None => break touched,
                Some(reason) => {
                    if let Some(weakest) = ids.pop() {
                        let dropped = Dropped {
                            kind: weakest.kind,
                            value: weakest.value,
                            reason,
                        };
                        self.record(message_id, at, Change::Dropped(dropped));
                    }
                }
            }
        };
        let profile = if touched.is_empty() {
            self.create(message_id, at, &ids)
        } else {
            self.join(message_id, at, &ids, &touched)
        };
        Applied::Profile(profile)
    }

    /// The common case, answered without building anything: every identifier of the event is
    /// already in one and the same profile, so the event links nothing new and can break no
    /// rule (none of its types counts within a time window, where an old identifier may no
    /// longer count and the full check is needed).
    fn already_linked(&self, ids: &[Identifier]) -> Option<ProfileId> {
        let (first, rest) = ids.split_first()?;
        let profile = self.index.get(first)?;
        let same = rest.iter().all(|id| self.index.get(id) == Some(profile));
        let windowed = ids
            .iter()
            .any(|id| self.rules.rule(&id.kind).limit_window_days.is_some());
        (same && !windowed).then(|| profile.clone())
    }

    fn remember(&mut self, message_id: &str, at: OffsetDateTime) {
        self.seen.insert(message_id.to_owned(), at);
        let latest = self.latest.map_or(at, |l| l.max(at));
        self.latest = Some(latest);
        // Forget ids older than the window, in bulk, now and then.
        if self.seen.len().is_multiple_of(65_536) {
            let horizon = latest - Duration::days(self.rules.dedupe_window_days);
            self.seen.retain(|_, when| *when >= horizon);
        }
    }

    fn record(&mut self, message_id: &str, at: OffsetDateTime, change: Change) {
        self.log.push(LogEntry {
            message_id: message_id.to_owned(),
            at,
            change,
        });
    }

    /// The rule that linking `ids` with the profiles `touched` would break, if any. A link
    /// breaks a rule only when it makes things worse than they are in each profile (a rule
    /// tightened since is enforced by rebuilding, not by refusing every event).
    fn violation(
        &self,
        ids: &[Identifier],
        touched: &BTreeSet<ProfileId>,
        at: OffsetDateTime,
    ) -> Option<DropReason> {
        let mut union: BTreeMap<&IdType, BTreeSet<&str>> = BTreeMap::new();
        let mut largest: BTreeMap<&IdType, usize> = BTreeMap::new();
        for profile in touched.iter().filter_map(|p| self.profiles.get(p)) {
            let mut own: BTreeMap<&IdType, usize> = BTreeMap::new();
            for (id, first_seen) in &profile.identifiers {
                if self.counts(id, *first_seen, at) {
                    union.entry(&id.kind).or_default().insert(&id.value);
                    *own.entry(&id.kind).or_default() += 1;
                }
            }
            for (kind, count) in own {
                let entry = largest.entry(kind).or_default();
                *entry = (*entry).max(count);
            }
        }
        for id in ids {
            union.entry(&id.kind).or_default().insert(&id.value);
        }
        for (kind, values) in union {
            let rule = self.rules.rule(kind);
            let before = largest.get(kind).copied().unwrap_or(0);
            if values.len() <= before {
                continue;
            }
            if rule.unique && values.len() > 1 {
                return Some(DropReason::Unique);
            }
            if values.len() > rule.limit {
                return Some(DropReason::Limit(rule.limit));
            }
        }
        None
    }

    /// Whether an identifier first seen at `first_seen` counts toward its type's limit at `at`.
    fn counts(&self, id: &Identifier, first_seen: OffsetDateTime, at: OffsetDateTime) -> bool {
        match self.rules.rule(&id.kind).limit_window_days {
            Some(days) => first_seen >= at - Duration::days(days),
            None => true,
        }
    }

    fn create(&mut self, message_id: &str, at: OffsetDateTime, ids: &[Identifier]) -> ProfileId {
        let id = profile_id(message_id);
        let identifiers = ids.iter().map(|i| (i.clone(), at)).collect();
        for identifier in ids {
            self.index.insert(identifier.clone(), id.clone());
        }
        self.profiles.insert(
            id.clone(),
            ProfileIds {
                id: id.clone(),
                created_at: at,
                identifiers,
            },
        );
        self.record(
            message_id,
            at,
            Change::Created {
                profile: id.clone(),
                identifiers: ids.to_vec(),
            },
        );
        id
    }

    fn join(
        &mut self,
        message_id: &str,
        at: OffsetDateTime,
        ids: &[Identifier],
        touched: &BTreeSet<ProfileId>,
    ) -> ProfileId {
        let survivor = touched
            .iter()
            .filter_map(|p| self.profiles.get(p))
            .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
            .map(|p| p.id.clone())
            .unwrap_or_default();
        for other in touched.iter().filter(|p| **p != survivor) {
            let Some(absorbed) = self.profiles.remove(other) else {
                continue;
            };
            // The evidence: the event's identifiers already in one of the two profiles.
            let via: Vec<Identifier> = ids
                .iter()
                .filter(|id| {
                    absorbed.identifiers.contains_key(*id)
                        || self.index.get(*id).is_some_and(|p| *p == survivor)
                })
                .cloned()
                .collect();
            for (identifier, first_seen) in absorbed.identifiers {
                self.index.insert(identifier.clone(), survivor.clone());
                if let Some(profile) = self.profiles.get_mut(&survivor) {
                    let entry = profile.identifiers.entry(identifier).or_insert(first_seen);
                    *entry = (*entry).min(first_seen);
                    profile.created_at = profile.created_at.min(absorbed.created_at);
                }
            }
            self.record(
                message_id,
                at,
                Change::Merged {
                    into: survivor.clone(),
                    from: other.clone(),
                    via,
                },
            );
        }
        let new: Vec<Identifier> = ids
            .iter()
            .filter(|id| !self.index.contains_key(*id))
            .cloned()
            .collect();
        if !new.is_empty() {
            for identifier in &new {
                self.index.insert(identifier.clone(), survivor.clone());
                if let Some(profile) = self.profiles.get_mut(&survivor) {
                    profile.identifiers.insert(identifier.clone(), at);
                }
            }
            self.record(
                message_id,
                at,
                Change::Linked {
                    profile: survivor.clone(),
                    identifiers: new,
                },
            );
        }
        survivor
    }

    /// The profile an identifier belongs to; the value is normalised for its type as events'
    /// are (`email:Jane@X.example` finds `email:jane@x.example`).
    pub fn profile_of(&self, id: &Identifier) -> Option<&ProfileIds> {
        let profile = if let Some(profile) = self.index.get(id) {
            profile
        } else {
            let value = normalize(&id.kind, &id.value, self.rules.default_country.as_deref())?;
            self.index.get(&Identifier::new(id.kind.clone(), value))?
        };
        self.profiles.get(profile)
    }

    /// Every profile, by id.
    pub fn profiles(&self) -> impl Iterator<Item = &ProfileIds> {
        self.profiles.values()
    }

    /// How many profiles there are.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Every decision, in order.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// The decisions that made a profile what it is: its creation and that of every profile
    /// merged into it, the identifiers that joined them, the merges, in order.
    pub fn history(&self, profile: &str) -> Vec<&LogEntry> {
        let mut lineage: BTreeSet<&str> = BTreeSet::from([profile]);
        // Merges point from the absorbed to the survivor: walk them backwards.
        for entry in self.log.iter().rev() {
            if let Change::Merged { into, from, .. } = &entry.change
                && lineage.contains(into.as_str())
            {
                lineage.insert(from);
            }
        }
        self.log
            .iter()
            .filter(|entry| match &entry.change {
                Change::Created { profile, .. } | Change::Linked { profile, .. } => {
                    lineage.contains(profile.as_str())
                }
                Change::Merged { into, .. } => lineage.contains(into.as_str()),
                Change::Dropped(_) => false,
            })
            .collect()
    }
}

/// `p_` and 20 hex digits of SHA-256 over the first event's `messageId`.
fn profile_id(message_id: &str) -> ProfileId {
    let digest = Sha256::digest(message_id.as_bytes());
    let mut id = String::with_capacity(22);
    id.push_str("p_");
    for byte in digest.iter().take(10) {
        push_hex(&mut id, *byte);
    }
    id
}
