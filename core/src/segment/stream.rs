//! Streaming evaluation over a unifier's working set: each applied event re-evaluates the
//! audiences of its profile that can depend on it (after firing the profile's timer if it was
//! due before the event), a merge re-evaluates everything, and a due timer re-evaluates the
//! profile at the timer's own time. Every change is numbered in the change log.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Segments;
use super::evaluate::{Ctx, Outcome};
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
        let values = self.computed_values(current, now, offset, &mut changes, &mut earliest);
        let mut audiences = current.segment.audiences.clone();
        let mut members: BTreeMap<String, (bool, Option<i64>)> = BTreeMap::new();
        let mut moved: Vec<&str> = Vec::new();
        let mut skipped = false;
        for audience in &self.audiences {
            let was = audiences.contains_key(&audience.key);
            let depends = &audience.depends;
            let relevant = touched.all
                || depends.events.contains(&touched.event)
                || (depends.traits && touched.traits)
                || (depends.consent && touched.consent)
                || (depends.identifiers && touched.identifiers)
                || depends.members.iter().any(|m| moved.contains(&m.as_str()));
            if !relevant {
                skipped = true;
                members.insert(audience.key.clone(), (was, None));
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
                    audiences.insert(audience_key.clone(), now);
                    LoggedChange::Entered {
                        audience: audience_key,
                        name,
                        reasons,
                    }
                } else {
                    audiences.remove(&audience_key);
                    LoggedChange::Exited {
                        audience: audience_key,
                        name,
                        reasons,
                    }
                });
                moved.push(&audience.key);
            }
            members.insert(audience.key.clone(), (holds, at));
        }
        if skipped {
            // What was not evaluated keeps the timer it had (it may fire early: harmless).
            earliest(current.segment.next_check.filter(|at| *at > now));
        }
        self.leave_removed(&mut audiences, &mut changes);
        let defs = &self.series;
        let Some(profile_mut) = unifier.profile_mut(profile) else {
            return;
        };
        for (name, series) in &mut profile_mut.series {
            if let Some(def) = defs.get(name) {
                series.prune(def, now, offset);
            }
        }
        profile_mut
            .series
            .retain(|name, series| defs.contains_key(name) && !series.is_empty());
        profile_mut.segment.values = values;
        profile_mut.segment.audiences = audiences;
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
    /// Takes the profile out of audiences no longer configured.
    fn leave_removed(
        &self,
        audiences: &mut BTreeMap<String, i64>,
        changes: &mut Vec<LoggedChange>,
    ) {
        let removed: Vec<String> = audiences
            .keys()
            .filter(|key| self.audience(key).is_none())
            .cloned()
            .collect();
        for key in removed {
            audiences.remove(&key);
            changes.push(LoggedChange::Exited {
                name: key.clone(),
                audience: key,
                reasons: vec!["the audience was removed".to_owned()],
            });
        }
    }

    /// The computed traits' values at `now`, each change pushed to `changes` and each time a
    /// value can next change given to `earliest`.
    fn computed_values(
        &self,
        profile: &crate::unify::Profile,
        now: i64,
        offset: i64,
        changes: &mut Vec<LoggedChange>,
        earliest: &mut impl FnMut(Option<i64>),
    ) -> BTreeMap<String, (Value, bool)> {
        let empty = Series::default();
        let mut values = profile.segment.values.clone();
        for name in &self.computed {
            let Some(def) = self.series.get(name) else {
                continue;
            };
            let series = profile.series.get(name).unwrap_or(&empty);
            let value = series.value(def, now, offset);
            earliest(series.next_change(def, now, offset));
            let value = (value.value, value.approximate);
            if values.get(name) != Some(&value) {
                changes.push(LoggedChange::Computed {
                    name: name.clone(),
                    value: value.0.clone(),
                    approximate: value.1,
                });
                values.insert(name.clone(), value);
            }
        }
        values
    }
}

fn has_traits(event: &Event<'_>) -> bool {
    let mut any = false;
    event.for_each_traits(|traits| any |= !traits.is_empty());
    any || event.kind() == EventType::Identify
}
