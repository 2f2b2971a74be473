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
//!
//! The text is read by [`scan`], which checks the JSON grammar without building values; a
//! value's slice is only kept once it has been checked, so what is copied to the lake is valid
//! JSON.

mod scan;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use time::OffsetDateTime;

use serde_json::{Map, Value};

use crate::enrich::write_ip;
use crate::timestamp;

pub(crate) use scan::SyntaxError;
use scan::{MAX_NESTING, skip_whitespace, string_end, value_end};

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
    /// Unparsed JSON text (checked by the scanner, without surrounding whitespace), a slice of
    /// the request body.
    Raw(&'a str),
    /// A string. When borrowed it is clean — a literal in the code, or a slice of a JSON string
    /// that `serde_json` read without escapes (so without quotes, backslashes or control
    /// characters) — and is written without an escape check; owned strings are checked.
    Text(Cow<'a, str>),
    /// JSON text built once and shared (a parsed user agent, the receive time).
    Json(Arc<str>),
    /// A time, written as `timestamp::format` does.
    Time(OffsetDateTime),
    /// An IP address.
    Ip(IpAddr),
    /// An object opened one level.
    Obj(Obj<'a>),
    /// Any value built in code.
    Value(Value),
}

impl<'a> Node<'a> {
    /// The JSON type.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Node::Raw(raw) => Kind::of_raw(raw),
            Node::Text(_) | Node::Time(_) | Node::Ip(_) => Kind::String,
            Node::Json(json) => Kind::of_raw(json),
            Node::Obj(_) => Kind::Object,
            Node::Value(value) => Kind::of_value(value),
        }
    }

    /// The string, if this is one (decoding escapes only when it has any).
    pub(crate) fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Node::Raw(raw) => raw_text(raw),
            Node::Json(json) => raw_text(json),
            Node::Text(text) => Some(Cow::Borrowed(text)),
            Node::Value(Value::String(text)) => Some(Cow::Borrowed(text)),
            Node::Time(_) | Node::Ip(_) => self.formatted().map(Cow::Owned),
            Node::Obj(_) | Node::Value(_) => None,
        }
    }

    /// A time or an address as text.
    fn formatted(&self) -> Option<String> {
        let mut out = Vec::new();
        match self {
            Node::Time(at) => timestamp::write(*at, &mut out),
            Node::Ip(ip) => write_ip(*ip, &mut out),
            _ => return None,
        }
        String::from_utf8(out).ok()
    }

    /// The string, if this is one, borrowed for as long as the request body when it has no
    /// escapes (so that enrichment can keep it without copying).
    pub(crate) fn body_text(&self) -> Option<Cow<'a, str>> {
        match self {
            Node::Raw(raw) => raw_text(raw),
            Node::Text(Cow::Borrowed(text)) => Some(Cow::Borrowed(text)),
            Node::Text(Cow::Owned(text)) | Node::Value(Value::String(text)) => {
                Some(Cow::Owned(text.clone()))
            }
            Node::Json(json) => raw_text(json).map(|t| Cow::Owned(t.into_owned())),
            Node::Time(_) | Node::Ip(_) => self.formatted().map(Cow::Owned),
            Node::Obj(_) | Node::Value(_) => None,
        }
    }

    /// The same value, owning everything it holds.
    pub(crate) fn into_owned(self) -> Node<'static> {
        match self {
            Node::Raw(_) => Node::Value(self.to_value()),
            Node::Text(text) => Node::Text(Cow::Owned(text.into_owned())),
            Node::Json(json) => Node::Json(json),
            Node::Time(at) => Node::Time(at),
            Node::Ip(ip) => Node::Ip(ip),
            Node::Obj(obj) => Node::Obj(obj.into_owned()),
            Node::Value(value) => Node::Value(value),
        }
    }

    /// Whether this is a string other than `""`.
    pub(crate) fn is_nonempty_text(&self) -> bool {
        match self {
            Node::Raw(raw) => raw.len() > 2 && Kind::of_raw(raw) == Kind::String,
            Node::Json(json) => json.len() > 2 && Kind::of_raw(json) == Kind::String,
            Node::Text(text) => !text.is_empty(),
            Node::Value(Value::String(text)) => !text.is_empty(),
            Node::Time(_) | Node::Ip(_) => true,
            Node::Obj(_) | Node::Value(_) => false,
        }
    }

    /// The value as a `serde_json::Value` (parsing it when it is raw).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Raw(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
            Node::Json(json) => serde_json::from_str(json).unwrap_or(Value::Null),
            Node::Text(text) => Value::String(text.clone().into_owned()),
            Node::Time(_) | Node::Ip(_) => self.formatted().map_or(Value::Null, Value::String),
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
            Node::Raw(raw) if may_break => write_raw(raw, out),
            Node::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
            // Built here, compact.
            Node::Json(json) => out.extend_from_slice(json.as_bytes()),
            Node::Text(text) => write_text(text, out),
            Node::Time(at) => {
                out.push(b'"');
                timestamp::write(*at, out);
                out.push(b'"');
            }
            Node::Ip(ip) => {
                out.push(b'"');
                write_ip(*ip, out);
                out.push(b'"');
            }
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

