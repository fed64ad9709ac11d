//! The JavaScript boundary: every `#[wasm_bindgen]` export and every conversion between JS
//! values and Rust lives here. Names follow the spec's camelCase API via `js_name`.

mod errors;
mod exports;
