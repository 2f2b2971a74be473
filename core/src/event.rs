//! The Segment Spec event model: six event types and their common fields, with every field the
//! source sent preserved. [`Event`] is the one typed view of an event, from the request body
//! through validation and enrichment to the lake, and from a lake line to identity resolution
//! and profiles.
//!
//! An [`Event`] wraps the JSON object as received (after validation and enrichment) rather than a
//! struct of known fields, so that nothing a client sends is lost on the way to the lake; typed
//! accessors read the fields that the Spec defines.

use std::borrow::Cow;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::json::{Kind, MAX_NESTING, Node, Obj, Problem, Shape, problem};
use crate::timestamp;

/// How an event's text is opened: the top level, and in the same pass `context` and
/// `context.page`, which enrichment reads and changes; every other value stays the text that was
/// received until something reads it.
pub(crate) const SHAPE: Shape = Shape {
    open: &[("context", &CONTEXT_SHAPE)],
    capacity: 16,
};

const CONTEXT_SHAPE: Shape = Shape {
    open: &[("page", &Shape::LEAF)],
    capacity: 12,
};

/// `context.braid`: what collection proved about the event's identity (`docs/trust.md`),
/// written by collection only (a client's is removed), read by unify.
pub const BRAID_CONTEXT: &str = "braid";

/// `context.braid.trusted`: `true` for an event from a server key; every identifier is proven.
pub const TRUSTED: &str = "trusted";

/// `context.braid.verified`: the identifier types (`user_id`, `email`) the event's proofs prove.
pub const VERIFIED: &str = "verified";

/// The field of a client's `context.braid` that carries the proof of `userId` (`docs/trust.md`):
/// a credential, kept nowhere.
pub const USER_HASH: &str = "userHash";

/// The field of a client's `context.braid` that carries the proof of the event's email.
pub const EMAIL_HASH: &str = "emailHash";

/// `payload` (an event, or a body of events, as received) without the identity proofs its
/// events' `context.braid` carry, for a failure record: they are credentials, which the lake
/// never keeps. Unchanged (borrowed) when it holds none, or is not JSON.
pub fn without_proofs(payload: &str) -> Cow<'_, str> {
    if !payload.contains(USER_HASH) && !payload.contains(EMAIL_HASH) {
        return Cow::Borrowed(payload);
    }
    let Ok(mut value) = serde_json::from_str::<Value>(payload) else {
        return Cow::Borrowed(payload);
    };
    let strip = |event: &mut Value| {
        let Some(braid) = event
            .get_mut("context")
            .and_then(|context| context.get_mut(BRAID_CONTEXT))
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        let user = braid.remove(USER_HASH).is_some();
        braid.remove(EMAIL_HASH).is_some() || user
    };
    let mut stripped = strip(&mut value);
    if let Some(events) = value.get_mut("batch").and_then(Value::as_array_mut) {
        for event in events {
            stripped |= strip(event);
        }
    }
    if stripped {
        Cow::Owned(value.to_string())
    } else {
        Cow::Borrowed(payload)
    }
}

/// `context.braid.plan`: the tracking plan violations an event was collected with
/// (`catalogue::plan`), read by the data map.
pub const PLAN_CONTEXT: &str = "plan";

/// `context.braid.browser`: the id of the browser's credential cookie (a `browser` identifier).
pub const BROWSER: &str = "browser";

/// The six Segment Spec event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A user action (`event` names it).
    Track,
    /// Who the user is (`traits`).
    Identify,
    /// A web page view.
    Page,
    /// A mobile screen view.
    Screen,
    /// An association of the user with a group (`groupId`).
    Group,
    /// Two ids of one user (`previousId` and `userId`).
    Alias,
}

impl EventType {
    /// The field that names an event of this type: `event` of a track call, `name` of a page or
    /// screen; the other types have no name.
    pub fn name_field(self) -> Option<&'static str> {
        match self {
            EventType::Track => Some("event"),
            EventType::Page | EventType::Screen => Some("name"),
            EventType::Identify | EventType::Group | EventType::Alias => None,
        }
    }

    /// All types, in Spec order.
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    /// The wire name (`"track"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Why a lake line is not an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not UTF-8.
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// The line is not a JSON object.
    #[error("the line is not a JSON object")]
    NotAnObject,
    /// The line is JSON that no reader of the lake can hold, which validation refuses.
    #[error("the line {0}")]
    Unreadable(&'static str),
    /// `type` is absent or names no Spec event type.
    #[error("\"type\" is not one of track, identify, page, screen, group, alias")]
    UnknownType,
}

/// One line of NDJSON lake content, read as an event.
#[derive(Debug)]
pub struct LakeLine<'a> {
    /// Its number in the content, from 1.
    pub number: usize,
    /// Its bytes, without the newline.
    pub text: &'a [u8],
    /// The event, or why the line is none.
    pub event: Result<Event<'a>, LineError>,
}

/// The lines of NDJSON lake content (a `raw/` object), each read with
/// [`Event::from_lake_line`]; empty lines are skipped.
pub fn lake_lines(content: &[u8]) -> impl Iterator<Item = LakeLine<'_>> {
    content
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, text)| !text.is_empty())
        .map(|(i, text)| LakeLine {
            number: i + 1,
            text,
            event: std::str::from_utf8(text)
                .map_err(|_| LineError::NotUtf8)
                .and_then(Event::from_lake_line),
        })
}

