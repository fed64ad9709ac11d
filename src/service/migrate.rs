//! `indexLegacyArchives`: makes the archives of the earlier TypeScript implementation listable.
//!
//! That implementation wrote an archive object and KV `archive_meta:<sid>` (its metadata, with
//! no list metadata) and no index, so its archives are retrievable but never listed, and the
//! retention sweep, which reads the archive key from list metadata, keeps their metadata
//! forever. This migration pages through `archive_meta:`; every entry listed without a `key`
//! in its list metadata is read (1 get: a one-time cost), its archive object checked (1 R2
//! head), and then written, in this order:
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
//! object's size (plain JSON), and as `sha256` the checksum R2 recorded for the object, or `""`
//! when it recorded none (legacy objects were written without one).
//!
//! Runs are budgeted like retention runs ([`RetentionBudget`]): pages of 1000 are listed whole
//! and the budget is checked before each record, and an unfinished run stores the KV cursor
//! of its page and the first record it did not index under [`LEGACY_INDEX_CURSOR_KEY`]; the
//! next run lists that page again and continues at that record. A storage failure or an open
//! breaker stops the run; the record it was at is done again next time.
//!
//! KV has no conditional put: if a session is archived again between this run's `get` of its
//! legacy record and the re-put, the re-put replaces the new record (the new archive stays
//! listed and retrievable by key, but `retrieveArchivedConversation` returns the legacy one).
//! Run the migration once, before the new sessions of migrated users are archived again, or
//! accept that narrow window.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::entries::{read_archive_location, recorded_sha256, ArchiveEntries, ArchiveLocation};
use super::log::OpLog;
use super::retention::{stop_reason, RetentionBudget, StopReason};
use super::{json_text, PersistenceService};
use crate::codec::archive::{ArchiveMetadata, LEGACY_FORMAT_VERSION};
use crate::error::{PersistenceError, Result};
use crate::keys::{
    parse_archive_meta_key, SessionId, ARCHIVE_META_PREFIX, LEGACY_INDEX_CURSOR_KEY,
};
use crate::retention::INDEX_ARCHIVE_KEY_FIELD;
use crate::store::{Clock, KvListOptions, KvPutOptions, KvStore, ObjectMeta, ObjectStore};

/// Most calls one record can take: its get, the object's head, two index puts and the re-put
/// of `archive_meta`.
const CALLS_PER_RECORD: u32 = 5;

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page of one record, the record's calls and saving the resume point.
pub const MIN_MIGRATION_CALLS: u32 = 3 + CALLS_PER_RECORD;

/// Most keys a KV list page returns.
const PAGE_LIMIT: u32 = 1000;

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
    /// True when the run reached the end of `archive_meta:` (its resume point is cleared).
    pub complete: bool,
    /// Why the run stopped early, when it did.
    pub stopped_by: Option<StopReason>,
    /// True when this run continued an earlier, unfinished one.
    pub resumed: bool,
    /// Storage calls made by this run (a retried call counts once).
    pub storage_calls: u32,
}

impl MigrationReport {
    /// The report as JSON text for JavaScript.
    pub fn to_json(&self) -> String {
        json_text(self)
    }
}

/// Where an unfinished run continues, stored as JSON under [`LEGACY_INDEX_CURSOR_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MigrationPosition {
    /// KV list cursor of the next `archive_meta:` page (`None`: the first page).
    kv_cursor: Option<String>,
    /// In that page, the first entry not yet handled, when a run stopped part-way through it
    /// (absent in resume points of earlier versions: the whole page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_resume_at: Option<String>,
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

/// The state of one run: its budget, its report and where it would resume.
struct Migration {
    budget: RetentionBudget,
    report: MigrationReport,
    position: MigrationPosition,
}

