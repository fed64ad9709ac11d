//! Erasure tombstones: the record that a user's data was erased at a time, which every path
//! that could bring that data back consults (listing, retrieval, restore, import), so that a
//! person's erasure holds from the moment it is requested, before its sweep has deleted
//! anything (docs/FORMAT.md "Erasure").
//!
//! A tombstone is an R2 object, `erasures/<userKey>.json` — R2, not KV, because R2 is strongly
//! consistent: a tombstone written in one location is seen by the next read anywhere, where a
//! KV one could stay invisible for a minute. It holds the hashed user key and two times, no
//! personal data, and its times are also its custom metadata, so a `head` reads it. An archive
//! of the user is erased when it was archived at or before `erasedAt`; what the user archives
//! afterwards is theirs again, under a new data key.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::log::OpLog;
use super::DataPersistenceService;
use crate::codec::archive::{DecodedArchiveJson, View, ENCRYPTED_SUMMARY_FIELD};
use crate::codec::json_text;
use crate::crypto::envelope;
use crate::error::{PersistenceError, Result};
use crate::hash::KeyHasher;
use crate::keys::{
    conversation_tombstone_key, erasure_tombstone_key, parse_archive_object_key,
    parse_erasure_tombstone_key, parse_segment_session_id, SessionId, UserId, ERASURE_PREFIX,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::store::{
    Clock, KvStore, ObjectListOptions, ObjectMeta, ObjectPutOptions, ObjectStore, Rng,
};

/// Custom metadata field of a tombstone: when the erasure began (decimal epoch ms).
const ERASED_AT_FIELD: &str = "erasedAt";
/// Custom metadata field of a tombstone: when its sweep completed (decimal epoch ms).
pub(super) const COMPLETED_AT_FIELD: &str = "completedAt";
/// Content type of tombstone objects.
const TOMBSTONE_CONTENT_TYPE: &str = "application/json";

/// An erasure tombstone: `{"formatVersion":1,"userKey":"<64 hex>","erasedAt":<ms>,
/// "completedAt":<ms>|null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tombstone {
    /// Always 1.
    pub format_version: u32,
    /// The erased user's hashed key.
    pub user_key: String,
    /// When the erasure began: every archive of the user made at or before it is erased.
    pub erased_at: i64,
    /// When the sweep finished deleting, once it has.
    pub completed_at: Option<i64>,
}

impl Tombstone {
    /// A tombstone of `user_key` for an erasure beginning at `erased_at`.
    pub fn new(user_key: &str, erased_at: i64) -> Self {
        Tombstone {
            format_version: 1,
            user_key: user_key.to_owned(),
            erased_at,
            completed_at: None,
        }
    }

    /// The tombstone described by a head of its object; `CORRUPT_DATA` naming the key when
    /// its custom metadata has no valid `erasedAt`.
    fn from_meta(user_key: &str, meta: &ObjectMeta) -> Result<Self> {
        let time = |field: &str| -> Result<Option<i64>> {
            meta.custom_metadata
                .get(field)
                .map(|value| {
                    value.parse::<i64>().map_err(|_| {
                        PersistenceError::corrupt(
                            &meta.key,
                            format!("customMetadata {field} {value:?} is not a time"),
                        )
                    })
                })
                .transpose()
        };
        let erased_at = time(ERASED_AT_FIELD)?.ok_or_else(|| {
            PersistenceError::corrupt(&meta.key, "customMetadata has no erasedAt")
        })?;
        Ok(Tombstone {
            completed_at: time(COMPLETED_AT_FIELD)?,
            ..Tombstone::new(user_key, erased_at)
        })
    }

    /// Whether an archive made at `archived_at_ms` is one this erasure covers.
    pub fn covers(&self, archived_at_ms: i64) -> bool {
        archived_at_ms <= self.erased_at
    }

    /// Whether an archive made at `archived_at_ms` may have been sealed under the data key
    /// this erasure destroyed (at most [`KEY_DESTRUCTION_WINDOW_MS`] after it began): such an
    /// archive can never be read, and is erased when it cannot be.
    pub fn under_destroyed_key(&self, archived_at_ms: i64) -> bool {
        archived_at_ms <= self.erased_at.saturating_add(KEY_DESTRUCTION_WINDOW_MS)
    }
}

/// How long after an erasure began an archive may still have been written under the data key
/// it destroys (the key is deleted by the call after the tombstone's, retried at most for
/// seconds): such an archive can never be read, and its listing entry is hidden.
const KEY_DESTRUCTION_WINDOW_MS: i64 = 60_000;

/// Users on a listing page whose tombstones are read one by one (1 R2 head each); a page of
/// more users lists every tombstone instead (1 R2 list per 1000 erased users).
const HEADS_BEFORE_LISTING: usize = 3;

