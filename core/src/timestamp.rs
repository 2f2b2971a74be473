//! RFC 3339 timestamps as the wire format carries them: parsed strictly, written in UTC with
//! millisecond precision so that lake rows sort and compare as strings.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 date-time (`2024-05-01T10:00:00.123Z`, `2024-05-01T12:00:00+02:00`).
///
/// # Errors
///
/// Returns the parser's error when `text` is not an RFC 3339 date-time.
pub fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

/// Writes `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn format(at: OffsetDateTime) -> String {
    let utc = at.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(24);
    // Years before 0 do not occur: `time` rejects them in RFC 3339 anyway.
    push_padded(&mut out, utc.year().unsigned_abs(), 4);
    out.push('-');
    push_padded(&mut out, u32::from(u8::from(utc.month())), 2);
    out.push('-');
    push_padded(&mut out, u32::from(utc.day()), 2);
    out.push('T');
    push_padded(&mut out, u32::from(utc.hour()), 2);
    out.push(':');
    push_padded(&mut out, u32::from(utc.minute()), 2);
    out.push(':');
    push_padded(&mut out, u32::from(utc.second()), 2);
    out.push('.');
    push_padded(&mut out, u32::from(utc.millisecond()), 3);
    out.push('Z');
    out
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    let nanos = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// The time `millis` milliseconds after the Unix epoch, clamped to the range `time` supports.
pub fn from_unix_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).unwrap_or(
        if millis < 0 {
            OffsetDateTime::UNIX_EPOCH
        } else {
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 8000)
        },
    )
}

/// Appends `value` in decimal, left-padded with zeros to `width` digits (more digits when it
/// needs them).
fn push_padded(out: &mut String, value: u32, width: usize) {
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
    for &digit in digits.get(start..).unwrap_or_default() {
        out.push(char::from(digit));
    }
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
    fn rejects_dates_without_a_zone() {
        assert!(parse("2024-05-01T12:00:00").is_err());
        assert!(parse("yesterday").is_err());
    }

    #[test]
    fn millis_round_trip() {
        let at = parse("2001-02-03T04:05:06.789Z").unwrap();
        assert_eq!(unix_millis(at), 981_173_106_789);
        assert_eq!(from_unix_millis(981_173_106_789), at);
    }
}
