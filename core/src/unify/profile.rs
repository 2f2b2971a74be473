//! Profiles, the golden record: traits merged under survivorship rules (each with its source
//! and time), and computed fields kept incrementally — first and last seen, event counts per
//! event name, sessions, and configured aggregates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::computed::{
    ComputedTrait, Filter, MAX_COMPUTED, SeriesSet, count_capped, shared_stores,
};
use super::identity::ProfileId;
use crate::event::{Event, EventType};
use crate::json::{Kind, Node};
use crate::timestamp::unix_millis;

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
    /// Most traits per profile: a new trait past it is not kept (counted in
    /// `overLimits.refusedTraits`).
    pub max_traits: usize,
    /// Largest trait value, in bytes of JSON: a larger one is not kept (counted likewise).
    pub max_trait_bytes: usize,
    /// Most event names counted per profile: events of a new name past it are counted
    /// together (`overLimits.eventsOfUncountedNames`).
    pub max_event_names: usize,
    /// Computed traits (`[[unify.profiles.computed]]`).
    pub computed: Vec<ComputedTrait>,
    /// The workspace's time zone, as minutes east of UTC: where its days start, for windows
    /// counted in days (`+60` for Paris in winter; a fixed offset, summer time is not
    /// followed).
    pub utc_offset_minutes: i32,
    /// What the audiences' event conditions count, kept like computed traits (named
    /// `audience:<key>:<n>`, not shown on profiles); filled from `[segment]` when the
    /// configuration is loaded, and part of the rules' fingerprint like the rest.
    #[serde(skip)]
    pub audience_series: Vec<ComputedTrait>,
    /// The series by event name and by name, built at first use (the series are set before: a
    /// configuration is checked, which fills `audience_series`, before profiles are computed).
    #[serde(skip)]
    index: std::sync::OnceLock<SeriesIndex>,
}

/// The series' stores ([`shared_stores`]), the stores by the event names that feed them and
/// by name (their first series'), and the series by name.
#[derive(Clone, Debug, Default)]
struct SeriesIndex {
    stores: Vec<ComputedTrait>,
    store_of: Vec<u16>,
    by_event: foldhash::HashMap<String, Vec<u16>>,
    store_names: foldhash::HashMap<String, u16>,
    by_name: foldhash::HashMap<String, u16>,
}

impl ProfileConfig {
    /// Every series a profile keeps: the computed traits, then what audiences count.
    pub fn series(&self) -> impl Iterator<Item = &ComputedTrait> {
        self.computed.iter().chain(&self.audience_series)
    }

    fn index(&self) -> &SeriesIndex {
        self.index.get_or_init(|| {
            let (stores, store_of) = shared_stores(self.series());
            let mut index = SeriesIndex {
                store_of,
                ..SeriesIndex::default()
            };
            for (i, def) in self.series().enumerate() {
                // At most MAX_COMPUTED series (checked when the configuration is read).
                let Ok(i) = u16::try_from(i) else { break };
                index.by_name.insert(def.name.clone(), i);
            }
            for (i, store) in stores.iter().enumerate() {
                let Ok(i) = u16::try_from(i) else { break };
                index
                    .by_event
                    .entry(store.event.clone())
                    .or_default()
                    .push(i);
                if let Some(then) = store.then.as_ref().filter(|t| t.event != store.event) {
                    index
                        .by_event
                        .entry(then.event.clone())
                        .or_default()
                        .push(i);
                }
                index.store_names.insert(store.name.clone(), i);
            }
            index.stores = stores;
            index
        })
    }

    /// The positions of the stores that count events of `name`.
    pub fn stores_fed_by(&self, name: &str) -> &[u16] {
        self.index().by_event.get(name).map_or(&[], Vec::as_slice)
    }

    /// The stores that count events of `name`, with their positions.
    pub fn stores_of_event<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = (u16, &'a ComputedTrait)> {
        self.stores_fed_by(name)
            .iter()
            .filter_map(|&i| Some((i, self.store(i)?)))
    }

    /// The store at a position: the definition a profile's [`SeriesSet`] keeps it by.
    pub fn store(&self, position: u16) -> Option<&ComputedTrait> {
        self.index().stores.get(usize::from(position))
    }

    /// The position of the store named `name` (its first series' name, as a record keeps it).
    pub fn store_position(&self, name: &str) -> Option<u16> {
        self.index().store_names.get(name).copied()
    }

