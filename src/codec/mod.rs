//! Byte formats of everything the library stores: archives, cache entries, backups.
//!
//! Decoders take untrusted bytes: they return errors, never panic (a panic traps the wasm
//! instance). The lints below make the compiler hold every decoder to that.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    clippy::todo
)]

pub mod archive;
pub mod ascii_json;
pub mod backup;
pub mod cache;
pub mod export;
pub mod fields;
pub mod gzip;

use serde::Serialize;

/// `value` as compact JSON text, for JavaScript, logs, resume points and stored metadata. Not
/// `Value::to_string()`: that writes through `fmt::Write` a fragment at a time, checking each
/// as UTF-8, and was a quarter of the CPU of listing 100 archives.
pub(crate) fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Our own types and `Value`s always serialize: every map key is a string.
    serde_json::to_string(value).unwrap_or_default()
}
