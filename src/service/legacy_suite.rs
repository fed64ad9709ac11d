//! The earlier TypeScript implementation's data, written through the ports exactly as it wrote
//! it, then read, indexed and restored through the service: one suite, run natively against the
//! in-memory stores (`tests/store_conformance.rs`) and inside workerd against real local KV
//! and R2 (`tests/workerd/conformance.test.ts`, through `src/wasm/conformance.rs`).
//!
//! What that implementation did, and what each check reproduces:
//! - an archive: `Date.now()` once for the `archivedAt` it recorded and once more for the time
//!   in the R2 key, and `new Date()` a third time for the key's year and unpadded month; the
//!   object is `JSON.stringify({metadata, conversation})`, KV `archive_meta:<sid>` the metadata;
//! - a backup: `backups/<id>/data.json`, a JSON array of `{sessionId, data, size}`, then
//!   `backups/<id>/manifest.json` and KV `backup_manifest:<id>`, both `{backupId, timestamp,
//!   sessionIds, totalSize, checksum, metadata}`, `checksum` the SHA-256 hex of data.json's
//!   text.
//!
//! Every check works on sessions and backups of its own run (ids carry a random run id), so
//! runs can share a namespace.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{json, Value};

use super::DataPersistenceService;
use crate::hash::sha256_hex;
use crate::policy::DataRetentionPolicy;
use crate::service::{RunBudget, ServiceOptions};
use crate::store::conformance::{ensure, ensure_eq, Check, CheckOutcome, ConformanceReport};
use crate::store::{Clock, KvPutOptions, KvStore, LogSink, ObjectPutOptions, ObjectStore, Rng};

/// The checks, in the order [`run_legacy_conformance`] runs them.
pub const LEGACY_CHECKS: &[&str] = &[
    "legacy.archive_key_time_differs_from_archived_at",
    "legacy.archive_written_across_a_month_end",
    "legacy.archive_written_across_a_year_end",
    "legacy.another_sessions_archive_is_never_taken",
    "legacy.backup_with_its_r2_manifest_restores",
    "legacy.damaged_backup_is_refused_and_writes_nothing",
    "legacy.malformed_records_are_corrupt_data_and_kept",
];

/// 2025-01-31T23:59:59.998Z: two milliseconds before February.
const LAST_MS_OF_JANUARY: i64 = 1_738_367_999_998;
/// 2025-01-01T00:00:00.001Z.
const FIRST_MS_OF_2025: i64 = 1_735_689_600_001;

/// Runs every check of [`LEGACY_CHECKS`] through a service over `kv`, `r2` and `clock`.
pub async fn run_legacy_conformance<K, R, C>(kv: &K, r2: &R, clock: &C) -> ConformanceReport
where
    K: KvStore + Clone,
    R: ObjectStore + Clone,
    C: Clock + Rng + Clone,
{
    let mut report = ConformanceReport::default();
    let service = DataPersistenceService::new(
        kv.clone(),
        r2.clone(),
        clock.clone(),
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    );
    let service = match service {
        Ok(service) => service,
        Err(err) => {
            report.checks = LEGACY_CHECKS
                .iter()
                .map(|name| CheckOutcome {
                    name: (*name).to_owned(),
                    error: Some(format!("no service: {err}")),
                })
                .collect();
            return report;
        }
    };
    let suite = Suite {
        service,
        kv: kv.clone(),
        r2: r2.clone(),
        run: format!("{:08x}", clock.random_u64() as u32),
        now_ms: clock.now_ms(),
    };
    for name in LEGACY_CHECKS {
        report.checks.push(CheckOutcome {
            name: (*name).to_owned(),
            error: suite.run(name).await.err(),
        });
    }
    report
}

/// Drops the service's log lines: a check reports through its outcome.
struct Discard;

impl LogSink for Discard {
    fn emit(&self, _line: &str) {}
}

