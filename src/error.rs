//! The one error type of the library.
//!
//! Every variant names what went wrong and where (field, key, variable or index), and maps to a
//! stable [`PersistenceError::code`] that crosses to JavaScript as `error.code`. Codes never
//! change meaning; new situations get new variants.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T, E = PersistenceError> = std::result::Result<T, E>;

/// Everything that can go wrong in the persistence layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// A caller-supplied value is missing, ill-typed or out of range.
    #[error("invalid input: {field}: {reason}")]
    InvalidInput {
        /// Path of the offending field, e.g. `memory.messages[3].timestamp`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An identifier (sessionId, userId, backupId) cannot be used.
    #[error("invalid {field}{}: {reason}", quoted(value))]
    InvalidId {
        /// Which identifier: `sessionId`, `userId` or `backupId`.
        field: &'static str,
        /// The rejected value, shortened to at most 64 characters; empty for a user id, which
        /// is personal data and must not reach logs.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A configuration variable (wrangler.toml `[vars]` or a policy field) has an unusable value.
    #[error("invalid configuration {variable}{}: {reason}", assigned(value))]
    InvalidConfig {
        /// The variable or policy field, e.g. `ARCHIVE_RETENTION_DAYS`.
        variable: String,
        /// The rejected value as given; empty when it is withheld (a secret).
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// Nothing is stored under the key.
    #[error("not found: {key}")]
    NotFound {
        /// The storage key (or id) that was looked up.
        key: String,
    },

    /// Stored bytes do not hash to the checksum recorded with them.
    #[error("checksum mismatch in {what}: expected {expected}, computed {actual}")]
    ChecksumMismatch {
        /// The object or section that failed, e.g. a key or `backup session s1`.
        what: String,
        /// The recorded checksum (hex).
        expected: String,
        /// The checksum of the bytes actually read (hex).
        actual: String,
    },

    /// An archive is larger than the policy's `maxArchiveSize`.
    #[error("archive of {size} bytes exceeds maxArchiveSize of {limit} bytes")]
    ArchiveTooLarge {
        /// Size of the serialized archive in bytes.
        size: u64,
        /// The configured limit in bytes.
        limit: u64,
    },

    /// Stored bytes cannot be decoded (bad gzip, bad JSON, wrong shape, truncated).
    #[error("corrupt data in {what}: {reason}")]
    CorruptData {
        /// The object or section that failed to decode.
        what: String,
        /// What the decoder found.
        reason: String,
    },

    /// A stored object was written by a newer version of this library.
    #[error("unsupported format version {version} in {what}")]
    UnsupportedFormat {
        /// The object that carries the version.
        what: String,
        /// The version found.
        version: u64,
    },

    /// Encrypted data needs a key-encryption key that is not configured (`encryptionKeys`).
    #[error("key unavailable: {what} needs {key_id}, which is not configured or no longer exists")]
    KeyUnavailable {
        /// The object or data key that could not be opened.
        what: String,
        /// Which key: a key-encryption key's id, or a data key's object and id (never key
        /// material).
        key_id: String,
    },

    /// Encrypted bytes failed authentication: damaged, moved to another key or session, or
    /// encrypted under another key. No data is returned.
    #[error("decryption failed for {what}: {reason}")]
    DecryptionFailed {
        /// The object that failed.
        what: String,
        /// Why.
        reason: String,
    },

    /// The cipher could not run: the runtime has no `crypto.subtle`, or it refused an AES-GCM
    /// call. Nothing was encrypted or decrypted, and nothing was stored.
    #[error("encryption unavailable for {what}: {reason}")]
    CryptoUnavailable {
        /// The object being encrypted or decrypted (never key material).
        what: String,
        /// The runtime's error.
        reason: String,
    },

    /// A storage binding failed (after retries, where retrying applies).
    #[error("storage unavailable: {binding} {operation} failed: {reason}")]
    StorageUnavailable {
        /// The binding, `ARCHIVE_R2` or `CHAT_KV`.
        binding: String,
        /// The operation, e.g. `put conversations/2025/01/...`.
        operation: String,
        /// The underlying failure as reported by the binding.
        reason: String,
    },

    /// The circuit breaker of a binding is open; the call was not attempted.
    #[error("circuit open for {binding}: retry after {retry_after_ms} ms")]
    CircuitOpen {
        /// The binding whose breaker is open.
        binding: String,
        /// Milliseconds until the breaker half-opens.
        retry_after_ms: u64,
    },
}

/// ` "value"` (Debug-quoted) for an `InvalidId` message, or nothing when the value is withheld
/// (or empty, where the reason says so).
fn quoted(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!(" {value:?}")
    }
}

/// Each variant's stable code, written once: `code()` and `ALL_CODES` come from this table.
macro_rules! error_codes {
    ($($variant:ident => $code:literal),* $(,)?) => {
        impl PersistenceError {
            /// The stable, machine-readable code of this error (`error.code` in JavaScript).
            pub fn code(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $code,)*
                }
            }

            /// Every code this crate can produce, in declaration order (exported to
            /// TypeScript, whose `ERROR_CODES` a test checks against it).
            pub const ALL_CODES: &'static [&'static str] = &[$($code),*];
        }
    };
}