    /// The store of the series at a position of [`ProfileConfig::series`].
    pub fn store_of(&self, series: u16) -> Option<u16> {
        self.index().store_of.get(usize::from(series)).copied()
    }

    /// The series at a position of [`ProfileConfig::series`].
    pub fn series_at(&self, position: u16) -> Option<&ComputedTrait> {
        let i = usize::from(position);
        match i.checked_sub(self.computed.len()) {
            None => self.computed.get(i),
            Some(j) => self.audience_series.get(j),
        }
    }

    /// The position of the series named `name`.
    pub fn series_position(&self, name: &str) -> Option<u16> {
        self.index().by_name.get(name).copied()
    }

    /// The time zone's offset, in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        i64::from(self.utc_offset_minutes) * 60_000
    }

    /// The problem with the computed traits, if any, naming the field and the limit.
    pub fn problem(&self) -> Option<String> {
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return Some(format!(
                "unify.profiles.utc_offset_minutes: {} is past 14 hours from UTC",
                self.utc_offset_minutes
            ));
        }
        if self.computed.len() + self.audience_series.len() > MAX_COMPUTED {
            return Some(format!(
                "unify.profiles.computed: {} computed traits and audience event conditions, at most {MAX_COMPUTED}",
                self.computed.len() + self.audience_series.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for def in &self.computed {
            if let Some(problem) = def.problem() {
                return Some(format!("unify.profiles.computed: {problem}"));
            }
            if def.name.starts_with("audience:") {
                return Some(format!(
                    "unify.profiles.computed: {}: names starting with \"audience:\" are the audiences'",
                    def.name
                ));
            }
            if !names.insert(&def.name) {
                return Some(format!(
                    "unify.profiles.computed: {}: two computed traits of one name",
                    def.name
                ));
            }
        }
        None
    }
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            traits: BTreeMap::new(),
            aggregates: Vec::new(),
            session_timeout_minutes: 30,
            max_traits: 1_000,
            max_trait_bytes: 4_096,
            max_event_names: 1_000,
            computed: Vec::new(),
            utc_offset_minutes: 0,
            audience_series: Vec::new(),
            index: std::sync::OnceLock::new(),
        }
    }
}

/// Most items a list trait keeps: lists are unioned across events, and past this the oldest
/// items give way to the newest.
pub const MAX_LIST_ITEMS: usize = 100;

/// Most distinct values a most-frequent trait counts: past this, a new value takes the place of
/// the least counted one, with its count plus one (the Space-Saving algorithm, whose counts
/// over-estimate by at most the count of the value replaced), so the most frequent values of a
/// stream stay counted in bounded space.
pub const MAX_COUNTED_VALUES: usize = 100;

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
    pub traits: litemap::LiteMap<String, TraitValue>,
    /// The earliest event time.
    pub first_seen: OffsetDateTime,
    /// The latest event time.
    pub last_seen: OffsetDateTime,
    /// Events per name (`track` events by `event`; others by type, e.g. `page`).
    pub event_counts: litemap::LiteMap<String, u64>,
    /// Sessions: runs of events without a gap longer than the session timeout.
    pub sessions: u64,
    /// Configured aggregates by name.
    pub aggregates: BTreeMap<String, Value>,
    /// For `last` aggregates: the time of the event that set each.
    pub last_at: BTreeMap<String, OffsetDateTime>,
    /// Events whose name was past [`ProfileConfig::max_event_names`].
    pub other_events: u64,
    /// Trait values not kept: past [`ProfileConfig::max_traits`] or
    /// [`ProfileConfig::max_trait_bytes`].
    pub refused_traits: u64,
    /// What the computed traits and audience event conditions count, by store
    /// ([`ProfileConfig::store`]).
    pub series: SeriesSet,
    /// The latest consent preferences (`context.consent.categoryPreferences`): when they were
    /// sent (ms), and each category's choice.
    pub consent: Option<(i64, BTreeMap<String, bool>)>,
    /// What segmentation last made of the profile.
    pub segment: Segmented,
}

/// The name a profile counts an event under: a track event's `event`, else its type (`page`,
/// `identify`, ...).
pub fn counted_name<'e>(event: &'e Event<'_>) -> std::borrow::Cow<'e, str> {
    match event.kind() {
        EventType::Track => event
            .event_name()
            .unwrap_or(std::borrow::Cow::Borrowed("track")),
        other => std::borrow::Cow::Borrowed(other.as_str()),
    }
}

/// Most consent categories a profile keeps.
pub const MAX_CONSENT_CATEGORIES: usize = 50;

