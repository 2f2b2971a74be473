//! Imported records as events: each CRM-like record becomes one Segment `identify` call, so
//! that the identity graph links it into profiles like any other source — through the
//! identifiers it carries (its record id, emails and phones, under the graph's rules) and
//! through the cluster [`super::resolve`] found for it, which links the records of one person
//! that share no identifier.
//!
//! An event carries:
//! - `anonymousId` `"<id type>:<record id>"` (the wire format needs a user or anonymous id;
//!   this one names the record) and `context.externalIds` with the record id as `<id type>`
//!   and, for a cluster of several records, `"<id type>_cluster"` valued after the cluster's
//!   first record;
//! - `traits` from the columns, under the Segment Spec's reserved names where the column's kind
//!   says what it is (`firstName`, `lastName`, `name`, `email`, `phone`, `birthday`,
//!   `address.street|city|postalCode|state`), others under their header;
//! - a `messageId` derived from the id type, the record id and the record's cells: importing
//!   the same file again within the dedupe window changes nothing, a changed record is applied.
//!
//! An email or phone that more records share than `max_shared` (a placeholder such as
//! `noreply@shop.example`) is left out of the traits — the identity graph would otherwise link
//! every record that has it — and reported, as [`super::resolve`] ignores it as evidence.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Table;
use super::columns::Plan;
use super::compare::Kind;
use crate::hex;

/// How records become events.
#[derive(Clone, Debug)]
pub struct ImportOptions<'a> {
    /// The identifier type of the record ids (`crm_id`).
    pub id_type: &'a str,
    /// The id column.
    pub id_column: usize,
    /// Columns left out of the traits (a truth column, say).
    pub skip: &'a [usize],
    /// The events' time.
    pub at: OffsetDateTime,
    /// `context.library.name`: the source, for survivorship by source priority.
    pub library: &'a str,
    /// The most records an email or phone may be on and still be sent.
    pub max_shared: usize,
}

/// The events of an import, and what was left out of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// One `identify` event per record with an id, in record order.
    pub events: Vec<Value>,
    /// Emails and phones left out because too many records share them: the column, the value
    /// (normalised) and on how many records.
    pub shared: Vec<(String, String, usize)>,
}

/// One `identify` event per record (see the module documentation), in record order. `labels`
/// gives each record's cluster as the index of its first record (`Clusters::labels`).
pub fn import_events(
    table: &Table,
    plan: &Plan,
    labels: &[usize],
    options: &ImportOptions<'_>,
) -> Imported {
    let mut sizes = vec![0_usize; table.rows.len()];
    for &label in labels {
        if let Some(size) = sizes.get_mut(label) {
            *size += 1;
        }
    }
    let kinds: Vec<Option<Kind>> = (0..table.headers.len())
        .map(|column| {
            plan.fields
                .iter()
                .find(|f| f.column == column)
                .map(|f| f.kind)
        })
        .collect();
    let shared = shared_values(table, plan, options.max_shared);
    let at = crate::timestamp::format(options.at);
    let mut events = Vec::with_capacity(table.rows.len());
    for (row, &label) in labels.iter().enumerate() {
        let id = table.cell(row, options.id_column);
        if id.is_empty() {
            continue;
        }
        let mut external = vec![
            json!({"id": id, "type": options.id_type, "collection": "users",
                                       "encoding": "none"}),
        ];
        if sizes.get(label).copied().unwrap_or(0) > 1 {
            let cluster = table.cell(label, options.id_column);
            external.push(
                json!({"id": cluster, "type": format!("{}_cluster", options.id_type),
                                 "collection": "users", "encoding": "none"}),
            );
        }
        events.push(json!({
            "type": "identify",
            "messageId": message_id(table, row, options),
            "anonymousId": format!("{}:{id}", options.id_type),
            "timestamp": at,
            "traits": traits(table, row, &kinds, &shared, options),
            "context": {"library": {"name": options.library}, "externalIds": external},
        }));
    }
    let mut report: Vec<(String, String, usize)> = shared
        .into_iter()
        .map(|((column, value), count)| {
            let header = table.headers.get(column).cloned().unwrap_or_default();
            (header, value, count)
        })
        .collect();
    report.sort();
    Imported {
        events,
        shared: report,
    }
}

