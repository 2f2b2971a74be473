//! Streaming evaluation over a unifier's working set: each applied event re-evaluates the
//! audiences of its profile that can depend on it (after firing the profile's timer if it was
//! due before the event), a merge re-evaluates everything, and a due timer re-evaluates the
//! profile at the timer's own time. Every change is numbered in the change log.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Segments;
use super::evaluate::{Ctx, Members, Outcome};
use crate::event::{Event, EventType};
use crate::hex;
use crate::timestamp;
use crate::unify::computed::Series;
use crate::unify::{Applied, ProfileId, Unifier, counted_name};

/// What an event touched, for choosing the audiences to evaluate again.
#[derive(Clone, Debug, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one independent part of a profile an event can touch"
)]
struct Touched {
    /// Everything may have changed (a new profile, a merge, a timer).
    all: bool,
    /// The event's name as profiles count it.
    event: String,
    traits: bool,
    consent: bool,
    identifiers: bool,
}

impl super::Depends {
    /// Whether what `touched` changed (with the audiences `moved` so far, by position) can
    /// change the result.
    fn touched_by(&self, touched: &Touched, moved: &[bool]) -> bool {
        touched.all
            || self.events.contains(&touched.event)
            || (self.traits && touched.traits)
            || (self.consent && touched.consent)
            || (self.identifiers && touched.identifiers)
            || self
                .member_positions
                .iter()
                .any(|&m| moved.get(m).copied().unwrap_or(false))
    }
}

/// One change of a profile, numbered in the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// Its number in the workspace's change log.
    pub number: u64,
    /// The profile.
    pub profile: ProfileId,
    /// When it happened (ms).
    pub at: i64,
    /// What changed.
    pub change: LoggedChange,
}

/// What changed.
#[derive(Clone, Debug, PartialEq)]
pub enum LoggedChange {
    /// The profile entered an audience, for these reasons (the conditions that decided).
    Entered {
        /// The audience's key.
        audience: String,
        /// Its name.
        name: String,
        /// The conditions that decided, in words.
        reasons: Vec<String>,
    },
    /// The profile left an audience.
    Exited {
        /// The audience's key.
        audience: String,
        /// Its name.
        name: String,
        /// The conditions that decided, in words.
        reasons: Vec<String>,
    },
    /// A computed trait's value changed.
    Computed {
        /// The computed trait.
        name: String,
        /// Its value.
        value: Value,
        /// Whether it is a lower bound.
        approximate: bool,
    },
}

impl Logged {
    /// A stable id: the same change (profile, kind, audience or trait, time) has the same id
    /// in every rebuild, so a receiver can recognize a redelivery.
    pub fn id(&self) -> String {
        let (kind, key) = match &self.change {
            LoggedChange::Entered { audience, .. } => ("entered", audience),
            LoggedChange::Exited { audience, .. } => ("exited", audience),
            LoggedChange::Computed { name, .. } => ("computed", name),
        };
        let text = format!("{}\0{kind}\0{key}\0{}", self.profile, self.at);
        hex::encode(
            Sha256::digest(text.as_bytes())
                .get(..16)
                .unwrap_or_default(),
        )
    }

    /// The entry as the change log and the API show it.
    pub fn to_json(&self) -> Value {
        let at = timestamp::from_unix_millis(self.at).map(timestamp::format);
        let mut out = json!({
            "id": self.id(),
            "number": self.number,
            "profile": self.profile,
            "at": at,
        });
        let fields = match &self.change {
            LoggedChange::Entered {
                audience,
                name,
                reasons,
            } => json!({"type": "audience_entered", "event": "Audience Entered",
                        "audience": audience, "name": name, "reasons": reasons}),
            LoggedChange::Exited {
                audience,
                name,
                reasons,
            } => json!({"type": "audience_exited", "event": "Audience Exited",
                        "audience": audience, "name": name, "reasons": reasons}),
            LoggedChange::Computed {
                name,
                value,
                approximate,
            } => json!({"type": "computed_trait", "trait": name, "value": value,
                        "approximate": approximate}),
        };
        if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
            out.extend(fields);
        }
        out
    }
}

/// The time an event is evaluated at: when it was received (as unification reads it).
fn received_millis(event: &Event<'_>) -> Option<i64> {
    event
        .time_field("receivedAt")
        .or_else(|| event.time_field("timestamp"))
        .map(timestamp::unix_millis)
}

