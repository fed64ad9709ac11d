//! AES-256-GCM, the one cipher of envelope encryption: 96-bit nonces, 128-bit tags.
//!
//! Two backends give byte-identical output (ciphertext ‖ 16-byte tag): RustCrypto's `aes-gcm`
//! ([`software`]), and in wasm the runtime's `crypto.subtle` (`crate::wasm::subtle`). In wasm,
//! inputs over [`SOFTWARE_MAX_BYTES`] (archive bodies) go to `crypto.subtle`, ~12× faster than
//! AES compiled to wasm at archive sizes, and smaller ones (summaries, data keys) stay in wasm,
//! where a call costs ~3 µs against subtle's fixed ~30–45 µs (a listing decrypts one summary
//! per entry). Natively everything is `aes-gcm`. `seal` and `open` are async for subtle. The
//! choice is measured in bench/NOTES.md ("Encryption").

use crate::error::PersistenceError;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// Largest plaintext (or ciphertext without its tag) the wasm build encrypts in wasm rather
/// than with `crypto.subtle`: below about this size AES in wasm (~70 MB/s) costs less than
/// subtle's fixed cost per call.
pub const SOFTWARE_MAX_BYTES: usize = 1024;

/// A 256-bit key. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub(crate) [u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The cipher could not run: in wasm, the runtime has no `crypto.subtle` or refused the call.
/// `reason` is the runtime's own error, which never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherUnavailable {
    /// What failed, e.g. `crypto.subtle.encrypt rejected: TypeError: ...`.
    pub reason: String,
}

impl CipherUnavailable {
    /// `CRYPTO_UNAVAILABLE` naming `what`, the object being encrypted or decrypted.
    pub fn for_object(self, what: &str) -> PersistenceError {
        PersistenceError::CryptoUnavailable {
            what: what.to_owned(),
            reason: self.reason,
        }
    }
}

/// Why [`open`] returned no plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Wrong key, or the ciphertext, nonce or associated data changed.
    AuthenticationFailed,
    /// The cipher could not run; nothing was checked.
    Unavailable(CipherUnavailable),
}