/// The client's times, parsed once by validation and used by enrichment: each is `Some` when
/// the field holds a valid RFC 3339 date-time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClientTimes {
    pub(crate) timestamp: Option<OffsetDateTime>,
    pub(crate) original_timestamp: Option<OffsetDateTime>,
    pub(crate) sent_at: Option<OffsetDateTime>,
}

/// One validated event: its type and every field the client sent, plus what enrichment added.
///
/// The fields stay unparsed slices of the request body (lifetime `'a`) until validation or
/// enrichment needs them, and are written back by copying, so an event costs little more than
/// its bytes (see `json.rs`).
#[derive(Clone, Debug)]
pub struct Event<'a> {
    kind: EventType,
    fields: Obj<'a>,
    pub(crate) times: ClientTimes,
    /// Whether the client's text has line breaks (pretty-printed JSON), which writing removes.
    pub(crate) multiline: bool,
}

impl<'a> Event<'a> {
    /// Wraps an object whose `type` field has already been checked to be `kind`.
    pub(crate) fn new(kind: EventType, fields: Obj<'a>, times: ClientTimes) -> Event<'a> {
        Event {
            kind,
            fields,
            times,
            multiline: true,
        }
    }

    /// Reads a lake line: an event as `raw/` stores it, one JSON object with a Spec `type`,
    /// by the rule validation applies (the same scanner), so that every reader of the lake —
    /// unify, rebuild — takes exactly the events ingest accepted.
    ///
    /// # Errors
    ///
    /// [`LineError`] when the line is not a JSON object or has no Spec `type`.
    pub fn from_lake_line(line: &'a str) -> Result<Event<'a>, LineError> {
        let fields =
            Obj::parse_shaped(line, &SHAPE).map_err(|_| match problem(line, 0, MAX_NESTING) {
                Problem::Grammar => LineError::NotAnObject,
                Problem::TooDeep => LineError::Unreadable("nests deeper than 127 levels"),
                Problem::NumberOutOfRange => {
                    LineError::Unreadable("holds a number outside the range of a 64-bit float")
                }
                Problem::LoneSurrogate => LineError::Unreadable("holds a lone surrogate"),
            })?;
        let kind = fields
            .text("type")
            .and_then(|name| EventType::parse(&name))
            .ok_or(LineError::UnknownType)?;
        Ok(Event::new(kind, fields, ClientTimes::default()))
    }

    /// The event type.
    pub fn kind(&self) -> EventType {
        self.kind
    }

    /// All fields, for enrichment.
    pub(crate) fn fields_mut(&mut self) -> &mut Obj<'a> {
        &mut self.fields
    }

    /// All fields as a JSON object, as they will be written to the lake.
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields.to_map()
    }

    /// A top-level string field.
    pub fn str_field(&self, name: &str) -> Option<Cow<'_, str>> {
        self.fields.text(name)
    }

    /// A top-level field that holds an id: a string, or a number as text (clients may send
    /// numeric ids; validation stores `userId` and the like as strings).
    pub fn id_field(&self, name: &str) -> Option<Cow<'_, str>> {
        id_text(self.fields.get(name)?)
    }

    /// A top-level RFC 3339 date-time field, parsed (`None` when absent or not a date-time).
    pub fn time_field(&self, name: &str) -> Option<OffsetDateTime> {
        timestamp::parse(&self.str_field(name)?).ok()
    }

    /// A top-level object field, opened for reading (`None` when absent or not an object).
    pub(crate) fn object(&self, name: &str) -> Option<Cow<'_, Obj<'a>>> {
        self.fields.get(name)?.as_object()
    }

    /// Calls `f` with each traits object of the event, where unify reads traits and
    /// identifiers: `context.traits`, then `traits` (applied in this order, top-level traits
    /// win).
    pub(crate) fn for_each_traits(&self, mut f: impl FnMut(&Obj<'a>)) {
        if let Some(context) = self.object("context")
            && let Some(traits) = context.get("traits").and_then(Node::as_object)
        {
            f(&traits);
        }
        if let Some(traits) = self.object("traits") {
            f(&traits);
        }
    }

    /// `messageId`, the idempotency key.
    pub fn message_id(&self) -> Option<Cow<'_, str>> {
        self.str_field("messageId")
    }

    /// `userId`.
    pub fn user_id(&self) -> Option<Cow<'_, str>> {
        self.str_field("userId")
    }

    /// `anonymousId`.
    pub fn anonymous_id(&self) -> Option<Cow<'_, str>> {
        self.str_field("anonymousId")
    }

    /// `event`, the name of a track call.
    pub fn event_name(&self) -> Option<Cow<'_, str>> {
        self.str_field("event")
    }

    /// The event's name by its type ([`EventType::name_field`]), if it has one.
    pub fn name(&self) -> Option<Cow<'_, str>> {
        self.str_field(self.kind().name_field()?)
    }

    /// Serializes the event as one line of NDJSON (without the newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.fields.write_checked(out, self.multiline);
    }
}

/// A value that holds an id as text: a string, or a number written as `serde_json` writes it.
pub(crate) fn id_text<'n>(node: &'n Node<'_>) -> Option<Cow<'n, str>> {
    match node.kind() {
        Kind::String => node.as_text(),
        Kind::Number => match node.to_value() {
            Value::Number(number) => Some(Cow::Owned(number.to_string())),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("Track"), None);
    }
}
