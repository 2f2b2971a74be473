//! The one error type of validation.

use std::fmt;

/// What is wrong with a request body or with one of its events.
///
/// Per-event variants carry the event's index in the batch (0-based), the field and, where a
/// limit was exceeded, the limit; messages quote the bad value (shortened to 64 characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {detail}")]
    MalformedJson {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// Arrays and objects nest deeper than the limit (counted from the event, or the body when
    /// it is not read as events).
    #[error(
        "body is not valid JSON: arrays and objects nest deeper than the limit of {limit} levels"
    )]
    TooDeep {
        /// The limit in levels.
        limit: usize,
    },
    /// The body is JSON but not an object, or `batch` is not an array.
    #[error("body must be a JSON object{detail}")]
    MalformedBody {
        /// What was found instead.
        detail: String,
    },
    /// The decoded body is larger than the batch limit.
    #[error("body is {size} bytes, over the limit of {limit} bytes")]
    BatchTooLarge {
        /// Size in bytes (at least `limit + 1` when decoding stopped early).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// `batch` holds more events than allowed.
    #[error("\"batch\" holds {count} events, over the limit of {limit}")]
    TooManyEvents {
        /// Number of events.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// `batch` is empty.
    #[error("\"batch\" holds no events")]
    EmptyBatch,
    /// One event is larger than the event limit.
    #[error("event {index}: event is {size} bytes, over the limit of {limit} bytes")]
    EventTooLarge {
        /// Index in the batch.
        index: usize,
        /// Size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// An event is not a JSON object.
    #[error("event {index}: event must be a JSON object, not {found}")]
    NotAnObject {
        /// Index in the batch.
        index: usize,
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent, null or empty.
    #[error("event {index}: {kind} event requires {}", Quoted(field))]
    MissingField {
        /// Index in the batch.
        index: usize,
        /// The event type.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// Neither `userId` nor `anonymousId` is set.
    #[error(
        "event {index}: event requires \"userId\" or \"anonymousId\" (not blank, not a \
         placeholder such as \"null\")"
    )]
    MissingIdentity {
        /// Index in the batch.
        index: usize,
    },
    /// A field has the wrong JSON type.
    #[error("event {index}: {} must be {expected}, not {found}", Quoted(field))]
    WrongType {
        /// Index in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// What the Spec allows.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A string field is longer than allowed.
    #[error(
        "event {index}: {} is {length} characters, over the limit of {limit}: {}",
        Quoted(field),
        Quoted(value)
    )]
    TooLong {
        /// Index in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// Length in characters.
        length: usize,
        /// The limit in characters.
        limit: usize,
        /// The value, shortened.
        value: String,
    },
    /// A date-time field is not RFC 3339.
    #[error(
        "event {index}: {} is not an RFC 3339 date: {}",
        Quoted(field),
        Quoted(value)
    )]
    InvalidTimestamp {
        /// Index in the batch.
        index: usize,
        /// The field.
        field: &'static str,
        /// The value, shortened.
        value: String,
    },
    /// `type` names no Spec event type.
    #[error(
        "event {index}: \"type\" must be one of track, identify, page, screen, group, alias: {}",
        Quoted(value)
    )]
    UnknownType {
        /// Index in the batch.
        index: usize,
        /// The value, shortened.
        value: String,
    },
    /// `type` disagrees with the endpoint the event was sent to.
    #[error(
        "event {index}: \"type\" is {} but the endpoint takes {expected} events",
        Quoted(value)
    )]
    TypeMismatch {
        /// Index in the batch.
        index: usize,
        /// The endpoint's type.
        expected: &'static str,
        /// The value, shortened.
        value: String,
    },
    /// The event breaks its tracking plan, whose mode is `block` (or the plan does not list
    /// it and blocks unplanned events: `rule` is `unplanned`).
    #[error("event {index}: {message} (tracking plan rule {rule:?})")]
    PlanViolation {
        /// Index in the batch.
        index: usize,
        /// The rule broken (`type`, `required`, `enum`, ..., `unplanned`).
        rule: &'static str,
        /// What is wrong, naming the path (never the value).
        message: String,
    },
}

