//! Tracking plans: what each event must look like, as one JSON Schema per event (the keywords a
//! tracking plan needs: `type`, `properties`, `required`, `enum`, `format`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `items`, `additionalProperties`; any other keyword is
//! refused when the plan is read, never ignored), and what to do with an event that breaks it:
//! record the violation (`allow`), drop the offending properties (`omit`), or send the event to
//! `failed/` (`block`). Events the plan does not list are allowed or blocked (`unplanned`).
//!
//! The plan is checked in the collection pipeline every platform shares
//! (`crate::collect::batch::process_batch`), after validation and before enrichment, so the
//! Worker, the ingest function and `braid serve` decide alike. Violations that let the event
//! through are written in its `context.braid.plan`, where only collection writes, and the data
//! map counts them.
//!
//! [`from_map`] writes a plan from what the data map observed, for a user to edit.

mod check;
mod generate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use check::{Checked, Violation};

use crate::catalogue::validate::ValidationError;
use crate::event::{BRAID_CONTEXT, Event, PLAN_CONTEXT};
use crate::json::{Node, Obj};

pub use generate::from_map;

/// A tracking plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlan {
    /// What to do with events the plan does not list.
    #[serde(default)]
    pub unplanned: Unplanned,
    /// The planned events.
    #[serde(default)]
    pub events: Vec<PlannedEvent>,
}

/// What happens to events a plan does not list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unplanned {
    /// They are collected (and counted in the data map as unplanned).
    #[default]
    Allow,
    /// They go to `failed/` with the reason `unplanned_event`.
    Block,
}

/// What happens to an event that breaks its schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Collected as sent; the violations are recorded.
    #[default]
    Allow,
    /// Collected without the properties that break the schema (a missing required property
    /// cannot be dropped: it is recorded).
    Omit,
    /// Sent to `failed/` with the reason `plan_violation`, and replayable.
    Block,
}

/// One planned event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedEvent {
    /// The Spec type (`track`, `identify`, `page`, `screen`, `group`, `alias`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The event name (a track's `event`, a page's or screen's `name`); none for the others.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What to do when it breaks its schema.
    #[serde(default)]
    pub mode: Mode,
    /// The JSON Schema of the whole event (`properties.properties` describes its
    /// properties, `properties.traits` its traits).
    pub schema: Schema,
}

/// The JSON Schema keywords a plan may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schema {
    /// `$schema`, `title`, `description`: kept, not checked.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON types allowed (one name or a list).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub types: Option<Types>,
    /// The members of an object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Schema>,
    /// The members an object must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// Whether an object may have members `properties` does not list (default yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_properties: Option<bool>,
    /// The values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// A string format: `email`, `date-time`, `date`, `uri`, `uuid`, `ipv4`, `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Bounds of a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<serde_json::Number>,
    /// Bounds of a string's length, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// The schema of an array's items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Schema>>,
}

/// One JSON type name or several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Types {
    /// `"type": "number"`.
    One(String),
    /// `"type": ["string", "null"]`.
    Many(Vec<String>),
}

impl Types {
    fn names(&self) -> Vec<&str> {
        match self {
            Types::One(name) => vec![name.as_str()],
            Types::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// A plan that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The document is not a plan (a syntax error, an unknown keyword), in the parser's words.
    #[error("tracking plan: {0}")]
    Syntax(String),
    /// A keyword has a value the checker does not know.
    #[error("tracking plan: event {event}: {message}")]
    Bad {
        /// The event (`track "Order Completed"`).
        event: String,
        /// What is wrong.
        message: String,
    },
    /// An event is planned twice.
    #[error("tracking plan: event {event} is planned twice")]
    Twice {
        /// The event.
        event: String,
    },
}

const TYPES: [&str; 7] = [
    "null", "boolean", "number", "integer", "string", "array", "object",
];
const FORMATS: [&str; 7] = ["email", "date-time", "date", "uri", "uuid", "ipv4", "ipv6"];
const EVENT_TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

impl TrackingPlan {
    /// Reads a plan (JSON) and checks it.
    ///
    /// # Errors
    ///
    /// [`PlanError`] naming what is wrong and where.
    pub fn parse(document: &str) -> Result<TrackingPlan, PlanError> {
        let plan: TrackingPlan =
            serde_json::from_str(document).map_err(|e| PlanError::Syntax(e.to_string()))?;
        plan.check()?;
        Ok(plan)
    }

    /// Checks what the shape cannot say: known types and formats, one entry per event.
    ///
    /// # Errors
    ///
    /// [`PlanError`] naming the event and the keyword.
    pub fn check(&self) -> Result<(), PlanError> {
        let mut seen = std::collections::BTreeSet::new();
        for event in &self.events {
            let label = event.label();
            if !EVENT_TYPES.contains(&event.kind.as_str()) {
                return Err(PlanError::Bad {
                    event: label,
                    message: format!("type {:?} is not a Spec event type", event.kind),
                });
            }
            if !seen.insert((event.kind.as_str(), event.name.as_str())) {
                return Err(PlanError::Twice { event: label });
            }
            check_schema(&event.schema, "", &label)?;
        }
        Ok(())
    }

    /// The planned event of a type and name.
    pub fn event(&self, kind: &str, name: &str) -> Option<&PlannedEvent> {
        self.events
            .iter()
            .find(|e| e.kind == kind && e.name == name)
    }
}

impl PlannedEvent {
    /// `track "Order Completed"`, `identify`.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.kind.clone()
        } else {
            format!("{} {:?}", self.kind, self.name)
        }
    }
}

