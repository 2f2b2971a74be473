//! The data map: what arrives, per source (`context.library.name`), per event (type and name:
//! a track's event, a page's or screen's name) and per property path (`properties.a.b`,
//! `traits.x`, `context.traits.x`; array items as `a[]`): volume per day, first and last seen,
//! fill rate, the distribution of JSON types (never locked to the first one), semantic types,
//! cardinality (a sketch), the values of enums, examples, personal data; and the quality flags
//! read from it ([`flags`]).
//!
//! The map is kept as events are applied ([`DataMap::observe`], by the unify step, which skips
//! the copies a retry made) and is bounded: at most [`MAX_EVENTS`] events, [`MAX_PATHS`] paths in
//! all and [`MAX_PATHS_PER_EVENT`] per event, each path a fixed-size summary; what the caps
//! leave out is counted, never silently dropped. Observing is a pure function of the events in
//! order, so the live map and a rebuild from the lake (which reads the objects in the order they
//! were applied) are the same.

mod detect;
mod flags;
mod privacy;
mod sketch;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::event::{Event, EventType};
use crate::json::{Node, Obj};

pub use detect::{JsonType, PiiClass, PiiKind, Semantic, mask, pii_of_name, semantic_of_text};
pub use flags::{Flag, FlagKind, flags};
pub use privacy::PiiView;
pub use sketch::{Distinct, TopValues};
pub use view::{EventView, MapView, PropertyView, SourceView, view};

/// Events (source, type, name) the map holds; more are counted in [`DataMap::other_events`].
pub const MAX_EVENTS: usize = 2_000;
/// Property paths the map holds in all.
pub const MAX_PATHS: usize = 20_000;
/// Property paths of one event.
pub const MAX_PATHS_PER_EVENT: usize = 300;
/// Days of daily volume kept.
pub const DAYS: i64 = 30;
/// Array items looked at per array, and levels of nesting followed.
const MAX_ITEMS: usize = 50;
const MAX_DEPTH: usize = 8;
/// Examples kept per path, and their length.
const EXAMPLES: usize = 3;
const EXAMPLE_LEN: usize = 80;
/// A timestamp this long after its arrival is in the future, this long before it in the past.
const FUTURE_MILLIS: i64 = 24 * 3_600_000;
const PAST_MILLIS: i64 = 365 * 24 * 3_600_000;
const DAY_MILLIS: i64 = 24 * 3_600_000;

/// An event of the map: where it came from, its type, its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    /// The sending library (`context.library.name`), `unknown` without one.
    pub source: String,
    /// The Spec type (`track`, `identify`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The track's event name, the page's or screen's name; empty for the other types.
    pub name: String,
}

/// What the map knows of one event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    /// Events seen.
    pub count: u64,
    /// First and last arrival (`receivedAt`), in milliseconds since the epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    /// Events per day (days since the epoch), the last [`DAYS`] days before the last arrival.
    pub days: BTreeMap<i64, u64>,
    /// Events whose `timestamp` is more than a day after their arrival, or a year before it,
    /// with the first such timestamp.
    #[serde(default)]
    pub future: u64,
    #[serde(default)]
    pub past: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_example: Option<String>,
    /// Its property paths.
    pub paths: BTreeMap<String, PathEntry>,
    /// Values of paths that the caps left out.
    #[serde(default)]
    pub other_paths: u64,
    /// Tracking plan violations the events were collected with (`context.braid.plan`), by
    /// path (empty for an unplanned event).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub violations: BTreeMap<String, ViolationCount>,
}

/// The violations of one path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationCount {
    /// By rule (`type`, `required`, ..., `unplanned`).
    pub rules: BTreeMap<String, u64>,
    /// How many were removed from their events (mode `omit`).
    #[serde(default)]
    pub omitted: u64,
}

