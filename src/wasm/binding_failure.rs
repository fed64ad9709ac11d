//! Making a call to a binding ([`BindingCall`]): turning what it threw or rejected with, or an
//! answer its API does not allow, into a [`StoreError`], and deciding whether a retry can help
//! ([`classify_failure`]: the one place that knows the runtime's error texts).

use js_sys::Promise;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::convert::{json_to_js, without_nulls};
use crate::store::{Binding, FailureKind, StoreError, StoreResult};

/// Phrases (lowercase) of failures a retry can cure. Sources: workerd's KV errors
/// (`KV PUT failed: 429 Too Many Requests`), R2's (`get: We encountered an internal error.
/// Please try again. (10001)`, `put: The SHA-256 checksum you specified did not match what we
/// received. (10037)`), and the runtime's own (`Network connection lost.`).
const TRANSIENT_PHRASES: &[&str] = &[
    "too many requests",
    "network connection lost",
    "internal error",
    "service unavailable",
    "timed out",
    "timeout",
    "connection reset",
    // R2 rejects a body whose digest differs from the declared one: damaged in transit.
    "checksum you specified did not match",
    // R2 error codes: 10001 InternalError, 10043 ServiceUnavailable, 10058 TooManyRequests.
    "(10001)",
    "(10043)",
    "(10058)",
];

/// Words after which workerd and fetch-like errors put an HTTP status (`KV GET failed: 503 ...`).
const STATUS_MARKERS: &[&str] = &["failed: ", "status: ", "status ", "http "];

/// Whether retrying the call that failed with `message` may succeed: [`FailureKind::RateLimited`]
/// for rate limiting (429, "Too Many Requests"); [`FailureKind::Transient`] for server errors
/// (5xx), lost connections, timeouts and R2 checksum mismatches; [`FailureKind::Rejected`] for
/// everything else (a key or value too large, a TTL under 60 s, bad metadata), which would fail
/// again.
pub fn classify_failure(message: &str) -> FailureKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("too many requests") || http_statuses(&lower).any(|status| status == 429) {
        return FailureKind::RateLimited;
    }
    let transient_phrase = TRANSIENT_PHRASES
        .iter()
        .any(|phrase| lower.contains(phrase));
    let transient_status = http_statuses(&lower).any(|status| (500..600).contains(&status));
    if transient_phrase || transient_status {
        FailureKind::Transient
    } else {
        FailureKind::Rejected
    }
}

/// The three-digit numbers that directly follow a [`STATUS_MARKERS`] word. Only those count:
/// other numbers in a message are sizes and limits (`exceeds key length limit of 512`).
fn http_statuses(lower: &str) -> impl Iterator<Item = u16> + '_ {
    STATUS_MARKERS.iter().flat_map(move |marker| {
        lower.match_indices(marker).filter_map(move |(at, _)| {
            let rest = lower.get(at + marker.len()..)?;
            let digits = rest.get(..3)?;
            let is_status = digits.bytes().all(|b| b.is_ascii_digit())
                && !rest.as_bytes().get(3).is_some_and(u8::is_ascii_digit);
            if is_status {
                digits.parse().ok()
            } else {
                None
            }
        })
    })
}

/// The text of a thrown or rejected value: `message` of an `Error` (prefixed with its name
/// when that says more than `Error`), a thrown string as is, anything else as JS would print it.
pub fn js_error_message(thrown: &JsValue) -> String {
    if let Some(error) = thrown.dyn_ref::<js_sys::Error>() {
        let message = String::from(error.message());
        let name = String::from(error.name());
        if name.is_empty() || name == "Error" {
            message
        } else {
            format!("{name}: {message}")
        }
    } else if let Some(text) = thrown.as_string() {
        text
    } else {
        format!("{thrown:?}")
    }
}

/// A [`StoreError`] for `operation` on `binding` that failed with the thrown value `thrown`.
pub fn store_error(binding: Binding, operation: &str, thrown: &JsValue) -> StoreError {
    let message = js_error_message(thrown);
    StoreError {
        binding,
        operation: operation.to_owned(),
        kind: classify_failure(&message),
        message,
    }
}

/// One call to a binding, named in every error it can end in (`ARCHIVE_R2 put
/// conversations/...`): the adapters' one way to make the call, read its answer and fail.
pub struct BindingCall {
    binding: Binding,
    operation: String,
}

impl BindingCall {
    /// Call `operation` (with its key or prefix: `get archive_meta:s-1`) to `binding`.
    pub fn new(binding: Binding, operation: String) -> Self {
        BindingCall { binding, operation }
    }

    /// The call's options as a JS object, without the fields that are `null`: an absent
    /// option is left out, as the bindings expect, rather than passed as `null`.
    pub fn options(&self, options: Value) -> StoreResult<JsValue> {
        let options = Value::Object(without_nulls(options));
        self.check(json_to_js("options", &options))
    }

    /// Awaits the promise a binding method returned; a synchronous throw (`call` is `Err`) and
    /// a rejection both become this call's error.
    pub async fn settle(&self, call: Result<Promise, JsValue>) -> StoreResult<JsValue> {
        let promise = call.map_err(|thrown| self.thrown(thrown))?;
        let settled = JsFuture::from(promise).await;
        settled.map_err(|thrown| self.thrown(thrown))
    }

