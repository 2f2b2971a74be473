//! Profiles as a store keeps them: one record per profile (its identifiers, history, traits
//! and computed fields) as compact JSON, times in milliseconds since the Unix epoch; the
//! counters a unifier resumes from; and the fingerprint of the rules a store was built under.
//!
//! A record read back gives exactly the profile that was written: times count to the
//! millisecond everywhere in unification, and JSON numbers round-trip (`float_roundtrip`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::computed::{Series, SeriesSet, is_zero};
use super::identity::{
    Change, DropReason, Dropped, IdType, Identifier, IdentityRules, LogEntry, ProfileIds,
};
use super::profile::{Memberships, Profile, ProfileConfig, Segmented, TraitValue};
use crate::hex;
use crate::timestamp::{from_unix_millis as from_millis, unix_millis as millis};

/// The version of the record format.
pub const RECORD_VERSION: u32 = 2;

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not a record of this format.
    #[error("not a profile record: {0}")]
    Malformed(String),
    /// A record of another version.
    #[error("profile record version {found}, this build reads version {RECORD_VERSION}")]
    Version {
        /// The version found.
        found: u32,
    },
}

/// The counters a store keeps with the records, so that a unifier resumes where it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCounters {
    /// Events applied to a profile, ever.
    pub sequence: u64,
    /// Decisions of the identity graph, ever.
    pub decisions: u64,
    /// Events whose `messageId` another sender had used within the dedupe window, ever.
    #[serde(default)]
    pub collisions: u64,
    /// Entries of the change log (audience entries and exits, computed traits), ever.
    #[serde(default)]
    pub logged: u64,
}

/// One sender's use of a `messageId` as a store keeps it: the sender, when its event was
/// received (ms since the Unix epoch), the line it was first applied from.
pub type StoredSeen = (u64, i64, u64);

/// A dedupe entry's value: each sender of the `messageId`, when its event was received (ms) and
/// the line it was first applied from, as `sender:millis:origin` (sender and origin in 16 hex
/// digits) separated by spaces.
pub fn encode_seen(senders: &[StoredSeen]) -> Vec<u8> {
    let mut out = String::new();
    for (sender, millis, origin) in senders {
        if !out.is_empty() {
            out.push(' ');
        }
        hex::push(&mut out, &sender.to_be_bytes());
        out.push(':');
        out.push_str(&millis.to_string());
        out.push(':');
        hex::push(&mut out, &origin.to_be_bytes());
    }
    out.into_bytes()
}

/// Reads a dedupe entry's value ([`encode_seen`]).
///
/// # Errors
///
/// [`RecordError::Malformed`] when it is not one.
pub fn decode_seen(bytes: &[u8]) -> Result<Vec<StoredSeen>, RecordError> {
    let malformed = || RecordError::Malformed("a dedupe entry".to_owned());
    let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
    text.split(' ')
        .map(|entry| {
            let mut parts = entry.split(':');
            let (Some(sender), Some(millis), Some(origin), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed());
            };
            let hex = |text: &str| u64::from_str_radix(text, 16).map_err(|_| malformed());
            Ok((
                hex(sender)?,
                millis.parse().map_err(|_| malformed())?,
                hex(origin)?,
            ))
        })
        .collect()
}

/// The fingerprint of the rules and configuration profiles are computed under: a store built
/// under other rules must be rebuilt from the lake.
pub fn fingerprint(rules: &IdentityRules, config: &ProfileConfig) -> String {
    let series = &config.audience_series;
    let text = serde_json::json!({"identity": rules, "profiles": config, "record": RECORD_VERSION,
                                  "audience_series": series})
    .to_string();
    hex::encode(
        Sha256::digest(text.as_bytes())
            .get(..16)
            .unwrap_or_default(),
    )
}

