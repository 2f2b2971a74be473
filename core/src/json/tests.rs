//! Reading and writing back objects, cursors, and the writers of built values.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::text::write_ip;
use super::*;

/// The shape of a Segment event as the pipeline reads it: the top level, `context` and
/// `context.page` opened in one pass.
const PAGE: Shape = Shape::LEAF;
const CONTEXT: Shape = Shape {
    open: &[("page", &PAGE)],
    capacity: 12,
};
const EVENT: Shape = Shape {
    open: &[("context", &CONTEXT)],
    capacity: 16,
};

fn round_trip(json: &str) -> Value {
    let obj = Obj::parse(json).unwrap();
    let mut out = Vec::new();
    obj.write_json(&mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn writes_back_what_it_read() {
    let input = json!({"a": 1, "b": {"c": [1, "x\"y", null]}, "é\n": "\u{1}", "d": -2.5e3});
    assert_eq!(round_trip(&input.to_string()), input);
}

#[test]
fn keeps_the_last_of_duplicate_keys() {
    assert_eq!(round_trip(r#"{"a":1,"a":2}"#), json!({"a": 2}));
}

#[test]
fn pretty_printed_values_stay_on_one_line() {
    let obj = Obj::parse("{\"a\": {\n  \"b\": [\n 1\n ]\n}}").unwrap();
    let mut out = Vec::new();
    obj.write_json(&mut out);
    assert!(!out.contains(&b'\n'));
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"a": {"b": [1]}})
    );
}

#[test]
fn reads_strings_with_and_without_escapes() {
    let obj = Obj::parse(r#"{"plain":"abc","escaped":"a\"b\u00e9","n":1,"e":""}"#).unwrap();
    assert!(matches!(obj.text("plain"), Some(Cow::Borrowed("abc"))));
    assert_eq!(obj.text("escaped").as_deref(), Some("a\"bé"));
    assert_eq!(obj.text("n"), None);
    assert!(obj.get("plain").unwrap().is_nonempty_text());
    assert!(!obj.get("e").unwrap().is_nonempty_text());
    assert_eq!(obj.get("n").unwrap().kind(), Kind::Number);
}

#[test]
fn opens_nested_objects_for_change() {
    let mut obj = Obj::parse(r#"{"context":{"ip":"1.2.3.4","page":{"url":"u"}},"s":"x"}"#).unwrap();
    let context = obj.open("context").unwrap();
    context.insert("ip", Node::Text("0.0.0.0".into()));
    context.insert("agent", Node::Value(json!({"bot": false})));
    assert!(obj.open("s").is_none());
    obj.open_or_create("new")
        .unwrap()
        .insert("k", Node::Value(json!(1)));
    let mut out = Vec::new();
    obj.write_json(&mut out);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"context": {"ip": "0.0.0.0", "page": {"url": "u"}, "agent": {"bot": false}}, "s": "x", "new": {"k": 1}})
    );
}

#[test]
fn events_open_context_and_page_in_the_same_pass() {
    let json = r#"{"context":{"page":{"url":"u"},"traits":{"a":1}},"properties":{"b":2}}"#;
    let obj = Obj::parse_shaped(json, &EVENT).unwrap();
    let Some(Node::Obj(context)) = obj.get("context") else {
        panic!("context not opened");
    };
    assert!(matches!(context.get("page"), Some(Node::Obj(_))));
    assert!(matches!(context.get("traits"), Some(Node::Raw(_))));
    assert!(matches!(obj.get("properties"), Some(Node::Raw(_))));
    let odd = Obj::parse_shaped(r#"{"context":[1,{"a":"b"}],"x":1}"#, &EVENT).unwrap();
    assert!(matches!(odd.get("context"), Some(Node::Raw(_))));
    assert_eq!(odd.get("context").unwrap().kind(), Kind::Array);
    assert_eq!(odd.to_map()["context"], json!([1, {"a": "b"}]));
}

#[test]
fn a_cursor_gives_each_value_and_its_text() {
    let text = r#" { "a" : [ {"x":1} , 2 , "s" ] , "b\u00e9": null } "#;
    let mut cursor = Cursor::new(text);
    assert!(cursor.eat(b'{'));
    assert_eq!(cursor.string().as_deref(), Some("a"));
    assert!(cursor.eat(b':') && cursor.eat(b'['));
    let (obj, raw) = cursor.object(&EVENT).unwrap();
    assert_eq!(raw, r#"{"x":1}"#);
    assert_eq!(obj.to_map()["x"], 1);
    assert!(cursor.eat(b','));
    assert_eq!(cursor.raw(), Some("2"));
    assert!(cursor.eat(b','));
    assert_eq!(cursor.raw(), Some(r#""s""#));
    assert!(cursor.eat(b']') && cursor.eat(b','));
    assert_eq!(cursor.string().as_deref(), Some("bé"));
    assert!(cursor.eat(b':'));
    assert_eq!(cursor.raw(), Some("null"));
    assert!(cursor.eat(b'}') && cursor.at_end());
    assert!(Cursor::new("{\"a\" 1}").object(&EVENT).is_none());
    assert!(Cursor::new("[1,]").raw().is_none());
}

#[test]
fn rejects_non_objects() {
    assert!(Obj::parse("[1]").is_err());
    assert!(Obj::parse("{\"a\":1} x").is_err());
    assert!(Obj::parse("{\"a\":[1,]}").is_err());
    assert!(Obj::parse_shaped("{\"context\":{\"page\":{\"url\":tru}}}", &EVENT).is_err());
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for text in [
        "0.0.0.0",
        "9.10.99.100",
        "255.255.255.255",
        "203.0.113.7",
        "2001:db8::1",
    ] {
        let ip: std::net::IpAddr = text.parse().unwrap();
        let mut out = Vec::new();
        write_ip(ip, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
    }
}