/// Longest consent category kept, in bytes (a category is a short name).
const MAX_CONSENT_CATEGORY_BYTES: usize = 100;

/// A profile's computed traits' values by name, each with whether it is approximate (a
/// sorted list: a profile has a handful, and names are shared with the compiled
/// configuration).
pub type ComputedValues = litemap::LiteMap<std::sync::Arc<str>, (serde_json::Value, bool)>;

/// The audiences a profile is in, by key, each with when it entered (ms).
pub type Memberships = litemap::LiteMap<std::sync::Arc<str>, i64>;

/// What segmentation last made of a profile: the computed traits' values and the audiences it
/// is in, as of a time, and when they can next change with the clock alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segmented {
    /// When it was last evaluated (ms).
    pub evaluated: i64,
    /// The computed traits' values then, by name (with whether each is approximate).
    pub values: ComputedValues,
    /// The audiences it is in, each with when it entered (ms).
    pub audiences: Memberships,
    /// When a value or a membership can next change without an event (ms): the profile's
    /// timer.
    pub next_check: Option<i64>,
}

/// The properties an event's series read, each read once (a dotted path inside
/// `properties`), without converting the rest.
#[derive(Default)]
struct Properties {
    read: Vec<(String, Option<serde_json::Value>)>,
}

impl Properties {
    fn get(&mut self, event: &Event<'_>, path: &str) -> Option<&serde_json::Value> {
        let at = if let Some(at) = self.read.iter().position(|(p, _)| p == path) {
            at
        } else {
            let value = event
                .object("properties")
                .and_then(|properties| property(&properties, path));
            self.read.push((path.to_owned(), value));
            self.read.len() - 1
        };
        self.read.get(at)?.1.as_ref()
    }
}

/// The value at a dotted path inside an object of an event.
fn property(object: &crate::json::Obj<'_>, path: &str) -> Option<serde_json::Value> {
    match path.split_once('.') {
        None => object.get(path).map(Node::to_value),
        Some((head, rest)) => property(&*object.get(head)?.as_object()?, rest),
    }
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
    /// Whether it may set traits (strict identity refuses an unproven event for an identified
    /// profile).
    pub(super) sets_traits: bool,
}

impl Profile {
    pub(crate) fn new(id: ProfileId, at: OffsetDateTime) -> Profile {
        Profile {
            id,
            traits: litemap::LiteMap::new(),
            first_seen: at,
            last_seen: at,
            event_counts: litemap::LiteMap::new(),
            sessions: 0,
            aggregates: BTreeMap::new(),
            last_at: BTreeMap::new(),
            other_events: 0,
            refused_traits: 0,
            series: SeriesSet::default(),
            consent: None,
            segment: Segmented::default(),
        }
    }