impl Segments {
    /// Applies `event` ([`Unifier::apply_from`]) and evaluates its profile, logging what
    /// changed to `log`.
    pub fn apply(
        &self,
        unifier: &mut Unifier,
        event: &Event<'_>,
        origin: u64,
        log: &mut Vec<Logged>,
    ) -> Applied {
        let Some(now) = received_millis(event) else {
            return unifier.apply_from(event, origin);
        };
        if self.is_empty() {
            let applied = unifier.apply_from(event, origin);
            unifier.take_absorbed();
            return applied;
        }
        // The profiles the event may join: their timers due before it fire first, so that
        // what the clock changed happens at its own time, before the event.
        let mut before: Vec<ProfileId> = unifier
            .lookups(event)
            .identifiers
            .iter()
            .filter_map(|id| unifier.graph().profile_of(id).map(|ids| ids.id.clone()))
            .collect();
        before.sort();
        before.dedup();
        for profile in &before {
            self.fire_due(unifier, profile, now, log);
        }
        let identifiers_before: usize = before
            .iter()
            .filter_map(|p| unifier.graph().profile(p))
            .map(|ids| ids.identifiers.len())
            .sum();
        let applied = unifier.apply_from(event, origin);
        let absorbed = unifier.take_absorbed();
        let Applied::Profile(profile) = &applied else {
            return applied;
        };
        for gone in &absorbed {
            for key in gone.audiences.keys() {
                let name = self.audience(key).map_or(key.clone(), |a| a.name.clone());
                log.push(Logged {
                    number: unifier.next_logged(),
                    profile: gone.from.clone(),
                    at: now,
                    change: LoggedChange::Exited {
                        audience: key.clone(),
                        name,
                        reasons: vec![format!("merged into {}", gone.into)],
                    },
                });
            }
        }
        let identifiers_after = unifier
            .graph()
            .profile(profile)
            .map_or(0, |ids| ids.identifiers.len());
        let touched = Touched {
            all: !absorbed.is_empty() || !before.contains(profile),
            event: counted_name(event).into_owned(),
            traits: has_traits(event),
            consent: event
                .object("context")
                .is_some_and(|c| c.contains("consent")),
            identifiers: identifiers_after != identifiers_before,
        };
        self.evaluate(unifier, profile, now, &touched, log);
        applied
    }

    /// Fires the timer of `profile` as often as it is due up to `until` (ms), each time at its
    /// own time; whether it was due.
    pub fn fire_due(
        &self,
        unifier: &mut Unifier,
        profile: &str,
        until: i64,
        log: &mut Vec<Logged>,
    ) -> bool {
        let mut fired = false;
        let all = Touched {
            all: true,
            ..Touched::default()
        };
        while let Some(due) = unifier
            .profile(profile)
            .and_then(|p| p.segment.next_check)
            .filter(|due| *due <= until)
        {
            fired = true;
            self.evaluate(unifier, profile, due, &all, log);
            let next = unifier.profile(profile).and_then(|p| p.segment.next_check);
            if next.is_some_and(|next| next <= due) {
                // A timer that does not move on would fire forever: evaluated again with the
                // next event instead.
                if let Some(p) = unifier.profile_mut(profile) {
                    p.segment.next_check = None;
                }
                break;
            }
        }
        fired
    }

    /// Evaluates `profile` again at `now` (ms), everything.
    pub fn evaluate_all(
        &self,
        unifier: &mut Unifier,
        profile: &str,
        now: i64,
        log: &mut Vec<Logged>,
    ) {
        let all = Touched {
            all: true,
            ..Touched::default()
        };
        self.evaluate(unifier, profile, now, &all, log);
    }

    fn evaluate(
        &self,
        unifier: &mut Unifier,
        profile: &str,
        now: i64,
        touched: &Touched,
        log: &mut Vec<Logged>,
    ) {
        let Some((ids, current)) = unifier.profile_and_ids(profile) else {
            return;
        };
        let config = unifier.config();
        let offset = config.offset_millis();
        let now = now.max(current.segment.evaluated);
        let mut changes = Vec::new();
        let mut next: Option<i64> = None;
        let mut earliest = |at: Option<i64>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        let (values, skipped_values) =
            self.computed_values(current, now, offset, touched, &mut changes, &mut earliest);
        let mut memberships: Vec<(usize, bool)> = Vec::new();
        let mut members = Positional {
            positions: &self.positions,
            results: vec![None; self.audiences.len()],
        };
        let mut moved = vec![false; self.audiences.len()];
        let mut skipped = skipped_values;
        for (position, audience) in self.audiences.iter().enumerate() {
            let was = current.segment.audiences.contains_key(&audience.key);
            let relevant = audience.depends.touched_by(touched, &moved);
            if !relevant {
                skipped = true;
                members.set(position, (was, None));
                continue;
            }
            let ctx = Ctx {
                ids,
                profile: current,
                config,
                series: &self.series,
                now,
                members: &members,
            };
            let Outcome { holds, next: at } = ctx.evaluate(&audience.when);
            earliest(at);
            if holds != was {
                let mut reasons = Vec::new();
                ctx.deciding(&audience.when, &mut reasons);
                let (audience_key, name) = (audience.key.clone(), audience.name.clone());
                changes.push(if holds {
                    LoggedChange::Entered {
                        audience: audience_key,
                        name,
                        reasons,
                    }
                } else {
                    LoggedChange::Exited {
                        audience: audience_key,
                        name,
                        reasons,
                    }
                });
                memberships.push((position, holds));
                if let Some(flag) = moved.get_mut(position) {
                    *flag = true;
                }
            }
            members.set(position, (holds, at));
        }
        if skipped {
            // What was not evaluated keeps the timer it had (it may fire early: harmless).
            earliest(current.segment.next_check.filter(|at| *at > now));
        }
        let removed = if touched.all {
            self.removed_audiences(&current.segment.audiences, &mut changes)
        } else {
            Vec::new()
        };
        let Some(profile_mut) = unifier.profile_mut(profile) else {
            return;
        };
        self.write_back(
            profile_mut,
            (now, offset),
            touched,
            values,
            memberships,
            removed,
        );
        profile_mut.segment.next_check = next;
        profile_mut.segment.evaluated = now;
        let id = profile_mut.id.clone();
        for change in changes {
            log.push(Logged {
                number: unifier.next_logged(),
                profile: id.clone(),
                at: now,
                change,
            });
        }
    }
}