fn check_schema(schema: &Schema, at: &str, event: &str) -> Result<(), PlanError> {
    let bad = |message: String| PlanError::Bad {
        event: event.to_owned(),
        message,
    };
    let here = if at.is_empty() { "the event" } else { at };
    if let Some(types) = &schema.types {
        for name in types.names() {
            if !TYPES.contains(&name) {
                return Err(bad(format!("{here}: unknown type {name:?}")));
            }
        }
    }
    if let Some(format) = &schema.format
        && !FORMATS.contains(&format.as_str())
    {
        return Err(bad(format!(
            "{here}: unknown format {format:?} (known: {})",
            FORMATS.join(", ")
        )));
    }
    for (name, member) in &schema.properties {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        check_schema(member, &path, event)?;
    }
    if let Some(items) = &schema.items {
        check_schema(items, &format!("{at}[]"), event)?;
    }
    Ok(())
}

/// Applies a plan to a validated event (the `index`th of its batch): the violations it is
/// collected with, each with whether it was removed (mode `omit`), or why it is blocked.
pub(crate) fn enforce(
    plan: &TrackingPlan,
    event: &mut Event<'_>,
    index: usize,
) -> Result<Vec<(Violation, bool)>, ValidationError> {
    let kind = event.kind();
    let name = event
        .name()
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default();
    // What the check reads: the fields the schema names. Converting the whole event (its
    // context, say) was most of the cost of a check.
    let mut fields = match plan.event(kind.as_str(), &name) {
        Some(planned) => pick_members(event.fields_mut(), &planned.schema),
        // Unplanned: judged by its type and name alone.
        None => serde_json::Map::new(),
    };
    match plan.judge(kind.as_str(), &name, &fields) {
        Checked::Block(violation) => Err(ValidationError::PlanViolation {
            index,
            rule: violation.rule,
            message: violation.message,
        }),
        Checked::Collect { violations, omit } => {
            if !omit.is_empty() {
                let mut roots: Vec<&str> = omit
                    .iter()
                    .filter_map(|p| p.split(['.', '[']).next())
                    .collect();
                roots.sort_unstable();
                roots.dedup();
                // The whole of each root the paths are in (the check read only what the plan
                // names): what is removed is the offending paths, nothing else.
                fields = roots
                    .iter()
                    .filter_map(|&root| {
                        let value = event.fields_mut().get(root)?.to_value();
                        Some((root.to_owned(), value))
                    })
                    .collect();
                check::remove_paths(&mut fields, &omit);
                for root in roots {
                    match fields.remove(root) {
                        Some(value) => event
                            .fields_mut()
                            .insert(root.to_owned(), Node::Value(value)),
                        None => {
                            event.fields_mut().remove(root);
                        }
                    }
                }
            }
            Ok(violations
                .into_iter()
                .map(|v| {
                    let omitted = omit.contains(&v.path);
                    (v, omitted)
                })
                .collect())
        }
    }
}

/// Whether checking a value against `schema` reads only the members the schema names.
fn reads_named_only(schema: &Schema) -> bool {
    schema.additional_properties != Some(false) && schema.allowed.is_none()
}

/// What of an object checking it against `schema` reads: the members the schema names (each
/// picked in turn), unless the check must see every member (`additionalProperties: false`, an
/// `enum` of whole objects).
fn pick_members(object: &Obj<'_>, schema: &Schema) -> serde_json::Map<String, serde_json::Value> {
    if !reads_named_only(schema) {
        return object.to_map();
    }
    let mut picked = serde_json::Map::new();
    for name in schema.properties.keys().chain(&schema.required) {
        if picked.contains_key(name) {
            continue;
        }
        if let Some(member) = object.get(name) {
            let value = match schema.properties.get(name) {
                Some(sub) => pick(member, sub),
                None => member.to_value(),
            };
            picked.insert(name.clone(), value);
        }
    }
    picked
}

/// What of `node` checking it against `schema` reads ([`pick_members`] of an object).
fn pick(node: &Node<'_>, schema: &Schema) -> serde_json::Value {
    match node.as_object() {
        Some(object) if reads_named_only(schema) => {
            serde_json::Value::Object(pick_members(&object, schema))
        }
        _ => node.to_value(),
    }
}

/// Writes the violations an event is collected with in its `context.braid.plan`:
/// `[{"path", "rule", "action": "allowed" | "omitted"}]` (after `context.braid` is stamped).
pub(crate) fn mark(event: &mut Event<'_>, violations: &[(Violation, bool)]) {
    if violations.is_empty() {
        return;
    }
    let marks: Vec<serde_json::Value> = violations
        .iter()
        .map(|(v, omitted)| {
            serde_json::json!({
                "path": v.path,
                "rule": v.rule,
                "action": if *omitted { "omitted" } else { "allowed" },
            })
        })
        .collect();
    if let Some(braid) = event
        .fields_mut()
        .open_or_create("context")
        .and_then(|context| context.open_or_create(BRAID_CONTEXT))
    {
        braid.insert(PLAN_CONTEXT, Node::Value(serde_json::Value::Array(marks)));
    }
}
