//! The settings of a destination (`[[activate.destinations]]`) as the configuration holds
//! them, before they are checked: what each kind reads ([`super::destination`] checks them and
//! builds messages; [`super::postgres`] and [`super::files`] check what is their kinds' own).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A destination as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Its key: 1-64 characters of a-z, 0-9, `_` and `-` (its state and dead letters are kept
    /// under it).
    pub key: String,
    /// The workspace whose changes it receives (may be left out when there is one).
    #[serde(default)]
    pub workspace: Option<String>,
    /// What it is: `webhook`, `postgres` or `files`.
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    /// Whether it is delivered to (a destination switched off keeps its cursor).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The receiver's URL (`https://`, or `http://` for a receiver on the allow-list); for
    /// `postgres`, the database's (`postgres://user@host:port/database?sslmode=require`);
    /// none for `files`.
    #[serde(default)]
    pub url: String,
    /// `POST`, `PUT` or `PATCH`.
    #[serde(default)]
    pub method: Method,
    /// The signing key, `whsec_` and 24-64 bytes in base64; for `postgres`, the database
    /// user's password (when the URL has none). Secret: may come from
    /// `BRAID_DESTINATION_<KEY>_SECRET` instead (the key in capitals, `-` as `_`).
    #[serde(default)]
    pub secret: String,
    /// Keys a receiver may still verify with while it moves to `secret` (each delivery is
    /// signed by every key).
    #[serde(default)]
    pub previous_secrets: Vec<String>,
    /// A shared secret that also signs each request as Segment's webhooks do (`X-Signature`:
    /// the body's HMAC-SHA1, hex), for receivers written for Segment. Secret: may come from
    /// `BRAID_DESTINATION_<KEY>_SEGMENT_SECRET` instead.
    #[serde(default)]
    pub segment_secret: String,
    /// What it receives: `audience_entered`, `audience_exited`, `computed_trait`,
    /// `profile_changed`. Left out: a webhook receives the first three, a database all four.
    #[serde(default)]
    pub receives: Option<Vec<MessageKind>>,
    /// Only the entries and exits of these audiences (every audience when empty).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Only these computed traits (every one when empty).
    #[serde(default)]
    pub computed_traits: Vec<String>,
    /// The consent categories a profile must grant (`context.consent.categoryPreferences`,
    /// its latest): a profile that does not grant every one is never sent.
    #[serde(default)]
    pub consent: Vec<String>,
    /// Whether a message carries the profile's identifiers (`identifiers`, by type).
    #[serde(default = "yes")]
    pub identifiers: bool,
    /// The profile's traits a message carries (`traits`), by name.
    #[serde(default)]
    pub traits: Vec<String>,
    /// Messages per request: 1 sends each alone, more sends `{"batch": [...]}` (1 when left
    /// out); for `postgres`, changes per transaction (1-1000, 500 when left out).
    #[serde(default)]
    pub batch: Option<usize>,
    /// How long a request may take, in seconds (1-30).
    #[serde(default = "fifteen")]
    pub timeout_seconds: u64,
    /// The waits before each retry, in seconds (Standard Webhooks' schedule when left out:
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    #[serde(default)]
    pub retry_seconds: Option<Vec<u64>>,
    /// After how many hours of failing it is disabled (5 days when left out).
    #[serde(default = "five_days")]
    pub disable_after_hours: u64,
    /// Addresses it may reach although they are private or local (`127.0.0.1`, `10.0.0.0/8`):
    /// for receivers on this machine or network, which are refused otherwise.
    #[serde(default)]
    pub allow_addresses: Vec<String>,
    /// How a message's fields are chosen and named.
    #[serde(default)]
    pub mapping: Mapping,
    /// `postgres`: the schema its tables are in (`public` when left out).
    #[serde(default)]
    pub schema: Option<String>,
    /// `postgres`: the start of its tables' names (`braid_` when left out).
    #[serde(default)]
    pub table_prefix: Option<String>,
    /// `postgres`: traits that also get a typed column of the profiles table, each with its
    /// type: `text`, `integer`, `number`, `boolean` or `timestamp`.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
    /// How long a request may wait for more messages: one is sent when `batch` messages wait
    /// or the oldest has waited this long, in seconds (0, at once, when left out; an hour for
    /// `files`).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    /// `files`: `ndjson` (when left out) or `csv`.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// `files`: hours between full exports (24 when left out; 0: only when it starts).
    #[serde(default)]
    pub full_every_hours: Option<u64>,
}

