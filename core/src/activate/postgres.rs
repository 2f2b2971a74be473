//! A `PostgreSQL` destination: tables kept equal to the profiles — everything of it that is not
//! I/O (the settings' rules, the tables' statements, the rows of a batch). The runtime
//! (`braid_unifier::activate::postgres`) connects, migrates and runs them.
//!
//! Two tables, in the destination's schema, named with its prefix (`braid_` by default):
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `braid_profiles` | profile | `workspace`, `profile_id`, `identifiers` (JSONB, as the profile API lists them), `traits` (JSONB, name → value), `computed_traits` (JSONB), `audiences` (JSONB, keys), `first_seen`, `last_seen`, `event_counts` (JSONB), `change_number` (the last change written), `sync`, `updated_at`, and a typed column per trait of `columns` |
//! | `braid_audience_members` | profile in an audience | `workspace`, `audience`, `profile_id`, `entered_at`, `sync` |
//!
//! The rows are state, not a history: each change of a profile writes the profile as it is when
//! it is written (or deletes its rows when it is gone, merged into another, or does not grant
//! the destination's consent), so a redelivery writes the same rows and the tables converge on
//! the profiles whatever was delivered twice. A full copy (a new destination, or a rebuild of
//! the profiles, which may split one) writes every profile with a new `sync` number and then
//! deletes the rows of older numbers: the profiles that no longer exist.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub use super::settings::ColumnType;
use super::settings::{DestinationConfig, Mapping, Method};
use crate::timestamp;

/// Changes written per transaction when `batch` is left out.
pub const DEFAULT_BATCH: usize = 500;

/// The most changes per transaction.
pub const MAX_BATCH: usize = 1_000;

/// The most typed columns.
pub const MAX_COLUMNS: usize = 100;

/// The version of the tables this code writes (kept in the `migrations` table).
pub const SCHEMA_VERSION: i32 = 1;

impl ColumnType {
    /// Its SQL type.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "bigint",
            ColumnType::Number => "double precision",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamptz",
        }
    }

    /// `value` as this column holds it, or null when it is not one (a trait that is not a
    /// number leaves a number column empty rather than failing its batch).
    pub fn convert(self, value: &Value) -> Value {
        match (self, value) {
            (_, Value::Null) => Value::Null,
            (ColumnType::Text, Value::String(text)) => json!(text),
            (ColumnType::Text, other) => json!(other.to_string()),
            (ColumnType::Integer, Value::Number(n)) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| {
                    // Whole numbers written as floats (3.0), within 64 bits.
                    let f = n.as_f64()?;
                    let whole = f.fract() == 0.0 && f.abs() < 9.0e18;
                    #[expect(
                        clippy::cast_possible_truncation,
                        reason = "checked whole and in range"
                    )]
                    whole.then(|| Value::from(f as i64))
                })
                .unwrap_or(Value::Null),
            (ColumnType::Integer, Value::String(text)) => {
                text.trim().parse::<i64>().map_or(Value::Null, Value::from)
            }
            (ColumnType::Number, Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
            (ColumnType::Number, Value::String(text)) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map_or(Value::Null, Value::from),
            (ColumnType::Boolean, Value::Bool(b)) => json!(b),
            (ColumnType::Boolean, Value::String(text)) => match text.trim() {
                "true" => json!(true),
                "false" => json!(false),
                _ => Value::Null,
            },
            (ColumnType::Timestamp, Value::String(text)) => {
                timestamp::parse(text).map_or(Value::Null, |at| json!(timestamp::format(at)))
            }
            _ => Value::Null,
        }
    }
}

/// Columns of the profiles table that a trait's column may not be named.
const RESERVED: [&str; 12] = [
    "workspace",
    "profile_id",
    "identifiers",
    "traits",
    "computed_traits",
    "audiences",
    "first_seen",
    "last_seen",
    "event_counts",
    "change_number",
    "sync",
    "updated_at",
];

/// The column of trait `name`: lower case, each character other than a-z, 0-9 and `_` as `_`
/// (`firstName` → `firstname`, `plan.tier` → `plan_tier`), and `t_` before one that starts
/// with a digit.
pub fn column_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "t_");
    }
    out
}

