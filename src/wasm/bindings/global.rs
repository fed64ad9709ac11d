//! Globals of the Workers runtime: timers, randomness, the console.

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `setTimeout(callback, ms)`: returns the timer id.
    #[wasm_bindgen(catch, js_name = setTimeout)]
    pub fn set_timeout(callback: &Function, ms: f64) -> Result<JsValue, JsValue>;

    /// `crypto.getRandomValues(array)`: fills `array` in place (at most 65536 bytes). Workers
    /// refuse it at module top level; inside a handler it works.
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    pub fn get_random_values(array: &Uint8Array) -> Result<JsValue, JsValue>;

    /// `console.log(line)`.
    #[wasm_bindgen(catch, js_namespace = console, js_name = log)]
    pub fn console_log(line: &str) -> Result<(), JsValue>;
}
