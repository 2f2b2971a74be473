//! A strict JSON scanner: finds where a value ends, checking the RFC 8259 grammar on the way,
//! and builds nothing.
//!
//! The pipeline keeps most of an event as slices of the request body and copies them to the
//! lake, so those slices must be valid JSON (one bad byte would make a whole lake object
//! unreadable), but they need not be turned into values. This scanner does exactly that check,
//! several times faster than a parser that builds values: strings are searched eight bytes at a
//! time for the only bytes that matter in them (`"`, `\` and control characters).
//!
//! It is the one rule of what JSON Braid keeps: what `serde_json` accepts when it builds values
//! (tests compare the two on many inputs), which is also what any reader of the lake can hold
//! (RFC 7493, I-JSON): values nest at most [`MAX_NESTING`] levels, every number is a finite
//! 64-bit float (`1e400` is not), and every `\u` escape is a character (a lone surrogate is
//! not). Validation, unify and rebuild all read events through it, so an event one of them
//! accepts, every one accepts. The text is `&str`, so it is UTF-8 already.

/// The text is not JSON Braid keeps. The scanner's hot path says only that (this type has no
/// size, which keeps its loops lean); [`problem`] says why, scanning the value again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError;

/// Why text is not JSON Braid keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Not the JSON grammar; `serde_json` words it, with line and column.
    Grammar,
    /// Arrays and objects nest deeper than [`MAX_NESTING`].
    TooDeep,
    /// A number outside the range of a 64-bit float.
    NumberOutOfRange,
    /// A `\\u` escape that is half of a surrogate pair.
    LoneSurrogate,
}

/// What a scan that fails gives: the scanner is written once, for both [`SyntaxError`] (the
/// fast path) and [`Problem`] (the diagnosis).
trait Failure: Copy {
    const GRAMMAR: Self;
    const TOO_DEEP: Self;
    const NUMBER_OUT_OF_RANGE: Self;
    const LONE_SURROGATE: Self;
}

impl Failure for SyntaxError {
    const GRAMMAR: Self = SyntaxError;
    const TOO_DEEP: Self = SyntaxError;
    const NUMBER_OUT_OF_RANGE: Self = SyntaxError;
    const LONE_SURROGATE: Self = SyntaxError;
}

impl Failure for Problem {
    const GRAMMAR: Self = Problem::Grammar;
    const TOO_DEEP: Self = Problem::TooDeep;
    const NUMBER_OUT_OF_RANGE: Self = Problem::NumberOutOfRange;
    const LONE_SURROGATE: Self = Problem::LoneSurrogate;
}

/// Why the value at `at` of `text`, allowed `nesting` levels, is not JSON Braid keeps
/// ([`Problem::Grammar`] as well when it is, or when it is followed by more than whitespace).
pub(crate) fn problem(text: &str, at: usize, nesting: usize) -> Problem {
    let bytes = text.as_bytes();
    let at = skip_whitespace(bytes, at);
    scan_value::<Problem>(bytes, at, nesting)
        .err()
        .unwrap_or(Problem::Grammar)
}

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
    scan_value(bytes, at, nesting)
}

/// The end of the string that starts at `at` (just past its closing quote), and whether it
/// has escapes.
pub(crate) fn string_end(bytes: &[u8], at: usize) -> Result<(usize, bool), SyntaxError> {
    scan_string(bytes, at)
}

fn scan_value<F: Failure>(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, F> {
    match bytes.get(at) {
        Some(b'"') => scan_string(bytes, at).map(|(end, _)| end),
        Some(b'{') => object_end(bytes, at, nesting),
        Some(b'[') => array_end(bytes, at, nesting),
        Some(b't') => literal_end(bytes, at, b"true"),
        Some(b'f') => literal_end(bytes, at, b"false"),
        Some(b'n') => literal_end(bytes, at, b"null"),
        Some(b'-' | b'0'..=b'9') => number_end(bytes, at),
        _ => Err(F::GRAMMAR),
    }
}

fn scan_string<F: Failure>(bytes: &[u8], at: usize) -> Result<(usize, bool), F> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i = next_special(bytes, i);
        match bytes.get(i) {
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = escape_end(bytes, i)?;
            }
            // A control character, or the end of the text.
            _ => return Err(F::GRAMMAR),
        }
    }
}

/// The end of the escape at `at` (a backslash). Out of the loop of [`string_end`], which most
/// strings leave without an escape.
#[cold]
#[inline(never)]
fn escape_end<F: Failure>(bytes: &[u8], at: usize) -> Result<usize, F> {
    match bytes.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => {
            let unit = hex_unit(bytes, at + 2)?;
            let end = at + 6;
            if (0xDC00..=0xDFFF).contains(&unit) {
                return Err(F::LONE_SURROGATE);
            }
            if !(0xD800..=0xDBFF).contains(&unit) {
                return Ok(end);
            }
            // A leading surrogate: a trailing one must follow at once.
            if bytes.get(end..end + 2) != Some(b"\\u") {
                return Err(F::LONE_SURROGATE);
            }
            let low = hex_unit(bytes, end + 2)?;
            if (0xDC00..=0xDFFF).contains(&low) {
                Ok(end + 6)
            } else {
                Err(F::LONE_SURROGATE)
            }
        }
        _ => Err(F::GRAMMAR),
    }
}

