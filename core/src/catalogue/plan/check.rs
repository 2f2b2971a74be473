//! Checking an event against its plan: the violations, and what the plan's mode makes of them.

use serde_json::{Map, Value};

use super::{Mode, Schema, TrackingPlan, Unplanned};
use crate::catalogue::map::{Semantic, semantic_of_text};

/// Violations reported per event, at most.
const MAX_VIOLATIONS: usize = 20;

/// One way an event breaks its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where: `properties.revenue`, `traits.address.city`, `properties.items[].sku`; empty for
    /// an unplanned event.
    pub path: String,
    /// Which rule: `type`, `required`, `additional`, `enum`, `format`, `minimum`, `maximum`,
    /// `min_length`, `max_length`, `unplanned`.
    pub rule: &'static str,
    /// What is wrong, without the value (it may be personal data).
    pub message: String,
}

/// What the plan makes of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Collect it; `violations` are recorded with it, and those of `omit` are to be removed.
    Collect {
        /// The violations that let it through.
        violations: Vec<Violation>,
        /// The paths to remove first (mode `omit`).
        omit: Vec<String>,
    },
    /// Send it to `failed/`: the first violation says why.
    Block(Violation),
}

impl TrackingPlan {
    /// Checks an event (its JSON object) of type `kind` and name `name`.
    pub fn judge(&self, kind: &str, name: &str, event: &Map<String, Value>) -> Checked {
        let Some(planned) = self.event(kind, name) else {
            let label = if name.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind} {name:?}")
            };
            let violation = Violation {
                path: String::new(),
                rule: "unplanned",
                message: format!("{label} is not in the tracking plan"),
            };
            return match self.unplanned {
                Unplanned::Block => Checked::Block(violation),
                Unplanned::Allow => Checked::Collect {
                    violations: vec![violation],
                    omit: Vec::new(),
                },
            };
        };
        let mut violations = Vec::new();
        check_object(&planned.schema, event, "", &mut violations);
        match planned.mode {
            Mode::Block if !violations.is_empty() => Checked::Block(violations.remove(0)),
            Mode::Omit => {
                let omit = violations
                    .iter()
                    .filter(|v| v.rule != "required" && !v.path.is_empty())
                    .map(|v| v.path.clone())
                    .collect();
                Checked::Collect { violations, omit }
            }
            _ => Checked::Collect {
                violations,
                omit: Vec::new(),
            },
        }
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

fn push(out: &mut Vec<Violation>, path: &str, rule: &'static str, message: String) {
    if out.len() < MAX_VIOLATIONS {
        out.push(Violation {
            path: path.to_owned(),
            rule,
            message,
        });
    }
}

fn check_object(schema: &Schema, object: &Map<String, Value>, at: &str, out: &mut Vec<Violation>) {
    for name in &schema.required {
        if object.get(name).is_none_or(Value::is_null) && !schema_allows_null(schema, name) {
            let path = join(at, name);
            push(out, &path, "required", format!("{path} is required"));
        }
    }
    // A path is built only for the members the schema names (or refuses): events carry many
    // more members than their plan names, in `context` say.
    let closed = schema.additional_properties == Some(false);
    for (name, value) in object {
        match schema.properties.get(name) {
            Some(member) => check_value(member, value, &join(at, name), out),
            None if closed => {
                let path = join(at, name);
                push(
                    out,
                    &path,
                    "additional",
                    format!("{path} is not in the plan (additionalProperties is false)"),
                );
            }
            None => {}
        }
    }
}

/// A required member sent as `null` is there when its schema allows null.
fn schema_allows_null(schema: &Schema, name: &str) -> bool {
    schema
        .properties
        .get(name)
        .and_then(|m| m.types.as_ref())
        .is_some_and(|t| t.names().contains(&"null"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_value(schema: &Schema, value: &Value, path: &str, out: &mut Vec<Violation>) {
    if let Some(types) = &schema.types {
        let names = types.names();
        let integer = value
            .as_f64()
            .is_some_and(|n| n.fract() == 0.0 && value.is_number());
        let fits = names.iter().any(|&t| {
            t == type_name(value) || t == "integer" && integer || t == "number" && value.is_number()
        });
        if !fits {
            push(
                out,
                path,
                "type",
                format!(
                    "{path} is a {}, the plan says {}",
                    type_name(value),
                    names.join(" or ")
                ),
            );
            return;
        }
    }
    if let Some(allowed) = &schema.allowed
        && !allowed.contains(value)
    {
        push(
            out,
            path,
            "enum",
            format!(
                "{path} is not one of the {} values the plan allows",
                allowed.len()
            ),
        );
    }
    match value {
        Value::String(text) => check_text(schema, text, path, out),
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or(0.0);
            if let Some(min) = schema
                .minimum
                .as_ref()
                .filter(|m| m.as_f64().is_some_and(|m| n < m))
            {
                push(
                    out,
                    path,
                    "minimum",
                    format!("{path} is below the plan's minimum {min}"),
                );
            }
            if let Some(max) = schema
                .maximum
                .as_ref()
                .filter(|m| m.as_f64().is_some_and(|m| n > m))
            {
                push(
                    out,
                    path,
                    "maximum",
                    format!("{path} is above the plan's maximum {max}"),
                );
            }
        }
        Value::Object(members) => check_object(schema, members, path, out),
        Value::Array(items) => {
            if let Some(item) = &schema.items {
                let path = format!("{path}[]");
                for value in items {
                    check_value(item, value, &path, out);
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn check_text(schema: &Schema, text: &str, path: &str, out: &mut Vec<Violation>) {
    let length = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
    if let Some(min) = schema.min_length.filter(|&min| length < min) {
        push(
            out,
            path,
            "min_length",
            format!("{path} is {length} characters, under the plan's {min}"),
        );
    }
    if let Some(max) = schema.max_length.filter(|&max| length > max) {
        push(
            out,
            path,
            "max_length",
            format!("{path} is {length} characters, over the plan's {max}"),
        );
    }
    if let Some(format) = &schema.format {
        // The detection the map uses, only for the formats that need it (it tries many).
        let semantic = || semantic_of_text("", text);
        let fits = match format.as_str() {
            "email" => semantic() == Some(Semantic::Email),
            "date-time" => crate::timestamp::parse(text).is_ok(),
            "date" => semantic() == Some(Semantic::Date),
            "uri" => is_uri(text),
            "uuid" => semantic() == Some(Semantic::Uuid),
            "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
            _ => true,
        };
        if !fits {
            push(out, path, "format", format!("{path} is not a {format}"));
        }
    }
}

/// A URI: a scheme (a letter, then letters, digits, `+`, `-`, `.`), a colon, and no spaces.
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !text.contains(char::is_whitespace)
}

/// Removes the members at `paths` from an event's JSON (`properties.a.b`; through arrays,
/// `properties.items[].sku` removes `sku` from every item).
pub(crate) fn remove_paths(event: &mut Map<String, Value>, paths: &[String]) {
    for path in paths {
        let segments: Vec<&str> = path.split('.').collect();
        remove_in(event, &segments);
    }
}

fn remove_in(object: &mut Map<String, Value>, segments: &[&str]) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let (name, items) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    if rest.is_empty() && !items {
        object.remove(name);
        return;
    }
    match object.get_mut(name) {
        Some(Value::Array(values)) if items => {
            if rest.is_empty() {
                object.remove(name);
                return;
            }
            for value in values {
                if let Value::Object(member) = value {
                    remove_in(member, rest);
                }
            }
        }
        Some(Value::Object(member)) if !items => remove_in(member, rest),
        _ => {}
    }
}
