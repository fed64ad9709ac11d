//! Checking stored objects offline: given an object's R2 key and its bytes (and, where one
//! object vouches for another, the objects it names), what it is and what is wrong with it.
//!
//! Pure and synchronous but for decryption (async, as [`crate::crypto::aead`] is): no I/O, so
//! the offline checker (`src/bin/supportbot-persistence/`) and a verification inside the
//! Worker can share it. A copy of the bucket has no R2 custom metadata, so each object is
//! checked with what its bytes carry: gzip's CRC-32, the archive document's own consistency,
//! AES-GCM's tag when keys are given, and the SHA-256s that backup manifests and packs and
//! store exports record for the objects they name. Every finding has a stable [`Problem`] name.
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
pub mod erasure;
pub mod export;
mod kind;
pub mod object;
pub mod records;

use serde::Serialize;
use serde_json::{Map, Value};

pub use kind::{classify, ObjectKind};

use crate::error::PersistenceError;

/// The largest archive document a check inflates: the most `maxArchiveSize` can be set to
/// (`MAX_ARCHIVE_SIZE_MB` of 1024), so no archive any configuration wrote is refused as too
/// large, while a damaged length cannot make the checker inflate without bound.
pub const CHECK_READ_LIMIT: u64 = 1024 * 1024 * 1024;

/// What is wrong with an object. The names ([`Problem::name`], the JSON form) are stable:
/// reports and scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The bytes do not hash to a SHA-256 recorded for them (by a backup, an export line).
    ChecksumMismatch,
    /// Not gzip where gzip is expected, cut short, or failing gzip's CRC-32 or length.
    CorruptGzip,
    /// The JSON document (archive, manifest, pack, data key, tombstone, export line) does not
    /// parse, misses a member, or contradicts itself or its key.
    CorruptDocument,
    /// An encrypted object's header is not one (no `SBPE`, cut short, names no data key).
    CorruptHeader,
    /// Written by a newer version of the library than this checker.
    UnsupportedFormat,
    /// The document is larger than any archive size limit allows.
    TooLarge,
    /// AES-GCM authentication failed: changed bytes, bytes moved to another key, or a KEK with
    /// the right id but other bytes.
    DecryptFailed,
    /// The data key an encrypted archive names is absent, or holds another key (destroyed and
    /// made again).
    KeyMissing,
    /// Keys were given, but not the key-encryption key that wrapped this data key.
    KeyUnavailable,
    /// An object another one names (a pack, a backup's data) is absent.
    Missing,
    /// A backup pack or data bundle disagrees with its manifest (backup id, time, index,
    /// sessions, sizes).
    PackMismatch,
    /// A pack or data object in a committed backup that its manifest does not name.
    Unreferenced,
    /// A key under one of the library's prefixes that is none of the keys it writes.
    UnexpectedKey,
    /// A store export whose last line is not an end line: cut short.
    NoEndLine,
    /// An end line whose count or SHA-256 is not that of the lines before it.
    EndLineMismatch,
}

impl Problem {
    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Problem::ChecksumMismatch => "checksum_mismatch",
            Problem::CorruptGzip => "corrupt_gzip",
            Problem::CorruptDocument => "corrupt_document",
            Problem::CorruptHeader => "corrupt_header",
            Problem::UnsupportedFormat => "unsupported_format",
            Problem::TooLarge => "too_large",
            Problem::DecryptFailed => "decrypt_failed",
            Problem::KeyMissing => "key_missing",
            Problem::KeyUnavailable => "key_unavailable",
            Problem::Missing => "missing",
            Problem::PackMismatch => "pack_mismatch",
            Problem::Unreferenced => "unreferenced",
            Problem::UnexpectedKey => "unexpected_key",
            Problem::NoEndLine => "no_end_line",
            Problem::EndLineMismatch => "end_line_mismatch",
        }
    }

    /// The problem a library error stands for; `otherwise` for `CORRUPT_DATA` and codes
    /// without a problem of their own (the caller knows which stage failed).
    pub fn of_error(err: &PersistenceError, otherwise: Problem) -> Problem {
        match err.code() {
            "CHECKSUM_MISMATCH" => Problem::ChecksumMismatch,
            "UNSUPPORTED_FORMAT" => Problem::UnsupportedFormat,
            "ARCHIVE_TOO_LARGE" => Problem::TooLarge,
            "DECRYPTION_FAILED" => Problem::DecryptFailed,
            "KEY_UNAVAILABLE" => Problem::KeyUnavailable,
            _ => otherwise,
        }
    }
}