/// Writes a string that is clean when borrowed (see [`Node::Text`]).
#[expect(clippy::ptr_arg, reason = "the variant says whether the text is clean")]
fn write_text(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        Cow::Borrowed(clean) => {
            debug_assert!(!clean.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
            out.reserve(clean.len() + 2);
            out.push(b'"');
            out.extend_from_slice(clean.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(text) => write_str(text, out),
    }
}

/// Writes an object key and its colon.
#[expect(clippy::ptr_arg, reason = "the variant says whether the key is clean")]
fn write_key(key: &Cow<'_, str>, out: &mut Vec<u8>) {
    match key {
        Cow::Borrowed(clean) => {
            out.reserve(clean.len() + 3);
            out.push(b'"');
            out.extend_from_slice(clean.as_bytes());
            out.extend_from_slice(b"\":");
        }
        Cow::Owned(key) => {
            write_str(key, out);
            out.push(b':');
        }
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

/// A bit standing for a key in [`Obj::keys`], from its length and its first and last bytes.
#[inline]
fn key_bit(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let first = usize::from(bytes.first().copied().unwrap_or(0));
    let last = usize::from(bytes.last().copied().unwrap_or(0));
    1 << ((bytes.len() * 7 + first + last * 3) & 63)
}

/// A JSON object whose values stay unparsed until needed. Keys follow the rule of
/// [`Node::Text`]: clean when borrowed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Obj<'a> {
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
    /// The [`key_bit`]s of every key ever added: a key whose bit is clear is absent, which
    /// answers most lookups of absent keys (and most duplicate checks) without comparing.
    keys: u64,
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
    /// When `json` is not valid JSON or not an object.
    pub(crate) fn parse(json: &'a str) -> Result<Obj<'a>, SyntaxError> {
        Obj::parse_whole(json, Depth::Leaf)
    }

    /// Opens an event: the top level, `context` and `context.page`, which enrichment reads
    /// and changes, in one pass over the bytes.
    ///
    /// # Errors
    ///
    /// When `json` is not valid JSON or not an object.
    pub(crate) fn parse_event(json: &'a str) -> Result<Obj<'a>, SyntaxError> {
        Obj::parse_whole(json, Depth::Event)
    }

    fn parse_whole(json: &'a str, depth: Depth) -> Result<Obj<'a>, SyntaxError> {
        let bytes = json.as_bytes();
        let start = skip_whitespace(bytes, 0);
        let (obj, end) = Obj::parse_at(json, start, depth, MAX_NESTING)?;
        if skip_whitespace(bytes, end) == bytes.len() {
            Ok(obj)
        } else {
            Err(SyntaxError)
        }
    }

    /// Reads the object that starts at `at`, giving it and where it ends.
    fn parse_at(
        text: &'a str,
        at: usize,
        depth: Depth,
        nesting: usize,
    ) -> Result<(Obj<'a>, usize), SyntaxError> {
        let bytes = text.as_bytes();
        if bytes.get(at) != Some(&b'{') {
            return Err(SyntaxError);
        }
        let inner = nesting.checked_sub(1).ok_or(SyntaxError)?;
        let mut obj = Obj {
            entries: Vec::with_capacity(depth.capacity()),
            keys: 0,
        };
        let mut i = skip_whitespace(bytes, at + 1);
        if bytes.get(i) == Some(&b'}') {
            return Ok((obj, i + 1));
        }
        loop {
            if bytes.get(i) != Some(&b'"') {
                return Err(SyntaxError);
            }
            let (end, escaped) = string_end(bytes, i)?;
            let key = string_at(text, i, end, escaped)?;
            i = skip_whitespace(bytes, end);
            if bytes.get(i) != Some(&b':') {
                return Err(SyntaxError);
            }
            i = skip_whitespace(bytes, i + 1);
            let value = match depth.child(&key) {
                Some(child) if bytes.get(i) == Some(&b'{') => {
                    let (child, end) = Obj::parse_at(text, i, child, inner)?;
                    i = end;
                    Node::Obj(child)
                }
                // A string without escapes is kept as its text: reading it is then free.
                _ if bytes.get(i) == Some(&b'"') => {
                    let (end, escaped) = string_end(bytes, i)?;
                    let value = if escaped {
                        Node::Raw(text.get(i..end).ok_or(SyntaxError)?)
                    } else {
                        Node::Text(Cow::Borrowed(text.get(i + 1..end - 1).ok_or(SyntaxError)?))
                    };
                    i = end;
                    value
                }
                _ => {
                    let end = value_end(bytes, i, inner)?;
                    let raw = text.get(i..end).ok_or(SyntaxError)?;
                    i = end;
                    Node::Raw(raw)
                }
            };
            obj.insert(key, value);
            i = skip_whitespace(bytes, i);
            match bytes.get(i) {
                Some(b',') => i = skip_whitespace(bytes, i + 1),
                Some(b'}') => return Ok((obj, i + 1)),
                _ => return Err(SyntaxError),
            }
        }
    }

    /// Whether the object has no field.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `key` is in `entries`.
    fn position(&self, key: &str) -> Option<usize> {
        if self.keys & key_bit(key) == 0 {
            return None;
        }
        self.entries.iter().position(|(k, _)| same_key(k, key))
    }

    /// Adds a key known to be absent.
    fn push(&mut self, key: Cow<'a, str>, value: Node<'a>) {
        self.keys |= key_bit(&key);
        self.entries.push((key, value));
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        let at = self.position(key)?;
        self.entries.get(at).map(|(_, v)| v)
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
        match self.position(&key).and_then(|at| self.entries.get_mut(at)) {
            Some(slot) => slot.1 = value,
            None => self.push(key, value),
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
            self.push(key, value());
        }
    }

    /// The fields, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &Node<'a>)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Removes `key`, giving its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Node<'a>> {
        let at = self.position(key)?;
        Some(self.entries.remove(at).1)
    }

    /// The object under `key` opened for change, or `None` when `key` is absent or not an
    /// object.
    pub(crate) fn open(&mut self, key: &str) -> Option<&mut Obj<'a>> {
        let at = self.position(key)?;
        let node = self.entries.get_mut(at).map(|(_, v)| v)?;
        let opened = match node {
            Node::Obj(_) => None,
            Node::Raw(raw) if Kind::of_raw(raw) == Kind::Object => Some(Obj::parse(raw).ok()?),
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
        let mut obj = Obj::new();
        for (key, value) in map {
            obj.push(Cow::Owned(key), Node::Value(value));
        }
        obj
    }

    /// The same object, owning everything it holds.
    pub(crate) fn into_owned(self) -> Obj<'static> {
        Obj {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
            keys: self.keys,
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
            write_key(key, out);
            value.write_checked(out, may_break);
        }
        out.push(b'}');
    }
}

/// The string whose JSON text is `text[start..end]` (quotes included): a slice when it has no
/// escapes, decoded otherwise.
fn string_at(
    text: &str,
    start: usize,
    end: usize,
    escaped: bool,
) -> Result<Cow<'_, str>, SyntaxError> {
    if escaped {
        let literal = text.get(start..end).ok_or(SyntaxError)?;
        // The scanner has checked the escapes; `serde_json` decodes them (and rejects lone
        // surrogates, which no string can hold).
        serde_json::from_str::<String>(literal)
            .map(Cow::Owned)
            .map_err(|_| SyntaxError)
    } else {
        text.get(start + 1..end - 1)
            .map(Cow::Borrowed)
            .ok_or(SyntaxError)
    }
}

/// A position in JSON text, for walking a document's outer levels by hand: the text is read
/// once, and the exact slice of every value is known (a request body's events are opened and
/// kept as received in the same pass).
pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    /// The next byte after whitespace.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.at = skip_whitespace(self.text.as_bytes(), self.at);
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

    /// The next value's text, checked.
    pub(crate) fn raw(&mut self) -> Option<&'a str> {
        self.peek();
        let end = value_end(self.text.as_bytes(), self.at, MAX_NESTING - 1).ok()?;
        let raw = self.text.get(self.at..end)?;
        self.at = end;
        Some(raw)
    }

    /// The next value, a string.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let (end, escaped) = string_end(self.text.as_bytes(), self.at).ok()?;
        let text = string_at(self.text, self.at, end, escaped).ok()?;
        self.at = end;
        Some(text)
    }

    /// The next value, an event object, opened, with its text.
    pub(crate) fn event(&mut self) -> Option<(Obj<'a>, &'a str)> {
        let start = skip_whitespace(self.text.as_bytes(), self.at);
        let (obj, end) = Obj::parse_at(self.text, start, Depth::Event, MAX_NESTING - 1).ok()?;
        let raw = self.text.get(start..end)?;
        self.at = end;
        Some((obj, raw))
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

    /// Room for the fields such an object usually has.
    fn capacity(self) -> usize {
        match self {
            Depth::Event => 16,
            Depth::Context => 12,
            Depth::Leaf => 4,
        }
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
        let (obj, raw) = cursor.event().unwrap();
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
        assert!(Cursor::new("{\"a\" 1}").event().is_none());
        assert!(Cursor::new("[1,]").raw().is_none());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(Obj::parse("[1]").is_err());
        assert!(Obj::parse("{\"a\":1} x").is_err());
        assert!(Obj::parse("{\"a\":[1,]}").is_err());
        assert!(Obj::parse_event("{\"context\":{\"page\":{\"url\":tru}}}").is_err());
    }
}