/// Encrypts `plaintext` under `key` and `nonce`, authenticating `aad` with it: the ciphertext
/// followed by the 16-byte tag.
pub async fn seal(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CipherUnavailable> {
    #[cfg(target_arch = "wasm32")]
    if plaintext.len() > SOFTWARE_MAX_BYTES {
        return crate::wasm::subtle::seal(key, nonce, aad, plaintext).await;
    }
    software::seal(key, nonce, aad, plaintext)
}

/// Decrypts what [`seal`] returned; `AuthenticationFailed` unless `key`, `nonce`, `aad` and
/// every byte of `sealed` are the ones it was sealed with.
pub async fn open(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < TAG_LEN {
        // No tag to check: the same answer from every backend, without a call.
        return Err(OpenError::AuthenticationFailed);
    }
    #[cfg(target_arch = "wasm32")]
    if sealed.len() - TAG_LEN > SOFTWARE_MAX_BYTES {
        return crate::wasm::subtle::open(key, nonce, aad, sealed).await;
    }
    software::open(key, nonce, aad, sealed)
}

/// RustCrypto's `aes-gcm`: everything natively, small inputs in wasm.
pub(crate) mod software {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};

    use super::{CipherUnavailable, OpenError, SecretKey, NONCE_LEN};

    /// [`super::seal`] in software.
    pub fn seal(
        key: &SecretKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherUnavailable> {
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        Aes256Gcm::new(&key.0.into())
            .encrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CipherUnavailable {
                // Its one failure: a plaintext longer than 2^36 bytes, far beyond any archive.
                reason: format!("aes-gcm refused a plaintext of {} bytes", plaintext.len()),
            })
    }

    /// [`super::open`] in software.
    pub fn open(
        key: &SecretKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let payload = Payload { msg: sealed, aad };
        Aes256Gcm::new(&key.0.into())
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cipher_test;
    use crate::hash::{sha256_hex, to_hex};

    cipher_test! {
        /// NIST SP 800-38D / the GCM spec's test case 16 (AES-256, 60-byte plaintext, 20-byte
        /// AAD): the same bytes from `aes-gcm` natively and from `crypto.subtle` in wasm.
        fn matches_the_gcm_test_vector() {
            let key = SecretKey(
                hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                    .try_into()
                    .unwrap(),
            );
            let nonce: [u8; NONCE_LEN] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
            let plaintext = hex(
                "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c9595680953\
                 2fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            );
            let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
            let sealed = seal(&key, &nonce, &aad, &plaintext).await.unwrap();
            let ciphertext = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                              8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
            let tag = "76fc6ece0f4e1768cddf8853bb2d551b";
            assert_eq!(to_hex(&sealed), format!("{ciphertext}{tag}"));
            assert_eq!(open(&key, &nonce, &aad, &sealed).await, Ok(plaintext));
        }
    }

    cipher_test! {
        /// An archive-sized input: both backends give these bytes (the SHA-256 is also what
        /// Node's OpenSSL AES-256-GCM gives), and open them again.
        fn large_inputs_seal_to_the_same_bytes_everywhere() {
            let key = SecretKey(std::array::from_fn(|i| i as u8));
            let nonce = [0x5a; NONCE_LEN];
            let aad = vec![0xa5; 300];
            let plaintext: Vec<u8> = (0..250_000u32).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = seal(&key, &nonce, &aad, &plaintext).await.unwrap();
            assert_eq!(sealed.len(), plaintext.len() + TAG_LEN);
            assert_eq!(sha256_hex(&sealed), LARGE_SEALED_SHA256);
            assert_eq!(open(&key, &nonce, &aad, &sealed).await, Ok(plaintext));
        }
    }

    /// In wasm, `crypto.subtle` and the software cipher agree byte for byte on every size
    /// around the threshold, and each opens what the other sealed; `seal` and `open` pick by
    /// size.
    #[cfg(target_arch = "wasm32")]
    #[wasm_bindgen_test::wasm_bindgen_test]
    async fn both_wasm_backends_agree_around_the_threshold() {
        use crate::wasm::subtle;
        let key = SecretKey([9; KEY_LEN]);
        let nonce = [6; NONCE_LEN];
        for len in [0, 1, 60, SOFTWARE_MAX_BYTES, SOFTWARE_MAX_BYTES + 1, 5000] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
            let soft = software::seal(&key, &nonce, b"aad", &plaintext).unwrap();
            let subtle_sealed = subtle::seal(&key, &nonce, b"aad", &plaintext)
                .await
                .unwrap();
            assert_eq!(soft, subtle_sealed, "{len} bytes");
            assert_eq!(seal(&key, &nonce, b"aad", &plaintext).await.unwrap(), soft);
            let opened = subtle::open(&key, &nonce, b"aad", &soft).await;
            assert_eq!(opened, Ok(plaintext.clone()), "{len} bytes");
            let opened = software::open(&key, &nonce, b"aad", &subtle_sealed);
            assert_eq!(opened, Ok(plaintext), "{len} bytes");
        }
    }

    const LARGE_SEALED_SHA256: &str =
        "e2b38278544452fedd4b842b35de33d71224c44d3b3669c36e522492cee4328b";

    cipher_test! {
        fn round_trips_and_any_change_fails_authentication() {
            let key = SecretKey([7; KEY_LEN]);
            let nonce = [1; NONCE_LEN];
            let sealed = seal(&key, &nonce, b"aad", b"hello").await.unwrap();
            assert_eq!(sealed.len(), 5 + TAG_LEN);
            assert_eq!(open(&key, &nonce, b"aad", &sealed).await.unwrap(), b"hello");
            for index in 0..sealed.len() {
                let mut flipped = sealed.clone();
                flipped[index] ^= 1;
                assert_eq!(
                    open(&key, &nonce, b"aad", &flipped).await,
                    Err(OpenError::AuthenticationFailed)
                );
            }
            let refused = [
                open(&key, &nonce, b"aab", &sealed).await,
                open(&key, &[2; NONCE_LEN], b"aad", &sealed).await,
                open(&SecretKey([8; KEY_LEN]), &nonce, b"aad", &sealed).await,
                open(&key, &nonce, b"aad", &sealed[..TAG_LEN - 1]).await,
                open(&key, &nonce, b"aad", &sealed[..TAG_LEN]).await,
            ];
            for outcome in refused {
                assert_eq!(outcome, Err(OpenError::AuthenticationFailed));
            }
        }
    }

    cipher_test! {
        /// An empty plaintext is a bare tag, and opens to nothing.
        fn seals_an_empty_plaintext() {
            let key = SecretKey([3; KEY_LEN]);
            let sealed = seal(&key, &[4; NONCE_LEN], b"", b"").await.unwrap();
            assert_eq!(sealed.len(), TAG_LEN);
            assert_eq!(open(&key, &[4; NONCE_LEN], b"", &sealed).await, Ok(Vec::new()));
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
