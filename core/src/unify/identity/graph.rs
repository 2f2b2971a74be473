//! The identity graph: which identifiers belong to one person, decided event by event under
//! the rules, with every decision logged so that "why are these one profile?" has an answer and
//! a rebuild from the lake under new rules gives the new answer.
//!
//! Applying an event:
//! 1. a `messageId` already applied by an event received within the dedupe window of this one
//!    does nothing;
//! 2. the event's identifiers, strongest first (rule priority), are checked against the profiles
//!    they touch: if linking them all would put two values of a unique type in one profile, or
//!    more values of a type than its limit, the event's weakest identifier is dropped (logged
//!    with the reason) and the check runs again — as Segment's Unify does;
//! 3. no profile touched: a new profile; one: the new identifiers join it; several: they merge
//!    into the oldest (by its first event's time, then id), whose id survives.
//!
//! The graph is deterministic: the same events in the same order give the same profiles and
//! log on every platform, however the stream is split into batches and whatever is redelivered.
//!
//! Each profile carries its own history (its decisions and those of the profiles merged into
//! it, numbered in the order they were made), so that a profile read back from a store explains
//! itself without the rest of the graph.
//!
//! The graph is also a working set over a persistent store: what a platform loads into it
//! ([`IdentityGraph::load`], [`IdentityGraph::load_seen`]) is taken as the whole truth about
//! those keys, what is absent as absent, and [`IdentityGraph::take_changes`] gives what changed
//! since the last call, to be written back. The platform loads, before a batch, every key the
//! batch reads ([`crate::unify::Unifier::lookups`]); kept in memory with nothing evicted, the graph is
//! simply the whole state.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashSet};

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::extract::{DropReason, Dropped, Extracted};
use super::id::{IdType, Identifier};
use super::rules::IdentityRules;
use crate::hex;

/// A profile's id: `p_` and 20 hex digits derived from the `messageId` and sender of its first
/// event.
pub type ProfileId = String;

/// A profile, as far as identity goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileIds {
    /// Its id.
    pub id: ProfileId,
    /// The time of its first event (the older profile's id survives a merge).
    pub created_at: OffsetDateTime,
    /// Its identifiers, with when each was first seen.
    pub identifiers: litemap::LiteMap<Identifier, OffsetDateTime>,
    /// The decisions that made it what it is, in the order they were made: its creation and
    /// that of every profile merged into it, the identifiers that joined them, the merges, and
    /// identifiers of its events that were left out (each value and reason once, the first
    /// [`MAX_LISTED_DROPS`] of them).
    pub history: Vec<LogEntry>,
    /// How many merges made it: each profile merged into it, and theirs.
    pub merges: usize,
    /// Decisions to leave an identifier out that the history does not list, because it
    /// lists [`MAX_LISTED_DROPS`] already: counted, so that a stream of new values past a
    /// limit (a new anonymous id on every event) does not grow the profile.
    pub unlisted_drops: u64,
    /// The identifiers whose link was proven (`docs/trust.md`), each with its group: the
    /// smallest identifier of the proven events that joined it. Identifiers of one event that
    /// proves one of them (a verified user id, a server's event) are one group, and groups that
    /// share an identifier are one. A merge by an unproven claim leaves two groups.
    pub verified: BTreeMap<Identifier, Identifier>,
}

impl ProfileIds {
    /// Whether it holds an identifier that names a known person ([`IdType::is_identified`]).
    pub fn is_identified(&self) -> bool {
        self.identifiers.keys().any(|i| i.kind.is_identified())
    }

    /// Whether a caller who proves `id` (a browser's credential cookie) may read the profile:
    /// when it names nobody ([`ProfileIds::is_identified`]), or when every identified
    /// identifier is in `id`'s group, linked to it by proven events only.
    pub fn readable_by(&self, id: &Identifier) -> bool {
        if !self.is_identified() {
            return true;
        }
        let Some(group) = self.verified.get(id) else {
            return false;
        };
        self.identifiers
            .keys()
            .filter(|i| i.kind.is_identified())
            .all(|i| self.verified.get(i) == Some(group))
    }
}

