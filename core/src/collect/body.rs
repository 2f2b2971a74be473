//! Request bodies of the Segment HTTP Tracking API: a `/v1/batch` body (`{"batch": [...]}` with
//! batch-level `sentAt`, `context`, `integrations` and `writeKey`) or a single event, read in one
//! pass over the bytes, with a `serde_json` message when they are not what the endpoint takes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::catalogue::validate::{Limits, ValidationError, syntax_error};
use crate::event::{EventType, SHAPE};
use crate::json::{Cursor, Kind, Node, Obj, Problem};

/// A request body, parsed: the write key it carries, and each event's text as received with its
/// fields opened (see `crate::json`), both from one pass over the bytes.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    write_key: Option<Cow<'a, str>>,
    pub(super) events: Vec<BodyEvent<'a>>,
    pub(super) implied: Option<EventType>,
    pub(super) defaults: BatchDefaults<'a>,
    /// Whether the body has line breaks (pretty-printed JSON), which must not reach the lake.
    pub(super) multiline: bool,
}

/// One event of a body.
#[derive(Debug)]
pub(super) struct BodyEvent<'a> {
    /// Its JSON text as received.
    pub(super) raw: &'a str,
    /// Its fields, when it is an object.
    pub(super) fields: Option<Obj<'a>>,
}

/// Batch-level fields that apply to every event lacking its own.
#[derive(Debug, Default)]
pub(super) struct BatchDefaults<'a> {
    pub(super) sent_at: Option<&'a str>,
    /// The batch's `context`, when it is an object.
    pub(super) context: Option<Obj<'a>>,
    pub(super) integrations: Option<&'a str>,
    /// The request's anonymous id (an edge cookie), for events without one.
    pub(super) anonymous_id: Option<Node<'a>>,
}

/// The shape of a `/v1/batch` body, as `serde` sees it: used only to explain a body that the
/// one-pass walk could not read, with `serde_json`'s message.
#[derive(Deserialize)]
#[expect(dead_code, reason = "read only for its errors")]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<Cow<'a, str>>,
    #[serde(rename = "sentAt", borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
}

/// The shape of a single-event body, as [`BatchBody`] is for batches.
#[derive(Deserialize)]
#[expect(dead_code, reason = "read only for its errors")]
struct SingleBody<'a> {
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<Cow<'a, str>>,
}

impl<'a> ParsedBody<'a> {
    /// Parses a decoded request body. `implied` is the endpoint's event type: `None` for
    /// `/v1/batch`, whose body is `{"batch": [...]}`, and the type for the single-event
    /// endpoints, whose body is the event itself.
    ///
    /// # Errors
    ///
    /// [`ValidationError::BatchTooLarge`] over the body limit, [`ValidationError::MalformedJson`]
    /// when the body is not JSON, [`ValidationError::MalformedBody`] when it is not an object or
    /// `batch` is not an array, [`ValidationError::EmptyBatch`] and
    /// [`ValidationError::TooManyEvents`] for the number of events.
    pub fn parse(
        body: &'a [u8],
        implied: Option<EventType>,
        limits: &Limits,
    ) -> Result<ParsedBody<'a>, ValidationError> {
        if body.len() > limits.max_batch_bytes {
            return Err(ValidationError::BatchTooLarge {
                size: body.len(),
                limit: limits.max_batch_bytes,
            });
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(ValidationError::MalformedJson {
                detail: "the body is not UTF-8".to_owned(),
            });
        };
        let multiline = body.contains(&b'\n');
        if let Some(implied) = implied {
            return parse_single(text, implied, multiline);
        }
        let batch = walk_batch(text).map_err(|failure| explain_batch(text, failure))?;
        let Some(events) = batch.events else {
            return Err(ValidationError::MalformedBody {
                detail: " with a \"batch\" array".to_owned(),
            });
        };
        if events.is_empty() {
            return Err(ValidationError::EmptyBatch);
        }
        if events.len() > limits.max_batch_events {
            return Err(ValidationError::TooManyEvents {
                count: events.len(),
                limit: limits.max_batch_events,
            });
        }
        Ok(ParsedBody {
            write_key: batch.write_key,
            events,
            implied,
            defaults: batch.defaults,
            multiline,
        })
    }

    /// The write key sent in the body (`writeKey`), if any.
    pub fn write_key(&self) -> Option<&str> {
        self.write_key.as_deref().filter(|k| !k.is_empty())
    }

    /// The first event's `anonymousId`, when it is a non-empty string: for a visitor without
    /// an identity cookie yet, the id the client (the browser SDK) already uses.
    pub fn first_anonymous_id(&self) -> Option<Cow<'_, str>> {
        let fields = self.events.first()?.fields.as_ref()?;
        fields.text("anonymousId").filter(|id| !id.is_empty())
    }

    /// The number of events in the body.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the body holds no event (never true for a body that parsed).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Reads the body of a single-event endpoint: the event itself.
