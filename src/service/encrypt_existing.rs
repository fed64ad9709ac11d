//! `encryptExistingArchives`: once keys are configured for a store that has archives, rewrites
//! each plaintext archive encrypted, on the run driver (`super::run`).
//!
//! A run lists the archive objects (`conversations/`, R2: strongly consistent, so no archive is
//! missed the way a KV index could lag) after its position, and for each plaintext archive
//! `K`, in this order:
//! 1. reads and verifies it (its recorded SHA-256, then its document);
//! 2. writes `K.enc`: the same gzip'd bytes encrypted under the owner's data key, with a nonce
//!    derived from the key and the content (`BodyNonce::DerivedFromContent`), so encrypting
//!    again after a crash gives the same bytes and the retry finds its own object;
//! 3. points `archive_meta:<sid>` at `K.enc` (only if it pointed at `K`: a newer archive of the
//!    session stays the newest) and rewrites the archive's index entries (same KV keys, the
//!    new R2 key, the summary encrypted);
//! 4. deletes `K`.
//!
//! Wherever a run stops or crashes, the archive is readable: before step 3 everything points
//! at `K`, which still exists; after it at `K.enc`, which exists. The next run lists `K` again
//! (if step 4 did not happen) and completes the steps, writing nothing twice.
//!
//! Archives of the earlier TypeScript implementation (keys ending `.json`) are left as they are
//! and counted as `legacy`: their documents predate this format and their keys and index
//! entries are derived differently (see `super::legacy`).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::archive::{ArchivePlan, BodyNonce};
use super::backup_steps::INDEX_LAG_MS;
use super::index_entries::{read_archive_location, recorded_sha256};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, RunStatus, StopReason};
use super::DataPersistenceService;
use crate::codec::archive::{decode_archive, EncodedArchive};
use crate::crypto::keyring::KeyRing;
use crate::error::{PersistenceError, Result};
use crate::keys::{
    archive_meta_key, archive_object_key, encrypted_archive_object_key, parse_archive_object_key,
    ArchiveObjectKey, SessionId, ARCHIVE_PREFIX, ENCRYPT_EXISTING_CURSOR_KEY,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::store::{Clock, KvStore, ListedR2Object, ObjectListOptions, ObjectStore, Rng};

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page, one archive encrypted ([`CALLS_PER_ARCHIVE`]) and saving the resume point; with a
/// replica bucket, 4 more (the copy of `K.enc` and the deletion of `K` there, each queued
/// when it fails).
pub const MIN_ENCRYPT_EXISTING_CALLS: u32 = 3 + CALLS_PER_ARCHIVE;

/// Most calls one archive takes: 1 R2 get (the archive); 1 R2 get of its owner's data key (the
/// first time 1 R2 put more, and 1 R2 get again when another Worker made it first); 1 R2 put
/// (1 R2 head more when a crashed run wrote it); 1 KV get, up to 2 R2 lists and 1 KV put
/// (`archive_meta`); 2 KV puts (index entries); 1 R2 delete. With a replica bucket, plus
/// [`REPLICA_CALLS_PER_ARCHIVE`].
const CALLS_PER_ARCHIVE: u32 = 13;

/// What a replica bucket adds to one archive: 2 replicated writes (`super::replica`).
const REPLICA_CALLS_PER_ARCHIVE: u32 = 2 * super::replica::CALLS_PER_REPLICATED_WRITE;

/// Where a run continues: the last archive object handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptPosition {
    after: Option<String>,
}

