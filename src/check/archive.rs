//! Checking one archive object: its gzip, its document (read message by message, as an
//! archive without a recorded checksum is read), the agreement of the document with its key,
//! and, for an encrypted one, its header and, given the data key and KEKs, its decryption.

use super::{Finding, Note, ObjectCheck, ObjectKind, Problem, CHECK_READ_LIMIT};
use crate::codec::archive::{decode_archive_json, ArchiveMetadata, View};
use crate::codec::gzip;
use crate::crypto::data_key::{unwrap, WrappedKey};
use crate::crypto::envelope;
use crate::crypto::keyring::KeyRing;
use crate::hash::{sha256_hex, to_hex};
use crate::keys::{data_key_object_of_ref, parse_archive_object_key, ArchiveObjectKey};

/// How far a legacy key's time may be from the `archivedAt` its document records: the earlier
/// implementation read the clock separately for each (docs/FORMAT.md, "Legacy archives").
const LEGACY_KEY_SLACK_MS: i64 = 60_000;

/// What an archive holds once read: its metadata and its conversation's JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadArchive {
    /// The document's metadata (sizes and checksum of the bytes it was read from).
    pub metadata: ArchiveMetadata,
    /// The conversation as retrieval returns it.
    pub conversation_json: String,
}

/// Checks the plaintext archive (gzip'd, or legacy plain JSON) `bytes` stored under `key`.
/// The archive read is returned when it is whole, for callers that show or export it.
pub fn check_archive(key: &str, bytes: &[u8]) -> (ObjectCheck, Option<ReadArchive>) {
    let mut check = ObjectCheck::new(super::classify(key));
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", sha256_hex(bytes));
    let read = match parse_archive_object_key(key) {
        Some(parsed) => read_document(&mut check, key, &parsed, bytes, bytes.len() as u64),
        None => {
            check.find(Finding::new(
                Problem::UnexpectedKey,
                "not an archive key (docs/FORMAT.md, Keys)",
            ));
            None
        }
    };
    (check, read)
}

/// Reads `plain` (gzip'd JSON, or a legacy key's plain JSON) as the archive under `parsed`
/// into `check`; `stored_size` is what the object takes in R2.
fn read_document(
    check: &mut ObjectCheck,
    key: &str,
    parsed: &ArchiveObjectKey,
    plain: &[u8],
    stored_size: u64,
) -> Option<ReadArchive> {
    if !parsed.legacy {
        if !gzip::is_gzip(plain) {
            check.find(Finding::new(Problem::CorruptGzip, "not gzip (no 1f 8b)"));
            return None;
        }
        // Inflated once here to tell damaged gzip from a damaged document.
        match gzip::decompress(key, plain, CHECK_READ_LIMIT) {
            Ok(document) => check.fact("rawSize", document.len() as u64),
            Err(err) => {
                check.find(Finding::of_error(&err, Problem::CorruptGzip));
                return None;
            }
        }
    }
    let decoded = match decode_archive_json(plain, None, CHECK_READ_LIMIT, View::Conversation) {
        Ok(decoded) => decoded,
        Err(err) => {
            check.find(Finding::of_error(&err, Problem::CorruptDocument));
            return None;
        }
    };
    let metadata = decoded.metadata;
    check.fact("formatVersion", metadata.format_version);
    check.fact("sessionId", metadata.session_id.as_str());
    check.fact("archivedAt", metadata.archived_at);
    check.fact("messageCount", metadata.message_count);
    check.fact("rawSize", metadata.raw_size);
    check.fact("storedSize", stored_size);
    if let Some(reason) = key_disagreement(parsed, &metadata) {
        check.find(Finding::new(Problem::CorruptDocument, reason));
    }
    Some(ReadArchive {
        metadata,
        conversation_json: decoded.json,
    })
}

/// What in `metadata` disagrees with the key the archive is stored under, if anything.
fn key_disagreement(parsed: &ArchiveObjectKey, metadata: &ArchiveMetadata) -> Option<String> {
    if metadata.session_id != parsed.session_id.as_str() {
        return Some(format!(
            "metadata.sessionId {:?} is not the key's session {:?}",
            metadata.session_id,
            parsed.session_id.as_str()
        ));
    }
    let slack = if parsed.legacy {
        LEGACY_KEY_SLACK_MS
    } else {
        0
    };
    if (metadata.archived_at - parsed.archived_at_ms).abs() > slack {
        return Some(format!(
            "metadata.archivedAt {} is not the key's time {}",
            metadata.archived_at, parsed.archived_at_ms
        ));
    }
    None
}

/// What an encrypted archive's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHead {
    /// The data key object it names, `keys/<reference>.json`.
    pub data_key_object: String,
    /// The data key's id, hex.
    pub dek_id: String,
}