/// What the map knows of one property path of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEntry {
    /// Events carrying it.
    pub count: u64,
    /// Events carrying it per day, as [`EventEntry::days`].
    pub days: BTreeMap<i64, u64>,
    /// Values seen, by JSON type (in the order of [`JsonType::ALL`]).
    pub types: [u64; 6],
    /// The first value of each type (as JSON text).
    pub type_examples: BTreeMap<JsonType, String>,
    /// String values by what they mean.
    pub semantic: BTreeMap<Semantic, u64>,
    /// Values that are personal data (or hold some: an email inside a note), by kind.
    pub pii_values: BTreeMap<PiiKind, u64>,
    /// Distinct values (of strings, numbers and booleans).
    pub distinct: Distinct,
    /// The values while they are few.
    pub top: TopValues,
    /// The first distinct values.
    pub examples: Vec<String>,
    /// Values that are one of the identifiers of the profile the event was applied to, by the
    /// identifier's type (`email`, `phone`, ...): evidence that the path could link people
    /// (an identity candidate). Paths unify reads identifiers from already are not counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub known_ids: BTreeMap<String, u64>,
}

/// The identifiers of the profile an event was applied to, for the map to count the values
/// that equal one of them ([`DataMap::observe_known`]).
#[derive(Debug)]
pub struct KnownIds<'a> {
    /// Lower-cased values (phones also as their digits), each with its type.
    values: std::collections::HashMap<String, &'a str>,
    /// Paths unify reads identifiers from (`traits.email`, ...): not candidates.
    skip: &'a BTreeSet<String>,
}

/// Identifiers of a profile compared, at most.
const MAX_KNOWN_IDS: usize = 64;

/// Phones are compared by their digits, at least this many.
const MIN_PHONE_DIGITS: usize = 7;

impl<'a> KnownIds<'a> {
    /// The identifiers `(type, normalised value)` of a profile; `skip` the paths that are
    /// identifiers already.
    pub fn new(
        identifiers: impl IntoIterator<Item = (&'a str, &'a str)>,
        skip: &'a BTreeSet<String>,
    ) -> KnownIds<'a> {
        let mut values = std::collections::HashMap::new();
        // Anonymous ids and browsers are no candidates' evidence (nobody copies them into a
        // property), and they are most of a busy profile's identifiers; the rest is bounded
        // by the types' limits, and here.
        let people = identifiers
            .into_iter()
            .filter(|(kind, _)| !matches!(*kind, "anonymous_id" | "browser"))
            .take(MAX_KNOWN_IDS);
        for (kind, value) in people {
            if kind == "phone" {
                let digits = digits(value);
                if digits.len() >= MIN_PHONE_DIGITS {
                    values.insert(digits, kind);
                }
            }
            values.insert(value.to_lowercase(), kind);
        }
        KnownIds { values, skip }
    }

    /// The type of the identifier `text` is, if it is one.
    fn kind_of(&self, text: &str) -> Option<&'a str> {
        if self.values.is_empty() || text.len() > 256 {
            return None;
        }
        let text = text.trim();
        if let Some(kind) = self.values.get(&text.to_lowercase()) {
            return Some(kind);
        }
        let digits = digits(text);
        let national = digits.trim_start_matches('0');
        if national.len() < MIN_PHONE_DIGITS
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || b" +-().".contains(&b))
        {
            return None;
        }
        // A national number matches the international one it ends.
        self.values
            .iter()
            .find(|(value, kind)| {
                **kind == "phone"
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && value.ends_with(national)
            })
            .map(|(_, kind)| *kind)
    }
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The failures of one reason (a validation or tracking plan code) the lake's `failed/` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    /// Events (or bodies) refused.
    pub count: u64,
    /// The last refusal's arrival, in milliseconds since the epoch.
    pub last_seen: i64,
    /// The first refusal's message (it names the field and the limit, never a value).
    pub example: String,
    /// Refusals by the event they were (`track Order Completed`), when the payload says.
    pub events: BTreeMap<String, u64>,
    /// Refusals of events beyond [`MAX_FAILURE_EVENTS`].
    pub other_events: u64,
}

/// Events named per failure reason, at most.
pub const MAX_FAILURE_EVENTS: usize = 50;