/// The three clock readings behind one legacy archive.
#[derive(Debug, Clone, Copy)]
pub struct Readings {
    /// The `archivedAt` recorded in the metadata.
    pub archived_at_ms: i64,
    /// The time in the object key.
    pub key_ms: i64,
    /// The instant whose UTC year and month name the key's folder.
    pub folder_ms: i64,
}

impl Readings {
    /// Readings taken `key_after_ms` and `folder_after_ms` after the `archivedAt` one (either
    /// may be negative: the earlier implementation's order of the three is not fixed).
    pub fn after(archived_at_ms: i64, key_after_ms: i64, folder_after_ms: i64) -> Self {
        Readings {
            archived_at_ms,
            key_ms: archived_at_ms + key_after_ms,
            folder_ms: archived_at_ms + folder_after_ms,
        }
    }
}

/// A legacy archive as written: its key and the conversation it holds (what
/// `retrieveArchivedConversation` must return).
#[derive(Debug, Clone)]
pub struct LegacyArchive {
    /// The R2 key.
    pub key: String,
    /// The conversation: the memory's fields and `sessionState`.
    pub conversation: Value,
}

/// One session of a legacy backup: its id and its `data` (a whole archive document or, as
/// another version of that implementation stored it, the conversation alone).
pub struct LegacyBackupEntry<'a> {
    /// The session.
    pub session_id: &'a str,
    /// Its `data`.
    pub data: Value,
}

/// Writes an archive of `session_id` for `user_id` as the earlier implementation did: a two
/// message conversation, the object at the key `readings` give, then `archive_meta`.
pub async fn write_legacy_archive<K: KvStore, R: ObjectStore>(
    kv: &K,
    r2: &R,
    session_id: &str,
    user_id: &str,
    readings: &Readings,
) -> Result<LegacyArchive, String> {
    let created_at = readings.archived_at_ms - 120_000;
    let conversation = json!({
        "sessionId": session_id,
        "messages": [
            {"id": "m1", "sessionId": session_id, "content": "Where is my refund?",
             "role": "user", "timestamp": created_at},
            {"id": "m2", "sessionId": session_id, "content": "It was issued on Friday.",
             "role": "assistant", "timestamp": created_at + 60_000,
             "metadata": {"confidence": 0.9}},
        ],
        "summary": "Asked about a refund.",
        "context": {"orderId": "o-991"},
        "sessionState": {"id": session_id, "userId": user_id, "status": "active",
                         "createdAt": created_at, "lastActivity": created_at + 60_000},
    });
    let metadata = json!({
        "sessionId": session_id, "userId": user_id, "archivedAt": readings.archived_at_ms,
        "messageCount": 2, "summary": "Asked about a refund.", "topics": ["billing"],
        "duration": 60_000,
    });
    let (year, month) =
        crate::time::utc_year_month("folder", readings.folder_ms).map_err(|err| err.to_string())?;
    let key = format!(
        "conversations/{year}/{month}/archive_{session_id}_{}.json",
        readings.key_ms
    );
    let document = json!({ "metadata": metadata, "conversation": conversation });
    let options = ObjectPutOptions {
        content_type: Some("application/json".into()),
        custom_metadata: BTreeMap::from([
            ("sessionId".to_owned(), session_id.to_owned()),
            ("archivedAt".to_owned(), readings.archived_at_ms.to_string()),
        ]),
        ..ObjectPutOptions::default()
    };
    r2.put(&key, document.to_string().as_bytes(), options)
        .await
        .map_err(|err| format!("writing {key}: {err}"))?;
    kv_put(
        kv,
        &format!("archive_meta:{session_id}"),
        &metadata.to_string(),
    )
    .await?;
    Ok(LegacyArchive { key, conversation })
}

