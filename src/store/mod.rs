//! Ports: the storage and time the service needs, as traits.
//!
//! The service is generic over these, so natively it runs against `memory` (feature `memory`: a
//! test double that can fail the N-th call, fail transiently, corrupt bytes, and has a virtual
//! clock; never in the shipped build) and in wasm against adapters over the real `KVNamespace` /
//! `R2Bucket` bindings (`src/wasm/`). Every trait method behaves as the Cloudflare service does
//! (PLATFORM.md): the in-memory adapter and the real bindings pass the same conformance suite.
//!
//! Futures are not `Send`: a Worker isolate is single-threaded, and JS promises are not `Send`.
#![allow(async_fn_in_trait)]

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "memory"))]
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::error::PersistenceError;
pub use crate::platform::Binding;
pub use crate::retention::{ListedKvKey, ListedR2Object};

/// How a storage call failed, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth retrying: 5xx, network loss, R2 rejecting a body whose SHA-256 differs from the
    /// declared one (bytes damaged in transit).
    Transient,
    /// Worth retrying after the rate window: HTTP 429, i.e. more than one write a second to the
    /// same key (KV and R2), or too many concurrent requests for one object.
    RateLimited,
    /// Retrying the same call cannot succeed: the service refused the request (key or value
    /// too large, TTL under 60 s, malformed arguments).
    Rejected,
}

/// A failed storage call, as an adapter reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// The binding the call went to.
    pub binding: Binding,
    /// The call, with its key or prefix: `put conversations/2025/01/...`.
    pub operation: String,
    /// Whether retrying can help.
    pub kind: FailureKind,
    /// What the binding said.
    pub message: String,
}

impl StoreError {
    /// Whether a retry of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, FailureKind::Transient | FailureKind::RateLimited)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.binding, self.operation, self.message)
    }
}

impl From<StoreError> for PersistenceError {
    fn from(err: StoreError) -> Self {
        PersistenceError::StorageUnavailable {
            binding: err.binding.name().to_owned(),
            operation: err.operation,
            reason: err.message,
        }
    }
}

/// Result of a storage call.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A KV value with its metadata (`getWithMetadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct KvValue {
    /// The stored bytes (text values as UTF-8).
    pub value: Vec<u8>,
    /// The key's metadata, parsed from JSON.
    pub metadata: Option<Value>,
}

/// Options of a KV `put`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvPutOptions {
    /// Seconds until KV deletes the key; KV refuses less than 60.
    pub expiration_ttl_secs: Option<u64>,
    /// Metadata returned by `list()` and `getWithMetadata`; at most 1024 bytes of JSON.
    pub metadata: Option<Value>,
}

/// Options of a KV `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListOptions {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<String>,
    /// At most this many keys (KV caps it at 1000).
    pub limit: Option<u32>,
}

/// One page of a KV `list`: keys in byte order, with their expiration and metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvListPage {
    /// The keys of this page (may be empty even when more follow).
    pub keys: Vec<ListedKvKey>,
    /// True when no page follows.
    pub list_complete: bool,
    /// The cursor for the next page, when one follows.
    pub cursor: Option<String>,
}

/// Workers KV: eventually consistent (~60 s between locations), at most one write a second per
/// key, values up to 25 MiB, metadata up to 1024 bytes.
pub trait KvStore {
    /// The value and metadata under `key`, or `None`.
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>>;
    /// Stores `value` under `key`, replacing what was there.
    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()>;
    /// Deletes `key`; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> StoreResult<()>;
    /// One page of keys in byte order.
    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage>;
}

/// An R2 object's metadata (what `head`, `put` and `get` return besides the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object key.
    pub key: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// When R2 stored it (epoch ms).
    pub uploaded_ms: i64,
    /// The object's custom metadata.
    pub custom_metadata: BTreeMap<String, String>,
    /// The SHA-256 R2 recorded, when the object was written with one (hex).
    pub sha256: Option<String>,
    /// R2's `etag` of this version of the object, for a conditional put
    /// ([`ObjectPutOptions::if_etag_matches`]); `None` only from stores that have none.
    pub etag: Option<String>,
}

/// An R2 object read with `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Its body.
    pub body: Vec<u8>,
}

/// Options of an R2 `put`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectPutOptions {
    /// Custom metadata (at most 8192 bytes with the HTTP metadata).
    pub custom_metadata: BTreeMap<String, String>,
    /// `httpMetadata.contentType`.
    pub content_type: Option<String>,
    /// `httpMetadata.contentEncoding`.
    pub content_encoding: Option<String>,
    /// SHA-256 (hex) the body must have; R2 rejects the put otherwise.
    pub sha256: Option<String>,
    /// Write only if no object has this key (`onlyIf: { etagDoesNotMatch: "*" }`).
    pub only_if_absent: bool,
    /// Write only if the object under the key is still the version with this etag
    /// (`onlyIf: { etagMatches }`): never when it changed or was deleted meanwhile.
    pub if_etag_matches: Option<String>,
}

/// What an R2 `put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was stored.
    Stored(ObjectMeta),
    /// `only_if_absent` was set and an object already had the key; nothing was written.
    AlreadyExists,
    /// `if_etag_matches` was set and the object changed or is gone; nothing was written.
    Changed,
}

/// Options of an R2 `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectListOptions {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<String>,
    /// Only keys after this one (byte order).
    pub start_after: Option<String>,
    /// At most this many objects (R2 caps it at 1000).
    pub limit: Option<u32>,
    /// Return custom metadata with each object (`include: ["customMetadata"]`).
    pub include_custom_metadata: bool,
}

/// One page of an R2 `list`, keys in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectListPage {
    /// The objects of this page.
    pub objects: Vec<ListedR2Object>,
    /// True when more objects follow.
    pub truncated: bool,
    /// The cursor for the next page, when truncated.
    pub cursor: Option<String>,
}

/// R2: strongly consistent, at most one write a second per key, delete of up to 1000 keys per
/// call.
pub trait ObjectStore {
    /// The object under `key`, or `None`.
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>>;
    /// The metadata of the object under `key`, or `None`.
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>>;
    /// Stores `body` under `key`.
    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome>;
    /// Deletes up to 1000 keys in one call; missing keys are ignored.
    async fn delete(&self, keys: &[String]) -> StoreResult<()>;
    /// One page of objects in key order.
    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage>;
}

/// Time, one of the two inputs the core never reads itself.
pub trait Clock {
    /// Now, in epoch milliseconds.
    fn now_ms(&self) -> i64;
    /// Waits `ms` milliseconds (backoff between retries).
    async fn sleep(&self, ms: u64);
}

/// Chance, the other: where ids, nonces and jitter come from.
pub trait Rng {
    /// A uniformly random 64-bit value (request ids, backoff jitter, backup id nonces).
    fn random_u64(&self) -> u64;
    /// Fills `out` from a cryptographically secure source (data keys, encryption nonces), or
    /// says why it cannot; never falls back to a weaker source.
    fn fill_secure(&self, out: &mut [u8]) -> Result<(), String>;
}

/// Where structured log lines go (`console.log` in a Worker).
pub trait LogSink {
    /// Emits one JSON log line.
    fn emit(&self, line: &str);
}
