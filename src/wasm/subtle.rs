//! AES-256-GCM over the runtime's `crypto.subtle`: the wasm backend of
//! [`crate::crypto::aead`], byte-identical to the native one (ciphertext ‖ 16-byte tag); and
//! SHA-256 of large inputs for [`crate::hash::sha256_hex_of_object`] (`sha256_digest`).
//!
//! Each key is imported once (`importKey` costs ~10 µs a call in Node) and its `CryptoKey`
//! kept, non-extractable, in a small per-isolate cache named by the SHA-256 of the key: the
//! cache holds no key bytes of its own, and nothing here logs.

use std::cell::RefCell;
use std::collections::BTreeMap;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::binding_failure::js_error_message;
use super::bindings::SubtleCrypto;
use crate::crypto::aead::{CipherUnavailable, OpenError, SecretKey, NONCE_LEN, TAG_LEN};
use crate::hash::sha256;

/// Most `CryptoKey`s kept; past it the cache starts afresh. A service uses its KEKs and one
/// data key per owner it touches, so 64 covers an invocation.
const MAX_CACHED_KEYS: usize = 64;

thread_local! {
    /// `crypto.subtle`, once found.
    static SUBTLE: RefCell<Option<SubtleCrypto>> = const { RefCell::new(None) };
    /// Imported keys by the SHA-256 of their bytes.
    static CRYPTO_KEYS: RefCell<BTreeMap<[u8; 32], JsValue>> = const { RefCell::new(BTreeMap::new()) };
}

