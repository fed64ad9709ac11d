//! One object checked by what its key says it is: the entry point for a caller that walks a
//! bucket (the offline checker) or a listing (a verification in the Worker, which also has R2's
//! recorded SHA-256). Backup objects are checked together, through their manifest
//! ([`super::backup`]).

use super::archive::{check_archive, check_encrypted_archive, check_encrypted_header, ReadArchive};
use super::records::{check_data_key, check_tombstone};
use super::{classify, Finding, Note, ObjectCheck, ObjectKind, Problem};
use crate::crypto::keyring::KeyRing;
use crate::hash::sha256_hex;

/// What checking one object may use besides its key and bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The SHA-256 recorded beside the object (R2's custom metadata, a metadata record), when
    /// the caller has one: the bytes must hash to it.
    pub recorded_sha256: Option<&'a str>,
    /// For an encrypted archive, the bytes of the data key object it names
    /// ([`data_key_object`]); `None`: absent.
    pub data_key: Option<&'a [u8]>,
    /// The KEKs: encrypted archives are decrypted and data keys unwrapped with them.
    pub ring: Option<&'a KeyRing>,
}

/// The data key object (`keys/….json`) the encrypted archive `bytes` under `key` names, for
/// the caller to read into [`Context::data_key`]; `None` for anything else.
pub fn data_key_object(key: &str, bytes: &[u8]) -> Option<String> {
    if classify(key) != ObjectKind::EncryptedArchive {
        return None;
    }
    check_encrypted_header(key, bytes)
        .1
        .map(|head| head.data_key_object)
}

/// Checks the object `bytes` under `key`; an archive read whole is returned too. Backup
/// objects get their size and checksum only: [`super::backup::check_backup`] checks them,
/// from their manifest. An object under no prefix of the library is noted [`Note::NotOurs`]
/// and not read.
pub async fn check_object(
    key: &str,
    bytes: &[u8],
    context: Context<'_>,
) -> (ObjectCheck, Option<ReadArchive>) {
    let kind = classify(key);
    let (mut check, read) = match kind {
        ObjectKind::Archive | ObjectKind::LegacyArchive => check_archive(key, bytes),
        ObjectKind::EncryptedArchive => {
            check_encrypted_archive(key, bytes, context.data_key, context.ring).await
        }
        ObjectKind::DataKey => (check_data_key(key, bytes, context.ring).await, None),
        ObjectKind::Tombstone | ObjectKind::ConversationTombstone => {
            (check_tombstone(key, bytes), None)
        }
        ObjectKind::Unexpected => {
            let mut check = ObjectCheck::new(kind);
            let reason = "under a prefix of the library, but none of its keys";
            check.find(Finding::new(Problem::UnexpectedKey, reason));
            (check, None)
        }
        ObjectKind::Other | ObjectKind::ExportLine => {
            let mut check = ObjectCheck::new(kind);
            check.notes.push(Note::NotOurs);
            return (check, None);
        }
        ObjectKind::ExampleRecord
        | ObjectKind::BackupManifest
        | ObjectKind::BackupPack
        | ObjectKind::BackupData
        | ObjectKind::LegacyBackupData => (ObjectCheck::new(kind), None),
    };
    let actual = sha256_hex(bytes);
    if let Some(recorded) = context.recorded_sha256 {
        if !recorded.eq_ignore_ascii_case(&actual) {
            let reason = format!("expected {recorded} (recorded), computed {actual}");
            check.find(Finding::new(Problem::ChecksumMismatch, reason));
        }
    }
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", actual);
    (check, read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher_test;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/archive/archive_v1.json.gz");
    const SHA256: &str = include_str!("../../tests/fixtures/archive/archive_v1.json.gz.sha256");
    const KEY: &str = "conversations/2025/01/archive_sess-7f3a_1736157600000.json.gz";

    fn problems(check: &ObjectCheck) -> Vec<Problem> {
        check
            .findings
            .iter()
            .map(|finding| finding.problem)
            .collect()
    }

    cipher_test! {
        fn a_recorded_checksum_is_compared_and_foreign_objects_are_not_read() {
            let recorded = SHA256.split_whitespace().next().unwrap();
            let context = Context { recorded_sha256: Some(recorded), ..Context::default() };
            let (check, read) = check_object(KEY, FIXTURE, context).await;
            assert_eq!(problems(&check), []);
            assert!(read.is_some());
            let other = Context { recorded_sha256: Some(&"0".repeat(64)), ..Context::default() };
            let (check, _) = check_object(KEY, FIXTURE, other).await;
            assert_eq!(problems(&check), [Problem::ChecksumMismatch]);

            let (check, _) = check_object("photos/cat.jpg", b"", Context::default()).await;
            assert_eq!((problems(&check), check.notes), (vec![], vec![Note::NotOurs]));
            let (check, _) = check_object("keys/odd.txt", b"", Context::default()).await;
            assert_eq!(problems(&check), [Problem::UnexpectedKey]);
            assert_eq!(data_key_object(KEY, FIXTURE), None);
        }
    }
}