/// Writes backup `backup_id` of `entries` as the earlier implementation did, with
/// `extra_session_ids` (asked for, never archived) in its manifest's `sessionIds`. With
/// `damaged`, one byte of the data stored differs from what the checksum covers (the entries
/// must hold the word "refund", as [`write_legacy_archive`]'s conversations do).
pub async fn write_legacy_backup<K: KvStore, R: ObjectStore>(
    kv: &K,
    r2: &R,
    backup_id: &str,
    timestamp_ms: i64,
    entries: &[LegacyBackupEntry<'_>],
    extra_session_ids: &[&str],
    damaged: bool,
) -> Check {
    let array: Vec<Value> = entries
        .iter()
        .map(|entry| {
            // JavaScript's `JSON.stringify(data).length`.
            let size = entry.data.to_string().encode_utf16().count();
            json!({"sessionId": entry.session_id, "data": entry.data, "size": size})
        })
        .collect();
    let total_size: u64 = array
        .iter()
        .filter_map(|entry| entry["size"].as_u64())
        .sum();
    let data_text = Value::Array(array).to_string();
    let session_ids: Vec<&str> = entries
        .iter()
        .map(|entry| entry.session_id)
        .chain(extra_session_ids.iter().copied())
        .collect();
    let manifest = json!({
        "backupId": backup_id,
        "timestamp": timestamp_ms,
        "sessionIds": session_ids,
        "totalSize": total_size,
        "checksum": sha256_hex(data_text.as_bytes()),
        "metadata": {"version": "1.0", "sessionCount": entries.len()},
    })
    .to_string();
    let stored = if damaged {
        data_text.replacen("refund", "refunk", 1)
    } else {
        data_text
    };
    for (key, body) in [
        (format!("backups/{backup_id}/data.json"), &stored),
        (format!("backups/{backup_id}/manifest.json"), &manifest),
    ] {
        let options = ObjectPutOptions {
            content_type: Some("application/json".into()),
            ..ObjectPutOptions::default()
        };
        r2.put(&key, body.as_bytes(), options)
            .await
            .map_err(|err| format!("writing {key}: {err}"))?;
    }
    kv_put(kv, &format!("backup_manifest:{backup_id}"), &manifest).await
}

/// A plain KV put, as the earlier implementation made them (no TTL, no list metadata).
async fn kv_put<K: KvStore>(kv: &K, key: &str, value: &str) -> Check {
    let options = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: None,
    };
    kv.put(key, value.as_bytes(), options)
        .await
        .map_err(|err| format!("writing {key}: {err}"))
}