/// The data map of one workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataMap {
    /// Its events.
    pub events: BTreeMap<EventKey, EventEntry>,
    /// Events of names the map had no room for.
    pub other_events: u64,
    /// What `failed/` holds, by reason (code): the reasons are a fixed set, so this is
    /// bounded.
    #[serde(default)]
    pub failures: BTreeMap<String, FailureCount>,
    /// Paths held, over all events.
    #[serde(skip)]
    paths: usize,
    /// Events changed since [`DataMap::take_changed`].
    #[serde(skip)]
    changed: BTreeSet<EventKey>,
    /// Whether failures were counted since [`DataMap::take_changed`].
    #[serde(skip)]
    failures_changed: bool,
}

/// What a refused payload was, for the map: `track Order Completed`, `identify`, when it is a
/// JSON object with a Spec type (names cut as examples are).
fn failure_label(payload: &str) -> Option<String> {
    let value: Value = serde_json::from_str(payload).ok()?;
    let kind = value.get("type")?.as_str()?;
    let kind = EventType::parse(kind)?;
    let name = kind
        .name_field()
        .and_then(|field| value.get(field)?.as_str());
    Some(match name {
        Some(name) if !name.is_empty() => {
            format!("{} {}", kind.as_str(), truncate(name))
        }
        _ => kind.as_str().to_owned(),
    })
}

impl DataMap {
    /// A map of stored events.
    pub fn from_entries(entries: impl IntoIterator<Item = (EventKey, EventEntry)>) -> DataMap {
        let events: BTreeMap<EventKey, EventEntry> = entries.into_iter().collect();
        let paths = events.values().map(|e| e.paths.len()).sum();
        DataMap {
            events,
            paths,
            ..DataMap::default()
        }
    }

    /// The events changed since the last call (what a store writes back).
    pub fn take_changed(&mut self) -> Vec<(EventKey, &EventEntry)> {
        self.failures_changed = false;
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|key| {
                let entry = self.events.get(&key)?;
                Some((key, entry))
            })
            .collect()
    }

    /// Paths held, over all events.
    pub fn path_count(&self) -> usize {
        self.paths
    }

    /// About how many bytes of memory the map holds (its strings, counters and sketches).
    pub fn approximate_bytes(&self) -> usize {
        const DAY: usize = 16;
        let strings = |values: &mut dyn Iterator<Item = &String>| -> usize {
            values.map(|s| s.capacity() + 24).sum()
        };
        self.events
            .iter()
            .map(|(key, entry)| {
                let paths: usize = entry
                    .paths
                    .iter()
                    .map(|(path, stats)| {
                        path.capacity()
                            + std::mem::size_of::<PathEntry>()
                            + stats.days.len() * DAY
                            + (stats.semantic.len() + stats.pii_values.len()) * DAY
                            + stats.distinct.heap_bytes()
                            + strings(&mut stats.top.values.keys())
                            + stats.top.values.len() * 8
                            + strings(&mut stats.examples.iter())
                            + strings(&mut stats.type_examples.values())
                    })
                    .sum();
                key.source.capacity()
                    + key.kind.capacity()
                    + key.name.capacity()
                    + std::mem::size_of::<EventEntry>()
                    + entry.days.len() * DAY
                    + paths
            })
            .sum()
    }

    /// Counts an event.
    pub fn observe(&mut self, event: &Event<'_>) {
        self.observe_known(event, None);
    }

    /// Counts one line of a `failed/` object (a failure record); whether it was one.
    pub fn observe_failure(&mut self, line: &[u8]) -> bool {
        let Some(record) = super::lake::FailureRecord::read(line) else {
            return false;
        };
        let at = record
            .received_at
            .as_deref()
            .and_then(|at| crate::timestamp::parse(at).ok())
            .map_or(0, millis);
        let label = record.payload.as_deref().and_then(failure_label);
        let failure = self.failures.entry(record.code).or_default();
        failure.count += 1;
        failure.last_seen = failure.last_seen.max(at);
        if failure.example.is_empty() {
            failure.example = truncate(&record.message);
        }
        match label {
            Some(label)
                if failure.events.contains_key(&label)
                    || failure.events.len() < MAX_FAILURE_EVENTS =>
            {
                *failure.events.entry(label).or_default() += 1;
            }
            _ => failure.other_events += 1,
        }
        self.failures_changed = true;
        true
    }

    /// Whether failures were counted since [`DataMap::take_changed`].
    pub fn failures_changed(&self) -> bool {
        self.failures_changed
    }

    /// [`DataMap::observe`], counting the values that are identifiers of the event's profile.
    pub fn observe_known(&mut self, event: &Event<'_>, known: Option<&KnownIds<'_>>) {
        let key = key_of(event);
        if !self.events.contains_key(&key) && self.events.len() >= MAX_EVENTS {
            self.other_events += 1;
            return;
        }
        let arrived = event
            .time_field("receivedAt")
            .or_else(|| event.time_field("timestamp"))
            .map(millis);
        let timestamp = event.time_field("timestamp").map(millis);
        let room = MAX_PATHS.saturating_sub(self.paths);
        let entry = self.events.entry(key.clone()).or_default();
        let before = entry.paths.len();
        entry.count_event(arrived, timestamp, event.str_field("timestamp").as_deref());
        let day = arrived.map(|at| at.div_euclid(DAY_MILLIS));
        let mut walk = Walk {
            entry,
            room,
            day,
            seen: BTreeSet::new(),
            known,
        };
        for (root, object) in roots(event) {
            for (name, node) in object.iter() {
                let value = node.to_value();
                walk.value(&format!("{root}.{name}"), &value, 0);
            }
        }
        count_violations(walk.entry, event);
        let after = walk.entry.paths.len();
        self.paths += after - before;
        self.changed.insert(key);
    }
}

