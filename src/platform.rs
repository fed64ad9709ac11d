//! The limits of Workers KV, R2 and JavaScript that the code relies on (../shared/PLATFORM.md),
//! each stated once: the service and codecs stay within them, the in-memory stores enforce
//! them, so native tests fail where production would.

use std::fmt;

use serde::Serialize;

/// The storage bindings (names as in wrangler.toml); JSON `"kv"` / `"r2"` / `"r2_replica"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// Workers KV, `CHAT_KV`.
    Kv,
    /// R2, `ARCHIVE_R2`.
    R2,
    /// The optional replica bucket, `ARCHIVE_R2_REPLICA`: its own breaker and log lines, so a
    /// replica outage never opens the primary's circuit.
    #[serde(rename = "r2_replica")]
    R2Replica,
}

impl Binding {
    /// The binding's name in wrangler.toml.
    pub fn name(self) -> &'static str {
        match self {
            Binding::Kv => "CHAT_KV",
            Binding::R2 => "ARCHIVE_R2",
            Binding::R2Replica => "ARCHIVE_R2_REPLICA",
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest KV key, in UTF-8 bytes.
pub const KV_MAX_KEY_BYTES: usize = 512;
/// Largest KV value, in bytes (25 MiB).
pub const KV_MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Largest KV `metadata`, in bytes of serialized JSON.
pub const KV_MAX_METADATA_BYTES: usize = 1024;
/// Shortest `expirationTtl` KV accepts, in seconds (local workerd refuses less too).
pub const KV_MIN_EXPIRATION_TTL_SECS: u64 = 60;

/// Longest R2 key, in UTF-8 bytes.
pub const R2_MAX_KEY_BYTES: usize = 1024;
/// Most bytes of an R2 object's metadata (custom keys and values plus HTTP metadata).
pub const R2_MAX_METADATA_BYTES: usize = 8192;
/// Most keys one R2 `delete` call takes.
pub const R2_MAX_DELETE_KEYS: usize = 1000;

/// Most keys one `list` call returns, in KV and in R2.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// KV and R2 accept one write a second to the same key (429 otherwise).
pub const SAME_KEY_WRITE_INTERVAL_MS: u64 = 1000;

/// `Number.MAX_SAFE_INTEGER`: the largest integer a JavaScript number holds exactly (2^53 - 1).
pub const JS_MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