#[derive(Serialize, Deserialize)]
struct RecordWire {
    v: u32,
    id: String,
    created: i64,
    /// `[type, value, first seen]`.
    ids: Vec<(String, String, i64)>,
    history: Vec<EntryWire>,
    traits: BTreeMap<String, TraitWire>,
    first: i64,
    last: i64,
    counts: litemap::LiteMap<String, u64>,
    sessions: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aggregates: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    last_at: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    merges: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    unlisted_drops: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    other_events: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    refused_traits: u64,
    /// The groups of identifiers linked by proven events, each as `[type, value]` pairs, the
    /// group's own (its smallest) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    verified: Vec<Vec<(String, String)>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    series: BTreeMap<String, Series>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consent: Option<(i64, BTreeMap<String, bool>)>,
    #[serde(default, skip_serializing_if = "SegmentedWire::is_empty")]
    seg: SegmentedWire,
}

/// [`Segmented`] as stored.
#[derive(Default, Serialize, Deserialize)]
struct SegmentedWire {
    #[serde(default)]
    at: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    values: BTreeMap<String, (Value, bool)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aud: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

impl SegmentedWire {
    fn into_segmented(self) -> Segmented {
        Segmented {
            evaluated: self.at,
            values: self
                .values
                .into_iter()
                .map(|(name, value)| (Arc::from(name), value))
                .collect(),
            audiences: memberships_in(self.aud),
            next_check: self.next,
        }
    }