/// One thing wrong with an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What.
    pub problem: Problem,
    /// The details: the library error's message, or what differs.
    pub detail: String,
}

impl Finding {
    /// A finding of `problem`.
    pub fn new(problem: Problem, detail: impl Into<String>) -> Self {
        Finding {
            problem,
            detail: detail.into(),
        }
    }

    /// The finding a library error stands for ([`Problem::of_error`]).
    pub fn of_error(err: &PersistenceError, otherwise: Problem) -> Self {
        Finding::new(Problem::of_error(err, otherwise), err.to_string())
    }
}

/// What a check could not do, or chose not to, without it being a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Note {
    /// Encrypted and no keys were given: only its header (and checksum, where one is
    /// recorded) was checked.
    NotDecrypted,
    /// A backup pack or data object without a manifest: a backup still being written, or one
    /// that failed and that retention sweeps. Nothing vouches for its bytes.
    Uncommitted,
    /// Not under a prefix the library writes: not read.
    NotOurs,
    /// An archive an erasure tombstone of the copy covers (its user's, or for a segment its
    /// conversation's), or one sealed under the data key an erasure destroyed: a copy taken
    /// while the erasure ran. What is wrong with it is not a problem ([`erasure`]).
    Erased,
}

impl Note {
    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Note::NotDecrypted => "not_decrypted",
            Note::Uncommitted => "uncommitted",
            Note::NotOurs => "not_ours",
            Note::Erased => "erased",
        }
    }
}

/// The result of checking one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectCheck {
    /// What its key says it is.
    pub kind: ObjectKind,
    /// What is wrong; empty when nothing is.
    pub findings: Vec<Finding>,
    /// What was not checked, and why.
    pub notes: Vec<Note>,
    /// What it holds, as far as it was read (format version, session, sizes, checksum,
    /// header fields...); never message text.
    pub facts: Map<String, Value>,
}

impl ObjectCheck {
    /// A check of an object of `kind` that found nothing yet.
    pub fn new(kind: ObjectKind) -> Self {
        ObjectCheck {
            kind,
            findings: Vec::new(),
            notes: Vec::new(),
            facts: Map::new(),
        }
    }

    /// Records a fact.
    pub fn fact(&mut self, name: &str, value: impl Into<Value>) {
        self.facts.insert(name.to_owned(), value.into());
    }

    /// Records a finding.
    pub fn find(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Whether anything is wrong.
    pub fn has_problems(&self) -> bool {
        !self.findings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn names_are_the_json_names() {
        let problems = [
            Problem::ChecksumMismatch,
            Problem::CorruptGzip,
            Problem::CorruptDocument,
            Problem::CorruptHeader,
            Problem::UnsupportedFormat,
            Problem::TooLarge,
            Problem::DecryptFailed,
            Problem::KeyMissing,
            Problem::KeyUnavailable,
            Problem::Missing,
            Problem::PackMismatch,
            Problem::Unreferenced,
            Problem::UnexpectedKey,
            Problem::NoEndLine,
            Problem::EndLineMismatch,
        ];
        for problem in problems {
            assert_eq!(serde_json::json!(problem), problem.name());
        }
        for note in [
            Note::NotDecrypted,
            Note::Uncommitted,
            Note::NotOurs,
            Note::Erased,
        ] {
            assert_eq!(serde_json::json!(note), note.name());
        }
        assert_eq!(
            serde_json::json!(ObjectKind::EncryptedArchive),
            ObjectKind::EncryptedArchive.name()
        );
    }

    #[test]
    fn library_errors_keep_their_meaning() {
        let mismatch = PersistenceError::ChecksumMismatch {
            what: "k".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(
            Problem::of_error(&mismatch, Problem::CorruptGzip),
            Problem::ChecksumMismatch
        );
        let corrupt = PersistenceError::corrupt("k", "bad");
        let finding = Finding::of_error(&corrupt, Problem::CorruptGzip);
        assert_eq!(finding.problem, Problem::CorruptGzip);
        assert!(finding.detail.contains("bad"));
    }
}
