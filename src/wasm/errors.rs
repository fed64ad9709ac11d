//! Conversion of [`PersistenceError`] into a JavaScript `Error` carrying a stable `.code`.

use js_sys::{Error as JsError, Reflect};
use wasm_bindgen::JsValue;

use crate::PersistenceError;

/// Builds `new Error(message)` with `name = "PersistenceError"` and `code = err.code()`.
pub(crate) fn to_js_error(err: &PersistenceError) -> JsValue {
    let js_error = JsError::new(&err.to_string());
    js_error.set_name("PersistenceError");
    // Reflect::set only fails on frozen or proxied objects; a fresh Error is neither.
    let _ = Reflect::set(&js_error, &"code".into(), &err.code().into());
    js_error.into()
}