impl Segments {
    /// Writes an evaluation's results to the profile: its series pruned, the values and
    /// memberships that changed.
    fn write_back(
        &self,
        profile_mut: &mut crate::unify::Profile,
        (now, offset): (i64, i64),
        touched: &Touched,
        values: Vec<(String, Option<(Value, bool)>)>,
        memberships: Vec<(usize, bool)>,
        removed: Vec<String>,
    ) {
        let defs = &self.series;
        // Buckets no window can reach again are dropped: those of the event's series now,
        // all of them when the clock moved.
        let event = touched.event.as_str();
        for (name, series) in &mut profile_mut.series {
            if let Some(def) = defs.get(name)
                && (touched.all || def.reads_event(event))
            {
                series.prune(def, now, offset);
            }
        }
        if touched.all {
            profile_mut
                .series
                .retain(|name, series| defs.contains_key(name) && !series.is_empty());
        }
        for (name, value) in values {
            match value {
                Some(value) => profile_mut.segment.values.insert(name, value),
                None => profile_mut.segment.values.remove(&name),
            };
        }
        for (position, holds) in memberships {
            let Some(audience) = self.audiences.get(position) else {
                continue;
            };
            if holds {
                profile_mut
                    .segment
                    .audiences
                    .insert(audience.key.clone(), now);
            } else {
                profile_mut.segment.audiences.remove(&audience.key);
            }
        }
        for key in removed {
            profile_mut.segment.audiences.remove(&key);
        }
    }

    /// The audiences the profile is in that are no longer configured, each exit pushed to
    /// `changes`.
    fn removed_audiences(
        &self,
        audiences: &BTreeMap<String, i64>,
        changes: &mut Vec<LoggedChange>,
    ) -> Vec<String> {
        let removed: Vec<String> = audiences
            .keys()
            .filter(|key| !self.positions.contains_key(key.as_str()))
            .cloned()
            .collect();
        for key in &removed {
            changes.push(LoggedChange::Exited {
                name: key.clone(),
                audience: key.clone(),
                reasons: vec!["the audience was removed".to_owned()],
            });
        }
        removed
    }

    /// The computed traits' values at `now` that changed (`None`: back to empty — 0, null or
    /// an empty list — which is not kept), each change pushed to `changes` and each time a
    /// value can next change given to `earliest`; and whether some were not evaluated (the
    /// event does not feed them).
    #[expect(
        clippy::type_complexity,
        reason = "a name and a value with its approximation flag"
    )]
    fn computed_values(
        &self,
        profile: &crate::unify::Profile,
        now: i64,
        offset: i64,
        touched: &Touched,
        changes: &mut Vec<LoggedChange>,
        earliest: &mut impl FnMut(Option<i64>),
    ) -> (Vec<(String, Option<(Value, bool)>)>, bool) {
        let empty = Series::default();
        let mut updates = Vec::new();
        let mut skipped = false;
        for name in &self.computed {
            let Some(def) = self.series.get(name) else {
                continue;
            };
            if !touched.all && !def.reads_event(&touched.event) {
                skipped = true;
                continue;
            }
            let series = profile.series.get(name).unwrap_or(&empty);
            let computed = series.value(def, now, offset);
            earliest(series.next_change(def, now, offset));
            let value = if computed.is_empty() {
                None
            } else {
                Some((computed.value, computed.approximate))
            };
            if profile.segment.values.get(name) != value.as_ref() {
                let (shown, approximate) = value
                    .clone()
                    .unwrap_or_else(|| (def.op.empty_value(), false));
                changes.push(LoggedChange::Computed {
                    name: name.clone(),
                    value: shown,
                    approximate,
                });
                updates.push((name.clone(), value));
            }
        }
        (updates, skipped)
    }
}

/// The audiences evaluated so far, by position, found by key.
struct Positional<'a> {
    positions: &'a HashMap<String, usize>,
    results: Vec<Option<(bool, Option<i64>)>>,
}

impl Positional<'_> {
    fn set(&mut self, position: usize, result: (bool, Option<i64>)) {
        if let Some(slot) = self.results.get_mut(position) {
            *slot = Some(result);
        }
    }
}

impl Members for Positional<'_> {
    fn member(&self, key: &str) -> Option<(bool, Option<i64>)> {
        let position = *self.positions.get(key)?;
        self.results.get(position).copied().flatten()
    }
}

fn has_traits(event: &Event<'_>) -> bool {
    let mut any = false;
    event.for_each_traits(|traits| any |= !traits.is_empty());
    any || event.kind() == EventType::Identify
}
