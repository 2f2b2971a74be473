//! A JSON object opened only as deep as the pipeline needs.
//!
//! Validation and enrichment read and change a handful of fields (`type`, the ids, the
//! timestamps, a few keys of `context`), yet every event must reach the lake with everything the
//! client sent. Parsing each event into a `serde_json::Value` tree and serializing it again costs
//! most of the pipeline's time, so an [`Obj`] keeps its fields as unparsed slices of the request
//! body ([`Node::Raw`]) until one is read, and writes them back by copying the bytes. Only the
//! objects enrichment changes (`context`, and inside it `referrer`) are opened, one level at a
//! time.
//!
//! Fields keep the client's order; enrichment appends new fields after them. A duplicated key
//! keeps its last value, as `serde_json` does.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The JSON type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The name used in error messages (`"a string"`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }

    /// The type of the JSON text `raw`, from its first byte (`raw` is valid JSON without
    /// leading whitespace).
    fn of_raw(raw: &str) -> Kind {
        match raw.as_bytes().first() {
            Some(b'"') => Kind::String,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') | None => Kind::Null,
            Some(_) => Kind::Number,
        }
    }

    pub(crate) fn of_value(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }
}

/// One field's value.
#[derive(Clone, Debug)]
pub(crate) enum Node<'a> {
    /// Unparsed JSON text, a slice of the request body.
    Raw(&'a RawValue),
    /// A string.
    Text(Cow<'a, str>),
    /// JSON text built once and shared (a parsed user agent, the receive time).
    Json(Arc<str>),
    /// An object opened one level.
    Obj(Obj<'a>),
    /// Any value built in code.
    Value(Value),
}

impl<'a> Node<'a> {
    /// The JSON type.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Node::Raw(raw) => Kind::of_raw(raw.get()),
            Node::Text(_) => Kind::String,
            Node::Json(json) => Kind::of_raw(json),
            Node::Obj(_) => Kind::Object,
            Node::Value(value) => Kind::of_value(value),
        }
    }

    /// The string, if this is one (decoding escapes only when it has any).
    pub(crate) fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Node::Raw(raw) => raw_text(raw.get()),
            Node::Json(json) => raw_text(json),
            Node::Text(text) => Some(Cow::Borrowed(text)),
            Node::Value(Value::String(text)) => Some(Cow::Borrowed(text)),
            Node::Obj(_) | Node::Value(_) => None,
        }
    }

    /// The string, if this is one, borrowed for as long as the request body when it has no
    /// escapes (so that enrichment can keep it without copying).
    pub(crate) fn body_text(&self) -> Option<Cow<'a, str>> {
        match self {
            Node::Raw(raw) => raw_text(raw.get()),
            Node::Text(Cow::Borrowed(text)) => Some(Cow::Borrowed(text)),
            Node::Text(Cow::Owned(text)) | Node::Value(Value::String(text)) => {
                Some(Cow::Owned(text.clone()))
            }
            Node::Json(json) => raw_text(json).map(|t| Cow::Owned(t.into_owned())),
            Node::Obj(_) | Node::Value(_) => None,
        }
    }

    /// The same value, owning everything it holds.
    pub(crate) fn into_owned(self) -> Node<'static> {
        match self {
            Node::Raw(_) => Node::Value(self.to_value()),
            Node::Text(text) => Node::Text(Cow::Owned(text.into_owned())),
            Node::Json(json) => Node::Json(json),
            Node::Obj(obj) => Node::Obj(obj.into_owned()),
            Node::Value(value) => Node::Value(value),
        }
    }

    /// Whether this is a string other than `""`.
    pub(crate) fn is_nonempty_text(&self) -> bool {
        match self {
            Node::Raw(raw) => raw.get().len() > 2 && Kind::of_raw(raw.get()) == Kind::String,
            Node::Json(json) => json.len() > 2 && Kind::of_raw(json) == Kind::String,
            Node::Text(text) => !text.is_empty(),
            Node::Value(Value::String(text)) => !text.is_empty(),
            Node::Obj(_) | Node::Value(_) => false,
        }
    }

    /// The value as a `serde_json::Value` (parsing it when it is raw).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Raw(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            Node::Json(json) => serde_json::from_str(json).unwrap_or(Value::Null),
            Node::Text(text) => Value::String(text.clone().into_owned()),
            Node::Obj(obj) => Value::Object(obj.to_map()),
            Node::Value(value) => value.clone(),
        }
    }

    /// Writes the value as compact JSON.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        self.write_checked(out, true);
    }

    /// Writes the value as compact JSON; `may_break` says whether raw text may hold line breaks
    /// (when the event's text has none, none of its slices does, and the check is skipped).
    fn write_checked(&self, out: &mut Vec<u8>, may_break: bool) {
        match self {
            Node::Raw(raw) if may_break => write_raw(raw.get(), out),
            Node::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            // Built here, compact.
            Node::Json(json) => out.extend_from_slice(json.as_bytes()),
            Node::Text(text) => write_str(text, out),
            Node::Obj(obj) => obj.write_checked(out, may_break),
            Node::Value(value) => {
                // Serializing a `Value` into a `Vec` cannot fail: no I/O, string keys only.
                if serde_json::to_writer(&mut *out, value).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
        }
    }
}

