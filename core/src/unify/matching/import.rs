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
//! An email or phone that [`super::resolve`] found shared — by more records than `max_shared`
//! (a placeholder such as `noreply@shop.example`), or by records of people with different
//! names (a household's landline or family mailbox) — is left out of the traits, since the
//! identity graph would otherwise link every record that has it, and reported.
//!
//! A cluster that the size cap stopped from growing is not trusted: its records are sent
//! without the cluster id (each links by its own identifiers only), and counted.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use super::Table;
use super::compare::Kind;
use super::model::{Resolution, Shared};
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
}

/// The events of an import, and what was left out of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// One `identify` event per record with an id, in record order.
    pub events: Vec<Value>,
    /// Emails and phones left out because they are shared: the column, the value
    /// (normalised), on how many records, and why.
    pub shared: Vec<(String, String, usize, Shared)>,
    /// Records of clusters the size cap stopped, sent without their cluster id.
    pub unsure_records: usize,
    /// How many such clusters.
    pub unsure_clusters: usize,
}

/// One `identify` event per record (see the module documentation), in record order, from what
/// [`super::resolve`] found for `table`: the clusters, the shared strong values, the clusters
/// the cap stopped.
pub fn import_events(
    table: &Table,
    resolution: &mut Resolution,
    options: &ImportOptions<'_>,
) -> Imported {
    let labels = resolution.clusters.labels();
    let unsure = resolution.unsure_clusters();
    let (plan, shared_values) = (&resolution.plan, &resolution.shared);
    let mut sizes = vec![0_usize; table.rows.len()];
    for &label in &labels {
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
    // (column, normalised value) of the emails and phones left out.
    let shared: BTreeMap<(usize, String), (usize, Shared)> = shared_values
        .iter()
        .filter_map(|v| {
            let field = plan.fields.get(v.field)?;
            matches!(field.kind, Kind::Email | Kind::Phone)
                .then(|| ((field.column, v.value.clone()), (v.records, v.why)))
        })
        .collect();
    let mut unsure_records = 0;
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
        let trusted = !unsure.contains(&label);
        unsure_records += usize::from(!trusted);
        if trusted && sizes.get(label).copied().unwrap_or(0) > 1 {
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
    let mut report: Vec<(String, String, usize, Shared)> = shared
        .into_iter()
        .map(|((column, value), (count, why))| {
            let header = table.headers.get(column).cloned().unwrap_or_default();
            (header, value, count, why)
        })
        .collect();
    report.sort();
    Imported {
        events,
        shared: report,
        unsure_records,
        unsure_clusters: unsure.len(),
    }
}

/// The record's traits: each filled cell but the id's and the skipped ones, under its reserved
/// name when its kind has one.
fn traits(
    table: &Table,
    row: usize,
    kinds: &[Option<Kind>],
    shared: &BTreeMap<(usize, String), (usize, Shared)>,
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