/// Whether `name` is a plain SQL name: 1-40 of a-z, 0-9 and `_`, not starting with a digit.
fn is_plain(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks what is a postgres destination's own: its URL, schema, prefix and columns, and no
/// webhook setting. The setting and the problem when it is wrong.
///
/// # Errors
///
/// The first setting that is wrong, and why.
pub fn check(config: &DestinationConfig) -> Result<(), (String, String)> {
    let fail = |field: &str, problem: &str| Err((field.to_owned(), problem.to_owned()));
    if !(config.url.starts_with("postgres://") || config.url.starts_with("postgresql://")) {
        return fail(
            "url",
            "a postgres:// URL (postgres://user@host:5432/database?sslmode=require)",
        );
    }
    if config.url.len() > 2_000 || config.secret.len() > 1_000 {
        return fail("url", "at most 2000 bytes (and the secret at most 1000)");
    }
    for (field, set) in [
        ("method", config.method != Method::Post),
        ("previous_secrets", !config.previous_secrets.is_empty()),
        ("segment_secret", !config.segment_secret.is_empty()),
        ("allow_addresses", !config.allow_addresses.is_empty()),
        ("mapping", config.mapping != Mapping::default()),
    ] {
        if set {
            return fail(
                field,
                "a setting of a webhook, not of a postgres destination",
            );
        }
    }
    if let Some(schema) = &config.schema
        && !is_plain(schema)
    {
        return fail(
            "schema",
            "1-40 of a-z, 0-9 and '_', not starting with a digit",
        );
    }
    if let Some(prefix) = &config.table_prefix
        && !(prefix.is_empty() || is_plain(prefix))
    {
        return fail(
            "table_prefix",
            "0-40 of a-z, 0-9 and '_', not starting with a digit",
        );
    }
    if config.columns.len() > MAX_COLUMNS {
        return fail("columns", "at most 100 typed columns");
    }
    let mut seen = BTreeSet::new();
    for name in config.columns.keys() {
        let column = column_name(name);
        let field = format!("columns.{name}");
        if name.is_empty() || name.len() > 200 || column.len() > 63 {
            return Err((field, "a trait name of 1-60 bytes".to_owned()));
        }
        if RESERVED.contains(&column.as_str()) {
            return Err((
                field,
                format!("its column {column:?} is one of the table's own"),
            ));
        }
        if !seen.insert(column.clone()) {
            return Err((
                field,
                format!("its column {column:?} is another trait's column too"),
            ));
        }
    }
    Ok(())
}

/// A destination's tables: where they are and what typed columns they have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// The schema.
    pub schema: String,
    /// The start of the tables' names.
    pub prefix: String,
    /// The typed columns: trait, column, type.
    pub columns: Vec<(String, String, ColumnType)>,
    /// The traits copied into `traits` (all when empty).
    pub traits: Vec<String>,
}

impl Tables {
    /// The tables of a (checked) destination.
    pub fn of(config: &DestinationConfig) -> Tables {
        Tables {
            schema: config.schema.clone().unwrap_or_else(|| "public".to_owned()),
            prefix: config
                .table_prefix
                .clone()
                .unwrap_or_else(|| "braid_".to_owned()),
            columns: config
                .columns
                .iter()
                .map(|(name, kind)| (name.clone(), column_name(name), *kind))
                .collect(),
            traits: config.traits.clone(),
        }
    }

    /// A table's name, schema-qualified and quoted (names are plain: [`check`]).
    pub fn table(&self, name: &str) -> String {
        format!("\"{}\".\"{}{name}\"", self.schema, self.prefix)
    }

    /// The profiles table.
    pub fn profiles(&self) -> String {
        self.table("profiles")
    }

    /// The audience members table.
    pub fn members(&self) -> String {
        self.table("audience_members")
    }

