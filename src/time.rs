//! Conversions of epoch milliseconds (the only time representation in the core) to calendar
//! values. Time always comes in as a parameter; nothing here reads a clock.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};

use crate::error::{PersistenceError, Result};

/// A UTC instant in milliseconds since the Unix epoch, checked to be representable.
fn to_datetime(field: &str, epoch_ms: i64) -> Result<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms).ok_or_else(|| {
        PersistenceError::invalid_input(field, format!("{epoch_ms} ms is not a valid instant"))
    })
}

/// `epoch_ms` as an RFC 3339 UTC timestamp with milliseconds, e.g. `2025-01-06T10:00:00.000Z`.
pub fn iso8601(field: &str, epoch_ms: i64) -> Result<String> {
    Ok(to_datetime(field, epoch_ms)?.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The UTC calendar year and month (1–12) of `epoch_ms`.
pub fn utc_year_month(field: &str, epoch_ms: i64) -> Result<(i32, u32)> {
    let datetime = to_datetime(field, epoch_ms)?;
    Ok((datetime.year(), datetime.month()))
}

/// Checks that a JavaScript number is an integral, non-negative epoch-millisecond value.
pub fn epoch_ms_from_f64(field: &str, value: f64) -> Result<i64> {
    // 8.64e15 ms is the ECMAScript Date range limit.
    const MAX_DATE_MS: f64 = 8.64e15;
    if !(0.0..=MAX_DATE_MS).contains(&value) || value.fract() != 0.0 {
        return Err(PersistenceError::invalid_input(
            field,
            format!("{value} is not a non-negative integral epoch-millisecond time"),
        ));
    }
    // In range and integral, so the cast is exact.
    Ok(value as i64)
}

/// The instant an RFC 3339 date-time (`2025-01-06T10:00:00.000Z`, `...+01:00`; what
/// `Date.prototype.toISOString` and `JSON.stringify` of a `Date` write) names, in epoch
/// milliseconds (finer fractions are cut), if `text` is one. Read here rather than by chrono's
/// parser, which would add 7 KB to the `.wasm` for this one format.
pub fn epoch_ms_from_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    // The decimal number written in `range` with ASCII digits only.
    let digits = |range: Range<usize>| -> Option<u32> {
        bytes.get(range)?.iter().try_fold(0_u32, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let is = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|byte| allowed.contains(byte));
    if !(is(4, b"-") && is(7, b"-") && is(10, b"Tt") && is(13, b":") && is(16, b":")) {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?;
    let time = date.and_hms_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?)?;
    // A fraction of a second has at least one digit; its first three are the milliseconds.
    let fraction = match is(19, b".") {
        true => match bytes
            .get(20..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
        {
            0 => return None,
            count => count,
        },
        false => 0,
    };
    let millis = (0..3).try_fold(0_u32, |ms, place| {
        let digit = if place < fraction {
            digits(20 + place..21 + place)?
        } else {
            0
        };
        Some(ms * 10 + digit)
    })?;
    let offset_at = if fraction > 0 { 20 + fraction } else { 19 };
    let offset_minutes = match bytes.get(offset_at..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(offset_at + 1..offset_at + 3)?;
            let minutes = digits(offset_at + 4..offset_at + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let minutes = i64::from(hours * 60 + minutes);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    Some(time.and_utc().timestamp_millis() + i64::from(millis) - offset_minutes * 60_000)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(iso8601("t", 0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601("t", 1_736_157_600_123).unwrap(),
            "2025-01-06T10:00:00.123Z"
        );
    }

    #[test]
    fn year_month_is_utc() {
        // 2025-01-31T23:30:00Z is February in UTC+1, but January in UTC.
        assert_eq!(utc_year_month("t", 1_738_366_200_000).unwrap(), (2025, 1));
        assert_eq!(utc_year_month("t", 1_738_368_000_000).unwrap(), (2025, 2));
    }

    #[test]
    fn reads_rfc3339_date_times() {
        for (text, ms) in [
            ("2025-01-06T10:00:00.123Z", 1_736_157_600_123),
            ("2025-01-06T10:00:00Z", 1_736_157_600_000),
            ("2025-01-06T11:00:00.123456+01:00", 1_736_157_600_123),
            ("1970-01-01T00:00:00.000Z", 0),
        ] {
            assert_eq!(epoch_ms_from_rfc3339(text), Some(ms), "{text}");
        }
        // Lower-case separators, a negative offset, one and nine fraction digits.
        assert_eq!(
            epoch_ms_from_rfc3339("2025-01-06t05:30:00.5-04:30"),
            Some(1_736_157_600_500)
        );
        assert_eq!(
            epoch_ms_from_rfc3339("2025-01-06T10:00:00.999999999z"),
            Some(1_736_157_600_999)
        );
        for text in [
            "2025-01-06",
            "2025-01-06T10:00:00",
            "2025-01-06 10:00:00Z",
            "2025-02-30T10:00:00Z",
            "2025-01-06T24:00:00Z",
            "2025-01-06T10:00:60Z",
            "2025-01-06T10:00:00.Z",
            "2025-01-06T10:00:00.1",
            "2025-01-06T10:00:00+0100",
            "2025-01-06T10:00:00+24:00",
            "2025-01-06T10:00:00Z ",
            "+02025-01-06T10:00:00Z",
            "２０２５-01-06T10:00:00Z",
            "yesterday",
            "",
            "1736157600000",
        ] {
            assert_eq!(epoch_ms_from_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn rejects_times_js_cannot_hold() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1.5, 9e15] {
            let err = epoch_ms_from_f64("nowMs", bad).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{bad}");
            assert!(err.to_string().contains("nowMs"));
        }
        assert_eq!(epoch_ms_from_f64("nowMs", 1e12).unwrap(), 1_000_000_000_000);
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use chrono::FixedOffset;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// What chrono writes, in any offset and precision, reads back as chrono reads it.
        #[test]
        fn reads_what_chrono_reads(
            ms in 0_i64..=253_402_300_799_999,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
            precision in prop_oneof![
                Just(SecondsFormat::Secs),
                Just(SecondsFormat::Millis),
                Just(SecondsFormat::Micros),
                Just(SecondsFormat::Nanos),
            ],
            use_z in any::<bool>(),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let text = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap()
                .with_timezone(&offset)
                .to_rfc3339_opts(precision, use_z);
            let expected = DateTime::parse_from_rfc3339(&text).unwrap().timestamp_millis();
            prop_assert_eq!(epoch_ms_from_rfc3339(&text), Some(expected), "{}", text);
        }
    }
}