error_codes! {
    InvalidInput => "INVALID_INPUT",
    InvalidId => "INVALID_ID",
    InvalidConfig => "INVALID_CONFIG",
    NotFound => "NOT_FOUND",
    ChecksumMismatch => "CHECKSUM_MISMATCH",
    ArchiveTooLarge => "ARCHIVE_TOO_LARGE",
    CorruptData => "CORRUPT_DATA",
    UnsupportedFormat => "UNSUPPORTED_FORMAT",
    KeyUnavailable => "KEY_UNAVAILABLE",
    DecryptionFailed => "DECRYPTION_FAILED",
    CryptoUnavailable => "CRYPTO_UNAVAILABLE",
    StorageUnavailable => "STORAGE_UNAVAILABLE",
    CircuitOpen => "CIRCUIT_OPEN",
}

/// `="value"` (Debug-quoted) for an `InvalidConfig` message, or nothing when the value is
/// withheld.
fn assigned(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("={value:?}")
    }
}

impl PersistenceError {
    /// Shorthand for [`PersistenceError::InvalidInput`].
    pub fn invalid_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// INVALID_INPUT naming `field`, whose `value` is not an integer in `min..=max`: the one
    /// wording of every numeric argument's range check, whichever layer makes it.
    pub fn not_integer_in(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        min: u64,
        max: u64,
    ) -> Self {
        Self::invalid_input(field, format!("{value} is not an integer in {min}..={max}"))
    }

    /// Shorthand for [`PersistenceError::CorruptData`].
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::CorruptData {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// The same error about stored data (`CORRUPT_DATA`, `CHECKSUM_MISMATCH`,
    /// `UNSUPPORTED_FORMAT`) with what it names rewritten by `rename` (e.g. to name the
    /// object or stream line a decoder's part belongs to); any other error as it is.
    pub fn renaming_data(self, rename: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::CorruptData { what, reason } => Self::CorruptData {
                what: rename(what),
                reason,
            },
            Self::ChecksumMismatch {
                what,
                expected,
                actual,
            } => Self::ChecksumMismatch {
                what: rename(what),
                expected,
                actual,
            },
            Self::UnsupportedFormat { what, version } => Self::UnsupportedFormat {
                what: rename(what),
                version,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::PersistenceError;

    #[test]
    fn codes_are_stable_and_listed() {
        let samples = [
            PersistenceError::invalid_input("f", "r"),
            PersistenceError::InvalidId {
                field: "sessionId",
                value: "a/b".into(),
                reason: "contains '/'",
            },
            PersistenceError::InvalidConfig {
                variable: "V".into(),
                value: "x".into(),
                reason: "r".into(),
            },
            PersistenceError::NotFound { key: "k".into() },
            PersistenceError::ChecksumMismatch {
                what: "w".into(),
                expected: "e".into(),
                actual: "a".into(),
            },
            PersistenceError::ArchiveTooLarge { size: 2, limit: 1 },
            PersistenceError::corrupt("w", "r"),
            PersistenceError::UnsupportedFormat {
                what: "w".into(),
                version: 9,
            },
            PersistenceError::KeyUnavailable {
                what: "w".into(),
                key_id: "k1".into(),
            },
            PersistenceError::DecryptionFailed {
                what: "w".into(),
                reason: "r".into(),
            },
            PersistenceError::CryptoUnavailable {
                what: "w".into(),
                reason: "r".into(),
            },
            PersistenceError::StorageUnavailable {
                binding: "CHAT_KV".into(),
                operation: "get".into(),
                reason: "r".into(),
            },
            PersistenceError::CircuitOpen {
                binding: "ARCHIVE_R2".into(),
                retry_after_ms: 5,
            },
        ];
        let codes: Vec<&str> = samples.iter().map(PersistenceError::code).collect();
        assert_eq!(codes, PersistenceError::ALL_CODES);
    }

    #[test]
    fn messages_name_the_offender() {
        let err = PersistenceError::InvalidConfig {
            variable: "CACHE_TTL_HOURS".into(),
            value: "-3".into(),
            reason: "must be positive".into(),
        };
        assert_eq!(
            err.to_string(),
            "invalid configuration CACHE_TTL_HOURS=\"-3\": must be positive"
        );
        let withheld = PersistenceError::InvalidConfig {
            variable: "PERSISTENCE_HASH_SECRET".into(),
            value: String::new(),
            reason: "must be a string".into(),
        };
        assert_eq!(
            withheld.to_string(),
            "invalid configuration PERSISTENCE_HASH_SECRET: must be a string"
        );
        let err = PersistenceError::InvalidId {
            field: "sessionId",
            value: "a/b".into(),
            reason: "contains '/'",
        };
        assert_eq!(err.to_string(), "invalid sessionId \"a/b\": contains '/'");
        let withheld = PersistenceError::InvalidId {
            field: "userId",
            value: String::new(),
            reason: "contains a control character",
        };
        assert_eq!(
            withheld.to_string(),
            "invalid userId: contains a control character"
        );
    }
}
