//! `eraseUserData`: everything stored of one person, deleted on the run driver (`super::run`),
//! idempotent and resumable, with a receipt (docs/FORMAT.md "Erasure", README "Data rights").
//!
//! A run works through phases, each resumable where it stopped:
//! 1. **Tombstone** (`erasures/<userKey>.json`, `super::tombstone`): from this write on, listing,
//!    retrieval, restore and import treat every archive of the user made at or before its
//!    `erasedAt` as gone, whatever the sweep has reached.
//! 2. **Data key**: the user's `keys/users/<userKey>.json` is deleted, so every copy of their
//!    encrypted archives — in backups, replicas, exports — is unreadable from here on; the
//!    user's next archive makes a new key. The tombstone is then dated again, so that it
//!    covers every archive made under the destroyed key (a resumed run first checks that the
//!    tombstone still describes its unfinished erasure).
//! 3. **User index** (`user_archives:<userKey>:`): each listed archive is deleted with its
//!    record (`archive_meta:<sid>`, only when it points at that very archive) and index entries.
//! 4. **Global index** (`archive_index:`): archives whose listing metadata names the user (one
//!    whose user entry is missing, e.g. written under an earlier hash secret) and the segments
//!    of the user's conversations (`<sid>:segment-n`, archived without a user).
//! 5. **Objects** (R2 `conversations/`, with custom metadata): archives whose recorded owner
//!    (`userKey`) is the user, or segments of their conversations, whatever KV shows — KV
//!    listings may lag a minute behind writes.
//!    With a replica bucket, then the replica's `conversations/` likewise: copies only the
//!    replica still holds (a primary object lost, a replica deletion still queued).
//! 6. **Backups** (`backup_index:`): backups made for the user are deleted (manifest first,
//!    which un-commits it, then packs and KV copies). A backup of several users holding some
//!    of the user's sessions is not rewritten (packs and manifests are immutable once
//!    committed): the receipt names it with the count (`backupsRetained`) and why, restore
//!    skips those sessions while the tombstone stands, and backup retention deletes it in
//!    time. With encryption their archives in it no longer decrypt.
//! 7. **Complete**: the tombstone records `completedAt`.
//!
//! Nothing but the user's own is deleted: an archive is the user's by its index entry under
//! the user's key, its listing metadata's `userId`, its recorded owner key, or being a segment
//! of one of their sessions (whose conversation gets a tombstone of its own first, as
//! segments record no user); a record is deleted only when it points at such an archive.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::index_entries::{read_archive_location, OWNER_KEY_FIELD};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, RunStatus, StopReason};
use super::tombstone::{Tombstone, COMPLETED_AT_FIELD};
use super::walk::KvPosition;
use super::DataPersistenceService;
use crate::error::Result;
use crate::keys::{
    archive_index_key, archive_meta_key, archive_object_key, backup_manifest_kv_key,
    encrypted_archive_object_key, erasure_cursor_key, parse_archive_index_key,
    parse_archive_object_key, parse_backup_index_key, parse_erasure_tombstone_key,
    parse_segment_session_id, parse_user_index_key, session_data_key_ref, user_data_key_object,
    user_index_key, user_index_prefix, BackupId, SessionId, UserId, ARCHIVE_INDEX_PREFIX,
    ARCHIVE_PREFIX, BACKUP_INDEX_PREFIX, BACKUP_PREFIX, ERASURE_PREFIX,
};
use crate::store::{Clock, KvStore, ObjectListOptions, ObjectStore, Rng};

/// Smallest call budget with which every run makes progress, a resumed one included: the
/// resume point read and saved, the tombstone checked, a list page, and one archive's calls
/// with a listed entry (the first run spends as much on the tombstone, the data key's head and
/// delete and the tombstone's new date). With a replica bucket, 4 more (an archive's deletion
/// and its conversation's tombstone, each repeated in the replica or queued).
pub const MIN_ERASURE_CALLS: u32 = 4 + CALLS_PER_ARCHIVE + 1;

/// Calls erasing one archive takes: its objects deleted (1 R2 delete), its record read and
/// deleted, its two index entries deleted (one more when it was listed under another key; a
/// segment has no user entry, but its conversation's tombstone is written once).
const CALLS_PER_ARCHIVE: u32 = 5;

