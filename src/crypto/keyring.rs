//! The key-encryption keys (KEKs): `encryptionKeys: [{id, key}]`, newest first, from a Worker
//! secret (`PERSISTENCE_ENCRYPTION_KEYS`). Errors name the entry and never echo key material.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::aead::{SecretKey, KEY_LEN};
use crate::error::{PersistenceError, Result};

/// Longest KEK id: it is written into every wrapped data key.
pub const MAX_KEK_ID_LEN: usize = 64;

/// One key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kek {
    /// Its name, recorded beside every data key it wraps.
    pub id: String,
    /// The key.
    pub key: SecretKey,
}

/// The configured KEKs, newest first: new data keys are wrapped by the first; any of them
/// unwraps what it wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    keks: Vec<Kek>,
}

impl KeyRing {
    /// Reads a JSON array of `{id, key}` (`key`: base64 of 32 bytes). `variable` names the
    /// setting in errors (`encryptionKeys` or `PERSISTENCE_ENCRYPTION_KEYS`), each entry by its
    /// index (and its id once that is known); a key is never echoed.
    pub fn from_value(variable: &str, value: &Value) -> Result<Self> {
        let entries = value
            .as_array()
            .ok_or_else(|| invalid(variable, "must be a JSON array of {id, key}"))?;
        if entries.is_empty() {
            return Err(invalid(variable, "must hold at least one key"));
        }
        let mut keks: Vec<Kek> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let kek = read_entry(&format!("{variable}[{index}]"), entry)?;
            if keks.iter().any(|earlier| earlier.id == kek.id) {
                let reason = format!("id {:?} appears twice", kek.id);
                return Err(invalid(&format!("{variable}[{index}]"), &reason));
            }
            keks.push(kek);
        }
        Ok(KeyRing { keks })
    }

    /// [`Self::from_value`] of JSON text (a Worker secret).
    pub fn from_text(variable: &str, text: &str) -> Result<Self> {
        // serde_json's message may quote the text: it is withheld.
        let value: Value = serde_json::from_str(text)
            .map_err(|_| invalid(variable, "is not JSON (expected [{\"id\":…,\"key\":…}])"))?;
        Self::from_value(variable, &value)
    }

    /// The KEK new data keys are wrapped by.
    pub fn newest(&self) -> &Kek {
        // `from_value` refuses an empty list.
        &self.keks[0]
    }

    /// The KEK named `id`, if configured.
    pub fn get(&self, id: &str) -> Option<&Kek> {
        self.keks.iter().find(|kek| kek.id == id)
    }

    /// The configured KEKs as `[{id, key}]` (what [`Self::from_value`] reads).
    pub fn to_value(&self) -> Value {
        let entries = self
            .keks
            .iter()
            .map(|kek| serde_json::json!({ "id": kek.id, "key": STANDARD.encode(kek.key.0) }));
        Value::Array(entries.collect())
    }
}

fn read_entry(what: &str, entry: &Value) -> Result<Kek> {
    let object = entry
        .as_object()
        .ok_or_else(|| invalid(what, "must be an object {id, key}"))?;
    if let Some(extra) = object.keys().find(|name| *name != "id" && *name != "key") {
        return Err(invalid(what, &format!("unknown field {extra:?}")));
    }
    let id = match object.get("id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid(what, "id must be a string")),
    };
    let id_ok = !id.is_empty()
        && id.len() <= MAX_KEK_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    if !id_ok {
        let reason = format!("id must be 1-{MAX_KEK_ID_LEN} characters of A-Z a-z 0-9 . _ -");
        return Err(invalid(what, &reason));
    }
    let named = |reason: &str| invalid(what, &format!("(id {id:?}) {reason}"));
    let Some(Value::String(text)) = object.get("key") else {
        return Err(named("key must be a string (base64 of 32 bytes)"));
    };
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| named("key is not base64"))?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        named(&format!(
            "key is {} bytes, not {KEY_LEN} (AES-256)",
            bytes.len()
        ))
    })?;
    Ok(Kek {
        id: id.clone(),
        key: SecretKey(key),
    })
}

/// `INVALID_CONFIG` naming `variable`; the value is always withheld (it holds keys).
fn invalid(variable: &str, reason: &str) -> PersistenceError {
    PersistenceError::InvalidConfig {
        variable: variable.to_owned(),
        value: String::new(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn reads_keys_newest_first() {
        let text = format!(r#"[{{"id":"k2","key":"{KEY_B}"}},{{"id":"k1","key":"{KEY_A}"}}]"#);
        let ring = KeyRing::from_text("PERSISTENCE_ENCRYPTION_KEYS", &text).unwrap();
        assert_eq!(ring.newest().id, "k2");
        assert_eq!(ring.get("k1").unwrap().key.0[31], 31);
        assert!(ring.get("k3").is_none());
        assert_eq!(KeyRing::from_value("x", &ring.to_value()).unwrap(), ring);
        assert!(!format!("{ring:?}").contains(KEY_A));
    }

    #[test]
    fn bad_entries_are_named_and_never_echo_a_key() {
        let short = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
        let cases = [
            (
                "not json".to_owned(),
                "PERSISTENCE_ENCRYPTION_KEYS",
                "is not JSON",
            ),
            ("{}".to_owned(), "PERSISTENCE_ENCRYPTION_KEYS", "JSON array"),
            (
                "[]".to_owned(),
                "PERSISTENCE_ENCRYPTION_KEYS",
                "at least one",
            ),
            (format!(r#"["{KEY_A}"]"#), "[0]", "must be an object"),
            (
                format!(r#"[{{"key":"{KEY_A}"}}]"#),
                "[0]",
                "id must be a string",
            ),
            (
                format!(r#"[{{"id":"a b","key":"{KEY_A}"}}]"#),
                "[0]",
                "id must be",
            ),
            (
                r#"[{"id":"k1","key":"!!notbase64"}]"#.to_owned(),
                "[0]",
                "not base64",
            ),
            (
                format!(r#"[{{"id":"k1","key":"{short}"}}]"#),
                "[0]",
                "31 bytes",
            ),
            (
                r#"[{"id":"k1","key":7}]"#.to_owned(),
                "[0]",
                "key must be a string",
            ),
            (
                format!(r#"[{{"id":"k1","key":"{KEY_A}","kid":1}}]"#),
                "[0]",
                "unknown field",
            ),
            (
                format!(r#"[{{"id":"k1","key":"{KEY_A}"}},{{"id":"k1","key":"{KEY_B}"}}]"#),
                "[1]",
                "appears twice",
            ),
        ];
        for (text, variable, reason) in cases {
            let err = KeyRing::from_text("PERSISTENCE_ENCRYPTION_KEYS", &text).unwrap_err();
            let message = err.to_string();
            assert_eq!(err.code(), "INVALID_CONFIG", "{text}");
            assert!(message.contains(variable), "{text}: {message}");
            assert!(message.contains(reason), "{text}: {message}");
            for secret in [KEY_A, KEY_B, short, "!!notbase64", "not json"] {
                assert!(!message.contains(secret), "{text}: {message}");
            }
        }
    }
}