/// What one run of `encryptExistingArchives` did, as JSON for JavaScript: `{"scanned": n,
/// "encrypted": n, "alreadyEncrypted": n, "legacy": n, "expired": n, "damaged": n,
/// "conflicts": n, "complete": true, "stoppedBy": null, "resumed": false, "storageCalls": n}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptExistingReport {
    /// Archive objects listed by this run.
    pub scanned: u64,
    /// Plaintext archives rewritten encrypted (and their plaintext deleted).
    pub encrypted: u64,
    /// Archives already encrypted.
    pub already_encrypted: u64,
    /// Archives of the earlier implementation, left as they are.
    pub legacy: u64,
    /// Plaintext archives past `archiveRetention`, left for the retention sweep to delete
    /// (encrypting them would only keep them, and their index entries, one sweep longer).
    pub expired: u64,
    /// Archives that fail verification (checksum, document), left as they are and logged.
    pub damaged: u64,
    /// Archives whose encrypted key holds another archive, left as they are and logged.
    pub conflicts: u64,
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for EncryptExistingReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// What became of one plaintext archive.
enum Converted {
    Encrypted,
    Gone,
    Conflict,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Rewrites every plaintext archive encrypted (or continues an unfinished run) within
    /// `budget`; reports what it did. Run it until `complete` after turning encryption on for a
    /// store that has archives; plaintext archives stay readable meanwhile.
    ///
    /// Costs 1 KV get (the resume point), 1 R2 list per 1000 archives, and per plaintext
    /// archive up to 13 calls (see the module docs); plus 1 KV put or delete for the resume
    /// point. Storage failures stop the run (`stoppedBy`). Errors: `INVALID_CONFIG` naming
    /// `encryptionKeys` when none are configured; `INVALID_INPUT` naming `maxStorageCalls`
    /// below [`MIN_ENCRYPT_EXISTING_CALLS`].
    pub async fn encrypt_existing_archives(
        &self,
        budget: RunBudget,
    ) -> Result<EncryptExistingReport> {
        let log = &self.begin("encryptExistingArchives");
        let ring = self
            .key_ring()
            .ok_or_else(|| PersistenceError::InvalidConfig {
                variable: "encryptionKeys".to_owned(),
                value: String::new(),
                reason: "no keys are configured, so archives cannot be encrypted".to_owned(),
            })?;
        let mut report = EncryptExistingReport::default();
        let mut run: Run<EncryptPosition> = self
            .start_run(
                log,
                budget,
                MIN_ENCRYPT_EXISTING_CALLS + self.replica_calls(REPLICA_CALLS_PER_ARCHIVE),
                Some(ENCRYPT_EXISTING_CURSOR_KEY),
                "archive encryption",
            )
            .await?;
        let outcome = self.encrypt_pages(log, ring, &mut run, &mut report).await;
        self.finish_run(log, &mut run, outcome).await;
        report.status = run.status;
        log.event("info", "existing archives encrypted", json!(report));
        Ok(report)
    }

