//! Quality flags read from the map, each with a count and an example: a path seen with two
//! types, near-duplicate event or property names, a fill rate that dropped, personal data where
//! its name does not say so, timestamps far from their arrival, and what the caps left out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::detect::{PiiClass, words};
use super::privacy::{pii_view, show};
use super::{DAY_MILLIS, DataMap, EventEntry, EventKey, JsonType, PathEntry};

/// Days of the recent window of the fill-rate check, and the volumes it needs.
const RECENT_DAYS: i64 = 7;
const MIN_BEFORE: u64 = 100;
const MIN_RECENT: u64 = 50;

/// A kind of quality flag, the most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Red personal data (a card number, a secret) was seen.
    RedPii,
    /// Personal data in a path whose name does not say so (an email inside a note).
    UnexpectedPii,
    /// A path seen with more than one JSON type (nulls aside).
    TypeDrift,
    /// Events were refused (`failed/`): invalid, or blocked by the tracking plan.
    ValidationFailure,
    /// Events broke the tracking plan and were collected (modes `allow`, `omit`).
    PlanViolation,
    /// Events the tracking plan does not list were collected.
    UnplannedEvent,
    /// A path's fill rate in the last 7 days is under half of what it was before.
    FillRateDrop,
    /// Two event names (or two property names of an event) that are one name written twice.
    NearDuplicateName,
    /// Timestamps more than a day after their arrival.
    FutureTimestamp,
    /// Timestamps more than a year before their arrival.
    PastTimestamp,
    /// Events or paths the map had no room for.
    OverCapacity,
}

/// One quality flag.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// What it is.
    pub kind: FlagKind,
    /// The event it is about (for a near-duplicate event name: the first of the two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventKey>,
    /// The path, or for near duplicates the other name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How many values or events it concerns.
    pub count: u64,
    /// An example (masked when personal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// What it means, in a sentence.
    pub message: String,
}

/// The flags of a map, the most serious first.
pub fn flags(map: &DataMap) -> Vec<Flag> {
    let mut flags = Vec::new();
    for (key, entry) in &map.events {
        path_flags(key, entry, &mut flags);
        event_flags(key, entry, &mut flags);
    }
    near_duplicate_events(map, &mut flags);
    for (code, failure) in &map.failures {
        let most = failure.events.iter().max_by_key(|(_, n)| **n);
        flags.push(Flag {
            kind: FlagKind::ValidationFailure,
            event: None,
            path: Some(code.clone()),
            count: failure.count,
            example: Some(failure.example.clone()),
            message: format!(
                "{} events were refused ({code}){}, each kept in failed/{}",
                failure.count,
                most.map(|(label, n)| format!(", {n} of them {label}"))
                    .unwrap_or_default(),
                if super::super::replay::REPLAYABLE.contains(&code.as_str()) {
                    "; braid replay lands those the plan in force allows"
                } else {
                    ""
                }
            ),
        });
    }
    if map.other_events > 0 {
        flags.push(Flag {
            kind: FlagKind::OverCapacity,
            event: None,
            path: None,
            count: map.other_events,
            example: None,
            message: format!(
                "{} events had names beyond the map's {} events: they are counted, not described",
                map.other_events,
                super::MAX_EVENTS
            ),
        });
    }
    flags.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.count.cmp(&a.count)));
    flags
}