impl Migration {
    fn afford(&self, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.budget.afford(self.report.storage_calls, calls, now_ms)
    }
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
    Ok(ArchiveMetadata {
        session_id: session_id.as_str().to_owned(),
        user_id: legacy.user_id,
        archived_at: legacy.archived_at,
        message_count: legacy.message_count,
        summary: legacy.summary,
        topics: legacy.topics,
        duration: u64::try_from(legacy.duration).unwrap_or(0),
        // A legacy object is the plain JSON document itself.
        raw_size: object.size,
        stored_size: object.size,
        sha256: recorded_sha256(object).unwrap_or_default().to_owned(),
        format_version: LEGACY_FORMAT_VERSION,
    })
}

impl<K: KvStore, R: ObjectStore, C: Clock> PersistenceService<K, R, C> {
    /// Indexes the archives of the earlier TypeScript implementation (or continues an
    /// unfinished run) within `budget`, so they are listed and swept by retention; reports
    /// what it did. Idempotent: a run after a complete one indexes nothing and writes nothing.
    ///
    /// Costs 1 KV get (the resume point), 1 KV list per page of `archive_meta:`, and per entry
    /// not yet indexed 1 KV get, 1 R2 head and 2 KV puts (3 with a `userId`); plus 1 KV put or
    /// delete for the resume point when the run stops early or completes a resumed run. Storage
    /// failures never fail the call: they stop the run (`stoppedBy`). Errors: `INVALID_INPUT`
    /// naming `maxStorageCalls` below [`MIN_MIGRATION_CALLS`].
    pub async fn index_legacy_archives(&self, budget: RetentionBudget) -> Result<MigrationReport> {
        let log = self.begin("indexLegacyArchives");
        if let Some(max) = budget
            .max_storage_calls
            .filter(|max| *max < MIN_MIGRATION_CALLS)
        {
            return Err(PersistenceError::invalid_input(
                "maxStorageCalls",
                format!("{max} is below {MIN_MIGRATION_CALLS}, the least one run needs"),
            ));
        }
        let mut run = Migration {
            budget,
            report: MigrationReport::default(),
            position: MigrationPosition {
                kv_cursor: None,
                kv_resume_at: None,
            },
        };
        if let Some(position) = self.load_migration_position(&log, &mut run).await {
            run.report.resumed = true;
            run.position = position;
        }
        match self.index_pages(&log, &mut run).await {
            Ok(()) => {
                run.report.complete = true;
                if run.report.resumed {
                    run.report.storage_calls += 1;
                    if let Err(err) = self.kv_delete(&log, LEGACY_INDEX_CURSOR_KEY).await {
                        log.event(
                            "warn",
                            "could not clear the migration resume point",
                            json!({ "error": err.to_string() }),
                        );
                    }
                }
            }
            Err(stop) => {
                run.report.stopped_by = Some(stop);
                self.save_migration_position(&log, &mut run).await;
            }
        }
        let report = run.report;
        log.event("info", "legacy archives indexed", json!(report));
        Ok(report)
    }

