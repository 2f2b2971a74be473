//! Streaming evaluation over a unifier's working set: each applied event re-evaluates the
//! audiences of its profile that can depend on it (after firing the profile's timer if it was
//! due before the event), a merge re-evaluates everything, and a due timer re-evaluates the
//! profile at the timer's own time. Every change is numbered in the change log.

use std::sync::Arc;

use serde_json::Value;

use super::evaluate::{Ctx, Members, Outcome};
use super::log::{AudienceInfo, Logged, LoggedChange, Reasons};
use super::{Bits, Segments, Stored};
use crate::event::{Event, EventType};
use crate::timestamp;
use crate::unify::computed::Series;
use crate::unify::{Applied, Profile, ProfileConfig, Unifier, counted_name};

/// What an event touched, for choosing the audiences to evaluate again.
#[derive(Clone, Copy, Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one independent part of a profile an event can touch"
)]
struct Touched<'e> {
    /// Everything may have changed (a merge, a timer).
    all: bool,
    /// The profile is new: what its event touched not, it holds nothing of, so an audience
    /// that reads none of it has the result of a profile that holds nothing.
    fresh: bool,
    /// The event's name as profiles count it.
    event: &'e str,
    traits: bool,
    consent: bool,
    identifiers: bool,
}

impl Touched<'_> {
    /// Everything.
    const ALL: Touched<'static> = Touched {
        all: true,
        fresh: false,
        event: "",
        traits: false,
        consent: false,
        identifiers: false,
    };
}

impl Segments {
    /// The audiences what `touched` changed can change, besides those naming an audience
    /// that moved; `None`: all of them.
    fn relevant(&self, touched: &Touched<'_>) -> Option<Bits> {
        if touched.all {
            return None;
        }
        let mut bits = self
            .on_event
            .get(touched.event)
            .cloned()
            .unwrap_or_default();
        for (touched, on) in [
            (touched.traits, &self.on_traits),
            (touched.consent, &self.on_consent),
            (touched.identifiers, &self.on_identifiers),
        ] {
            if touched {
                bits.union(on);
            }
        }
        Some(bits)
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
        if self.is_empty() && !self.log_profiles {
            let applied = unifier.apply_from(event, origin);
            unifier.take_absorbed();
            return applied;
        }
        // The profiles the event may join: their timers due before it fire first, so that
        // what the clock changed happens at its own time, before the event.
        let extracted = unifier.extract(event);
        let before = unifier.profiles_of(&extracted);
        for profile in &before {
            self.fire_due(unifier, profile, now, log);
        }
        let identifiers_before: usize = before
            .iter()
            .filter_map(|p| unifier.graph().profile(p))
            .map(|ids| ids.identifiers.len())
            .sum();
        let applied = unifier.apply_extracted(event, origin, extracted);
        let absorbed = unifier.take_absorbed();
        let Applied::Profile(profile) = &applied else {
            return applied;
        };
        for gone in &absorbed {
            let from: Arc<str> = Arc::from(gone.from.as_str());
            if self.log_profiles {
                log.push(Logged {
                    number: unifier.next_logged(),
                    profile: Arc::clone(&from),
                    at: now,
                    change: LoggedChange::Merged {
                        into: Arc::from(gone.into.as_str()),
                    },
                });
            }
            let reasons = Reasons::text(&format!("merged into {}", gone.into));
            for key in gone.audiences.keys() {
                let audience = match self.audience(key) {
                    Some(a) => Arc::clone(&a.info),
                    None => AudienceInfo::unnamed(key),
                };
                log.push(Logged {
                    number: unifier.next_logged(),
                    profile: Arc::clone(&from),
                    at: now,
                    change: LoggedChange::Exited {
                        audience,
                        reasons: reasons.clone(),
                    },
                });
            }
        }
        let identifiers_after = unifier
            .graph()
            .profile(profile)
            .map_or(0, |ids| ids.identifiers.len());
        let name = counted_name(event);
        let fresh = absorbed.is_empty() && !before.contains(profile);
        let touched = Touched {
            all: !absorbed.is_empty(),
            fresh,
            event: name.as_ref(),
            traits: has_traits(event),
            consent: event
                .object("context")
                .is_some_and(|c| c.contains("consent")),
            identifiers: fresh || identifiers_after != identifiers_before,
        };
        if self.log_profiles
            && (touched.all
                || touched.fresh
                || touched.traits
                || touched.consent
                || touched.identifiers)
        {
            log.push(Logged {
                number: unifier.next_logged(),
                profile: Arc::from(profile.as_str()),
                at: now,
                change: LoggedChange::Updated,
            });
        }
        if !self.is_empty() {
            self.evaluate(unifier, profile, now, &touched, log);
        }
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
        let all = Touched::ALL;
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
        self.evaluate(unifier, profile, now, &Touched::ALL, log);
    }