fn path_flags(key: &EventKey, entry: &EventEntry, flags: &mut Vec<Flag>) {
    let flag = |kind, path: &str, count, example: Option<String>, message: String| Flag {
        kind,
        event: Some(key.clone()),
        path: Some(path.to_owned()),
        count,
        example,
        message,
    };
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for (path, stats) in &entry.paths {
        let pii = pii_view(path, stats);
        let shown = |text: &str| {
            show(
                text,
                pii.class,
                pii.by_name.or(pii.in_values.keys().next().copied()),
            )
        };
        let example = stats.examples.first().map(|e| shown(e));
        if pii.class == PiiClass::Red {
            let count = pii.in_values.values().sum::<u64>().max(stats.count);
            flags.push(flag(
                FlagKind::RedPii,
                path,
                count,
                example.clone(),
                format!("{path} holds red personal data: mask or drop it at the source"),
            ));
        } else if pii.by_name.is_none() && !pii.in_values.is_empty() {
            let count = pii.in_values.values().sum();
            let kinds: Vec<&str> = pii.in_values.keys().map(|k| k.name()).collect();
            flags.push(flag(
                FlagKind::UnexpectedPii,
                path,
                count,
                example.clone(),
                format!(
                    "{count} values of {path} hold personal data ({})",
                    kinds.join(", ")
                ),
            ));
        }
        if let Some((count, minority, message)) = type_drift(path, stats) {
            flags.push(flag(
                FlagKind::TypeDrift,
                path,
                count,
                stats.type_examples.get(&minority).map(|e| shown(e)),
                message,
            ));
        }
        if let Some((before, recent)) = fill_drop(entry, &stats.days) {
            flags.push(flag(
                FlagKind::FillRateDrop,
                path,
                stats.count,
                None,
                format!(
                    "{path} was on {} of {} events before the last {RECENT_DAYS} days, and is on {} since",
                    percent_of(before),
                    event_label(key),
                    percent_of(recent)
                ),
            ));
        }
        let normalized = normalize_path(path);
        if let Some(other) = names.get(&normalized) {
            flags.push(flag(
                FlagKind::NearDuplicateName,
                other,
                stats.count,
                Some(path.clone()),
                format!("{other} and {path} look like one property written two ways"),
            ));
        } else {
            names.insert(normalized, path);
        }
    }
    if entry.other_paths > 0 {
        flags.push(Flag {
            kind: FlagKind::OverCapacity,
            event: Some(key.clone()),
            path: None,
            count: entry.other_paths,
            example: None,
            message: format!(
                "{} values of {} were in paths beyond the map's capacity",
                entry.other_paths,
                event_label(key)
            ),
        });
    }
}

/// A path seen with more than one type (nulls aside): the values of the rarest type, that
/// type, and the shares of all.
fn type_drift(path: &str, stats: &PathEntry) -> Option<(u64, JsonType, String)> {
    let seen: Vec<(JsonType, u64)> = JsonType::ALL
        .iter()
        .zip(stats.types)
        .filter(|(t, n)| **t != JsonType::Null && *n > 0)
        .map(|(t, n)| (*t, n))
        .collect();
    if seen.len() < 2 {
        return None;
    }
    let total: u64 = seen.iter().map(|(_, n)| n).sum();
    let (minority, count) = seen.iter().min_by_key(|(_, n)| *n).copied()?;
    let shares: Vec<String> = seen
        .iter()
        .map(|(t, n)| format!("{} {}", percent(*n, total), t.name()))
        .collect();
    Some((
        count,
        minority,
        format!("{path} is seen as {}", shares.join(", ")),
    ))
}

fn event_flags(key: &EventKey, entry: &EventEntry, flags: &mut Vec<Flag>) {
    for (path, count) in &entry.violations {
        let total: u64 = count.rules.values().sum();
        let rules: Vec<String> = count
            .rules
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let (kind, path, message) = if path.is_empty() {
            (
                FlagKind::UnplannedEvent,
                None,
                format!(
                    "{total} {} events are not in the tracking plan",
                    event_label(key)
                ),
            )
        } else {
            let omitted = if count.omitted > 0 {
                format!(", {} removed", count.omitted)
            } else {
                String::new()
            };
            (
                FlagKind::PlanViolation,
                Some(path.clone()),
                format!(
                    "{path} of {} broke the tracking plan {total} times ({}{omitted})",
                    event_label(key),
                    rules.join(", ")
                ),
            )
        };
        flags.push(Flag {
            kind,
            event: Some(key.clone()),
            path,
            count: total,
            example: None,
            message,
        });
    }
    for (kind, count, when) in [
        (
            FlagKind::FutureTimestamp,
            entry.future,
            "more than a day after",
        ),
        (
            FlagKind::PastTimestamp,
            entry.past,
            "more than a year before",
        ),
    ] {
        if count > 0 {
            flags.push(Flag {
                kind,
                event: Some(key.clone()),
                path: Some("timestamp".to_owned()),
                count,
                example: entry.skew_example.clone(),
                message: format!(
                    "{count} {} events have a timestamp {when} they arrived",
                    event_label(key)
                ),
            });
        }
    }
}

