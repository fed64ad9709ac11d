//! A wrapped data key: the R2 object `keys/<reference>.json` holding one owner's data key
//! encrypted by a key-encryption key (docs/FORMAT.md, "Encryption").
//!
//! ```json
//! {"formatVersion":1,"dekId":"<32 hex>","kekId":"k2026","nonce":"<base64, 12 bytes>",
//!  "wrappedKey":"<base64, 48 bytes: 32 of key, 16 of tag>","createdAt":1736157600000}
//! ```
//!
//! The wrapping's associated data is `supportbot-persistence/data-key/v1`, a zero byte, the
//! object's key, a zero byte, the DEK id (hex), a zero byte and the KEK id, so a wrapped key
//! copied to another owner, or relabelled with another id, fails.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::aead::{self, OpenError, SecretKey, KEY_LEN, NONCE_LEN};
use super::envelope::{DataKey, DEK_ID_LEN};
use super::keyring::{Kek, KeyRing};
use crate::error::{PersistenceError, Result};
use crate::hash::to_hex;

/// Version of the wrapped-key object.
pub const WRAPPED_KEY_VERSION: u64 = 1;

const WRAP_DOMAIN: &[u8] = b"supportbot-persistence/data-key/v1";

/// A wrapped-key object as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WrappedKey {
    /// [`WRAPPED_KEY_VERSION`].
    pub format_version: u64,
    /// The data key's id, hex.
    pub dek_id: String,
    /// The KEK that wrapped it.
    pub kek_id: String,
    /// Base64 of the wrapping's nonce.
    pub nonce: String,
    /// Base64 of the encrypted key and its tag.
    pub wrapped_key: String,
    /// When the data key was made (epoch ms); kept across rewrapping.
    pub created_at: i64,
}

impl WrappedKey {
    /// Reads the object stored under `object_key`: `CORRUPT_DATA` naming it when it is not a
    /// wrapped key, `UNSUPPORTED_FORMAT` when it is newer than this library.
    pub fn decode(object_key: &str, bytes: &[u8]) -> Result<Self> {
        let wrapped: WrappedKey = serde_json::from_slice(bytes).map_err(|err| {
            PersistenceError::corrupt(object_key, format!("not a wrapped key: {err}"))
        })?;
        if wrapped.format_version != WRAPPED_KEY_VERSION {
            return Err(PersistenceError::UnsupportedFormat {
                what: object_key.to_owned(),
                version: wrapped.format_version,
            });
        }
        Ok(wrapped)
    }

    /// The object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The data key's id as bytes; `CORRUPT_DATA` naming `object_key` when it is not 32 hex.
    pub fn dek_id_bytes(&self, object_key: &str) -> Result<[u8; DEK_ID_LEN]> {
        decode_hex(&self.dek_id)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| PersistenceError::corrupt(object_key, "dekId is not 32 hex digits"))
    }
}

/// Wraps `dek` with `kek` for the object `object_key`, made at `created_at_ms`:
/// `CRYPTO_UNAVAILABLE` naming `object_key` when the cipher cannot run.
pub async fn wrap(
    object_key: &str,
    dek: &DataKey,
    kek: &Kek,
    nonce: [u8; NONCE_LEN],
    created_at_ms: i64,
) -> Result<WrappedKey> {
    let dek_id = to_hex(&dek.id);
    let aad = wrap_aad(object_key, &dek_id, &kek.id);
    let sealed = aead::seal(&kek.key, &nonce, &aad, &dek.key.0)
        .await
        .map_err(|unavailable| unavailable.for_object(object_key))?;
    Ok(WrappedKey {
        format_version: WRAPPED_KEY_VERSION,
        dek_id,
        kek_id: kek.id.clone(),
        nonce: STANDARD.encode(nonce),
        wrapped_key: STANDARD.encode(sealed),
        created_at: created_at_ms,
    })
}