    pub(super) fn apply(&mut self, event: &Event<'_>, fact: &Fact<'_>, config: &ProfileConfig) {
        let timeout = Duration::minutes(config.session_timeout_minutes);
        let before = self.event_counts.values().sum::<u64>() + self.other_events;
        if before == 0 || fact.at > self.last_seen + timeout || fact.at < self.first_seen - timeout
        {
            self.sessions += 1;
        }
        self.first_seen = self.first_seen.min(fact.at);
        self.last_seen = self.last_seen.max(fact.at);
        let kind = event.kind();
        let name = counted_name(event);
        let name = name.as_ref();
        self.count_events(name, 1, config);
        if fact.sets_traits {
            event.for_each_traits(|source| {
                for (key, value) in source.iter() {
                    let rule = config.traits.get(key.as_ref()).cloned().unwrap_or_default();
                    self.set_trait(key.as_ref(), value, fact, &rule, config);
                }
            });
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
        self.count_series(event, name, fact, config);
        self.read_consent(event, fact);
    }

    /// Counts the event in the computed traits and audience conditions that read it.
    fn count_series(
        &mut self,
        event: &Event<'_>,
        name: &str,
        fact: &Fact<'_>,
        config: &ProfileConfig,
    ) {
        let mut properties = Properties::default();
        let at = unix_millis(fact.at);
        for (position, def) in config.stores_of_event(name) {
            let mut passes = |filters: &[Filter]| {
                filters.iter().all(|f| {
                    let value = properties.get(event, &f.property);
                    f.op.holds(value, &f.value)
                })
            };
            if def.then.is_some() {
                let (first, second) = def.steps(name, &mut passes);
                if first || second {
                    self.series.entry(position).add_step(
                        def,
                        at,
                        first,
                        second,
                        config.offset_millis(),
                    );
                }
                continue;
            }
            if !passes(&def.filters) {
                continue;
            }
            let value = if def.op.reads_property() {
                properties.get(event, &def.property)
            } else {
                None
            };
            self.series
                .entry(position)
                .add(def, value, at, self.sessions, config.offset_millis());
        }
    }

    /// Keeps the event's consent preferences if they are the latest.
    fn read_consent(&mut self, event: &Event<'_>, fact: &Fact<'_>) {
        let Some(context) = event.object("context") else {
            return;
        };
        let Some(consent) = context.get("consent").and_then(Node::as_object) else {
            return;
        };
        let Some(preferences) = consent.get("categoryPreferences").and_then(Node::as_object) else {
            return;
        };
        let at = unix_millis(fact.at);
        if self.consent.as_ref().is_some_and(|(seen, _)| *seen > at) {
            return;
        }
        let choices = preferences
            .iter()
            .filter(|(category, _)| category.len() <= MAX_CONSENT_CATEGORY_BYTES)
            .filter_map(|(category, choice)| {
                let choice = choice.to_value().as_bool()?;
                Some((category.to_string(), choice))
            })
            .take(MAX_CONSENT_CATEGORIES)
            .collect();
        self.consent = Some((at, choices));
    }

    /// Counts `n` events of `name`, or among the uncounted names once the profile counts
    /// [`ProfileConfig::max_event_names`].
    fn count_events(&mut self, name: &str, n: u64, config: &ProfileConfig) {
        if let Some(count) = self.event_counts.get_mut(name) {
            *count += n;
        } else if self.event_counts.len() < config.max_event_names {
            self.event_counts.insert(name.to_owned(), n);
        } else {
            self.other_events += n;
        }
    }

    fn set_trait(
        &mut self,
        key: &str,
        value: &Node<'_>,
        fact: &Fact<'_>,
        rule: &Survivorship,
        config: &ProfileConfig,
    ) {
        if value.kind() == Kind::Null {
            return;
        }
        let value = value.to_value();
        let full = !self.traits.contains_key(key) && self.traits.len() >= config.max_traits;
        if full || json_size(&value) > config.max_trait_bytes {
            self.refused_traits += 1;
            return;
        }
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
        for (position, series) in other.series {
            if let Some(def) = config.store(position) {
                self.series.entry(position).absorb(series, def);
            }
        }
        if other.consent.as_ref().map(|c| c.0) > self.consent.as_ref().map(|c| c.0) {
            self.consent = other.consent;
        }
        self.segment.evaluated = self.segment.evaluated.max(other.segment.evaluated);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.sessions += other.sessions;
        self.other_events += other.other_events;
        self.refused_traits += other.refused_traits;
        for (name, count) in other.event_counts {
            self.count_events(&name, count, config);
        }
        for (key, incoming) in other.traits {
            let rule = config.traits.get(&key).cloned().unwrap_or_default();
            let full = self.traits.len() >= config.max_traits;
            match self.traits.get_mut(&key) {
                None if full => self.refused_traits += 1,
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

/// Adds `n` sightings of `value` to a most-frequent trait's counts, in bounded space (see
/// [`MAX_COUNTED_VALUES`]): ties for the least counted go to the smallest value, so that every
/// platform keeps the same counts.
fn count_value(counts: &mut BTreeMap<String, u64>, value: String, n: u64) {
    count_capped(counts, value, n, MAX_COUNTED_VALUES);
}

/// The size of a value's JSON text, in bytes (strings without their escapes, which is close
/// enough for a limit of kilobytes).
fn json_size(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len() + 2,
        Value::Array(_) | Value::Object(_) => {
            serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// Chooses between the current value of a trait and an incoming one.
fn combine(current: &mut TraitValue, incoming: TraitValue, rule: &Survivorship) {
    let newer = (incoming.at, incoming.sequence) >= (current.at, current.sequence);
    if let (Value::Array(mine), Value::Array(theirs)) = (&mut current.value, &incoming.value) {
        // Lists are unioned, whatever the rule, up to the newest MAX_LIST_ITEMS.
        for item in theirs {
            if !mine.contains(item) {
                mine.push(item.clone());
            }
        }
        if let Some(excess) = mine.len().checked_sub(MAX_LIST_ITEMS) {
            mine.drain(..excess);
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
                count_value(&mut counts, incoming.value.to_string(), 1);
            } else {
                for (value, n) in &incoming.counts {
                    count_value(&mut counts, value.clone(), *n);
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
