//! The JavaScript boundary: every `#[wasm_bindgen]` export and every conversion between JS
//! values and Rust lives here. Names follow the spec's camelCase API via `js_name`.
//!
//! Raw bindings ([`bindings`]) are kept apart from the adapters that turn them into the store
//! ports ([`kv::JsKv`], [`r2::JsR2`], [`clock::JsClock`], [`log::ConsoleLog`]) or the
//! crate's cipher ([`subtle`]).
// Keys and JS values arrive from storage and callers: parsing them must never panic (a panic
// traps the wasm instance).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod analytics;
#[cfg(feature = "bench")]
mod bench;
mod binding_failure;
pub mod bindings;
pub mod clock;
#[cfg(feature = "conformance")]
mod conformance;
mod convert;
mod export;
mod exports;
mod js_error;
pub mod kv;
pub mod log;
pub mod r2;
mod service;
pub mod subtle;
