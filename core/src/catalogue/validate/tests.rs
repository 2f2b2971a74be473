//! One test per validation rule, with the exact message a client sees.

use serde_json::json;

use super::*;
use crate::event::EventType;

fn check(event: &serde_json::Value) -> Result<crate::Event<'static>, ValidationError> {
    // An event borrows its JSON text; leaking a test's few strings keeps the helper simple.
    let json: &'static str = Box::leak(event.to_string().into_boxed_str());
    validate_event(3, json, None, &Limits::default())
}

fn message(event: &serde_json::Value) -> String {
    check(event).unwrap_err().to_string()
}

#[test]
fn accepts_a_minimal_track() {
    let event = check(&json!({"type": "track", "event": "Signed Up", "userId": "u1"})).unwrap();
    assert_eq!(event.kind(), EventType::Track);
    assert_eq!(event.user_id().as_deref(), Some("u1"));
    assert_eq!(event.event_name().as_deref(), Some("Signed Up"));
}

#[test]
fn keeps_unknown_fields() {
    let event =
        check(&json!({"type": "page", "anonymousId": "a", "custom": {"deep": [1, 2]}})).unwrap();
    assert_eq!(event.to_map()["custom"], json!({"deep": [1, 2]}));
}

#[test]
fn numeric_ids_become_strings() {
    let event = check(&json!({"type": "identify", "userId": 42})).unwrap();
    assert_eq!(event.user_id().as_deref(), Some("42"));
}

#[test]
fn track_requires_event() {
    assert_eq!(
        message(&json!({"type": "track", "userId": "u"})),
        r#"event 3: track event requires "event""#
    );
    for blank in ["", " ", "\t\n"] {
        assert_eq!(
            message(&json!({"type": "track", "userId": "u", "event": blank})),
            r#"event 3: track event requires "event""#,
            "{blank:?}"
        );
    }
}

/// An id unify would never use (blank, or a placeholder it blocks) is no identity: refused
/// here rather than accepted and kept out of every profile. One usable id is enough.
#[test]
fn blank_and_placeholder_ids_are_no_identity() {
    for id in ["   ", "null", "undefined", "NULL", " 0 ", "[object Object]"] {
        for field in ["userId", "anonymousId"] {
            let error = check(&json!({"type": "page", field: id})).unwrap_err();
            assert_eq!(error.code(), "missing_identity", "{field}: {id:?}");
        }
        assert!(check(&json!({"type": "page", "userId": id, "anonymousId": "a-1"})).is_ok());
    }
    assert!(check(&json!({"type": "page", "userId": "nullish"})).is_ok());
}

#[test]
fn requires_user_id_or_anonymous_id() {
    let error = check(&json!({"type": "page", "userId": null})).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"event 3: event requires "userId" or "anonymousId" (not blank, not a placeholder such as "null")"#
    );
    assert_eq!(error.index(), Some(3));
    assert_eq!(error.code(), "missing_identity");
}

#[test]
fn message_id_over_100_characters() {
    let long = "m".repeat(101);
    let error = check(&json!({"type": "page", "anonymousId": "a", "messageId": long})).unwrap_err();
    assert_eq!(error.field(), Some("messageId"));
    assert_eq!(error.limit(), Some(100));
    assert_eq!(
        error.to_string(),
        format!(
            r#"event 3: "messageId" is 101 characters, over the limit of 100: "{}…""#,
            "m".repeat(64)
        )
    );
    // Exactly at the limit is fine, and characters are counted, not bytes.
    assert!(
        check(&json!({"type": "page", "anonymousId": "a", "messageId": "é".repeat(100)})).is_ok()
    );
}

#[test]
fn event_over_32_kb() {
    let big = "x".repeat(33 * 1024);
    let error =
        check(&json!({"type": "track", "event": "E", "userId": "u", "properties": {"big": big}}))
            .unwrap_err();
    assert_eq!(error.code(), "event_too_large");
    assert_eq!(error.limit(), Some(32 * 1024));
    assert!(
        error.to_string().starts_with("event 3: event is 33"),
        "{error}"
    );
}

#[test]
fn wrong_types_name_the_field() {
    assert_eq!(
        message(&json!({"type": "track", "event": 5, "userId": "u"})),
        r#"event 3: "event" must be a string, not a number"#
    );
    assert_eq!(
        message(&json!({"type": "track", "event": "E", "userId": "u", "properties": [1]})),
        r#"event 3: "properties" must be an object, not an array"#
    );
    assert_eq!(
        message(&json!({"type": "identify", "userId": true})),
        r#"event 3: "userId" must be a string or a number, not a boolean"#
    );
    assert_eq!(
        message(&json!({"type": "identify", "userId": "u", "context": "web"})),
        r#"event 3: "context" must be an object, not a string"#
    );
}

#[test]
fn bad_timestamps() {
    assert_eq!(
        message(&json!({"type": "track", "event": "E", "userId": "u", "timestamp": "yesterday"})),
        r#"event 3: "timestamp" is not an RFC 3339 date: "yesterday""#
    );
    assert_eq!(
        message(&json!({"type": "track", "event": "E", "userId": "u", "sentAt": 1_700_000_000})),
        r#"event 3: "sentAt" must be an RFC 3339 date string, not a number"#
    );
}

#[test]
fn type_rules() {
    assert_eq!(
        message(&json!({"type": "click", "userId": "u"})),
        r#"event 3: "type" must be one of track, identify, page, screen, group, alias: "click""#
    );
    assert_eq!(
        message(&json!({"userId": "u"})),
        r#"event 3: every event requires "type""#
    );
    let error = validate_event(
        0,
        r#"{"type":"identify","userId":"u"}"#,
        Some(EventType::Track),
        &Limits::default(),
    );
    assert_eq!(
        error.unwrap_err().to_string(),
        r#"event 0: "type" is "identify" but the endpoint takes track events"#
    );
    let implied = validate_event(
        0,
        r#"{"userId":"u"}"#,
        Some(EventType::Identify),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(implied.to_map()["type"], "identify");
}

#[test]
fn group_and_alias_requirements() {
    assert_eq!(
        message(&json!({"type": "group", "userId": "u"})),
        r#"event 3: group event requires "groupId""#
    );
    assert!(check(&json!({"type": "group", "userId": "u", "groupId": 7})).is_ok());
    assert_eq!(
        message(&json!({"type": "alias", "userId": "u"})),
        r#"event 3: alias event requires "previousId""#
    );
    assert_eq!(
        message(&json!({"type": "alias", "anonymousId": "a", "previousId": "p"})),
        r#"event 3: alias event requires "userId""#
    );
}

#[test]
fn not_an_object() {
    let error = validate_event(1, "[1]", None, &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "event 1: event must be a JSON object, not an array"
    );
}
