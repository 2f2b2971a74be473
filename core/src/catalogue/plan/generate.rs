//! A tracking plan written from what the data map observed: one schema per event (its sources
//! together), each path with the JSON types it was seen with, required when every event carried
//! it, an `enum` of the values of a low-cardinality path that is not personal data, and the
//! `format` most of its strings have. Every event is `allow`; unplanned events are allowed.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Mode, PlannedEvent, Schema, TrackingPlan, Types, Unplanned};
use crate::catalogue::map::{DataMap, JsonType, PathEntry, PiiClass, Semantic, pii_of_name};

/// A format must be this share of a path's strings.
const FORMAT_SHARE: f64 = 0.95;

/// One event's count and paths, its sources together.
type Merged<'m> = (u64, BTreeMap<&'m str, PathEntry>);

/// The plan of what a map observed.
pub fn from_map(map: &DataMap) -> TrackingPlan {
    // Events of one type and name from several sources share one schema.
    let mut merged: BTreeMap<(&str, &str), Merged<'_>> = BTreeMap::new();
    for (key, entry) in &map.events {
        let slot = merged
            .entry((key.kind.as_str(), key.name.as_str()))
            .or_default();
        slot.0 += entry.count;
        for (path, stats) in &entry.paths {
            merge(slot.1.entry(path.as_str()).or_default(), stats);
        }
    }
    let events = merged
        .into_iter()
        .map(|((kind, name), (count, paths))| {
            let mut schema = Schema {
                types: Some(Types::One("object".to_owned())),
                ..Schema::default()
            };
            for (path, stats) in &paths {
                place(&mut schema, path, stats, &paths, count);
            }
            PlannedEvent {
                kind: kind.to_owned(),
                name: name.to_owned(),
                mode: Mode::Allow,
                schema,
            }
        })
        .collect();
    TrackingPlan {
        unplanned: Unplanned::Allow,
        events,
    }
}

/// Adds `other`'s counts to `into` (what a schema needs: counts, types, values, semantics).
fn merge(into: &mut PathEntry, other: &PathEntry) {
    into.count += other.count;
    for (a, b) in into.types.iter_mut().zip(other.types) {
        *a += b;
    }
    for (semantic, n) in &other.semantic {
        *into.semantic.entry(*semantic).or_default() += n;
    }
    for (kind, n) in &other.pii_values {
        *into.pii_values.entry(*kind).or_default() += n;
    }
    for (value, n) in &other.top.values {
        *into.top.values.entry(value.clone()).or_default() += n;
    }
    into.top.overflow |=
        other.top.overflow || into.top.values.len() > crate::catalogue::map::TopValues::MAX;
}

/// Puts the schema of one path (`properties.items[].sku`) in the event's schema; `paths` are
/// all of them (for the count of a path's parent), `events` the event's count.
fn place(
    schema: &mut Schema,
    path: &str,
    stats: &PathEntry,
    paths: &BTreeMap<&str, PathEntry>,
    events: u64,
) {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let parent = node(schema, parents);
    let (name, items) = match last.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*last, false),
    };
    // Required when every event that has the parent has it (not inside arrays).
    let parent_path = path.rsplit_once('.').map_or("", |(p, _)| p);
    let parent_count = match parent_path {
        "properties" | "traits" | "context.traits" => Some(events),
        p if p.contains("[]") => None,
        p => paths.get(p).map(|e| e.count),
    };
    if !items
        && !path.contains("[]")
        && parent_count.is_some_and(|n| stats.count >= n)
        && !parent.required.iter().any(|r| r == name)
    {
        parent.required.push(name.to_owned());
    }
    let mut member = parent.properties.entry(name.to_owned()).or_default();
    if items {
        member = member.items.get_or_insert_with(Box::default);
    }
    leaf(member, path, stats);
}

/// The schema under `segments` (created as objects on the way).
fn node<'s>(mut schema: &'s mut Schema, segments: &[&str]) -> &'s mut Schema {
    for segment in segments {
        if schema.types.is_none() {
            schema.types = Some(Types::One("object".to_owned()));
        }
        let (name, items) = match segment.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*segment, false),
        };
        schema = schema.properties.entry(name.to_owned()).or_default();
        if items {
            schema = schema.items.get_or_insert_with(Box::default);
        }
    }
    if schema.types.is_none() {
        schema.types = Some(Types::One("object".to_owned()));
    }
    schema
}

/// What a path's values say of its schema: types, an enum, a format.
fn leaf(schema: &mut Schema, path: &str, stats: &PathEntry) {
    let types: Vec<String> = JsonType::ALL
        .iter()
        .zip(stats.types)
        .filter(|(_, n)| *n > 0)
        .map(|(t, _)| t.name().to_owned())
        .collect();
    schema.types = match types.as_slice() {
        [] => schema.types.take(),
        [one] => Some(Types::One(one.clone())),
        _ => Some(Types::Many(types.clone())),
    };
    let strings = stats
        .types
        .get(JsonType::String.index())
        .copied()
        .unwrap_or(0);
    let only_strings = types.iter().all(|t| t == "string" || t == "null") && strings > 0;
    let personal = pii_of_name(path).is_some_and(|k| k.class() != PiiClass::Green)
        || !stats.pii_values.is_empty();
    let values = stats.top.values.len() as u64;
    if only_strings && !personal && !stats.top.overflow && values > 0 && stats.count >= 2 * values {
        let mut allowed: Vec<Value> = stats
            .top
            .values
            .keys()
            .map(|v| Value::String(v.clone()))
            .collect();
        // A null sent for the path is one of its values too.
        if types.iter().any(|t| t == "null") {
            allowed.push(Value::Null);
        }
        schema.allowed = Some(allowed);
    }
    let format = stats
        .semantic
        .iter()
        .max_by_key(|(_, n)| **n)
        .filter(|(_, n)| share(**n, strings) >= FORMAT_SHARE)
        .and_then(|(s, _)| match s {
            Semantic::Email => Some("email"),
            Semantic::DateTime => Some("date-time"),
            Semantic::Date => Some("date"),
            Semantic::Url => Some("uri"),
            Semantic::Uuid => Some("uuid"),
            _ => None,
        });
    if only_strings {
        schema.format = format.map(str::to_owned);
    }
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