    fn is_empty(&self) -> bool {
        self.at == 0 && self.values.is_empty() && self.aud.is_empty() && self.next.is_none()
    }
}

#[derive(Serialize, Deserialize)]
struct TraitWire {
    value: Value,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    mid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    counts: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct EntryWire {
    n: u64,
    mid: String,
    at: i64,
    #[serde(flatten)]
    change: ChangeWire,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum ChangeWire {
    Created {
        profile: String,
        ids: Vec<(String, String)>,
    },
    Linked {
        profile: String,
        ids: Vec<(String, String)>,
    },
    Merged {
        into: String,
        from: String,
        via: Vec<(String, String)>,
    },
    Dropped {
        kind: String,
        value: String,
        reason: ReasonWire,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "why", content = "detail", rename_all = "snake_case")]
enum ReasonWire {
    Invalid,
    Blocked(String),
    Unique,
    Limit(usize),
    TooManyIdentifiers(usize),
    TooManyMerges(usize),
    Unverified,
}

fn pair(id: &Identifier) -> (String, String) {
    (id.kind.as_str().to_owned(), id.value.clone())
}

fn pairs(ids: &[Identifier]) -> Vec<(String, String)> {
    ids.iter().map(pair).collect()
}

fn unpair((kind, value): (String, String)) -> Identifier {
    Identifier::new(IdType::parse(&kind), value)
}

fn unpairs(ids: Vec<(String, String)>) -> Vec<Identifier> {
    ids.into_iter().map(unpair).collect()
}

/// [`ProfileIds::verified`] as its groups.
fn proven_groups(verified: &BTreeMap<Identifier, Identifier>) -> Vec<Vec<(String, String)>> {
    let mut groups: BTreeMap<&Identifier, Vec<(String, String)>> = BTreeMap::new();
    for (id, root) in verified {
        groups.entry(root).or_default().push(pair(id));
    }
    groups.into_values().collect()
}

/// [`ProfileIds::verified`] from its groups ([`proven_groups`]).
fn from_groups(groups: Vec<Vec<(String, String)>>) -> BTreeMap<Identifier, Identifier> {
    let mut verified = BTreeMap::new();
    for group in groups {
        let group = unpairs(group);
        if let Some(root) = group.iter().min().cloned() {
            for id in group {
                verified.insert(id, root.clone());
            }
        }
    }
    verified
}

/// A profile's history as stored.
fn history_wire(history: &[LogEntry]) -> Vec<EntryWire> {
    history
        .iter()
        .map(|entry| EntryWire {
            n: entry.number,
            mid: entry.message_id.clone(),
            at: millis(entry.at),
            change: match &entry.change {
                Change::Created {
                    profile,
                    identifiers,
                } => ChangeWire::Created {
                    profile: profile.clone(),
                    ids: pairs(identifiers),
                },
                Change::Linked {
                    profile,
                    identifiers,
                } => ChangeWire::Linked {
                    profile: profile.clone(),
                    ids: pairs(identifiers),
                },
                Change::Merged { into, from, via } => ChangeWire::Merged {
                    into: into.clone(),
                    from: from.clone(),
                    via: pairs(via),
                },
                Change::Dropped(dropped) => ChangeWire::Dropped {
                    kind: dropped.kind.as_str().to_owned(),
                    value: dropped.value.clone(),
                    reason: match &dropped.reason {
                        DropReason::Invalid => ReasonWire::Invalid,
                        DropReason::Blocked(pattern) => ReasonWire::Blocked(pattern.clone()),
                        DropReason::Unique => ReasonWire::Unique,
                        DropReason::Limit(limit) => ReasonWire::Limit(*limit),
                        DropReason::TooManyIdentifiers(limit) => {
                            ReasonWire::TooManyIdentifiers(*limit)
                        }
                        DropReason::TooManyMerges(limit) => ReasonWire::TooManyMerges(*limit),
                        DropReason::Unverified => ReasonWire::Unverified,
                    },
                },
            },
        })
        .collect()
}

/// The record of a profile (its series named as `config` names them).
pub fn encode_record(ids: &ProfileIds, profile: &Profile, config: &ProfileConfig) -> Vec<u8> {
    let history = history_wire(&ids.history);
    let wire = RecordWire {
        v: RECORD_VERSION,
        id: ids.id.clone(),
        created: millis(ids.created_at),
        ids: ids
            .identifiers
            .iter()
            .map(|(id, first)| {
                (
                    id.kind.as_str().to_owned(),
                    id.value.clone(),
                    millis(*first),
                )
            })
            .collect(),
        history,
        traits: profile
            .traits
            .iter()
            .map(|(key, t)| {
                let wire = TraitWire {
                    value: t.value.clone(),
                    at: millis(t.at),
                    seq: t.sequence,
                    source: t.source.clone(),
                    mid: t.message_id.clone(),
                    counts: t.counts.clone(),
                };
                (key.clone(), wire)
            })
            .collect(),
        first: millis(profile.first_seen),
        last: millis(profile.last_seen),
        counts: profile.event_counts.clone(),
        sessions: profile.sessions,
        aggregates: profile.aggregates.clone(),
        last_at: profile
            .last_at
            .iter()
            .map(|(name, at)| (name.clone(), millis(*at)))
            .collect(),
        merges: ids.merges as u64,
        unlisted_drops: ids.unlisted_drops,
        other_events: profile.other_events,
        refused_traits: profile.refused_traits,
        verified: proven_groups(&ids.verified),
        series: series_wire(profile, config),
        consent: profile.consent.clone(),
        seg: segmented_wire(profile),
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// A profile as a preview of an audience reads it: only what conditions read — identifiers,
/// trait values, event counts, series, consent, memberships — without the history, the
/// traits' sources, the aggregates or the computed values, so that a million decode in a
/// second or two ([`decode_preview_row`]).
pub fn encode_preview_row(ids: &ProfileIds, profile: &Profile, config: &ProfileConfig) -> Vec<u8> {
    let wire = PreviewWire {
        id: ids.id.clone(),
        ids: pairs(&ids.identifiers.keys().cloned().collect::<Vec<_>>()),
        traits: profile
            .traits
            .iter()
            .map(|(key, t)| (key.clone(), t.value.clone()))
            .collect(),
        counts: profile.event_counts.clone(),
        series: series_wire(profile, config),
        consent: profile.consent.clone(),
        aud: memberships_out(&profile.segment.audiences),
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// A profile as [`encode_preview_row`] wrote it: times, histories and sources are empty.
///
/// # Errors
///
/// When `bytes` are not such a row.
pub fn decode_preview_row(
    bytes: &[u8],
    config: &ProfileConfig,
) -> Result<(ProfileIds, Profile), RecordError> {
    let wire: PreviewWire =
        serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
    Ok(from_preview_wire(wire, config))
}

/// What a condition reads of a preview row ([`crate::segment::Segments::row_reads`]): a row
/// read for it decodes nothing else ([`decode_preview_row_reading`]), the rest of its text
/// skipped unparsed into values — most of a preview's time is decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one independent part of a row"
)]
pub struct RowReads {
    /// The identifiers.
    pub identifiers: bool,
    /// The trait values.
    pub traits: bool,
    /// The event counts.
    pub counts: bool,
    /// The consent.
    pub consent: bool,
    /// The memberships of these audiences, by key.
    pub audiences: std::collections::BTreeSet<String>,
    /// The series of these stores, by name.
    pub stores: std::collections::BTreeSet<String>,
}

/// A profile's preview row ([`encode_preview_row`]), decoded only as far as `reads` asks: the
/// parts it does not read are left empty. `id` is always read.
///
/// # Errors
///
/// When `bytes` are not such a row.
pub fn decode_preview_row_reading(
    bytes: &[u8],
    config: &ProfileConfig,
    reads: &RowReads,
) -> Result<(ProfileIds, Profile), RecordError> {
    use serde::de::DeserializeSeed as _;
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let wire = RowSeed(reads)
        .deserialize(&mut reader)
        .and_then(|wire| reader.end().map(|()| wire))
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    Ok(from_preview_wire(wire, config))
}

/// The fields of a preview row.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum RowField {
    Id,
    Ids,
    Traits,
    Counts,
    Series,
    Consent,
    Aud,
    #[serde(other)]
    Other,
}

/// Reads a row's fields that `.0` reads, and skips the others.
struct RowSeed<'a>(&'a RowReads);

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = PreviewWire;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PreviewWire, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = PreviewWire;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a preview row")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PreviewWire, A::Error> {
        use serde::de::IgnoredAny;
        let reads = self.0;
        let mut wire = PreviewWire::default();
        while let Some(field) = map.next_key::<RowField>()? {
            match field {
                RowField::Id => wire.id = map.next_value()?,
                RowField::Ids if reads.identifiers => wire.ids = map.next_value()?,
                RowField::Traits if reads.traits => wire.traits = map.next_value()?,
                RowField::Counts if reads.counts => wire.counts = map.next_value()?,
                RowField::Series if !reads.stores.is_empty() => {
                    wire.series = map.next_value_seed(StoresSeed(&reads.stores))?;
                }
                RowField::Consent if reads.consent => wire.consent = map.next_value()?,
                RowField::Aud if !reads.audiences.is_empty() => {
                    wire.aud = map.next_value_seed(MembershipsSeed(&reads.audiences))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(wire)
    }
}

/// Reads the series of the stores named in `.0`, and skips the others.
struct StoresSeed<'a>(&'a std::collections::BTreeSet<String>);

impl<'de> serde::de::DeserializeSeed<'de> for StoresSeed<'_> {
    type Value = BTreeMap<String, Series>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StoresSeed<'_> {
    type Value = BTreeMap<String, Series>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row's series by store")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key_seed(WantedName(self.0))? {
            match name {
                Some(name) => {
                    out.insert(name, map.next_value()?);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Reads the memberships of the audiences named in `.0`, and skips the others.
struct MembershipsSeed<'a>(&'a std::collections::BTreeSet<String>);

impl<'de> serde::de::DeserializeSeed<'de> for MembershipsSeed<'_> {
    type Value = Vec<(String, i64)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MembershipsSeed<'_> {
    type Value = Vec<(String, i64)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row's memberships")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(membership) = seq.next_element_seed(MembershipSeed(self.0))? {
            out.extend(membership);
        }
        Ok(out)
    }
}

/// One membership, `[key, entered]`: kept when its key is one of `.0`.
struct MembershipSeed<'a>(&'a std::collections::BTreeSet<String>);

