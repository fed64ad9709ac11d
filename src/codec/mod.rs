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
pub mod backup;
pub mod cache;
pub mod gzip;