/// The fill rate before the recent window and in it, when it dropped to under half.
fn fill_drop(entry: &EventEntry, path_days: &BTreeMap<i64, u64>) -> Option<(f64, f64)> {
    let last_day = entry.last_seen.div_euclid(DAY_MILLIS);
    let split = |days: &BTreeMap<i64, u64>| {
        days.iter().fold((0, 0), |(before, recent), (&day, &n)| {
            if day > last_day - RECENT_DAYS {
                (before, recent + n)
            } else {
                (before + n, recent)
            }
        })
    };
    let (events_before, events_recent) = split(&entry.days);
    let (path_before, path_recent) = split(path_days);
    if events_before < MIN_BEFORE || events_recent < MIN_RECENT {
        return None;
    }
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let (before, recent) = (
        path_before as f64 / events_before as f64,
        path_recent as f64 / events_recent as f64,
    );
    (before >= 0.2 && recent < before / 2.0).then_some((before, recent))
}

/// Track event names that are one name written two ways: equal once case, spaces and
/// punctuation are set aside (`Order Completed`, `order_completed`), a suffix of up to two
/// letters apart (`Order Complete`), or one typo apart in names of eight letters or more.
fn near_duplicate_events(map: &DataMap, flags: &mut Vec<Flag>) {
    let mut names: BTreeMap<&str, (u64, &EventKey)> = BTreeMap::new();
    for (key, entry) in &map.events {
        if key.kind == "track" && !key.name.is_empty() {
            let slot = names.entry(key.name.as_str()).or_insert((0, key));
            slot.0 += entry.count;
        }
    }
    let names: Vec<(&str, String, u64, &EventKey)> = names
        .into_iter()
        .map(|(name, (count, key))| (name, normalize(name), count, key))
        .collect();
    for (i, (a, norm_a, _, key_a)) in names.iter().enumerate() {
        for (b, norm_b, count_b, _) in names.iter().skip(i + 1) {
            if one_name(norm_a, norm_b) {
                flags.push(Flag {
                    kind: FlagKind::NearDuplicateName,
                    event: Some((*key_a).clone()),
                    path: None,
                    count: *count_b,
                    example: Some((*b).to_owned()),
                    message: format!(
                        "the events {a:?} and {b:?} look like one event named two ways"
                    ),
                });
            }
        }
    }
}

fn one_name(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let suffix = long.starts_with(short) && long.len() - short.len() <= 2 && short.len() >= 5;
    suffix || short.len() >= 8 && strsim::levenshtein(a, b) <= 1
}

/// A path with each segment's name normalised, its array marks kept (`items[]` and `items`
/// are two paths, `orderId` and `order_id` one).
fn normalize_path(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            let bare = segment.trim_end_matches("[]");
            let marks = &segment[bare.len()..];
            format!("{}{marks}", normalize(bare))
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A name with case, spaces and punctuation set aside: its words, joined.
fn normalize(name: &str) -> String {
    words(name).concat()
}

fn event_label(key: &EventKey) -> String {
    if key.name.is_empty() {
        key.kind.clone()
    } else {
        format!("{:?}", key.name)
    }
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn percent(part: u64, whole: u64) -> String {
    percent_of(part as f64 / whole.max(1) as f64)
}

fn percent_of(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}
