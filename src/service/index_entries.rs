//! The KV entries that make a stored archive findable, shared by archiving and restoring:
//! `archive_meta:<sid>` (the session's newest archive: its metadata and R2 key) and the global
//! and per-user index entries (holding the R2 key). All carry the listing summary, with the
//! R2 `key`, as list metadata, so a listing needs no `get` per key and the retention sweep can
//! tell which archive an entry points at. None gets a KV `expirationTtl`: retention deletes
//! them with their archive.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::log::OpLog;
use super::DataPersistenceService;

use crate::codec::archive::{
    listing_summary, r2_custom_metadata, ArchiveMetadata, CUSTOM_SHA256_FIELD,
};
use crate::error::{PersistenceError, Result};
use crate::hash::KeyHasher;
use crate::keys::{
    archive_index_key, archive_meta_key, legacy_archive_object_key, parse_archive_object_key,
    user_index_key, SessionId, UserId,
};
use crate::store::{Clock, KvPutOptions, KvStore, ObjectMeta, ObjectStore, Rng};

/// Custom metadata field of an archive object naming its owner by hashed user key, so that an
/// erasure finds a user's archives from an R2 listing alone, whatever KV shows.
pub(super) const OWNER_KEY_FIELD: &str = "userKey";

/// The R2 custom metadata of an archive object: what `r2_custom_metadata` gives it, plus its
/// owner's hashed key ([`OWNER_KEY_FIELD`]) when it has one (docs/FORMAT.md "R2 customMetadata").
pub(super) fn archive_custom_metadata(
    hasher: &KeyHasher,
    metadata: &ArchiveMetadata,
) -> Result<BTreeMap<String, String>> {
    let mut fields: BTreeMap<String, String> = r2_custom_metadata(metadata)?.into_iter().collect();
    if let Some(user_id) = &metadata.user_id {
        let user_key = hasher.user_key(&UserId::parse(user_id)?);
        fields.insert(OWNER_KEY_FIELD.to_owned(), user_key);
    }
    Ok(fields)
}

/// The `archive_meta:<sid>` record this library writes: the archive's metadata and R2 key.
#[derive(Serialize)]
struct ArchiveRecord<'a> {
    key: &'a str,
    #[serde(flatten)]
    metadata: &'a ArchiveMetadata,
}

/// Every KV entry of one stored archive, computed before the first write.
pub(super) struct ArchiveEntries {
    /// The archive's R2 key: the value of every index entry.
    pub object_key: String,
    /// `archive_meta:<sid>`.
    pub meta_key: String,
    /// Its value: the [`ArchiveRecord`] as JSON.
    pub record: Vec<u8>,
    /// The per-user (when the session has a user) and global index keys; their value is the
    /// R2 key.
    pub index_keys: Vec<String>,
    /// The listing summary every entry carries as list metadata.
    pub summary: Value,
}

impl ArchiveEntries {
    /// The entries of the archive stored under `object_key` with `metadata`; user keys are
    /// hashed with `hasher`, so no raw user id reaches a key.
    pub fn new(hasher: &KeyHasher, object_key: &str, metadata: &ArchiveMetadata) -> Result<Self> {
        let listing = listing_summary(metadata, object_key)?;
        Self::with_listing(hasher, object_key, metadata, listing)
    }

    /// [`Self::new`] with the listing summary given (an encrypted archive's, whose summary
    /// the caller encrypted).
    pub fn with_listing(
        hasher: &KeyHasher,
        object_key: &str,
        metadata: &ArchiveMetadata,
        listing: Value,
    ) -> Result<Self> {
        let session_id = SessionId::parse(&metadata.session_id)?;
        let record = serde_json::to_vec(&ArchiveRecord {
            key: object_key,
            metadata,
        })
        .map_err(|err| PersistenceError::invalid_input("archive metadata", err.to_string()))?;
        let mut index_keys = Vec::with_capacity(2);
        if let Some(user_id) = &metadata.user_id {
            let user_key = hasher.user_key(&UserId::parse(user_id)?);
            index_keys.push(user_index_key(
                &user_key,
                metadata.archived_at,
                &session_id,
            )?);
        }
        index_keys.push(archive_index_key(metadata.archived_at, &session_id)?);
        Ok(ArchiveEntries {
            object_key: object_key.to_owned(),
            meta_key: archive_meta_key(&session_id),
            record,
            index_keys,
            summary: listing,
        })
    }

