//! Times as the wire format writes them: RFC 3339 UTC with milliseconds, from the host's clock
//! in milliseconds since the Unix epoch.

use alloc::string::String;

/// Appends `ms` (milliseconds since 1970-01-01T00:00:00Z, at or after it) as
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn push_rfc3339(out: &mut String, ms: f64) {
    let ms = whole_ms(ms);
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    push_padded(out, year, 4);
    out.push('-');
    push_padded(out, month, 2);
    out.push('-');
    push_padded(out, day, 2);
    out.push('T');
    push_padded(out, in_day / 3_600_000, 2);
    out.push(':');
    push_padded(out, in_day / 60_000 % 60, 2);
    out.push(':');
    push_padded(out, in_day / 1000 % 60, 2);
    out.push('.');
    push_padded(out, in_day % 1000, 3);
    out.push('Z');
}

/// Whole milliseconds since the epoch from the host's clock; a clock before 1970 (or not a
/// number) reads as the epoch.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked non-negative; times up to year 285 million fit"
)]
pub(crate) fn whole_ms(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}

fn push_padded(out: &mut String, value: u64, width: u32) {
    let mut scale = 10u64.pow(width.saturating_sub(1));
    while scale > 0 {
        // One decimal digit: below 10, so the cast keeps it.
        out.push(char::from(b'0' + (value / scale % 10) as u8));
        scale /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (the
/// era-based method of Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    fn written(ms: f64) -> String {
        let mut out = String::new();
        push_rfc3339(&mut out, ms);
        out
    }

    #[test]
    fn known_instants_are_written_exactly() {
        assert_eq!(written(0.0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T23:59:59.999Z: a leap day in a century leap year.
        assert_eq!(written(951_868_799_999.0), "2000-02-29T23:59:59.999Z");
        assert_eq!(written(1_780_000_000_123.4), "2026-05-28T20:26:40.123Z");
        assert_eq!(written(-5.0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_for_three_centuries_counts_up_by_one() {
        // Walk day by day and check the calendar against a plain day counter.
        let mut expected = (1970u64, 1u64, 1u64);
        for days in 0..(365 * 300) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (year, month, day) = expected;
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = if day < length {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
        }
    }
}
