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
pub mod log;
mod stream;
#[cfg(test)]
mod tests;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use condition::{Condition, ConditionError, Count, MAX_DEPTH, MAX_NODES, Test};
pub use evaluate::{Ctx, Members, Outcome};
pub use log::{AudienceInfo, Logged, LoggedChange, Reasons};

use crate::timestamp;
use crate::unify::computed::{ComputedOp, ComputedTrait, Window, shared_stores};
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
    /// Its key, name and leaf conditions in words, as the change log's entries share them.
    info: Arc<AudienceInfo>,
    /// For a tree of one condition, the reasons of an exit and of an entry: that condition,
    /// not holding or holding.
    leaf_reasons: (Reasons, Reasons),
    /// Whether a profile that holds nothing (no event, trait, identifier or consent) is in it,
    /// and the leaves that decide so: what a new profile's result is where its first event
    /// touched nothing the audience reads.
    empty: (bool, Reasons),
    /// Its place among the audiences in the order of their keys (how a profile's memberships
    /// are sorted).
    rank: u16,
    /// The audiences that name it, directly or through others (by position): those its
    /// moving can move.
    dependents: Bits,
}

/// A set of audiences, by position in the order of evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: usize) {
        let word = i / 64;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << (i % 64);
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The positions held, in order.
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut word = word;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                Some(w * 64 + bit)
            })
        })
    }

    fn union(&mut self, other: &Bits) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine |= theirs;
        }
    }
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
/// each comes after those it names, and everything an event looks up found by position.
#[derive(Clone, Debug, Default)]
pub struct Segments {
    audiences: Vec<Audience>,
    /// Each audience's position in `audiences`, by key.
    positions: HashMap<String, usize>,
    /// Every series, in the order of [`ProfileConfig::series`]: the computed traits, then
    /// what the audiences count.
    series: Vec<ComputedTrait>,
    /// Each series' position, by name.
    series_positions: HashMap<String, u16>,
    /// The stores a profile keeps the series in ([`shared_stores`]), and each series' store.
    stores: Vec<ComputedTrait>,
    store_of: Vec<u16>,
    /// The computed traits' names (the first series), as log entries share them.
    computed: Vec<Arc<str>>,
    /// Each computed trait's place in the order of their names (how a profile's values are
    /// sorted).
    computed_rank: Vec<u16>,
    audience_series: Vec<ComputedTrait>,
    /// The audiences an event of a name can change (by its event conditions and the computed
    /// traits they compare), and those that traits, consent and identifiers can change.
    on_event: HashMap<String, Bits>,
    on_traits: Bits,
    on_consent: Bits,
    on_identifiers: Bits,
    /// The computed traits an event of a name feeds, by position.
    computed_on_event: HashMap<String, Vec<u16>>,
    /// The audiences a profile that holds nothing is in, by position.
    empty_members: Vec<usize>,
    /// Whether profiles updated and merged are logged (a destination receives them).
    pub log_profiles: bool,
}

