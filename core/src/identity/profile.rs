//! Profiles, the golden record: traits merged under survivorship rules (each with its source
//! and time), and computed fields kept incrementally — first and last seen, event counts per
//! event name, sessions, and configured aggregates.
//!
//! [`Unifier`] ties the identity graph and the profiles: each event joins (or creates, or
//! merges) profiles in the graph, then updates its profile.

use std::collections::BTreeMap;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::extract::extract;
use super::graph::{Applied, Change, IdentityGraph, ProfileId, ProfileIds};
use super::id::{IdType, Identifier};
use super::record::{self, RecordError};
use super::rules::IdentityRules;
use crate::timestamp;

/// How a trait's value is chosen when events disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "sources")]
pub enum Survivorship {
    /// The value of the latest event (by corrected event time, then the client's sequence).
    #[default]
    MostRecent,
    /// The first value ever seen.
    FirstSeen,
    /// The value seen most often (ties: the most recent).
    MostFrequent,
    /// The value from the strongest source (`context.library.name`, first in the list is
    /// strongest); among equals, the most recent.
    SourcePriority(Vec<String>),
}

/// What an aggregate computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    /// The sum of the property.
    Sum,
    /// How many events.
    Count,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The latest value.
    Last,
}

/// A configured aggregate, e.g. total revenue: `{name = "revenue", event = "Order Completed",
/// property = "revenue", op = "sum"}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Aggregate {
    /// Its name on the profile.
    pub name: String,
    /// The track event it reads.
    pub event: String,
    /// The property it reads (not needed for `count`).
    #[serde(default)]
    pub property: String,
    /// What it computes.
    pub op: AggregateOp,
}

/// How profiles are computed (`[profiles]` in `braid.toml`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Survivorship per trait (others: most recent).
    pub traits: BTreeMap<String, Survivorship>,
    /// Aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Inactivity that ends a session.
    pub session_timeout_minutes: i64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            traits: BTreeMap::new(),
            aggregates: Vec::new(),
            session_timeout_minutes: 30,
        }
    }
}

/// One trait's value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct TraitValue {
    /// The value.
    pub value: Value,
    /// When the event that set it happened.
    pub at: OffsetDateTime,
    /// The client's sequence number of that event, if it sent one.
    pub sequence: Option<i64>,
    /// The source (`context.library.name`), if known.
    pub source: Option<String>,
    /// The event's `messageId`.
    pub message_id: String,
    /// For most-frequent traits: how often each value was seen (values as JSON text).
    pub counts: BTreeMap<String, u64>,
}

/// A profile's computed state.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Its id (the identity graph's).
    pub id: ProfileId,
    /// Traits.
    pub traits: BTreeMap<String, TraitValue>,
    /// The earliest event time.
    pub first_seen: OffsetDateTime,
    /// The latest event time.
    pub last_seen: OffsetDateTime,
    /// Events per name (`track` events by `event`; others by type, e.g. `page`).
    pub event_counts: BTreeMap<String, u64>,
    /// Sessions: runs of events without a gap longer than the session timeout.
    pub sessions: u64,
    /// Configured aggregates by name.
    pub aggregates: BTreeMap<String, Value>,
    /// For `last` aggregates: the time of the event that set each.
    pub last_at: BTreeMap<String, OffsetDateTime>,
}

/// One event, as profiles read it.
struct Fact<'a> {
    message_id: &'a str,
    at: OffsetDateTime,
    sequence: Option<i64>,
    source: Option<&'a str>,
}

impl Profile {
    fn new(id: ProfileId, at: OffsetDateTime) -> Profile {
        Profile {
            id,
            traits: BTreeMap::new(),
            first_seen: at,
            last_seen: at,
            event_counts: BTreeMap::new(),
            sessions: 0,
            aggregates: BTreeMap::new(),
            last_at: BTreeMap::new(),
        }
    }

