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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::log::OpLog;
use super::DataPersistenceService;
use crate::codec::json_text;
use crate::error::{PersistenceError, Result};
use crate::keys::{erasure_tombstone_key, UserId};
use crate::store::{Clock, KvStore, ObjectMeta, ObjectPutOptions, ObjectStore, Rng};

/// Custom metadata field of a tombstone: when the erasure began (decimal epoch ms).
const ERASED_AT_FIELD: &str = "erasedAt";
/// Custom metadata field of a tombstone: when its sweep completed (decimal epoch ms).
const COMPLETED_AT_FIELD: &str = "completedAt";
/// Content type of tombstone objects.
const TOMBSTONE_CONTENT_TYPE: &str = "application/json";

/// An erasure tombstone: `{"formatVersion":1,"userKey":"<64 hex>","erasedAt":<ms>,
/// "completedAt":<ms>|null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Tombstone {
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
}

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

    /// Writes (or replaces) a tombstone. Costs 1 R2 put.
    pub(super) async fn put_tombstone(&self, log: &OpLog<'_>, tombstone: &Tombstone) -> Result<()> {
        let key = erasure_tombstone_key(&tombstone.user_key);
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
        self.r2_put(log, &key, body.as_bytes(), options).await?;
        Ok(())
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
