//! One request body through the pipeline: parse, validate each event, normalise, enrich, and
//! serialize accepted events as NDJSON lines and rejected ones as failure records.
//!
//! The partial-failure policy (see `docs/wire-format.md`): a body that cannot be parsed, or
//! that breaks a whole-batch limit, is rejected whole; otherwise every valid event is accepted
//! and every invalid one is kept apart as a [`FailedEvent`], so one bad event never costs the
//! good ones and nothing is silently dropped.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::enrich::{AgentCache, EnrichConfig, EnrichInput, enrich};
use crate::event::EventType;
use crate::json::{Cursor, Kind, Node, Obj};
use crate::timestamp;
use crate::validate::{Limits, ValidationError, parse_event, validate_object};

/// What the pipeline is configured to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestConfig {
    /// Size and count limits.
    pub limits: Limits,
    /// Enrichment switches.
    pub enrich: EnrichConfig,
}

/// What the platform knows about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The workspace the write key belongs to.
    pub workspace: &'a str,
    /// When the request was received.
    pub received_at: OffsetDateTime,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The request's `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// An anonymous id for events that carry none (the edge's first-party cookie).
    pub anonymous_id: Option<&'a str>,
    /// What only the edge knows, as compact JSON objects, for `context.location` (geo) and
    /// `context.edge`.
    pub location: Option<&'a str>,
    /// See `location`.
    pub edge: Option<&'a str>,
}

/// A request body, parsed: the write key it carries, and each event's text as received with its
/// fields opened (see `json.rs`), both from one pass over the bytes.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    write_key: Option<Cow<'a, str>>,
    events: Vec<BodyEvent<'a>>,
    implied: Option<EventType>,
    defaults: BatchDefaults<'a>,
    /// Whether the body has line breaks (pretty-printed JSON), which must not reach the lake.
    multiline: bool,
}

/// One event of a body.
#[derive(Debug)]
struct BodyEvent<'a> {
    /// Its JSON text as received.
    raw: &'a str,
    /// Its fields, when it is an object.
    fields: Option<Obj<'a>>,
}

/// Batch-level fields that apply to every event lacking its own.
#[derive(Debug, Default)]
struct BatchDefaults<'a> {
    sent_at: Option<&'a str>,
    /// The batch's `context`, when it is an object.
    context: Option<Obj<'a>>,
    integrations: Option<&'a str>,
    /// The request's anonymous id (an edge cookie), for events without one.
    anonymous_id: Option<Node<'a>>,
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
        let Some(batch) = walk_batch(text) else {
            return Err(explain_batch(text));
        };
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
    let parsed = cursor.event();
    let Some((fields, raw)) = parsed.filter(|_| cursor.at_end()) else {
        return Err(explain_single(text));
    };
    let write_key = match fields.get("writeKey") {
        None => None,
        Some(key) => match key.kind() {
            Kind::Null => None,
            Kind::String => key.body_text(),
            _ => return Err(explain_single(text)),
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
/// event opened as it is read. `None` when the body is not what the endpoint expects; then
/// [`explain_batch`] says why.
fn walk_batch<'a>(text: &'a str) -> Option<WalkedBatch<'a>> {
    let mut cursor = Cursor::new(text);
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
            "batch" => batch.events = Some(walk_events(&mut cursor)?),
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
            "sentAt" => batch.defaults.sent_at = raw(&mut cursor),
            "integrations" => batch.defaults.integrations = raw(&mut cursor),
            "context" => {
                batch.defaults.context = raw(&mut cursor).and_then(|text| Obj::parse(text).ok());
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
            let (fields, raw) = cursor.event()?;
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

/// Why a `/v1/batch` body that the walk could not read is wrong, in `serde_json`'s words.
fn explain_batch(text: &str) -> ValidationError {
    match serde_json::from_str::<BatchBody<'_>>(text) {
        Err(error) => body_error(&error),
        Ok(BatchBody { batch: None, .. }) => ValidationError::MalformedBody {
            detail: " with a \"batch\" array".to_owned(),
        },
        // What `serde` reads without decoding and the walk decodes: a key.
        Ok(_) => lone_surrogate(),
    }
}

/// Why a single-event body that the walk could not read is wrong, in `serde_json`'s words.
fn explain_single(text: &str) -> ValidationError {
    match serde_json::from_str::<SingleBody<'_>>(text) {
        Err(error) => body_error(&error),
        Ok(_) => lone_surrogate(),
    }
}