    /// KV put options of every entry: no TTL, the summary as list metadata.
    pub fn put_options(&self) -> KvPutOptions {
        KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(self.summary.clone()),
        }
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Writes the `archive_meta` record of `entries`. Costs 1 KV put.
    pub(super) async fn put_archive_record(
        &self,
        log: &OpLog<'_>,
        entries: &ArchiveEntries,
    ) -> Result<()> {
        let options = entries.put_options();
        self.kv_put(log, &entries.meta_key, &entries.record, options)
            .await
    }

    /// Writes the index entry `index_key` of `entries`. Costs 1 KV put.
    pub(super) async fn put_index_entry(
        &self,
        log: &OpLog<'_>,
        entries: &ArchiveEntries,
        index_key: &str,
    ) -> Result<()> {
        let options = entries.put_options();
        self.kv_put(log, index_key, entries.object_key.as_bytes(), options)
            .await
    }
}

/// Where `archive_meta:<sid>` says the session's newest archive is, and how to check it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ArchiveLocation {
    /// The R2 key.
    pub key: String,
    /// The SHA-256 recorded when it was written; `None` for legacy archives.
    pub sha256: Option<String>,
    /// The archive's JSON size when it was written; 0 when unknown.
    pub raw_size: u64,
    /// For a record of the earlier implementation, its `archivedAt`: `key` is built from it,
    /// but that implementation may have stored the object under a time a few milliseconds
    /// off, and in the neighbouring month's folder (`super::legacy`).
    pub legacy_archived_at: Option<i64>,
}

/// The SHA-256 R2 recorded for an object: its own checksum, else our custom metadata.
pub(super) fn recorded_sha256(meta: &ObjectMeta) -> Option<&str> {
    meta.sha256.as_deref().or_else(|| {
        meta.custom_metadata
            .get(CUSTOM_SHA256_FIELD)
            .map(String::as_str)
    })
}

