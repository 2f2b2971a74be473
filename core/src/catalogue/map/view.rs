//! The map as it is shown (the catalogue API, `braid catalogue`): shares rather than counts,
//! dates rather than day numbers, and personal data masked everywhere.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::flags::{Flag, flags};
use super::privacy::{PiiView, main_kind, pii_view, show};
use super::{DAY_MILLIS, DataMap, EventEntry, EventKey, JsonType, PathEntry};

/// A share of strings a semantic type must reach to be the path's.
const SEMANTIC_SHARE: f64 = 0.8;

/// The whole map, shown.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapView {
    /// The quality flags, the most serious first.
    pub flags: Vec<Flag>,
    /// Each source, with its volume.
    pub sources: Vec<SourceView>,
    /// Each event, with its properties.
    pub events: Vec<EventView>,
    /// Events of names the map had no room for.
    pub other_events: u64,
    /// Property paths held.
    pub paths: usize,
    /// Paths whose values are identifiers of the profiles their events were applied to, the
    /// strongest evidence first.
    pub identity_candidates: Vec<IdentityCandidate>,
}

/// A path that could link people: its values are, often, identifiers the identity graph
/// already holds for the same person.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityCandidate {
    /// The path (`traits.customer_email`), over every event and source that carries it.
    pub path: String,
    /// Values seen.
    pub values: u64,
    /// Of them, identifiers of the event's profile.
    pub known: u64,
    /// `known / values`.
    pub share: f64,
    /// The type of identifier they matched most (`email`).
    pub identifier_type: String,
    /// The configuration that makes unify link by it, for a trait
    /// (`[unify.identity.trait_identifiers] customer_email = "email"`); `None` for a property,
    /// which unify does not read identifiers from.
    pub proposal: Option<String>,
}

/// Identity candidates need this many values that are known identifiers...
const MIN_KNOWN: u64 = 3;
/// ...and this share of the path's values.
const MIN_SHARE: f64 = 0.2;
/// Identity candidates shown, at most.
const MAX_CANDIDATES: usize = 20;

/// A source of events.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    /// `context.library.name`.
    pub source: String,
    /// Events it sent.
    pub events: u64,
    /// Distinct events (type and name) it sent.
    pub event_names: usize,
    /// Its last event's arrival.
    pub last_seen: String,
}

/// An event, shown.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Where it comes from.
    pub source: String,
    /// Its Spec type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its name (empty for identify, group and alias).
    pub name: String,
    /// Events seen.
    pub count: u64,
    /// First and last arrival.
    pub first_seen: String,
    pub last_seen: String,
    /// Events per day (`YYYY-MM-DD`), the last 30 days.
    pub per_day: BTreeMap<String, u64>,
    /// Its properties.
    pub properties: Vec<PropertyView>,
    /// Values of paths the caps left out.
    pub other_paths: u64,
    /// Tracking plan violations it was collected with, by path (empty: unplanned).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub violations: BTreeMap<String, super::ViolationCount>,
}

/// A property path, shown.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyView {
    /// `properties.a.b`, `traits.x`, `a[]` for array items.
    pub path: String,
    /// Events carrying it.
    pub count: u64,
    /// Events carrying it ÷ events of its event.
    pub fill_rate: f64,
    /// Share of its values by JSON type.
    pub types: BTreeMap<&'static str, f64>,
    /// What its values mean: a semantic type most string values have, or `enum`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_type: Option<&'static str>,
    /// Share of its string values by semantic type.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub semantic: BTreeMap<&'static str, f64>,
    /// Estimated distinct values.
    pub distinct: u64,
    /// Its values and their counts, while they are few (masked when personal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_values: Option<BTreeMap<String, u64>>,
    /// A few values (masked when personal).
    pub examples: Vec<String>,
    /// Whether it is personal data: its class and kinds (by name, by value).
    pub pii: PiiView,
}

impl MapView {
    /// The events of type `kind` named `name`, from every source, with only the property
    /// `path` when one is given (events without it left out). Without a type, the events
    /// named `name`, or without a name and of the type `name` (`identify`).
    pub fn select(self, kind: Option<&str>, name: &str, path: Option<&str>) -> Vec<EventView> {
        let mut events: Vec<EventView> = self
            .events
            .into_iter()
            .filter(|e| match kind {
                Some(kind) => e.kind == kind && e.name == name,
                None => e.name == name || e.name.is_empty() && e.kind == name,
            })
            .collect();
        if let Some(path) = path {
            for event in &mut events {
                event.properties.retain(|p| p.path == path);
            }
            events.retain(|e| !e.properties.is_empty());
        }
        events
    }

    /// The map without the events' properties: each event says how many it has.
    pub fn summary(mut self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .events
            .iter_mut()
            .map(|event| {
                let properties = std::mem::take(&mut event.properties).len();
                let mut value = serde_json::to_value(&*event).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("properties".to_owned(), properties.into());
                }
                value
            })
            .collect();
        serde_json::json!({
            "flags": self.flags,
            "sources": self.sources,
            "events": events,
            "otherEvents": self.other_events,
            "paths": self.paths,
            "identityCandidates": self.identity_candidates,
        })
    }
}

