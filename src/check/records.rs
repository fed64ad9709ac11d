//! Checking the small JSON objects beside the archives: wrapped data keys and erasure
//! tombstones.

use serde::Deserialize;

use super::kind::parse_conversation_tombstone_key;
use super::{Finding, ObjectCheck, ObjectKind, Problem};
use crate::crypto::data_key::{unwrap, WrappedKey};
use crate::crypto::keyring::KeyRing;
use crate::keys::{parse_data_key_object, parse_erasure_tombstone_key};

/// Checks the wrapped data key `bytes` under `key`: its form and id, and, with `ring`, that a
/// KEK unwraps it (`key_unavailable` when none of the given KEKs has its `kekId`).
pub async fn check_data_key(key: &str, bytes: &[u8], ring: Option<&KeyRing>) -> ObjectCheck {
    let mut check = ObjectCheck::new(ObjectKind::DataKey);
    if parse_data_key_object(key).is_none() {
        check.find(Finding::new(Problem::UnexpectedKey, "not a data key's key"));
        return check;
    }
    let wrapped = match WrappedKey::decode(key, bytes) {
        Ok(wrapped) => wrapped,
        Err(err) => {
            check.find(Finding::of_error(&err, Problem::CorruptDocument));
            return check;
        }
    };
    check.fact("dekId", wrapped.dek_id.as_str());
    check.fact("kekId", wrapped.kek_id.as_str());
    check.fact("createdAt", wrapped.created_at);
    if let Err(err) = wrapped.dek_id_bytes(key) {
        check.find(Finding::of_error(&err, Problem::CorruptDocument));
        return check;
    }
    if let Some(ring) = ring {
        match unwrap(ring, key, &wrapped).await {
            Ok(_) => check.fact("unwrapped", true),
            Err(err) => check.find(Finding::of_error(&err, Problem::CorruptDocument)),
        }
    }
    check
}

/// A tombstone's body (written by `service::tombstone`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TombstoneBody {
    format_version: u64,
    user_key: String,
    erased_at: i64,
    completed_at: Option<i64>,
}

/// Checks the erasure tombstone `bytes` under `key` (a user's, or a conversation's): JSON of
/// format 1, naming the user of its key (a user's tombstone), with times that are epoch ms.
pub fn check_tombstone(key: &str, bytes: &[u8]) -> ObjectCheck {
    let user_key = parse_erasure_tombstone_key(key);
    let conversation = parse_conversation_tombstone_key(key);
    let kind = if conversation.is_some() {
        ObjectKind::ConversationTombstone
    } else {
        ObjectKind::Tombstone
    };
    let mut check = ObjectCheck::new(kind);
    if user_key.is_none() && conversation.is_none() {
        check.find(Finding::new(
            Problem::UnexpectedKey,
            "not a tombstone's key",
        ));
        return check;
    }
    let body: TombstoneBody = match serde_json::from_slice(bytes) {
        Ok(body) => body,
        Err(err) => {
            let reason = format!("not a tombstone: {err}");
            check.find(Finding::new(Problem::CorruptDocument, reason));
            return check;
        }
    };
    check.fact("formatVersion", body.format_version);
    check.fact("erasedAt", body.erased_at);
    check.fact("completedAt", body.completed_at);
    let wrong = if body.format_version != 1 {
        Some(if body.format_version > 1 {
            (
                Problem::UnsupportedFormat,
                format!("formatVersion {}", body.format_version),
            )
        } else {
            (Problem::CorruptDocument, "formatVersion 0".to_owned())
        })
    } else if user_key.is_some_and(|expected| expected != body.user_key) {
        let reason = format!("userKey {} is not the key's", body.user_key);
        Some((Problem::CorruptDocument, reason))
    } else if body.erased_at < 0 || body.completed_at.is_some_and(|at| at < body.erased_at) {
        let reason = "erasedAt is negative, or completedAt before it".to_owned();
        Some((Problem::CorruptDocument, reason))
    } else {
        None
    };
    if let Some((problem, reason)) = wrong {
        check.find(Finding::new(problem, reason));
    }
    check
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_tombstone_must_name_its_key_user_with_times_in_order() {
        let user_key = "ab".repeat(32);
        let key = format!("erasures/{user_key}.json");
        let body = |user: &str, completed: &str| {
            format!(
                "{{\"formatVersion\":1,\"userKey\":\"{user}\",\"erasedAt\":10,\"completedAt\":{completed}}}"
            )
        };
        let problems = |check: ObjectCheck| -> Vec<Problem> {
            check
                .findings
                .iter()
                .map(|finding| finding.problem)
                .collect()
        };
        assert_eq!(
            problems(check_tombstone(&key, body(&user_key, "null").as_bytes())),
            []
        );
        assert_eq!(
            problems(check_tombstone(&key, body(&user_key, "20").as_bytes())),
            []
        );
        let other = "cd".repeat(32);
        let wrong = [body(&other, "null"), body(&user_key, "5"), "{".to_owned()];
        for wrong in wrong {
            let found = problems(check_tombstone(&key, wrong.as_bytes()));
            assert_eq!(found, [Problem::CorruptDocument], "{wrong}");
        }
        // A conversation's tombstone names the erased user, whoever that is.
        let conversation = "erasures/conversations/chat-1.json";
        let check = check_tombstone(conversation, body(&other, "null").as_bytes());
        assert_eq!(check.kind, ObjectKind::ConversationTombstone);
        assert_eq!(problems(check), []);
    }
}
