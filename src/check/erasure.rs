//! The erasure tombstones of a copy (`erasures/<userKey>.json`, `erasures/conversations/<sid>.json`,
//! docs/FORMAT.md "Erasure") and which archives they cover: a copy taken while an erasure ran
//! still holds archives the store already treats as erased, which the offline checker must
//! neither export nor report as damaged. A copy has no R2 custom metadata, so each tombstone
//! is read from its body.

use std::collections::BTreeMap;

use super::kind::parse_conversation_tombstone_key;
use crate::crypto::envelope;
use crate::hash::KeyHasher;
use crate::keys::{
    conversation_tombstone_key, erasure_tombstone_key, parse_archive_object_key,
    parse_erasure_tombstone_key, parse_segment_session_id, SessionId, UserId,
};
use crate::service::tombstone::Tombstone;

/// Why an archive is erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erased {
    /// A tombstone (its key: `erasures/….json`) covers the archive's time.
    Covered(String),
    /// The archive cannot be read, its envelope names the data key of a user whose tombstone
    /// (its key) began at most 60 s before the archive's time: written under the data key the
    /// erasure destroyed.
    KeyDestroyed(String),
}

impl Erased {
    /// The tombstone's key.
    pub fn tombstone(&self) -> &str {
        match self {
            Erased::Covered(key) | Erased::KeyDestroyed(key) => key,
        }
    }
}

/// What one archive says of its user: its user id (when it was read) and the user key its
/// encryption envelope names (when it is encrypted under a user's data key).
#[derive(Debug, Clone, Default)]
pub struct ArchiveOwner {
    /// The archive's `userId` hashed with the store's hasher, when it was read and has one.
    pub hashed_user_key: Option<String>,
    /// The `users/<userKey>` of its envelope's key reference.
    pub sealed_for: Option<String>,
}

/// Every tombstone of a copy, by user key and by conversation.
#[derive(Debug, Default)]
pub struct Erasures {
    users: BTreeMap<String, Tombstone>,
    conversations: BTreeMap<String, Tombstone>,
}

impl Erasures {
    /// Adds the tombstone `bytes` under `key`; `false` (nothing added) when `key` is not a
    /// tombstone's or its body does not read (`check_tombstone` reports it).
    pub fn add(&mut self, key: &str, bytes: &[u8]) -> bool {
        let Ok(tombstone) = serde_json::from_slice::<Tombstone>(bytes) else {
            return false;
        };
        if let Some(user_key) = parse_erasure_tombstone_key(key) {
            if user_key != tombstone.user_key {
                return false;
            }
            self.users.insert(user_key.to_owned(), tombstone);
        } else if let Some(session) = parse_conversation_tombstone_key(key) {
            self.conversations
                .insert(session.as_str().to_owned(), tombstone);
        } else {
            return false;
        }
        true
    }

    /// Whether the copy holds any user's tombstone.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `user_key` has a tombstone.
    pub fn is_erased_user(&self, user_key: &str) -> bool {
        self.users.contains_key(user_key)
    }

    /// What the archive `bytes` under `key` says of its user: `user_id` (its document's, when
    /// it was read) hashed with `hasher`, and the user key its envelope names.
    pub fn owner(
        hasher: &KeyHasher,
        key: &str,
        bytes: &[u8],
        user_id: Option<&str>,
    ) -> ArchiveOwner {
        let hashed_user_key = user_id
            .and_then(|user_id| UserId::parse(user_id).ok())
            .map(|user_id| hasher.user_key(&user_id));
        let sealed_for = parse_archive_object_key(key)
            .filter(|parsed| parsed.encrypted)
            .and_then(|_| envelope::parse(key, bytes).ok())
            .and_then(|sealed| sealed.key_ref.strip_prefix("users/").map(str::to_owned));
        ArchiveOwner {
            hashed_user_key,
            sealed_for,
        }
    }

