//! AES-256-GCM, the one cipher of envelope encryption: 96-bit nonces, 128-bit tags.
//!
//! `seal` and `open` are async so that the backend can be the runtime's `crypto.subtle`
//! without changing a caller; which backend runs is measured in bench/NOTES.md
//! ("Encryption").

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// A 256-bit key. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub(crate) [u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The authentication failed: wrong key, or the ciphertext, nonce or associated data changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

/// Encrypts `plaintext` under `key` and `nonce`, authenticating `aad` with it: the ciphertext
/// followed by the 16-byte tag.
pub async fn seal(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&key.0.into());
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    // Fails only for a plaintext longer than 2^36 bytes, far beyond any archive.
    cipher
        .encrypt(Nonce::from_slice(nonce), payload)
        .unwrap_or_default()
}

/// Decrypts what [`seal`] returned; `AuthenticationFailed` unless `key`, `nonce`, `aad` and
/// every byte of `sealed` are the ones it was sealed with.
pub async fn open(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, AuthenticationFailed> {
    let cipher = Aes256Gcm::new(&key.0.into());
    let payload = Payload { msg: sealed, aad };
    cipher
        .decrypt(Nonce::from_slice(nonce), payload)
        .map_err(|_| AuthenticationFailed)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::hash::to_hex;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        crate::store::memory::block_on(future)
    }

    /// NIST SP 800-38D / the GCM spec's test case 16 (AES-256, 60-byte plaintext, 20-byte AAD).
    #[test]
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
        let sealed = block_on(seal(&key, &nonce, &aad, &plaintext));
        let ciphertext = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                          8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
        let tag = "76fc6ece0f4e1768cddf8853bb2d551b";
        assert_eq!(to_hex(&sealed), format!("{ciphertext}{tag}"));
        assert_eq!(block_on(open(&key, &nonce, &aad, &sealed)), Ok(plaintext));
    }

    #[test]
    fn any_change_fails_authentication() {
        let key = SecretKey([7; KEY_LEN]);
        let nonce = [1; NONCE_LEN];
        let sealed = block_on(seal(&key, &nonce, b"aad", b"hello"));
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        for index in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[index] ^= 1;
            assert_eq!(
                block_on(open(&key, &nonce, b"aad", &flipped)),
                Err(AuthenticationFailed)
            );
        }
        assert!(block_on(open(&key, &nonce, b"aab", &sealed)).is_err());
        assert!(block_on(open(&key, &[2; NONCE_LEN], b"aad", &sealed)).is_err());
        assert!(block_on(open(&SecretKey([8; KEY_LEN]), &nonce, b"aad", &sealed)).is_err());
        assert!(block_on(open(&key, &nonce, b"aad", &sealed[..TAG_LEN - 1])).is_err());
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
