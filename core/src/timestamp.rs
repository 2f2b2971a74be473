//! RFC 3339 timestamps as the wire format carries them: parsed strictly, written in UTC with
//! millisecond precision so that lake rows sort and compare as strings.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses an RFC 3339 date-time (`2024-05-01T10:00:00.123Z`, `2024-05-01T12:00:00+02:00`).
///
/// # Errors
///
/// Returns the parser's error when `text` is not an RFC 3339 date-time.
pub fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    match parse_utc(text) {
        Some(at) => Ok(at),
        None => OffsetDateTime::parse(text, &Rfc3339),
    }
}

/// The form nearly every client sends, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read directly (the
/// general RFC 3339 parser costs several times more); `None` for anything else, which the
/// general parser then reads or rejects.
fn parse_utc(text: &str) -> Option<OffsetDateTime> {
    let bytes = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<u32> {
        bytes.get(from..to)?.iter().try_fold(0_u32, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if bytes.last() != Some(&b'Z')
        || separators
            .iter()
            .any(|&(at, separator)| bytes.get(at) != Some(&separator))
    {
        return None;
    }
    let nanos = match bytes.get(19)? {
        b'Z' if bytes.len() == 20 => 0,
        b'.' => {
            let digits = bytes.len().checked_sub(21)?;
            if !(1..=9).contains(&digits) {
                return None;
            }
            number(20, 20 + digits)? * 10_u32.pow(u32::try_from(9 - digits).ok()?)
        }
        _ => return None,
    };
    let date = Date::from_calendar_date(
        i32::try_from(number(0, 4)?).ok()?,
        Month::try_from(u8::try_from(number(5, 7)?).ok()?).ok()?,
        u8::try_from(number(8, 10)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms_nano(
        u8::try_from(number(11, 13)?).ok()?,
        u8::try_from(number(14, 16)?).ok()?,
        u8::try_from(number(17, 19)?).ok()?,
        nanos,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn format(at: OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(24);
    write(at, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `at` as [`format()`] writes it.
pub fn write(at: OffsetDateTime, out: &mut Vec<u8>) {
    let utc = at.to_offset(UtcOffset::UTC);
    // Years before 0 do not occur: `time` rejects them in RFC 3339 anyway.
    push_padded(out, utc.year().unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u32::from(u8::from(utc.month())), 2);
    out.push(b'-');
    push_padded(out, u32::from(utc.day()), 2);
    out.push(b'T');
    push_padded(out, u32::from(utc.hour()), 2);
    out.push(b':');
    push_padded(out, u32::from(utc.minute()), 2);
    out.push(b':');
    push_padded(out, u32::from(utc.second()), 2);
    out.push(b'.');
    push_padded(out, u32::from(utc.millisecond()), 3);
    out.push(b'Z');
}

/// Milliseconds since the Unix epoch, rounded down (times before 1970 are negative).
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The time `millis` milliseconds after the Unix epoch (`None` outside the range `time`
/// supports).
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// `at`, to the millisecond: as the lake writes times and as a profile store keeps them.
pub fn to_millis(at: OffsetDateTime) -> OffsetDateTime {
    from_unix_millis(unix_millis(at)).unwrap_or(at)
}

/// Appends `value` in decimal, left-padded with zeros to `width` digits (more digits when it
/// needs them).
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    let mut used = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        used += 1;
        if rest == 0 && used >= width {
            break;
        }
    }
    let start = digits.len() - used;
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_millis() {
        let at = parse("2024-05-01T12:00:00.1234+02:00").unwrap();
        assert_eq!(format(at), "2024-05-01T10:00:00.123Z");
    }

    #[test]
    fn pads_every_part() {
        let at = parse("0042-01-02T03:04:05.006Z").unwrap();
        assert_eq!(format(at), "0042-01-02T03:04:05.006Z");
        let at = parse("9999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(format(at), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_fast_path_agrees_with_the_rfc_3339_parser() {
        let texts = [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.1Z",
            "2024-05-01T10:00:00.123456789Z",
            "2024-02-29T23:59:59.999Z",
            "2023-02-29T10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:60:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00.1234567891Z",
            "2024-05-01t10:00:00Z",
            "2024-05-01T10:00:00+02:00",
            "2024-05-01T10:00:00",
            "+024-05-01T10:00:00Z",
            "2024-05-01T10:00:0aZ",
        ];
        for text in texts {
            let general = OffsetDateTime::parse(text, &Rfc3339).ok();
            if let Some(fast) = parse_utc(text) {
                assert_eq!(Some(fast), general, "{text}");
            }
            assert_eq!(parse(text).ok(), general, "{text}");
        }
        assert!(parse_utc("2024-05-01T10:00:00.5Z").is_some());
    }

    #[test]
    fn rejects_dates_without_a_zone() {
        assert!(parse("2024-05-01T12:00:00").is_err());
        assert!(parse("yesterday").is_err());
    }

    #[test]
    fn millis_round_trip() {
        let at = parse("2001-02-03T04:05:06.789Z").unwrap();
        assert_eq!(unix_millis(at), 981_173_106_789);
        assert_eq!(from_unix_millis(981_173_106_789), Some(at));
        let before_1970 = parse("1969-12-31T23:59:59.9995Z").unwrap();
        assert_eq!(unix_millis(before_1970), -1, "rounded down");
        assert_eq!(format(to_millis(before_1970)), "1969-12-31T23:59:59.999Z");
    }
}
