//! Validation of one event against the Segment Spec.

use serde_json::{Map, Value};

use super::config::Limits;
use super::error::{ValidationError, shorten};
use crate::event::{Event, EventType};
use crate::timestamp;

/// Validates one event of a batch, given its JSON text as received.
///
/// `implied` is the type the endpoint implies (`/v1/track` implies track); events sent to
/// `/v1/batch` carry their own `type`. Numeric ids (`userId: 42`) are accepted and stored as
/// strings, as Segment does; null or empty optional fields count as absent.
///
/// # Errors
///
/// Returns the first rule the event breaks, naming its `index`, the field and the limit.
pub fn validate_event(
    index: usize,
    json: &str,
    implied: Option<EventType>,
    limits: &Limits,
) -> Result<Event, ValidationError> {
    validate_object(index, parse_event(index, json, limits)?, implied, limits)
}

/// Checks an event's size and parses it into a JSON object, the first half of
/// [`validate_event`]: callers that adjust the object before validating it (batch defaults)
/// use this, then [`validate_object`].
///
/// # Errors
///
/// [`ValidationError::EventTooLarge`], [`ValidationError::NotAnObject`], or
/// [`ValidationError::MalformedJson`].
pub fn parse_event(
    index: usize,
    json: &str,
    limits: &Limits,
) -> Result<Map<String, Value>, ValidationError> {
    if json.len() > limits.max_event_bytes {
        return Err(ValidationError::EventTooLarge {
            index,
            size: json.len(),
            limit: limits.max_event_bytes,
        });
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(ValidationError::NotAnObject {
            index,
            found: type_name(&other),
        }),
        Err(error) => Err(ValidationError::MalformedJson {
            detail: error.to_string(),
        }),
    }
}

/// Validates one event that has already been parsed into a JSON object (and whose size has
/// been checked), as [`validate_event`] does.
///
/// # Errors
///
/// Returns the first rule the event breaks, naming its `index`, the field and the limit.
pub fn validate_object(
    index: usize,
    mut fields: Map<String, Value>,
    implied: Option<EventType>,
    limits: &Limits,
) -> Result<Event, ValidationError> {
    let kind = event_type(index, &mut fields, implied)?;
    check_string(
        index,
        &mut fields,
        "messageId",
        limits.max_message_id_chars,
        false,
    )?;
    check_string(index, &mut fields, "userId", limits.max_id_chars, true)?;
    check_string(index, &mut fields, "anonymousId", limits.max_id_chars, true)?;
    if !is_set(&fields, "userId") && !is_set(&fields, "anonymousId") {
        return Err(ValidationError::MissingIdentity { index });
    }
    for field in ["context", "integrations", "properties", "traits"] {
        check_object(index, &fields, field)?;
    }
    for field in ["timestamp", "originalTimestamp", "sentAt"] {
        check_timestamp(index, &fields, field)?;
    }
    match kind {
        EventType::Track => {
            check_string(index, &mut fields, "event", usize::MAX, false)?;
            require(index, &fields, kind, "event")?;
        }
        EventType::Page | EventType::Screen => {
            check_string(index, &mut fields, "name", usize::MAX, false)?;
            check_string(index, &mut fields, "category", usize::MAX, false)?;
        }
        EventType::Group => {
            check_string(index, &mut fields, "groupId", limits.max_id_chars, true)?;
            require(index, &fields, kind, "groupId")?;
        }
        EventType::Alias => {
            check_string(index, &mut fields, "previousId", limits.max_id_chars, true)?;
            require(index, &fields, kind, "previousId")?;
            require(index, &fields, kind, "userId")?;
        }
        EventType::Identify => {}
    }
    Ok(Event::new(kind, fields))
}

fn event_type(
    index: usize,
    fields: &mut Map<String, Value>,
    implied: Option<EventType>,
) -> Result<EventType, ValidationError> {
    let declared = match fields.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => match EventType::parse(name) {
            Some(kind) => Some(kind),
            None => {
                return Err(ValidationError::UnknownType {
                    index,
                    value: shorten(name),
                });
            }
        },
        Some(other) => {
            return Err(ValidationError::WrongType {
                index,
                field: "type",
                expected: "a string",
                found: type_name(other),
            });
        }
    };
    let kind = match (declared, implied) {
        (Some(declared), Some(implied)) if declared != implied => {
            return Err(ValidationError::TypeMismatch {
                index,
                expected: implied.as_str(),
                value: declared.as_str().to_owned(),
            });
        }
        (Some(kind), _) | (None, Some(kind)) => kind,
        (None, None) => {
            return Err(ValidationError::MissingField {
                index,
                kind: "every",
                field: "type",
            });
        }
    };
    fields.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
    Ok(kind)
}

/// Checks an optional string field: its type (numbers allowed and stored as strings when
/// `numbers` is set) and its length in characters. Null and `""` are removed as absent.
fn check_string(
    index: usize,
    fields: &mut Map<String, Value>,
    field: &'static str,
    limit: usize,
    numbers: bool,
) -> Result<(), ValidationError> {
    let Some(value) = fields.get_mut(field) else {
        return Ok(());
    };
    match value {
        Value::Null => {
            fields.remove(field);
        }
        Value::String(text) if text.is_empty() => {
            fields.remove(field);
        }
        Value::String(text) => {
            let length = text.chars().count();
            if length > limit {
                return Err(ValidationError::TooLong {
                    index,
                    field,
                    length,
                    limit,
                    value: shorten(text),
                });
            }
        }
        Value::Number(number) if numbers => {
            *value = Value::String(number.to_string());
        }
        other => {
            let expected = if numbers {
                "a string or a number"
            } else {
                "a string"
            };
            return Err(ValidationError::WrongType {
                index,
                field,
                expected,
                found: type_name(other),
            });
        }
    }
    Ok(())
}

fn check_object(
    index: usize,
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<(), ValidationError> {
    match fields.get(field) {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(ValidationError::WrongType {
            index,
            field,
            expected: "an object",
            found: type_name(other),
        }),
    }
}

fn check_timestamp(
    index: usize,
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<(), ValidationError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) => match timestamp::parse(text) {
            Ok(_) => Ok(()),
            Err(_) => Err(ValidationError::InvalidTimestamp {
                index,
                field,
                value: shorten(text),
            }),
        },
        Some(other) => Err(ValidationError::WrongType {
            index,
            field,
            expected: "an RFC 3339 date string",
            found: type_name(other),
        }),
    }
}

fn require(
    index: usize,
    fields: &Map<String, Value>,
    kind: EventType,
    field: &'static str,
) -> Result<(), ValidationError> {
    if is_set(fields, field) {
        Ok(())
    } else {
        Err(ValidationError::MissingField {
            index,
            kind: kind.as_str(),
            field,
        })
    }
}

fn is_set(fields: &Map<String, Value>, field: &str) -> bool {
    matches!(fields.get(field), Some(Value::String(text)) if !text.is_empty())
}

/// The JSON type of a value, as messages name it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
