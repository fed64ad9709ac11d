//! The sets of archive keys a verification pass carries from one phase to the next in its
//! resume point, so that a fact already seen in a listing costs no storage call: which archives
//! the index entries point at (listed before the archives are read: an archive found there needs
//! no KV get of its entry), and which archives exist (read before the entries are checked: an
//! entry pointing at one needs no R2 head).
//!
//! A key is kept as the first 8 bytes of its SHA-256: 8 bytes whatever its length, and two keys
//! of a pass share them with a probability of about n²/2^65 (n = 10^6: 3·10^-8), in which case
//! a missing index entry or archive goes unnoticed for that pass. A set holds at most
//! [`MAX_KEYS`]; past that it is dropped and every lookup costs its storage call again.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::sha256;

/// Keys one set holds (1.6 MB, 2.1 MB of base64 in the resume point).
pub(super) const MAX_KEYS: usize = 200_000;

/// The first 8 bytes of the SHA-256 of `key`, big-endian (also what sample slots are cut from).
pub(super) fn key_hash(key: &str) -> u64 {
    let digest = sha256(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// A set of keys by [`key_hash`]; `None` in a position once it overflowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeySet {
    /// Sorted and without repeats, except for what was inserted since the last [`Self::seal`].
    hashes: Vec<u64>,
}

impl KeySet {
    /// Adds `key`; false when the set is full (the caller drops it).
    pub fn insert(&mut self, key: &str) -> bool {
        if self.hashes.len() >= MAX_KEYS {
            return false;
        }
        self.hashes.push(key_hash(key));
        true
    }

    /// Sorts what was inserted, for [`Self::contains`].
    pub fn seal(&mut self) {
        self.hashes.sort_unstable();
        self.hashes.dedup();
    }

    /// Whether `key` was inserted before the last [`Self::seal`].
    pub fn contains(&self, key: &str) -> bool {
        self.hashes.binary_search(&key_hash(key)).is_ok()
    }
}

/// Adds `key` to `set`, dropping a set that is full.
pub(super) fn insert(set: &mut Option<KeySet>, key: &str) {
    if set.as_mut().is_some_and(|keys| !keys.insert(key)) {
        *set = None;
    }
}

/// Whether `set` is known to hold `key` (a dropped set knows nothing).
pub(super) fn holds(set: &Option<KeySet>, key: &str) -> bool {
    set.as_ref().is_some_and(|keys| keys.contains(key))
}

/// Base64 of the hashes, 8 bytes each, big-endian.
impl Serialize for KeySet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self
            .hashes
            .iter()
            .flat_map(|hash| hash.to_be_bytes())
            .collect();
        serializer.serialize_str(&STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for KeySet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(text)
            .map_err(|err| serde::de::Error::custom(format!("key set: {err}")))?;
        if bytes.len() % 8 != 0 || bytes.len() / 8 > MAX_KEYS {
            return Err(serde::de::Error::custom(
                "key set: not a list of 8-byte hashes",
            ));
        }
        let mut set = KeySet {
            hashes: bytes
                .chunks_exact(8)
                .map(|chunk| {
                    let mut hash = [0u8; 8];
                    hash.copy_from_slice(chunk);
                    u64::from_be_bytes(hash)
                })
                .collect(),
        };
        set.seal();
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_set_holds_what_was_inserted_and_survives_its_json() {
        let mut set = Some(KeySet::default());
        for n in 0..100 {
            insert(
                &mut set,
                &format!("conversations/2025/01/archive_s{n}_1.json.gz"),
            );
        }
        let mut set = set.unwrap();
        set.seal();
        assert!(set.contains("conversations/2025/01/archive_s7_1.json.gz"));
        assert!(!set.contains("conversations/2025/01/archive_s100_1.json.gz"));
        let text = serde_json::to_string(&set).unwrap();
        let read: KeySet = serde_json::from_str(&text).unwrap();
        assert_eq!(read, set);
        assert!(serde_json::from_str::<KeySet>("\"AAAA\"").is_err());
    }

    #[test]
    fn a_full_set_is_dropped_and_then_knows_nothing() {
        let mut set = Some(KeySet {
            hashes: vec![0; MAX_KEYS],
        });
        insert(&mut set, "one more");
        assert_eq!(set, None);
        assert!(!holds(&set, "one more"));
    }
}