    /// The resume point of an unfinished run, if one is stored and readable.
    async fn load_migration_position(
        &self,
        log: &OpLog<'_>,
        run: &mut Migration,
    ) -> Option<MigrationPosition> {
        run.report.storage_calls += 1;
        let stored = match self.kv_get(log, LEGACY_INDEX_CURSOR_KEY).await {
            Ok(stored) => stored?,
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the migration resume point; starting over",
                    json!({ "error": err.to_string() }),
                );
                return None;
            }
        };
        serde_json::from_slice(&stored.value)
            .map_err(|err| {
                log.event(
                    "warn",
                    "ignoring an unreadable migration resume point",
                    json!({ "error": err.to_string() }),
                );
            })
            .ok()
    }

    async fn save_migration_position(&self, log: &OpLog<'_>, run: &mut Migration) {
        let value = json_text(&run.position);
        run.report.storage_calls += 1;
        if let Err(err) = self
            .kv_put(
                log,
                LEGACY_INDEX_CURSOR_KEY,
                value.as_bytes(),
                KvPutOptions::default(),
            )
            .await
        {
            log.event(
                "warn",
                "could not save the migration resume point; the next run starts over",
                json!({ "error": err.to_string() }),
            );
        }
    }

    /// Every page of `archive_meta:` from the run's position. Pages are listed whole; a run
    /// that stops part-way through one resumes at the first entry it did not handle. (Listing
    /// only as many entries as the calls left could index made a run with a budget of 50 list
    /// 9 entries at a time, indexed ones included.)
    async fn index_pages(&self, log: &OpLog<'_>, run: &mut Migration) -> Result<(), StopReason> {
        loop {
            // The listing and one record.
            run.afford(1 + CALLS_PER_RECORD, self.clock.now_ms())?;
            let options = KvListOptions {
                prefix: Some(ARCHIVE_META_PREFIX.to_owned()),
                cursor: run.position.kv_cursor.clone(),
                limit: Some(PAGE_LIMIT),
            };
            run.report.storage_calls += 1;
            let mut page = self
                .kv_list(log, options)
                .await
                .map_err(|err| stop_reason(&err))?;
            if let Some(resume_at) = run.position.kv_resume_at.take() {
                // KV lists keys in UTF-8 byte order, which is how `str` compares.
                page.keys.retain(|entry| entry.name >= resume_at);
            }
            for entry in &page.keys {
                let indexed = is_indexed(entry.metadata.as_ref());
                if !indexed {
                    // Should the run stop before this record is indexed, it resumes at it.
                    run.position.kv_resume_at = Some(entry.name.clone());
                    run.afford(CALLS_PER_RECORD, self.clock.now_ms())?;
                }
                run.report.scanned += 1;
                if !indexed {
                    self.index_record(log, run, &entry.name).await?;
                }
            }
            run.position.kv_resume_at = None;
            match page.cursor.filter(|_| !page.list_complete) {
                Some(next) => run.position.kv_cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Indexes the archive of one `archive_meta:` entry listed without `key`; a record that
    /// cannot be read or whose object is gone is counted, logged and left as it is.
    async fn index_record(
        &self,
        log: &OpLog<'_>,
        run: &mut Migration,
        meta_key: &str,
    ) -> Result<(), StopReason> {
        let skip = |run: &mut Migration, missing: bool, message: &str, fields: Value| {
            if missing {
                run.report.missing_objects += 1;
            } else {
                run.report.unreadable += 1;
            }
            log.event("warn", message, fields);
        };
        let Some(session_id) = parse_archive_meta_key(meta_key) else {
            skip(
                run,
                false,
                "skipped an archive_meta key without a valid session id",
                json!({ "key": meta_key }),
            );
            return Ok(());
        };
        run.report.storage_calls += 1;
        let stored = self.kv_get(log, meta_key).await;
        // Deleted since it was listed: nothing to index.
        let Some(record) = stored.map_err(|err| stop_reason(&err))? else {
            return Ok(());
        };
        let unreadable = |run: &mut Migration, err: &PersistenceError| {
            let fields = skipped_fields(meta_key, err);
            skip(
                run,
                false,
                "skipped an unreadable archive_meta record",
                fields,
            );
        };
        let location = match read_archive_location(meta_key, &record.value, &session_id) {
            Ok(location) => location,
            Err(err) => {
                unreadable(run, &err);
                return Ok(());
            }
        };
        run.report.storage_calls += 1;
        let head = self.r2_head(log, &location.key).await;
        let Some(object) = head.map_err(|err| stop_reason(&err))? else {
            let fields = json!({ "metaKey": meta_key, "key": location.key });
            skip(
                run,
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
                unreadable(run, &err);
                return Ok(());
            }
        };
        for index_key in &entries.index_keys {
            run.report.storage_calls += 1;
            self.kv_put(
                log,
                index_key,
                location.key.as_bytes(),
                entries.put_options(),
            )
            .await
            .map_err(|err| stop_reason(&err))?;
        }
        // The same value, now with the list metadata that marks the entry as indexed.
        run.report.storage_calls += 1;
        self.kv_put(log, meta_key, &record.value, entries.put_options())
            .await
            .map_err(|err| stop_reason(&err))?;
        run.report.indexed += 1;
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
    use crate::keys::legacy_archive_object_key;

    fn object(size: u64, sha256: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size,
            uploaded_ms: 0,
            custom_metadata: BTreeMap::new(),
            sha256: sha256.map(str::to_owned),
        }
    }

    fn legacy_location(session_id: &SessionId) -> ArchiveLocation {
        ArchiveLocation {
            key: legacy_archive_object_key(session_id, 1_733_011_200_000).unwrap(),
            sha256: None,
            raw_size: 0,
        }
    }

    #[test]
    fn legacy_records_are_completed_from_the_object() {
        let sid = SessionId::parse("s1").unwrap();
        let value = json!({"sessionId": "s1", "userId": "u-7", "archivedAt": 1_733_011_200_000_i64,
                           "messageCount": 2, "summary": "refund", "topics": ["billing"],
                           "duration": -1500});
        let metadata = record_metadata(
            "archive_meta:s1",
            value.to_string().as_bytes(),
            &sid,
            &legacy_location(&sid),
            &object(321, None),
        )
        .unwrap();
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
            }
        );
        let sha = "ab".repeat(32);
        let minimal = json!({"archivedAt": 5, "messageCount": 0, "userId": null});
        let metadata = record_metadata(
            "archive_meta:s1",
            minimal.to_string().as_bytes(),
            &sid,
            &legacy_location(&sid),
            &object(9, Some(&sha)),
        )
        .unwrap();
        assert_eq!(metadata.sha256, sha);
        assert_eq!(metadata.user_id, None);
        assert_eq!((metadata.summary.as_str(), metadata.topics.len()), ("", 0));
    }

    #[test]
    fn ill_typed_legacy_records_are_corrupt_data_naming_the_key() {
        let sid = SessionId::parse("s1").unwrap();
        for value in [
            json!({"archivedAt": 5}),
            json!({"archivedAt": 5, "messageCount": -1}),
            json!({"archivedAt": 5, "messageCount": 1, "topics": "billing"}),
        ] {
            let err = record_metadata(
                "archive_meta:s1",
                value.to_string().as_bytes(),
                &sid,
                &legacy_location(&sid),
                &object(1, None),
            )
            .unwrap_err();
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
    fn the_budget_reserves_the_call_that_saves_the_resume_point() {
        let mut run = Migration {
            budget: RetentionBudget {
                max_storage_calls: Some(20),
                deadline_ms: Some(100),
            },
            report: MigrationReport::default(),
            position: MigrationPosition {
                kv_cursor: None,
                kv_resume_at: None,
            },
        };
        run.report.storage_calls = 1;
        assert_eq!(run.afford(18, 0), Ok(()));
        assert_eq!(run.afford(19, 0), Err(StopReason::CallBudget));
        assert_eq!(run.afford(1, 100), Err(StopReason::Deadline));
    }

    #[test]
    fn report_and_position_are_camel_case_json() {
        let report = MigrationReport {
            scanned: 3,
            indexed: 2,
            missing_objects: 1,
            complete: true,
            storage_calls: 9,
            ..MigrationReport::default()
        };
        assert_eq!(
            report.to_json(),
            r#"{"scanned":3,"indexed":2,"missingObjects":1,"unreadable":0,"complete":true,"stoppedBy":null,"resumed":false,"storageCalls":9}"#
        );
        // Without an entry to resume at, as earlier versions wrote it.
        let position = MigrationPosition {
            kv_cursor: Some("c1".into()),
            kv_resume_at: None,
        };
        let text = json!(position).to_string();
        assert_eq!(text, r#"{"kvCursor":"c1"}"#);
        assert_eq!(
            serde_json::from_str::<MigrationPosition>(&text).unwrap(),
            position
        );
        let position = MigrationPosition {
            kv_cursor: None,
            kv_resume_at: Some("archive_meta:s1".into()),
        };
        let text = json!(position).to_string();
        assert_eq!(text, r#"{"kvCursor":null,"kvResumeAt":"archive_meta:s1"}"#);
        assert_eq!(
            serde_json::from_str::<MigrationPosition>(&text).unwrap(),
            position
        );
    }
}
