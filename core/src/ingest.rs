//! One request body through the pipeline: parse, validate each event, normalise, enrich, and
//! serialize accepted events as NDJSON lines and rejected ones as failure records.
//!
//! The partial-failure policy (see `docs/wire-format.md`): a body that cannot be parsed, or
//! that breaks a whole-batch limit, is rejected whole; otherwise every valid event is accepted
//! and every invalid one is kept apart as a [`FailedEvent`], so one bad event never costs the
//! good ones and nothing is silently dropped.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::enrich::{AgentCache, EnrichConfig, EnrichInput, enrich};
use crate::event::EventType;
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
}

/// A request body, parsed far enough to authenticate it and to split it into events.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    write_key: Option<Cow<'a, str>>,
    events: Vec<&'a RawValue>,
    implied: Option<EventType>,
    defaults: BatchDefaults,
}

/// Batch-level fields that apply to every event lacking its own.
#[derive(Debug, Default)]
struct BatchDefaults {
    sent_at: Option<Value>,
    context: Option<Value>,
    integrations: Option<Value>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<Cow<'a, str>>,
    #[serde(rename = "sentAt")]
    sent_at: Option<Value>,
    context: Option<Value>,
    integrations: Option<Value>,
}

#[derive(Deserialize)]
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
        if let Some(implied) = implied {
            let whole: &RawValue =
                serde_json::from_slice(body).map_err(|error| body_error(&error))?;
            let single: SingleBody<'a> =
                serde_json::from_str(whole.get()).map_err(|error| body_error(&error))?;
            return Ok(ParsedBody {
                write_key: single.write_key,
                events: vec![whole],
                implied: Some(implied),
                defaults: BatchDefaults::default(),
            });
        }
        // One pass over the body: the events stay unparsed slices of it until validation.
        let batch: BatchBody<'a> =
            serde_json::from_slice(body).map_err(|error| body_error(&error))?;
        let Some(events) = batch.batch else {
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
            defaults: BatchDefaults {
                sent_at: batch.sent_at,
                context: batch.context,
                integrations: batch.integrations,
            },
        })
    }

    /// The write key sent in the body (`writeKey`), if any.
    pub fn write_key(&self) -> Option<&str> {
        self.write_key.as_deref().filter(|k| !k.is_empty())
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
    /// The `messageId` of each accepted event, in order.
    pub message_ids: Vec<String>,
    /// Rejected events, in batch order.
    pub failed: Vec<FailedEvent>,
}

/// Validates, normalises and enriches every event of a parsed body.
///
/// Normalisation: batch-level `sentAt`, `context` (key by key) and `integrations` apply to
/// events that lack them; `writeKey` is removed from stored events; identify and group traits
/// sent in `context.traits` are merged into `traits` (top-level values win).
pub fn process_batch(
    body: &ParsedBody<'_>,
    request: &RequestInfo<'_>,
    config: &IngestConfig,
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        accepted: Vec::with_capacity(body.events.len() * 512),
        ..BatchOutcome::default()
    };
    let mut agents = AgentCache::new();
    let input = EnrichInput::new(
        request.workspace,
        request.received_at,
        request.client_ip,
        request.user_agent,
    );
    for (index, raw) in body.events.iter().enumerate() {
        let json = raw.get();
        match check_one(index, json, body, &config.limits) {
            Ok(mut event) => {
                enrich(&mut event, json, &input, &config.enrich, &mut agents);
                if let Some(id) = event.message_id() {
                    outcome.message_ids.push(id.to_owned());
                }
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

fn check_one(
    index: usize,
    json: &str,
    body: &ParsedBody<'_>,
    limits: &Limits,
) -> Result<crate::Event, ValidationError> {
    let mut fields = parse_event(index, json, limits)?;
    fields.remove("writeKey");
    apply_defaults(&mut fields, &body.defaults);
    let mut event = validate_object(index, fields, body.implied, limits)?;
    if matches!(event.kind(), EventType::Identify | EventType::Group) {
        merge_context_traits(event.fields_mut());
    }
    Ok(event)
}

fn apply_defaults(fields: &mut Map<String, Value>, defaults: &BatchDefaults) {
    if let Some(sent_at) = &defaults.sent_at
        && !fields.contains_key("sentAt")
    {
        fields.insert("sentAt".to_owned(), sent_at.clone());
    }
    if let Some(integrations) = &defaults.integrations
        && !fields.contains_key("integrations")
    {
        fields.insert("integrations".to_owned(), integrations.clone());
    }
    if let Some(Value::Object(batch_context)) = &defaults.context {
        // A non-object context is reported by validation; it is left for that.
        if let Value::Object(context) = fields
            .entry("context")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            for (key, value) in batch_context {
                context.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

fn merge_context_traits(fields: &mut Map<String, Value>) {
    let Some(Value::Object(context_traits)) =
        fields.get("context").and_then(|c| c.get("traits")).cloned()
    else {
        return;
    };
    match fields
        .entry("traits")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(traits) => {
            for (key, value) in context_traits {
                traits.entry(key).or_insert(value);
            }
        }
        // Validation has ensured `traits` is an object or null.
        other => *other = Value::Object(context_traits),
    }
}