/// Copies JSON text. Text with a line break (a pretty-printed client) is re-serialized
/// compactly, so that an event stays on one NDJSON line.
fn write_raw(raw: &str, out: &mut Vec<u8>) {
    if raw.as_bytes().contains(&b'\n') {
        match serde_json::from_str::<Value>(raw) {
            Ok(value) => Node::Value(value).write_json(out),
            Err(_) => out.extend_from_slice(b"null"),
        }
    } else {
        out.extend_from_slice(raw.as_bytes());
    }
}

/// Writes a JSON string literal.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    // Most strings (keys, ids, times) need no escape: copy them without the serializer.
    // Without early exit, so that the check compiles to vector code.
    let escapes = text
        .bytes()
        .map(|b| u8::from(b < 0x20 || b == b'"' || b == b'\\'))
        .fold(0, |any, escape| any | escape);
    if escapes == 0 {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The string a JSON string literal holds: a slice of it when it has no escapes.
fn raw_text(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Key equality, comparing length and first byte before the bytes: most keys of an event
/// differ in one of them, and a lookup compares against every key.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// A JSON object whose values stay unparsed until needed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Obj<'a> {
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Obj<'a> {
    /// An empty object.
    pub(crate) fn new() -> Obj<'a> {
        Obj::default()
    }

    /// Opens the JSON object `json` one level.
    ///
    /// # Errors
    ///
    /// The parser's error when `json` is not valid JSON or not an object.
    pub(crate) fn parse(json: &'a str) -> Result<Obj<'a>, serde_json::Error> {
        Obj::parse_at(json, Depth::Leaf)
    }

    /// Opens an event: the top level, `context` and `context.page`, which enrichment reads
    /// and changes, in one pass over the bytes.
    ///
    /// # Errors
    ///
    /// The parser's error when `json` is not valid JSON or not an object.
    pub(crate) fn parse_event(json: &'a str) -> Result<Obj<'a>, serde_json::Error> {
        Obj::parse_at(json, Depth::Event)
    }

    fn parse_at(json: &'a str, depth: Depth) -> Result<Obj<'a>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let obj = deserializer.deserialize_map(ObjVisitor(depth))?;
        deserializer.end()?;
        Ok(obj)
    }

    /// Whether the object has no field.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    }

    /// The string value of `key`, if it is a string.
    pub(crate) fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).and_then(Node::as_text)
    }

    /// Whether `key` is present (with any value, null included).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`, replacing its value in place or adding it at the end.
    pub(crate) fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Node<'a>) {
        let key = key.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| same_key(k, &key)) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    /// Sets `key` unless it is present.
    pub(crate) fn insert_missing(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl FnOnce() -> Node<'a>,
    ) {
        let key = key.into();
        if !self.contains(&key) {
            self.entries.push((key, value()));
        }
    }

    /// The fields, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &Node<'a>)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Removes `key`, giving its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Node<'a>> {
        let at = self.entries.iter().position(|(k, _)| same_key(k, key))?;
        Some(self.entries.remove(at).1)
    }

    /// The object under `key` opened for change, or `None` when `key` is absent or not an
    /// object.
    pub(crate) fn open(&mut self, key: &str) -> Option<&mut Obj<'a>> {
        let node = self
            .entries
            .iter_mut()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)?;
        let opened = match node {
            Node::Obj(_) => None,
            Node::Raw(raw) if Kind::of_raw(raw.get()) == Kind::Object => {
                Some(Obj::parse(raw.get()).ok()?)
            }
            Node::Value(Value::Object(map)) => Some(Obj::from_map(std::mem::take(map))),
            _ => return None,
        };
        if let Some(opened) = opened {
            *node = Node::Obj(opened);
        }
        match node {
            Node::Obj(obj) => Some(obj),
            _ => None,
        }
    }

    /// The object under `key` opened for change, created empty when `key` is absent or null.
    /// `None` when `key` holds something else.
    pub(crate) fn open_or_create(&mut self, key: &'a str) -> Option<&mut Obj<'a>> {
        if matches!(self.get(key).map(Node::kind), None | Some(Kind::Null)) {
            self.insert(key, Node::Obj(Obj::new()));
        }
        self.open(key)
    }

    /// An object holding the entries of `map`.
    pub(crate) fn from_map(map: Map<String, Value>) -> Obj<'a> {
        Obj {
            entries: map
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Node::Value(v)))
                .collect(),
        }
    }

    /// The same object, owning everything it holds.
    pub(crate) fn into_owned(self) -> Obj<'static> {
        Obj {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        }
    }

    /// The object as a `serde_json` map.
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
            .collect()
    }

    /// Writes the object as compact JSON.
    #[cfg(test)]
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        self.write_checked(out, true);
    }

    /// Writes the object as compact JSON (see [`Node::write_checked`]).
    pub(crate) fn write_checked(&self, out: &mut Vec<u8>, may_break: bool) {
        out.push(b'{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(key, out);
            out.push(b':');
            value.write_checked(out, may_break);
        }
        out.push(b'}');
    }
}