/// The map, shown.
pub fn view(map: &DataMap) -> MapView {
    let mut sources: BTreeMap<&str, SourceView> = BTreeMap::new();
    for (key, entry) in &map.events {
        let source = sources
            .entry(key.source.as_str())
            .or_insert_with(|| SourceView {
                source: key.source.clone(),
                events: 0,
                event_names: 0,
                last_seen: String::new(),
            });
        source.events += entry.count;
        source.event_names += 1;
        let last = date_time(entry.last_seen);
        if last > source.last_seen {
            source.last_seen = last;
        }
    }
    MapView {
        flags: flags(map),
        sources: sources.into_values().collect(),
        events: map
            .events
            .iter()
            .map(|(key, entry)| event_view(key, entry))
            .collect(),
        other_events: map.other_events,
        paths: map.path_count(),
        identity_candidates: identity_candidates(map),
    }
}

/// The paths whose values matched identifiers of their events' profiles, over every event.
fn identity_candidates(map: &DataMap) -> Vec<IdentityCandidate> {
    let mut paths: BTreeMap<&str, (u64, BTreeMap<&str, u64>)> = BTreeMap::new();
    for entry in map.events.values() {
        for (path, stats) in &entry.paths {
            let (values, known) = paths.entry(path.as_str()).or_default();
            *values += stats.count;
            for (kind, count) in &stats.known_ids {
                *known.entry(kind.as_str()).or_default() += count;
            }
        }
    }
    let mut candidates: Vec<IdentityCandidate> = paths
        .into_iter()
        .filter_map(|(path, (values, known))| {
            let (kind, _) = known.iter().max_by_key(|(_, n)| **n)?;
            let matched: u64 = known.values().sum();
            #[expect(clippy::cast_precision_loss, reason = "a share, for people")]
            let share = matched as f64 / values.max(1) as f64;
            (matched >= MIN_KNOWN && share >= MIN_SHARE).then(|| IdentityCandidate {
                path: path.to_owned(),
                values,
                known: matched,
                share: (share * 1000.0).round() / 1000.0,
                identifier_type: (*kind).to_owned(),
                proposal: path
                    .strip_prefix("traits.")
                    .or_else(|| path.strip_prefix("context.traits."))
                    .filter(|name| !name.contains(['.', '[']))
                    .map(|name| format!("[unify.identity.trait_identifiers] {name} = \"{kind}\"")),
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.share
            .total_cmp(&a.share)
            .then(b.known.cmp(&a.known))
            .then(a.path.cmp(&b.path))
    });
    candidates.truncate(MAX_CANDIDATES);
    candidates
}

fn event_view(key: &EventKey, entry: &EventEntry) -> EventView {
    EventView {
        source: key.source.clone(),
        kind: key.kind.clone(),
        name: key.name.clone(),
        count: entry.count,
        first_seen: date_time(entry.first_seen),
        last_seen: date_time(entry.last_seen),
        per_day: entry
            .days
            .iter()
            .map(|(&day, &count)| (date(day), count))
            .collect(),
        properties: entry
            .paths
            .iter()
            .map(|(path, stats)| property_view(path, stats, entry.count))
            .collect(),
        other_paths: entry.other_paths,
        violations: entry.violations.clone(),
    }
}

fn property_view(path: &str, stats: &PathEntry, events: u64) -> PropertyView {
    let values: u64 = stats.types.iter().sum();
    let types = JsonType::ALL
        .iter()
        .zip(stats.types)
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (t.name(), share(n, values)))
        .collect();
    let count_of = |t: JsonType| stats.types.get(t.index()).copied().unwrap_or(0);
    let strings = count_of(JsonType::String);
    let semantic: BTreeMap<&'static str, f64> = stats
        .semantic
        .iter()
        .map(|(s, &n)| (s.name(), share(n, strings)))
        .collect();
    let is_enum =
        strings > 0 && !stats.top.overflow && stats.count >= 2 * stats.distinct.estimate();
    let semantic_type = stats
        .semantic
        .iter()
        .max_by_key(|(_, n)| **n)
        .filter(|(_, n)| share(**n, strings) >= SEMANTIC_SHARE)
        .map(|(s, _)| s.name())
        .or(is_enum.then_some("enum"));
    let pii = pii_view(path, stats);
    let shown = |text: &str| show(text, pii.class, pii.by_name.or(main_kind(stats)));
    PropertyView {
        path: path.to_owned(),
        count: stats.count,
        fill_rate: share(stats.count, events),
        types,
        semantic_type,
        semantic,
        distinct: stats.distinct.estimate(),
        top_values: (!stats.top.overflow
            && strings + count_of(JsonType::Boolean) + count_of(JsonType::Number) > 0)
            .then(|| {
                // Masking may make two values one: their counts add up.
                let mut values = BTreeMap::new();
                for (value, &n) in &stats.top.values {
                    *values.entry(shown(value)).or_default() += n;
                }
                values
            }),
        examples: stats.examples.iter().map(|e| shown(e)).collect(),
        pii,
    }
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 1000.0).round() / 1000.0
}

pub(super) fn date_time(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn date(day: i64) -> String {
    date_time(day * DAY_MILLIS)
        .split('T')
        .next()
        .unwrap_or_default()
        .to_owned()
}