fn yes() -> bool {
    true
}

fn fifteen() -> u64 {
    15
}

fn five_days() -> u64 {
    120
}

impl DestinationConfig {
    /// What it receives: `receives`, or its kind's default when that is left out.
    pub fn kinds(&self) -> Vec<MessageKind> {
        self.receives
            .clone()
            .unwrap_or_else(|| default_kinds(self.kind))
    }
}

/// What a destination of `kind` receives when its `receives` is left out.
fn default_kinds(kind: DestinationKind) -> Vec<MessageKind> {
    let mut kinds = vec![
        MessageKind::AudienceEntered,
        MessageKind::AudienceExited,
        MessageKind::ComputedTrait,
    ];
    if kind != DestinationKind::Webhook {
        kinds.push(MessageKind::ProfileChanged);
    }
    kinds
}

/// What a destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// JSON over HTTP, signed (Standard Webhooks).
    Webhook,
    /// Tables of a `PostgreSQL` database, kept equal to the profiles (`super::postgres`).
    Postgres,
    /// Exports of the profiles as files in the lake, with a manifest (`super::files`).
    Files,
}

/// A webhook's HTTP method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST`.
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
}

impl Method {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// What a message tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A profile entered an audience.
    AudienceEntered,
    /// A profile left an audience.
    AudienceExited,
    /// A computed trait's value changed.
    ComputedTrait,
    /// A profile's traits, identifiers or consent changed, it is new, or it was merged into
    /// another.
    ProfileChanged,
}

impl MessageKind {
    /// Its `type` in a message.
    pub fn message_type(self) -> &'static str {
        match self {
            MessageKind::AudienceEntered => "audience.entered",
            MessageKind::AudienceExited => "audience.exited",
            MessageKind::ComputedTrait => "computed_trait.changed",
            MessageKind::ProfileChanged => "profile.changed",
        }
    }

    /// The kind of a change log entry (its `type`).
    pub(super) fn of_entry(entry: &Value) -> Option<MessageKind> {
        match entry.get("type").and_then(Value::as_str)? {
            "audience_entered" => Some(MessageKind::AudienceEntered),
            "audience_exited" => Some(MessageKind::AudienceExited),
            "computed_trait" => Some(MessageKind::ComputedTrait),
            "profile_updated" | "profile_merged" => Some(MessageKind::ProfileChanged),
            _ => None,
        }
    }
}

/// How a message's fields are chosen and named, applied in this order: `select` keeps only
/// the fields it names (all when empty), `rename` moves fields, `constants` sets fields to
/// values, `templates` sets fields to text made of the message's fields (`{profile}`,
/// `{traits.email}`). Fields are named by path: `traits.email` is `email` in `traits`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    /// The fields kept.
    pub select: Vec<String>,
    /// Field → its new name.
    pub rename: BTreeMap<String, String>,
    /// Field → a fixed value.
    pub constants: BTreeMap<String, Value>,
    /// Field → a text with `{field}` places.
    pub templates: BTreeMap<String, String>,
}

/// The type of a trait's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// `text`: a string as it is, a number or boolean as written, an object or list as JSON.
    Text,
    /// `bigint`: a whole number (or a string of one) within 64 bits.
    Integer,
    /// `double precision`: a finite number (or a string of one).
    Number,
    /// `boolean`: `true`, `false` (or those words).
    Boolean,
    /// `timestamptz`: a time as the wire format reads them (ISO 8601).
    Timestamp,
}

/// A file's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// A JSON object per line.
    #[default]
    Ndjson,
    /// Comma-separated values with a header line (RFC 4180).
    Csv,
}