    fn evaluate(
        &self,
        unifier: &mut Unifier,
        profile: &str,
        now: i64,
        touched: &Touched<'_>,
        log: &mut Vec<Logged>,
    ) {
        let Some((ids, current)) = unifier.profile_and_ids(profile) else {
            return;
        };
        let config = unifier.config();
        let offset = config.offset_millis();
        let now = now.max(current.segment.evaluated);
        let start = log.len();
        let mut out = Results {
            log,
            id: &current.id,
            profile: None,
            at: now,
            memberships: Vec::new(),
            next: None,
        };
        let (values, skipped_values) =
            self.computed_values(current, now, offset, touched, &mut out);
        let ctx = Ctx {
            ids,
            profile: current,
            config,
            segments: self,
            now,
            members: &Stored(&current.segment.audiences),
        };
        let (removed, skipped) = self.evaluate_audiences(&ctx, touched, &mut out);
        if skipped || skipped_values {
            // What was not evaluated keeps the timer it had (it may fire early: harmless).
            out.earliest(current.segment.next_check.filter(|at| *at > now));
        }
        for key in &removed {
            out.push(LoggedChange::Exited {
                audience: AudienceInfo::unnamed(key),
                reasons: Reasons::text("the audience was removed"),
            });
        }
        let Results {
            memberships, next, ..
        } = out;
        let Some((profile_mut, config)) = unifier.profile_mut_with_config(profile) else {
            log.truncate(start);
            return;
        };
        self.write_back(
            profile_mut,
            config,
            (now, offset),
            touched,
            values,
            &memberships,
            removed,
        );
        profile_mut.segment.next_check = next;
        profile_mut.segment.evaluated = now;
        // Numbered in the order they were found, once the profile holds them.
        for entry in log.get_mut(start..).unwrap_or_default() {
            entry.number = unifier.next_logged();
        }
    }

    /// Evaluates the audiences what `touched` changed can change (in `ctx`, whose members are
    /// replaced by this evaluation's), pushing entries and exits to `out`: the audiences the
    /// profile is in that are no longer configured (left when everything is evaluated), and
    /// whether some audiences were left as they were.
    fn evaluate_audiences(
        &self,
        ctx: &Ctx<'_>,
        touched: &Touched<'_>,
        out: &mut Results<'_>,
    ) -> (Vec<Arc<str>>, bool) {
        let relevant = self.relevant(touched);
        // What can change: the relevant audiences and those that name them.
        let candidates = relevant.as_ref().map(|relevant| {
            let mut candidates = relevant.clone();
            for position in relevant.ones() {
                if let Some(audience) = self.audiences.get(position) {
                    candidates.union(&audience.dependents);
                }
            }
            candidates
        });
        let mut members = Positional {
            segments: self,
            fresh: touched.fresh,
            states: vec![State::default(); self.audiences.len()],
        };
        // What the profile was in, by position.
        let mut removed = Vec::new();
        for key in ctx.profile.segment.audiences.keys() {
            match self.positions.get(&**key) {
                Some(&position) => {
                    if let Some(state) = members.states.get_mut(position) {
                        state.was = true;
                    }
                }
                None if touched.all => removed.push(Arc::clone(key)),
                None => {}
            }
        }
        if touched.fresh {
            // A new profile holds nothing the audiences that are not candidates read: it is in
            // those a profile holding nothing is in, with no timer.
            for &position in &self.empty_members {
                if candidates.as_ref().is_none_or(|c| c.contains(position)) {
                    continue;
                }
                if let Some(audience) = self.audiences.get(position) {
                    out.change(audience, position, true, &audience.empty.1);
                }
            }
        }
        let positions: Box<dyn Iterator<Item = usize>> = match &candidates {
            Some(candidates) => Box::new(candidates.ones()),
            None => Box::new(0..self.audiences.len()),
        };
        for position in positions {
            let Some(audience) = self.audiences.get(position) else {
                continue;
            };
            let base = members.base(position);
            let was = members.states.get(position).is_some_and(|s| s.was);
            let is_relevant = relevant.as_ref().is_none_or(|bits| bits.contains(position))
                || audience
                    .depends
                    .member_positions
                    .iter()
                    .any(|&m| members.states.get(m).is_some_and(|s| s.moved));
            if !is_relevant {
                if base != was {
                    // A new profile, in an audience that a profile holding nothing is in.
                    out.change(audience, position, base, &audience.empty.1);
                }
                continue;
            }
            let ctx = Ctx {
                members: &members,
                ..*ctx
            };
            let Outcome { holds, next: at } = ctx.evaluate(&audience.when);
            out.earliest(at);
            if holds != was {
                if audience.when.is_leaf() {
                    // A tree of one condition: it decided, as it holds.
                    out.change(
                        audience,
                        position,
                        holds,
                        if holds {
                            &audience.leaf_reasons.1
                        } else {
                            &audience.leaf_reasons.0
                        },
                    );
                } else {
                    let mut picks = Vec::new();
                    ctx.deciding(&audience.when, &mut 0, &mut picks);
                    out.change(audience, position, holds, &Reasons::picked(picks));
                }
            }
            members.set(position, (holds, at), holds != base);
        }
        // What is not evaluated keeps its result and its timer; for a new profile, those are
        // a profile's holding nothing, which has no timer.
        (removed, !touched.fresh && candidates.is_some())
    }
}