/// How many decisions to leave an identifier out a profile's history lists; later ones are
/// counted ([`ProfileIds::unlisted_drops`]). With the limits on identifiers and merges, this
/// bounds a history: at most one `created` per merge, one `linked` per identifier.
pub const MAX_LISTED_DROPS: usize = 100;

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
    /// Its number: decisions are numbered from 1 in the order they are made.
    pub number: u64,
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
    /// Its `messageId` was applied before, from this very line (an object applied again) or
    /// from a line unknown: nothing.
    Duplicate,
    /// A copy of an event applied before from another line of the lake (a client's retry):
    /// nothing, and compaction may leave the line out.
    Copy,
    /// It carried no usable identifier.
    NoIdentity,
    /// It belongs to this profile.
    Profile(ProfileId),
}

/// What changed in the graph since the last [`IdentityGraph::take_changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphChanges {
    /// Profiles created or changed (their identifiers or history), sorted.
    pub profiles: Vec<ProfileId>,
    /// Profiles merged into another: they no longer exist. Sorted.
    pub removed: Vec<ProfileId>,
    /// Identifiers that now point to another profile (or to a profile for the first time),
    /// with it, sorted.
    pub identifiers: Vec<(Identifier, ProfileId)>,
    /// `messageId`s applied, each with its senders (see [`Extracted::sender`]), when each
    /// one's event was received and the line it came from (0: unknown), sorted.
    pub seen: Vec<(String, Vec<Seen>)>,
}

/// One sender's use of a `messageId`: who ([`Extracted::sender`]), when its event was received,
/// and the lake line it was first applied from (0: unknown; see [`IdentityGraph::apply_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// The sender.
    pub sender: u64,
    /// When its event was received.
    pub received: OffsetDateTime,
    /// The line it was first applied from.
    pub origin: u64,
}

/// How many senders (identities) one `messageId` is remembered for: a `messageId` reused by
/// more is applied each time, and counted as a collision.
pub const MAX_SENDERS_PER_MESSAGE_ID: usize = 8;

/// The identity graph of one workspace.
#[derive(Clone, Debug)]
pub struct IdentityGraph {
    rules: IdentityRules,
    /// Boxed, as the unifier's profiles: a map holds room for more entries than it has.
    profiles: HashMap<ProfileId, Box<ProfileIds>>,
    index: HashMap<Identifier, ProfileId>,
    /// `messageId` → its senders and when each one's event was received, and whether that
    /// is new since the last [`IdentityGraph::take_changes`] (not loaded from a store).
    seen: HashMap<String, (Vec<Seen>, bool)>,
    /// Events whose `messageId` another sender used within the dedupe window, ever.
    collisions: u64,
    latest_received: Option<OffsetDateTime>,
    /// How many decisions were made, ever (the number of the last).
    decisions: u64,
    log: Vec<LogEntry>,
    changed: HashSet<ProfileId>,
    removed: HashSet<ProfileId>,
    relinked: HashSet<Identifier>,
}