/// Checks what can be checked of the encrypted archive `bytes` under `key` without keys: its
/// key and its header. Returns the check (noted [`Note::NotDecrypted`]) and, when the header
/// reads, the data key it names.
pub fn check_encrypted_header(key: &str, bytes: &[u8]) -> (ObjectCheck, Option<EnvelopeHead>) {
    let mut check = ObjectCheck::new(ObjectKind::EncryptedArchive);
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", sha256_hex(bytes));
    check.notes.push(Note::NotDecrypted);
    let Some(parsed) = parse_archive_object_key(key).filter(|parsed| parsed.encrypted) else {
        let reason = "not an encrypted archive key (docs/FORMAT.md, Keys)";
        check.find(Finding::new(Problem::UnexpectedKey, reason));
        return (check, None);
    };
    check.fact("sessionId", parsed.session_id.as_str());
    check.fact("archivedAt", parsed.archived_at_ms);
    let sealed = match envelope::parse(key, bytes) {
        Ok(sealed) => sealed,
        Err(err) => {
            check.find(Finding::of_error(&err, Problem::CorruptHeader));
            return (check, None);
        }
    };
    check.fact("keyReference", sealed.key_ref);
    check.fact("dekId", to_hex(&sealed.dek_id));
    check.fact("nonce", to_hex(&sealed.nonce));
    check.fact(
        "ciphertextSize",
        sealed
            .sealed
            .len()
            .saturating_sub(crate::crypto::aead::TAG_LEN) as u64,
    );
    let Some(data_key_object) = data_key_object_of_ref(sealed.key_ref) else {
        let reason = format!("key reference {:?} names no data key", sealed.key_ref);
        check.find(Finding::new(Problem::CorruptHeader, reason));
        return (check, None);
    };
    check.fact("dataKey", data_key_object.as_str());
    let head = EnvelopeHead {
        data_key_object,
        dek_id: to_hex(&sealed.dek_id),
    };
    (check, Some(head))
}

/// Checks the encrypted archive `bytes` under `key`: its header and its data key, given as the
/// data key object's bytes (`None`: absent from the copy), which must hold the key the header
/// names. With `ring`, the data key is unwrapped and the archive decrypted (AES-GCM's tag), and
/// the gzip and document within are read as [`check_archive`] reads them; without, the check
/// is noted [`Note::NotDecrypted`].
pub async fn check_encrypted_archive(
    key: &str,
    bytes: &[u8],
    data_key: Option<&[u8]>,
    ring: Option<&KeyRing>,
) -> (ObjectCheck, Option<ReadArchive>) {
    let (mut check, head) = check_encrypted_header(key, bytes);
    let (Some(head), Some(parsed)) = (head, parse_archive_object_key(key)) else {
        return (check, None);
    };
    let Some(data_key) = data_key else {
        let reason = format!("its data key {} is absent", head.data_key_object);
        check.find(Finding::new(Problem::KeyMissing, reason));
        return (check, None);
    };
    let wrapped = match WrappedKey::decode(&head.data_key_object, data_key) {
        Ok(wrapped) => wrapped,
        Err(err) => {
            check.find(Finding::new(
                Problem::KeyMissing,
                format!("its data key cannot be read: {err}"),
            ));
            return (check, None);
        }
    };
    if !wrapped.dek_id.eq_ignore_ascii_case(&head.dek_id) {
        let reason = format!(
            "{} holds data key {}, the header names {} (destroyed and made again)",
            head.data_key_object, wrapped.dek_id, head.dek_id
        );
        check.find(Finding::new(Problem::KeyMissing, reason));
        return (check, None);
    }
    let Some(ring) = ring else {
        return (check, None);
    };
    let dek = match unwrap(ring, &head.data_key_object, &wrapped).await {
        Ok(dek) => dek,
        Err(err) => {
            check.find(Finding::of_error(&err, Problem::KeyMissing));
            return (check, None);
        }
    };
    let opened = match envelope::parse(key, bytes) {
        Ok(sealed) => envelope::open(key, &sealed, &dek, key, parsed.session_id.as_str()).await,
        Err(err) => Err(err),
    };
    let gzipped = match opened {
        Ok(gzipped) => gzipped,
        Err(err) => {
            check.find(Finding::of_error(&err, Problem::DecryptFailed));
            return (check, None);
        }
    };
    check.notes.retain(|note| *note != Note::NotDecrypted);
    check.fact("decrypted", true);
    let plain_key = ArchiveObjectKey {
        encrypted: false,
        ..parsed
    };
    let read = read_document(&mut check, key, &plain_key, &gzipped, bytes.len() as u64);
    (check, read)
}