    fn apply(&mut self, event: &Map<String, Value>, fact: &Fact<'_>, config: &ProfileConfig) {
        let timeout = Duration::minutes(config.session_timeout_minutes);
        let before = self.event_counts.values().sum::<u64>();
        if before == 0 || fact.at > self.last_seen + timeout || fact.at < self.first_seen - timeout
        {
            self.sessions += 1;
        }
        self.first_seen = self.first_seen.min(fact.at);
        self.last_seen = self.last_seen.max(fact.at);
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("track");
        let name = match kind {
            "track" => event
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("track"),
            other => other,
        };
        match self.event_counts.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                self.event_counts.insert(name.to_owned(), 1);
            }
        }
        let context_traits = event
            .get("context")
            .and_then(|c| c.get("traits"))
            .and_then(Value::as_object);
        let traits = event.get("traits").and_then(Value::as_object);
        for source in [context_traits, traits].into_iter().flatten() {
            for (key, value) in source {
                let rule = config.traits.get(key).cloned().unwrap_or_default();
                self.set_trait(key, value, fact, &rule);
            }
        }
        if kind == "track" {
            let properties = event.get("properties").and_then(Value::as_object);
            for aggregate in config.aggregates.iter().filter(|a| a.event == name) {
                let value = properties.and_then(|p| p.get(&aggregate.property));
                self.aggregate(aggregate, value, fact.at);
            }
        }
    }

    fn set_trait(&mut self, key: &str, value: &Value, fact: &Fact<'_>, rule: &Survivorship) {
        if value.is_null() {
            return;
        }
        let incoming = TraitValue {
            value: value.clone(),
            at: fact.at,
            sequence: fact.sequence,
            source: fact.source.map(str::to_owned),
            message_id: fact.message_id.to_owned(),
            counts: BTreeMap::new(),
        };
        match self.traits.get_mut(key) {
            None => {
                let mut first = incoming;
                if *rule == Survivorship::MostFrequent {
                    first.counts.insert(value.to_string(), 1);
                }
                self.traits.insert(key.to_owned(), first);
            }
            Some(current) => combine(current, incoming, rule),
        }
    }

    fn aggregate(&mut self, aggregate: &Aggregate, value: Option<&Value>, at: OffsetDateTime) {
        let number = value.and_then(Value::as_f64);
        let slot = self.aggregates.get(&aggregate.name);
        let updated = match aggregate.op {
            AggregateOp::Count => Some(Value::from(slot.and_then(Value::as_u64).unwrap_or(0) + 1)),
            AggregateOp::Sum => {
                number.map(|n| Value::from(slot.and_then(Value::as_f64).unwrap_or(0.0) + n))
            }
            AggregateOp::Min => {
                number.map(|n| Value::from(slot.and_then(Value::as_f64).map_or(n, |m| m.min(n))))
            }
            AggregateOp::Max => {
                number.map(|n| Value::from(slot.and_then(Value::as_f64).map_or(n, |m| m.max(n))))
            }
            AggregateOp::Last => {
                let newer = self
                    .last_at
                    .get(&aggregate.name)
                    .is_none_or(|previous| at >= *previous);
                match value {
                    Some(value) if newer => {
                        self.last_at.insert(aggregate.name.clone(), at);
                        Some(value.clone())
                    }
                    _ => None,
                }
            }
        };
        if let Some(updated) = updated {
            self.aggregates.insert(aggregate.name.clone(), updated);
        }
    }

    /// Folds `other` (a profile merged into this one) in.
    fn absorb(&mut self, other: Profile, config: &ProfileConfig) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.sessions += other.sessions;
        for (name, count) in other.event_counts {
            *self.event_counts.entry(name).or_default() += count;
        }
        for (key, incoming) in other.traits {
            let rule = config.traits.get(&key).cloned().unwrap_or_default();
            match self.traits.get_mut(&key) {
                None => {
                    self.traits.insert(key, incoming);
                }
                Some(current) => combine(current, incoming, &rule),
            }
        }
        for aggregate in &config.aggregates {
            let name = &aggregate.name;
            let Some(theirs) = other.aggregates.get(name).cloned() else {
                continue;
            };
            let mine = self.aggregates.get(name).cloned();
            let merged = match (aggregate.op, mine) {
                (_, None) => Some(theirs),
                (AggregateOp::Count, Some(m)) => Some(Value::from(
                    m.as_u64().unwrap_or(0) + theirs.as_u64().unwrap_or(0),
                )),
                (AggregateOp::Sum, Some(m)) => Some(Value::from(
                    m.as_f64().unwrap_or(0.0) + theirs.as_f64().unwrap_or(0.0),
                )),
                (AggregateOp::Min, Some(m)) => Some(Value::from(
                    m.as_f64()
                        .unwrap_or(f64::MAX)
                        .min(theirs.as_f64().unwrap_or(f64::MAX)),
                )),
                (AggregateOp::Max, Some(m)) => Some(Value::from(
                    m.as_f64()
                        .unwrap_or(f64::MIN)
                        .max(theirs.as_f64().unwrap_or(f64::MIN)),
                )),
                (AggregateOp::Last, Some(_)) => {
                    let theirs_at = other.last_at.get(name).copied();
                    let newer = theirs_at > self.last_at.get(name).copied();
                    newer.then(|| {
                        if let Some(at) = theirs_at {
                            self.last_at.insert(name.clone(), at);
                        }
                        theirs
                    })
                }
            };
            if let Some(merged) = merged {
                self.aggregates.insert(name.clone(), merged);
            }
        }
    }
}