impl<'de> serde::de::DeserializeSeed<'de> for MembershipSeed<'_> {
    type Value = Option<(String, i64)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> serde::de::Visitor<'de> for MembershipSeed<'_> {
    type Value = Option<(String, i64)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a membership: [key, entered]")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let key = seq
            .next_element_seed(WantedName(self.0))?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let at: i64 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(1, &self))?;
        Ok(key.map(|key| (key, at)))
    }
}

/// A store's name (or an audience's key): kept when it is one of `.0`, without a copy of the
/// others.
struct WantedName<'a>(&'a std::collections::BTreeSet<String>);

impl<'de> serde::de::DeserializeSeed<'de> for WantedName<'_> {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for WantedName<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a store's name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.contains(name).then(|| name.to_owned()))
    }
}

/// A profile of a decoded row.
fn from_preview_wire(wire: PreviewWire, config: &ProfileConfig) -> (ProfileIds, Profile) {
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let ids = ProfileIds {
        id: wire.id.clone(),
        created_at: epoch,
        identifiers: wire
            .ids
            .into_iter()
            .map(|pair| (unpair(pair), epoch))
            .collect(),
        history: Vec::new(),
        merges: 0,
        unlisted_drops: 0,
        verified: BTreeMap::new(),
    };
    let mut profile = Profile::new(wire.id, epoch);
    profile.traits = wire
        .traits
        .into_iter()
        .map(|(key, value)| {
            let value = TraitValue {
                value,
                at: epoch,
                sequence: None,
                source: None,
                message_id: String::new(),
                counts: BTreeMap::new(),
            };
            (key, value)
        })
        .collect();
    profile.event_counts = wire.counts;
    profile.series = series_in(wire.series, config);
    profile.consent = wire.consent;
    profile.segment.audiences = memberships_in(wire.aud);
    (ids, profile)
}