/// `crypto.subtle.encrypt` with AES-GCM: the ciphertext and its 16-byte tag.
pub async fn seal(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CipherUnavailable> {
    let subtle = subtle()?;
    let crypto_key = crypto_key(&subtle, key).await?;
    let algorithm = aes_gcm_params(nonce, aad)?;
    let promise = subtle
        .encrypt(&algorithm, &crypto_key, plaintext)
        .map_err(|thrown| failed("encrypt", &thrown))?;
    let buffer = JsFuture::from(promise)
        .await
        .map_err(|rejected| failed("encrypt", &rejected))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// `crypto.subtle.digest("SHA-256", bytes)`: the 32 bytes of the digest.
pub async fn sha256_digest(bytes: &[u8]) -> Result<[u8; 32], CipherUnavailable> {
    let subtle = subtle()?;
    let promise = subtle
        .digest("SHA-256", bytes)
        .map_err(|thrown| failed("digest", &thrown))?;
    let buffer = JsFuture::from(promise)
        .await
        .map_err(|rejected| failed("digest", &rejected))?;
    Uint8Array::new(&buffer)
        .to_vec()
        .try_into()
        .map_err(|digest: Vec<u8>| CipherUnavailable {
            reason: format!("crypto.subtle.digest gave {} bytes, not 32", digest.len()),
        })
}

/// `crypto.subtle.decrypt` with AES-GCM: `AuthenticationFailed` when it rejects with an
/// `OperationError` (the one error Web Crypto gives for a tag that does not verify).
pub async fn open(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let subtle = subtle().map_err(OpenError::Unavailable)?;
    let crypto_key = crypto_key(&subtle, key)
        .await
        .map_err(OpenError::Unavailable)?;
    let algorithm = aes_gcm_params(nonce, aad).map_err(OpenError::Unavailable)?;
    let promise = subtle
        .decrypt(&algorithm, &crypto_key, sealed)
        .map_err(|thrown| OpenError::Unavailable(failed("decrypt", &thrown)))?;
    match JsFuture::from(promise).await {
        Ok(buffer) => Ok(Uint8Array::new(&buffer).to_vec()),
        Err(rejected) if error_name(&rejected).as_deref() == Some("OperationError") => {
            Err(OpenError::AuthenticationFailed)
        }
        Err(rejected) => Err(OpenError::Unavailable(failed("decrypt", &rejected))),
    }
}

/// `globalThis.crypto.subtle`, or why there is none (an old runtime, or a page served over
/// plain HTTP, where browsers leave it undefined).
fn subtle() -> Result<SubtleCrypto, CipherUnavailable> {
    if let Some(subtle) = SUBTLE.with_borrow(Clone::clone) {
        return Ok(subtle);
    }
    let property = |object: &JsValue, name: &str| {
        Reflect::get(object, &JsValue::from_str(name))
            .ok()
            .filter(JsValue::is_object)
    };
    let subtle: SubtleCrypto = property(&js_sys::global().into(), "crypto")
        .and_then(|crypto| property(&crypto, "subtle"))
        .ok_or_else(|| CipherUnavailable {
            reason: "globalThis.crypto.subtle is not available in this runtime".to_owned(),
        })?
        .unchecked_into();
    SUBTLE.set(Some(subtle.clone()));
    Ok(subtle)
}

/// The `CryptoKey` of `key`, imported on first use.
async fn crypto_key(subtle: &SubtleCrypto, key: &SecretKey) -> Result<JsValue, CipherUnavailable> {
    let name = sha256(&key.0);
    if let Some(cached) = CRYPTO_KEYS.with_borrow(|keys| keys.get(&name).cloned()) {
        return Ok(cached);
    }
    let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
    let promise = subtle
        .import_key("raw", &key.0, "AES-GCM", false, &usages)
        .map_err(|thrown| failed("importKey", &thrown))?;
    let crypto_key = JsFuture::from(promise)
        .await
        .map_err(|rejected| failed("importKey", &rejected))?;
    CRYPTO_KEYS.with_borrow_mut(|keys| {
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(name, crypto_key.clone());
    });
    Ok(crypto_key)
}

/// `{name: "AES-GCM", iv, additionalData, tagLength: 128}`. The nonce and associated data are
/// copied into JS arrays: they are small, and a copy cannot be a view that outlives its bytes.
fn aes_gcm_params(nonce: &[u8; NONCE_LEN], aad: &[u8]) -> Result<Object, CipherUnavailable> {
    let params = Object::new();
    let tag_bits = JsValue::from(8 * TAG_LEN as u32);
    let fields: [(&str, JsValue); 4] = [
        ("name", "AES-GCM".into()),
        ("iv", Uint8Array::from(nonce.as_slice()).into()),
        ("additionalData", Uint8Array::from(aad).into()),
        ("tagLength", tag_bits),
    ];
    for (name, value) in fields {
        // Fails only on a frozen or proxied object; a fresh one is neither.
        Reflect::set(&params, &name.into(), &value).map_err(|thrown| CipherUnavailable {
            reason: format!("cannot build AesGcmParams: {}", js_error_message(&thrown)),
        })?;
    }
    Ok(params)
}

/// `err.name` of a rejection, when it has one.
fn error_name(rejected: &JsValue) -> Option<String> {
    Reflect::get(rejected, &"name".into()).ok()?.as_string()
}

fn failed(operation: &str, thrown: &JsValue) -> CipherUnavailable {
    CipherUnavailable {
        reason: format!(
            "crypto.subtle.{operation} failed: {}",
            js_error_message(thrown)
        ),
    }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    async fn the_key_cache_stays_bounded_and_keys_stay_usable() {
        let nonce = [1; NONCE_LEN];
        let mut first = None;
        for byte in 0..=(MAX_CACHED_KEYS as u8 + 6) {
            let key = SecretKey([byte; 32]);
            let sealed = seal(&key, &nonce, b"aad", b"text").await.unwrap();
            assert_eq!(open(&key, &nonce, b"aad", &sealed).await.unwrap(), b"text");
            first.get_or_insert(sealed);
            assert!(CRYPTO_KEYS.with_borrow(BTreeMap::len) <= MAX_CACHED_KEYS);
        }
        // The first key left the cache when it was cleared, and is imported again.
        let again = seal(&SecretKey([0; 32]), &nonce, b"aad", b"text").await;
        assert_eq!(again.ok(), first);
    }

    #[test]
    async fn a_wrong_key_is_an_authentication_failure_not_an_outage() {
        let nonce = [2; NONCE_LEN];
        let sealed = seal(&SecretKey([1; 32]), &nonce, b"", b"text")
            .await
            .unwrap();
        let outcome = open(&SecretKey([2; 32]), &nonce, b"", &sealed).await;
        assert_eq!(outcome, Err(OpenError::AuthenticationFailed));
    }
}
