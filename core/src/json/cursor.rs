//! A position in JSON text ([`Cursor`]), for walking the outer levels of a document by hand.

use std::borrow::Cow;

use super::object::{Obj, Shape};
use super::scan::{MAX_NESTING, skip_whitespace, string_end, value_end};
use super::text::string_at;

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

    /// The next value, an object, opened as `shape` says, with its text.
    pub(crate) fn object(&mut self, shape: &Shape) -> Option<(Obj<'a>, &'a str)> {
        let start = skip_whitespace(self.text.as_bytes(), self.at);
        let (obj, end) = Obj::parse_at(self.text, start, shape, MAX_NESTING - 1).ok()?;
        let raw = self.text.get(start..end)?;
        self.at = end;
        Some((obj, raw))
    }
}