/// [`encode_preview_row`]'s form.
#[derive(Default, Serialize, Deserialize)]
struct PreviewWire {
    id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "litemap::LiteMap::is_empty")]
    traits: litemap::LiteMap<String, Value>,
    #[serde(default, skip_serializing_if = "litemap::LiteMap::is_empty")]
    counts: litemap::LiteMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    series: BTreeMap<String, Series>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consent: Option<(i64, BTreeMap<String, bool>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aud: Vec<(String, i64)>,
}

/// A record's series by store name, placed by `config` (one it does not have is left out: the
/// store is rebuilt when the series change).
fn series_in(series: BTreeMap<String, Series>, config: &ProfileConfig) -> SeriesSet {
    series
        .into_iter()
        .filter_map(|(name, series)| Some((config.store_position(&name)?, series)))
        .collect()
}

/// Memberships as records keep them: key and when entered (a map in a record, a list in a
/// preview row).
fn memberships_out<C: FromIterator<(String, i64)>>(audiences: &Memberships) -> C {
    audiences
        .iter()
        .map(|(key, at)| (key.to_string(), *at))
        .collect()
}

/// Memberships read from a record or a preview row.
fn memberships_in(aud: impl IntoIterator<Item = (String, i64)>) -> Memberships {
    aud.into_iter()
        .map(|(key, at)| (Arc::from(key), at))
        .collect()
}

fn series_wire(profile: &Profile, config: &ProfileConfig) -> BTreeMap<String, Series> {
    profile
        .series
        .iter()
        .filter_map(|(position, series)| {
            Some((config.store(position)?.name.clone(), series.clone()))
        })
        .collect()
}

fn segmented_wire(profile: &Profile) -> SegmentedWire {
    SegmentedWire {
        at: profile.segment.evaluated,
        values: profile
            .segment
            .values
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect(),
        aud: memberships_out(&profile.segment.audiences),
        next: profile.segment.next_check,
    }
}