impl ValidationError {
    /// The index of the event in its batch, for per-event errors.
    pub fn index(&self) -> Option<usize> {
        match self {
            ValidationError::MalformedJson { .. }
            | ValidationError::TooDeep { .. }
            | ValidationError::MalformedBody { .. }
            | ValidationError::BatchTooLarge { .. }
            | ValidationError::TooManyEvents { .. }
            | ValidationError::EmptyBatch => None,
            ValidationError::EventTooLarge { index, .. }
            | ValidationError::NotAnObject { index, .. }
            | ValidationError::MissingField { index, .. }
            | ValidationError::MissingIdentity { index }
            | ValidationError::WrongType { index, .. }
            | ValidationError::TooLong { index, .. }
            | ValidationError::InvalidTimestamp { index, .. }
            | ValidationError::UnknownType { index, .. }
            | ValidationError::TypeMismatch { index, .. }
            | ValidationError::PlanViolation { index, .. } => Some(*index),
        }
    }

    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ValidationError::MalformedJson { .. }
            | ValidationError::TooDeep { .. }
            | ValidationError::MalformedBody { .. }
            | ValidationError::BatchTooLarge { .. }
            | ValidationError::EventTooLarge { .. }
            | ValidationError::NotAnObject { .. }
            | ValidationError::PlanViolation { .. } => None,
            ValidationError::TooManyEvents { .. } | ValidationError::EmptyBatch => Some("batch"),
            ValidationError::MissingIdentity { .. } => Some("userId"),
            ValidationError::UnknownType { .. } | ValidationError::TypeMismatch { .. } => {
                Some("type")
            }
            ValidationError::MissingField { field, .. }
            | ValidationError::WrongType { field, .. }
            | ValidationError::TooLong { field, .. }
            | ValidationError::InvalidTimestamp { field, .. } => Some(field),
        }
    }

    /// The limit that was exceeded, if one was.
    pub fn limit(&self) -> Option<usize> {
        match self {
            ValidationError::BatchTooLarge { limit, .. }
            | ValidationError::TooManyEvents { limit, .. }
            | ValidationError::EventTooLarge { limit, .. }
            | ValidationError::TooDeep { limit }
            | ValidationError::TooLong { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    /// A stable machine-readable code (`"event_too_large"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::MalformedJson { .. } => "malformed_json",
            ValidationError::TooDeep { .. } => "too_deep",
            ValidationError::MalformedBody { .. } => "malformed_body",
            ValidationError::BatchTooLarge { .. } => "batch_too_large",
            ValidationError::TooManyEvents { .. } => "too_many_events",
            ValidationError::EmptyBatch => "empty_batch",
            ValidationError::EventTooLarge { .. } => "event_too_large",
            ValidationError::NotAnObject { .. } => "not_an_object",
            ValidationError::MissingField { .. } => "missing_field",
            ValidationError::MissingIdentity { .. } => "missing_identity",
            ValidationError::WrongType { .. } => "wrong_type",
            ValidationError::TooLong { .. } => "too_long",
            ValidationError::InvalidTimestamp { .. } => "invalid_timestamp",
            ValidationError::UnknownType { .. } => "unknown_type",
            ValidationError::TypeMismatch { .. } => "type_mismatch",
            ValidationError::PlanViolation { rule, .. } if *rule == "unplanned" => {
                "unplanned_event"
            }
            ValidationError::PlanViolation { .. } => "plan_violation",
        }
    }

    /// Whether the error concerns the whole body (so no event of it can be accepted).
    pub fn is_whole_body(&self) -> bool {
        self.index().is_none()
    }

    /// Whether the error is about size (HTTP 413) rather than content (HTTP 400).
    pub fn is_size_limit(&self) -> bool {
        matches!(
            self,
            ValidationError::BatchTooLarge { .. } | ValidationError::TooManyEvents { .. }
        )
    }
}

/// Shortens a bad value for quoting in a message.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => {
            let mut short = String::with_capacity(cut + 3);
            short.push_str(value.get(..cut).unwrap_or(value));
            short.push('…');
            short
        }
        None => value.to_owned(),
    }
}

/// Writes a string in double quotes, JSON-escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(quoted) => f.write_str(&quoted),
            Err(_) => write!(f, "\"{}\"", self.0),
        }
    }
}