struct Suite<K, R, C> {
    service: DataPersistenceService<K, R, C>,
    kv: K,
    r2: R,
    /// Distinguishes this run's ids from other runs' in a shared namespace.
    run: String,
    /// When the run started.
    now_ms: i64,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> Suite<K, R, C> {
    async fn run(&self, name: &str) -> Check {
        match name {
            "legacy.archive_key_time_differs_from_archived_at" => self.key_time_differs().await,
            "legacy.archive_written_across_a_month_end" => self.across_a_month_end().await,
            "legacy.archive_written_across_a_year_end" => self.across_a_year_end().await,
            "legacy.another_sessions_archive_is_never_taken" => self.never_another_session().await,
            "legacy.backup_with_its_r2_manifest_restores" => self.backup_restores().await,
            "legacy.damaged_backup_is_refused_and_writes_nothing" => self.damaged_backup().await,
            "legacy.malformed_records_are_corrupt_data_and_kept" => self.malformed_records().await,
            other => Err(format!("no legacy check named {other}")),
        }
    }

    /// A session id of this run.
    fn session(&self, name: &str) -> String {
        format!("legacy-{}-{name}", self.run)
    }

    async fn write_archive(
        &self,
        session_id: &str,
        user_id: &str,
        readings: &Readings,
    ) -> Result<LegacyArchive, String> {
        write_legacy_archive(&self.kv, &self.r2, session_id, user_id, readings).await
    }

    async fn kv_put(&self, key: &str, value: &str) -> Check {
        kv_put(&self.kv, key, value).await
    }

    /// What `retrieveArchivedConversation(session_id)` returns, parsed.
    async fn retrieve(&self, session_id: &str) -> Result<Option<Value>, String> {
        let found = self
            .service
            .retrieve_archived_conversation(session_id)
            .await
            .map_err(|err| format!("retrieving {session_id}: {err}"))?;
        found
            .map(|text| serde_json::from_str(&text).map_err(|err| err.to_string()))
            .transpose()
    }

    /// Retrieves `session_id` and checks it is `archive`'s conversation.
    async fn expect_retrieved(&self, session_id: &str, archive: &LegacyArchive) -> Check {
        ensure_eq(
            &format!("retrieveArchivedConversation({session_id})"),
            self.retrieve(session_id).await?,
            Some(archive.conversation.clone()),
        )
    }

    async fn key_time_differs(&self) -> Check {
        let session_id = self.session("offset");
        let archived_at_ms = self.now_ms - 86_400_000;
        let readings = Readings::after(archived_at_ms, 3, 4);
        let archive = self.write_archive(&session_id, "user-7", &readings).await?;
        self.expect_retrieved(&session_id, &archive).await?;
        // Indexing finds the same object and lists it under its real key.
        let mut complete = false;
        for _ in 0..20 {
            let report = self
                .service
                .index_legacy_archives(RunBudget::default())
                .await
                .map_err(|err| format!("indexLegacyArchives: {err}"))?;
            if report.status.complete {
                complete = true;
                break;
            }
        }
        ensure(complete, || "indexLegacyArchives never completed".into())?;
        let listing = self
            .service
            .list_archived_conversations(Some("user-7"), 1000, None)
            .await
            .map_err(|err| format!("listing: {err}"))?;
        let keys: Vec<&Value> = listing
            .archives
            .iter()
            .filter(|entry| entry["sessionId"] == session_id.as_str())
            .map(|entry| &entry["key"])
            .collect();
        ensure_eq("listed keys", keys, vec![&json!(archive.key)])
    }

    async fn across_a_month_end(&self) -> Check {
        let session_id = self.session("month-end");
        // Recorded on January's last milliseconds; the folder read after midnight.
        let readings = Readings::after(LAST_MS_OF_JANUARY, 1, 3);
        let archive = self.write_archive(&session_id, "user-7", &readings).await?;
        ensure(archive.key.starts_with("conversations/2025/2/"), || {
            format!("fixture key {} is not in February's folder", archive.key)
        })?;
        self.expect_retrieved(&session_id, &archive).await?;
        let by_key = self
            .service
            .retrieve_archive(&archive.key)
            .await
            .map_err(|err| format!("retrieveArchive: {err}"))?
            .map(|text| serde_json::from_str::<Value>(&text).unwrap_or_default());
        ensure_eq("retrieveArchive", by_key, Some(archive.conversation))
    }

    async fn across_a_year_end(&self) -> Check {
        let session_id = self.session("year-end");
        // The key's time and folder read just before midnight, archivedAt just after.
        let readings = Readings::after(FIRST_MS_OF_2025, -2, -3);
        let archive = self.write_archive(&session_id, "user-7", &readings).await?;
        ensure(archive.key.starts_with("conversations/2024/12/"), || {
            format!("fixture key {} is not in December's folder", archive.key)
        })?;
        self.expect_retrieved(&session_id, &archive).await
    }

    async fn never_another_session(&self) -> Check {
        // `<id>_2` shares the listing prefix of `<id>`, whose own object is gone; so does an
        // archive of `<id>` itself ten minutes later, which its record does not name.
        let session_id = self.session("gone");
        let archived_at_ms = self.now_ms - 3_600_000;
        let readings = Readings::after(archived_at_ms, 1, 1);
        let own = self.write_archive(&session_id, "user-7", &readings).await?;
        let later_key = own.key.replace(
            &format!("_{}.json", archived_at_ms + 1),
            &format!("_{}.json", archived_at_ms + 600_000),
        );
        let body = self
            .r2
            .get(&own.key)
            .await
            .map_err(|err| format!("reading {}: {err}", own.key))?
            .ok_or("the fixture archive is missing")?
            .body;
        self.r2
            .put(&later_key, &body, ObjectPutOptions::default())
            .await
            .map_err(|err| format!("writing {later_key}: {err}"))?;
        self.r2
            .delete(std::slice::from_ref(&own.key))
            .await
            .map_err(|err| format!("deleting {}: {err}", own.key))?;
        let other = self
            .write_archive(&format!("{session_id}_2"), "user-8", &readings)
            .await?;
        ensure_eq(
            &format!("retrieveArchivedConversation({session_id})"),
            self.retrieve(&session_id).await?,
            None,
        )?;
        self.expect_retrieved(&format!("{session_id}_2"), &other)
            .await
    }

    /// Writes a backup of `archives` as the earlier implementation did (the first session's
    /// `data` a whole archive document, the others' the conversation alone, as its two
    /// versions stored them), naming one more session that had no archive; returns its id.
    async fn write_backup(
        &self,
        name: &str,
        archives: &[(&str, &LegacyArchive, &Readings)],
        damaged: bool,
    ) -> Result<String, String> {
        let backup_id = format!("backup_{}_{}_{name}", self.now_ms, self.run);
        let entries: Vec<LegacyBackupEntry<'_>> = archives
            .iter()
            .enumerate()
            .map(
                |(index, (session_id, archive, readings))| LegacyBackupEntry {
                    session_id,
                    data: if index == 0 {
                        json!({"metadata": {"sessionId": session_id, "archivedAt":
                        readings.archived_at_ms, "messageCount": 2, "summary": "",
                        "topics": [], "duration": 60_000},
                        "conversation": archive.conversation})
                    } else {
                        archive.conversation.clone()
                    },
                },
            )
            .collect();
        let never_archived = self.session("never-archived");
        write_legacy_backup(
            &self.kv,
            &self.r2,
            &backup_id,
            self.now_ms,
            &entries,
            &[&never_archived],
            damaged,
        )
        .await?;
        Ok(backup_id)
    }

    /// Deletes an archive object and its `archive_meta` record: lost, until restored.
    async fn lose(&self, session_id: &str, archive: &LegacyArchive) -> Check {
        self.r2
            .delete(std::slice::from_ref(&archive.key))
            .await
            .map_err(|err| format!("deleting {}: {err}", archive.key))?;
        let meta_key = format!("archive_meta:{session_id}");
        self.kv
            .delete(&meta_key)
            .await
            .map_err(|err| format!("deleting {meta_key}: {err}"))
    }

    /// Two archives, the second with its key time off by a millisecond.
    /// Two archives of `user-9` (sessions `<name>-1`, `<name>-2`) and the earlier
    /// implementation's backup `name` of both, its data altered after its checksum when
    /// `damaged`.
    async fn backed_up_pair(
        &self,
        name: &str,
        damaged: bool,
    ) -> Result<(String, [(String, LegacyArchive); 2]), String> {
        let mut made = Vec::new();
        for (index, offset) in [(1, 0), (2, 1)] {
            let session_id = self.session(&format!("{name}-{index}"));
            let archived_at_ms = self.now_ms - 7_200_000 + index;
            let readings = Readings::after(archived_at_ms, offset, offset);
            let archive = self.write_archive(&session_id, "user-9", &readings).await?;
            made.push((session_id, archive, readings));
        }
        let entries: Vec<_> = made.iter().map(|(id, a, r)| (id.as_str(), a, r)).collect();
        let backup_id = self.write_backup(name, &entries, damaged).await?;
        let pair = made.into_iter().map(|(id, archive, _)| (id, archive));
        let pair = pair.collect::<Vec<_>>().try_into();
        Ok((
            backup_id,
            pair.map_err(|_| "two archives were not made".to_owned())?,
        ))
    }

    async fn backup_restores(&self) -> Check {
        let (backup_id, [(id1, a1), (id2, a2)]) = self.backed_up_pair("backed-up", false).await?;
        self.lose(&id1, &a1).await?;
        self.lose(&id2, &a2).await?;
        ensure_eq("retrieve after the loss", self.retrieve(&id1).await?, None)?;
        let restored = self
            .service
            .restore_from_backup(&backup_id, None)
            .await
            .map_err(|err| format!("restoreFromBackup: {err}"))?;
        ensure_eq(
            "restored sessions",
            restored,
            vec![id1.clone(), id2.clone()],
        )?;
        self.expect_retrieved(&id1, &a1).await?;
        self.expect_retrieved(&id2, &a2).await?;
        // Idempotent: a second restore stores nothing twice and still succeeds.
        let again = self
            .service
            .restore_from_backup(&backup_id, None)
            .await
            .map_err(|err| format!("second restoreFromBackup: {err}"))?;
        ensure_eq("restored again", again.len(), 2)?;
        // Made for nobody: a user's restore does not see it.
        let for_user = self
            .service
            .restore_from_backup(&backup_id, Some("user-9"))
            .await;
        ensure_eq(
            "restore for a user",
            for_user.map_err(|err| err.code()),
            Err("NOT_FOUND"),
        )
    }

    async fn damaged_backup(&self) -> Check {
        let (backup_id, [(id1, a1), _]) = self.backed_up_pair("damaged", true).await?;
        self.lose(&id1, &a1).await?;
        let data_key = format!("backups/{backup_id}/data.json");
        let restored = self.service.restore_from_backup(&backup_id, None).await;
        expect_refusal(
            "the damaged backup's restore",
            restored,
            "CHECKSUM_MISMATCH",
            &[&data_key],
        )?;
        ensure_eq(
            "retrieve after the refusal",
            self.retrieve(&id1).await?,
            None,
        )
    }

    async fn malformed_records(&self) -> Check {
        let session_id = self.session("malformed");
        let meta_key = format!("archive_meta:{session_id}");
        let record = json!({"sessionId": session_id, "archivedAt": "yesterday"}).to_string();
        self.kv_put(&meta_key, &record).await?;
        let read = self
            .service
            .retrieve_archived_conversation(&session_id)
            .await;
        expect_refusal(
            "the malformed record's read",
            read,
            "CORRUPT_DATA",
            &[&meta_key, "archivedAt"],
        )?;
        let kept = self
            .kv
            .get(&meta_key)
            .await
            .map_err(|err| format!("reading {meta_key}: {err}"))?
            .map(|value| value.value);
        ensure_eq("record after the read", kept, Some(record.into_bytes()))?;

        let backup_id = format!("backup_{}_{}_malformed", self.now_ms, self.run);
        let manifest_key = format!("backups/{backup_id}/manifest.json");
        let manifest = json!({"backupId": backup_id, "timestamp": self.now_ms,
                              "sessionIds": [session_id], "checksum": 5});
        self.r2
            .put(
                &manifest_key,
                manifest.to_string().as_bytes(),
                ObjectPutOptions::default(),
            )
            .await
            .map_err(|err| format!("writing {manifest_key}: {err}"))?;
        let restored = self.service.restore_from_backup(&backup_id, None).await;
        expect_refusal(
            "the malformed manifest's restore",
            restored,
            "CORRUPT_DATA",
            &[&manifest_key, "checksum"],
        )
    }
}

/// Fails unless `result` (of `what`) is an error with `code` whose message names each of
/// `names`.
fn expect_refusal<T: std::fmt::Debug>(
    what: &str,
    result: crate::Result<T>,
    code: &str,
    names: &[&str],
) -> Check {
    let err = match result {
        Ok(value) => return Err(format!("{what} succeeded: {value:?}")),
        Err(err) => err,
    };
    ensure_eq(&format!("{what}: error code"), err.code(), code)?;
    let message = err.to_string();
    match names.iter().find(|name| !message.contains(**name)) {
        Some(missing) => Err(format!(
            "{what}: the error does not name {missing}: {message}"
        )),
        None => Ok(()),
    }
}
