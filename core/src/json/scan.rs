//! A strict JSON scanner: finds where a value ends, checking the RFC 8259 grammar on the way,
//! and builds nothing.
//!
//! The pipeline keeps most of an event as slices of the request body and copies them to the
//! lake, so those slices must be valid JSON (one bad byte would make a whole lake object
//! unreadable), but they need not be turned into values. This scanner does exactly that check,
//! several times faster than a parser that builds values: strings are searched eight bytes at a
//! time for the only bytes that matter in them (`"`, `\` and control characters).
//!
//! The grammar is the one `serde_json` accepts (a test compares the two on many inputs), with
//! the nesting limit of 127 levels that `serde_json` applies when it builds values. The text is
//! `&str`, so it is UTF-8 already.

/// The text is not valid JSON; the caller asks `serde_json` for a message with line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError;

/// How deep arrays and objects may nest: 127 levels, as `serde_json` allows.
pub(crate) const MAX_NESTING: usize = 127;

/// The first position at or after `at` that is not JSON whitespace.
pub(crate) fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The end of the value that starts at `at` (just past its last byte). `nesting` is how many
/// more levels of arrays and objects may open.
pub(crate) fn value_end(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, SyntaxError> {
    match bytes.get(at) {
        Some(b'"') => string_end(bytes, at).map(|(end, _)| end),
        Some(b'{') => object_end(bytes, at, nesting),
        Some(b'[') => array_end(bytes, at, nesting),
        Some(b't') => literal_end(bytes, at, b"true"),
        Some(b'f') => literal_end(bytes, at, b"false"),
        Some(b'n') => literal_end(bytes, at, b"null"),
        Some(b'-' | b'0'..=b'9') => number_end(bytes, at),
        _ => Err(SyntaxError),
    }
}

/// The end of the string that starts at `at` (just past its closing quote), and whether it
/// has escapes.
pub(crate) fn string_end(bytes: &[u8], at: usize) -> Result<(usize, bool), SyntaxError> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i = next_special(bytes, i);
        match bytes.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match bytes.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = bytes.get(i + 2..i + 6).ok_or(SyntaxError)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(SyntaxError);
                        }
                        i += 6;
                    }
                    _ => return Err(SyntaxError),
                }
            }
            // A control character, or the end of the text.
            _ => return Err(SyntaxError),
        }
    }
}

/// The first position at or after `at` holding `"`, `\` or a control character (or the end).
fn next_special(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    // Eight bytes at a time: a byte's high bit is set in `found` when it is below 0x20 or
    // equal to `"` or `\` (the classic "has zero byte" test). Bits above the first match may
    // be wrong, so only the lowest is used.
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0_u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

fn literal_end(bytes: &[u8], at: usize, literal: &[u8]) -> Result<usize, SyntaxError> {
    if bytes.get(at..at + literal.len()) == Some(literal) {
        Ok(at + literal.len())
    } else {
        Err(SyntaxError)
    }
}

fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number_end(bytes: &[u8], mut at: usize) -> Result<usize, SyntaxError> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match bytes.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits_end(bytes, at + 1),
        _ => return Err(SyntaxError),
    }
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        at = digits_end(bytes, start);
        if at == start {
            return Err(SyntaxError);
        }
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let start = at;
        at = digits_end(bytes, start);
        if at == start {
            return Err(SyntaxError);
        }
    }
    Ok(at)
}