fn parse_single(
    text: &str,
    implied: EventType,
    multiline: bool,
) -> Result<ParsedBody<'_>, ValidationError> {
    let mut cursor = Cursor::new(text);
    let parsed = cursor.object(&SHAPE);
    let Some((fields, raw)) = parsed.filter(|_| cursor.at_end()) else {
        return Err(explain_single(text, cursor.failure()));
    };
    let write_key = match fields.get("writeKey") {
        None => None,
        Some(key) => match key.kind() {
            Kind::Null => None,
            Kind::String => key.body_text(),
            _ => return Err(explain_single(text, Problem::Grammar)),
        },
    };
    Ok(ParsedBody {
        write_key,
        events: vec![BodyEvent {
            raw,
            fields: Some(fields),
        }],
        implied: Some(implied),
        defaults: BatchDefaults::default(),
        multiline,
    })
}

/// A `/v1/batch` body, read in one pass.
#[derive(Default)]
struct WalkedBatch<'a> {
    write_key: Option<Cow<'a, str>>,
    events: Option<Vec<BodyEvent<'a>>>,
    defaults: BatchDefaults<'a>,
}

/// Reads a `/v1/batch` body: the object's fields by hand, each value with `serde_json`, each
/// event opened as it is read. When the body is not what the endpoint expects, the error is
/// the scanner's (the grammar when the walk itself gave up); then [`explain_batch`] says why.
fn walk_batch(text: &str) -> Result<WalkedBatch<'_>, Problem> {
    let mut cursor = Cursor::new(text);
    walk(&mut cursor).ok_or_else(|| cursor.failure())
}

fn walk<'a>(cursor: &mut Cursor<'a>) -> Option<WalkedBatch<'a>> {
    let mut batch = WalkedBatch::default();
    if !cursor.eat(b'{') {
        return None;
    }
    let mut first = true;
    while !cursor.eat(b'}') {
        if !first && !cursor.eat(b',') {
            return None;
        }
        first = false;
        let key = cursor.string()?;
        if !cursor.eat(b':') {
            return None;
        }
        let raw = |cursor: &mut Cursor<'a>| cursor.raw().filter(|raw| *raw != "null");
        match key.as_ref() {
            "batch" => batch.events = Some(walk_events(cursor)?),
            "writeKey" => {
                batch.write_key = if cursor.peek() == Some(b'"') {
                    Some(cursor.string()?)
                } else if cursor.raw()? == "null" {
                    None
                } else {
                    // Not a string: `explain_batch` says so.
                    return None;
                };
            }
            "sentAt" => batch.defaults.sent_at = raw(cursor),
            "integrations" => batch.defaults.integrations = raw(cursor),
            "context" => {
                batch.defaults.context = raw(cursor).and_then(|text| Obj::parse(text).ok());
            }
            _ => {
                cursor.raw()?;
            }
        }
    }
    cursor.at_end().then_some(batch)
}

/// Reads the `batch` array.
fn walk_events<'a>(cursor: &mut Cursor<'a>) -> Option<Vec<BodyEvent<'a>>> {
    if !cursor.eat(b'[') {
        return None;
    }
    let mut events = Vec::new();
    while !cursor.eat(b']') {
        if !events.is_empty() && !cursor.eat(b',') {
            return None;
        }
        let event = if cursor.peek() == Some(b'{') {
            let (fields, raw) = cursor.object(&SHAPE)?;
            BodyEvent {
                raw,
                fields: Some(fields),
            }
        } else {
            BodyEvent {
                raw: cursor.raw()?,
                fields: None,
            }
        };
        events.push(event);
    }
    Some(events)
}