fn lone_surrogate() -> ValidationError {
    ValidationError::MalformedJson {
        detail: "a key holds a \\u escape that is not a character (a lone surrogate)".to_owned(),
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

/// An event that failed validation, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedEvent {
    /// Why it failed.
    pub error: ValidationError,
    /// The event's JSON (or the whole body) as received.
    pub payload: String,
}

impl FailedEvent {
    /// Writes the failure record as one NDJSON line (with its newline): `receivedAt`,
    /// `workspace`, `index`, `code`, `field`, `limit`, `message`, and the `payload` as received,
    /// as a string, so that any payload, even one that is not JSON, can be kept and replayed.
    pub fn write_json(&self, workspace: &str, received_at: OffsetDateTime, out: &mut Vec<u8>) {
        let mut record = Map::new();
        record.insert(
            "receivedAt".to_owned(),
            Value::String(timestamp::format(received_at)),
        );
        record.insert("workspace".to_owned(), Value::String(workspace.to_owned()));
        record.insert(
            "index".to_owned(),
            self.error.index().map_or(Value::Null, Value::from),
        );
        record.insert(
            "code".to_owned(),
            Value::String(self.error.code().to_owned()),
        );
        record.insert(
            "field".to_owned(),
            self.error.field().map_or(Value::Null, Value::from),
        );
        record.insert(
            "limit".to_owned(),
            self.error.limit().map_or(Value::Null, Value::from),
        );
        record.insert("message".to_owned(), Value::String(self.error.to_string()));
        record.insert("payload".to_owned(), Value::String(self.payload.clone()));
        if serde_json::to_writer(&mut *out, &record).is_ok() {
            out.push(b'\n');
        }
    }
}

/// The result of running a body through the pipeline.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Accepted events as NDJSON, one enriched event per line.
    pub accepted: Vec<u8>,
    /// How many events `accepted` holds.
    pub accepted_count: usize,
    /// Rejected events, in batch order.
    pub failed: Vec<FailedEvent>,
}

/// Validates, normalises and enriches every event of a parsed body.
///
/// Normalisation: batch-level `sentAt`, `context` (key by key) and `integrations` apply to
/// events that lack them; `writeKey` is removed from stored events; identify and group traits
/// sent in `context.traits` are merged into `traits` (top-level values win).
pub fn process_batch(
    body: ParsedBody<'_>,
    request: &RequestInfo<'_>,
    config: &IngestConfig,
) -> BatchOutcome {
    // Room for every event as received plus what enrichment adds, so the buffer never moves.
    let capacity = body.events.iter().map(|e| e.raw.len() + 512).sum();
    let mut outcome = BatchOutcome {
        accepted: Vec::with_capacity(capacity),
        ..BatchOutcome::default()
    };
    let mut agents = AgentCache::new();
    let mut input = EnrichInput::new(
        request.workspace,
        request.received_at,
        request.client_ip,
        request.user_agent,
    );
    // Edge-only enrichment: JSON objects, checked before they reach the lake.
    for (key, json) in [("location", request.location), ("edge", request.edge)] {
        if let Some(json) = json.filter(|j| crate::json::Obj::parse(j).is_ok()) {
            input.edge.push((key, Arc::from(json)));
        }
    }
    let ParsedBody {
        events,
        implied,
        mut defaults,
        multiline,
        ..
    } = body;
    let anonymous_id = request
        .anonymous_id
        .map(|id| Node::Text(Cow::Owned(id.to_owned())));
    defaults.anonymous_id = anonymous_id;
    for (index, BodyEvent { raw: json, fields }) in events.into_iter().enumerate() {
        let checked = match fields {
            Some(fields) => check_one(index, json, fields, implied, &defaults, &config.limits),
            // Not an object: `parse_event` says what it is.
            None => parse_event(index, json, &config.limits).and_then(|fields| {
                check_one(index, json, fields, implied, &defaults, &config.limits)
            }),
        };
        match checked.map(|mut event| {
            event.multiline = multiline;
            event
        }) {
            Ok(mut event) => {
                enrich(&mut event, json, &input, &config.enrich, &mut agents);
                event.write_json(&mut outcome.accepted);
                outcome.accepted.push(b'\n');
                outcome.accepted_count += 1;
            }
            Err(error) => outcome.failed.push(FailedEvent {
                error,
                payload: json.to_owned(),
            }),
        }
    }
    outcome
}

