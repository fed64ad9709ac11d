//! Checked conversions between JS values and Rust ones. Every function returns an error text
//! naming the value (callers wrap it into a `StoreError`) instead of panicking on a value the
//! runtime got wrong: a panic would trap the whole wasm instance.

use std::collections::BTreeMap;

use js_sys::{ArrayBuffer, Date, Uint8Array, JSON};
use serde_json::{Map, Value};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::PersistenceError;
use crate::hash;
use crate::platform::{JS_MAX_SAFE_INTEGER, MAX_LIST_LIMIT};

/// `value` as a JS number, refused above [`JS_MAX_SAFE_INTEGER`], where it would silently round.
pub fn u64_to_js_number(what: &str, value: u64) -> Result<f64, String> {
    if value > JS_MAX_SAFE_INTEGER {
        return Err(format!(
            "{what} is {value}, above Number.MAX_SAFE_INTEGER ({JS_MAX_SAFE_INTEGER})"
        ));
    }
    // At most 2^53 - 1, so the conversion is exact.
    Ok(value as f64)
}

/// A numeric argument of an API call, which must be an integer in `min..=max` (wasm-bindgen
/// would truncate a fraction and wrap a negative into a `u32` silently); INVALID_INPUT naming
/// `field` otherwise.
pub fn integer_arg(field: &str, value: f64, min: u64, max: u64) -> Result<u64, PersistenceError> {
    if value.fract() != 0.0 || !(min as f64..=max as f64).contains(&value) {
        return Err(PersistenceError::not_integer_in(field, value, min, max));
    }
    // Integral and within `min..=max` (at most 2^53 - 1 for every caller), so the cast is exact.
    Ok(value as u64)
}

/// A listing's `limit` argument: an integer in 1..=1000 (one KV or R2 page).
pub fn page_limit_arg(limit: f64) -> Result<u32, PersistenceError> {
    let max = MAX_LIST_LIMIT.into();
    // At most 1000: checked.
    Ok(integer_arg("limit", limit, 1, max)? as u32)
}

/// A JS number that must be a non-negative integer (a size, a count, epoch seconds).
pub fn js_number_to_u64(what: &str, value: f64) -> Result<u64, String> {
    if !value.is_finite()
        || value < 0.0
        || value.fract() != 0.0
        || value > JS_MAX_SAFE_INTEGER as f64
    {
        return Err(format!(
            "{what} is {value}, expected a non-negative integer"
        ));
    }
    // Integral and within 0..=2^53 - 1, so the cast is exact.
    Ok(value as u64)
}

/// A JS number that must be an integer, possibly negative (epoch milliseconds of a `Date`).
pub fn js_number_to_i64(what: &str, value: f64) -> Result<i64, String> {
    let limit = JS_MAX_SAFE_INTEGER as f64;
    if !value.is_finite() || value.fract() != 0.0 || !(-limit..=limit).contains(&value) {
        return Err(format!("{what} is {value}, expected an integer"));
    }
    // Integral and within ±(2^53 - 1), so the cast is exact.
    Ok(value as i64)
}

/// `Some(value)` unless it is `null` or `undefined` (how the runtime spells "absent").
pub fn present(value: JsValue) -> Option<JsValue> {
    if value.is_null() || value.is_undefined() {
        None
    } else {
        Some(value)
    }
}

/// `convert` for a value that may be absent (`null` or `undefined`): `None` then.
pub fn optional<T>(
    convert: impl FnOnce(&str, &JsValue) -> Result<T, String>,
) -> impl FnOnce(&str, &JsValue) -> Result<Option<T>, String> {
    move |what, value| match value.is_null() || value.is_undefined() {
        true => Ok(None),
        false => convert(what, value).map(Some),
    }
}

/// A JS string property, or an error naming it.
pub fn expect_string(what: &str, value: &JsValue) -> Result<String, String> {
    value
        .as_string()
        .ok_or_else(|| format!("{what} is {value:?}, expected a string"))
}

/// A JS boolean property, or an error naming it.
pub fn expect_bool(what: &str, value: &JsValue) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("{what} is {value:?}, expected a boolean"))
}

/// A JS number property that must be a non-negative integer.
pub fn expect_u64(what: &str, value: &JsValue) -> Result<u64, String> {
    let number = value
        .as_f64()
        .ok_or_else(|| format!("{what} is {value:?}, expected a number"))?;
    js_number_to_u64(what, number)
}