/// What one evaluation found: the changes (pushed to the log as they are found, numbered once
/// the profile holds them), the memberships that changed (by position), and the earliest time
/// a result can next change with the clock alone.
struct Results<'a> {
    log: &'a mut Vec<Logged>,
    /// The profile's id, and the same shared by its entries (made at the first).
    id: &'a str,
    profile: Option<Arc<str>>,
    at: i64,
    memberships: Vec<(usize, bool)>,
    next: Option<i64>,
}

impl Results<'_> {
    fn earliest(&mut self, at: Option<i64>) {
        if let Some(at) = at {
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
        }
    }

    fn push(&mut self, change: LoggedChange) {
        let profile = Arc::clone(self.profile.get_or_insert_with(|| Arc::from(self.id)));
        self.log.push(Logged {
            number: 0,
            profile,
            at: self.at,
            change,
        });
    }

    /// An entry into (`holds`) or an exit from `audience` (at `position`), decided by these
    /// leaves.
    fn change(
        &mut self,
        audience: &super::Audience,
        position: usize,
        holds: bool,
        reasons: &Reasons,
    ) {
        let (info, reasons) = (Arc::clone(&audience.info), reasons.clone());
        self.push(if holds {
            LoggedChange::Entered {
                audience: info,
                reasons,
            }
        } else {
            LoggedChange::Exited {
                audience: info,
                reasons,
            }
        });
        self.memberships.push((position, holds));
    }
}

