//! Validation of one event against the Segment Spec.

use std::borrow::Cow;

use serde_json::Value;
use time::OffsetDateTime;

use super::config::Limits;
use super::error::{ValidationError, shorten};
use crate::event::{ClientTimes, Event, EventType, SHAPE};
use crate::json::{Kind, MAX_NESTING, Node, Obj, Problem, problem};
use crate::timestamp;
use crate::unify::PLACEHOLDERS;

/// Validates one event of a batch, given its JSON text as received.
///
/// `implied` is the type the endpoint implies (`/v1/track` implies track); events sent to
/// `/v1/batch` carry their own `type`. Numeric ids (`userId: 42`) are accepted and stored as
/// strings, as Segment does; null or empty optional fields count as absent.
///
/// # Errors
///
/// Returns the first rule the event breaks, naming its `index`, the field and the limit.
pub fn validate_event<'a>(
    index: usize,
    json: &'a str,
    implied: Option<EventType>,
    limits: &Limits,
) -> Result<Event<'a>, ValidationError> {
    let mut event = validate_object(index, parse_event(index, json, limits)?, implied, limits)?;
    event.multiline = json.as_bytes().contains(&b'\n');
    Ok(event)
}

/// Checks an event's size and opens it as a JSON object, the first half of
/// [`validate_event`]: the batch pipeline adjusts the object (batch defaults) between the two.
pub(crate) fn parse_event<'a>(
    index: usize,
    json: &'a str,
    limits: &Limits,
) -> Result<Obj<'a>, ValidationError> {
    check_size(index, json, limits)?;
    if json.trim_start().starts_with('{') {
        return Obj::parse_shaped(json, &SHAPE).map_err(|_| malformed(json));
    }
    match serde_json::from_str::<Value>(json) {
        Ok(other) => Err(ValidationError::NotAnObject {
            index,
            found: Kind::of_value(&other).name(),
        }),
        Err(error) => Err(ValidationError::MalformedJson {
            detail: error.to_string(),
        }),
    }
}

/// Checks an event's size: its JSON as received against `max_event_bytes`.
///
/// # Errors
///
/// [`ValidationError::EventTooLarge`].
pub(crate) fn check_size(index: usize, json: &str, limits: &Limits) -> Result<(), ValidationError> {
    if json.len() > limits.max_event_bytes {
        return Err(ValidationError::EventTooLarge {
            index,
            size: json.len(),
            limit: limits.max_event_bytes,
        });
    }
    Ok(())
}

/// The error for an event that is not valid JSON, with `serde_json`'s message (line, column).
fn malformed(json: &str) -> ValidationError {
    syntax_error(
        problem(json, 0, MAX_NESTING),
        || match serde_json::from_str::<serde::de::IgnoredAny>(json) {
            Err(error) => error.to_string(),
            Ok(_) => "a string holds an escape that is not a character".to_owned(),
        },
    )
}

/// The error for JSON the scanner refused: in its own words for what it names (the nesting
/// limit, a number out of range, a lone surrogate), or in `grammar`'s (`serde_json`'s, with
/// line and column) for a syntax error.
pub(crate) fn syntax_error(failure: Problem, grammar: impl FnOnce() -> String) -> ValidationError {
    let detail = match failure {
        Problem::TooDeep => return ValidationError::TooDeep { limit: MAX_NESTING },
        Problem::NumberOutOfRange => {
            "a number is outside the range of a 64-bit float (magnitude at most 1.7976931348623157e308)"
                .to_owned()
        }
        Problem::LoneSurrogate => {
            "a \\u escape is a lone surrogate, which is not a character".to_owned()
        }
        Problem::Grammar => grammar(),
    };
    ValidationError::MalformedJson { detail }
}

/// Validates one event that has already been opened (and whose size has been checked), as
/// [`validate_event`] does.
pub(crate) fn validate_object<'a>(
    index: usize,
    mut fields: Obj<'a>,
    implied: Option<EventType>,
    limits: &Limits,
) -> Result<Event<'a>, ValidationError> {
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
    if !is_usable_id(&fields, "userId") && !is_usable_id(&fields, "anonymousId") {
        return Err(ValidationError::MissingIdentity { index });
    }
    for field in ["context", "integrations", "properties", "traits"] {
        check_object(index, &fields, field)?;
    }
    let times = ClientTimes {
        timestamp: check_timestamp(index, &fields, "timestamp")?,
        original_timestamp: check_timestamp(index, &fields, "originalTimestamp")?,
        sent_at: check_timestamp(index, &fields, "sentAt")?,
    };
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
    Ok(Event::new(kind, fields, times))
}

