//! [`Unifier`] ties the identity graph and the profiles of one workspace: each event joins (or
//! creates, or merges) profiles in the graph, then updates its profile. It is also a working set
//! over a store: it says which keys an event reads, takes them in, and gives back what changed.

use foldhash::HashMap;

use serde_json::Value;

use super::identity::IdentityRules;
use super::identity::{
    Applied, Change, Extracted, IdType, Identifier, IdentityGraph, ProfileId, ProfileIds, Seen,
    extract, sender_of,
};
use super::profile::{Fact, Profile, ProfileConfig};
use super::record::{self, RecordError, StoredCounters, StoredSeen};
use super::view::profile_view;
use crate::event::Event;
use crate::json::Node;
use crate::timestamp;

/// The identity graph and the profiles of one workspace, updated event by event.
///
/// Like the graph, a unifier is a working set over a store: [`Unifier::lookups`] says which
/// keys an event reads, [`Unifier::load_record`] and [`Unifier::load_seen`] bring them in,
/// [`Unifier::take_changes`] gives what to write back, and [`Unifier::evict_to`] keeps it to
/// a size. Left alone, it holds everything.
#[derive(Clone, Debug)]
pub struct Unifier {
    graph: IdentityGraph,
    config: ProfileConfig,
    /// Boxed: a map holds room for more entries than it has (up to twice as many after it
    /// grows), and a profile is hundreds of bytes.
    profiles: HashMap<ProfileId, Box<Slot>>,
    /// Events applied to a profile, ever (the number of the last).
    sequence: u64,
    /// Profiles changed since the last [`Unifier::take_changes`] (their slots say so too).
    changed: Vec<ProfileId>,
    clock: u64,
    /// Profile changes numbered for the change log (audience entries and exits, computed
    /// traits), ever.
    logged: u64,
    /// Profiles merged into others since the last [`Unifier::take_absorbed`], with the
    /// audiences each was in.
    absorbed: Vec<Absorbed>,
    /// The timers of profiles merged into others since the last [`Unifier::take_changes`].
    dropped_timers: Vec<(ProfileId, i64)>,
}

/// A profile merged into another, with the audiences it was in (each with when it entered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absorbed {
    /// Its id.
    pub from: ProfileId,
    /// The profile it was merged into.
    pub into: ProfileId,
    /// The audiences it was in.
    pub audiences: super::profile::Memberships,
}

/// A profile's timer moved: the store's time-ordered entry for it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerChange {
    /// The profile.
    pub profile: ProfileId,
    /// The time its entry had (ms), if any.
    pub old: Option<i64>,
    /// The time its entry has now, if any.
    pub new: Option<i64>,
}

/// A profile of the working set.
#[derive(Clone, Debug)]
struct Slot {
    profile: Profile,
    /// When it was last used (a counter), for eviction.
    used: u64,
    /// Whether it changed since the last [`Unifier::take_changes`].
    changed: bool,
    /// Its timer as the store holds it.
    stored_check: Option<i64>,
}

/// The keys an event reads: what a store must load into the working set before it is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Its `messageId`, for the dedupe window.
    pub message_id: Option<String>,
    /// Its identifiers (an alias's `previousId` both as a user id and as an anonymous id).
    pub identifiers: Vec<Identifier>,
}

/// What changed since the last [`Unifier::take_changes`], ready to write to a store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Profiles created or changed, each with its record ([`super::record::encode_record`]), sorted.
    pub profiles: Vec<(ProfileId, Vec<u8>)>,
    /// Profiles merged into others, sorted.
    pub removed: Vec<ProfileId>,
    /// Identifiers and the profile each now belongs to, sorted.
    pub identifiers: Vec<(Identifier, ProfileId)>,
    /// `messageId`s applied, each with its senders, when each one's event was received
    /// (milliseconds since the Unix epoch) and the line it came from, to store with
    /// [`super::record::encode_seen`].
    pub seen: Vec<(String, Vec<StoredSeen>)>,
    /// The counters to store with them ([`StoredCounters`]).
    pub counters: StoredCounters,
    /// Profiles whose timer moved, sorted.
    pub timers: Vec<TimerChange>,
}

