//! How a service behaves beyond the retention policy: hashing secret, compression, retries,
//! circuit breaking, logging. Parsed from the JSON the TypeScript wrapper passes.

use serde::Deserialize;

use crate::codec::gzip;
use crate::crypto::keyring::KeyRing;
use crate::error::{PersistenceError, Result};
use crate::hash::KeyHasher;
use crate::retention::RetentionOptions;

/// Retries of transient storage failures: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per storage call, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Backoff cap of the first retry; doubles each retry.
    pub base_delay_ms: u64,
    /// Largest backoff between two attempts.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay_ms: 50,
            max_delay_ms: 2_000,
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the backoff before retry number `retry` (1-based): `base · 2^(retry-1)`,
    /// capped at `max_delay_ms`. The actual wait is uniform in `[0, bound]` (full jitter), so
    /// many isolates retrying the same key do not collide again in lockstep.
    pub fn backoff_bound_ms(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1).min(32);
        self.base_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }
}

/// The circuit breaker of one binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one trial call through.
    pub open_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            open_ms: 30_000,
        }
    }
}

/// How large one pack of a backup may grow: a pack is written, and restored, in one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackBounds {
    /// Most bytes of archive JSON in one pack (a larger archive gets a pack of its own).
    pub max_bytes: u64,
    /// Most archives in one pack.
    pub max_sessions: u32,
}

impl Default for PackBounds {
    fn default() -> Self {
        PackBounds {
            max_bytes: 8 * 1024 * 1024,
            max_sessions: 250,
        }
    }
}

/// Largest accepted `backupPack.maxBytes`: a pack is held in memory, inflated and compressed,
/// within a Worker's 128 MB.
const MAX_PACK_BYTES: u64 = 32 * 1024 * 1024;

/// Everything configurable about a service besides the retention policy.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Hashes cache keys and user keys (plain SHA-256, or HMAC with a secret).
    pub hasher: KeyHasher,
    /// gzip level of archives and backups (0–9).
    pub compression_level: u32,
    /// Whether query cache keys use the normalized query (trim, case fold, whitespace).
    pub normalize_queries: bool,
    /// Model assumed for embeddings whose metadata names none.
    pub default_embedding_model: Option<String>,
    /// Retries of transient storage failures.
    pub retry: RetryPolicy,
    /// Circuit breaker of each binding.
    pub breaker: BreakerPolicy,
    /// Log every storage attempt (not only each call's outcome) with sizes.
    pub debug: bool,
    /// Grace periods of the retention sweep.
    pub retention: RetentionOptions,
    /// Bounds of one backup pack.
    pub backup_pack: PackBounds,
    /// The key-encryption keys, newest first: with them, everything written is encrypted at
    /// rest (`crate::crypto`); without, nothing is, and encrypted data cannot be read.
    pub encryption: Option<KeyRing>,
    /// Age (ms) past which `healthCheck` reports a verification whose last complete pass is
    /// older as `degraded`.
    pub verification_max_age_ms: i64,
}

/// Default of [`ServiceOptions::verification_max_age_ms`]: two days.
pub const DEFAULT_VERIFICATION_MAX_AGE_MS: i64 = 48 * 60 * 60 * 1000;
/// Largest `verificationMaxAgeHours`: ten years.
const MAX_VERIFICATION_MAX_AGE_HOURS: f64 = 87_600.0;

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            hasher: KeyHasher::default(),
            compression_level: gzip::DEFAULT_LEVEL,
            normalize_queries: true,
            default_embedding_model: None,
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            debug: false,
            retention: RetentionOptions::default(),
            backup_pack: PackBounds::default(),
            encryption: None,
            verification_max_age_ms: DEFAULT_VERIFICATION_MAX_AGE_MS,
        }
    }
}