/// Reads a record written by [`encode_record`], its series placed by `config` (one that
/// `config` does not have is left out: the store is rebuilt when the series change).
///
/// # Errors
///
/// When `bytes` are not a record of this version.
pub fn decode_record(
    bytes: &[u8],
    config: &ProfileConfig,
) -> Result<(ProfileIds, Profile), RecordError> {
    let wire: RecordWire =
        serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if wire.v != RECORD_VERSION {
        return Err(RecordError::Version { found: wire.v });
    }
    let time = |ms: i64| {
        from_millis(ms).ok_or_else(|| RecordError::Malformed(format!("time out of range: {ms}")))
    };
    let mut identifiers = litemap::LiteMap::new();
    for (kind, value, first) in wire.ids {
        identifiers.insert(Identifier::new(IdType::parse(&kind), value), time(first)?);
    }
    let mut history = Vec::with_capacity(wire.history.len());
    for entry in wire.history {
        let change = match entry.change {
            ChangeWire::Created { profile, ids } => Change::Created {
                profile,
                identifiers: unpairs(ids),
            },
            ChangeWire::Linked { profile, ids } => Change::Linked {
                profile,
                identifiers: unpairs(ids),
            },
            ChangeWire::Merged { into, from, via } => Change::Merged {
                into,
                from,
                via: unpairs(via),
            },
            ChangeWire::Dropped {
                kind,
                value,
                reason,
            } => Change::Dropped(Dropped {
                kind: IdType::parse(&kind),
                value,
                reason: match reason {
                    ReasonWire::Invalid => DropReason::Invalid,
                    ReasonWire::Blocked(pattern) => DropReason::Blocked(pattern),
                    ReasonWire::Unique => DropReason::Unique,
                    ReasonWire::Limit(limit) => DropReason::Limit(limit),
                    ReasonWire::TooManyIdentifiers(limit) => DropReason::TooManyIdentifiers(limit),
                    ReasonWire::TooManyMerges(limit) => DropReason::TooManyMerges(limit),
                    ReasonWire::Unverified => DropReason::Unverified,
                },
            }),
        };
        history.push(LogEntry {
            number: entry.n,
            message_id: entry.mid,
            at: time(entry.at)?,
            change,
        });
    }
    let mut traits = litemap::LiteMap::new();
    for (key, t) in wire.traits {
        let value = TraitValue {
            value: t.value,
            at: time(t.at)?,
            sequence: t.seq,
            source: t.source,
            message_id: t.mid,
            counts: t.counts,
        };
        traits.insert(key, value);
    }
    let mut last_at = BTreeMap::new();
    for (name, at) in wire.last_at {
        last_at.insert(name, time(at)?);
    }
    let ids = ProfileIds {
        id: wire.id.clone(),
        created_at: time(wire.created)?,
        identifiers,
        history,
        merges: usize::try_from(wire.merges)
            .map_err(|_| RecordError::Malformed(format!("merges out of range: {}", wire.merges)))?,
        unlisted_drops: wire.unlisted_drops,
        verified: from_groups(wire.verified),
    };
    let profile = Profile {
        id: wire.id,
        traits,
        first_seen: time(wire.first)?,
        last_seen: time(wire.last)?,
        event_counts: wire.counts,
        sessions: wire.sessions,
        aggregates: wire.aggregates,
        last_at,
        other_events: wire.other_events,
        refused_traits: wire.refused_traits,
        series: series_in(wire.series, config),
        consent: wire.consent,
        segment: wire.seg.into_segmented(),
    };
    Ok((ids, profile))
}

/// The ids of a profile and of every profile merged into it (its history names them): what a
/// store needs to find everything filed under the profiles that no longer exist.
pub fn lineage(ids: &ProfileIds) -> Vec<String> {
    let mut out = vec![ids.id.clone()];
    for entry in &ids.history {
        if let Change::Merged { from, .. } = &entry.change
            && !out.contains(from)
        {
            out.push(from.clone());
        }
    }
    out
}