impl Unifier {
    /// An empty unifier.
    pub fn new(rules: IdentityRules, config: ProfileConfig) -> Unifier {
        Unifier {
            graph: IdentityGraph::new(rules),
            config,
            profiles: HashMap::default(),
            sequence: 0,
            changed: Vec::new(),
            clock: 0,
            logged: 0,
            absorbed: Vec::new(),
            dropped_timers: Vec::new(),
        }
    }

    /// The profile configuration.
    pub fn config(&self) -> &ProfileConfig {
        &self.config
    }

    /// A profile by id, to change (it is written back with the next changes).
    pub fn profile_mut(&mut self, id: &str) -> Option<&mut Profile> {
        self.profile_mut_with_config(id).map(|(profile, _)| profile)
    }

    /// A profile by id, to change, with the configuration (for reading one while changing
    /// the other).
    pub fn profile_mut_with_config(&mut self, id: &str) -> Option<(&mut Profile, &ProfileConfig)> {
        let slot = self.profiles.get_mut(id)?;
        if !slot.changed {
            slot.changed = true;
            self.changed.push(id.to_owned());
        }
        Some((&mut slot.profile, &self.config))
    }

    /// The profile and its identifiers, by id.
    pub fn profile_and_ids(&self, id: &str) -> Option<(&ProfileIds, &Profile)> {
        let slot = self.profiles.get(id)?;
        Some((self.graph.profile(id)?, &slot.profile))
    }

    /// The number of the next entry of the change log.
    pub fn next_logged(&mut self) -> u64 {
        self.logged += 1;
        self.logged
    }

    /// Takes the profiles merged into others since the last call.
    pub fn take_absorbed(&mut self) -> Vec<Absorbed> {
        std::mem::take(&mut self.absorbed)
    }

    /// The identity graph.
    pub fn graph(&self) -> &IdentityGraph {
        &self.graph
    }

    /// Takes the graph's decisions logged so far ([`IdentityGraph::take_log`]): a
    /// long-running unifier keeps them in the profiles' histories, not in a log.
    pub fn take_log(&mut self) -> Vec<super::identity::LogEntry> {
        self.graph.take_log()
    }