    /// [`settle`](Self::settle), the answer taken as the `T` the binding's API promises (its
    /// fields are checked as they are read).
    pub async fn answer<T: JsCast>(&self, call: Result<Promise, JsValue>) -> StoreResult<T> {
        Ok(self.settle(call).await?.unchecked_into())
    }

    /// The value a getter read (`getter` is `Err` when it threw).
    pub fn value(&self, getter: Result<JsValue, JsValue>) -> StoreResult<JsValue> {
        getter.map_err(|thrown| self.thrown(thrown))
    }

    /// The value a getter read, as `convert` checks it, naming it `what`.
    pub fn read<T>(
        &self,
        what: &str,
        getter: Result<JsValue, JsValue>,
        convert: impl FnOnce(&str, &JsValue) -> Result<T, String>,
    ) -> StoreResult<T> {
        self.check(convert(what, &self.value(getter)?))
    }

    /// A conversion of the answer, whose error (its text) means the binding answered with
    /// something other than what its API promises: retrying would get the same answer.
    pub fn check<T>(&self, converted: Result<T, String>) -> StoreResult<T> {
        converted.map_err(|what| self.unexpected(what))
    }

    /// This call's error for an answer its API does not allow, `what` saying how.
    pub fn unexpected(&self, what: String) -> StoreError {
        StoreError {
            binding: self.binding,
            operation: self.operation.clone(),
            kind: FailureKind::Rejected,
            message: what,
        }
    }

    fn thrown(&self, thrown: JsValue) -> StoreError {
        store_error(self.binding, &self.operation, &thrown)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn rate_limits_are_rate_limited() {
        for message in [
            "KV PUT failed: 429 Too Many Requests",
            "Too Many Requests",
            "put: 429 Too Many Requests: reduce your rate of writes to the same object.",
        ] {
            assert_eq!(
                classify_failure(message),
                FailureKind::RateLimited,
                "{message}"
            );
        }
    }

    #[test]
    fn server_errors_and_network_loss_are_transient() {
        for message in [
            "KV GET failed: 503 Service Unavailable",
            "KV LIST failed: 500",
            "Network connection lost.",
            "get: We encountered an internal error. Please try again. (10001)",
            "put: Reduce your concurrent request rate for the same object. (10058)",
            "The operation timed out",
            "fetch failed with status: 502",
        ] {
            assert_eq!(
                classify_failure(message),
                FailureKind::Transient,
                "{message}"
            );
        }
    }

    #[test]
    fn a_checksum_mismatch_rejection_is_transient() {
        let message = "put: The SHA-256 checksum you specified did not match what we received.\n\
                       You provided a SHA-256 checksum with value: 00\n\
                       Actual SHA-256 was: 11 (10037)";
        assert_eq!(classify_failure(message), FailureKind::Transient);
    }

    #[test]
    fn refusals_of_the_request_are_rejected() {
        for message in [
            "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60.",
            "KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.",
            "KV PUT failed: 413 Metadata length of 1100 exceeds limit of 1024.",
            "put: Your metadata headers exceed the maximum allowed metadata size. (10012)",
            "TypeError: Failed to execute 'put' on 'R2Bucket': parameter 2 is not of type 'ReadableStream'.",
            "",
        ] {
            assert_eq!(classify_failure(message), FailureKind::Rejected, "{message}");
        }
    }

    #[test]
    fn only_numbers_in_status_position_count_as_statuses() {
        // 512 is the key-length limit, not a server error; 5000 is no status.
        let long_key =
            "KV GET failed: 414 UTF-8 encoded length of 600 exceeds key length limit of 512.";
        assert_eq!(classify_failure(long_key), FailureKind::Rejected);
        assert_eq!(
            classify_failure("KV GET failed: 5000 keys"),
            FailureKind::Rejected
        );
        assert_eq!(
            http_statuses("kv get failed: 414 x, status 503").collect::<Vec<_>>(),
            vec![414, 503]
        );
    }

    #[test]
    fn messages_come_from_errors_strings_and_other_values() {
        assert_eq!(js_error_message(&js_sys::Error::new("boom").into()), "boom");
        let type_error: JsValue = js_sys::TypeError::new("not a stream").into();
        assert_eq!(js_error_message(&type_error), "TypeError: not a stream");
        assert_eq!(js_error_message(&JsValue::from_str("plain")), "plain");
        assert_eq!(js_error_message(&JsValue::from_f64(42.0)), "JsValue(42)");
    }

    #[test]
    fn store_errors_name_binding_operation_and_kind() {
        let thrown: JsValue = js_sys::Error::new("KV PUT failed: 429 Too Many Requests").into();
        let err = store_error(Binding::Kv, "put embedding:ab", &thrown);
        assert_eq!(err.binding, Binding::Kv);
        assert_eq!(err.operation, "put embedding:ab");
        assert_eq!(err.kind, FailureKind::RateLimited);
        assert_eq!(
            err.to_string(),
            "CHAT_KV put embedding:ab: KV PUT failed: 429 Too Many Requests"
        );
    }
}