impl PartialEq for Segments {
    fn eq(&self, other: &Segments) -> bool {
        // The rest is derived from these.
        self.audiences == other.audiences && self.series == other.series
    }
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
        let mut audience_series = Vec::new();
        let audiences = read_audiences(profiles, config, &mut audience_series)?;
        let order = dependency_order(&audiences)?;
        let mut audiences = audiences;
        let ordered: Vec<Audience> = order
            .into_iter()
            .filter_map(|key| audiences.remove(&key))
            .collect();
        let series: Vec<ComputedTrait> = profiles
            .computed
            .iter()
            .chain(&audience_series)
            .cloned()
            .collect();
        let series_positions: HashMap<String, u16> = series
            .iter()
            .enumerate()
            .filter_map(|(i, def)| Some((def.name.clone(), u16::try_from(i).ok()?)))
            .collect();
        let (stores, store_of) = shared_stores(&series);
        let mut segments = Segments {
            audiences: Vec::new(),
            positions: ordered
                .iter()
                .enumerate()
                .map(|(i, a)| (a.key.clone(), i))
                .collect(),
            series,
            series_positions,
            stores,
            store_of,
            computed: profiles
                .computed
                .iter()
                .map(|d| Arc::from(d.name.as_str()))
                .collect(),
            audience_series,
            ..Segments::default()
        };
        let mut by_name: Vec<usize> = (0..segments.computed.len()).collect();
        by_name.sort_by(|a, b| segments.computed.get(*a).cmp(&segments.computed.get(*b)));
        segments.computed_rank = vec![0; by_name.len()];
        for (rank, position) in by_name.into_iter().enumerate() {
            if let Some(slot) = segments.computed_rank.get_mut(position) {
                *slot = u16::try_from(rank).unwrap_or(u16::MAX);
            }
        }
        segments.index(ordered, profiles);
        Ok(segments)
    }

    /// Takes the audiences in their order of evaluation and indexes them: the series their
    /// conditions name, by position; which audiences an event, traits, consent and
    /// identifiers can change; which name which; their results for a profile holding
    /// nothing.
    fn index(&mut self, mut ordered: Vec<Audience>, profiles: &ProfileConfig) {
        for (position, audience) in ordered.iter_mut().enumerate() {
            audience.depends.member_positions = audience
                .depends
                .members
                .iter()
                .filter_map(|m| self.positions.get(m).copied())
                .collect();
            self.resolve(&mut audience.when);
            let depends = &audience.depends;
            for event in &depends.events {
                self.on_event
                    .entry(event.clone())
                    .or_default()
                    .set(position);
            }
            for (on, set) in [
                (depends.traits, &mut self.on_traits),
                (depends.consent, &mut self.on_consent),
                (depends.identifiers, &mut self.on_identifiers),
            ] {
                if on {
                    set.set(position);
                }
            }
        }
        for (position, def) in profiles.computed.iter().enumerate() {
            let Ok(position) = u16::try_from(position) else {
                break;
            };
            let mut events = vec![def.event.clone()];
            events.extend(def.then.as_ref().map(|then| then.event.clone()));
            events.dedup();
            for event in events {
                self.computed_on_event
                    .entry(event)
                    .or_default()
                    .push(position);
            }
        }
        // Dependents, from the last audience back: each comes after those it names, so the
        // dependents of an audience's dependents are known when it is reached.
        for position in (0..ordered.len()).rev() {
            let mut dependents = Bits::default();
            for (other, audience) in ordered.iter().enumerate().skip(position + 1) {
                if audience.depends.member_positions.contains(&position) {
                    dependents.set(other);
                    dependents.union(&audience.dependents);
                }
            }
            if let Some(audience) = ordered.get_mut(position) {
                audience.dependents = dependents;
            }
        }
        self.audiences = ordered;
        let empty = self.empty_results(profiles);
        for (position, (audience, (holds, picks))) in
            self.audiences.iter_mut().zip(empty).enumerate()
        {
            audience.empty = (holds, Reasons::picked(picks));
            if holds {
                self.empty_members.push(position);
            }
        }
    }

    /// Each audience's result for a profile that holds nothing, with its deciding leaves (a
    /// function of the conditions alone: nothing of such a profile changes with the clock).
    fn empty_results(&self, config: &ProfileConfig) -> Vec<(bool, Vec<(u16, bool)>)> {
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        let profile = Profile::new(String::new(), epoch);
        let ids = ProfileIds {
            id: String::new(),
            created_at: epoch,
            identifiers: litemap::LiteMap::new(),
            history: Vec::new(),
            merges: 0,
            unlisted_drops: 0,
            verified: BTreeMap::new(),
        };
        let mut members = BTreeMap::new();
        let mut out = Vec::with_capacity(self.audiences.len());
        for audience in &self.audiences {
            let ctx = Ctx {
                ids: &ids,
                profile: &profile,
                config,
                segments: self,
                now: 0,
                members: &members,
            };
            let holds = ctx.evaluate(&audience.when).holds;
            let mut picks = Vec::new();
            ctx.deciding(&audience.when, &mut 0, &mut picks);
            members.insert(audience.key.clone(), (holds, None));
            out.push((holds, picks));
        }
        out
    }

    /// Places the series and computed traits `condition` names (by their positions).
    fn resolve(&self, condition: &mut Condition) {
        match condition {
            Condition::And(children) | Condition::Or(children) => {
                for child in children {
                    self.resolve(child);
                }
            }
            Condition::Not(inner) => self.resolve(inner),
            Condition::Performed { def, slot, .. } => {
                *slot = self.series_positions.get(&def.name).copied();
            }
            Condition::Computed { name, slot, .. } => {
                *slot = self
                    .series_positions
                    .get(name)
                    .copied()
                    .filter(|&p| usize::from(p) < self.computed.len());
            }
            _ => {}
        }
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
        self.audiences.get(*self.positions.get(key)?)
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.audiences.is_empty() && self.computed.is_empty()
    }

    /// Every series, in the order of [`ProfileConfig::series`].
    pub fn series(&self) -> &[ComputedTrait] {
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
                segments: self,
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
            .series
            .iter()
            .take(self.computed.len())
            .map(|def| (def.name.as_str(), def))
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
            let counted = self.series.iter().find(|def| {
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
        if let Some(problem) = problem {
            return Err(SegmentError::Invalid(problem));
        }
        self.resolve(&mut condition);
        Ok(condition)
    }

    /// What `condition` reads of a profile's preview row (with the membership of `compare`,
    /// when a preview compares the condition with that saved audience's members).
    pub fn row_reads(
        &self,
        condition: &Condition,
        config: &ProfileConfig,
        compare: Option<&str>,
    ) -> crate::unify::RowReads {
        let mut reads = crate::unify::RowReads::default();
        reads.audiences.extend(compare.map(str::to_owned));
        self.add_reads(condition, config, &mut reads);
        reads
    }

    fn add_reads(
        &self,
        condition: &Condition,
        config: &ProfileConfig,
        reads: &mut crate::unify::RowReads,
    ) {
        let mut store = |slot: Option<u16>| -> bool {
            let Some(slot) = slot else {
                return false;
            };
            let name = self
                .store_of
                .get(usize::from(slot))
                .and_then(|&store| config.store(store));
            if let Some(def) = name {
                reads.stores.insert(def.name.clone());
            }
            true
        };
        match condition {
            Condition::And(children) | Condition::Or(children) => {
                for child in children {
                    self.add_reads(child, config, reads);
                }
            }
            Condition::Not(inner) => self.add_reads(inner, config, reads),
            Condition::Trait { .. } => reads.traits = true,
            Condition::Computed { slot, .. } => {
                store(*slot);
            }
            Condition::Performed { slot, .. } => {
                if !store(*slot) {
                    // Answered from the event counts every profile keeps.
                    reads.counts = true;
                }
            }
            Condition::HasIdentifier(_) => reads.identifiers = true,
            Condition::Consent(_) => reads.consent = true,
            Condition::Member(key) => {
                reads.audiences.insert(key.clone());
            }
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
        let ctx = Ctx {
            ids,
            profile,
            config,
            segments: self,
            now,
            members: &Stored(&profile.segment.audiences),
        };
        ctx.evaluate(condition).holds
    }
}

/// A profile's stored memberships, as a preview reads them (whether the profile is in each,
/// without when that would change).
pub(super) struct Stored<'a>(pub(super) &'a crate::unify::Memberships);

impl Members for Stored<'_> {
    fn member(&self, key: &str) -> Option<(bool, Option<i64>)> {
        Some((self.0.contains_key(key), None))
    }
}