/// The UTF-16 unit of the four hex digits at `at` (of a `\\u` escape).
fn hex_unit<F: Failure>(bytes: &[u8], at: usize) -> Result<u16, F> {
    let hex = bytes.get(at..at + 4).ok_or(F::GRAMMAR)?;
    let mut unit = 0_u16;
    for &digit in hex {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return Err(F::GRAMMAR),
        };
        unit = unit << 4 | u16::from(value);
    }
    Ok(unit)
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

fn literal_end<F: Failure>(bytes: &[u8], at: usize, literal: &[u8]) -> Result<usize, F> {
    if bytes.get(at..at + literal.len()) == Some(literal) {
        Ok(at + literal.len())
    } else {
        Err(F::GRAMMAR)
    }
}

fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// Integers of at most this many digits (and no exponent) are below `f64::MAX` whatever their
/// digits: no need to convert them to know they are finite.
const SURELY_FINITE_DIGITS: usize = 308;

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, whose value is a finite `f64`.
fn number_end<F: Failure>(bytes: &[u8], start: usize) -> Result<usize, F> {
    let mut at = start;
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    let integer = at;
    match bytes.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits_end(bytes, at + 1),
        _ => return Err(F::GRAMMAR),
    }
    let integer_digits = at - integer;
    if bytes.get(at) == Some(&b'.') {
        let digits = at + 1;
        at = digits_end(bytes, digits);
        if at == digits {
            return Err(F::GRAMMAR);
        }
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let digits = at;
        at = digits_end(bytes, digits);
        if at == digits {
            return Err(F::GRAMMAR);
        }
    } else if integer_digits <= SURELY_FINITE_DIGITS {
        return Ok(at);
    }
    // An exponent, or a long integer part: convert, as a reader that builds values will.
    let finite = std::str::from_utf8(bytes.get(start..at).unwrap_or_default())
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .is_some_and(f64::is_finite);
    if finite {
        Ok(at)
    } else {
        Err(F::NUMBER_OUT_OF_RANGE)
    }
}

fn object_end<F: Failure>(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, F> {
    let inner = nesting.checked_sub(1).ok_or(F::TOO_DEEP)?;
    let mut i = skip_whitespace(bytes, at + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return Err(F::GRAMMAR);
        }
        i = skip_whitespace(bytes, scan_string::<F>(bytes, i)?.0);
        if bytes.get(i) != Some(&b':') {
            return Err(F::GRAMMAR);
        }
        i = skip_whitespace(bytes, i + 1);
        i = skip_whitespace(bytes, scan_value::<F>(bytes, i, inner)?);
        match bytes.get(i) {
            Some(b',') => i = skip_whitespace(bytes, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return Err(F::GRAMMAR),
        }
    }
}

fn array_end<F: Failure>(bytes: &[u8], at: usize, nesting: usize) -> Result<usize, F> {
    let inner = nesting.checked_sub(1).ok_or(F::TOO_DEEP)?;
    let mut i = skip_whitespace(bytes, at + 1);
    if bytes.get(i) == Some(&b']') {
        return Ok(i + 1);
    }
    loop {
        i = skip_whitespace(bytes, scan_value::<F>(bytes, i, inner)?);
        match bytes.get(i) {
            Some(b',') => i = skip_whitespace(bytes, i + 1),
            Some(b']') => return Ok(i + 1),
            _ => return Err(F::GRAMMAR),
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
    use super::*;

    /// What `serde_json` accepts when it builds values: the rule the scanner keeps.
    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text).is_ok()
    }

    /// Why the diagnosing scan refuses `text`; it must refuse exactly what the fast one does.
    fn error_of(text: &str) -> Option<Problem> {
        let bytes = text.as_bytes();
        let at = skip_whitespace(bytes, 0);
        let problem = scan_value::<Problem>(bytes, at, MAX_NESTING);
        assert_eq!(
            problem.map_err(|_| SyntaxError),
            value_end(bytes, at, MAX_NESTING),
            "{text:?}"
        );
        problem.err()
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
            // Numbers a reader that builds values cannot hold, and the ones around them.
            "1e400",
            "-1e400",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "-1.7976931348623157e308",
            "1e-400",
            "0e999999999",
            "123456789012345678901234567890",
            "0.000000000000000000000000000000000000001",
            // Surrogates: pairs are characters, halves are not.
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800x""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
            r#""\udbff\udfff""#,
            r#"{"\ud800":1}"#,
        ];
        for case in cases {
            assert_eq!(is_valid(case), serde_accepts(case), "{case:?}");
        }
        let long = |digits: usize| "9".repeat(digits);
        for digits in [308, 309, 310, 10_000] {
            let text = long(digits);
            assert_eq!(is_valid(&text), serde_accepts(&text), "{digits} digits");
            let text = format!("{}.5", long(digits));
            assert_eq!(is_valid(&text), serde_accepts(&text), "{digits} digits.5");
        }
    }

    #[test]
    fn names_what_it_refuses() {
        assert_eq!(error_of("[1e400]"), Some(Problem::NumberOutOfRange));
        assert_eq!(
            error_of(&"1".repeat(10_000)),
            Some(Problem::NumberOutOfRange)
        );
        assert_eq!(error_of(r#"["\ud800"]"#), Some(Problem::LoneSurrogate));
        assert_eq!(error_of(r#"{"a":"\udfff"}"#), Some(Problem::LoneSurrogate));
        let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(error_of(&deep), Some(Problem::TooDeep));
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(error_of(&deep), None);
        assert_eq!(error_of("[1,]"), Some(Problem::Grammar));
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
                error_of(&text);
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }
}