/// Reads an `archive_meta:<sid>` value: this library's record (`key`, `sha256`, `rawSize`) or
/// the earlier implementation's `{sessionId, archivedAt, ...}`, whose object key follows from
/// the session and time. Only ever points at an archive of `session_id`. Errors:
/// `CORRUPT_DATA` naming `meta_key`.
pub(super) fn read_archive_location(
    meta_key: &str,
    value: &[u8],
    session_id: &SessionId,
) -> Result<ArchiveLocation> {
    let corrupt = |reason: String| PersistenceError::corrupt(meta_key, reason);
    let record: Map<String, Value> = match serde_json::from_slice(value) {
        Ok(Value::Object(record)) => record,
        Ok(_) => return Err(corrupt("is not a JSON object".into())),
        Err(err) => return Err(corrupt(format!("not JSON: {err}"))),
    };
    if let Some(recorded) = record.get("sessionId") {
        if recorded.as_str() != Some(session_id.as_str()) {
            return Err(corrupt(format!(
                "sessionId {recorded} is not {:?}",
                session_id.as_str()
            )));
        }
    }
    match record.get("key") {
        Some(key) => {
            let key = key
                .as_str()
                .ok_or_else(|| corrupt("key is not a string".into()))?;
            parse_archive_object_key(key)
                .filter(|parsed| parsed.session_id == *session_id)
                .ok_or_else(|| {
                    corrupt(format!("key {key:?} is not an archive key of this session"))
                })?;
            let sha256 = record
                .get("sha256")
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt("sha256 is missing or not a string".into()))?;
            let raw_size = record.get("rawSize").and_then(Value::as_u64).unwrap_or(0);
            Ok(ArchiveLocation {
                key: key.to_owned(),
                sha256: Some(sha256.to_owned()),
                raw_size,
                legacy_archived_at: None,
            })
        }
        None => {
            let archived_at = record
                .get("archivedAt")
                .and_then(Value::as_i64)
                .ok_or_else(|| corrupt("neither key nor an integer archivedAt".into()))?;
            let key = legacy_archive_object_key(session_id, archived_at)
                .map_err(|err| corrupt(err.to_string()))?;
            Ok(ArchiveLocation {
                key,
                sha256: None,
                raw_size: 0,
                legacy_archived_at: Some(archived_at),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::keys::archive_object_key;

    fn session(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    fn metadata(user_id: Option<&str>) -> ArchiveMetadata {
        serde_json::from_value(json!({
            "sessionId": "s1", "userId": user_id, "archivedAt": 1_736_157_600_000_i64,
            "messageCount": 2, "summary": "s", "topics": ["billing"], "duration": 5,
            "rawSize": 10, "storedSize": 8, "sha256": "ab".repeat(32), "formatVersion": 1
        }))
        .unwrap()
    }

    #[test]
    fn entries_cover_the_record_and_both_indexes_with_hashed_users() {
        let key = archive_object_key(&session("s1"), 1_736_157_600_000).unwrap();
        let hasher = KeyHasher::default();
        let entries = ArchiveEntries::new(&hasher, &key, &metadata(Some("alice"))).unwrap();
        assert_eq!(entries.meta_key, "archive_meta:s1");
        let record: Value = serde_json::from_slice(&entries.record).unwrap();
        assert_eq!(record["key"], key.as_str());
        assert_eq!(record["sha256"], "ab".repeat(32));
        let user_key = hasher.user_key(&UserId::parse("alice").unwrap());
        assert_eq!(
            entries.index_keys,
            [
                format!("user_archives:{user_key}:8263842399999:s1"),
                "archive_index:8263842399999:s1".to_owned()
            ]
        );
        assert!(entries.index_keys.iter().all(|k| !k.contains("alice")));
        assert_eq!(entries.put_options().metadata.unwrap()["key"], key.as_str());
        assert_eq!(entries.put_options().expiration_ttl_secs, None);
        let anonymous = ArchiveEntries::new(&hasher, &key, &metadata(None)).unwrap();
        assert_eq!(anonymous.index_keys, ["archive_index:8263842399999:s1"]);
    }

    /// What `archive_meta:s1` holding `value` says.
    fn location_of(value: &Value) -> Result<ArchiveLocation> {
        read_archive_location(
            "archive_meta:s1",
            value.to_string().as_bytes(),
            &session("s1"),
        )
    }

    #[test]
    fn reads_our_record() {
        let key = archive_object_key(&session("s1"), 1_736_157_600_000).unwrap();
        let sha = "ab".repeat(32);
        let value = json!({"key": key, "sessionId": "s1", "sha256": sha, "rawSize": 77});
        let location = location_of(&value).unwrap();
        assert_eq!(
            location,
            ArchiveLocation {
                key,
                sha256: Some(sha),
                raw_size: 77,
                legacy_archived_at: None,
            }
        );
    }

    #[test]
    fn reads_the_legacy_record() {
        let value = json!({"sessionId": "s1", "archivedAt": 1_736_157_600_000_i64,
                           "messageCount": 2, "summary": "", "topics": [], "duration": 5});
        let location = location_of(&value).unwrap();
        assert_eq!(
            location.key,
            "conversations/2025/1/archive_s1_1736157600000.json"
        );
        assert_eq!(location.sha256, None);
        assert_eq!(location.legacy_archived_at, Some(1_736_157_600_000));
    }

    #[test]
    fn refuses_records_that_point_elsewhere() {
        let other = archive_object_key(&session("s2"), 1_736_157_600_000).unwrap();
        let cases = [
            (
                json!({"key": other, "sha256": "ab"}),
                "not an archive key of this session",
            ),
            (
                json!({"key": "backups/b1/manifest.json", "sha256": "ab"}),
                "not an archive key",
            ),
            (json!({"key": 5}), "key is not a string"),
            (
                json!({"key": archive_object_key(&session("s1"), 5).unwrap()}),
                "sha256 is missing",
            ),
            (
                json!({"sessionId": "s2", "archivedAt": 5}),
                "sessionId \"s2\"",
            ),
            (
                json!({"sessionId": "s1"}),
                "neither key nor an integer archivedAt",
            ),
            (json!([1]), "is not a JSON object"),
            (json!({"archivedAt": -5}), "archivedAt"),
        ];
        for (value, needle) in cases {
            let err = location_of(&value).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{value}");
            assert!(err.to_string().contains("archive_meta:s1"), "{err}");
            assert!(err.to_string().contains(needle), "{value}: {err}");
        }
    }

    #[test]
    fn r2_checksum_wins_over_custom_metadata() {
        let mut meta = ObjectMeta {
            key: "k".into(),
            size: 1,
            uploaded_ms: 0,
            custom_metadata: [(CUSTOM_SHA256_FIELD.to_owned(), "cc".to_owned())].into(),
            sha256: None,
            etag: None,
        };
        assert_eq!(recorded_sha256(&meta), Some("cc"));
        meta.sha256 = Some("dd".into());
        assert_eq!(recorded_sha256(&meta), Some("dd"));
    }
}
