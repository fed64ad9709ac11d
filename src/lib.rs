//! supportbot-persistence: data persistence and archival for AI chat on Cloudflare Workers.
//!
//! Layers (see DESIGN.md): a pure core (`error`, `platform`, `policy`, `keys`, `hash`, `time`,
//! `codec`, `check`, `retention`) that takes time and ids as parameters and does no I/O, and
//! `wasm`, the only module that touches JavaScript.
#![warn(missing_docs)]

pub mod check;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod hash;
pub mod keys;
pub mod platform;
pub mod policy;
pub mod retention;
pub mod service;
pub mod store;
pub mod time;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{PersistenceError, Result};
