//! The only place that hashes: SHA-256 digests as lowercase hex, and the hashed names of cache
//! entries and users in storage keys ([`KeyHasher`]).
//!
//! Key hashes are domain-separated and length-prefixed (see [`KeyHasher`]), so an embedding, a
//! query and a user never share a hash, and no two different inputs of one kind frame to the same
//! bytes. With a secret they are HMAC-SHA256, so a key name cannot be matched against a dictionary
//! of likely texts or user ids by anyone who can list the namespace but does not hold the secret.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{PersistenceError, Result};
use crate::keys::UserId;

/// SHA-256 of `bytes` as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// SHA-256 of `bytes`, the 32 raw bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of the UTF-8 bytes of `text` as 64 lowercase hex characters.
pub fn hash_text(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// Checks that `bytes` hash to `expected_hex` (case-insensitive); `what` names the object in
/// the [`PersistenceError::ChecksumMismatch`] it returns otherwise.
pub fn verify_sha256(what: &str, bytes: &[u8], expected_hex: &str) -> Result<()> {
    matches_sha256(what, sha256_hex(bytes), expected_hex)
}

/// Inputs of at least this many bytes are hashed by the runtime's `crypto.subtle` in wasm:
/// from about here its fixed cost per call (a promise, ~20–45 µs) is less than sha2's ~3 µs a
/// KB in wasm.
pub const SUBTLE_DIGEST_MIN_BYTES: usize = 16 * 1024;

/// [`sha256_hex`] of a stored object (an archive's bytes, up to tens of MB): in wasm, an input
/// of at least [`SUBTLE_DIGEST_MIN_BYTES`] is hashed by the runtime's `crypto.subtle.digest`,
/// native code (a 555 KB archive: 0.5 ms against 1.6 ms in wasm, Node 22), or by sha2 when
/// the runtime has none. The same digest either way. The benchmark's wasm build (feature
/// `bench`, never shipped) drives the service with `block_on`, which cannot wait for a
/// JavaScript promise: it hashes with sha2.
pub async fn sha256_hex_of_object(bytes: &[u8]) -> String {
    #[cfg(all(target_arch = "wasm32", not(feature = "bench")))]
    if bytes.len() >= SUBTLE_DIGEST_MIN_BYTES {
        if let Ok(digest) = crate::wasm::subtle::sha256_digest(bytes).await {
            return to_hex(&digest);
        }
    }
    sha256_hex(bytes)
}

/// [`verify_sha256`] of a stored object, hashed as [`sha256_hex_of_object`] hashes it.
pub async fn verify_sha256_of_object(what: &str, bytes: &[u8], expected_hex: &str) -> Result<()> {
    matches_sha256(what, sha256_hex_of_object(bytes).await, expected_hex)
}

/// Whether the digest `actual` is `expected_hex` (case-insensitive); a
/// [`PersistenceError::ChecksumMismatch`] naming `what` otherwise.
fn matches_sha256(what: &str, actual: String, expected_hex: &str) -> Result<()> {
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

/// SHA-256 over bytes given a part at a time (the lines of an export stream), so that what is
/// hashed never has to be held whole.
#[derive(Clone, Default)]
pub struct StreamHasher(Sha256);

impl StreamHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `bytes` after everything given before.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The SHA-256 of everything given so far, as 64 lowercase hex characters (the hasher
    /// goes on from there).
    pub fn hex(&self) -> String {
        to_hex(&self.0.clone().finalize())
    }
}

impl fmt::Debug for StreamHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamHasher")
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

/// Domain of embedding cache hashes; parts: the key namespace (the service's embedding model,
/// empty when none), text.
pub const EMBEDDING_DOMAIN: &str = "supportbot-persistence/embedding/v1";
/// Domain of query cache hashes; part: the (normalized unless opted out) query.
pub const QUERY_DOMAIN: &str = "supportbot-persistence/query/v1";
/// Domain of user keys; part: the user id.
pub const USER_DOMAIN: &str = "supportbot-persistence/user/v1";

/// Shortest accepted HMAC secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Hashes texts and ids into the names of KV keys.
///
/// The hashed message is `frame(domain) || frame(part)...` where `frame(x)` is the length of `x`
/// in bytes as a big-endian u64 followed by the bytes of `x` (UTF-8 for text). The digest is
/// SHA-256 of that message ([`KeyHasher::plain`]) or HMAC-SHA256 of it under a secret
/// ([`KeyHasher::keyed`]), as 64 lowercase hex digits. Changing the secret changes every key,
/// which orphans existing cache entries (they expire) and user indexes (they must be rebuilt).
#[derive(Clone, Default)]
pub struct KeyHasher {
    /// HMAC state after absorbing the secret, cloned per hash; `None` for plain SHA-256.
    keyed: Option<Hmac<Sha256>>,
}

impl fmt::Debug for KeyHasher {
    // Never prints the secret (or state derived from it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.is_keyed() {
            "hmac-sha256"
        } else {
            "sha256"
        };
        f.debug_struct("KeyHasher").field("mode", &mode).finish()
    }
}