/// Chooses between the current value of a trait and an incoming one.
fn combine(current: &mut TraitValue, incoming: TraitValue, rule: &Survivorship) {
    let newer = (incoming.at, incoming.sequence) >= (current.at, current.sequence);
    if let (Value::Array(mine), Value::Array(theirs)) = (&mut current.value, &incoming.value) {
        // Lists are unioned, whatever the rule.
        for item in theirs {
            if !mine.contains(item) {
                mine.push(item.clone());
            }
        }
        if newer {
            current.at = incoming.at;
            current.sequence = incoming.sequence;
            current.message_id = incoming.message_id;
            current.source = incoming.source;
        }
        return;
    }
    let replace = match rule {
        Survivorship::MostRecent => newer,
        Survivorship::FirstSeen => {
            (incoming.at, incoming.sequence) < (current.at, current.sequence)
        }
        Survivorship::MostFrequent => {
            let mut counts = std::mem::take(&mut current.counts);
            if counts.is_empty() {
                counts.insert(current.value.to_string(), 1);
            }
            if incoming.counts.is_empty() {
                *counts.entry(incoming.value.to_string()).or_default() += 1;
            } else {
                for (value, n) in &incoming.counts {
                    *counts.entry(value.clone()).or_default() += n;
                }
            }
            let theirs = counts
                .get(&incoming.value.to_string())
                .copied()
                .unwrap_or(0);
            let mine = counts.get(&current.value.to_string()).copied().unwrap_or(0);
            current.counts = counts;
            theirs > mine || (theirs == mine && newer)
        }
        Survivorship::SourcePriority(order) => {
            let rank = |source: Option<&String>| {
                source
                    .and_then(|s| order.iter().position(|o| o == s))
                    .unwrap_or(order.len())
            };
            let (theirs, mine) = (
                rank(incoming.source.as_ref()),
                rank(current.source.as_ref()),
            );
            theirs < mine || (theirs == mine && newer)
        }
    };
    if replace {
        let counts = std::mem::take(&mut current.counts);
        *current = TraitValue { counts, ..incoming };
    }
}

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
    profiles: HashMap<ProfileId, Slot>,
    /// Events applied to a profile, ever (the number of the last).
    sequence: u64,
    /// Profiles changed since the last [`Unifier::take_changes`] (their slots say so too).
    changed: Vec<ProfileId>,
    clock: u64,
}

