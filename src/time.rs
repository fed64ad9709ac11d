//! Conversions of epoch milliseconds (the only time representation in the core) to calendar
//! values. Time always comes in as a parameter; nothing here reads a clock.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

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
    fn rejects_times_js_cannot_hold() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1.5, 9e15] {
            let err = epoch_ms_from_f64("nowMs", bad).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{bad}");
            assert!(err.to_string().contains("nowMs"));
        }
        assert_eq!(epoch_ms_from_f64("nowMs", 1e12).unwrap(), 1_000_000_000_000);
    }
}