    /// A profile by id.
    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.get(id).map(|slot| &slot.profile)
    }

    /// Every profile.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values().map(|slot| &slot.profile)
    }

    /// How many events were applied to a profile, ever: the number of the last one.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The keys `event` reads (see [`Lookups`]).
    pub fn lookups(&self, event: &Event<'_>) -> Lookups {
        let message_id = event.message_id().map(std::borrow::Cow::into_owned);
        let extracted = extract(event, self.graph.rules());
        let mut identifiers = extracted.ids;
        if let Some(previous) = extracted.previous_id {
            identifiers.push(Identifier::new(IdType::UserId, previous.clone()));
            identifiers.push(Identifier::new(IdType::AnonymousId, previous));
        }
        Lookups {
            message_id,
            identifiers,
        }
    }

    /// Applies one lake event. Its time is `timestamp` (skew-corrected by ingestion), else
    /// `receivedAt`; it was received at `receivedAt`, else at its time; its id is `messageId`.
    /// Times count to the millisecond, as the lake writes them (and as a store keeps them).
    pub fn apply(&mut self, event: &Event<'_>) -> Applied {
        self.apply_from(event, 0)
    }

    /// [`Unifier::apply`] for the event of a known lake line (`origin`:
    /// [`crate::catalogue::lake::line_origin`]): a copy of an event applied from another line
    /// is [`Applied::Copy`].
    pub fn apply_from(&mut self, event: &Event<'_>, origin: u64) -> Applied {
        let extracted = self.extract(event);
        self.apply_extracted(event, origin, extracted)
    }

    /// The identifiers of `event` under the workspace's rules, for
    /// [`Unifier::apply_extracted`] (a caller that needs them before applying extracts once).
    pub fn extract(&self, event: &Event<'_>) -> Extracted {
        extract(event, self.graph.rules())
    }

    /// The profiles the identifiers of `extracted` belong to now (an alias's `previousId` as a
    /// user id and as an anonymous id), sorted, without duplicates.
    pub fn profiles_of(&self, extracted: &Extracted) -> Vec<ProfileId> {
        let graph = &self.graph;
        let mut out: Vec<ProfileId> = extracted
            .ids
            .iter()
            .filter_map(|id| graph.profile_of_normalized(id).map(|ids| ids.id.clone()))
            .collect();
        if let Some(previous) = &extracted.previous_id {
            for kind in [IdType::UserId, IdType::AnonymousId] {
                let id = Identifier::new(kind, previous.clone());
                out.extend(graph.profile_of(&id).map(|ids| ids.id.clone()));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// [`Unifier::apply_from`] with the event's identifiers extracted already
    /// ([`Unifier::extract`]).
    pub fn apply_extracted(
        &mut self,
        event: &Event<'_>,
        origin: u64,
        mut extracted: Extracted,
    ) -> Applied {
        let time = |key: &str| event.time_field(key).map(timestamp::to_millis);
        let Some(message_id) = event.message_id() else {
            return Applied::NoIdentity;
        };
        let Some(at) = time("timestamp").or_else(|| time("receivedAt")) else {
            return Applied::NoIdentity;
        };
        let received = time("receivedAt").unwrap_or(at);
        extracted.sender = sender_of(event);
        // Strict identity: what the event proves decides whether it may set traits.
        let proofs = self
            .graph
            .rules()
            .verify_identity
            .then(|| (extracted.proven.clone(), extracted.browser.clone()));
        let log_before = self.graph.log().len();
        let applied = self
            .graph
            .apply_from(&message_id, at, received, extracted, origin);
        let Applied::Profile(profile_id) = &applied else {
            return applied;
        };
        let sets_traits = proofs.is_none_or(|(proven, browser)| {
            self.graph.proven_for(profile_id, &proven, browser.as_ref())
        });
        let merges: Vec<(ProfileId, ProfileId)> = self
            .graph
            .log()
            .get(log_before..)
            .unwrap_or_default()
            .iter()
            .filter_map(|entry| match &entry.change {
                Change::Merged { into, from, .. } => Some((into.clone(), from.clone())),
                _ => None,
            })
            .collect();
        for (into, from) in merges {
            if let Some(absorbed) = self.profiles.remove(&from) {
                if let Some(at) = absorbed.stored_check {
                    self.dropped_timers.push((from.clone(), at));
                }
                self.absorbed.push(Absorbed {
                    from: from.clone(),
                    into: into.clone(),
                    audiences: absorbed.profile.segment.audiences.clone(),
                });
                let survivor = self.profiles.entry(into.clone()).or_insert_with(|| {
                    Box::new(Slot {
                        profile: Profile::new(into, absorbed.profile.first_seen),
                        used: 0,
                        changed: false,
                        stored_check: None,
                    })
                });
                survivor.profile.absorb(absorbed.profile, &self.config);
            }
        }
        let context = event.object("context");
        let library = context
            .as_ref()
            .and_then(|c| c.get("library"))
            .and_then(Node::as_object);
        let source = library.as_ref().and_then(|l| l.text("name"));
        let fact = Fact {
            message_id: &message_id,
            at,
            sequence: context
                .as_ref()
                .and_then(|c| c.get("sequence"))
                .and_then(|n| n.to_value().as_i64()),
            source: source.as_deref(),
            sets_traits,
        };
        self.sequence += 1;
        self.clock += 1;
        let slot = match self.profiles.get_mut(profile_id) {
            Some(slot) => slot,
            None => self
                .profiles
                .entry(profile_id.clone())
                .or_insert(Box::new(Slot {
                    profile: Profile::new(profile_id.clone(), at),
                    used: 0,
                    changed: false,
                    stored_check: None,
                })),
        };
        slot.profile.apply(event, &fact, &self.config);
        slot.used = self.clock;
        if !slot.changed {
            slot.changed = true;
            self.changed.push(profile_id.clone());
        }
        applied
    }

    /// Loads a stored record ([`super::record::encode_record`]) into the working set; what the working
    /// set holds already wins.
    ///
    /// # Errors
    ///
    /// When the record cannot be read.
    pub fn load_record(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let (ids, profile) = record::decode_record(bytes, &self.config)?;
        if self.graph.holds_profile(&ids.id) {
            return Ok(());
        }
        self.clock += 1;
        let slot = Slot {
            stored_check: profile.segment.next_check,
            profile,
            used: self.clock,
            changed: false,
        };
        self.profiles.insert(ids.id.clone(), Box::new(slot));
        self.graph.load(ids);
        Ok(())
    }

    /// Loads what a store knows of a `messageId`: its senders and when each one's event was
    /// received (milliseconds since the Unix epoch; [`super::record::decode_seen`]).
    pub fn load_seen(&mut self, message_id: &str, senders: &[StoredSeen]) {
        let senders = senders
            .iter()
            .filter_map(|(sender, millis, origin)| {
                Some(Seen {
                    sender: *sender,
                    received: timestamp::from_unix_millis(*millis)?,
                    origin: *origin,
                })
            })
            .collect();
        self.graph.load_seen(message_id, senders);
    }

    /// Restores the counters of a stored unifier.
    pub fn load_counters(&mut self, counters: &StoredCounters) {
        self.sequence = self.sequence.max(counters.sequence);
        self.logged = self.logged.max(counters.logged);
        self.graph
            .load_decisions(counters.decisions, counters.collisions);
    }

    /// What changed since the last call, with the records to write.
    pub fn take_changes(&mut self) -> Changes {
        let graph = self.graph.take_changes();
        // Read by segmentation right after each event; nobody else needs them.
        self.absorbed.clear();
        let mut ids = std::mem::take(&mut self.changed);
        ids.extend(graph.profiles);
        ids.sort();
        ids.dedup();
        let mut timers: Vec<TimerChange> = std::mem::take(&mut self.dropped_timers)
            .into_iter()
            .map(|(profile, at)| TimerChange {
                profile,
                old: Some(at),
                new: None,
            })
            .collect();
        let profiles = ids
            .into_iter()
            .filter_map(|id| {
                let slot = self.profiles.get_mut(&id)?;
                slot.changed = false;
                let record =
                    record::encode_record(self.graph.profile(&id)?, &slot.profile, &self.config);
                let next = slot.profile.segment.next_check;
                if next != slot.stored_check {
                    timers.push(TimerChange {
                        profile: id.clone(),
                        old: slot.stored_check,
                        new: next,
                    });
                    slot.stored_check = next;
                }
                Some((id, record))
            })
            .collect();
        timers.sort_by(|a, b| a.profile.cmp(&b.profile));
        Changes {
            profiles,
            removed: graph.removed,
            identifiers: graph.identifiers,
            seen: graph
                .seen
                .into_iter()
                .map(|(id, senders)| {
                    let senders = senders
                        .into_iter()
                        .map(|s| (s.sender, timestamp::unix_millis(s.received), s.origin))
                        .collect();
                    (id, senders)
                })
                .collect(),
            counters: self.counters(),
            timers,
        }
    }

    /// The counters a store keeps with the records.
    pub fn counters(&self) -> StoredCounters {
        StoredCounters {
            sequence: self.sequence,
            decisions: self.graph.decisions(),
            collisions: self.graph.collisions(),
            logged: self.logged,
        }
    }

    /// Forgets the `messageId`s of the working set (after their changes were written).
    pub fn forget_seen(&mut self) {
        self.graph.forget_seen();
    }

    /// Evicts the least recently used profiles until at most `keep` are held. Only profiles
    /// whose changes were taken ([`Unifier::take_changes`]) are evicted.
    pub fn evict_to(&mut self, keep: usize) {
        if self.profiles.len() <= keep || self.graph.has_changes() || !self.changed.is_empty() {
            return;
        }
        let mut by_age: Vec<(u64, ProfileId)> = self
            .profiles
            .iter()
            .map(|(id, slot)| (slot.used, id.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.profiles.len() - keep;
        for (_, id) in by_age.into_iter().take(excess) {
            self.profiles.remove(&id);
            self.graph.evict(&id);
        }
    }
}

impl Unifier {
    /// Every profile as the profile API shows it, sorted by id (to compare two unifiers).
    pub fn snapshot(&self) -> Vec<Value> {
        let mut ids: Vec<&ProfileIds> = self.graph.profiles().collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        ids.into_iter()
            .filter_map(|ids| {
                let slot = self.profiles.get(&ids.id)?;
                Some(profile_view(ids, &slot.profile))
            })
            .collect()
    }

    /// The profile of an identifier as the profile API shows it
    /// ([`profile_view`]).
    pub fn profile_json(&self, id: &Identifier) -> Option<Value> {
        let ids = self.graph.profile_of(id)?;
        let slot = self.profiles.get(&ids.id)?;
        Some(profile_view(ids, &slot.profile))
    }
}
