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
    /// The document's metadata; its `storedSize` and `sha256` describe the gzip bytes read
    /// (for an encrypted archive, the decrypted ones, not the object).
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
pub(super) fn key_disagreement(
    parsed: &ArchiveObjectKey,
    metadata: &ArchiveMetadata,
) -> Option<String> {
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

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::crypto::aead::SecretKey;
    use crate::crypto::cipher_test;
    use crate::crypto::data_key::wrap;
    use crate::crypto::envelope::{seal, DataKey};

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/archive/archive_v1.json.gz");
    const KEY: &str = "conversations/2025/01/archive_sess-7f3a_1736157600000.json.gz";
    const LEGACY: &[u8] = include_bytes!("../../tests/fixtures/archive/legacy_archive.json");
    const LEGACY_KEY: &str = "conversations/2024/12/archive_sess-legacy-1_1733011200000.json";

    fn problems(check: &ObjectCheck) -> Vec<Problem> {
        check
            .findings
            .iter()
            .map(|finding| finding.problem)
            .collect()
    }

    #[test]
    fn an_intact_archive_has_no_findings_and_says_what_it_holds() {
        let (check, read) = check_archive(KEY, FIXTURE);
        assert_eq!(problems(&check), []);
        assert_eq!(check.kind, ObjectKind::Archive);
        assert_eq!(check.facts["messageCount"], 3);
        assert_eq!(check.facts["formatVersion"], 1);
        assert!(read.unwrap().conversation_json.contains("\"messages\""));
        let (check, _) = check_archive(LEGACY_KEY, LEGACY);
        assert_eq!(problems(&check), []);
        assert_eq!(check.facts["formatVersion"], 0);
    }

    #[test]
    fn damage_is_named_by_the_stage_that_sees_it() {
        let cut = &FIXTURE[..FIXTURE.len() - 9];
        assert_eq!(problems(&check_archive(KEY, cut).0), [Problem::CorruptGzip]);
        assert_eq!(
            problems(&check_archive(KEY, b"{}").0),
            [Problem::CorruptGzip]
        );
        let other_session = "conversations/2025/01/archive_s2_1736157600000.json.gz";
        let (check, _) = check_archive(other_session, FIXTURE);
        assert_eq!(problems(&check), [Problem::CorruptDocument]);
        let document = crate::codec::gzip::compress(b"{\"formatVersion\":1}", 6).unwrap();
        let (check, _) = check_archive(KEY, &document);
        assert_eq!(problems(&check), [Problem::CorruptDocument]);
        let newer = crate::codec::gzip::compress(b"{\"formatVersion\":9}", 6).unwrap();
        assert_eq!(
            problems(&check_archive(KEY, &newer).0),
            [Problem::UnsupportedFormat]
        );
    }

    const ENC_KEY: &str = "conversations/2025/01/archive_sess-7f3a_1736157600000.json.gz.enc";
    const DATA_KEY: &str = "keys/sessions/sess-7f3a.json";

    fn ring_of(id: &str, key: [u8; 32]) -> KeyRing {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        KeyRing::from_value("keys", &serde_json::json!([{"id": id, "key": key}])).unwrap()
    }

    fn ring(key: [u8; 32]) -> KeyRing {
        ring_of("k1", key)
    }

    /// The fixture encrypted under a session data key, and that key wrapped by `ring([1; 32])`.
    async fn sealed() -> (Vec<u8>, Vec<u8>) {
        let dek = DataKey {
            id: [4; 16],
            key: SecretKey([5; 32]),
        };
        let bytes = seal(
            &dek,
            "sessions/sess-7f3a",
            [6; 12],
            ENC_KEY,
            "sess-7f3a",
            FIXTURE,
        )
        .await
        .unwrap();
        let kek = ring([1; 32]).newest().clone();
        let wrapped = wrap(DATA_KEY, &dek, &kek, [7; 12], 1).await.unwrap();
        (bytes, wrapped.encode())
    }

    cipher_test! {
        fn an_encrypted_archive_is_opened_with_its_data_key_and_the_keks() {
            let (bytes, data_key) = sealed().await;
            let right = ring([1; 32]);
            let (check, read) =
                check_encrypted_archive(ENC_KEY, &bytes, Some(&data_key), Some(&right)).await;
            assert_eq!(problems(&check), []);
            assert!(check.notes.is_empty());
            assert_eq!(check.facts["messageCount"], 3);
            assert!(read.is_some());

            let (check, _) = check_encrypted_archive(ENC_KEY, &bytes, Some(&data_key), None).await;
            assert_eq!((problems(&check), check.notes), (vec![], vec![Note::NotDecrypted]));
            let (check, _) = check_encrypted_archive(ENC_KEY, &bytes, None, None).await;
            assert_eq!(problems(&check), [Problem::KeyMissing]);
            let wrong = ring([2; 32]);
            let (check, _) =
                check_encrypted_archive(ENC_KEY, &bytes, Some(&data_key), Some(&wrong)).await;
            assert_eq!(problems(&check), [Problem::DecryptFailed]);
            let other_kek = ring_of("k2", [1; 32]);
            let (check, _) =
                check_encrypted_archive(ENC_KEY, &bytes, Some(&data_key), Some(&other_kek)).await;
            assert_eq!(problems(&check), [Problem::KeyUnavailable]);
            // A data key made again since: the header names the one destroyed.
            let mut remade: serde_json::Value = serde_json::from_slice(&data_key).unwrap();
            remade["dekId"] = serde_json::json!("00".repeat(16));
            let remade = serde_json::to_vec(&remade).unwrap();
            let (check, _) = check_encrypted_archive(ENC_KEY, &bytes, Some(&remade), None).await;
            assert_eq!(problems(&check), [Problem::KeyMissing]);

            let mut changed = bytes.clone();
            let last = changed.len() - 1;
            changed[last] ^= 1;
            let (check, _) =
                check_encrypted_archive(ENC_KEY, &changed, Some(&data_key), Some(&right)).await;
            assert_eq!(problems(&check), [Problem::DecryptFailed]);
            let (check, _) = check_encrypted_archive(ENC_KEY, &bytes[..30], None, None).await;
            assert_eq!(problems(&check), [Problem::CorruptHeader]);
        }
    }
}
