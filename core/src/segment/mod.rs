//! Segmentation, the second half of the CDP's third step: audiences (condition trees over
//! traits, computed traits, identifiers, consent, events and other audiences), evaluated as
//! each profile changes and when the clock alone changes a result (the profile's timer), with
//! every entry and exit — and every change of a computed trait's value — numbered in a change
//! log that activation delivers.
//!
//! Pure like the rest of the core: a profile's memberships are a function of its events and of
//! the times it was evaluated at (each event's `receivedAt`, and its timers' times), so a
//! rebuild from the lake gives the same memberships, entered at the same times. The contract is
//! `docs/audiences.md`.

mod condition;
mod evaluate;
mod stream;
#[cfg(test)]
mod tests;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use condition::{Condition, ConditionError, Count, MAX_DEPTH, MAX_NODES, Test};
pub use evaluate::{Ctx, Members, Outcome};
pub use stream::{Logged, LoggedChange};

use crate::timestamp;
use crate::unify::computed::{ComputedOp, ComputedTrait, Window};
use crate::unify::{Profile, ProfileConfig, ProfileIds};

/// The prefix of a preview's event condition read from the all-time event counts
/// (`performed X` ever, without filters), which every profile keeps.
pub(crate) const EVENT_COUNTS: &str = "event_counts:";

/// Most audiences per workspace.
pub const MAX_AUDIENCES: usize = 500;

/// `[segment]` in `braid.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// The audiences, by key (`[segment.audiences.vip]`).
    pub audiences: BTreeMap<String, AudienceConfig>,
    /// How long the change log keeps each entry, in days (activation reads it well before).
    pub change_log_days: u64,
    /// How often `braid serve` looks for profiles whose timer is due, in seconds.
    pub timer_sweep_seconds: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            audiences: BTreeMap::new(),
            change_log_days: 30,
            timer_sweep_seconds: 1,
        }
    }
}

/// One audience.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceConfig {
    /// Its name for people (default: its key).
    #[serde(default)]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its condition tree ([`condition`](Condition)'s JSON form).
    pub when: Value,
}

/// What an audience's result can depend on, besides the clock: an event that touches none of
/// it cannot change the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Depends {
    /// Event names (of its event conditions and of the computed traits it compares).
    events: BTreeSet<String>,
    /// Traits.
    traits: bool,
    /// Consent.
    consent: bool,
    /// Identifiers.
    identifiers: bool,
    /// Other audiences.
    members: Vec<String>,
    /// Their positions in the order of evaluation.
    member_positions: Vec<usize>,
}

impl Depends {
    /// The events a series reads (both steps of a funnel).
    fn add_events(&mut self, def: &ComputedTrait) {
        self.events.insert(def.event.clone());
        if let Some(then) = &def.then {
            self.events.insert(then.event.clone());
        }
    }
}

/// A compiled audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Audience {
    /// Its key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its condition tree.
    pub when: Condition,
    depends: Depends,
}

/// A segmentation configuration that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A condition cannot be read.
    #[error("segment.audiences.{audience}: {error}")]
    Condition {
        /// The audience.
        audience: String,
        /// The problem.
        error: ConditionError,
    },
    /// Another problem, in words naming the setting.
    #[error("{0}")]
    Invalid(String),
}

/// The audiences and computed traits of a workspace, compiled: audiences in an order where
/// each comes after those it names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segments {
    audiences: Vec<Audience>,
    /// Each audience's position in `audiences`, by key.
    positions: std::collections::HashMap<String, usize>,
    series: BTreeMap<String, ComputedTrait>,
    computed: Vec<String>,
    audience_series: Vec<ComputedTrait>,
}

