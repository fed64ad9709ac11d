//! The encrypted object format (docs/FORMAT.md, "Encryption"): a header, then AES-256-GCM
//! ciphertext and tag.
//!
//! ```text
//! "SBPE" | version (1 byte) | n (1 byte) | key reference (n bytes, ASCII) | DEK id (16 bytes)
//!        | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! The key reference names the data key's object (`keys/<reference>.json`), in archives and
//! in encrypted summaries alike.
//! The associated data is the whole header followed by the storage key, a zero byte and the
//! session id, so that changing any header byte, or copying the bytes to another key or
//! session, fails authentication.

use super::aead::{self, OpenError, SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{PersistenceError, Result};

/// First bytes of every encrypted object.
pub const MAGIC: &[u8; 4] = b"SBPE";
/// The envelope format version this library writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes of a data key's id.
pub const DEK_ID_LEN: usize = 16;
/// Longest key reference a header holds.
pub const MAX_KEY_REF_LEN: usize = u8::MAX as usize;

/// A data key: the AES-256 key of one owner's objects, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    /// Random; recorded in every header it encrypted, so a replaced key is recognised.
    pub id: [u8; DEK_ID_LEN],
    /// The key.
    pub key: SecretKey,
}

/// The parts of an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The header's bytes (authenticated).
    pub header: &'a [u8],
    /// Which key object holds the data key: `keys/<key_ref>.json`.
    pub key_ref: &'a str,
    /// The data key's id.
    pub dek_id: [u8; DEK_ID_LEN],
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub sealed: &'a [u8],
}

/// Whether `bytes` start like an encrypted object.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Bytes an envelope adds to a plaintext with a key reference of `key_ref_len` bytes.
pub fn overhead(key_ref_len: usize) -> usize {
    MAGIC.len() + 2 + key_ref_len + DEK_ID_LEN + NONCE_LEN + TAG_LEN
}

/// Encrypts `plaintext`, stored under `storage_key` for `session_id`: `CRYPTO_UNAVAILABLE`
/// naming `storage_key` when the cipher cannot run, `INVALID_INPUT` for a key reference longer
/// than the header's length byte holds (none the library builds is).
pub async fn seal(
    dek: &DataKey,
    key_ref: &str,
    nonce: [u8; NONCE_LEN],
    storage_key: &str,
    session_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if key_ref.len() > MAX_KEY_REF_LEN {
        return Err(PersistenceError::invalid_input(
            "keyReference",
            format!("is {} bytes, over {MAX_KEY_REF_LEN}", key_ref.len()),
        ));
    }
    let key_ref = key_ref.as_bytes();
    let mut out = Vec::with_capacity(overhead(key_ref.len()) + plaintext.len());
    out.extend_from_slice(MAGIC);
    out.push(ENVELOPE_VERSION);
    out.push(key_ref.len() as u8);
    out.extend_from_slice(key_ref);
    out.extend_from_slice(&dek.id);
    out.extend_from_slice(&nonce);
    let aad = associated_data(&out, storage_key, session_id);
    let sealed = aead::seal(&dek.key, &nonce, &aad, plaintext)
        .await
        .map_err(|unavailable| unavailable.for_object(storage_key))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Reads the header of an encrypted object (`what` names it in errors): `CORRUPT_DATA` when
/// it is not one or is cut short, `UNSUPPORTED_FORMAT` for a newer envelope version.
pub fn parse<'a>(what: &str, bytes: &'a [u8]) -> Result<Envelope<'a>> {
    let corrupt = |reason: &str| PersistenceError::corrupt(what, reason);
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("is not an encrypted object (no SBPE header)"))?;
    let (&version, rest) = rest
        .split_first()
        .ok_or_else(|| corrupt("encryption header cut short"))?;
    if version != ENVELOPE_VERSION {
        return Err(PersistenceError::UnsupportedFormat {
            what: format!("{what} (encryption header)"),
            version: version.into(),
        });
    }
    let (&ref_len, rest) = rest
        .split_first()
        .ok_or_else(|| corrupt("encryption header cut short"))?;
    let fixed = usize::from(ref_len) + DEK_ID_LEN + NONCE_LEN;
    if rest.len() < fixed + TAG_LEN {
        return Err(corrupt("encryption header or tag cut short"));
    }
    let (key_ref, rest) = rest.split_at(ref_len.into());
    let key_ref = std::str::from_utf8(key_ref)
        .ok()
        .filter(|text| text.is_ascii())
        .ok_or_else(|| corrupt("key reference in the encryption header is not ASCII"))?;
    let (dek_id, rest) = rest.split_at(DEK_ID_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let header_len = bytes.len() - sealed.len();
    Ok(Envelope {
        header: &bytes[..header_len],
        key_ref,
        dek_id: dek_id.try_into().unwrap_or_default(),
        nonce: nonce.try_into().unwrap_or_default(),
        sealed,
    })
}