/// The same for the archives one restore call writes: a restore step must stay within its
/// subrequests, so more than one user means one listing.
pub(super) const RESTORE_HEADS_BEFORE_LISTING: usize = 1;

/// The tombstones one operation has read, by user key, so that each is read once however many
/// archives of its user the operation meets.
#[derive(Debug, Default)]
pub(super) struct ErasureCheck(BTreeMap<String, Option<Tombstone>>);

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// The tombstone of `user_key`, if the user was ever erased. Costs 1 R2 head. A failed
    /// read is an error, never "not erased": a caller must not show what may be erased.
    pub(super) async fn read_tombstone(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
    ) -> Result<Option<Tombstone>> {
        let key = erasure_tombstone_key(user_key);
        match self.r2_head(log, &key).await? {
            Some(meta) => Tombstone::from_meta(user_key, &meta).map(Some),
            None => Ok(None),
        }
    }

    /// Writes (or replaces) a user's tombstone, and copies it to the replica bucket. Costs 1
    /// R2 put (with a replica, see `put_tombstone_at`); returns the calls made.
    pub(super) async fn put_tombstone(
        &self,
        log: &OpLog<'_>,
        tombstone: &Tombstone,
    ) -> Result<u32> {
        let key = erasure_tombstone_key(&tombstone.user_key);
        self.put_tombstone_at(log, &key, tombstone).await
    }

    /// Writes `tombstone` under `key`, then copies it to the replica bucket (a replica read
    /// after losing the primary still knows who was erased). Costs 1 R2 put; with a replica,
    /// 1 replica put (and 1 KV put when that fails). Returns the calls made.
    async fn put_tombstone_at(
        &self,
        log: &OpLog<'_>,
        key: &str,
        tombstone: &Tombstone,
    ) -> Result<u32> {
        let body = json_text(tombstone);
        let mut custom_metadata =
            BTreeMap::from([(ERASED_AT_FIELD.to_owned(), tombstone.erased_at.to_string())]);
        if let Some(completed_at) = tombstone.completed_at {
            custom_metadata.insert(COMPLETED_AT_FIELD.to_owned(), completed_at.to_string());
        }
        let options = ObjectPutOptions {
            content_type: Some(TOMBSTONE_CONTENT_TYPE.to_owned()),
            sha256: Some(crate::hash::sha256_hex(body.as_bytes())),
            custom_metadata,
            ..ObjectPutOptions::default()
        };
        self.r2_put(log, key, body.as_bytes(), options.clone())
            .await?;
        Ok(1 + self
            .replicate_put(log, key, body.as_bytes(), &options)
            .await)
    }

    /// Whether the archive of `user_id` made at `archived_at_ms` is erased (its user has a
    /// tombstone covering it). An archive without a user is never. Costs 1 R2 head the first
    /// time `check` meets a user.
    pub(super) async fn is_erased(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        user_id: Option<&str>,
        archived_at_ms: i64,
    ) -> Result<bool> {
        let Some(user_id) = user_id else {
            return Ok(false);
        };
        let user_key = self.options.hasher.user_key(&UserId::parse(user_id)?);
        Ok(self
            .tombstone_of(log, check, &user_key)
            .await?
            .is_some_and(|tombstone| tombstone.covers(archived_at_ms)))
    }

    /// Whether the archive of `session_id` (of `user_id`) made at `archived_at_ms` is erased:
    /// its user's tombstone covers it, or, for a segment (`<sid>:segment-<n>`, which records no
    /// user), its conversation's tombstone does. Costs 1 R2 head the first time `check` meets
    /// a user or a conversation.
    pub(super) async fn is_erased_archive(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        session_id: &str,
        user_id: Option<&str>,
        archived_at_ms: i64,
    ) -> Result<bool> {
        if user_id.is_some() {
            return self.is_erased(log, check, user_id, archived_at_ms).await;
        }
        let Some(parent) = parse_segment_session_id(session_id)
            .and_then(|(parent, _)| SessionId::parse(parent).ok())
        else {
            return Ok(false);
        };
        self.conversation_erased(log, check, &parent, archived_at_ms)
            .await
    }

    /// Whether an erasure covers what the conversation `parent` stored at `at_ms` (its
    /// segments, its segment data key). Costs 1 R2 head the first time `check` meets it.
    pub(super) async fn conversation_erased(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        parent: &SessionId,
        at_ms: i64,
    ) -> Result<bool> {
        let key = conversation_tombstone_key(parent);
        if !check.0.contains_key(&key) {
            let tombstone = match self.r2_head(log, &key).await? {
                Some(meta) => Some(Tombstone::from_meta("", &meta)?),
                None => None,
            };
            check.0.insert(key.clone(), tombstone);
        }
        Ok(check
            .0
            .get(&key)
            .and_then(Option::as_ref)
            .is_some_and(|tombstone| tombstone.covers(at_ms)))
    }

    /// Writes the tombstone of a conversation whose segments an erasure deletes (its body
    /// names the user by key, as the user's own). Costs as `put_tombstone`; returns the calls.
    pub(super) async fn put_conversation_tombstone(
        &self,
        log: &OpLog<'_>,
        conversation: &SessionId,
        tombstone: &Tombstone,
    ) -> Result<u32> {
        self.put_tombstone_at(log, &conversation_tombstone_key(conversation), tombstone)
            .await
    }

    /// Decodes an archive's stored bytes in `view` (`decode_stored_archive`) unless it is erased: its
    /// user has a tombstone covering it, or its data key is unavailable and it was archived
    /// by a user with a tombstone at most [`KEY_DESTRUCTION_WINDOW_MS`] after the erasure
    /// began (written under the key the erasure was destroying). `None` when erased (logged).
    /// Costs 1 R2 head when the archive has a user, besides the decoding.
    // `decode_stored_archive`'s arguments and the erasure check: bundling them would only
    // move the list into a struct built at each of the two call sites.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn decode_unless_erased(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        key: &str,
        stored: &[u8],
        expected_sha256: Option<&str>,
        read_limit: u64,
        view: View<'_>,
    ) -> Result<Option<DecodedArchiveJson>> {
        let decoded = match self
            .decode_stored_archive(log, key, stored, expected_sha256, read_limit, view)
            .await
        {
            Ok(decoded) => decoded,
            Err(err @ PersistenceError::KeyUnavailable { .. }) => {
                let sealed_for = envelope::parse(key, stored)
                    .ok()
                    .and_then(|sealed| sealed.key_ref.strip_prefix("users/").map(str::to_owned));
                let archived_at = parse_archive_object_key(key).map(|parsed| parsed.archived_at_ms);
                if let (Some(user_key), Some(archived_at)) = (sealed_for, archived_at) {
                    let erased = self.tombstone_of(log, check, &user_key).await?;
                    if erased.is_some_and(|tombstone| tombstone.under_destroyed_key(archived_at)) {
                        log.event(
                            "info",
                            "archive erased (its data key is destroyed)",
                            json!({ "key": key }),
                        );
                        return Ok(None);
                    }
                }
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let metadata = &decoded.metadata;
        if self
            .is_erased_archive(
                log,
                check,
                &metadata.session_id,
                metadata.user_id.as_deref(),
                metadata.archived_at,
            )
            .await?
        {
            log.event(
                "info",
                "archive erased (its user's tombstone covers it)",
                json!({ "key": key }),
            );
            return Ok(None);
        }
        Ok(Some(decoded))
    }

    /// Drops from a listing page the entries that are erased: their user's tombstone covers
    /// them (`listing_user`: the user key of a user's listing, whose entries are all theirs;
    /// else each entry's `userId`). Costs 1 R2 head for a user's listing; for a page of
    /// several users, 1 R2 head per user up to [`HEADS_BEFORE_LISTING`], else 1 R2 list per
    /// 1000 tombstones. Call [`Self::hide_unreadable_erased`] after the summaries are revealed.
    pub(super) async fn hide_erased(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        listing_user: Option<&str>,
        archives: &mut Vec<Value>,
    ) -> Result<()> {
        if listing_user.is_none() {
            let users = archives
                .iter()
                .filter_map(|entry| entry_user_key(&self.options.hasher, entry))
                .collect();
            self.preload_tombstones(log, check, users, HEADS_BEFORE_LISTING)
                .await?;
        }
        let mut kept = Vec::with_capacity(archives.len());
        for entry in archives.drain(..) {
            let user_key = match listing_user {
                Some(user_key) => Some(user_key.to_owned()),
                None => entry_user_key(&self.options.hasher, &entry),
            };
            let archived_at = entry.get("archivedAt").and_then(Value::as_i64);
            let erased = match (user_key, archived_at) {
                (Some(user_key), Some(archived_at)) => self
                    .tombstone_of(log, check, &user_key)
                    .await?
                    .is_some_and(|tombstone| tombstone.covers(archived_at)),
                _ => false,
            };
            if !erased {
                kept.push(entry);
            }
        }
        *archives = kept;
        Ok(())
    }

    /// Drops the entries whose summary could not be decrypted and that were archived within
    /// [`KEY_DESTRUCTION_WINDOW_MS`] after their user's erasure began: archives written under
    /// the data key the erasure was destroying. Reads nothing: `check` holds every tombstone
    /// of the page after [`Self::hide_erased`].
    pub(super) fn hide_unreadable_erased(
        &self,
        check: &ErasureCheck,
        listing_user: Option<&str>,
        archives: &mut Vec<Value>,
    ) {
        archives.retain(|entry| {
            if entry.get(ENCRYPTED_SUMMARY_FIELD).is_none() {
                return true;
            }
            let user_key = match listing_user {
                Some(user_key) => Some(user_key.to_owned()),
                None => entry_user_key(&self.options.hasher, entry),
            };
            let archived_at = entry.get("archivedAt").and_then(Value::as_i64);
            let under_destroyed_key = |tombstone: &Tombstone| {
                archived_at.is_some_and(|archived_at| tombstone.under_destroyed_key(archived_at))
            };
            !user_key.is_some_and(|user_key| {
                matches!(check.0.get(&user_key), Some(Some(tombstone)) if under_destroyed_key(tombstone))
            })
        });
    }

    /// Reads the tombstones of `users` into `check` at once by listing them all (1 R2 list per
    /// 1000 tombstones) when more than `max_heads` of them are not read yet; else leaves them
    /// to be read one by one (1 R2 head each) as they are met.
    pub(super) async fn preload_tombstones(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        mut users: BTreeSet<String>,
        max_heads: usize,
    ) -> Result<()> {
        users.retain(|user_key| !check.0.contains_key(user_key));
        if users.len() > max_heads {
            self.list_tombstones(log, check, &users).await?;
        }
        Ok(())
    }

    /// Reads every tombstone (1 R2 list per 1000) into `check` for the `wanted` users, those
    /// without one as not erased.
    async fn list_tombstones(
        &self,
        log: &OpLog<'_>,
        check: &mut ErasureCheck,
        wanted: &BTreeSet<String>,
    ) -> Result<()> {
        let mut after = None;
        loop {
            let listing = ObjectListOptions {
                prefix: Some(ERASURE_PREFIX.to_owned()),
                start_after: after.take(),
                limit: Some(MAX_LIST_LIMIT),
                include_custom_metadata: true,
                ..ObjectListOptions::default()
            };
            let page = self.r2_list(log, listing).await?;
            for object in &page.objects {
                let Some(user_key) = parse_erasure_tombstone_key(&object.key) else {
                    continue;
                };
                if wanted.contains(user_key) {
                    let meta = ObjectMeta {
                        key: object.key.clone(),
                        size: object.size,
                        uploaded_ms: object.uploaded_ms,
                        custom_metadata: object.custom_metadata.clone().unwrap_or_default(),
                        sha256: None,
                        etag: None,
                    };
                    let tombstone = Tombstone::from_meta(user_key, &meta)?;
                    check.0.insert(user_key.to_owned(), Some(tombstone));
                }
            }
            if !page.truncated {
                break;
            }
            after = page.objects.last().map(|object| object.key.clone());
        }
        for user_key in wanted {
            check.0.entry(user_key.clone()).or_insert(None);
        }
        Ok(())
    }

    /// The tombstone of `user_key`, read once per `check`.
    pub(super) async fn tombstone_of<'c>(
        &self,
        log: &OpLog<'_>,
        check: &'c mut ErasureCheck,
        user_key: &str,
    ) -> Result<Option<&'c Tombstone>> {
        if !check.0.contains_key(user_key) {
            let tombstone = self.read_tombstone(log, user_key).await?;
            check.0.insert(user_key.to_owned(), tombstone);
        }
        Ok(check.0.get(user_key).and_then(Option::as_ref))
    }
}