fn check_one<'a>(
    index: usize,
    json: &str,
    mut fields: Obj<'a>,
    implied: Option<EventType>,
    defaults: &BatchDefaults<'a>,
    limits: &Limits,
) -> Result<crate::Event<'a>, ValidationError> {
    if json.len() > limits.max_event_bytes {
        return Err(ValidationError::EventTooLarge {
            index,
            size: json.len(),
            limit: limits.max_event_bytes,
        });
    }
    fields.remove("writeKey");
    apply_defaults(&mut fields, defaults);
    let mut event = validate_object(index, fields, implied, limits)?;
    if matches!(event.kind(), EventType::Identify | EventType::Group) {
        merge_context_traits(event.fields_mut());
    }
    Ok(event)
}

fn apply_defaults<'a>(fields: &mut Obj<'a>, defaults: &BatchDefaults<'a>) {
    if let Some(anonymous_id) = &defaults.anonymous_id
        && fields.get("anonymousId").is_none_or(|id| match id.kind() {
            Kind::Null => true,
            Kind::String => !id.is_nonempty_text(),
            _ => false,
        })
    {
        fields.insert("anonymousId", anonymous_id.clone());
    }
    if let Some(sent_at) = defaults.sent_at {
        fields.insert_missing("sentAt", || Node::Raw(sent_at));
    }
    if let Some(integrations) = defaults.integrations {
        fields.insert_missing("integrations", || Node::Raw(integrations));
    }
    if let Some(batch_context) = &defaults.context {
        fields.insert_missing("context", || Node::Obj(Obj::new()));
        // A context that is not an object is reported by validation; it is left for that.
        if let Some(context) = fields.open("context") {
            for (key, value) in batch_context.iter() {
                context.insert_missing(key.clone(), || value.clone());
            }
        }
    }
}

fn merge_context_traits(fields: &mut Obj<'_>) {
    let Some(Value::Object(context_traits)) = fields
        .open("context")
        .and_then(|c| c.get("traits"))
        .map(Node::to_value)
    else {
        return;
    };
    let merged = match fields.get("traits").map(Node::to_value) {
        Some(Value::Object(mut traits)) => {
            for (key, value) in context_traits {
                traits.entry(key).or_insert(value);
            }
            traits
        }
        // Validation has ensured `traits` is an object or null.
        _ => context_traits,
    };
    fields.insert("traits", Node::Value(Value::Object(merged)));
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse(body: &str, implied: Option<EventType>) -> Result<ParsedBody<'_>, ValidationError> {
        ParsedBody::parse(body.as_bytes(), implied, &Limits::default())
    }

    fn error(body: &str, implied: Option<EventType>) -> (&'static str, String) {
        let error = parse(body, implied).unwrap_err();
        (error.code(), error.to_string())
    }

    #[test]
    fn reads_a_batch_body_in_one_pass() {
        let body = r#" { "writeKey" : "k\u0031", "x": [1, {"y": 2}], "sentAt": "2024-05-01T10:00:00Z",
            "context": {"ip": "1.2.3.4"}, "batch": [ {"type":"track","event":"E","userId":"u"} , 7 ] } "#;
        let parsed = parse(body, None).unwrap();
        assert_eq!(parsed.write_key(), Some("k1"));
        assert_eq!(parsed.len(), 2);
        let received = crate::timestamp::parse("2024-05-01T10:00:05Z").unwrap();
        let request = RequestInfo {
            workspace: "w",
            received_at: received,
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
        };
        let outcome = process_batch(parsed, &request, &IngestConfig::default());
        assert_eq!(outcome.accepted_count, 1);
        let line: Value = serde_json::from_slice(&outcome.accepted).unwrap();
        assert_eq!(line["sentAt"], "2024-05-01T10:00:00Z");
        assert_eq!(line["context"]["ip"], "1.2.3.0");
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.failed[0].error.code(), "not_an_object");
        assert_eq!(outcome.failed[0].payload, "7");
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

    #[test]
    fn pretty_printed_events_land_on_one_line() {
        let body = "{\n  \"batch\": [\n    {\n      \"type\": \"track\",\n      \"event\": \"E\",\n      \"userId\": \"u\",\n      \"properties\": {\n        \"a\": [1,\n 2]\n      }\n    }\n  ]\n}";
        let request = RequestInfo {
            workspace: "w",
            received_at: crate::timestamp::parse("2024-05-01T10:00:05Z").unwrap(),
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
        };
        let outcome = process_batch(
            parse(body, None).unwrap(),
            &request,
            &IngestConfig::default(),
        );
        let text = String::from_utf8(outcome.accepted).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["properties"]["a"], serde_json::json!([1, 2]));
    }
}
