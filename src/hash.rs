//! The only place that hashes: SHA-256 digests as lowercase hex.

use sha2::{Digest, Sha256};

use crate::error::{PersistenceError, Result};

/// SHA-256 of `bytes` as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// SHA-256 of the UTF-8 bytes of `text` as 64 lowercase hex characters.
pub fn hash_text(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// Checks that `bytes` hash to `expected_hex` (case-insensitive); `what` names the object in
/// the [`PersistenceError::ChecksumMismatch`] it returns otherwise.
pub fn verify_sha256(what: &str, bytes: &[u8], expected_hex: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(expected_hex) {
        Ok(())
    } else {
        Err(PersistenceError::ChecksumMismatch {
            what: what.to_owned(),
            expected: expected_hex.to_owned(),
            actual,
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    // FIPS 180-2 / NIST CSRC example vectors.
    #[test]
    fn sha256_matches_published_vectors() {
        assert_eq!(
            hash_text(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_text("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn verify_reports_both_digests() {
        assert!(verify_sha256("obj", b"abc", &hash_text("abc").to_uppercase()).is_ok());
        let err = verify_sha256("obj", b"abd", &hash_text("abc")).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH");
        assert!(err.to_string().contains("obj"));
        assert!(err.to_string().contains(&hash_text("abd")));
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
