//! JSON text, without values: the type of a value from its first byte ([`Kind`]), strings read
//! and written (escapes decoded only when there are any), keys, and the IP addresses the lake
//! writes.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::Value;

use super::scan::SyntaxError;

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
    pub(super) fn of_raw(raw: &str) -> Kind {
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

/// Copies JSON text. Text with a line break (a pretty-printed client) is re-serialized
/// compactly, so that an event stays on one NDJSON line.
pub(super) fn write_raw(raw: &str, out: &mut Vec<u8>) {
    if raw.as_bytes().contains(&b'\n') {
        let compact = serde_json::from_str::<Value>(raw)
            .ok()
            .filter(|value| serde_json::to_writer(&mut *out, value).is_ok());
        if compact.is_none() {
            out.extend_from_slice(b"null");
        }
    } else {
        out.extend_from_slice(raw.as_bytes());
    }
}

/// Writes a string that is clean when borrowed (see [`Node::Text`]).
#[expect(clippy::ptr_arg, reason = "the variant says whether the text is clean")]
pub(super) fn write_text(text: &Cow<'_, str>, out: &mut Vec<u8>) {
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
pub(super) fn write_key(key: &Cow<'_, str>, out: &mut Vec<u8>) {
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
pub(super) fn raw_text(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Appends an address as `Display` writes it, without the formatting machinery for IPv4 (most
/// addresses), which costs more than the rest of the IP enrichment step.
pub(crate) fn write_ip(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => out.extend_from_slice(ip.to_string().as_bytes()),
    }
}

/// The string whose JSON text is `text[start..end]` (quotes included): a slice when it has no
/// escapes, decoded otherwise.
pub(super) fn string_at(
    text: &str,
    start: usize,
    end: usize,
    escaped: bool,
) -> Result<Cow<'_, str>, SyntaxError> {
    if escaped {
        let literal = text.get(start..end).ok_or(SyntaxError)?;
        // The scanner has checked the escapes (lone surrogates included); `serde_json`
        // decodes them.
        serde_json::from_str::<String>(literal)
            .map(Cow::Owned)
            .map_err(|_| SyntaxError)
    } else {
        text.get(start + 1..end - 1)
            .map(Cow::Borrowed)
            .ok_or(SyntaxError)
    }
}