/// The cursor of a list page: required (non-empty) when more pages follow, as the flag named
/// `flag` says, and dropped otherwise (KV sends an empty or absent one on the last page).
pub fn next_cursor(
    flag: &str,
    more_follow: bool,
    cursor: JsValue,
) -> Result<Option<String>, String> {
    if !more_follow {
        return Ok(None);
    }
    match present(cursor) {
        Some(cursor) => match expect_string("cursor", &cursor)? {
            text if text.is_empty() => Err(format!(
                "{flag} says more pages follow, but the cursor is empty"
            )),
            text => Ok(Some(text)),
        },
        None => Err(format!(
            "{flag} says more pages follow, but no cursor was given"
        )),
    }
}

/// A JS array, or an error naming it.
pub fn expect_array(what: &str, value: &JsValue) -> Result<js_sys::Array, String> {
    if js_sys::Array::is_array(value) {
        Ok(value.clone().unchecked_into())
    } else {
        Err(format!("{what} is {value:?}, expected an array"))
    }
}

/// A `Date` (R2's `uploaded`) in epoch milliseconds, or an error naming it.
pub fn expect_date_ms(what: &str, value: &JsValue) -> Result<i64, String> {
    let date = value
        .dyn_ref::<Date>()
        .ok_or_else(|| format!("{what} is {value:?}, expected a Date"))?;
    js_number_to_i64(what, date.get_time())
}

/// The bytes of an `ArrayBuffer`, or an error naming it.
pub fn array_buffer_bytes(what: &str, value: &JsValue) -> Result<Vec<u8>, String> {
    let buffer = value
        .dyn_ref::<ArrayBuffer>()
        .ok_or_else(|| format!("{what} is {value:?}, expected an ArrayBuffer"))?;
    Ok(Uint8Array::new(buffer).to_vec())
}

/// A digest held in an `ArrayBuffer` (R2's `checksums.sha256`) as lowercase hex.
pub fn array_buffer_hex(what: &str, value: &JsValue) -> Result<String, String> {
    array_buffer_bytes(what, value).map(|bytes| hash::to_hex(&bytes))
}

/// A JSON value as the JS value `JSON.parse` makes of its text: cheaper than walking objects
/// across the boundary one property at a time (DESIGN.md).
pub fn json_to_js(what: &str, value: &Value) -> Result<JsValue, String> {
    let text = serde_json::to_string(value).map_err(|err| format!("{what}: {err}"))?;
    JSON::parse(&text).map_err(|_| format!("{what}: JSON.parse refused {text}"))
}

/// The fields of a JSON object that are not `null` (a value that is no object has none).
pub fn without_nulls(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(mut fields) => {
            fields.retain(|_, field| !field.is_null());
            fields
        }
        _ => Map::new(),
    }
}

/// A JS value as JSON, through `JSON.stringify` (which drops functions and `undefined`).
pub fn js_to_json(what: &str, value: &JsValue) -> Result<Value, String> {
    let text = JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| format!("{what} is {value:?}, which JSON.stringify cannot represent"))?;
    serde_json::from_str(&text).map_err(|err| format!("{what} is not JSON: {err}"))
}