fn is_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Segments {
    /// Compiles `[segment]` with the computed traits of `[unify.profiles]`.
    ///
    /// # Errors
    ///
    /// The first problem: a key, a condition (with its place), a computed trait or an audience
    /// that does not exist, a cycle of audiences.
    pub fn compile(
        profiles: &ProfileConfig,
        config: &SegmentConfig,
    ) -> Result<Segments, SegmentError> {
        if config.audiences.len() > MAX_AUDIENCES {
            return Err(SegmentError::Invalid(format!(
                "segment.audiences: {} audiences, at most {MAX_AUDIENCES}",
                config.audiences.len()
            )));
        }
        let computed: BTreeMap<&str, &ComputedTrait> = profiles
            .computed
            .iter()
            .map(|def| (def.name.as_str(), def))
            .collect();
        let mut audience_series = Vec::new();
        let mut audiences = BTreeMap::new();
        for (key, audience) in &config.audiences {
            if !is_key(key) {
                return Err(SegmentError::Invalid(format!(
                    "segment.audiences: key {key:?} must be 1-64 characters of a-z, 0-9, '_' and '-'"
                )));
            }
            let root = format!("segment.audiences.{key}.when");
            let first = audience_series.len();
            let when = condition::parse(&audience.when, &root, key, &mut audience_series).map_err(
                |error| SegmentError::Condition {
                    audience: key.clone(),
                    error,
                },
            )?;
            let mut depends = Depends::default();
            depends_of(&when, &computed, &mut depends).map_err(|name| {
                SegmentError::Invalid(format!(
                    "segment.audiences.{key}.when: computed trait {name:?} is not in unify.profiles.computed"
                ))
            })?;
            for series in audience_series.get(first..).unwrap_or_default() {
                depends.events.insert(series.event.clone());
            }
            if let Some(missing) = depends
                .members
                .iter()
                .find(|m| !config.audiences.contains_key(*m))
            {
                return Err(SegmentError::Invalid(format!(
                    "segment.audiences.{key}.when: member of {missing:?}, which is not an audience"
                )));
            }
            let name = if audience.name.is_empty() {
                key.clone()
            } else {
                audience.name.clone()
            };
            audiences.insert(
                key.clone(),
                Audience {
                    key: key.clone(),
                    name,
                    when,
                    depends,
                },
            );
        }
        let order = dependency_order(&audiences)?;
        let mut series: BTreeMap<String, ComputedTrait> = profiles
            .computed
            .iter()
            .map(|def| (def.name.clone(), def.clone()))
            .collect();
        for def in &audience_series {
            series.insert(def.name.clone(), def.clone());
        }
        let mut ordered: Vec<Audience> = order
            .into_iter()
            .filter_map(|key| audiences.remove(&key))
            .collect();
        let positions: std::collections::HashMap<String, usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, a)| (a.key.clone(), i))
            .collect();
        for audience in &mut ordered {
            audience.depends.member_positions = audience
                .depends
                .members
                .iter()
                .filter_map(|m| positions.get(m).copied())
                .collect();
        }
        Ok(Segments {
            audiences: ordered,
            positions,
            series,
            computed: profiles.computed.iter().map(|d| d.name.clone()).collect(),
            audience_series,
        })
    }

    /// The series the audiences' event conditions count (for [`ProfileConfig::audience_series`]).
    pub fn audience_series(&self) -> &[ComputedTrait] {
        &self.audience_series
    }

    /// The audiences, each after those it names.
    pub fn audiences(&self) -> &[Audience] {
        &self.audiences
    }

    /// An audience by key.
    pub fn audience(&self, key: &str) -> Option<&Audience> {
        self.audiences.iter().find(|a| a.key == key)
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.audiences.is_empty() && self.computed.is_empty()
    }

    /// Every series by name.
    pub fn series(&self) -> &BTreeMap<String, ComputedTrait> {
        &self.series
    }
}

impl Segments {
    /// Why `profile` is in or out of the audience `key` at `now` (ms), condition by
    /// condition, with the values that decided; `None` for an audience that does not exist.
    pub fn explain(
        &self,
        ids: &ProfileIds,
        profile: &Profile,
        config: &ProfileConfig,
        key: &str,
        now: i64,
    ) -> Option<Value> {
        let audience = self.audience(key)?;
        let mut members = BTreeMap::new();
        let mut explanation = Value::Null;
        for each in &self.audiences {
            let ctx = Ctx {
                ids,
                profile,
                config,
                series: &self.series,
                now,
                members: &members,
            };
            if each.key == key {
                explanation = ctx.explain(&each.when);
                break;
            }
            let outcome = ctx.evaluate(&each.when);
            members.insert(each.key.clone(), (outcome.holds, outcome.next));
        }
        let time = |ms: i64| timestamp::from_unix_millis(ms).map(timestamp::format);
        let entered = profile.segment.audiences.get(key).copied();
        Some(serde_json::json!({
            "profile": ids.id,
            "audience": key,
            "name": audience.name,
            "member": entered.is_some(),
            "enteredAt": entered.and_then(time),
            "evaluatedAt": time(profile.segment.evaluated),
            "at": time(now),
            "holds": explanation.get("holds").cloned().unwrap_or(Value::Null),
            "explanation": explanation,
        }))
    }