fn event_type(
    index: usize,
    fields: &mut Obj<'_>,
    implied: Option<EventType>,
) -> Result<EventType, ValidationError> {
    let declared = match fields.get("type") {
        None => None,
        Some(node) => match node.kind() {
            Kind::Null => None,
            Kind::String => {
                let name = node.as_text().unwrap_or_default();
                match EventType::parse(&name) {
                    Some(kind) => Some(kind),
                    None => {
                        return Err(ValidationError::UnknownType {
                            index,
                            value: shorten(&name),
                        });
                    }
                }
            }
            other => {
                return Err(ValidationError::WrongType {
                    index,
                    field: "type",
                    expected: "a string",
                    found: other.name(),
                });
            }
        },
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
    if declared.is_none() {
        fields.insert("type", Node::Text(Cow::Borrowed(kind.as_str())));
    }
    Ok(kind)
}

/// Checks an optional string field: its type (numbers allowed and stored as strings when
/// `numbers` is set) and its length in characters. Null and `""` are removed as absent.
fn check_string(
    index: usize,
    fields: &mut Obj<'_>,
    field: &'static str,
    limit: usize,
    numbers: bool,
) -> Result<(), ValidationError> {
    let Some(node) = fields.get(field) else {
        return Ok(());
    };
    match node.kind() {
        Kind::Null => {
            fields.remove(field);
        }
        Kind::String => {
            let text = node.as_text().unwrap_or_default();
            if text.is_empty() {
                fields.remove(field);
                return Ok(());
            }
            // A string has no more characters than bytes: count them only when the bytes
            // exceed the limit.
            if text.len() > limit {
                let length = text.chars().count();
                if length > limit {
                    return Err(ValidationError::TooLong {
                        index,
                        field,
                        length,
                        limit,
                        value: shorten(&text),
                    });
                }
            }
        }
        Kind::Number if numbers => {
            let number = node.to_value().to_string();
            fields.insert(field, Node::Text(Cow::Owned(number)));
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
                found: other.name(),
            });
        }
    }
    Ok(())
}

fn check_object(
    index: usize,
    fields: &Obj<'_>,
    field: &'static str,
) -> Result<(), ValidationError> {
    match fields.get(field).map(Node::kind) {
        None | Some(Kind::Null | Kind::Object) => Ok(()),
        Some(other) => Err(ValidationError::WrongType {
            index,
            field,
            expected: "an object",
            found: other.name(),
        }),
    }
}

/// Checks an optional date-time field, giving its parsed value.
fn check_timestamp(
    index: usize,
    fields: &Obj<'_>,
    field: &'static str,
) -> Result<Option<OffsetDateTime>, ValidationError> {
    let Some(node) = fields.get(field) else {
        return Ok(None);
    };
    match node.kind() {
        Kind::Null => Ok(None),
        Kind::String => {
            let text = node.as_text().unwrap_or_default();
            match timestamp::parse(&text) {
                Ok(at) => Ok(Some(at)),
                Err(_) => Err(ValidationError::InvalidTimestamp {
                    index,
                    field,
                    value: shorten(&text),
                }),
            }
        }
        other => Err(ValidationError::WrongType {
            index,
            field,
            expected: "an RFC 3339 date string",
            found: other.name(),
        }),
    }
}

fn require(
    index: usize,
    fields: &Obj<'_>,
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

/// Whether `field` holds text that is not blank.
fn is_set(fields: &Obj<'_>, field: &str) -> bool {
    fields
        .get(field)
        .is_some_and(|node| node.is_nonempty_text() && has_text(node))
}

/// Whether `field` holds an id unify can use: not blank, and not one of the placeholders that
/// unify never takes for an identifier (`null`, `undefined`, `0`: [`PLACEHOLDERS`]), so that
/// every event accepted reaches a profile.
fn is_usable_id(fields: &Obj<'_>, field: &str) -> bool {
    is_set(fields, field)
        && fields.get(field).and_then(Node::as_text).is_some_and(|id| {
            let id = id.trim();
            !PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(id))
        })
}

/// Whether a text value has a character other than white space (a time or an address has).
fn has_text(node: &Node<'_>) -> bool {
    node.as_text().is_none_or(|text| !text.trim().is_empty())
}