/// The user key of a listing entry's `userId`, if it has a valid one.
fn entry_user_key(hasher: &KeyHasher, entry: &Value) -> Option<String> {
    let user_id = UserId::parse(entry.get("userId")?.as_str()?).ok()?;
    Some(hasher.user_key(&user_id))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn tombstones_are_camel_case_json_without_personal_data() {
        let tombstone = Tombstone::new(&"a".repeat(64), 1_736_157_600_000);
        assert_eq!(
            json_text(&tombstone),
            format!(
                r#"{{"formatVersion":1,"userKey":"{}","erasedAt":1736157600000,"completedAt":null}}"#,
                "a".repeat(64)
            )
        );
        assert!(tombstone.covers(1_736_157_600_000));
        assert!(!tombstone.covers(1_736_157_600_001));
    }

    #[test]
    fn a_tombstone_is_read_from_its_custom_metadata() {
        let mut meta = ObjectMeta {
            key: "erasures/x.json".into(),
            size: 0,
            uploaded_ms: 0,
            custom_metadata: BTreeMap::from([
                ("erasedAt".into(), "5".into()),
                ("completedAt".into(), "9".into()),
            ]),
            sha256: None,
            etag: None,
        };
        let read = Tombstone::from_meta("k", &meta).unwrap();
        assert_eq!((read.erased_at, read.completed_at), (5, Some(9)));
        meta.custom_metadata
            .insert("erasedAt".into(), "soon".into());
        let err = Tombstone::from_meta("k", &meta).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("erasures/x.json"), "{err}");
    }
}