    /// Whether an erasure covers the archive under `key` of `owner` (`readable`: its document
    /// was read): its user's tombstone covers its time (`Tombstone::covers`), or for a segment
    /// (`<sid>:segment-<n>`) its conversation's does; or, unreadable, it was sealed under the
    /// data key of a user whose erasure began at most 60 s before it (the key destroyed).
    pub fn erasure_of(&self, key: &str, owner: &ArchiveOwner, readable: bool) -> Option<Erased> {
        let parsed = parse_archive_object_key(key)?;
        let at = parsed.archived_at_ms;
        let users = [
            owner.hashed_user_key.as_deref(),
            owner.sealed_for.as_deref(),
        ];
        for user_key in users.into_iter().flatten() {
            if self.users.get(user_key).is_some_and(|t| t.covers(at)) {
                return Some(Erased::Covered(erasure_tombstone_key(user_key)));
            }
        }
        let parent = parse_segment_session_id(parsed.session_id.as_str())
            .and_then(|(parent, _)| SessionId::parse(parent).ok());
        if let Some(parent) = parent {
            if self
                .conversations
                .get(parent.as_str())
                .is_some_and(|t| t.covers(at))
            {
                return Some(Erased::Covered(conversation_tombstone_key(&parent)));
            }
        }
        let sealed_for = owner.sealed_for.as_deref().filter(|_| !readable)?;
        self.users
            .get(sealed_for)
            .filter(|t| t.under_destroyed_key(at))
            .map(|_| Erased::KeyDestroyed(erasure_tombstone_key(sealed_for)))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::keys::{archive_object_key, encrypted_archive_object_key};

    const ERASED_AT: i64 = 1_736_157_600_000;

    fn body(user_key: &str) -> String {
        format!(
            r#"{{"formatVersion":1,"userKey":"{user_key}","erasedAt":{ERASED_AT},"completedAt":null}}"#
        )
    }

    fn session(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    #[test]
    fn tombstones_cover_their_users_and_conversations_up_to_their_time() {
        let hasher = KeyHasher::plain();
        let alice = hasher.user_key(&UserId::parse("alice").unwrap());
        let mut erasures = Erasures::default();
        assert!(!erasures.has_users());
        assert!(erasures.add(&erasure_tombstone_key(&alice), body(&alice).as_bytes()));
        assert!(erasures.add(
            &conversation_tombstone_key(&session("c1")),
            body(&alice).as_bytes()
        ));
        // Not a tombstone's key, another user's body, or no JSON: nothing added.
        let other = "ab".repeat(32);
        assert!(!erasures.add(&erasure_tombstone_key(&other), body(&alice).as_bytes()));
        assert!(!erasures.add(&erasure_tombstone_key(&other), b"{"));
        assert!(!erasures.add("keys/x.json", body(&alice).as_bytes()));
        assert!(erasures.has_users() && erasures.is_erased_user(&alice));

        let plain = |sid: &str, at: i64| archive_object_key(&session(sid), at).unwrap();
        let owner = Erasures::owner(&hasher, &plain("s1", ERASED_AT), b"", Some("alice"));
        assert_eq!(owner.hashed_user_key.as_deref(), Some(alice.as_str()));
        let tombstone = erasure_tombstone_key(&alice);
        assert_eq!(
            erasures.erasure_of(&plain("s1", ERASED_AT), &owner, true),
            Some(Erased::Covered(tombstone.clone()))
        );
        assert_eq!(
            erasures.erasure_of(&plain("s1", ERASED_AT + 1), &owner, true),
            None
        );
        let bob = Erasures::owner(&hasher, &plain("s1", ERASED_AT), b"", Some("bob"));
        assert_eq!(
            erasures.erasure_of(&plain("s1", ERASED_AT), &bob, true),
            None
        );

        // A segment by its conversation's tombstone.
        let none = ArchiveOwner::default();
        let segment = plain("c1:segment-000001", ERASED_AT - 5);
        assert_eq!(
            erasures.erasure_of(&segment, &none, true),
            Some(Erased::Covered(conversation_tombstone_key(&session("c1"))))
        );
        assert_eq!(
            erasures.erasure_of(&plain("c2:segment-000001", 0), &none, true),
            None
        );

        // Sealed under the destroyed key: erased when unreadable, up to 60 s after.
        let sealed = ArchiveOwner {
            hashed_user_key: None,
            sealed_for: Some(alice.clone()),
        };
        let enc = |at: i64| encrypted_archive_object_key(&session("s9"), at).unwrap();
        assert_eq!(
            erasures.erasure_of(&enc(ERASED_AT + 60_000), &sealed, false),
            Some(Erased::KeyDestroyed(tombstone.clone()))
        );
        assert_eq!(
            erasures.erasure_of(&enc(ERASED_AT + 60_000), &sealed, true),
            None
        );
        assert_eq!(
            erasures.erasure_of(&enc(ERASED_AT + 60_001), &sealed, false),
            None
        );
        assert_eq!(
            erasures.erasure_of(&enc(ERASED_AT), &sealed, true),
            Some(Erased::Covered(tombstone))
        );
    }
}
