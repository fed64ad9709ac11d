//! Raw bindings: `extern "C"` types for the Workers runtime objects this crate calls, keeping
//! their JavaScript names (as in `@cloudflare/workers-types`).
//!
//! Nothing here converts or validates: every method `catch`es (a throw becomes an `Err`), and
//! every property whose value the runtime could get wrong is read as a `JsValue`, so the safe
//! adapters (`super::kv`, `super::r2`, `super::clock`, `super::log`,
//! `super::subtle`) check it without panicking.

pub mod analytics;
pub mod global;
pub mod kv;
pub mod r2;
pub mod subtle;

pub use analytics::OperationRecorder;
pub use kv::{KVNamespace, KVNamespaceGetWithMetadataResult, KVNamespaceListResult};
pub use r2::{R2Bucket, R2Checksums, R2Object, R2ObjectBody, R2Objects};
pub use subtle::SubtleCrypto;