    /// A condition tree to preview over the current profiles: read like an audience's, its
    /// event conditions answered by what the profiles already count — an audience's or a
    /// computed trait's identical count, or for `performed` ever without filters the event
    /// counts every profile keeps.
    ///
    /// # Errors
    ///
    /// The first problem, with its place; an event condition that nothing counts yet (saving
    /// the audience counts it, from the lake).
    pub fn preview_condition(&self, when: &Value) -> Result<Condition, SegmentError> {
        let mut series = Vec::new();
        let mut condition =
            condition::parse(when, "when", "preview", &mut series).map_err(|error| {
                SegmentError::Condition {
                    audience: "preview".to_owned(),
                    error,
                }
            })?;
        let computed: BTreeMap<&str, &ComputedTrait> = self
            .computed
            .iter()
            .filter_map(|name| Some((name.as_str(), self.series.get(name)?)))
            .collect();
        let mut depends = Depends::default();
        depends_of(&condition, &computed, &mut depends).map_err(|name| {
            SegmentError::Invalid(format!(
                "when: computed trait {name:?} is not in unify.profiles.computed"
            ))
        })?;
        if let Some(missing) = depends.members.iter().find(|m| self.audience(m).is_none()) {
            return Err(SegmentError::Invalid(format!(
                "when: member of {missing:?}, which is not an audience"
            )));
        }
        let mut problem = None;
        map_series(&mut condition, &mut |wanted| {
            let counted = self.series.values().find(|def| {
                def.op == ComputedOp::Count
                    && def.event == wanted.event
                    && def.filters == wanted.filters
                    && def.window == wanted.window
                    && def.then == wanted.then
            });
            match counted {
                Some(def) => wanted.name.clone_from(&def.name),
                None if wanted.window == Window::AllTime
                    && wanted.filters.is_empty()
                    && wanted.then.is_none() =>
                {
                    wanted.name = format!("{EVENT_COUNTS}{}", wanted.event);
                }
                None => {
                    problem.get_or_insert_with(|| {
                        let mut what = String::new();
                        wanted.push_events(&mut what);
                        format!(
                            "when: {what:?} {} is not counted by any audience or computed trait yet: save the audience (its profiles are then rebuilt from the lake) or preview it over all time without filters",
                            wanted.window.words()
                        )
                    });
                }
            }
        });
        match problem {
            Some(problem) => Err(SegmentError::Invalid(problem)),
            None => Ok(condition),
        }
    }

    /// Whether `profile` meets `condition` at `now` (ms), taking the audiences it names from
    /// the profile's stored memberships (a preview's rule).
    pub fn meets(
        &self,
        condition: &Condition,
        ids: &ProfileIds,
        profile: &Profile,
        config: &ProfileConfig,
        now: i64,
    ) -> bool {
        let members: BTreeMap<String, (bool, Option<i64>)> = profile
            .segment
            .audiences
            .keys()
            .map(|key| (key.clone(), (true, None)))
            .collect();
        let ctx = Ctx {
            ids,
            profile,
            config,
            series: &self.series,
            now,
            members: &members,
        };
        ctx.evaluate(condition).holds
    }
}

/// Calls `f` with what each event condition counts.
fn map_series(condition: &mut Condition, f: &mut impl FnMut(&mut ComputedTrait)) {
    match condition {
        Condition::And(children) | Condition::Or(children) => {
            for child in children {
                map_series(child, f);
            }
        }
        Condition::Not(inner) => map_series(inner, f),
        Condition::Performed { def, .. } => f(def),
        _ => {}
    }
}

/// Collects what `condition` depends on; `Err` names a computed trait that does not exist.
fn depends_of(
    condition: &Condition,
    computed: &BTreeMap<&str, &ComputedTrait>,
    out: &mut Depends,
) -> Result<(), String> {
    match condition {
        Condition::And(children) | Condition::Or(children) => {
            for child in children {
                depends_of(child, computed, out)?;
            }
        }
        Condition::Not(inner) => depends_of(inner, computed, out)?,
        Condition::Trait { .. } => out.traits = true,
        Condition::Computed { name, .. } => {
            let def = computed.get(name.as_str()).ok_or_else(|| name.clone())?;
            out.add_events(def);
        }
        Condition::HasIdentifier(_) => out.identifiers = true,
        Condition::Consent(_) => out.consent = true,
        Condition::Performed { def, .. } => out.add_events(def),
        Condition::Member(key) => out.members.push(key.clone()),
    }
    Ok(())
}

/// The audiences' keys in an order where each comes after those it names.
///
/// # Errors
///
/// A cycle, named.
fn dependency_order(audiences: &BTreeMap<String, Audience>) -> Result<Vec<String>, SegmentError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        key: &str,
        audiences: &BTreeMap<String, Audience>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), SegmentError> {
        match marks.get(key) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                path.push(key.to_owned());
                let start = path.iter().position(|k| k == key).unwrap_or(0);
                return Err(SegmentError::Invalid(format!(
                    "segment.audiences: a cycle of audiences: {}",
                    path.get(start..).unwrap_or_default().join(" → ")
                )));
            }
            None => {}
        }
        marks.insert(key.to_owned(), Mark::Visiting);
        path.push(key.to_owned());
        if let Some(audience) = audiences.get(key) {
            for member in &audience.depends.members {
                visit(member, audiences, marks, path, out)?;
            }
        }
        path.pop();
        marks.insert(key.to_owned(), Mark::Done);
        out.push(key.to_owned());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for key in audiences.keys() {
        visit(key, audiences, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}
