//! The Segment Spec event model: six event types and their common fields, with every field the
//! source sent preserved.
//!
//! An [`Event`] wraps the JSON object as received (after validation and enrichment) rather than a
//! struct of known fields, so that nothing a client sends is lost on the way to the lake; typed
//! accessors read the fields that the Spec defines.

use serde_json::{Map, Value};

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

/// One validated event: its type and the JSON object with every field the client sent, plus what
/// enrichment added.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    kind: EventType,
    fields: Map<String, Value>,
}

impl Event {
    /// Wraps an object whose `type` field has already been checked to be `kind`.
    pub(crate) fn new(kind: EventType, fields: Map<String, Value>) -> Event {
        Event { kind, fields }
    }

    /// The event type.
    pub fn kind(&self) -> EventType {
        self.kind
    }

    /// All fields, as they will be written to the lake.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// All fields, for enrichment.
    pub(crate) fn fields_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.fields
    }

    /// Consumes the event, giving its fields.
    pub fn into_fields(self) -> Map<String, Value> {
        self.fields
    }

    /// A top-level string field.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// `messageId`, the idempotency key.
    pub fn message_id(&self) -> Option<&str> {
        self.str_field("messageId")
    }

    /// `userId`.
    pub fn user_id(&self) -> Option<&str> {
        self.str_field("userId")
    }

    /// `anonymousId`.
    pub fn anonymous_id(&self) -> Option<&str> {
        self.str_field("anonymousId")
    }

    /// `event`, the name of a track call.
    pub fn event_name(&self) -> Option<&str> {
        self.str_field("event")
    }

    /// The `context` object, if any.
    pub fn context(&self) -> Option<&Map<String, Value>> {
        self.fields.get("context").and_then(Value::as_object)
    }

    /// Serializes the event as one line of NDJSON (without the newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing a `Map` of `Value`s into a `Vec` cannot fail: every key is a string and
        // there is no I/O.
        if serde_json::to_writer(&mut *out, &self.fields).is_err() {
            out.extend_from_slice(b"{}");
        }
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