/// Calls deleting one backup may take: its objects listed, its manifest deleted, its packs
/// deleted, its two KV entries deleted.
const CALLS_PER_BACKUP: u32 = 5;

/// With a replica bucket, what each write or deletion batch of the erasure adds at most: the
/// same call in the replica, and its queue entry when that fails (`super::replica`).
const REPLICATED: u32 = super::replica::CALLS_PER_REPLICATED_WRITE;

/// Where an erasure is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Phase {
    #[default]
    Tombstone,
    DataKey,
    UserIndex,
    GlobalIndex,
    Objects,
    ReplicaObjects,
    Backups,
    Complete,
}

/// Why a backup of several users keeps the user's sessions: it is not encrypted (they stay
/// readable in it until backup retention deletes it; restores skip them while the tombstone
/// stands).
const SHARED: &str = "shared";
/// ... or it is, and their archives in it can no longer be decrypted; their pack entries'
/// metadata (user id, session ids, times, topics) remain until backup retention deletes it.
const SHARED_ENCRYPTED: &str = "shared, encrypted";

/// A backup that still holds some of the user's sessions after the erasure, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainedBackup {
    /// The backup.
    pub backup_id: String,
    /// How many of the user's sessions it holds.
    pub sessions: u64,
    /// Why it stays: `"shared"` (it holds other users' sessions too, not encrypted) or
    /// `"shared, encrypted"` (their archives in it no longer decrypt).
    pub reason: String,
}

/// What an erasure has done so far, over all its runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErasureCounts {
    archives_deleted: u64,
    index_entries_deleted: u64,
    backups_deleted: u64,
    keys_destroyed: u64,
    backups_retained: Vec<RetainedBackup>,
}

/// Where an erasure continues (its resume point, `erasure:cursor:<userKey>`). Holds no
/// personal data: session ids and archive keys, no user id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErasurePosition {
    /// The tombstone's `erasedAt`, once written.
    erased_at: Option<i64>,
    phase: Phase,
    /// In a KV phase, where its listing continues.
    kv: KvPosition,
    /// In the objects phase, the last R2 key handled.
    r2_after: Option<String>,
    /// In the replica's objects phase, the last key of the replica handled.
    replica_after: Option<String>,
    /// The user's sessions met so far (their segments are theirs too).
    sessions: BTreeSet<String>,
    /// Archive keys (current form, unencrypted) already erased, so that an entry KV still
    /// lists after its deletion costs nothing.
    erased: BTreeSet<String>,
    /// Conversations whose segment data key was destroyed.
    segment_keys: BTreeSet<String>,
    counts: ErasureCounts,
}

