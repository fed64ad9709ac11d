//! `indexLegacyArchives`: makes the archives of the earlier TypeScript implementation listable.
//!
//! That implementation wrote an archive object and KV `archive_meta:<sid>` (its metadata, with
//! no list metadata) and no index, so its archives are retrievable but never listed, and the
//! retention sweep, which reads the archive key from list metadata, keeps their metadata
//! forever. This migration pages through `archive_meta:`; every entry listed without a `key`
//! in its list metadata is read (1 get: a one-time cost), its archive object checked (1 R2
//! head; when nothing is under the key its `archivedAt` gives, the object is looked for as
//! `super::legacy` describes, 1 R2 list per candidate month), and then written, in this order:
//! 1. its index entries, as archiving writes them (`archive_index:`, and `user_archives:` when
//!    the record names a user), with the listing summary as list metadata;
//! 2. `archive_meta:<sid>` again, with the same value and now the listing summary (with `key`)
//!    as list metadata. This is the entry's "indexed" mark: later runs skip it without a get.
//!
//! Writing the mark last makes a crash at any point harmless: an entry without the mark is
//! indexed again by the next run, and writing the same entries twice changes nothing. A record
//! whose object is gone is reported (`missingObjects`) and left as it is; one that cannot be
//! read (`unreadable`) too. Records of this library that lack list metadata (written by hand)
//! are indexed the same way.
//!
//! The summary of a legacy archive has `formatVersion` 0, `rawSize` = `storedSize` = the
//! object's size (plain JSON), as `sha256` the checksum R2 recorded for the object, or `""`
//! when it recorded none (legacy objects were written without one), and as `archivedAt` (and
//! in its index keys) the time in the object's key.
//!
//! Runs are budgeted like retention runs ([`RunBudget`]) and walk `archive_meta:` as
//! `super::walk` describes, resuming from [`LEGACY_INDEX_CURSOR_KEY`]. A storage failure or an
//! open breaker stops the run; the record it was at is done again next time.
//!
//! KV has no conditional put: if a session is archived again between this run's `get` of its
//! legacy record and the re-put, the re-put replaces the new record (the new archive stays
//! listed and retrievable by key, but `retrieveArchivedConversation` returns the legacy one).
//! Run the migration once, before the new sessions of migrated users are archived again, or
//! accept that narrow window.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::index_entries::{
    read_archive_location, recorded_sha256, ArchiveEntries, ArchiveLocation,
};
use super::log::OpLog;
use super::run::{stop_reason, RunBudget, RunReport, RunStatus, StopReason};
use super::walk::{KvWalk, WalkJob};
use super::DataPersistenceService;
use crate::codec::archive::{ArchiveMetadata, LEGACY_FORMAT_VERSION};
use crate::error::{PersistenceError, Result};
use crate::keys::{
    legacy_archive_folders, parse_archive_meta_key, parse_archive_object_key, SessionId,
    ARCHIVE_META_PREFIX, LEGACY_INDEX_CURSOR_KEY,
};
use crate::retention::INDEX_ARCHIVE_KEY_FIELD;
use crate::store::{Clock, KvStore, ObjectMeta, ObjectStore, Rng};

/// Most calls one record can take: its get, the object's head, two index puts and the re-put
/// of `archive_meta`.
const CALLS_PER_RECORD: u32 = 5;

/// The walk over `archive_meta:` that indexes the earlier implementation's archives.
const LEGACY_WALK: WalkJob = WalkJob {
    operation: "indexLegacyArchives",
    name: "migration",
    resume_key: LEGACY_INDEX_CURSOR_KEY,
    prefix: ARCHIVE_META_PREFIX,
    done: "legacy archives indexed",
    min_budget: MIN_MIGRATION_CALLS,
    calls_per_key: CALLS_PER_RECORD,
};

/// Calls a record takes besides those when its object is not under the key its `archivedAt`
/// gives: one R2 list per candidate month folder (`super::legacy`), claimed only then.
const SEARCH_CALLS: u32 = 2;

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page of one record, the record's calls (its object searched for included) and saving the
/// resume point.
pub const MIN_MIGRATION_CALLS: u32 = 3 + CALLS_PER_RECORD + SEARCH_CALLS;