impl IdentityGraph {
    /// An empty graph under `rules`.
    pub fn new(rules: IdentityRules) -> IdentityGraph {
        IdentityGraph {
            rules,
            profiles: HashMap::default(),
            index: HashMap::default(),
            seen: HashMap::default(),
            collisions: 0,
            latest_received: None,
            decisions: 0,
            log: Vec::new(),
            changed: HashSet::default(),
            removed: HashSet::default(),
            relinked: HashSet::default(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// Applies one event: its `messageId`, time, the time it was received (for the dedupe
    /// window), and what [`super::extract`] found in it.
    pub fn apply(
        &mut self,
        message_id: &str,
        at: OffsetDateTime,
        received: OffsetDateTime,
        extracted: Extracted,
    ) -> Applied {
        self.apply_from(message_id, at, received, extracted, 0)
    }

    /// [`IdentityGraph::apply`] for the event of a known lake line (`origin`, not 0: a digest
    /// of the object's key and the line's number), so that a copy of it on another line is
    /// told from the same line applied again ([`Applied::Copy`]).
    pub fn apply_from(
        &mut self,
        message_id: &str,
        at: OffsetDateTime,
        received: OffsetDateTime,
        extracted: Extracted,
        origin: u64,
    ) -> Applied {
        if let Some(first) = self.first_copy(message_id, extracted.sender, received) {
            return if origin != 0 && first != 0 && first != origin {
                Applied::Copy
            } else {
                Applied::Duplicate
            };
        }
        self.remember(message_id, extracted.sender, received, origin);
        let Extracted {
            mut ids,
            previous_id,
            dropped,
            proven,
            browser,
            sender,
        } = extracted;
        let mut drops = dropped;
        if self.rules.verify_identity {
            self.drop_unproven(&mut ids, &proven, browser.as_ref(), &mut drops);
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
            self.record_drops(&profile, message_id, at, drops);
            self.prove(&profile, &ids, &proven);
            return Applied::Profile(profile);
        }
        let touched = loop {
            if ids.is_empty() {
                for dropped in drops {
                    self.log_only(message_id, at, Change::Dropped(dropped));
                }
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
                        drops.push(Dropped {
                            kind: weakest.kind,
                            value: weakest.value,
                            reason,
                        });
                    }
                }
            }
        };
        let profile = if touched.is_empty() {
            self.create(message_id, sender, at, &ids)
        } else {
            self.join(message_id, at, &ids, &touched)
        };
        self.record_drops(&profile, message_id, at, drops);
        self.prove(&profile, &ids, &proven);
        Applied::Profile(profile)
    }

    /// Strict identity: leaves out the identified identifiers the event does not prove,
    /// unless its browser is already proven to be linked to them.
    fn drop_unproven(
        &self,
        ids: &mut Vec<Identifier>,
        proven: &[Identifier],
        browser: Option<&Identifier>,
        drops: &mut Vec<Dropped>,
    ) {
        let vouched = |id: &Identifier| {
            let Some(browser) = browser else {
                return false;
            };
            let Some(profile) = self.index.get(id).and_then(|p| self.profiles.get(p)) else {
                return false;
            };
            let group = profile.verified.get(id);
            group.is_some() && profile.verified.get(browser) == group
        };
        ids.retain(|id| {
            let keep = !id.kind.is_identified() || proven.contains(id) || vouched(id);
            if !keep {
                drops.push(Dropped {
                    kind: id.kind.clone(),
                    value: id.value.clone(),
                    reason: DropReason::Unverified,
                });
            }
            keep
        });
    }

    /// After an event that proves one of its identifiers (`proven`) joined `profile`: its
    /// identifiers `ids`, and every group they touch, become one group.
    fn prove(&mut self, profile: &str, ids: &[Identifier], proven: &[Identifier]) {
        if !proven.iter().any(|p| ids.contains(p)) {
            return;
        }
        let Some(ids_of) = self.profiles.get_mut(profile) else {
            return;
        };
        let groups: BTreeSet<&Identifier> = ids
            .iter()
            .filter_map(|id| ids_of.verified.get(id))
            .collect();
        let mut members: BTreeSet<Identifier> = ids_of
            .verified
            .iter()
            .filter(|(_, group)| groups.contains(group))
            .map(|(id, _)| id.clone())
            .collect();
        members.extend(ids.iter().cloned());
        let Some(root) = members.first().cloned() else {
            return;
        };
        let mut changed = false;
        for member in members {
            if ids_of.verified.get(&member) != Some(&root) {
                ids_of.verified.insert(member, root.clone());
                changed = true;
            }
        }
        if changed {
            self.changed.insert(profile.to_owned());
        }
    }

    /// Whether `profile` holds no identified identifier or the event's proofs (`proven`, its
    /// `browser`) reach every one: what strict identity asks of an event that sets traits.
    pub fn proven_for(
        &self,
        profile: &str,
        proven: &[Identifier],
        browser: Option<&Identifier>,
    ) -> bool {
        let Some(ids) = self.profiles.get(profile) else {
            return false;
        };
        !ids.is_identified()
            || proven
                .iter()
                .chain(browser)
                .any(|id| ids.identifiers.contains_key(id) && ids.readable_by(id))
    }

    /// The line (0: unknown) `message_id` was applied from for an event of the same sender
    /// received within the dedupe window of `received` (either side: objects can arrive out of
    /// order), if it was.
    fn first_copy(&self, message_id: &str, sender: u64, received: OffsetDateTime) -> Option<u64> {
        let window = Duration::days(self.rules.dedupe_window_days);
        let (senders, _) = self.seen.get(message_id)?;
        senders
            .iter()
            .find(|s| s.sender == sender && (received - s.received).abs() <= window)
            .map(|s| s.origin)
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

    /// Remembers that `sender` used `message_id` for an event received at `received`; another
    /// sender's use of it within the window is a collision (both events are applied).
    fn remember(&mut self, message_id: &str, sender: u64, received: OffsetDateTime, origin: u64) {
        let window = Duration::days(self.rules.dedupe_window_days);
        let seen = Seen {
            sender,
            received,
            origin,
        };
        match self.seen.get_mut(message_id) {
            Some((senders, fresh)) => {
                if senders
                    .iter()
                    .any(|s| s.sender != sender && (received - s.received).abs() <= window)
                {
                    self.collisions += 1;
                }
                if let Some(entry) = senders.iter_mut().find(|s| s.sender == sender) {
                    *entry = seen;
                } else if senders.len() < MAX_SENDERS_PER_MESSAGE_ID {
                    senders.push(seen);
                }
                *fresh = true;
            }
            None => {
                self.seen.insert(message_id.to_owned(), (vec![seen], true));
            }
        }
        let latest = self.latest_received.map_or(received, |l| l.max(received));
        self.latest_received = Some(latest);
        // Forget, now and then, ids that no event can duplicate any more: received more than
        // the window (and a day's slack for objects unified out of order) before the latest.
        if self.seen.len().is_multiple_of(65_536) {
            let horizon = latest - Duration::days(self.rules.dedupe_window_days + 1);
            self.seen.retain(|_, (senders, _)| {
                senders.retain(|s| s.received >= horizon);
                !senders.is_empty()
            });
        }
    }

    /// Events whose `messageId` another sender had used within the dedupe window, ever (both
    /// were applied).
    pub fn collisions(&self) -> u64 {
        self.collisions
    }

    /// Numbers a decision and adds it to the log.
    fn log_only(&mut self, message_id: &str, at: OffsetDateTime, change: Change) -> LogEntry {
        self.decisions += 1;
        let entry = LogEntry {
            number: self.decisions,
            message_id: message_id.to_owned(),
            at,
            change,
        };
        self.log.push(entry.clone());
        entry
    }

    /// Logs a decision about `profile` and adds it to the profile's history.
    fn record(&mut self, profile: &str, message_id: &str, at: OffsetDateTime, change: Change) {
        let entry = self.log_only(message_id, at, change);
        if let Some(ids) = self.profiles.get_mut(profile) {
            ids.history.push(entry);
            self.changed.insert(profile.to_owned());
        }
    }

    /// Logs the identifiers of an event that belongs to `profile` but were left out; its
    /// history keeps each value and reason once (a blocked value on every event of a profile
    /// would otherwise grow it without end).
    fn record_drops(
        &mut self,
        profile: &str,
        message_id: &str,
        at: OffsetDateTime,
        drops: Vec<Dropped>,
    ) {
        for dropped in drops {
            let (known, listed) = self.profiles.get(profile).map_or((false, 0), |p| {
                let mut listed = 0;
                let known = p.history.iter().any(|e| match &e.change {
                    Change::Dropped(d) => {
                        listed += 1;
                        *d == dropped
                    }
                    _ => false,
                });
                (known, listed)
            });
            if known {
                self.log_only(message_id, at, Change::Dropped(dropped));
            } else if listed >= MAX_LISTED_DROPS {
                self.log_only(message_id, at, Change::Dropped(dropped));
                if let Some(ids) = self.profiles.get_mut(profile) {
                    ids.unlisted_drops += 1;
                    self.changed.insert(profile.to_owned());
                }
            } else {
                self.record(profile, message_id, at, Change::Dropped(dropped));
            }
        }
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
        // Every identifier belongs to one profile, so the linked profile's count is theirs
        // and the event's new ones.
        let profiles: Vec<&ProfileIds> = touched
            .iter()
            .filter_map(|p| self.profiles.get(p).map(|p| &**p))
            .collect();
        let held: usize = profiles.iter().map(|p| p.identifiers.len()).sum();
        let new = ids
            .iter()
            .filter(|id| !self.index.contains_key(*id))
            .count();
        let before = profiles
            .iter()
            .map(|p| p.identifiers.len())
            .max()
            .unwrap_or(0);
        let limit = self.rules.max_identifiers;
        if held + new > limit && held + new > before {
            return Some(DropReason::TooManyIdentifiers(limit));
        }
        if profiles.len() > 1 {
            let merges = profiles.iter().map(|p| p.merges).sum::<usize>() + profiles.len() - 1;
            if merges > self.rules.max_merges {
                return Some(DropReason::TooManyMerges(self.rules.max_merges));
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

    fn point(&mut self, identifier: &Identifier, profile: &ProfileId) {
        self.index.insert(identifier.clone(), profile.clone());
        self.relinked.insert(identifier.clone());
    }

    fn create(
        &mut self,
        message_id: &str,
        sender: u64,
        at: OffsetDateTime,
        ids: &[Identifier],
    ) -> ProfileId {
        let id = profile_id(message_id, sender);
        let identifiers = ids.iter().map(|i| (i.clone(), at)).collect();
        for identifier in ids {
            self.point(identifier, &id);
        }
        self.profiles.insert(
            id.clone(),
            Box::new(ProfileIds {
                id: id.clone(),
                created_at: at,
                identifiers,
                history: Vec::new(),
                merges: 0,
                unlisted_drops: 0,
                verified: BTreeMap::new(),
            }),
        );
        self.removed.remove(&id);
        self.record(
            &id,
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
            self.changed.remove(other);
            self.removed.insert(other.clone());
            // The evidence: the event's identifiers already in one of the two profiles.
            let via: Vec<Identifier> = ids
                .iter()
                .filter(|id| {
                    absorbed.identifiers.contains_key(*id)
                        || self.index.get(*id).is_some_and(|p| *p == survivor)
                })
                .cloned()
                .collect();
            for identifier in absorbed.identifiers.keys() {
                self.point(identifier, &survivor);
            }
            if let Some(profile) = self.profiles.get_mut(&survivor) {
                for (identifier, first_seen) in absorbed.identifiers {
                    let entry = profile.identifiers.entry(identifier).or_insert(first_seen);
                    *entry = (*entry).min(first_seen);
                }
                profile.created_at = profile.created_at.min(absorbed.created_at);
                profile.merges += absorbed.merges + 1;
                profile.verified.extend(absorbed.verified);
                profile.unlisted_drops += absorbed.unlisted_drops;
                let history =
                    merge_histories(std::mem::take(&mut profile.history), absorbed.history);
                let (history, unlisted) = list_drops(history);
                profile.history = history;
                profile.unlisted_drops += unlisted;
            }
            self.record(
                &survivor,
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
                self.point(identifier, &survivor);
                if let Some(profile) = self.profiles.get_mut(&survivor) {
                    profile.identifiers.insert(identifier.clone(), at);
                }
            }
            self.record(
                &survivor,
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
        let profile = match self.index.get(id) {
            Some(profile) => profile,
            None => self.index.get(&self.rules.normalized(id)?)?,
        };
        self.profiles.get(profile).map(|p| &**p)
    }

    /// The profile an identifier already normalised belongs to (one an event's extraction
    /// gave).
    pub fn profile_of_normalized(&self, id: &Identifier) -> Option<&ProfileIds> {
        self.profiles.get(self.index.get(id)?).map(|p| &**p)
    }

    /// A profile by id.
    pub fn profile(&self, id: &str) -> Option<&ProfileIds> {
        self.profiles.get(id).map(|p| &**p)
    }

    /// Every profile, by id.
    pub fn profiles(&self) -> impl Iterator<Item = &ProfileIds> {
        self.profiles.values().map(|p| &**p)
    }

    /// How many profiles there are.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Every decision since the graph was made (or since [`IdentityGraph::take_log`]), in
    /// order.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// Takes the decisions logged so far, leaving the log empty (a long-running platform
    /// keeps decisions in the profiles' histories, not in memory).
    pub fn take_log(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.log)
    }

    /// The decisions that made a profile what it is (see [`ProfileIds::history`]).
    pub fn history(&self, profile: &str) -> &[LogEntry] {
        self.profiles
            .get(profile)
            .map_or(&[], |p| p.history.as_slice())
    }

    /// How many decisions were made, ever.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Whether the working set holds `id` (a profile has it).
    pub fn holds(&self, id: &Identifier) -> bool {
        self.index.contains_key(id)
    }

    /// Whether the working set holds what is known of `message_id`.
    pub fn holds_message(&self, message_id: &str) -> bool {
        self.seen.contains_key(message_id)
    }

    /// Whether the working set holds the profile `id`.
    pub fn holds_profile(&self, id: &str) -> bool {
        self.profiles.contains_key(id)
    }

    /// Loads a profile from a store into the working set, with its identifiers. What the
    /// working set holds already wins (it is newer than the store).
    pub fn load(&mut self, profile: ProfileIds) {
        if self.profiles.contains_key(&profile.id) {
            return;
        }
        for identifier in profile.identifiers.keys() {
            self.index.insert(identifier.clone(), profile.id.clone());
        }
        self.profiles.insert(profile.id.clone(), Box::new(profile));
    }

    /// Loads what a store knows of a `messageId`: its senders, and when each one's event was
    /// received.
    pub fn load_seen(&mut self, message_id: &str, senders: Vec<Seen>) {
        self.seen
            .entry(message_id.to_owned())
            .or_insert((senders, false));
    }

    /// Restores the counters of a stored graph: decisions made, collisions seen.
    pub fn load_decisions(&mut self, decisions: u64, collisions: u64) {
        self.decisions = self.decisions.max(decisions);
        self.collisions = self.collisions.max(collisions);
    }

    /// What changed since the last call (or since the graph was made).
    pub fn take_changes(&mut self) -> GraphChanges {
        let mut profiles: Vec<ProfileId> = self.changed.drain().collect();
        profiles.sort();
        let mut removed: Vec<ProfileId> = self.removed.drain().collect();
        removed.sort();
        let mut identifiers: Vec<(Identifier, ProfileId)> = self
            .relinked
            .drain()
            .filter_map(|id| {
                let profile = self.index.get(&id)?.clone();
                Some((id, profile))
            })
            .collect();
        identifiers.sort();
        let mut seen = Vec::new();
        for (id, (senders, fresh)) in &mut self.seen {
            if *fresh {
                *fresh = false;
                seen.push((id.clone(), senders.clone()));
            }
        }
        seen.sort();
        GraphChanges {
            profiles,
            removed,
            identifiers,
            seen,
        }
    }

    /// Whether anything changed since the last [`IdentityGraph::take_changes`].
    pub fn has_changes(&self) -> bool {
        !(self.changed.is_empty()
            && self.removed.is_empty()
            && self.relinked.is_empty()
            && self.seen.values().all(|(_, fresh)| !fresh))
    }

    /// Forgets the `messageId`s of the working set (a store keeps them).
    pub fn forget_seen(&mut self) {
        self.seen.clear();
    }

    /// Removes a profile and its identifiers from the working set (not from the graph's
    /// truth: a store still holds it). Only for profiles without unsaved changes.
    pub fn evict(&mut self, id: &str) {
        if let Some(profile) = self.profiles.remove(id) {
            for identifier in profile.identifiers.keys() {
                self.index.remove(identifier);
            }
        }
    }
}

/// Two histories in decision order (each is already in order).
fn merge_histories(mine: Vec<LogEntry>, theirs: Vec<LogEntry>) -> Vec<LogEntry> {
    let mut out = Vec::with_capacity(mine.len() + theirs.len());
    let mut mine = mine.into_iter().peekable();
    let mut theirs = theirs.into_iter().peekable();
    loop {
        let take_mine = match (mine.peek(), theirs.peek()) {
            (Some(a), Some(b)) => a.number <= b.number,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_mine {
            mine.next()
        } else {
            theirs.next()
        };
        out.extend(next);
    }
    out
}

/// A history that lists at most [`MAX_LISTED_DROPS`] decisions to leave an identifier out
/// (the first ones), and how many it no longer lists.
fn list_drops(history: Vec<LogEntry>) -> (Vec<LogEntry>, u64) {
    let mut listed = 0;
    let mut unlisted = 0;
    let kept = history
        .into_iter()
        .filter(|entry| {
            if !matches!(entry.change, Change::Dropped(_)) {
                return true;
            }
            listed += 1;
            let keep = listed <= MAX_LISTED_DROPS;
            if !keep {
                unlisted += 1;
            }
            keep
        })
        .collect();
    (kept, unlisted)
}

/// `p_` and 20 hex digits of SHA-256 over the first event's `messageId`, a unit separator and
/// its sender ([`super::sender_of`], big-endian): two senders' events never make one id.
fn profile_id(message_id: &str, sender: u64) -> ProfileId {
    let mut hash = Sha256::new();
    hash.update(message_id.as_bytes());
    hash.update([0x1f]);
    hash.update(sender.to_be_bytes());
    let digest = hash.finalize();
    let mut id = String::with_capacity(22);
    id.push_str("p_");
    hex::push(&mut id, digest.get(..10).unwrap_or_default());
    id
}