fn object_end(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, SyntaxError> {
    let inner = nesting.checked_sub(1).ok_or(SyntaxError)?;
    let mut i = skip_whitespace(bytes, at + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return Err(SyntaxError);
        }
        i = skip_whitespace(bytes, string_end(bytes, i)?.0);
        if bytes.get(i) != Some(&b':') {
            return Err(SyntaxError);
        }
        i = skip_whitespace(bytes, i + 1);
        i = skip_whitespace(bytes, value_end(bytes, i, inner)?);
        match bytes.get(i) {
            Some(b',') => i = skip_whitespace(bytes, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return Err(SyntaxError),
        }
    }
}

fn array_end(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, SyntaxError> {
    let inner = nesting.checked_sub(1).ok_or(SyntaxError)?;
    let mut i = skip_whitespace(bytes, at + 1);
    if bytes.get(i) == Some(&b']') {
        return Ok(i + 1);
    }
    loop {
        i = skip_whitespace(bytes, value_end(bytes, i, inner)?);
        match bytes.get(i) {
            Some(b',') => i = skip_whitespace(bytes, i + 1),
            Some(b']') => return Ok(i + 1),
            _ => return Err(SyntaxError),
        }
    }
}

/// Whether `text` is one JSON value with optional whitespace around it.
#[cfg(test)]
pub(crate) fn is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    let start = skip_whitespace(bytes, 0);
    value_end(bytes, start, MAX_NESTING).is_ok_and(|end| skip_whitespace(bytes, end) == bytes.len())
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;

    use super::*;

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    #[test]
    fn agrees_with_serde_json_on_chosen_cases() {
        let cases = [
            "0",
            "-0",
            "01",
            "-",
            "1.",
            "1.5",
            ".5",
            "1e5",
            "1E+5",
            "1e-",
            "1e",
            "-1.5e-10",
            "true",
            "tru",
            "nul",
            "null ",
            " [1, 2 ,3 ] ",
            "[1,]",
            "[,1]",
            "[]",
            "{}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" : [true, {"b": null}] }"#,
            r#"{"a":1 "b":2}"#,
            "{1:2}",
            r#""\u00e9\n\t\"\\\/""#,
            r#""\u00g9""#,
            r#""\x""#,
            "\"a\u{1}b\"",
            "\"unterminated",
            r#""\ud800""#,
            "\"é ü 中\"",
            "[1] [2]",
            "",
            "   ",
            "{\"a\":\"b\"}}",
            "[\"a\"\"b\"]",
            "123abc",
            "[1e400]",
            "-01",
            "[-]",
            "{\"a\"}",
            "{\"a\":}",
            "[\"\\u12\"]",
        ];
        for case in cases {
            assert_eq!(is_valid(case), serde_accepts(case), "{case:?}");
        }
    }

    /// Nesting stops where `serde_json` stops when it builds values (when it only skips, it
    /// has no limit; a scanner that recurses needs one).
    #[test]
    fn agrees_with_serde_json_on_nesting_limits() {
        for depth in [127, 128, 129, 10_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let serde_builds = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            assert_eq!(is_valid(&text), serde_builds, "depth {depth}");
        }
    }

    /// Mutations of valid documents (bytes changed, dropped, inserted, cut): the scanner
    /// accepts exactly what `serde_json` accepts.
    #[test]
    fn agrees_with_serde_json_on_mutated_documents() {
        let seeds = [
            r#"{"type":"track","event":"Clicked \"Buy\"","userId":42,"properties":{"price":-19.99e2,"tags":["a","b\u00e9"],"ok":true,"none":null},"context":{"page":{"url":"https://a.example/?x=1"}}}"#,
            r#"[{"a":[1,2,[3,{"b":"c\\d"}]]},"s",0,false]"#,
            "{\"long\":\"abcdefghijklmnopqrstuvwxyz0123456789\",\"n\":[1.0,2E-3,-0]}",
        ];
        let alphabet = b"{}[]\",:\\/0123456789.eE+-truefalsn ux\t\n\x01a";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        // xorshift, reduced to an index: the test needs variety, not quality.
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state >> 40).unwrap()
        };
        let mut checked = 0;
        for seed in seeds {
            for _ in 0..4_000 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..=(next() % 3) {
                    let at = next() % bytes.len().max(1);
                    let byte = alphabet[next() % alphabet.len()];
                    match next() % 4 {
                        0 => bytes[at] = byte,
                        1 => {
                            bytes.remove(at);
                        }
                        2 => bytes.insert(at, byte),
                        _ => bytes.truncate(at),
                    }
                    if bytes.is_empty() {
                        break;
                    }
                }
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                assert_eq!(is_valid(&text), serde_accepts(&text), "{text:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }
}