/// Unwraps the data key stored under `object_key` with the KEK it names: `KEY_UNAVAILABLE`
/// when that KEK is not in `ring`, `DECRYPTION_FAILED` when it does not authenticate (a KEK
/// with that id but other bytes, or a changed object), `CORRUPT_DATA` when malformed,
/// `CRYPTO_UNAVAILABLE` when the cipher cannot run.
pub async fn unwrap(ring: &KeyRing, object_key: &str, wrapped: &WrappedKey) -> Result<DataKey> {
    let corrupt = |reason: &str| PersistenceError::corrupt(object_key, reason);
    let kek = ring
        .get(&wrapped.kek_id)
        .ok_or_else(|| PersistenceError::KeyUnavailable {
            what: object_key.to_owned(),
            key_id: format!("key-encryption key {:?}", wrapped.kek_id),
        })?;
    let id = wrapped.dek_id_bytes(object_key)?;
    let nonce: [u8; NONCE_LEN] = STANDARD
        .decode(&wrapped.nonce)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| corrupt("nonce is not base64 of 12 bytes"))?;
    let sealed = STANDARD
        .decode(&wrapped.wrapped_key)
        .map_err(|_| corrupt("wrappedKey is not base64"))?;
    let aad = wrap_aad(object_key, &wrapped.dek_id, &wrapped.kek_id);
    let key = aead::open(&kek.key, &nonce, &aad, &sealed)
        .await
        .map_err(|err| match err {
            OpenError::AuthenticationFailed => PersistenceError::DecryptionFailed {
                what: object_key.to_owned(),
                reason: format!(
                    "the data key does not authenticate under key-encryption key {:?} (another \
                     key with that id, or the object was changed)",
                    wrapped.kek_id
                ),
            },
            OpenError::Unavailable(unavailable) => unavailable.for_object(object_key),
        })?;
    let key: [u8; KEY_LEN] = key
        .try_into()
        .map_err(|_| corrupt("the wrapped data key is not 32 bytes"))?;
    Ok(DataKey {
        id,
        key: SecretKey(key),
    })
}

fn wrap_aad(object_key: &str, dek_id_hex: &str, kek_id: &str) -> Vec<u8> {
    let mut aad = WRAP_DOMAIN.to_vec();
    for part in [object_key, dek_id_hex, kek_id] {
        aad.push(0);
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::cipher_test;

    const OBJECT: &str = "keys/sessions/s1.json";

    fn ring() -> KeyRing {
        let key = |byte: u8| STANDARD.encode([byte; 32]);
        KeyRing::from_value(
            "encryptionKeys",
            &json!([{"id": "new", "key": key(1)}, {"id": "old", "key": key(2)}]),
        )
        .unwrap()
    }

    fn dek() -> DataKey {
        DataKey {
            id: [0xab; DEK_ID_LEN],
            key: SecretKey([7; KEY_LEN]),
        }
    }

    cipher_test! {
        fn wraps_and_unwraps_with_any_configured_kek() {
            let ring = ring();
            for kek_id in ["new", "old"] {
                let kek = ring.get(kek_id).unwrap();
                let wrapped = wrap(OBJECT, &dek(), kek, [4; NONCE_LEN], 5).await.unwrap();
                assert_eq!(wrapped.kek_id, kek_id);
                let stored = WrappedKey::decode(OBJECT, &wrapped.encode()).unwrap();
                assert_eq!(unwrap(&ring, OBJECT, &stored).await.unwrap(), dek());
                assert!(!String::from_utf8(wrapped.encode())
                    .unwrap()
                    .contains(&STANDARD.encode([7u8; 32])));
            }
        }
    }

    cipher_test! {
        fn refuses_a_missing_kek_a_moved_or_changed_key() {
            let ring = ring();
            let wrapped = wrap(OBJECT, &dek(), ring.newest(), [4; NONCE_LEN], 5)
                .await
                .unwrap();
            let only_old = KeyRing::from_value(
                "k",
                &json!([{"id": "old", "key": STANDARD.encode([2u8; 32])}]),
            )
            .unwrap();
            let err = unwrap(&only_old, OBJECT, &wrapped).await.unwrap_err();
            assert_eq!(err.code(), "KEY_UNAVAILABLE");
            assert!(err.to_string().contains("\"new\""), "{err}");
            let err = unwrap(&ring, "keys/sessions/s2.json", &wrapped)
                .await
                .unwrap_err();
            assert_eq!(err.code(), "DECRYPTION_FAILED");
            let relabelled = WrappedKey {
                dek_id: "cd".repeat(16),
                ..wrapped.clone()
            };
            assert_eq!(
                unwrap(&ring, OBJECT, &relabelled).await.unwrap_err()
                    .code(),
                "DECRYPTION_FAILED"
            );
            let bad_nonce = WrappedKey {
                nonce: "AAAA".into(),
                ..wrapped.clone()
            };
            assert_eq!(
                unwrap(&ring, OBJECT, &bad_nonce).await.unwrap_err()
                    .code(),
                "CORRUPT_DATA"
            );
            let newer = br#"{"formatVersion":2,"dekId":"","kekId":"","nonce":"","wrappedKey":"","createdAt":0}"#;
            assert_eq!(
                WrappedKey::decode(OBJECT, newer).unwrap_err().code(),
                "UNSUPPORTED_FORMAT"
            );
            assert_eq!(
                WrappedKey::decode(OBJECT, b"{}").unwrap_err().code(),
                "CORRUPT_DATA"
            );
        }
    }
}