impl Segments {
    /// Writes an evaluation's results to the profile: its series pruned, the values and
    /// memberships that changed.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one evaluation's result"
    )]
    fn write_back(
        &self,
        profile_mut: &mut Profile,
        config: &ProfileConfig,
        (now, offset): (i64, i64),
        touched: &Touched<'_>,
        values: Vec<(u16, Option<(Value, bool)>)>,
        memberships: &[(usize, bool)],
        removed: Vec<Arc<str>>,
    ) {
        // Buckets no window can reach again are dropped: those of the event's series now,
        // all of them when the clock moved.
        if touched.all {
            for (position, series) in profile_mut.series.iter_mut() {
                if let Some(store) = self.stores.get(usize::from(position)) {
                    series.prune(store, now, offset);
                }
            }
            let known = self.stores.len();
            profile_mut
                .series
                .retain(|position, series| usize::from(position) < known && !series.is_empty());
        } else {
            for &position in config.stores_fed_by(touched.event) {
                if let (Some(store), Some(series)) = (
                    self.stores.get(usize::from(position)),
                    profile_mut.series.get_mut(position),
                ) {
                    series.prune(store, now, offset);
                }
            }
        }
        let stored = &mut profile_mut.segment.values;
        if stored.is_empty() {
            // A new profile's values, sorted by name at once.
            let mut added: Vec<(u16, Arc<str>, (Value, bool))> = values
                .into_iter()
                .filter_map(|(position, value)| {
                    let position = usize::from(position);
                    let name = self.computed.get(position)?;
                    let rank = self.computed_rank.get(position)?;
                    Some((*rank, Arc::clone(name), value?))
                })
                .collect();
            added.sort_unstable_by_key(|(rank, _, _)| *rank);
            // Into a list of its own length (collected in place, it would keep the room of the
            // wider list it came from for the profile's life).
            let mut sorted = Vec::with_capacity(added.len());
            sorted.extend(added.into_iter().map(|(_, name, value)| (name, value)));
            *stored = crate::unify::ComputedValues::from_sorted_store_unchecked(sorted);
            return self.write_memberships(profile_mut, now, memberships, removed);
        }
        for (position, value) in values {
            let Some(name) = self.computed.get(usize::from(position)) else {
                continue;
            };
            match value {
                Some(value) => match stored.get_mut(&**name) {
                    Some(slot) => *slot = value,
                    None => {
                        stored.insert(Arc::clone(name), value);
                    }
                },
                None => {
                    stored.remove(&**name);
                }
            }
        }
        self.write_memberships(profile_mut, now, memberships, removed);
    }

    /// Writes the memberships that changed (and leaves the removed audiences).
    fn write_memberships(
        &self,
        profile_mut: &mut Profile,
        now: i64,
        memberships: &[(usize, bool)],
        removed: Vec<Arc<str>>,
    ) {
        let stored = &mut profile_mut.segment.audiences;
        if stored.is_empty() {
            // A new profile's entries, sorted by key at once (one by one, each would move the
            // ones after it).
            let mut entered: Vec<(u16, Arc<str>, i64)> = memberships
                .iter()
                .filter(|(_, holds)| *holds)
                .filter_map(|&(position, _)| {
                    let audience = self.audiences.get(position)?;
                    Some((audience.rank, Arc::clone(&audience.info.key), now))
                })
                .collect();
            entered.sort_unstable_by_key(|(rank, _, _)| *rank);
            let mut sorted = Vec::with_capacity(entered.len());
            sorted.extend(entered.into_iter().map(|(_, key, at)| (key, at)));
            *stored = crate::unify::Memberships::from_sorted_store_unchecked(sorted);
        } else {
            for &(position, holds) in memberships {
                let Some(audience) = self.audiences.get(position) else {
                    continue;
                };
                if holds {
                    stored.insert(Arc::clone(&audience.info.key), now);
                } else {
                    stored.remove(&*audience.info.key);
                }
            }
        }
        for key in removed {
            profile_mut.segment.audiences.remove(&*key);
        }
    }

    /// The computed traits' values at `now` that changed (`None`: back to empty — 0, null or
    /// an empty list — which is not kept), each change pushed to `changes` and each time a
    /// value can next change given to `earliest`; and whether some were not evaluated (the
    /// event does not feed them).
    #[expect(
        clippy::type_complexity,
        reason = "a position and a value with its approximation flag"
    )]
    fn computed_values(
        &self,
        profile: &Profile,
        now: i64,
        offset: i64,
        touched: &Touched<'_>,
        out: &mut Results<'_>,
    ) -> (Vec<(u16, Option<(Value, bool)>)>, bool) {
        let empty = Series::default();
        let mut updates = Vec::new();
        let mut each = |position: u16| {
            let (Some(def), Some(name), Some(&store)) = (
                self.series.get(usize::from(position)),
                self.computed.get(usize::from(position)),
                self.store_of.get(usize::from(position)),
            ) else {
                return;
            };
            let series = profile.series.get(store).unwrap_or(&empty);
            let computed = series.value(def, now, offset);
            out.earliest(series.next_change(def, now, offset));
            let value = if computed.is_empty() {
                None
            } else {
                Some((computed.value, computed.approximate))
            };
            if profile.segment.values.get(&**name) != value.as_ref() {
                let (shown, approximate) = value
                    .clone()
                    .unwrap_or_else(|| (def.op.empty_value(), false));
                out.push(LoggedChange::Computed {
                    name: Arc::clone(name),
                    value: shown,
                    approximate,
                });
                updates.push((position, value));
            }
        };
        if touched.all {
            for position in 0..self.computed.len() {
                if let Ok(position) = u16::try_from(position) {
                    each(position);
                }
            }
            return (updates, false);
        }
        let fed = self
            .computed_on_event
            .get(touched.event)
            .map_or(&[][..], Vec::as_slice);
        for &position in fed {
            each(position);
        }
        // A new profile holds nothing the event does not feed: those values are empty, as
        // they were, with no time to change.
        (updates, !touched.fresh && fed.len() < self.computed.len())
    }
}

/// An audience in one evaluation: whether the profile was in it, its result once evaluated
/// (with until when it holds), and whether it moved.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    was: bool,
    result: Option<(bool, Option<i64>)>,
    moved: bool,
}

/// The audiences evaluated so far, by position, found by key; one not evaluated has its base
/// result.
struct Positional<'a> {
    segments: &'a Segments,
    fresh: bool,
    states: Vec<State>,
}

impl Positional<'_> {
    fn set(&mut self, position: usize, result: (bool, Option<i64>), moved: bool) {
        if let Some(state) = self.states.get_mut(position) {
            state.result = Some(result);
            state.moved = moved;
        }
    }

    /// The result of an audience that nothing it reads changed: what it was, or for a new
    /// profile that of a profile holding nothing.
    fn base(&self, position: usize) -> bool {
        if self.fresh {
            return self
                .segments
                .audiences
                .get(position)
                .is_some_and(|a| a.empty.0);
        }
        self.states.get(position).is_some_and(|s| s.was)
    }
}

impl Members for Positional<'_> {
    fn member(&self, key: &str) -> Option<(bool, Option<i64>)> {
        let position = *self.segments.positions.get(key)?;
        let state = self.states.get(position)?;
        Some(state.result.unwrap_or((self.base(position), None)))
    }
}

fn has_traits(event: &Event<'_>) -> bool {
    let mut any = false;
    event.for_each_traits(|traits| any |= !traits.is_empty());
    any || event.kind() == EventType::Identify
}