impl EventEntry {
    fn count_event(&mut self, arrived: Option<i64>, timestamp: Option<i64>, written: Option<&str>) {
        self.count += 1;
        if let Some(at) = arrived {
            if self.first_seen == 0 || at < self.first_seen {
                self.first_seen = at;
            }
            self.last_seen = self.last_seen.max(at);
            add_day(&mut self.days, at.div_euclid(DAY_MILLIS), self.last_seen);
            if let Some(timestamp) = timestamp {
                let skewed = if timestamp > at + FUTURE_MILLIS {
                    Some(&mut self.future)
                } else if timestamp < at - PAST_MILLIS {
                    Some(&mut self.past)
                } else {
                    None
                };
                if let Some(count) = skewed {
                    *count += 1;
                    if self.skew_example.is_none() {
                        self.skew_example = written.map(str::to_owned);
                    }
                }
            }
        }
    }
}

/// One day more in a daily count, the days more than [`DAYS`] before `last` dropped.
fn add_day(days: &mut BTreeMap<i64, u64>, day: i64, last: i64) {
    let last_day = last.div_euclid(DAY_MILLIS);
    if day > last_day - DAYS {
        *days.entry(day).or_default() += 1;
    }
    while let Some((&first, _)) = days.first_key_value() {
        if first > last_day - DAYS {
            break;
        }
        days.pop_first();
    }
}

/// The walk of one event's values into its entry.
struct Walk<'e> {
    entry: &'e mut EventEntry,
    /// Paths the workspace still has room for.
    room: usize,
    day: Option<i64>,
    /// Paths this event carried (each counts once per event).
    seen: BTreeSet<String>,
    /// The identifiers of the event's profile.
    known: Option<&'e KnownIds<'e>>,
}