/// The emails and phones (normalised, by column) on more than `max_shared` records.
fn shared_values(
    table: &Table,
    plan: &Plan,
    max_shared: usize,
) -> std::collections::BTreeMap<(usize, String), usize> {
    let mut counts: std::collections::BTreeMap<(usize, String), usize> =
        std::collections::BTreeMap::new();
    for field in plan
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::Email | Kind::Phone))
    {
        for row in 0..table.rows.len() {
            let value = field.kind.normalize(table.cell(row, field.column));
            if !value.is_empty() {
                *counts.entry((field.column, value)).or_default() += 1;
            }
        }
    }
    counts.retain(|_, count| *count > max_shared);
    counts
}

/// The record's traits: each filled cell but the id's and the skipped ones, under its reserved
/// name when its kind has one.
fn traits(
    table: &Table,
    row: usize,
    kinds: &[Option<Kind>],
    shared: &std::collections::BTreeMap<(usize, String), usize>,
    options: &ImportOptions<'_>,
) -> Value {
    let mut traits = Map::new();
    let mut address = Map::new();
    let mut street = Vec::new();
    for (column, header) in table.headers.iter().enumerate() {
        let cell = table.cell(row, column);
        if cell.is_empty() || column == options.id_column || options.skip.contains(&column) {
            continue;
        }
        let value = Value::from(cell);
        let kind = kinds.get(column).copied().flatten();
        if let Some(kind @ (Kind::Email | Kind::Phone)) = kind
            && shared.contains_key(&(column, kind.normalize(cell)))
        {
            continue;
        }
        match kind.map(reserved_name) {
            Some(Reserved::Street) => street.push(cell),
            Some(Reserved::Trait(name)) => {
                traits.insert(name.to_owned(), value);
            }
            Some(Reserved::Address(name)) => {
                address.insert(name.to_owned(), value);
            }
            Some(Reserved::None) | None => {
                traits.insert(header.clone(), value);
            }
        }
    }
    if !street.is_empty() {
        address.insert("street".into(), Value::from(street.join(" ")));
    }
    if !address.is_empty() {
        traits.insert("address".into(), Value::Object(address));
    }
    Value::Object(traits)
}

/// Where a column of a kind goes in the Segment Spec's traits.
enum Reserved {
    /// A top-level trait.
    Trait(&'static str),
    /// A field of `address`.
    Address(&'static str),
    /// Part of `address.street` (house number, street lines), joined in column order.
    Street,
    /// No reserved name: the column's header.
    None,
}

fn reserved_name(kind: Kind) -> Reserved {
    match kind {
        Kind::GivenName => Reserved::Trait("firstName"),
        Kind::Surname => Reserved::Trait("lastName"),
        Kind::Name => Reserved::Trait("name"),
        Kind::Email => Reserved::Trait("email"),
        Kind::Phone => Reserved::Trait("phone"),
        Kind::Date => Reserved::Trait("birthday"),
        Kind::StreetNumber | Kind::Address => Reserved::Street,
        Kind::City => Reserved::Address("city"),
        Kind::Postcode => Reserved::Address("postalCode"),
        Kind::State => Reserved::Address("state"),
        Kind::Id | Kind::Device | Kind::Number | Kind::Text => Reserved::None,
    }
}

/// `import-` and 32 hex digits of SHA-256 over the id type, the record id and its cells.
fn message_id(table: &Table, row: usize, options: &ImportOptions<'_>) -> String {
    let mut hash = Sha256::new();
    hash.update(options.id_type.as_bytes());
    for column in 0..table.headers.len() {
        hash.update([0x1F]);
        hash.update(table.cell(row, column).as_bytes());
    }
    let digest = hash.finalize();
    let mut id = String::from("import-");
    hex::push(&mut id, digest.get(..16).unwrap_or_default());
    id
}