/// What `eraseUserData` did, as JSON for JavaScript: `{"userKey": "<64 hex>", "erasedAt": ms,
/// "archivesDeleted": n, "indexEntriesDeleted": n, "backupsDeleted": n, "keysDestroyed": n,
/// "backupsRetained": [{"backupId", "sessions", "reason"}], "complete": true, "stoppedBy":
/// null, "resumed": false, "storageCalls": n}`. Counts cover every run of the erasure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasureReceipt {
    /// The erased user's hashed key (never the raw id).
    pub user_key: String,
    /// When the erasure began (its tombstone's time); `null` if no run got to write it.
    pub erased_at: Option<i64>,
    /// Archive objects deleted.
    pub archives_deleted: u64,
    /// KV records and index entries of the user's archives deleted.
    pub index_entries_deleted: u64,
    /// Backups made for the user, deleted.
    pub backups_deleted: u64,
    /// Data keys destroyed: the user's, and those of their conversations' segments.
    pub keys_destroyed: u64,
    /// Backups of several users that still hold some of the user's sessions, and why.
    pub backups_retained: Vec<RetainedBackup>,
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for ErasureReceipt {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// An archive to erase, as some listing showed it.
struct Doomed<'a> {
    session: SessionId,
    archived_at_ms: i64,
    /// The key the listing gave (a legacy or encrypted key), besides the ones derived.
    listed_key: Option<&'a str>,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Erases everything stored of `user_id` (or continues an unfinished erasure of them)
    /// within `budget`: see the module docs for what and in which order. Erasing a user with
    /// no data is not an error (the receipt counts nothing). Errors: `INVALID_ID` for the
    /// user id, `INVALID_INPUT` naming `maxStorageCalls` below [`MIN_ERASURE_CALLS`]; storage
    /// failures stop the run (`stoppedBy`), to be continued by the next.
    pub async fn erase_user_data(
        &self,
        user_id: &str,
        budget: RunBudget,
    ) -> Result<ErasureReceipt> {
        let user_key = self.options.hasher.user_key(&UserId::parse(user_id)?);
        self.erase_user_key(&user_key, budget).await
    }

    /// Continues every unfinished erasure (a tombstone without `completedAt`: its run stopped
    /// on its budget or a failure) within `budget`, one after the other; their receipts. The
    /// example's cron calls it so that an erasure answered with 202 completes by itself.
    /// Costs 1 R2 list per 1000 tombstones, then what each erasure's run costs.
    pub async fn resume_erasures(&self, budget: RunBudget) -> Result<Vec<ErasureReceipt>> {
        let log = &self.begin("resumeErasures");
        let mut run: Run<()> = self.start_run(log, budget, 1, None, "erasures").await?;
        let mut receipts = Vec::new();
        let mut after = None;
        loop {
            if run.afford(1, self.clock.now_ms()).is_err() {
                return Ok(receipts);
            }
            run.spend(1);
            let listing = ObjectListOptions {
                prefix: Some(ERASURE_PREFIX.to_owned()),
                start_after: after.take(),
                limit: Some(crate::platform::MAX_LIST_LIMIT),
                include_custom_metadata: true,
                ..ObjectListOptions::default()
            };
            let page = self.r2_list(log, listing).await?;
            for object in &page.objects {
                let pending = object
                    .custom_metadata
                    .as_ref()
                    .is_some_and(|fields| !fields.contains_key(COMPLETED_AT_FIELD));
                let Some(user_key) = parse_erasure_tombstone_key(&object.key).filter(|_| pending)
                else {
                    continue;
                };
                if run
                    .afford(self.min_erasure_calls(), self.clock.now_ms())
                    .is_err()
                {
                    return Ok(receipts);
                }
                let left = RunBudget {
                    max_storage_calls: budget.max_storage_calls.map(|_| run.calls_left()),
                    ..budget
                };
                let receipt = self.erase_user_key(user_key, left).await?;
                run.spend(receipt.status.storage_calls);
                let stopped = !receipt.status.complete;
                receipts.push(receipt);
                if stopped {
                    return Ok(receipts);
                }
            }
            if !page.truncated {
                return Ok(receipts);
            }
            after = page.objects.last().map(|object| object.key.clone());
        }
    }

    /// [`Self::erase_user_data`] by hashed user key: how unfinished erasures are continued
    /// (their tombstones and resume points hold no user id).
    pub(super) async fn erase_user_key(
        &self,
        user_key: &str,
        budget: RunBudget,
    ) -> Result<ErasureReceipt> {
        let log = &self.begin("eraseUserData");
        let resume_key = erasure_cursor_key(user_key);
        let mut run: Run<ErasurePosition> = self
            .start_run(
                log,
                budget,
                self.min_erasure_calls(),
                Some(&resume_key),
                "erasure",
            )
            .await?;
        let outcome = match self.check_resume_point(log, user_key, &mut run).await {
            Ok(()) => self.erase_phases(log, user_key, &mut run).await,
            Err(stopped) => Err(stopped),
        };
        self.finish_run(log, &mut run, outcome).await;
        let ErasurePosition {
            erased_at, counts, ..
        } = run.position;
        let receipt = ErasureReceipt {
            user_key: user_key.to_owned(),
            erased_at,
            archives_deleted: counts.archives_deleted,
            index_entries_deleted: counts.index_entries_deleted,
            backups_deleted: counts.backups_deleted,
            keys_destroyed: counts.keys_destroyed,
            backups_retained: counts.backups_retained,
            status: run.status,
        };
        log.event("info", "user data erased", json!(receipt));
        Ok(receipt)
    }

    /// Keeps a resumed position only when the tombstone agrees that its erasure is unfinished
    /// (same `erasedAt`, no `completedAt`): a resume point left behind by a finished erasure
    /// (its delete failed, or KV showed an old one) must not turn a new erasure into a no-op
    /// under an old date. Costs 1 R2 head when resuming past the tombstone.
    async fn check_resume_point(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        let Some(erased_at) = run.position.erased_at.filter(|_| run.status.resumed) else {
            return Ok(());
        };
        self.afford(run, 1)?;
        let tombstone = self
            .read_tombstone(log, user_key)
            .await
            .map_err(|err| stop_reason(&err))?;
        let unfinished =
            tombstone.is_some_and(|t| t.erased_at == erased_at && t.completed_at.is_none());
        if !unfinished {
            log.event(
                "warn",
                "ignoring the resume point of an erasure that is no longer unfinished",
                json!({ "userKey": user_key, "erasedAt": erased_at }),
            );
            run.position = ErasurePosition::default();
        }
        Ok(())
    }

    /// Runs the phases from the run's position until the erasure is complete or must stop.
    async fn erase_phases(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        loop {
            let next = match run.position.phase {
                Phase::Tombstone => {
                    // The tombstone, the data key's destruction and the tombstone's new date in
                    // one run when the budget allows (a failure between them is healed by the
                    // new date, below).
                    run.afford(4 + self.replica_calls(3 * REPLICATED), self.clock.now_ms())?;
                    self.date_tombstone(log, user_key, run).await?;
                    Phase::DataKey
                }
                Phase::DataKey => {
                    run.afford(3 + self.replica_calls(2 * REPLICATED), self.clock.now_ms())?;
                    self.destroy_user_key(log, user_key, run).await?;
                    // Dated after the key is gone: every archive under the destroyed key was
                    // made (its time read) before, so the tombstone covers it, and every archive
                    // made after it is under a new key — also when a failure left the key in
                    // place for a while after the first tombstone.
                    self.date_tombstone(log, user_key, run).await?;
                    Phase::UserIndex
                }
                Phase::UserIndex => {
                    let prefix = user_index_prefix(user_key);
                    self.erase_listed(log, user_key, run, prefix).await?;
                    Phase::GlobalIndex
                }
                Phase::GlobalIndex => {
                    let prefix = ARCHIVE_INDEX_PREFIX.to_owned();
                    self.erase_listed(log, user_key, run, prefix).await?;
                    Phase::Objects
                }
                Phase::Objects => {
                    self.erase_objects(log, user_key, run).await?;
                    Phase::ReplicaObjects
                }
                Phase::ReplicaObjects => {
                    if self.has_replica() {
                        self.erase_replica_objects(log, user_key, run).await?;
                    }
                    Phase::Backups
                }
                Phase::Backups => {
                    self.erase_backups(log, user_key, run).await?;
                    Phase::Complete
                }
                Phase::Complete => {
                    run.afford(1 + self.replica_calls(REPLICATED), self.clock.now_ms())?;
                    let erased_at = run
                        .position
                        .erased_at
                        .unwrap_or_else(|| self.clock.now_ms());
                    let tombstone = Tombstone {
                        completed_at: Some(self.clock.now_ms()),
                        ..Tombstone::new(user_key, erased_at)
                    };
                    let calls = self
                        .put_tombstone(log, &tombstone)
                        .await
                        .map_err(|err| stop_reason(&err))?;
                    run.spend(calls);
                    return Ok(());
                }
            };
            run.position.phase = next;
            run.position.kv = KvPosition::default();
        }
    }

    /// Writes the user's tombstone with `erasedAt` = now, which the erasure then covers
    /// (1 R2 put).
    async fn date_tombstone(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        run.afford(1 + self.replica_calls(REPLICATED), self.clock.now_ms())?;
        let erased_at = self.clock.now_ms();
        let calls = self
            .put_tombstone(log, &Tombstone::new(user_key, erased_at))
            .await
            .map_err(|err| stop_reason(&err))?;
        run.spend(calls);
        run.position.erased_at = Some(erased_at);
        Ok(())
    }

    /// [`MIN_ERASURE_CALLS`], plus what a replica bucket adds to one archive's calls.
    fn min_erasure_calls(&self) -> u32 {
        MIN_ERASURE_CALLS + self.replica_calls(2 * REPLICATED)
    }

    /// Checks that `calls` more calls fit, and counts them.
    fn afford(&self, run: &mut Run<ErasurePosition>, calls: u32) -> Result<(), StopReason> {
        run.afford(calls, self.clock.now_ms())?;
        run.spend(calls);
        Ok(())
    }

    /// Deletes the user's data key, if there is one (1 R2 head, 1 R2 delete).
    async fn destroy_user_key(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        let object_key = user_data_key_object(user_key);
        run.afford(2 + self.replica_calls(REPLICATED), self.clock.now_ms())?;
        run.spend(2);
        let existed = self
            .r2_head(log, &object_key)
            .await
            .map_err(|err| stop_reason(&err))?
            .is_some();
        // In the replica first (as every deletion here): a crash before the primary's deletion
        // leaves the primary's object, which the next run finds again.
        let replicated = self
            .replicate_delete(log, std::slice::from_ref(&object_key))
            .await;
        run.spend(replicated);
        self.r2_delete(log, std::slice::from_ref(&object_key))
            .await
            .map_err(|err| stop_reason(&err))?;
        self.data_keys.forget(&object_key);
        if existed {
            run.position.counts.keys_destroyed += 1;
            log.event("info", "destroyed a data key", json!({ "key": object_key }));
        }
        Ok(())
    }

    /// Erases the user's archives listed under the KV `prefix` (the user's index, or the
    /// global index, where an entry is the user's by its metadata's `userId` or as a segment
    /// of one of their sessions).
    async fn erase_listed(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
        prefix: String,
    ) -> Result<(), StopReason> {
        let users_own = prefix != ARCHIVE_INDEX_PREFIX;
        self.for_each_kv_key(
            log,
            run,
            kv_position,
            prefix,
            CALLS_PER_ARCHIVE,
            async |run, pager, entry| {
                let (session, archived_at_ms) = if users_own {
                    let Some(parsed) = parse_user_index_key(&entry.name) else {
                        return Ok(());
                    };
                    (parsed.session_id, parsed.archived_at_ms)
                } else {
                    let Some(parsed) = parse_archive_index_key(&entry.name) else {
                        return Ok(());
                    };
                    let owner = entry_user_id(entry.metadata.as_ref());
                    let theirs = owner.is_some_and(|user_id| {
                        UserId::parse(user_id)
                            .is_ok_and(|user| self.options.hasher.user_key(&user) == user_key)
                    });
                    if !theirs && !is_their_segment(&run.position, &parsed.session_id) {
                        return Ok(());
                    }
                    (parsed.session_id, parsed.archived_at_ms)
                };
                pager.claim(&entry.name);
                let doomed = Doomed {
                    session,
                    archived_at_ms,
                    listed_key: entry_key(entry.metadata.as_ref()),
                };
                self.erase_archive(log, user_key, run, &doomed, Some(&entry.name))
                    .await
            },
        )
        .await
    }

    /// Erases the archives R2 holds of the user: by their recorded owner, or as segments of
    /// their conversations.
    async fn erase_objects(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        loop {
            let after = run.position.r2_after.clone();
            let page = self
                .next_r2_page(log, run, ARCHIVE_PREFIX, after, true)
                .await?;
            for object in &page.objects {
                let Some(parsed) = parse_archive_object_key(&object.key) else {
                    run.position.r2_after = Some(object.key.clone());
                    continue;
                };
                let owner = object
                    .custom_metadata
                    .as_ref()
                    .and_then(|fields| fields.get(OWNER_KEY_FIELD));
                let theirs = owner.is_some_and(|owner| owner == user_key)
                    || is_their_segment(&run.position, &parsed.session_id);
                if theirs {
                    let doomed = Doomed {
                        session: parsed.session_id,
                        archived_at_ms: parsed.archived_at_ms,
                        listed_key: Some(&object.key),
                    };
                    self.erase_archive(log, user_key, run, &doomed, None)
                        .await?;
                }
                run.position.r2_after = Some(object.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Deletes the user's archives that only the replica bucket still holds (its copy outlived
    /// a primary object lost or deleted by hand, or its deletion was queued): the replica's
    /// `conversations/` listed with custom metadata, the user's objects (by recorded owner, or
    /// segments of their conversations, made before the erasure began) deleted a page at a
    /// time. 1 replica list per 1000 objects, 1 replica delete per page holding any; a failure
    /// stops the run, which resumes at the page.
    async fn erase_replica_objects(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        let stop = |err: crate::error::PersistenceError| stop_reason(&err);
        loop {
            run.afford(2, self.clock.now_ms())?;
            run.spend(1);
            let listing = ObjectListOptions {
                prefix: Some(ARCHIVE_PREFIX.to_owned()),
                start_after: run.position.replica_after.clone(),
                limit: Some(crate::platform::MAX_LIST_LIMIT),
                include_custom_metadata: true,
                ..ObjectListOptions::default()
            };
            let page = self.replica_list(log, listing).await.map_err(stop)?;
            let erased_at = run.position.erased_at;
            let doomed: Vec<String> = page
                .objects
                .iter()
                .filter(|object| {
                    let Some(parsed) = parse_archive_object_key(&object.key) else {
                        return false;
                    };
                    let owner = object
                        .custom_metadata
                        .as_ref()
                        .and_then(|fields| fields.get(OWNER_KEY_FIELD));
                    let theirs = owner.is_some_and(|owner| owner == user_key)
                        || is_their_segment(&run.position, &parsed.session_id);
                    theirs && erased_at.is_none_or(|at| parsed.archived_at_ms <= at)
                })
                .map(|object| object.key.clone())
                .collect();
            if !doomed.is_empty() {
                run.spend(1);
                self.replica_delete(log, &doomed).await.map_err(stop)?;
                log.event(
                    "info",
                    "deleted archives of the user left in the replica",
                    json!({ "first": doomed.first(), "archives": doomed.len() }),
                );
            }
            if let Some(last) = page.objects.last() {
                run.position.replica_after = Some(last.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Deletes one archive of the user: its objects (every key form it may be stored under),
    /// its record when it points at it, its index entries; `listed_entry` is the KV entry the
    /// archive was found through (deleted too). An archive already erased by this erasure only
    /// has its listed entry deleted.
    async fn erase_archive(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
        doomed: &Doomed<'_>,
        listed_entry: Option<&str>,
    ) -> Result<(), StopReason> {
        let stop = |err: crate::error::PersistenceError| stop_reason(&err);
        let session = &doomed.session;
        let time = doomed.archived_at_ms;
        if run
            .position
            .erased_at
            .is_some_and(|erased_at| time > erased_at)
        {
            // Archived after the erasure began: the user's again, not erased.
            return Ok(());
        }
        let Ok(plain) = archive_object_key(session, time) else {
            return Ok(());
        };
        if run.position.erased.contains(&plain) {
            if let Some(entry) = listed_entry {
                self.afford(run, 1)?;
                self.kv_delete(log, entry).await.map_err(stop)?;
            }
            return Ok(());
        }
        // One more than the five an archive needs when the listed entry is a sixth key.
        let replicated = self.replica_calls(2 * REPLICATED);
        run.afford(CALLS_PER_ARCHIVE + 1 + replicated, self.clock.now_ms())?;
        let mut objects = vec![plain.clone()];
        objects.extend(encrypted_archive_object_key(session, time).ok());
        // A listed key is taken only when it is this very archive's (a damaged entry must
        // never make the erasure delete another object).
        let listed = doomed.listed_key.filter(|key| {
            parse_archive_object_key(key).is_some_and(|parsed| {
                parsed.session_id == *session && parsed.archived_at_ms == time
            })
        });
        objects.extend(listed.map(str::to_owned));
        let segment_of = parse_segment_session_id(session.as_str())
            .and_then(|(parent, _)| SessionId::parse(parent).ok());
        let segment_key = segment_of
            .as_ref()
            .filter(|parent| !run.position.segment_keys.contains(parent.as_str()));
        if let Some(parent) = segment_key {
            objects.push(format!("keys/{}.json", session_data_key_ref(parent)));
        }
        objects.sort();
        objects.dedup();
        if let Some(parent) = segment_key {
            // First the conversation's tombstone: restores and imports of older copies of its
            // segments (which record no user) recognise them by it.
            let erased_at = run
                .position
                .erased_at
                .unwrap_or_else(|| self.clock.now_ms());
            let tombstone = Tombstone::new(user_key, erased_at);
            let calls = self
                .put_conversation_tombstone(log, parent, &tombstone)
                .await
                .map_err(stop)?;
            run.spend(calls);
        }
        run.spend(self.replicate_delete(log, &objects).await);
        run.spend(1);
        self.r2_delete(log, &objects).await.map_err(stop)?;
        if let Some(parent) = segment_key {
            self.data_keys
                .forget(&format!("keys/{}.json", session_data_key_ref(parent)));
            run.position.segment_keys.insert(parent.to_string());
            // An encrypted segment had its conversation's key.
            if doomed.listed_key.is_some_and(|key| key.ends_with(".enc")) {
                run.position.counts.keys_destroyed += 1;
            }
        }
        run.position.counts.archives_deleted += 1;

        let meta_key = archive_meta_key(session);
        run.spend(1);
        let record = self.kv_get(log, &meta_key).await.map_err(stop)?;
        let points_here = record.is_some_and(|record| {
            read_archive_location(&meta_key, &record.value, session).is_ok_and(|location| {
                // A record of the earlier implementation names its object by a time that may
                // be a few ms off the key's: it is the user's by the user id it records.
                objects.contains(&location.key)
                    || (location.legacy_archived_at.is_some()
                        && self.record_names_user(&record.value, user_key))
            })
        });
        let mut entries = vec![archive_index_key(time, session).unwrap_or_default()];
        if segment_of.is_none() {
            entries.push(user_index_key(user_key, time, session).unwrap_or_default());
        }
        if points_here {
            entries.push(meta_key);
        }
        if let Some(entry) = listed_entry {
            entries.push(entry.to_owned());
        }
        entries.retain(|entry| !entry.is_empty());
        entries.sort();
        entries.dedup();
        for entry in &entries {
            run.spend(1);
            self.kv_delete(log, entry).await.map_err(stop)?;
        }
        run.position.counts.index_entries_deleted += entries.len() as u64;
        if segment_of.is_none() {
            run.position.sessions.insert(session.to_string());
        }
        run.position.erased.insert(plain);
        Ok(())
    }

    /// Whether an `archive_meta` record names the user (by the `userId` it records).
    fn record_names_user(&self, record: &[u8], user_key: &str) -> bool {
        let Ok(record) = serde_json::from_slice::<Value>(record) else {
            return false;
        };
        entry_user_id(Some(&record))
            .and_then(|user_id| UserId::parse(user_id).ok())
            .is_some_and(|user| self.options.hasher.user_key(&user) == user_key)
    }

    /// Deletes the backups made for the user; notes the backups of several users that hold
    /// some of the user's sessions (1 KV get of each one's manifest copy).
    async fn erase_backups(
        &self,
        log: &OpLog<'_>,
        user_key: &str,
        run: &mut Run<ErasurePosition>,
    ) -> Result<(), StopReason> {
        let stop = |err: crate::error::PersistenceError| stop_reason(&err);
        let prefix = BACKUP_INDEX_PREFIX;
        self.for_each_kv_key(
            log,
            run,
            kv_position,
            prefix,
            CALLS_PER_BACKUP,
            async |run, pager, entry| {
                let Some((backup_id, _)) = parse_backup_index_key(&entry.name) else {
                    return Ok(());
                };
                let made_for = entry
                    .metadata
                    .as_ref()
                    .and_then(|summary| summary.get("userKey"))
                    .and_then(Value::as_str);
                if made_for == Some(user_key) {
                    pager.claim(&entry.name);
                    let replicated = self.replica_calls(2 * REPLICATED);
                    run.afford(CALLS_PER_BACKUP + replicated, self.clock.now_ms())?;
                    run.spend(CALLS_PER_BACKUP);
                    let calls = self
                        .delete_backup(log, &backup_id, &entry.name)
                        .await
                        .map_err(stop)?;
                    run.spend(calls);
                    run.position.counts.backups_deleted += 1;
                } else if !run.position.sessions.is_empty() {
                    pager.claim(&entry.name);
                    self.afford(run, 1)?;
                    let manifest = self
                        .kv_get(log, &backup_manifest_kv_key(&backup_id))
                        .await
                        .map_err(stop)?;
                    let held = manifest
                        .map(|manifest| held_sessions(&manifest.value, &run.position.sessions))
                        .unwrap_or_default();
                    self.note_retained(&mut run.position.counts, &backup_id, held);
                }
                Ok(())
            },
        )
        .await
    }

    /// Notes in the receipt that the backup `backup_id` of several users still holds `held`
    /// of the user's sessions (once per backup), with why.
    fn note_retained(&self, counts: &mut ErasureCounts, backup_id: &BackupId, held: u64) {
        let retained = &mut counts.backups_retained;
        if held == 0 || retained.iter().any(|b| b.backup_id == backup_id.as_str()) {
            return;
        }
        let reason = match self.key_ring() {
            Some(_) => SHARED_ENCRYPTED,
            None => SHARED,
        };
        retained.push(RetainedBackup {
            backup_id: backup_id.to_string(),
            sessions: held,
            reason: reason.to_owned(),
        });
    }

    /// Deletes one backup: its manifest first (after which it no longer exists: never listed
    /// or restored), then its other objects and its KV entries. 5 calls; returns the calls
    /// the replica bucket took besides (up to 4).
    async fn delete_backup(
        &self,
        log: &OpLog<'_>,
        backup_id: &BackupId,
        index_entry: &str,
    ) -> Result<u32> {
        let listing = ObjectListOptions {
            prefix: Some(format!("{BACKUP_PREFIX}{backup_id}/")),
            ..ObjectListOptions::default()
        };
        let objects: Vec<String> = self
            .r2_list(log, listing)
            .await?
            .objects
            .into_iter()
            .map(|object| object.key)
            .collect();
        let manifest = crate::keys::backup_manifest_object_key(backup_id);
        let mut replicated = self
            .replicate_delete(log, std::slice::from_ref(&manifest))
            .await;
        self.r2_delete(log, std::slice::from_ref(&manifest)).await?;
        let rest: Vec<String> = objects.into_iter().filter(|key| *key != manifest).collect();
        if !rest.is_empty() {
            replicated += self.replicate_delete(log, &rest).await;
            self.r2_delete(log, &rest).await?;
        }
        self.kv_delete(log, &backup_manifest_kv_key(backup_id))
            .await?;
        self.kv_delete(log, index_entry).await?;
        log.event(
            "info",
            "deleted a backup made for an erased user",
            json!({ "backupId": backup_id.as_str() }),
        );
        Ok(replicated)
    }
}

/// Where a KV phase of an erasure continues.
fn kv_position(position: &mut ErasurePosition) -> &mut KvPosition {
    &mut position.kv
}

/// The `userId` a listing entry's metadata names.
fn entry_user_id(metadata: Option<&Value>) -> Option<&str> {
    metadata?.get("userId")?.as_str()
}

/// The R2 key a listing entry's metadata names.
fn entry_key(metadata: Option<&Value>) -> Option<&str> {
    metadata?.get("key")?.as_str()
}

/// Whether `session` is a segment of a conversation of the user met so far.
fn is_their_segment(position: &ErasurePosition, session: &SessionId) -> bool {
    parse_segment_session_id(session.as_str())
        .is_some_and(|(parent, _)| position.sessions.contains(parent))
}

/// How many of `sessions` a backup manifest (any format: all list `sessionIds`) holds.
fn held_sessions(manifest: &[u8], sessions: &BTreeSet<String>) -> u64 {
    let Ok(manifest) = serde_json::from_slice::<Value>(manifest) else {
        return 0;
    };
    manifest
        .get("sessionIds")
        .and_then(Value::as_array)
        .map_or(0, |ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .filter(|id| sessions.contains(*id))
                .count() as u64
        })
}