impl Walk<'_> {
    fn value(&mut self, path: &str, value: &Value, depth: usize) {
        self.record(path, value);
        match value {
            Value::Object(members) if depth < MAX_DEPTH => {
                for (name, member) in members {
                    self.value(&format!("{path}.{name}"), member, depth + 1);
                }
            }
            Value::Array(items) if depth < MAX_DEPTH => {
                let path = format!("{path}[]");
                for item in items.iter().take(MAX_ITEMS) {
                    self.value(&path, item, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, path: &str, value: &Value) {
        let entry = &mut *self.entry;
        if !entry.paths.contains_key(path) {
            if self.room == 0 || entry.paths.len() >= MAX_PATHS_PER_EVENT {
                entry.other_paths += 1;
                return;
            }
            self.room -= 1;
        }
        let last_seen = entry.last_seen;
        let stats = entry.paths.entry(path.to_owned()).or_default();
        if !self.seen.contains(path) {
            self.seen.insert(path.to_owned());
            stats.count += 1;
            if let Some(day) = self.day {
                add_day(&mut stats.days, day, last_seen);
            }
        }
        stats.observe(path, value);
        if let Some(known) = self.known
            && !known.skip.contains(path)
        {
            let text = match value {
                Value::String(text) => Some(std::borrow::Cow::Borrowed(text.as_str())),
                Value::Number(number) => Some(std::borrow::Cow::Owned(number.to_string())),
                _ => None,
            };
            if let Some(kind) = text.and_then(|text| known.kind_of(&text)) {
                *stats.known_ids.entry(kind.to_owned()).or_default() += 1;
            }
        }
    }
}

impl PathEntry {
    fn observe(&mut self, path: &str, value: &Value) {
        let kind = JsonType::of(value);
        if let Some(count) = self.types.get_mut(kind.index()) {
            *count += 1;
        }
        let text = match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
            _ => None,
        };
        self.type_examples
            .entry(kind)
            .or_insert_with(|| match &text {
                Some(text) if kind == JsonType::String => truncate(text),
                _ => truncate(&value.to_string()),
            });
        let Some(text) = text else { return };
        if kind == JsonType::String {
            let semantic = semantic_of_text(path, &text);
            if let Some(semantic) = semantic {
                *self.semantic.entry(semantic).or_default() += 1;
            }
            if let Some(pii) = semantic
                .and_then(Semantic::pii)
                .or_else(|| detect::pii_inside(&text))
            {
                *self.pii_values.entry(pii).or_default() += 1;
            }
        }
        self.distinct.insert(text.as_bytes());
        self.top.insert(&text);
        if self.examples.len() < EXAMPLES {
            let example = truncate(&text);
            if !self.examples.contains(&example) {
                self.examples.push(example);
            }
        }
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(EXAMPLE_LEN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Violations per event kept, at most (as the plan reports at most 20 per event).
const MAX_VIOLATION_PATHS: usize = 300;

/// Counts the violations an event was collected with (`context.braid.plan`).
fn count_violations(entry: &mut EventEntry, event: &Event<'_>) {
    let Some(marks) = event
        .object("context")
        .and_then(|context| {
            context
                .get(crate::event::BRAID_CONTEXT)?
                .as_object()
                .map(std::borrow::Cow::into_owned)
        })
        .and_then(|braid| braid.get(crate::event::PLAN_CONTEXT).map(Node::to_value))
    else {
        return;
    };
    for mark in marks.as_array().into_iter().flatten() {
        let text = |key: &str| mark.get(key).and_then(Value::as_str).unwrap_or_default();
        let path = text("path");
        if !entry.violations.contains_key(path) && entry.violations.len() >= MAX_VIOLATION_PATHS {
            continue;
        }
        let count = entry.violations.entry(path.to_owned()).or_default();
        *count.rules.entry(text("rule").to_owned()).or_default() += 1;
        if text("action") == "omitted" {
            count.omitted += 1;
        }
    }
}

/// The map's key of an event.
fn key_of(event: &Event<'_>) -> EventKey {
    let kind = event.kind();
    let name = event.name();
    let source = event
        .object("context")
        .and_then(|context| {
            let library = context.get("library")?.as_object()?;
            library.text("name").map(std::borrow::Cow::into_owned)
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    EventKey {
        source,
        kind: kind.as_str().to_owned(),
        name: name.map(std::borrow::Cow::into_owned).unwrap_or_default(),
    }
}

/// The objects of an event whose members are its properties: `properties`, `traits` and
/// `context.traits`.
fn roots<'a>(event: &Event<'a>) -> Vec<(&'static str, Obj<'a>)> {
    let mut roots = Vec::new();
    for root in ["properties", "traits"] {
        if let Some(object) = event.object(root) {
            roots.push((root, object.into_owned()));
        }
    }
    if let Some(context) = event.object("context")
        && let Some(traits) = context.get("traits").and_then(Node::as_object)
    {
        roots.push(("context.traits", traits.into_owned()));
    }
    roots
}
