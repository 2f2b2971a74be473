//! Evaluating a condition tree on one profile at a time: whether it holds, until when it holds
//! for sure without a new event (the profile's timer), and why (an explanation, condition by
//! condition, with the values that decided).
//!
//! The time until which a result holds is exact where the clock decides (a window that moves, a
//! date that ages) and a lower bound elsewhere: an `and` that is false stays false at least as
//! long as its first false condition does, whatever the others do, so a timer never fires late.
//! A timer may fire early (nothing changes then, and it is set again).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::condition::{Condition, Test};
use crate::timestamp;
use crate::unify::computed::{ComputedTrait, DAY_MILLIS, Series, path_value};
use crate::unify::{Profile, ProfileConfig, ProfileIds};

/// What a profile is evaluated against.
pub struct Ctx<'a> {
    /// Its identifiers.
    pub ids: &'a ProfileIds,
    /// The profile.
    pub profile: &'a Profile,
    /// How profiles are computed (the time zone).
    pub config: &'a ProfileConfig,
    /// The audiences and computed traits (the series conditions name, and their stores).
    pub segments: &'a super::Segments,
    /// The time (ms).
    pub now: i64,
    /// The audiences evaluated before this one: whether the profile is in each, and until when
    /// that holds.
    pub members: &'a dyn Members,
}

/// The audiences a condition can name, evaluated before it.
pub trait Members {
    /// Whether the profile is in the audience `key`, and until when that holds for sure;
    /// `None` when it was not evaluated.
    fn member(&self, key: &str) -> Option<(bool, Option<i64>)>;
}

impl Members for BTreeMap<String, (bool, Option<i64>)> {
    fn member(&self, key: &str) -> Option<(bool, Option<i64>)> {
        self.get(key).copied()
    }
}

/// A result: whether it holds, and the earliest time it can change without an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether it holds.
    pub holds: bool,
    /// When it can next change with the clock alone (ms).
    pub next: Option<i64>,
}

/// The state of a series that counted nothing.
fn empty_series() -> &'static Series {
    static EMPTY: std::sync::OnceLock<Series> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Series::default)
}