/// What one run of `indexLegacyArchives` did, as JSON for JavaScript: `{"scanned": n,
/// "indexed": n, "missingObjects": n, "unreadable": n, "complete": true, "stoppedBy": null,
/// "resumed": false, "storageCalls": n}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    /// `archive_meta:` entries listed by this run.
    pub scanned: u64,
    /// Entries indexed by this run (index entries and list metadata written).
    pub indexed: u64,
    /// Entries left as they are because their archive object is gone.
    pub missing_objects: u64,
    /// Entries left as they are because their key or value cannot be read (logged with the
    /// key).
    pub unreadable: u64,
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for MigrationReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// The fields of the earlier implementation's `archive_meta` record besides `sessionId` and
/// `archivedAt` (which `read_archive_location` checks).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyRecord {
    #[serde(default)]
    user_id: Option<String>,
    archived_at: i64,
    message_count: u64,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    topics: Vec<String>,
    /// It did not clamp a clock that ran backwards.
    #[serde(default)]
    duration: i64,
}

/// What the log says about a record skipped for `err`: its code and message (an `INVALID_ID`
/// message never quotes a user id: see `keys::check_id`).
fn skipped_fields(meta_key: &str, err: &PersistenceError) -> Value {
    json!({ "key": meta_key, "code": err.code(), "error": err.to_string() })
}

/// Whether an `archive_meta:` entry's list metadata names its archive (written by this
/// library, or already migrated).
fn is_indexed(metadata: Option<&Value>) -> bool {
    metadata
        .and_then(|metadata| metadata.get(INDEX_ARCHIVE_KEY_FIELD))
        .is_some_and(Value::is_string)
}