/// Decrypts `envelope`, stored under `storage_key` for `session_id`, with `dek`:
/// `DECRYPTION_FAILED` naming `what` when authentication fails (damaged, moved, or another
/// key), `CRYPTO_UNAVAILABLE` when the cipher cannot run.
pub async fn open(
    what: &str,
    envelope: &Envelope<'_>,
    dek: &DataKey,
    storage_key: &str,
    session_id: &str,
) -> Result<Vec<u8>> {
    let aad = associated_data(envelope.header, storage_key, session_id);
    aead::open(&dek.key, &envelope.nonce, &aad, envelope.sealed)
        .await
        .map_err(|err| match err {
            OpenError::AuthenticationFailed => PersistenceError::DecryptionFailed {
                what: what.to_owned(),
                reason: "authentication failed: the bytes were changed, moved to another key or \
                         session, or encrypted under another key"
                    .to_owned(),
            },
            OpenError::Unavailable(unavailable) => unavailable.for_object(what),
        })
}

/// header ‖ storage key ‖ 0x00 ‖ session id.
fn associated_data(header: &[u8], storage_key: &str, session_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + storage_key.len() + 1 + session_id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(storage_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(session_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher_test;

    fn dek() -> DataKey {
        DataKey {
            id: [9; DEK_ID_LEN],
            key: SecretKey([3; 32]),
        }
    }

    const KEY: &str = "conversations/2025/01/archive_s1_1.json.gz.enc";

    async fn sealed() -> Vec<u8> {
        seal(&dek(), "users/ab", [5; NONCE_LEN], KEY, "s1", b"plain")
            .await
            .unwrap()
    }

    cipher_test! {
        fn round_trips_with_its_header() {
            let bytes = sealed().await;
            assert_eq!(bytes.len(), overhead(8) + 5);
            assert!(is_encrypted(&bytes));
            let envelope = parse("k", &bytes).unwrap();
            assert_eq!(envelope.key_ref, "users/ab");
            assert_eq!(envelope.dek_id, [9; DEK_ID_LEN]);
            assert_eq!(envelope.nonce, [5; NONCE_LEN]);
            assert_eq!(
                open("k", &envelope, &dek(), KEY, "s1").await.unwrap(),
                b"plain"
            );
        }
    }

    cipher_test! {
        fn any_flipped_byte_or_other_place_fails() {
            let bytes = sealed().await;
            for index in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[index] ^= 0x20;
                let code = match parse("k", &flipped) {
                    Ok(envelope) => match open("k", &envelope, &dek(), KEY, "s1").await {
                        Ok(_) => panic!("byte {index} flipped still decrypted"),
                        Err(err) => err.code(),
                    },
                    Err(err) => err.code(),
                };
                assert!(
                    ["DECRYPTION_FAILED", "CORRUPT_DATA", "UNSUPPORTED_FORMAT"].contains(&code),
                    "{index}: {code}"
                );
            }
            let envelope = parse("k", &bytes).unwrap();
            for (key, session) in [(KEY, "s2"), ("conversations/other.json.gz.enc", "s1")] {
                let err = open("k", &envelope, &dek(), key, session).await.unwrap_err();
                assert_eq!(err.code(), "DECRYPTION_FAILED");
            }
            for cut in [0, 4, 6, 20, bytes.len() - 6] {
                assert_eq!(
                    parse("k", &bytes[..cut]).unwrap_err().code(),
                    "CORRUPT_DATA"
                );
            }
        }
    }
}
