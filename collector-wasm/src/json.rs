//! The little JSON the collector writes: escaped strings, numbers, and splicing fields into
//! objects that the host serialised. No parser and no `core::fmt`: both cost wasm bytes.

use alloc::string::String;

/// Appends `value` as a JSON string literal (quotes included).
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(value.get(start..at).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            push_hex_digit(out, byte >> 4);
            push_hex_digit(out, byte & 0xf);
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(value.get(start..).unwrap_or_default());
    out.push('"');
}

pub(crate) fn push_hex_digit(out: &mut String, nibble: u8) {
    out.push(char::from(
        b"0123456789abcdef"
            .get(usize::from(nibble & 0xf))
            .copied()
            .unwrap_or(b'0'),
    ));
}

/// Appends a non-negative integer in decimal.
pub(crate) fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        if let Some(slot) = digits.get_mut(len) {
            // The remainder is below 10, so the cast keeps the value.
            *slot = b'0' + (value % 10) as u8;
        }
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for digit in digits.iter().take(len).rev() {
        out.push(char::from(*digit));
    }
}

/// The members of a serialised JSON object, without the braces and surrounding white space
/// (`""` for `{}`), or `None` when `text` is not written as an object. Only the outer braces
/// are checked: the caller vouches for the rest (`JSON.stringify`, or [`is_valid`]).
pub(crate) fn members(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(inner.trim())
}

/// Whether `text` is one complete JSON value (RFC 8259), nested at most 64 deep. For input that
/// did not come from `JSON.stringify`: the C ABI's callers.
pub(crate) fn is_valid(text: &str) -> bool {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
    };
    reader.value(0) && {
        reader.space();
        reader.at == reader.bytes.len()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.space();
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let hit = self.bytes.get(self.at..self.at + word.len()) == Some(word);
        if hit {
            self.at += word.len();
        }
        hit
    }

    fn value(&mut self, depth: u32) -> bool {
        if depth > 64 {
            return false;
        }
        self.space();
        match self.peek() {
            Some(b'{') => self.sequence(b'}', depth, true),
            Some(b'[') => self.sequence(b']', depth, false),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn sequence(&mut self, close: u8, depth: u32, object: bool) -> bool {
        self.at += 1;
        if self.eat(close) {
            return true;
        }
        loop {
            if object && !(self.space_then_string() && self.eat(b':')) {
                return false;
            }
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(close) {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn space_then_string(&mut self) -> bool {
        self.space();
        self.peek() == Some(b'"') && self.string()
    }

    fn string(&mut self) -> bool {
        self.at += 1;
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'"' => return true,
                b'\\' => {
                    let Some(escaped) = self.peek() else {
                        return false;
                    };
                    self.at += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return false;
                                }
                                self.at += 1;
                            }
                        }
                        _ => return false,
                    }
                }
                0..=0x1f => return false,
                _ => {}
            }
        }
        false
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> bool {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if self.digits() == 0 {
            return false;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return false;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for value in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
    }

    #[test]
    fn the_validator_accepts_json_and_rejects_the_rest() {
        for good in [
            r#"{"a":[1,-2.5e+3,true,false,null,"x\u00e9"]}"#,
            " {} ",
            "[]",
            "0",
            r#""\n""#,
        ] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "",
            "{",
            r#"{"a":}"#,
            "[1,]",
            "01",
            "1.",
            r#""\x""#,
            "{} {}",
            "{'a':1}",
            "\"\u{1}\"",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        let deep = "[".repeat(70) + &"]".repeat(70);
        assert!(!is_valid(&deep));
    }

    #[test]
    fn members_strip_the_braces_only_of_objects() {
        assert_eq!(members(r#" {"a": 1} "#), Some(r#""a": 1"#));
        assert_eq!(members("{}"), Some(""));
        assert_eq!(members("[1]"), None);
    }
}