/// Reads each audience of `config` (by key), pushing the series its event conditions count.
///
/// # Errors
///
/// The first problem: a key, a condition (with its place), a computed trait or an audience
/// that does not exist.
fn read_audiences(
    profiles: &ProfileConfig,
    config: &SegmentConfig,
    audience_series: &mut Vec<ComputedTrait>,
) -> Result<BTreeMap<String, Audience>, SegmentError> {
    let computed: BTreeMap<&str, &ComputedTrait> = profiles
        .computed
        .iter()
        .map(|def| (def.name.as_str(), def))
        .collect();
    let mut audiences = BTreeMap::new();
    for (key, audience) in &config.audiences {
        if !is_key(key) {
            return Err(SegmentError::Invalid(format!(
                "segment.audiences: key {key:?} must be 1-64 characters of a-z, 0-9, '_' and '-'"
            )));
        }
        let root = format!("segment.audiences.{key}.when");
        let first = audience_series.len();
        let when =
            condition::parse(&audience.when, &root, key, audience_series).map_err(|error| {
                SegmentError::Condition {
                    audience: key.clone(),
                    error,
                }
            })?;
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
        let mut leaves = Vec::new();
        when.leaf_texts(&mut leaves);
        audiences.insert(
            key.clone(),
            Audience {
                key: key.clone(),
                info: Arc::new(AudienceInfo {
                    key: Arc::from(key.as_str()),
                    name: name.clone(),
                    leaves: leaves.into(),
                }),
                leaf_reasons: (
                    Reasons::picked(vec![(0, false)]),
                    Reasons::picked(vec![(0, true)]),
                ),
                name,
                when,
                depends,
                empty: (false, Reasons::picked(Vec::new())),
                // Keys are read in order: this is the key's place among them.
                rank: u16::try_from(audiences.len()).unwrap_or(u16::MAX),
                dependents: Bits::default(),
            },
        );
    }
    Ok(audiences)
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