/// The [`ArchiveMetadata`] of an `archive_meta` record whose archive object is `object`: this
/// library's record as it is, or the earlier implementation's completed from the object.
/// Errors: `CORRUPT_DATA` naming `meta_key`.
fn record_metadata(
    meta_key: &str,
    value: &[u8],
    session_id: &SessionId,
    location: &ArchiveLocation,
    object: &ObjectMeta,
) -> Result<ArchiveMetadata> {
    let corrupt = |err: serde_json::Error| PersistenceError::corrupt(meta_key, err.to_string());
    if location.sha256.is_some() {
        return serde_json::from_slice(value).map_err(corrupt);
    }
    let legacy: LegacyRecord = serde_json::from_slice(value).map_err(corrupt)?;
    // The object's key may carry a time a few ms off the record's (`super::legacy`): the index
    // entries take the key's, so that entry, summary and object agree (reindexing checks it).
    let archived_at = parse_archive_object_key(&location.key)
        .map_or(legacy.archived_at, |key| key.archived_at_ms);
    Ok(ArchiveMetadata {
        session_id: session_id.as_str().to_owned(),
        user_id: legacy.user_id,
        archived_at,
        message_count: legacy.message_count,
        summary: legacy.summary,
        topics: legacy.topics,
        duration: u64::try_from(legacy.duration).unwrap_or(0),
        // A legacy object is the plain JSON document itself.
        raw_size: object.size,
        stored_size: object.size,
        sha256: recorded_sha256(object).unwrap_or_default().to_owned(),
        format_version: LEGACY_FORMAT_VERSION,
        encrypted_summary: None,
    })
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Indexes the archives of the earlier TypeScript implementation (or continues an
    /// unfinished run) within `budget`, so they are listed and swept by retention; reports
    /// what it did. Idempotent: a run after a complete one indexes nothing and writes nothing.
    ///
    /// Costs 1 KV get (the resume point), 1 KV list per page of `archive_meta:`, and per entry
    /// not yet indexed 1 KV get, 1 R2 head and 2 KV puts (3 with a `userId`), and 1 R2 list per
    /// candidate month folder (2 at most) when the object is not under the key its
    /// `archivedAt` gives (`super::legacy`); plus 1 KV put or delete for the resume point when
    /// the run stops early or completes a resumed run. Storage failures never fail the call:
    /// they stop the run (`stoppedBy`). Errors: `INVALID_INPUT` naming `maxStorageCalls` below
    /// [`MIN_MIGRATION_CALLS`].
    pub async fn index_legacy_archives(&self, budget: RunBudget) -> Result<MigrationReport> {
        self.walk(
            &LEGACY_WALK,
            budget,
            async |log, walk, report: &mut MigrationReport, entry| {
                let indexed = is_indexed(entry.metadata.as_ref());
                if !indexed {
                    walk.claim(&entry.name, CALLS_PER_RECORD, self.clock.now_ms())?;
                }
                report.scanned += 1;
                if indexed {
                    return Ok(());
                }
                self.index_record(log, walk, report, &entry.name).await
            },
        )
        .await
    }

    /// Indexes the archive of one `archive_meta:` entry listed without `key`; a record that
    /// cannot be read or whose object is gone is counted, logged and left as it is.
    async fn index_record(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        report: &mut MigrationReport,
        meta_key: &str,
    ) -> Result<(), StopReason> {
        let skip = |report: &mut MigrationReport, missing: bool, message: &str, fields: Value| {
            if missing {
                report.missing_objects += 1;
            } else {
                report.unreadable += 1;
            }
            log.event("warn", message, fields);
        };
        let Some(session_id) = parse_archive_meta_key(meta_key) else {
            skip(
                report,
                false,
                "skipped an archive_meta key without a valid session id",
                json!({ "key": meta_key }),
            );
            return Ok(());
        };
        walk.run.spend(1);
        let stored = self.kv_get(log, meta_key).await;
        // Deleted since it was listed: nothing to index.
        let Some(record) = stored.map_err(|err| stop_reason(&err))? else {
            return Ok(());
        };
        let unreadable = |report: &mut MigrationReport, err: &PersistenceError| {
            let fields = skipped_fields(meta_key, err);
            skip(
                report,
                false,
                "skipped an unreadable archive_meta record",
                fields,
            );
        };
        let mut location = match read_archive_location(meta_key, &record.value, &session_id) {
            Ok(location) => location,
            Err(err) => {
                unreadable(report, &err);
                return Ok(());
            }
        };
        walk.run.spend(1);
        let head = self.r2_head(log, &location.key).await;
        let mut object = head.map_err(|err| stop_reason(&err))?;
        if let (None, Some(archived_at)) = (&object, location.legacy_archived_at) {
            // The lists, then the record's three puts.
            walk.run.afford(SEARCH_CALLS + 3, self.clock.now_ms())?;
            // One list per candidate folder, counted before they are made.
            let folders = legacy_archive_folders(archived_at).map_or(0, |f| f.len() as u32);
            walk.run.spend(folders);
            let search = self
                .find_legacy_archive(log, &session_id, archived_at)
                .await;
            if let Some(found) = search.map_err(|err| stop_reason(&err))? {
                location.key.clone_from(&found.key);
                object = Some(ObjectMeta {
                    key: found.key,
                    size: found.size,
                    uploaded_ms: found.uploaded_ms,
                    custom_metadata: found.custom_metadata.unwrap_or_default(),
                    sha256: None,
                    etag: None,
                });
            }
        }
        let Some(object) = object else {
            let fields = json!({ "metaKey": meta_key, "key": location.key });
            skip(
                report,
                true,
                "archive metadata points at a missing object",
                fields,
            );
            return Ok(());
        };
        let entries = record_metadata(meta_key, &record.value, &session_id, &location, &object)
            .and_then(|metadata| {
                ArchiveEntries::new(&self.options.hasher, &location.key, &metadata)
            });
        let entries = match entries {
            Ok(entries) => entries,
            Err(err) => {
                unreadable(report, &err);
                return Ok(());
            }
        };
        for index_key in &entries.index_keys {
            walk.run.spend(1);
            self.put_index_entry(log, &entries, index_key)
                .await
                .map_err(|err| stop_reason(&err))?;
        }
        // The same value, now with the list metadata that marks the entry as indexed.
        walk.run.spend(1);
        self.kv_put(log, meta_key, &record.value, entries.put_options())
            .await
            .map_err(|err| stop_reason(&err))?;
        report.indexed += 1;
        log.debug(
            "indexed a legacy archive",
            json!({ "metaKey": meta_key, "key": location.key }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::BTreeMap;

    use super::*;
    use crate::codec::json_text;
    use crate::keys::legacy_archive_object_key;

    fn object(size: u64, sha256: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size,
            uploaded_ms: 0,
            custom_metadata: BTreeMap::new(),
            sha256: sha256.map(str::to_owned),
            etag: None,
        }
    }

    /// What the legacy record `value` of `s1`, whose object is `object`, gives.
    fn legacy_metadata(value: &Value, object: &ObjectMeta) -> Result<ArchiveMetadata> {
        let sid = SessionId::parse("s1").unwrap();
        let location = ArchiveLocation {
            key: legacy_archive_object_key(&sid, 1_733_011_200_000).unwrap(),
            sha256: None,
            raw_size: 0,
            legacy_archived_at: Some(1_733_011_200_000),
        };
        let value = value.to_string();
        record_metadata("archive_meta:s1", value.as_bytes(), &sid, &location, object)
    }

    #[test]
    fn legacy_records_are_completed_from_the_object() {
        let value = json!({"sessionId": "s1", "userId": "u-7", "archivedAt": 1_733_011_200_000_i64,
                           "messageCount": 2, "summary": "refund", "topics": ["billing"],
                           "duration": -1500});
        let metadata = legacy_metadata(&value, &object(321, None)).unwrap();
        assert_eq!(
            metadata,
            ArchiveMetadata {
                session_id: "s1".into(),
                user_id: Some("u-7".into()),
                archived_at: 1_733_011_200_000,
                message_count: 2,
                summary: "refund".into(),
                topics: vec!["billing".into()],
                duration: 0,
                raw_size: 321,
                stored_size: 321,
                sha256: String::new(),
                format_version: 0,
                encrypted_summary: None,
            }
        );
        let sha = "ab".repeat(32);
        let minimal = json!({"archivedAt": 5, "messageCount": 0, "userId": null});
        let metadata = legacy_metadata(&minimal, &object(9, Some(&sha))).unwrap();
        assert_eq!(metadata.sha256, sha);
        assert_eq!(metadata.user_id, None);
        assert_eq!((metadata.summary.as_str(), metadata.topics.len()), ("", 0));
    }

    #[test]
    fn ill_typed_legacy_records_are_corrupt_data_naming_the_key() {
        for value in [
            json!({"archivedAt": 5}),
            json!({"archivedAt": 5, "messageCount": -1}),
            json!({"archivedAt": 5, "messageCount": 1, "topics": "billing"}),
        ] {
            let err = legacy_metadata(&value, &object(1, None)).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{value}");
            assert!(err.to_string().contains("archive_meta:s1"), "{err}");
        }
    }

    #[test]
    fn skipped_records_are_logged_without_rejected_ids() {
        let err = crate::keys::UserId::parse("raw\nuser").unwrap_err();
        let fields = skipped_fields("archive_meta:s1", &err);
        assert_eq!(
            fields,
            json!({"key": "archive_meta:s1", "code": "INVALID_ID",
                   "error": "invalid userId: contains a control character"})
        );
        let err = PersistenceError::corrupt("archive_meta:s1", "not JSON");
        assert_eq!(
            skipped_fields("archive_meta:s1", &err)["code"],
            "CORRUPT_DATA"
        );
    }

    #[test]
    fn only_a_string_key_marks_an_entry_as_indexed() {
        assert!(is_indexed(Some(&json!({"key": "conversations/x"}))));
        assert!(!is_indexed(Some(&json!({"sessionId": "s1"}))));
        assert!(!is_indexed(Some(&json!({"key": 5}))));
        assert!(!is_indexed(None));
    }

    #[test]
    fn reports_are_camel_case_json() {
        let report = MigrationReport {
            scanned: 3,
            indexed: 2,
            missing_objects: 1,
            status: RunStatus {
                complete: true,
                storage_calls: 9,
                ..RunStatus::default()
            },
            ..MigrationReport::default()
        };
        assert_eq!(
            json_text(&report),
            r#"{"scanned":3,"indexed":2,"missingObjects":1,"unreadable":0,"complete":true,"stoppedBy":null,"resumed":false,"storageCalls":9}"#
        );
    }
}
