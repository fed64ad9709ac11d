//! Functions exported to JavaScript.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::js_error::{to_js_error, to_js_error_in, Operation};
use crate::codec::archive::read_conversation_input;
use crate::crypto::keyring::KeyRing;
use crate::{hash, time, PersistenceError};

/// SHA-256 of the UTF-8 bytes of `text`, as 64 lowercase hex characters.
#[wasm_bindgen(js_name = hashText)]
pub fn hash_text(text: &str) -> String {
    hash::hash_text(text)
}

/// Checks a conversation (memory and session JSON texts) exactly as `archiveConversation`
/// reads it, storing nothing: every message field, the ids (`INVALID_ID`) and that the parts
/// belong to one session (`INVALID_INPUT` naming the field). It does not check the size
/// limit, which applies to the whole archive. For callers that accept messages long before
/// they archive them (SessionMemoryDO), so bad input is refused when it arrives.
#[wasm_bindgen(js_name = checkConversationInput)]
pub fn check_conversation_input(memory_json: &str, session_json: &str) -> Result<(), JsValue> {
    read_conversation_input(memory_json, session_json)
        .map(|_| ())
        .map_err(|err| to_js_error_in(Operation::Archive, &err))
}

/// The `INVALID_CONFIG` error for `variable` (its `value` quoted unless empty, as for a
/// secret), worded as every configuration error of the library; for the checks the TypeScript
/// wrapper makes before the core is built.
#[wasm_bindgen(js_name = invalidConfigError)]
pub fn invalid_config_error(variable: String, value: String, reason: String) -> JsValue {
    let err = PersistenceError::InvalidConfig {
        variable,
        value,
        reason,
    };
    to_js_error_in(Operation::Config, &err)
}

/// The key-encryption keys of the Worker secret `PERSISTENCE_ENCRYPTION_KEYS` (JSON text of
/// `[{id, key}]`, newest first), checked, as the `encryptionKeys` option takes them (JSON
/// text). Throws `INVALID_CONFIG` naming the variable and the entry; never echoes a key.
#[wasm_bindgen(js_name = encryptionKeysFromSecret)]
pub fn encryption_keys_from_secret(text: &str) -> Result<String, JsValue> {
    KeyRing::from_text(ENCRYPTION_KEYS_VAR, text)
        .map(|ring| ring.to_value().to_string())
        .map_err(|err| to_js_error_in(Operation::Config, &err))
}

/// The Worker secret holding the key-encryption keys.
const ENCRYPTION_KEYS_VAR: &str = "PERSISTENCE_ENCRYPTION_KEYS";

/// The error codes this library can raise, in a stable order.
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<String> {
    PersistenceError::ALL_CODES
        .iter()
        .map(|code| (*code).to_owned())
        .collect()
}

/// The library's version (the crate version, also the npm package version).
#[wasm_bindgen(js_name = libraryVersion)]
pub fn library_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

#[derive(Serialize)]
struct LivenessReport<'a> {
    status: &'a str,
    library: &'a str,
    version: &'a str,
    timestamp: String,
}

/// JSON text of the module's liveness report at `nowMs`; throws `INVALID_INPUT` for a time
/// that is not a non-negative integral epoch-millisecond value.
#[wasm_bindgen(js_name = livenessReport)]
pub fn liveness_report(now_ms: f64) -> Result<String, JsValue> {
    let report = time::epoch_ms_from_f64("nowMs", now_ms)
        .and_then(|ms| time::iso8601("nowMs", ms))
        .map(|timestamp| LivenessReport {
            status: "alive",
            library: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            timestamp,
        })
        .map_err(|err| to_js_error(&err))?;
    // Serializing a struct of strings cannot fail.
    serde_json::to_string(&report).map_err(|err| JsValue::from_str(&err.to_string()))
}