/// A JS record of strings (R2 `customMetadata`) as a map.
pub fn js_to_string_map(what: &str, value: &JsValue) -> Result<BTreeMap<String, String>, String> {
    match js_to_json(what, value)? {
        Value::Object(fields) => fields
            .into_iter()
            .map(|(name, field)| match field {
                Value::String(text) => Ok((name, text)),
                other => Err(format!("{what}.{name} is {other}, expected a string")),
            })
            .collect(),
        other => Err(format!("{what} is {other}, expected an object of strings")),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn u64_crosses_up_to_max_safe_integer_only() {
        assert_eq!(u64_to_js_number("ttl", 0), Ok(0.0));
        assert_eq!(
            u64_to_js_number("ttl", JS_MAX_SAFE_INTEGER),
            Ok(9_007_199_254_740_991.0)
        );
        let err = u64_to_js_number("ttl", JS_MAX_SAFE_INTEGER + 1).unwrap_err();
        assert!(err.starts_with("ttl is 9007199254740992, above"), "{err}");
    }

    #[test]
    fn js_numbers_must_be_non_negative_integers_for_u64() {
        assert_eq!(js_number_to_u64("size", 0.0), Ok(0));
        assert_eq!(js_number_to_u64("size", 1024.0), Ok(1024));
        assert_eq!(
            js_number_to_u64("size", 9_007_199_254_740_991.0),
            Ok(JS_MAX_SAFE_INTEGER)
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1.5, 9_007_199_254_740_992.0] {
            let err = js_number_to_u64("size", bad).unwrap_err();
            assert!(err.starts_with("size is "), "{err}");
        }
    }

    #[test]
    fn js_numbers_must_be_integers_for_i64() {
        assert_eq!(js_number_to_i64("uploaded", -86_400_000.0), Ok(-86_400_000));
        assert_eq!(
            js_number_to_i64("uploaded", 1_736_157_600_123.0),
            Ok(1_736_157_600_123)
        );
        for bad in [f64::NAN, f64::NEG_INFINITY, 0.25, 1e300] {
            let err = js_number_to_i64("uploaded", bad).unwrap_err();
            assert!(err.starts_with("uploaded is "), "{err}");
        }
    }

    #[test]
    fn expected_types_are_checked() {
        assert_eq!(expect_string("name", &"k".into()), Ok("k".to_owned()));
        assert!(expect_string("name", &JsValue::from_f64(1.0))
            .unwrap_err()
            .starts_with("name is"));
        assert_eq!(expect_bool("truncated", &JsValue::TRUE), Ok(true));
        assert!(expect_bool("truncated", &JsValue::NULL).is_err());
        assert_eq!(expect_u64("size", &JsValue::from_f64(7.0)), Ok(7));
        assert!(expect_u64("size", &JsValue::from_f64(-7.0)).is_err());
        assert!(expect_u64("size", &"7".into()).is_err());
        assert!(expect_array("keys", &JsValue::UNDEFINED).is_err());
        assert_eq!(
            expect_array("keys", &js_sys::Array::of1(&"a".into()).into()).map(|a| a.length()),
            Ok(1)
        );
        assert_eq!(present(JsValue::NULL), None);
        assert_eq!(present(JsValue::UNDEFINED), None);
        assert_eq!(
            present(JsValue::from_f64(0.0)),
            Some(JsValue::from_f64(0.0))
        );
    }

    #[test]
    fn a_cursor_is_required_exactly_when_more_pages_follow() {
        assert_eq!(
            next_cursor("truncated", true, "c1".into()),
            Ok(Some("c1".to_owned()))
        );
        assert_eq!(next_cursor("list_complete", false, "".into()), Ok(None));
        assert_eq!(
            next_cursor("list_complete", false, JsValue::UNDEFINED),
            Ok(None)
        );
        assert_eq!(
            next_cursor("truncated", true, JsValue::UNDEFINED),
            Err("truncated says more pages follow, but no cursor was given".to_owned())
        );
        assert_eq!(
            next_cursor("truncated", true, "".into()),
            Err("truncated says more pages follow, but the cursor is empty".to_owned())
        );
        assert!(next_cursor("truncated", true, JsValue::from_f64(3.0)).is_err());
    }

    #[test]
    fn array_buffers_become_bytes_and_hex() {
        let bytes: &[u8] = &[0x00, 0x0f, 0xa5, 0xff];
        let buffer: JsValue = Uint8Array::from(bytes).buffer().into();
        assert_eq!(array_buffer_bytes("value", &buffer), Ok(bytes.to_vec()));
        assert_eq!(
            array_buffer_hex("checksums.sha256", &buffer),
            Ok("000fa5ff".to_owned())
        );
        let err = array_buffer_hex("checksums.sha256", &"00".into()).unwrap_err();
        assert!(err.starts_with("checksums.sha256 is"), "{err}");
    }

    #[test]
    fn json_round_trips_through_js() {
        let metadata =
            json!({ "sessionId": "s-1", "n": 3, "tags": ["a", "b"], "nested": { "ok": true } });
        let js = json_to_js("metadata", &metadata).unwrap();
        assert_eq!(js_to_json("metadata", &js), Ok(metadata));
        assert!(js_to_json("metadata", &JsValue::UNDEFINED).is_err());
    }

    #[test]
    fn string_maps_accept_only_string_values() {
        let js = json_to_js("m", &json!({ "a": "1", "b": "2" })).unwrap();
        let map = js_to_string_map("customMetadata", &js).unwrap();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let bad = json_to_js("m", &json!({ "a": 1 })).unwrap();
        assert_eq!(
            js_to_string_map("customMetadata", &bad).unwrap_err(),
            "customMetadata.a is 1, expected a string"
        );
        let not_object = json_to_js("m", &json!([1])).unwrap();
        assert!(js_to_string_map("customMetadata", &not_object).is_err());
    }
}