    /// Handles the archive objects after the run's position, page by page.
    async fn encrypt_pages(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        run: &mut Run<EncryptPosition>,
        report: &mut EncryptExistingReport,
    ) -> Result<(), StopReason> {
        loop {
            let after = run.position.after.clone();
            let page = self
                .next_r2_page(log, run, ARCHIVE_PREFIX, after, false)
                .await?;
            for object in &page.objects {
                let parsed = parse_archive_object_key(&object.key);
                match &parsed {
                    Some(parsed) if parsed.encrypted => report.already_encrypted += 1,
                    Some(parsed) if parsed.legacy => report.legacy += 1,
                    Some(parsed) if self.past_retention(parsed.archived_at_ms) => {
                        report.expired += 1;
                    }
                    Some(parsed) => {
                        let calls =
                            CALLS_PER_ARCHIVE + self.replica_calls(REPLICA_CALLS_PER_ARCHIVE);
                        run.afford(calls, self.clock.now_ms())?;
                        let calls_before = log.storage_calls();
                        let converted = self.encrypt_archive(log, ring, object, parsed).await;
                        run.spend(log.storage_calls() - calls_before);
                        match converted {
                            Ok(Converted::Encrypted) => report.encrypted += 1,
                            Ok(Converted::Gone) => {}
                            Ok(Converted::Conflict) => report.conflicts += 1,
                            Err(
                                err @ (PersistenceError::StorageUnavailable { .. }
                                | PersistenceError::CircuitOpen { .. }),
                            ) => return Err(stop_reason(&err)),
                            Err(err) => {
                                report.damaged += 1;
                                log.event(
                                    "warn",
                                    "an archive could not be encrypted; it is left as it is",
                                    json!({ "key": object.key, "code": err.code(),
                                            "error": err.to_string() }),
                                );
                            }
                        }
                    }
                    // Not an archive key (a stray object under the prefix): not ours to touch.
                    None => {}
                }
                report.scanned += 1;
                run.position.after = Some(object.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Encrypts the plaintext archive `object` (see the module docs for the order).
    async fn encrypt_archive(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        object: &ListedR2Object,
        parsed: &ArchiveObjectKey,
    ) -> Result<Converted> {
        let key = &object.key;
        let Some(stored) = self.r2_get(log, key).await? else {
            return Ok(Converted::Gone);
        };
        let recorded = recorded_sha256(&stored.meta).map(str::to_owned);
        let limit = self.read_limit(&stored.meta, recorded.is_some());
        let decoded = decode_archive(&stored.body, recorded.as_deref(), limit)?;
        let mut metadata = decoded.metadata;
        if metadata.session_id != parsed.session_id.as_str()
            || metadata.archived_at != parsed.archived_at_ms
        {
            return Err(PersistenceError::corrupt(
                key.as_str(),
                "its document names another session or time than its key",
            ));
        }
        metadata.stored_size = stored.body.len() as u64;
        let encoded = EncodedArchive {
            bytes: stored.body,
            metadata,
        };
        let sealed = self
            .seal_archive(log, ring, encoded, BodyNonce::DerivedFromContent)
            .await?;
        debug_assert_eq!(
            Ok(&sealed.object_key),
            encrypted_archive_object_key(&parsed.session_id, parsed.archived_at_ms).as_ref()
        );
        if !self.put_archive_object(log, &sealed).await? {
            log.event(
                "warn",
                "the encrypted key of an archive holds another archive; left as it is",
                json!({ "key": key, "encryptedKey": sealed.object_key }),
            );
            return Ok(Converted::Conflict);
        }
        self.switch_archive_entries(log, key, &sealed).await?;
        // The replica's plaintext first: a crash before the primary's deletion leaves `K`
        // there, so the next run comes back to it.
        self.replicate_delete(log, std::slice::from_ref(key)).await;
        self.r2_delete(log, std::slice::from_ref(key)).await?;
        Ok(Converted::Encrypted)
    }

    /// Points the KV entries of the archive that was `plain_key` at its encrypted copy
    /// `sealed`: `archive_meta` only when it pointed at either (a newer archive of the session
    /// stays the newest), then the index entries, which are keyed by session and time.
    async fn switch_archive_entries(
        &self,
        log: &OpLog<'_>,
        plain_key: &str,
        sealed: &ArchivePlan,
    ) -> Result<()> {
        let entries = &sealed.entries;
        let session_id = parsed_session(&sealed.object_key)?;
        let meta_key = archive_meta_key(&session_id);
        let current = self.kv_get(log, &meta_key).await?;
        let points_here = current
            .and_then(|record| read_archive_location(&meta_key, &record.value, &session_id).ok())
            .is_some_and(|location| location.key == plain_key || location.key == sealed.object_key);
        let archived_at = sealed.encoded.metadata.archived_at;
        if points_here
            && !self
                .newer_archive_just_made(log, &session_id, archived_at)
                .await?
        {
            self.put_archive_record(log, entries).await?;
        }
        for index_key in &entries.index_keys {
            self.put_index_entry(log, entries, index_key).await?;
        }
        Ok(())
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Whether R2 holds an archive of `session` newer than `archived_at_ms` made within KV's
    /// propagation delay: its `archive_meta` may not be visible here yet, and must not be
    /// overwritten with an older archive's. Costs 1 R2 list (2 near a month's start): the
    /// month folders of the last [`INDEX_LAG_MS`].
    async fn newer_archive_just_made(
        &self,
        log: &OpLog<'_>,
        session: &SessionId,
        archived_at_ms: i64,
    ) -> Result<bool> {
        let now = self.clock.now_ms();
        let mut prefixes = Vec::with_capacity(2);
        for time in [now.saturating_sub(INDEX_LAG_MS), now] {
            let key = archive_object_key(session, time)?;
            // `conversations/YYYY/MM/archive_<sessionId>_`: the key up to its time.
            let prefix = key
                .get(..=key.rfind('_').unwrap_or(0))
                .unwrap_or(&key)
                .to_owned();
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        for prefix in prefixes {
            let options = ObjectListOptions {
                prefix: Some(prefix),
                limit: Some(MAX_LIST_LIMIT),
                ..ObjectListOptions::default()
            };
            let page = self.r2_list(log, options).await?;
            let newer = page
                .objects
                .iter()
                .filter_map(|o| parse_archive_object_key(&o.key));
            if newer
                .into_iter()
                .any(|o| o.session_id == *session && o.archived_at_ms > archived_at_ms)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The session of an archive key this job built.
fn parsed_session(key: &str) -> Result<SessionId> {
    parse_archive_object_key(key)
        .map(|parsed| parsed.session_id)
        .ok_or_else(|| PersistenceError::corrupt(key, "is not an archive key"))
}