fn outcome(holds: bool, next: Option<i64>) -> Outcome {
    Outcome { holds, next }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Ctx<'_> {
    /// Whether `condition` holds, and until when for sure.
    pub fn evaluate(&self, condition: &Condition) -> Outcome {
        match condition {
            Condition::And(children) => self.combine(children, false),
            Condition::Or(children) => self.combine(children, true),
            Condition::Not(inner) => {
                let inner = self.evaluate(inner);
                outcome(!inner.holds, inner.next)
            }
            Condition::Trait { name, test } => self.trait_test(name, test),
            Condition::Computed {
                op, value, slot, ..
            } => {
                let Some((series, def)) = self.series_of(*slot) else {
                    return outcome(false, None);
                };
                let series = series.unwrap_or_else(|| empty_series());
                let offset = self.config.offset_millis();
                let computed = series.value(def, self.now, offset);
                outcome(
                    op.holds(Some(&computed.value), value),
                    series.next_change(def, self.now, offset),
                )
            }
            Condition::HasIdentifier(kind) => outcome(self.has_identifier(kind), None),
            Condition::Consent(category) => outcome(self.consents(category), None),
            Condition::Performed {
                def, count, slot, ..
            } => {
                let (n, next) = self.count(def, *slot);
                outcome(count.holds(n), next)
            }
            Condition::Member(key) => {
                let (holds, next) = self.members.member(key).unwrap_or((false, None));
                outcome(holds, next)
            }
        }
    }

    /// `and` (`any` false) and `or` (`any` true): the first child whose result decides the
    /// combination decides until when it holds; with none, every child does.
    fn combine(&self, children: &[Condition], any: bool) -> Outcome {
        let mut next = None;
        for child in children {
            let result = self.evaluate(child);
            if result.holds == any {
                return outcome(any, result.next);
            }
            next = earliest(next, result.next);
        }
        outcome(!any, next)
    }

    fn trait_value(&self, name: &str) -> Option<&Value> {
        let (key, rest) = match name.split_once('.') {
            Some((key, rest)) => (key, Some(rest)),
            None => (name, None),
        };
        let value = &self.profile.traits.get(key)?.value;
        match rest {
            Some(path) => path_value(value, path),
            None => Some(value),
        }
    }

    /// A trait's test.
    fn trait_test(&self, name: &str, test: &Test) -> Outcome {
        let value = self.trait_value(name);
        let time = || {
            value
                .and_then(Value::as_str)
                .and_then(|t| timestamp::parse(t).ok())
                .map(timestamp::unix_millis)
        };
        match test {
            Test::Compare(op, constant) => outcome(op.holds(value, constant), None),
            Test::WithinLastDays(days) => match time() {
                Some(t) => {
                    // In while now - days < t <= now: it enters at t and leaves at t + days.
                    let leaves = t.saturating_add(i64::from(*days) * DAY_MILLIS);
                    if t > self.now {
                        outcome(false, Some(t))
                    } else if self.now < leaves {
                        outcome(true, Some(leaves))
                    } else {
                        outcome(false, None)
                    }
                }
                None => outcome(false, None),
            },
            Test::Before(limit) => outcome(time().is_some_and(|t| t < *limit), None),
            Test::After(limit) => outcome(time().is_some_and(|t| t > *limit), None),
        }
    }

    /// The profile's state of the series at `slot` (none when it counted nothing), with its
    /// definition.
    fn series_of(&self, slot: Option<u16>) -> Option<(Option<&Series>, &ComputedTrait)> {
        let slot = usize::from(slot?);
        let def = self.segments.series.get(slot)?;
        let store = *self.segments.store_of.get(slot)?;
        Some((self.profile.series.get(store), def))
    }

    /// An event condition's count at now, and when it next changes (its series is the
    /// condition's own, by position; none: the event counts every profile keeps).
    fn count(&self, def: &ComputedTrait, slot: Option<u16>) -> (u64, Option<i64>) {
        let Some((series, def)) = self.series_of(slot) else {
            let event = def
                .name
                .strip_prefix(super::EVENT_COUNTS)
                .unwrap_or_default();
            return (
                self.profile.event_counts.get(event).copied().unwrap_or(0),
                None,
            );
        };
        let Some(series) = series else {
            // Nothing counted: 0, whatever the clock does.
            return (0, None);
        };
        let offset = self.config.offset_millis();
        let n = series.count(def, self.now, offset);
        (n, series.next_change(def, self.now, offset))
    }

    fn has_identifier(&self, kind: &str) -> bool {
        self.ids
            .identifiers
            .keys()
            .any(|id| id.kind.as_str() == kind)
    }

    fn consents(&self, category: &str) -> bool {
        self.profile
            .consent
            .as_ref()
            .is_some_and(|(_, choices)| choices.get(category) == Some(&true))
    }

    /// The explanation of `condition`: each condition with whether it holds and the values
    /// read.
    pub fn explain(&self, condition: &Condition) -> Value {
        let result = self.evaluate(condition);
        let mut out = json!({"condition": condition.text(), "holds": result.holds});
        let values = match condition {
            Condition::And(children) | Condition::Or(children) => {
                let children: Vec<Value> = children.iter().map(|c| self.explain(c)).collect();
                Some(("conditions", Value::Array(children)))
            }
            Condition::Not(inner) => Some(("conditions", json!([self.explain(inner)]))),
            Condition::Trait { name, .. } => Some((
                "value",
                self.trait_value(name).cloned().unwrap_or(Value::Null),
            )),
            Condition::Computed { slot, .. } => {
                let value = self.series_of(*slot).map_or(Value::Null, |(series, def)| {
                    series
                        .unwrap_or_else(|| empty_series())
                        .value(def, self.now, self.config.offset_millis())
                        .value
                });
                Some(("value", value))
            }
            Condition::Performed { def, slot, .. } => {
                Some(("count", json!(self.count(def, *slot).0)))
            }
            Condition::Consent(category) => {
                let choice = self
                    .profile
                    .consent
                    .as_ref()
                    .and_then(|(_, c)| c.get(category).copied());
                Some(("value", json!(choice)))
            }
            Condition::HasIdentifier(_) | Condition::Member(_) => None,
        };
        if let (Some((key, value)), Value::Object(fields)) = (values, &mut out) {
            fields.insert(key.to_owned(), value);
        }
        if let (Some(next), Value::Object(fields)) = (result.next, &mut out)
            && let Some(at) = timestamp::from_unix_millis(next)
        {
            fields.insert("changesAt".to_owned(), json!(timestamp::format(at)));
        }
        out
    }

    /// The leaf conditions that decided the result, each by its place among the tree's leaves
    /// (from `leaf` on) with whether it holds: for an `and` that holds all of them, for one
    /// that does not the ones that fail (and likewise for `or`), down to the leaves.
    pub fn deciding(&self, condition: &Condition, leaf: &mut u16, out: &mut Vec<(u16, bool)>) {
        self.decide(condition, leaf, true, out);
    }

    fn decide(
        &self,
        condition: &Condition,
        leaf: &mut u16,
        record: bool,
        out: &mut Vec<(u16, bool)>,
    ) {
        match condition {
            Condition::And(children) | Condition::Or(children) => {
                let any = matches!(condition, Condition::Or(_));
                let result = record && self.evaluate(condition).holds;
                for child in children {
                    // The children that agree with the result, when the result is the one a
                    // single child decides; otherwise all of them. Leaves not taken are still
                    // counted, so that places stay those of the whole tree.
                    let take = record && (result != any || self.evaluate(child).holds == any);
                    self.decide(child, leaf, take, out);
                }
            }
            // The leaves say what is true of the profile, so a negation adds nothing.
            Condition::Not(inner) => self.decide(inner, leaf, record, out),
            leaf_condition => {
                if record {
                    out.push((*leaf, self.evaluate(leaf_condition).holds));
                }
                *leaf = leaf.saturating_add(1);
            }
        }
    }
}