/// Why a `/v1/batch` body that the walk could not read is wrong: the scanner's `failure`, or
/// in `serde_json`'s words for a syntax error or a body of the wrong shape.
fn explain_batch(text: &str, failure: Problem) -> ValidationError {
    explain(failure, || {
        match serde_json::from_str::<BatchBody<'_>>(text) {
            Err(error) => body_error(&error),
            Ok(BatchBody { batch: None, .. }) => ValidationError::MalformedBody {
                detail: " with a \"batch\" array".to_owned(),
            },
            Ok(_) => unexplained(),
        }
    })
}

/// Why a single-event body that the walk could not read is wrong, as [`explain_batch`].
fn explain_single(text: &str, failure: Problem) -> ValidationError {
    explain(failure, || {
        match serde_json::from_str::<SingleBody<'_>>(text) {
            Err(error) => body_error(&error),
            Ok(_) => unexplained(),
        }
    })
}

fn explain(failure: Problem, grammar: impl FnOnce() -> ValidationError) -> ValidationError {
    if failure == Problem::Grammar {
        grammar()
    } else {
        syntax_error(failure, String::new)
    }
}

/// The scanner refused what `serde_json` reads: the two disagree, which the tests rule out.
fn unexplained() -> ValidationError {
    ValidationError::MalformedJson {
        detail: "the body is not JSON that Braid keeps".to_owned(),
    }
}

/// A body that did not parse: a syntax error is malformed JSON, anything else (not an object,
/// `batch` not an array, `writeKey` not a string) a malformed body.
fn body_error(error: &serde_json::Error) -> ValidationError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ValidationError::MalformedJson {
            detail: error.to_string(),
        },
        Category::Data => ValidationError::MalformedBody {
            detail: format!(": {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, implied: Option<EventType>) -> Result<ParsedBody<'_>, ValidationError> {
        ParsedBody::parse(body.as_bytes(), implied, &Limits::default())
    }

    fn error(body: &str, implied: Option<EventType>) -> (&'static str, String) {
        let error = parse(body, implied).unwrap_err();
        (error.code(), error.to_string())
    }

    #[test]
    fn says_what_is_wrong_with_a_batch_body() {
        let cases = [
            (r#"{"batch": null}"#, "malformed_body", "\"batch\" array"),
            (r#"{"sentAt": "x"}"#, "malformed_body", "\"batch\" array"),
            (r#"{"batch": {}}"#, "malformed_body", "expected a sequence"),
            (
                r#"{"writeKey": 5, "batch": []}"#,
                "malformed_body",
                "invalid type",
            ),
            ("[1]", "malformed_body", "invalid type"),
            (r#"{"batch": [1,]}"#, "malformed_json", "line 1 column 14"),
            (
                r#"{"batch": [{"a": tru}]}"#,
                "malformed_json",
                "expected ident",
            ),
            (
                r#"{"batch": [{}]} x"#,
                "malformed_json",
                "trailing characters",
            ),
            (r#"{"batch": []}"#, "empty_batch", "no events"),
        ];
        for (body, code, detail) in cases {
            let (got_code, message) = error(body, None);
            assert_eq!(got_code, code, "{body}: {message}");
            assert!(message.contains(detail), "{body}: {message}");
        }
    }

    #[test]
    fn reads_single_event_bodies() {
        let parsed = parse(
            r#"{"event":"E","userId":"u","writeKey":"key"}"#,
            Some(EventType::Track),
        )
        .unwrap();
        assert_eq!(parsed.write_key(), Some("key"));
        assert_eq!(parsed.len(), 1);
        let cases = [
            (r#""text""#, "malformed_body"),
            (r#"{"writeKey": 5}"#, "malformed_body"),
            (r#"{"a": 1}{"#, "malformed_json"),
            (r#"{"a": 01}"#, "malformed_json"),
        ];
        for (body, code) in cases {
            assert_eq!(error(body, Some(EventType::Track)).0, code, "{body}");
        }
    }
}