/// A profile of the working set.
#[derive(Clone, Debug)]
struct Slot {
    profile: Profile,
    /// When it was last used (a counter), for eviction.
    used: u64,
    /// Whether it changed since the last [`Unifier::take_changes`].
    changed: bool,
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
    /// Profiles created or changed, each with its record ([`super::encode_record`]), sorted.
    pub profiles: Vec<(ProfileId, Vec<u8>)>,
    /// Profiles merged into others, sorted.
    pub removed: Vec<ProfileId>,
    /// Identifiers and the profile each now belongs to, sorted.
    pub identifiers: Vec<(Identifier, ProfileId)>,
    /// `messageId`s applied, with the time their events were received (milliseconds since
    /// the Unix epoch).
    pub seen: Vec<(String, i64)>,
    /// The counters to store with them ([`super::StoredCounters`]).
    pub counters: super::StoredCounters,
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
        }
    }

    /// The identity graph.
    pub fn graph(&self) -> &IdentityGraph {
        &self.graph
    }

    /// Takes the graph's decisions logged so far ([`IdentityGraph::take_log`]): a
    /// long-running unifier keeps them in the profiles' histories, not in a log.
    pub fn take_log(&mut self) -> Vec<super::LogEntry> {
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
    pub fn lookups(&self, event: &Map<String, Value>) -> Lookups {
        let message_id = event
            .get("messageId")
            .and_then(Value::as_str)
            .map(str::to_owned);
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

    /// Applies one lake event (an enriched event as a JSON object). Its time is `timestamp`
    /// (skew-corrected by ingestion), else `receivedAt`; it was received at `receivedAt`, else
    /// at its time; its id is `messageId`. Times count to the millisecond, as the lake writes
    /// them (and as a store keeps them).
    pub fn apply(&mut self, event: &Map<String, Value>) -> Applied {
        let text = |key: &str| event.get(key).and_then(Value::as_str);
        let time = |key: &str| {
            text(key)
                .and_then(|t| timestamp::parse(t).ok())
                .map(record::to_millis)
        };
        let Some(message_id) = text("messageId") else {
            return Applied::NoIdentity;
        };
        let Some(at) = time("timestamp").or_else(|| time("receivedAt")) else {
            return Applied::NoIdentity;
        };
        let received = time("receivedAt").unwrap_or(at);
        let extracted = extract(event, self.graph.rules());
        let log_before = self.graph.log().len();
        let applied = self.graph.apply(message_id, at, received, extracted);
        let Applied::Profile(profile_id) = &applied else {
            return applied;
        };
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
                let survivor = self.profiles.entry(into.clone()).or_insert_with(|| Slot {
                    profile: Profile::new(into, absorbed.profile.first_seen),
                    used: 0,
                    changed: false,
                });
                survivor.profile.absorb(absorbed.profile, &self.config);
            }
        }
        let context = event.get("context");
        let fact = Fact {
            message_id,
            at,
            sequence: context
                .and_then(|c| c.get("sequence"))
                .and_then(Value::as_i64),
            source: context
                .and_then(|c| c.get("library"))
                .and_then(|l| l.get("name"))
                .and_then(Value::as_str),
        };
        self.sequence += 1;
        self.clock += 1;
        let slot = match self.profiles.get_mut(profile_id) {
            Some(slot) => slot,
            None => self.profiles.entry(profile_id.clone()).or_insert(Slot {
                profile: Profile::new(profile_id.clone(), at),
                used: 0,
                changed: false,
            }),
        };
        slot.profile.apply(event, &fact, &self.config);
        slot.used = self.clock;
        if !slot.changed {
            slot.changed = true;
            self.changed.push(profile_id.clone());
        }
        applied
    }

    /// Loads a stored record ([`super::encode_record`]) into the working set; what the working
    /// set holds already wins.
    ///
    /// # Errors
    ///
    /// When the record cannot be read.
    pub fn load_record(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let (ids, profile) = record::decode_record(bytes)?;
        if self.graph.holds_profile(&ids.id) {
            return Ok(());
        }
        self.clock += 1;
        let slot = Slot {
            profile,
            used: self.clock,
            changed: false,
        };
        self.profiles.insert(ids.id.clone(), slot);
        self.graph.load(ids);
        Ok(())
    }

    /// Loads what a store knows of a `messageId` (received at `received_millis`).
    pub fn load_seen(&mut self, message_id: &str, received_millis: i64) {
        if let Some(received) = record::from_millis(received_millis) {
            self.graph.load_seen(message_id, received);
        }
    }

    /// Restores the counters of a stored unifier.
    pub fn load_counters(&mut self, counters: &super::StoredCounters) {
        self.sequence = self.sequence.max(counters.sequence);
        self.graph.load_decisions(counters.decisions);
    }

    /// What changed since the last call, with the records to write.
    pub fn take_changes(&mut self) -> Changes {
        let graph = self.graph.take_changes();
        let mut ids = std::mem::take(&mut self.changed);
        ids.extend(graph.profiles);
        ids.sort();
        ids.dedup();
        let profiles = ids
            .into_iter()
            .filter_map(|id| {
                let slot = self.profiles.get_mut(&id)?;
                slot.changed = false;
                let record = record::encode_record(self.graph.profile(&id)?, &slot.profile);
                Some((id, record))
            })
            .collect();
        Changes {
            profiles,
            removed: graph.removed,
            identifiers: graph.identifiers,
            seen: graph
                .seen
                .into_iter()
                .map(|(id, at)| (id, record::millis(at)))
                .collect(),
            counters: self.counters(),
        }
    }

    /// The counters a store keeps with the records.
    pub fn counters(&self) -> super::StoredCounters {
        super::StoredCounters {
            sequence: self.sequence,
            decisions: self.graph.decisions(),
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
                Some(super::view::profile_view(ids, &slot.profile))
            })
            .collect()
    }

    /// The profile of an identifier as the profile API shows it
    /// ([`super::view::profile_view`]).
    pub fn profile_json(&self, id: &Identifier) -> Option<Value> {
        let ids = self.graph.profile_of(id)?;
        let slot = self.profiles.get(&ids.id)?;
        Some(super::view::profile_view(ids, &slot.profile))
    }
}
