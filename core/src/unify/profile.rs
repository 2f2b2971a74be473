//! Profiles, the golden record: traits merged under survivorship rules (each with its source
//! and time), and computed fields kept incrementally — first and last seen, event counts per
//! event name, sessions, and configured aggregates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::identity::ProfileId;
use crate::event::{Event, EventType};
use crate::json::{Kind, Node};

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

/// How profiles are computed (`[unify.profiles]` in `braid.toml`).
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

/// One event, as profiles read it: what a trait's value records about where it came from.
pub(super) struct Fact<'a> {
    /// The event's `messageId`.
    pub(super) message_id: &'a str,
    /// Its time.
    pub(super) at: OffsetDateTime,
    /// The client's sequence number (`context.sequence`).
    pub(super) sequence: Option<i64>,
    /// Its source (`context.library.name`).
    pub(super) source: Option<&'a str>,
}

impl Profile {
    pub(super) fn new(id: ProfileId, at: OffsetDateTime) -> Profile {
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

    pub(super) fn apply(&mut self, event: &Event<'_>, fact: &Fact<'_>, config: &ProfileConfig) {
        let timeout = Duration::minutes(config.session_timeout_minutes);
        let before = self.event_counts.values().sum::<u64>();
        if before == 0 || fact.at > self.last_seen + timeout || fact.at < self.first_seen - timeout
        {
            self.sessions += 1;
        }
        self.first_seen = self.first_seen.min(fact.at);
        self.last_seen = self.last_seen.max(fact.at);
        let kind = event.kind();
        let event_name = event.event_name();
        let name = match kind {
            EventType::Track => event_name.as_deref().unwrap_or("track"),
            other => other.as_str(),
        };
        match self.event_counts.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                self.event_counts.insert(name.to_owned(), 1);
            }
        }
        let context = event.object("context");
        let context_traits = context
            .as_ref()
            .and_then(|c| c.get("traits"))
            .and_then(Node::as_object);
        let traits = event.object("traits");
        for source in [context_traits.as_deref(), traits.as_deref()]
            .into_iter()
            .flatten()
        {
            for (key, value) in source.iter() {
                let rule = config.traits.get(key.as_ref()).cloned().unwrap_or_default();
                self.set_trait(key.as_ref(), value, fact, &rule);
            }
        }
        if kind == EventType::Track {
            let mut properties = None;
            for aggregate in config.aggregates.iter().filter(|a| a.event == name) {
                let properties = properties.get_or_insert_with(|| event.object("properties"));
                let value = properties
                    .as_ref()
                    .and_then(|p| p.get(&aggregate.property))
                    .map(Node::to_value);
                self.aggregate(aggregate, value.as_ref(), fact.at);
            }
        }
    }

    fn set_trait(&mut self, key: &str, value: &Node<'_>, fact: &Fact<'_>, rule: &Survivorship) {
        if value.kind() == Kind::Null {
            return;
        }
        let value = value.to_value();
        let counted = (*rule == Survivorship::MostFrequent).then(|| value.to_string());
        let incoming = TraitValue {
            value,
            at: fact.at,
            sequence: fact.sequence,
            source: fact.source.map(str::to_owned),
            message_id: fact.message_id.to_owned(),
            counts: BTreeMap::new(),
        };
        match self.traits.get_mut(key) {
            None => {
                let mut first = incoming;
                if let Some(counted) = counted {
                    first.counts.insert(counted, 1);
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
    pub(super) fn absorb(&mut self, other: Profile, config: &ProfileConfig) {
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