    /// A number that names these tables for an advisory lock (two deliverers migrating at
    /// once take turns).
    pub fn lock_key(&self) -> i64 {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("braid\0{}\0{}", self.schema, self.prefix));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        i64::from_le_bytes(bytes)
    }

    /// The statements that create the tables, or bring older ones up to date, in order (each
    /// may run again: `IF NOT EXISTS`). A typed column keeps the type it was created with.
    pub fn migrations(&self) -> Vec<String> {
        let profiles = self.profiles();
        let members = self.members();
        let mut out = Vec::new();
        if self.schema != "public" {
            out.push(format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema));
        }
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
            self.table("migrations")
        ));
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {profiles} (\
             workspace text NOT NULL, profile_id text NOT NULL, \
             identifiers jsonb NOT NULL, traits jsonb NOT NULL, \
             computed_traits jsonb NOT NULL, audiences jsonb NOT NULL, \
             first_seen timestamptz, last_seen timestamptz, event_counts jsonb NOT NULL, \
             change_number bigint NOT NULL, sync bigint NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (workspace, profile_id))"
        ));
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {members} (\
             workspace text NOT NULL, audience text NOT NULL, profile_id text NOT NULL, \
             entered_at timestamptz, sync bigint NOT NULL, \
             PRIMARY KEY (workspace, audience, profile_id))"
        ));
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS \"{}audience_members_profile\" \
             ON {members} (workspace, profile_id)",
            self.prefix
        ));
        for (_, column, kind) in &self.columns {
            out.push(format!(
                "ALTER TABLE {profiles} ADD COLUMN IF NOT EXISTS \"{column}\" {}",
                kind.sql()
            ));
        }
        out.push(format!(
            "INSERT INTO {} (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT DO NOTHING",
            self.table("migrations")
        ));
        out
    }

    /// Upserts the profiles of `$2` (a JSON list of [`Rows::profiles`]) in workspace `$1`.
    pub fn upsert_profiles(&self) -> String {
        use std::fmt::Write as _;
        let (mut typed, mut declared, mut updated, mut read) =
            (String::new(), String::new(), String::new(), String::new());
        for (_, column, kind) in &self.columns {
            write!(typed, ", \"{column}\"").unwrap_or_default();
            write!(declared, ", \"{column}\" {}", kind.sql()).unwrap_or_default();
            write!(updated, ", \"{column}\" = EXCLUDED.\"{column}\"").unwrap_or_default();
            write!(read, ", r.\"{column}\"").unwrap_or_default();
        }
        format!(
            "INSERT INTO {} (workspace, profile_id, identifiers, traits, computed_traits, \
             audiences, first_seen, last_seen, event_counts, change_number, sync, updated_at\
             {typed}) \
             SELECT $1, r.profile_id, r.identifiers, r.traits, r.computed_traits, r.audiences, \
             r.first_seen, r.last_seen, r.event_counts, r.change_number, r.sync, now(){read} \
             FROM jsonb_to_recordset($2::jsonb) AS r(profile_id text, identifiers jsonb, \
             traits jsonb, computed_traits jsonb, audiences jsonb, first_seen timestamptz, \
             last_seen timestamptz, event_counts jsonb, change_number bigint, sync bigint\
             {declared}) \
             ON CONFLICT (workspace, profile_id) DO UPDATE SET \
             identifiers = EXCLUDED.identifiers, traits = EXCLUDED.traits, \
             computed_traits = EXCLUDED.computed_traits, audiences = EXCLUDED.audiences, \
             first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, \
             event_counts = EXCLUDED.event_counts, change_number = EXCLUDED.change_number, \
             sync = EXCLUDED.sync, updated_at = now(){updated}",
            self.profiles()
        )
    }

    /// Deletes the profiles of `$2` (a JSON list of ids) in workspace `$1`.
    pub fn delete_profiles(&self) -> String {
        format!(
            "DELETE FROM {} WHERE workspace = $1 AND profile_id IN \
             (SELECT jsonb_array_elements_text($2::jsonb))",
            self.profiles()
        )
    }

    /// Deletes the memberships of the profiles of `$2` (a JSON list of ids) in workspace `$1`.
    pub fn delete_members(&self) -> String {
        format!(
            "DELETE FROM {} WHERE workspace = $1 AND profile_id IN \
             (SELECT jsonb_array_elements_text($2::jsonb))",
            self.members()
        )
    }

    /// Inserts the memberships of `$2` (a JSON list of [`Rows::members`]) in workspace `$1`.
    pub fn insert_members(&self) -> String {
        format!(
            "INSERT INTO {} (workspace, audience, profile_id, entered_at, sync) \
             SELECT $1, r.audience, r.profile_id, r.entered_at, r.sync \
             FROM jsonb_to_recordset($2::jsonb) AS r(audience text, profile_id text, \
             entered_at timestamptz, sync bigint) \
             ON CONFLICT (workspace, audience, profile_id) DO UPDATE SET \
             entered_at = EXCLUDED.entered_at, sync = EXCLUDED.sync",
            self.members()
        )
    }

    /// Deletes the rows of workspace `$1` written before full copy `$2` (a bigint): at the
    /// end of a full copy, the profiles that no longer exist.
    pub fn delete_older(&self) -> [String; 2] {
        [self.members(), self.profiles()]
            .map(|table| format!("DELETE FROM {table} WHERE workspace = $1 AND sync < $2"))
    }

    /// The rows of a batch: for each profile (once each, as
    /// `super::destination::Destination::latest` gives them), the profile API's view of it
    /// (`braid_core::unify::profile_view`) or `None` when its rows go (gone, or without the
    /// consent), with the number of its last change, and the full copy it is written in.
    pub fn rows(&self, profiles: &[(&str, Option<&Value>, u64)], sync: u64) -> Rows {
        let mut rows = Rows::default();
        for &(id, view, number) in profiles {
            rows.touched.push(json!(id));
            let Some(view) = view else {
                rows.gone.push(json!(id));
                continue;
            };
            let (profile, members) = self.row(id, view, number, sync);
            rows.profiles.push(profile);
            rows.members.extend(members);
        }
        rows
    }

    /// One profile's row and its memberships.
    fn row(&self, id: &str, view: &Value, number: u64, sync: u64) -> (Value, Vec<Value>) {
        let field = |name: &str| view.get(name).cloned().unwrap_or(Value::Null);
        let all_traits = view.get("traits").and_then(Value::as_object);
        let traits: Map<String, Value> = all_traits
            .into_iter()
            .flatten()
            .filter(|(name, _)| self.traits.is_empty() || self.traits.contains(name))
            .map(|(name, t)| (name.clone(), t.get("value").cloned().unwrap_or_default()))
            .collect();
        let audiences = view.get("audiences").and_then(Value::as_object);
        let keys: Vec<&String> = audiences.into_iter().flatten().map(|(k, _)| k).collect();
        let mut row = Map::new();
        row.insert("profile_id".into(), json!(id));
        row.insert("identifiers".into(), clean(field("identifiers")));
        row.insert("computed_traits".into(), clean(field("computedTraits")));
        row.insert("audiences".into(), clean(json!(keys)));
        row.insert("first_seen".into(), field("firstSeen"));
        row.insert("last_seen".into(), field("lastSeen"));
        row.insert("event_counts".into(), clean(field("eventCounts")));
        row.insert("change_number".into(), json!(number));
        row.insert("sync".into(), json!(sync));
        for (name, column, kind) in &self.columns {
            let value = all_traits
                .and_then(|t| t.get(name))
                .and_then(|t| t.get("value"))
                .map_or(Value::Null, |v| clean(kind.convert(v)));
            row.insert(column.clone(), value);
        }
        row.insert("traits".into(), clean(Value::Object(traits)));
        let members = audiences
            .into_iter()
            .flatten()
            .map(|(key, entry)| {
                json!({"audience": clean(json!(key)), "profile_id": id, "sync": sync,
                       "entered_at": entry.get("enteredAt").cloned().unwrap_or_default()})
            })
            .collect();
        (Value::Object(row), members)
    }
}

/// The rows of one transaction ([`Tables::rows`]), each list a JSON parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Every profile of the batch (their memberships are written anew).
    pub touched: Vec<Value>,
    /// Profiles whose rows are deleted.
    pub gone: Vec<Value>,
    /// Profile rows to upsert.
    pub profiles: Vec<Value>,
    /// Membership rows to insert.
    pub members: Vec<Value>,
}

/// `value` with every U+0000 in its strings (and keys) as U+FFFD: `PostgreSQL`'s text and JSONB
/// hold no NUL, and one trait that has it must not fail its whole batch.
fn clean(value: Value) -> Value {
    match value {
        Value::String(text) if text.contains('\0') => Value::String(text.replace('\0', "\u{fffd}")),
        Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.replace('\0', "\u{fffd}"), clean(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