impl KeyHasher {
    /// Unkeyed SHA-256: anyone can recompute a key from a guessed text.
    pub fn plain() -> Self {
        Self { keyed: None }
    }

    /// HMAC-SHA256 under `secret`, which must be at least [`MIN_SECRET_LEN`] bytes.
    ///
    /// Fails with `INVALID_CONFIG` naming `hashSecret`; the error gives the secret's length,
    /// never its value.
    pub fn keyed(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(PersistenceError::InvalidConfig {
                variable: "hashSecret".to_owned(),
                value: format!("<{} bytes>", secret.len()),
                reason: if secret.is_empty() {
                    "is empty".to_owned()
                } else {
                    format!("must be at least {MIN_SECRET_LEN} bytes")
                },
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| {
            PersistenceError::InvalidConfig {
                variable: "hashSecret".to_owned(),
                value: format!("<{} bytes>", secret.len()),
                reason: "rejected by HMAC-SHA256".to_owned(),
            }
        })?;
        Ok(Self { keyed: Some(mac) })
    }

    /// Whether hashes are keyed with a secret.
    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// Hash for the embedding cache key of `text` in `namespace` (the service's embedding
    /// model): the same text in different namespaces gets different keys. `Some("")` is the
    /// same as `None`.
    pub fn embedding_cache_hash(&self, namespace: Option<&str>, text: &str) -> String {
        let namespace = namespace.unwrap_or("");
        self.hash_parts(EMBEDDING_DOMAIN, &[namespace.as_bytes(), text.as_bytes()])
    }

    /// Hash for the query cache key of `query`; with `normalize`, of [`normalize_query`]`(query)`
    /// so trivially different spellings share one entry.
    pub fn query_cache_hash(&self, query: &str, normalize: bool) -> String {
        if normalize {
            self.hash_parts(QUERY_DOMAIN, &[normalize_query(query).as_bytes()])
        } else {
            self.hash_parts(QUERY_DOMAIN, &[query.as_bytes()])
        }
    }

    /// The user key under which a user's index entries are stored (raw user ids never appear
    /// in keys).
    pub fn user_key(&self, user: &UserId) -> String {
        self.hash_parts(USER_DOMAIN, &[user.as_str().as_bytes()])
    }

    /// Digest of the framed message `frame(domain) || frame(part)...`.
    fn hash_parts(&self, domain: &str, parts: &[&[u8]]) -> String {
        let framed_len: usize = parts.iter().map(|part| 8 + part.len()).sum();
        let mut message = Vec::with_capacity(8 + domain.len() + framed_len);
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            // usize is at most 64 bits on every target this crate builds for.
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part);
        }
        self.digest_hex(&message)
    }

    /// SHA-256 or HMAC-SHA256 (standard, RFC 2104) of `message`, as lowercase hex.
    fn digest_hex(&self, message: &[u8]) -> String {
        match &self.keyed {
            None => sha256_hex(message),
            Some(keyed) => to_hex(&keyed.clone().chain_update(message).finalize().into_bytes()),
        }
    }
}

