//! A position in JSON text ([`Cursor`]), for walking the outer levels of a document by hand.

use std::borrow::Cow;

use super::object::{Obj, Shape};
use super::scan::{MAX_NESTING, Problem, problem, skip_whitespace, string_end, value_end};
use super::text::string_at;

/// A position in JSON text, for walking a document's outer levels by hand: the text is read
/// once, and the exact slice of every value is known (a request body's events are opened and
/// kept as received in the same pass). A read that fails keeps why ([`Cursor::failure`]).
pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
    /// Where the first read that failed started, and the nesting it allowed.
    failure: Option<(usize, usize)>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            at: 0,
            failure: None,
        }
    }

    /// Why the first read that failed did ([`Problem::Grammar`] when none did: the walker gave
    /// up on what it read).
    pub(crate) fn failure(&self) -> Problem {
        self.failure.map_or(Problem::Grammar, |(at, nesting)| {
            problem(self.text, at, nesting)
        })
    }

    fn keep<T, E>(&mut self, result: Result<T, E>, nesting: usize) -> Option<T> {
        if result.is_err() {
            self.failure.get_or_insert((self.at, nesting));
        }
        result.ok()
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

    /// The next value's text, checked, for a value that will sit in an event's top level (a
    /// batch default): it may nest one level less than the event.
    pub(crate) fn raw(&mut self) -> Option<&'a str> {
        self.peek();
        let end = value_end(self.text.as_bytes(), self.at, MAX_NESTING - 1);
        let end = self.keep(end, MAX_NESTING - 1)?;
        let raw = self.text.get(self.at..end)?;
        self.at = end;
        Some(raw)
    }

    /// The next value, a string.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let end = string_end(self.text.as_bytes(), self.at);
        let (end, escaped) = self.keep(end, 0)?;
        let text = string_at(self.text, self.at, end, escaped);
        let text = self.keep(text, 0)?;
        self.at = end;
        Some(text)
    }

    /// The next value, an object (an event), opened as `shape` says, with its text. It may nest
    /// as deep as a lake line, whose top level it will be.
    pub(crate) fn object(&mut self, shape: &Shape) -> Option<(Obj<'a>, &'a str)> {
        self.at = skip_whitespace(self.text.as_bytes(), self.at);
        let start = self.at;
        let parsed = Obj::parse_at(self.text, start, shape, MAX_NESTING);
        let (obj, end) = self.keep(parsed, MAX_NESTING)?;
        let raw = self.text.get(start..end)?;
        self.at = end;
        Some((obj, raw))
    }
}