/// The JSON shape of `PersistenceOptions` in TypeScript.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OptionsJson {
    hash_secret: Option<String>,
    compression_level: Option<u32>,
    normalize_queries: Option<bool>,
    embedding_model: Option<String>,
    debug: Option<bool>,
    retry: Option<RetryJson>,
    circuit_breaker: Option<BreakerJson>,
    backup_pack: Option<PackJson>,
    encryption_keys: Option<serde_json::Value>,
    verification_max_age_hours: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PackJson {
    max_bytes: Option<u64>,
    max_sessions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryJson {
    max_attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BreakerJson {
    failure_threshold: Option<u32>,
    open_ms: Option<u64>,
}

fn invalid(variable: &str, value: impl ToString, reason: &str) -> PersistenceError {
    PersistenceError::InvalidConfig {
        variable: variable.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

impl ServiceOptions {
    /// Parses the TypeScript `PersistenceOptions` object (as JSON text); absent fields keep
    /// their defaults. Errors are `INVALID_CONFIG` naming the option.
    pub fn from_json(text: &str) -> Result<Self> {
        let parsed: OptionsJson = serde_json::from_str(text).map_err(|err| {
            // Not quoted: the options may hold the hash secret.
            invalid("options", "", &err.to_string())
        })?;
        let mut options = ServiceOptions::default();
        if let Some(secret) = parsed.hash_secret {
            options.hasher = KeyHasher::keyed(secret.as_bytes())?;
        }
        if let Some(level) = parsed.compression_level {
            options.compression_level = gzip::check_level(level)
                .map_err(|_| invalid("compressionLevel", level, "must be a gzip level 0-9"))?;
        }
        if let Some(normalize) = parsed.normalize_queries {
            options.normalize_queries = normalize;
        }
        if let Some(model) = parsed.embedding_model {
            if model.is_empty() {
                return Err(invalid("embeddingModel", "", "must not be empty"));
            }
            options.default_embedding_model = Some(model);
        }
        options.debug = parsed.debug.unwrap_or(false);
        if let Some(retry) = parsed.retry {
            let policy = &mut options.retry;
            policy.max_attempts = retry.max_attempts.unwrap_or(policy.max_attempts);
            policy.base_delay_ms = retry.base_delay_ms.unwrap_or(policy.base_delay_ms);
            policy.max_delay_ms = retry.max_delay_ms.unwrap_or(policy.max_delay_ms);
            if !(1..=10).contains(&policy.max_attempts) {
                return Err(invalid(
                    "retry.maxAttempts",
                    policy.max_attempts,
                    "must be 1-10",
                ));
            }
            if policy.max_delay_ms > 60_000 {
                return Err(invalid(
                    "retry.maxDelayMs",
                    policy.max_delay_ms,
                    "must be at most 60000",
                ));
            }
        }
        if let Some(breaker) = parsed.circuit_breaker {
            let policy = &mut options.breaker;
            policy.failure_threshold = breaker
                .failure_threshold
                .unwrap_or(policy.failure_threshold);
            policy.open_ms = breaker.open_ms.unwrap_or(policy.open_ms);
            if policy.failure_threshold == 0 {
                return Err(invalid(
                    "circuitBreaker.failureThreshold",
                    0,
                    "must be at least 1",
                ));
            }
        }
        if let Some(pack) = parsed.backup_pack {
            let bounds = &mut options.backup_pack;
            bounds.max_bytes = pack.max_bytes.unwrap_or(bounds.max_bytes);
            bounds.max_sessions = pack.max_sessions.unwrap_or(bounds.max_sessions);
            if !(1..=MAX_PACK_BYTES).contains(&bounds.max_bytes) {
                let reason = format!("must be 1-{MAX_PACK_BYTES}");
                return Err(invalid("backupPack.maxBytes", bounds.max_bytes, &reason));
            }
            if bounds.max_sessions == 0 {
                let reason = "must be at least 1";
                return Err(invalid("backupPack.maxSessions", 0, reason));
            }
        }
        if let Some(hours) = parsed.verification_max_age_hours {
            if !(hours > 0.0 && hours <= MAX_VERIFICATION_MAX_AGE_HOURS) {
                let reason =
                    format!("must be more than 0 and at most {MAX_VERIFICATION_MAX_AGE_HOURS}");
                return Err(invalid("verificationMaxAgeHours", hours, &reason));
            }
            // At most ten years of milliseconds: far inside an i64.
            options.verification_max_age_ms = (hours * 3_600_000.0).round() as i64;
        }
        if let Some(keys) = parsed.encryption_keys {
            options.encryption = Some(KeyRing::from_value("encryptionKeys", &keys)?);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn empty_object_gives_defaults() {
        let options = ServiceOptions::from_json("{}").unwrap();
        assert_eq!(options.compression_level, 6);
        assert!(options.normalize_queries);
        assert!(!options.hasher.is_keyed());
        assert_eq!(options.retry, RetryPolicy::default());
    }

    #[test]
    fn reads_every_option() {
        let options = ServiceOptions::from_json(
            r#"{"hashSecret":"0123456789abcdef","compressionLevel":9,"normalizeQueries":false,
                "embeddingModel":"m","debug":true,"retry":{"maxAttempts":2,"baseDelayMs":1,"maxDelayMs":5},
                "circuitBreaker":{"failureThreshold":3,"openMs":100},
                "backupPack":{"maxBytes":1024,"maxSessions":7}}"#,
        )
        .unwrap();
        assert_eq!(
            options.backup_pack,
            PackBounds {
                max_bytes: 1024,
                max_sessions: 7
            }
        );
        assert!(options.hasher.is_keyed());
        assert_eq!(options.compression_level, 9);
        assert!(!options.normalize_queries);
        assert_eq!(options.default_embedding_model.as_deref(), Some("m"));
        assert!(options.debug);
        assert_eq!(
            options.retry,
            RetryPolicy {
                max_attempts: 2,
                base_delay_ms: 1,
                max_delay_ms: 5
            }
        );
        assert_eq!(
            options.breaker,
            BreakerPolicy {
                failure_threshold: 3,
                open_ms: 100
            }
        );
    }

    #[test]
    fn bad_options_name_the_option() {
        for (json, variable) in [
            (r#"{"compressionLevel":10}"#, "compressionLevel"),
            (r#"{"hashSecret":"short"}"#, "hashSecret"),
            (r#"{"retry":{"maxAttempts":0}}"#, "retry.maxAttempts"),
            (
                r#"{"circuitBreaker":{"failureThreshold":0}}"#,
                "circuitBreaker.failureThreshold",
            ),
            (r#"{"embeddingModel":""}"#, "embeddingModel"),
            (r#"{"backupPack":{"maxBytes":0}}"#, "backupPack.maxBytes"),
            (
                r#"{"backupPack":{"maxBytes":33554433}}"#,
                "backupPack.maxBytes",
            ),
            (
                r#"{"backupPack":{"maxSessions":0}}"#,
                "backupPack.maxSessions",
            ),
            (r#"{"backupPack":{"size":1}}"#, "options"),
            (r#"{"colour":"red"}"#, "options"),
        ] {
            let err = ServiceOptions::from_json(json).unwrap_err();
            assert_eq!(err.code(), "INVALID_CONFIG", "{json}");
            assert!(err.to_string().contains(variable), "{json}: {err}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 50,
            max_delay_ms: 300,
        };
        let bounds: Vec<u64> = (1..=5).map(|n| policy.backoff_bound_ms(n)).collect();
        assert_eq!(bounds, [50, 100, 200, 300, 300]);
        assert_eq!(policy.backoff_bound_ms(u32::MAX), 300);
    }
}