/// Normalizes a query so trivially different spellings hash alike: trims, case-folds, and
/// collapses every run of Unicode whitespace into one ASCII space.
///
/// Case folding is `char::to_lowercase` plus the full case folds where lowercase differs for
/// letters met in practice (`ß`/`ẞ` → `ss`, final `ς` → `σ`, long `ſ` → `s`, micro sign `µ` →
/// `μ`); the rarer folds of Unicode's CaseFolding.txt (ligatures, some Greek and Armenian
/// forms) are not applied, nor is Unicode normalization (precomposed and decomposed accents stay
/// different). Changing this function changes query keys, so it is versioned by [`QUERY_DOMAIN`].
pub fn normalize_query(query: &str) -> String {
    let mut normalized = String::with_capacity(query.len());
    for word in query.split_whitespace() {
        if !normalized.is_empty() {
            normalized.push(' ');
        }
        for lower in word.chars().flat_map(char::to_lowercase) {
            match lower {
                'ß' => normalized.push_str("ss"),
                'ς' => normalized.push('σ'),
                'ſ' => normalized.push('s'),
                'µ' => normalized.push('μ'),
                other => normalized.push(other),
            }
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_stream_hasher_hashes_its_parts_as_one() {
        let mut hasher = StreamHasher::new();
        assert_eq!(hasher.hex(), hash_text(""));
        hasher.update(b"{\"a\":1}\n");
        hasher.update(b"");
        hasher.update(b"{\"b\":2}\n");
        assert_eq!(hasher.hex(), hash_text("{\"a\":1}\n{\"b\":2}\n"));
        // Reading the digest does not end the hash.
        hasher.update(b"x");
        assert_eq!(hasher.hex(), hash_text("{\"a\":1}\n{\"b\":2}\nx"));
    }

    crate::crypto::cipher_test! {
        /// Hashed by `crypto.subtle` or by sha2 (by size in wasm, always sha2 natively): the same
        /// digest on every size around the threshold, and a mismatch is named.
        fn object_digests_agree_with_sha2_around_the_threshold() {
            for len in [0, 1, 64, SUBTLE_DIGEST_MIN_BYTES - 1, SUBTLE_DIGEST_MIN_BYTES, 100_000] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let digest = sha256_hex(&bytes);
                assert_eq!(sha256_hex_of_object(&bytes).await, digest, "{len} bytes");
                assert_eq!(verify_sha256_of_object("o", &bytes, &digest.to_uppercase()).await, Ok(()));
                let err = verify_sha256_of_object("o", &bytes, &"0".repeat(64)).await.unwrap_err();
                assert_eq!(
                    err,
                    PersistenceError::ChecksumMismatch {
                        what: "o".into(),
                        expected: "0".repeat(64),
                        actual: digest
                    }
                );
            }
        }
    }

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

    const SECRET: &[u8] = b"0123456789abcdef";

    fn keyed() -> KeyHasher {
        KeyHasher::keyed(SECRET).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    // RFC 4231 test cases 1 and 6: the keyed mode is standard HMAC-SHA256.
    #[test]
    fn keyed_mode_matches_rfc_4231() {
        assert_eq!(
            KeyHasher::keyed(&[0x0b; 20])
                .unwrap()
                .digest_hex(b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            KeyHasher::keyed(&[0xaa; 131])
                .unwrap()
                .digest_hex(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(KeyHasher::plain().digest_hex(b"abc"), hash_text("abc"));
    }

    // Computed independently (Python hashlib/hmac) from the framing documented in FORMAT.md.
    #[test]
    fn key_hashes_match_the_documented_framing() {
        let (plain, keyed) = (KeyHasher::plain(), keyed());
        let model = Some("text-embedding-3-small");
        let computed = [
            plain.embedding_cache_hash(model, "hello"),
            plain.embedding_cache_hash(None, "hello"),
            plain.query_cache_hash("hello world", false),
            plain.user_key(&user("user-1")),
            keyed.embedding_cache_hash(model, "hello"),
            keyed.query_cache_hash("  Hello \t World ", true),
            keyed.user_key(&user("user-1")),
        ];
        let documented = [
            "bbab6f68eae0ca35f3f7387b0c8376a29a21a100a927e6964fe76fead7ebfc20",
            "5496c23a82ad4700cd929f0fe27d0ccf588ce8a589caffe7b10838ff8094541a",
            "5829222fde524daef25ae373937bf45bdfda2769f84289d1c1b1baac1ef2f526",
            "6899d87424c4d7e766b79d31322dd1d6cfde7f171d8d148631dd0ef80d364f01",
            "c71d1fddb29f85f770d83027c8ec6361c29de10ecab602d0478432b7c5ee573c",
            "865b147600deb63f066246806fc604e8941a060063cdbf2bddde50e53696c7d4",
            "8f6b27030b15bfc9e3440adab13e19043fa4574646bcf534a62ecbbe229c7e4c",
        ];
        assert_eq!(computed, documented);
    }

    #[test]
    fn domains_models_and_part_boundaries_separate_keys() {
        for hasher in [KeyHasher::plain(), keyed()] {
            let embedding = hasher.embedding_cache_hash(None, "x");
            let query = hasher.query_cache_hash("x", false);
            let user_key = hasher.user_key(&user("x"));
            assert_ne!(embedding, query);
            assert_ne!(embedding, user_key);
            assert_ne!(query, user_key);
            assert_ne!(
                hasher.embedding_cache_hash(Some("ab"), "c"),
                hasher.embedding_cache_hash(Some("a"), "bc")
            );
            assert_ne!(
                hasher.embedding_cache_hash(Some("model-a"), "x"),
                hasher.embedding_cache_hash(Some("model-b"), "x")
            );
            assert_eq!(embedding, hasher.embedding_cache_hash(Some(""), "x"));
            assert_ne!(embedding, hash_text("x"));
        }
    }

    #[test]
    fn secret_changes_every_key() {
        let other = KeyHasher::keyed(b"fedcba9876543210").unwrap();
        for hasher in [KeyHasher::plain(), other] {
            assert_ne!(keyed().user_key(&user("u")), hasher.user_key(&user("u")));
            assert_ne!(
                keyed().query_cache_hash("q", true),
                hasher.query_cache_hash("q", true)
            );
        }
        assert!(keyed().is_keyed());
        assert!(!KeyHasher::default().is_keyed());
    }

    #[test]
    fn rejects_short_secrets_without_revealing_them() {
        for (secret, reason) in [
            (&b""[..], "is empty"),
            (&b"fifteen-bytes!!"[..], "must be at least 16 bytes"),
        ] {
            let err = KeyHasher::keyed(secret).unwrap_err();
            assert_eq!(err.code(), "INVALID_CONFIG");
            assert_eq!(
                err,
                PersistenceError::InvalidConfig {
                    variable: "hashSecret".into(),
                    value: format!("<{} bytes>", secret.len()),
                    reason: reason.into(),
                }
            );
        }
        assert!(!format!("{:?}", keyed()).contains("0123456789abcdef"));
        assert_eq!(
            format!("{:?}", keyed()),
            "KeyHasher { mode: \"hmac-sha256\" }"
        );
    }

    #[test]
    fn normalizes_case_and_unicode_whitespace() {
        assert_eq!(normalize_query("  Hello\t\u{a0}WORLD\n "), "hello world");
        assert_eq!(normalize_query("a\u{3000}\u{2003}b\r\nc"), "a b c");
        assert_eq!(normalize_query(" \u{85}\u{2028} "), "");
        assert_eq!(normalize_query("STRASSE"), normalize_query("Straße"));
        assert_eq!(normalize_query("ẞ"), "ss");
        assert_eq!(normalize_query("ΟΔΟΣ"), normalize_query("οδος"));
        assert_eq!(normalize_query("\u{b5}m"), "\u{3bc}m");
        assert_eq!(normalize_query("ÉCOLE"), "école");
        // U+200B ZERO WIDTH SPACE is not whitespace in Unicode.
        assert_eq!(normalize_query("a\u{200b}b"), "a\u{200b}b");
    }

    #[test]
    fn query_normalization_can_be_opted_out_of() {
        let hasher = keyed();
        assert_eq!(
            hasher.query_cache_hash("  What IS  my balance? ", true),
            hasher.query_cache_hash("what is my balance?", true)
        );
        assert_ne!(
            hasher.query_cache_hash("What is my balance?", false),
            hasher.query_cache_hash("what is my balance?", false)
        );
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn normalization_is_idempotent_and_collapsed(query in any::<String>()) {
            let once = normalize_query(&query);
            prop_assert_eq!(normalize_query(&once), once.clone());
            prop_assert_eq!(once.trim(), once.as_str());
            prop_assert!(!once.contains("  "));
            prop_assert!(once.chars().all(|c| c == ' ' || !c.is_whitespace()));
        }

        #[test]
        fn different_model_text_pairs_get_different_keys(
            m1 in "[a-c]{0,3}", t1 in "[a-c]{0,3}", m2 in "[a-c]{0,3}", t2 in "[a-c]{0,3}"
        ) {
            let hasher = KeyHasher::plain();
            let h1 = hasher.embedding_cache_hash(Some(&m1), &t1);
            let h2 = hasher.embedding_cache_hash(Some(&m2), &t2);
            prop_assert_eq!(h1 == h2, (m1, t1) == (m2, t2));
            prop_assert_eq!(h1.len(), 64);
            prop_assert!(h1.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }
}
