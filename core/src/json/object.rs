//! A JSON object opened one level ([`Obj`]), its values ([`Node`]: unparsed text, a string, a
//! time, an address, an opened object or a built value), and the nested objects a [`Shape`]
//! opens in the same pass. Every value not opened stays the slice of the input it was read
//! from, and is written back by copying it.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::scan::{MAX_NESTING, SyntaxError, skip_whitespace, string_end, value_end};
use super::text::{Kind, raw_text, string_at, write_ip, write_key, write_raw, write_text};
use crate::timestamp;

/// Which nested objects a parse opens in the same pass over the bytes (their fields are then
/// slices, read without a second pass), and how many fields such an object usually has. A
/// reader names the objects it will read or change; everything else stays unparsed text.
#[derive(Debug)]
pub(crate) struct Shape {
    /// Fields whose object values are opened, each with its own shape.
    pub(crate) open: &'static [(&'static str, &'static Shape)],
    /// Room reserved for the object's fields.
    pub(crate) capacity: usize,
}

impl Shape {
    /// One level: nothing nested is opened.
    pub(crate) const LEAF: Shape = Shape {
        open: &[],
        capacity: 4,
    };

    fn child(&self, key: &str) -> Option<&'static Shape> {
        self.open
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, shape)| *shape)
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
        Obj::parse_shaped(json, &Shape::LEAF)
    }

    /// Opens the JSON object `json` and, in the same pass over the bytes, the nested objects
    /// that `shape` names.
    ///
    /// # Errors
    ///
    /// When `json` is not valid JSON or not an object.
    pub(crate) fn parse_shaped(json: &'a str, shape: &Shape) -> Result<Obj<'a>, SyntaxError> {
        let bytes = json.as_bytes();
        let start = skip_whitespace(bytes, 0);
        let (obj, end) = Obj::parse_at(json, start, shape, MAX_NESTING)?;
        if skip_whitespace(bytes, end) == bytes.len() {
            Ok(obj)
        } else {
            Err(SyntaxError)
        }
    }

    /// Reads the object that starts at `at`, giving it and where it ends.
    pub(super) fn parse_at(
        text: &'a str,
        at: usize,
        shape: &Shape,
        nesting: usize,
    ) -> Result<(Obj<'a>, usize), SyntaxError> {
        let bytes = text.as_bytes();
        if bytes.get(at) != Some(&b'{') {
            return Err(SyntaxError);
        }
        let inner = nesting.checked_sub(1).ok_or(SyntaxError)?;
        let mut obj = Obj {
            entries: Vec::with_capacity(shape.capacity),
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
            let value = match shape.child(&key) {
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

    /// The object this value holds, opened one level for reading when it is still text;
    /// `None` when it is not an object.
    pub(crate) fn as_object(&self) -> Option<Cow<'_, Obj<'a>>> {
        match self {
            Node::Obj(obj) => Some(Cow::Borrowed(obj)),
            Node::Raw(raw) if Kind::of_raw(raw) == Kind::Object => {
                Obj::parse(raw).ok().map(Cow::Owned)
            }
            Node::Value(Value::Object(map)) => Some(Cow::Owned(Obj::from_map(map.clone()))),
            Node::Raw(_)
            | Node::Text(_)
            | Node::Json(_)
            | Node::Time(_)
            | Node::Ip(_)
            | Node::Value(_) => None,
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

    /// Writes the value as compact JSON; `may_break` says whether raw text may hold line breaks
    /// (when the event's text has none, none of its slices does, and the check is skipped).
    pub(super) fn write_checked(&self, out: &mut Vec<u8>, may_break: bool) {
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