/// An event: an object opened as [`Obj::parse_event`] does, for use as a `Deserialize` type.
pub(crate) struct EventObj<'a>(pub(crate) Obj<'a>);

impl<'de> Deserialize<'de> for EventObj<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventObj<'de>, D::Error> {
        deserializer
            .deserialize_map(ObjVisitor(Depth::Event))
            .map(EventObj)
    }
}

/// A position in JSON text, for walking a document's outer levels by hand while `serde_json`
/// parses each value there: the text is read once, and the exact slice of every value is
/// known (a request body's events are parsed and kept as received in the same pass).
pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    fn skip_whitespace(&mut self) {
        let rest = self.text.as_bytes().get(self.at..).unwrap_or_default();
        self.at += rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
            .count();
    }

    /// The next byte after whitespace.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Consumes `byte` when it comes next (after whitespace).
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Parses the next value, giving it and its text.
    pub(crate) fn value<T: Deserialize<'a>>(&mut self) -> Option<(T, &'a str)> {
        self.skip_whitespace();
        let rest = self.text.get(self.at..)?;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        let value = stream.next()?.ok()?;
        let end = stream.byte_offset();
        let text = rest.get(..end)?;
        self.at += end;
        Some((value, text))
    }
}

/// Where in an event an object is, which says which of its fields parsing opens.
#[derive(Clone, Copy)]
enum Depth {
    Event,
    Context,
    Leaf,
}

impl Depth {
    fn child(self, key: &str) -> Option<Depth> {
        match (self, key) {
            (Depth::Event, "context") => Some(Depth::Context),
            (Depth::Context, "page") => Some(Depth::Leaf),
            _ => None,
        }
    }
}

struct ObjVisitor(Depth);

impl<'de> Visitor<'de> for ObjVisitor {
    type Value = Obj<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'de>, A::Error> {
        let mut obj = Obj {
            entries: Vec::with_capacity(map.size_hint().unwrap_or(16)),
        };
        while let Some(Key(key)) = map.next_key()? {
            let value = match self.0.child(&key) {
                Some(depth) => map.next_value_seed(NodeSeed(depth))?,
                None => Node::Raw(map.next_value()?),
            };
            obj.insert(key, value);
        }
        Ok(obj)
    }
}

/// A value that is opened when it is an object (and otherwise read as a `Value`).
struct NodeSeed(Depth);

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node<'de>, A::Error> {
        ObjVisitor(self.0).visit_map(map).map(Node::Obj)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Node::Value(Value::Array(items)))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(text)))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Value(Value::Null))
    }
}

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
        let mut obj =
            Obj::parse(r#"{"context":{"ip":"1.2.3.4","page":{"url":"u"}},"s":"x"}"#).unwrap();
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
        let obj = Obj::parse_event(json).unwrap();
        let Some(Node::Obj(context)) = obj.get("context") else {
            panic!("context not opened");
        };
        assert!(matches!(context.get("page"), Some(Node::Obj(_))));
        assert!(matches!(context.get("traits"), Some(Node::Raw(_))));
        assert!(matches!(obj.get("properties"), Some(Node::Raw(_))));
        let odd = Obj::parse_event(r#"{"context":[1,{"a":"b"}],"x":1}"#).unwrap();
        assert_eq!(odd.get("context").unwrap().kind(), Kind::Array);
        assert_eq!(odd.to_map()["context"], json!([1, {"a": "b"}]));
    }

    #[test]
    fn a_cursor_gives_each_value_and_its_text() {
        let text = r#" { "a" : [ {"x":1} , 2 , "s" ] , "b": null } "#;
        let mut cursor = Cursor::new(text);
        assert!(cursor.eat(b'{'));
        let (Key(key), _) = cursor.value::<Key<'_>>().unwrap();
        assert_eq!(key, "a");
        assert!(cursor.eat(b':') && cursor.eat(b'['));
        let (EventObj(obj), raw) = cursor.value::<EventObj<'_>>().unwrap();
        assert_eq!(raw, r#"{"x":1}"#);
        assert_eq!(obj.to_map()["x"], 1);
        assert!(cursor.eat(b','));
        let (_, raw) = cursor.value::<&RawValue>().unwrap();
        assert_eq!(raw, "2");
        assert!(cursor.eat(b','));
        assert_eq!(cursor.value::<&RawValue>().unwrap().1, r#""s""#);
        assert!(cursor.eat(b']') && cursor.eat(b','));
        assert_eq!(cursor.peek(), Some(b'"'));
        assert!(cursor.value::<Key<'_>>().is_some() && cursor.eat(b':'));
        assert_eq!(cursor.value::<&RawValue>().unwrap().1, "null");
        assert!(cursor.eat(b'}') && cursor.at_end());
        assert!(Cursor::new("{\"a\" 1}").value::<EventObj<'_>>().is_none());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(Obj::parse("[1]").is_err());
        assert!(Obj::parse("{\"a\":1} x").is_err());
    }
}
