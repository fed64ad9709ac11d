//! `enforceRetentionPolicy`: lists everything, lets the pure planner (`crate::retention`) decide,
//! and deletes as it goes, within a budget of storage calls and time, resuming where the last
//! run stopped.
//!
//! A sweep has two phases. R2 first: `backups/` then `conversations/`, pages of 1000 in key
//! order with custom metadata, each page's deletions sent at once in `delete(keys)` batches of
//! at most 1000 keys. Then KV: `embedding:`, `query:`, `archive_meta:`, `user_archives:`,
//! `archive_index:`, `backup_manifest:`, `backup_index:`, one `delete` call per key (the binding
//! has no bulk delete). No value is ever read: every decision comes from the listings.
//!
//! Backups: before the R2 phase, every run lists the backup index and the KV manifest copies
//! (2 KV lists per 1000 backups) and decides each indexed backup under the backup policy
//! (`crate::retention::gfs`: restic's rotation, or age when every `backupKeep*` count is 0);
//! a backup the index does not list (made before it) is decided by age unless its manifest
//! copy pins it or another backup is incremental to it.
//!
//! Deletion order: an archive object goes in the R2 phase, the index and metadata entries that
//! point at it in the KV phase of the same sweep (by the archive time they name, so even a
//! sweep that resumed in its KV phase removes them). Between the two phases, and across runs of
//! a time-boxed sweep, an entry may briefly point at a deleted object; readers treat a missing
//! object as "no archive". Once a sweep completes, no entry points at an archive past
//! retention, and, when the sweep listed R2 from its first key, none at a missing archive older
//! than the grace period. Deleting entries first would instead leave archives unlisted but
//! stored, and would need the R2 listing before KV to detect missing archives anyway.
//!
//! Time-boxing: the run checks the remaining budget (keeping one call to save the resume
//! point) and the deadline before each R2 page, for the page and all its deletions, and before
//! each KV page and each KV deletion; when they run out it stores the resume point in KV and
//! returns with `complete: false`. An R2 page is always finished once started, so its resume
//! point is the last key listed; a KV page is listed whole (a page of live keys costs one call
//! whatever the budget) and its resume point is the page's cursor and the first key not yet
//! handled. If a circuit breaker opens mid-page, the page is listed again next time. A failed
//! deletion is logged and counted and the sweep goes on (the key is deleted by a later sweep);
//! an open breaker or a failed listing stops the run.
//!
//! Replica bucket (`super::replica`): each R2 delete batch is sent there first (queued for
//! `syncReplica` when it fails), then to the primary, and budgeted with it.
//!
//! Memory: one listing page, the planner's set of surviving archive keys (bounded by
//! `RetentionOptions::max_tracked_archive_keys`) and at most [`MAX_REPORTED_KEYS`] report
//! entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunStatus, StopReason};
use super::walk::{KvPager, KvPosition};
use super::DataPersistenceService;
use crate::error::{PersistenceError, Result};
use crate::keys::{
    backup_manifest_object_key, parse_archive_object_key, BackupId, ARCHIVE_INDEX_PREFIX,
    ARCHIVE_META_PREFIX, ARCHIVE_PREFIX, BACKUP_INDEX_PREFIX, BACKUP_MANIFEST_PREFIX,
    BACKUP_PREFIX, EMBEDDING_PREFIX, QUERY_PREFIX, RETENTION_CURSOR_KEY, USER_INDEX_PREFIX,
};
use crate::platform::{MAX_LIST_LIMIT, R2_MAX_DELETE_KEYS};
use crate::retention::{
    batch_r2_deletions, BackupFateReport, DeletionReason, ListedKvKey, PlannedDeletion,
    RetentionPlanner, RetentionReport, INDEX_ARCHIVE_KEY_FIELD,
};
use crate::store::{Clock, KvStore, ObjectListOptions, ObjectStore, Rng};

/// Most deleted keys listed in a report; counts and bytes cover all of them.
pub const MAX_REPORTED_KEYS: usize = 1000;

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page, two delete batches and saving the resume point. With a replica bucket, 4 more: each
/// batch is deleted there too (and queued when that fails, `super::replica`).
pub const MIN_STORAGE_CALLS: u32 = 5;

/// What a replica bucket adds to each R2 delete batch at most.
const REPLICATED: u32 = super::replica::CALLS_PER_REPLICATED_WRITE;

/// R2 prefixes swept, in key order (the planner needs the listing sorted).
const R2_PREFIXES: [&str; 2] = [BACKUP_PREFIX, ARCHIVE_PREFIX];

/// KV prefixes swept. The backup index comes last: the backup decisions of every run are made
/// from it, so a backup's other entries must go before its index entry does.
const KV_PREFIXES: [&str; 7] = [
    EMBEDDING_PREFIX,
    QUERY_PREFIX,
    ARCHIVE_META_PREFIX,
    USER_INDEX_PREFIX,
    ARCHIVE_INDEX_PREFIX,
    BACKUP_MANIFEST_PREFIX,
    BACKUP_INDEX_PREFIX,
];

/// What one run of `enforceRetentionPolicy` did, as JSON for JavaScript:
/// `{"deleted": {"expiredCacheEntry": n, ...}, "bytesFreed": n, "keys": [...],
/// "keysTruncated": false, "failedDeletions": 0, "complete": true, "stoppedBy": null,
/// "resumed": false, "storageCalls": n}` (`keys` as in docs/FORMAT.md, "Retention").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    /// Deleted keys per reason, bytes freed, and the first [`MAX_REPORTED_KEYS`] deleted keys.
    #[serde(flatten)]
    pub report: RetentionReport,
    /// True when more keys were deleted than `keys` lists.
    pub keys_truncated: bool,
    /// Deletions that failed (the keys stay for a later sweep).
    pub failed_deletions: u64,
    /// Whether the sweep completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
    /// A dry run (`preview_retention_policy`): the keys and counts are what a sweep would
    /// delete; nothing was.
    #[serde(skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// In a dry run, every committed backup the sweep listed (at most 1000), kept or deleted
    /// with the backup policy's reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<BackupFateReport>>,
    /// True when a dry run decided more backups than `backups` lists.
    #[serde(skip_serializing_if = "is_false")]
    pub backups_truncated: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// Where an unfinished sweep continues, stored as JSON under [`RETENTION_CURSOR_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
enum SweepPosition {
    /// In the R2 phase: list after this key (`None`: from the first key).
    #[serde(rename = "r2", rename_all = "camelCase")]
    R2 { r2_start_after: Option<String> },
    /// In the KV phase: paging through `kv_prefix` at a [`KvPosition`] (flattened by hand:
    /// `#[serde(flatten)]` in an internally tagged enum costs ~12 KB of wasm).
    #[serde(rename = "kv", rename_all = "camelCase")]
    Kv {
        kv_prefix: String,
        kv_cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kv_resume_at: Option<String>,
    },
}

impl Default for SweepPosition {
    /// A sweep from the start: the R2 phase from its first key.
    fn default() -> Self {
        SweepPosition::R2 {
            r2_start_after: None,
        }
    }
}

/// One run of a sweep: the driver's run over a [`SweepPosition`] and what it deleted.
struct Sweep {
    run: Run<SweepPosition>,
    result: RetentionRun,
    /// Backups whose manifest this run asked R2 about (`true`: it is there).
    manifests_in_r2: BTreeMap<BackupId, bool>,
}

impl Sweep {
    fn record(&mut self, deletion: PlannedDeletion) {
        self.result.report.record(deletion);
        if self.result.report.keys.len() > MAX_REPORTED_KEYS {
            self.result.report.keys.pop();
            self.result.keys_truncated = true;
        }
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Runs (or continues) a retention sweep within `budget` and reports what it deleted.
    ///
    /// Costs 1 KV get (the resume point), 1 list per page of each swept prefix (and of the
    /// backup index, read first), 1 R2 delete per 1000 deleted objects, 1 KV delete per
    /// deleted KV key, and 1 KV put or delete for the resume point when the run stops early or
    /// completes a resumed sweep. Storage failures never fail the call: they stop the run
    /// (`stoppedBy`) or are counted (`failedDeletions`). Errors: `INVALID_INPUT` naming
    /// `maxStorageCalls` below [`MIN_STORAGE_CALLS`].
    pub async fn enforce_retention_policy(&self, budget: RunBudget) -> Result<RetentionRun> {
        self.retention_sweep(budget, false).await
    }

    /// What a whole retention sweep from the start would delete, deleting nothing: the report
    /// of [`enforce_retention_policy`](Self::enforce_retention_policy) with `dryRun: true` and
    /// `backups`, each committed backup kept or deleted with the backup policy's reasons.
    /// Reads only (the lists, and an R2 head per index entry found pointing at a missing young
    /// archive); neither reads nor moves the sweep's resume point. A run stopped by `budget`
    /// reports what it saw (`complete: false`).
    pub async fn preview_retention_policy(&self, budget: RunBudget) -> Result<RetentionRun> {
        self.retention_sweep(budget, true).await
    }

    async fn retention_sweep(&self, budget: RunBudget, dry_run: bool) -> Result<RetentionRun> {
        let log = self.begin("enforceRetentionPolicy");
        let resume_key = (!dry_run).then_some(RETENTION_CURSOR_KEY);
        let run = self
            .start_run(
                &log,
                budget,
                MIN_STORAGE_CALLS + self.replica_calls(2 * REPLICATED),
                resume_key,
                "retention",
            )
            .await?;
        let mut sweep = Sweep {
            run,
            result: RetentionRun {
                dry_run,
                ..RetentionRun::default()
            },
            manifests_in_r2: BTreeMap::new(),
        };
        let now_ms = self.clock.now_ms();
        let options = self.options.retention;
        let decisions = match self.backup_decisions(&log, &mut sweep.run).await {
            Ok(decisions) => decisions,
            Err(stopped) => {
                self.finish_run(&log, &mut sweep.run, Err(stopped)).await;
                let mut run = sweep.result;
                run.status = sweep.run.status;
                return Ok(run);
            }
        };
        let position = sweep.run.position.clone();
        let mut planner = match &position {
            SweepPosition::R2 {
                r2_start_after: Some(after),
            } => RetentionPlanner::resuming_r2_after(&self.policy, now_ms, options, after.clone()),
            // A sweep resumed in its KV phase needs no R2 listing except to detect missing
            // archives, which it does not attempt.
            _ => RetentionPlanner::new(&self.policy, now_ms, options),
        };
        planner.decide_backups(decisions);
        let outcome = match position {
            SweepPosition::R2 { r2_start_after } => {
                match self
                    .sweep_r2(&log, &mut sweep, &mut planner, r2_start_after)
                    .await
                {
                    Ok(()) => {
                        self.sweep_kv(&log, &mut sweep, &mut planner, 0, KvPosition::default())
                            .await
                    }
                    Err(stop) => Err(stop),
                }
            }
            SweepPosition::Kv {
                kv_prefix,
                kv_cursor,
                kv_resume_at,
            } => {
                let at = KvPosition {
                    kv_cursor,
                    kv_resume_at,
                };
                // An unknown prefix (from another version): the KV phase starts over.
                let (first, at) = match KV_PREFIXES.iter().position(|prefix| *prefix == kv_prefix) {
                    Some(first) => (first, at),
                    None => (0, KvPosition::default()),
                };
                self.sweep_kv(&log, &mut sweep, &mut planner, first, at)
                    .await
            }
        };
        if dry_run {
            let (fates, truncated) = planner.backup_fates();
            sweep.result.backups = Some(fates.to_vec());
            sweep.result.backups_truncated = truncated;
        }
        self.finish_run(&log, &mut sweep.run, outcome).await;
        let mut run = sweep.result;
        run.status = sweep.run.status;
        log.event(
            "info",
            if run.dry_run {
                "retention dry run (nothing deleted)"
            } else {
                "retention run"
            },
            json!({
                "deleted": run.report.deleted,
                "bytesFreed": run.report.bytes_freed,
                "failedDeletions": run.failed_deletions,
                "complete": run.status.complete,
                "stoppedBy": run.status.stopped_by,
                "storageCalls": run.status.storage_calls,
            }),
        );
        Ok(run)
    }

    /// The R2 phase: every page of `backups/` then `conversations/` after `start_after`.
    async fn sweep_r2(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &mut RetentionPlanner,
        start_after: Option<String>,
    ) -> Result<(), StopReason> {
        for (index, prefix) in R2_PREFIXES.iter().enumerate() {
            let last_prefix = index + 1 == R2_PREFIXES.len();
            // A resume point past this whole prefix: nothing of it is left to list.
            if start_after
                .as_deref()
                .is_some_and(|after| after > *prefix && !after.starts_with(prefix))
            {
                continue;
            }
            let mut cursor = None;
            loop {
                sweep.run.position = SweepPosition::R2 {
                    r2_start_after: planner.r2_resume_after().map(str::to_owned),
                };
                // A page of 1000 plus an undecided backup of the page before needs two batches.
                let per_batch = 1 + self.replica_calls(REPLICATED);
                sweep.run.afford(1 + 2 * per_batch, self.clock.now_ms())?;
                sweep.run.spend(1);
                let options = ObjectListOptions {
                    prefix: Some((*prefix).to_owned()),
                    start_after: if cursor.is_none() {
                        start_after.clone()
                    } else {
                        None
                    },
                    cursor: cursor.clone(),
                    limit: Some(MAX_LIST_LIMIT),
                    include_custom_metadata: true,
                };
                let page = self
                    .r2_list(log, options)
                    .await
                    .map_err(|err| stop_reason(&err))?;
                let next = page.cursor.filter(|_| page.truncated);
                let mut planned = planner.plan_r2_page(&page.objects).map_err(|err| {
                    log.event(
                        "error",
                        "R2 listing out of key order",
                        json!({ "error": err.to_string() }),
                    );
                    StopReason::StorageError
                })?;
                if next.is_none() && last_prefix {
                    planned.extend(planner.finish_r2_listing());
                }
                self.delete_r2(log, sweep, planner, planned).await?;
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Deletes one page's R2 keys in batches of at most 1000.
    async fn delete_r2(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &mut RetentionPlanner,
        planned: Vec<PlannedDeletion>,
    ) -> Result<(), StopReason> {
        if sweep.result.dry_run {
            planner.confirm_all(&planned);
            planned
                .into_iter()
                .for_each(|deletion| sweep.record(deletion));
            return Ok(());
        }
        let batches = batch_r2_deletions(&planned, R2_MAX_DELETE_KEYS);
        let per_batch = 1 + self.replica_calls(REPLICATED);
        if batches.len() as u64 * u64::from(per_batch) > u64::from(sweep.run.calls_left()) {
            return Err(StopReason::CallBudget);
        }
        let mut deletions = planned.into_iter();
        for batch in batches {
            let settled: Vec<PlannedDeletion> = deletions.by_ref().take(batch.len()).collect();
            // In the replica first: a crash before the primary's deletion leaves the primary's
            // objects, which the next sweep lists and deletes again.
            sweep.run.spend(self.replicate_delete(log, &batch).await);
            sweep.run.spend(1);
            match self.r2_delete(log, &batch).await {
                Ok(()) => settled.into_iter().for_each(|deletion| {
                    planner.confirm_deleted(&deletion);
                    sweep.record(deletion)
                }),
                Err(err @ PersistenceError::CircuitOpen { .. }) => return Err(stop_reason(&err)),
                Err(err) => {
                    sweep.result.failed_deletions += batch.len() as u64;
                    log.event("warn", "R2 delete failed; a later sweep retries", json!({ "first": batch.first(), "keys": batch.len(), "error": err.to_string() }));
                }
            }
        }
        Ok(())
    }

    /// Whether R2 still holds what the KV entry `deletion` describes, so it stays: for an index
    /// entry planned as pointing at a missing archive that is within its retention, the archive
    /// (the listing may predate a restore that has since written it); for the entry of a backup
    /// this run did not delete, its manifest (an earlier run's delete of it may have failed).
    /// R2 is strongly consistent: 1 R2 head, once per backup.
    async fn still_in_r2(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &RetentionPlanner,
        deletion: &PlannedDeletion,
        page: &[ListedKvKey],
    ) -> Result<bool, StopReason> {
        let backup = planner.unconfirmed_backup(deletion);
        if let Some(present) = backup.as_ref().and_then(|id| sweep.manifests_in_r2.get(id)) {
            return Ok(*present);
        }
        let Some(key) = self
            .young_archive_of(deletion, page)
            .or_else(|| backup.as_ref().map(backup_manifest_object_key))
        else {
            return Ok(false);
        };
        // A dry run deletes nothing; it still asks R2.
        let calls = 1 + u32::from(!sweep.result.dry_run);
        sweep.run.afford(calls, self.clock.now_ms())?;
        sweep.run.spend(1);
        let present = self
            .r2_head(log, &key)
            .await
            .map_err(|err| stop_reason(&err))?
            .is_some();
        if let Some(id) = backup {
            sweep.manifests_in_r2.insert(id, present);
        }
        Ok(present)
    }

    /// For an index entry planned as dangling, the key of the archive it points at when that
    /// archive is still within its retention (so it was planned missing, not expired).
    fn young_archive_of(&self, deletion: &PlannedDeletion, page: &[ListedKvKey]) -> Option<String> {
        if deletion.reason != DeletionReason::DanglingIndexEntry {
            return None;
        }
        let listed = page.iter().find(|entry| entry.name == deletion.key)?;
        let archive_key = listed
            .metadata
            .as_ref()?
            .get(INDEX_ARCHIVE_KEY_FIELD)?
            .as_str()?;
        let archived_at_ms = parse_archive_object_key(archive_key)?.archived_at_ms;
        let retention_ms = i64::try_from(self.policy.archive_retention_ms).unwrap_or(i64::MAX);
        let young = self.clock.now_ms().saturating_sub(archived_at_ms) < retention_ms;
        young.then(|| archive_key.to_owned())
    }

    /// The KV phase: every page of each swept prefix, from `KV_PREFIXES[first]` at `at`
    /// (`super::walk`: pages listed whole, the resume point naming the page and the first key
    /// not yet handled).
    async fn sweep_kv(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &mut RetentionPlanner,
        first: usize,
        mut at: KvPosition,
    ) -> Result<(), StopReason> {
        for prefix in &KV_PREFIXES[first..] {
            let mut pager = KvPager::new(*prefix, std::mem::take(&mut at));
            let outcome = self.sweep_kv_prefix(log, sweep, planner, &mut pager).await;
            if outcome.is_err() {
                sweep.run.position = SweepPosition::Kv {
                    kv_prefix: (*prefix).to_owned(),
                    kv_cursor: pager.at.kv_cursor,
                    kv_resume_at: pager.at.kv_resume_at,
                };
                return outcome;
            }
        }
        Ok(())
    }

    /// Every page of one KV prefix: the planner's deletions, one call each.
    async fn sweep_kv_prefix(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &mut RetentionPlanner,
        pager: &mut KvPager,
    ) -> Result<(), StopReason> {
        while let Some(page) = self.next_kv_page(log, &mut sweep.run, pager, 1).await? {
            for deletion in planner.plan_kv_page(&page) {
                pager.claim(&deletion.key);
                if self
                    .still_in_r2(log, sweep, planner, &deletion, &page)
                    .await?
                {
                    continue;
                }
                if sweep.result.dry_run {
                    sweep.record(deletion);
                    continue;
                }
                sweep.run.afford(1, self.clock.now_ms())?;
                sweep.run.spend(1);
                match self.kv_delete(log, &deletion.key).await {
                    Ok(()) => sweep.record(deletion),
                    Err(err @ PersistenceError::CircuitOpen { .. }) => {
                        return Err(stop_reason(&err))
                    }
                    Err(err) => {
                        sweep.result.failed_deletions += 1;
                        planner.kv_delete_failed(&deletion.key);
                        log.event(
                            "warn",
                            "KV delete failed; a later sweep retries",
                            json!({ "key": deletion.key, "error": err.to_string() }),
                        );
                    }
                }
            }
            pager.page_done();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn resume_points_round_trip_as_camel_case_json() {
        let r2 = SweepPosition::R2 {
            r2_start_after: Some("backups/b1/manifest.json".into()),
        };
        let text = json!(r2).to_string();
        assert_eq!(
            text,
            r#"{"phase":"r2","r2StartAfter":"backups/b1/manifest.json"}"#
        );
        assert_eq!(serde_json::from_str::<SweepPosition>(&text).unwrap(), r2);
        // Without a key to resume at, as earlier versions wrote it.
        let kv = SweepPosition::Kv {
            kv_prefix: "query:".into(),
            kv_cursor: None,
            kv_resume_at: None,
        };
        let text = json!(kv).to_string();
        assert_eq!(
            text,
            r#"{"phase":"kv","kvPrefix":"query:","kvCursor":null}"#
        );
        assert_eq!(serde_json::from_str::<SweepPosition>(&text).unwrap(), kv);
        let kv = SweepPosition::Kv {
            kv_prefix: "query:".into(),
            kv_cursor: Some("c2".into()),
            kv_resume_at: Some("query:ab".into()),
        };
        let text = json!(kv).to_string();
        assert_eq!(
            text,
            r#"{"phase":"kv","kvPrefix":"query:","kvCursor":"c2","kvResumeAt":"query:ab"}"#
        );
        assert_eq!(serde_json::from_str::<SweepPosition>(&text).unwrap(), kv);
    }

    #[test]
    fn report_lists_at_most_the_cap_but_counts_everything() {
        let mut sweep = Sweep {
            run: Run::for_test(RunBudget::default(), "k"),
            result: RetentionRun::default(),
            manifests_in_r2: BTreeMap::new(),
        };
        for index in 0..MAX_REPORTED_KEYS + 5 {
            sweep.record(PlannedDeletion {
                store: crate::platform::Binding::R2,
                key: format!("k{index}"),
                reason: crate::retention::DeletionReason::ArchivePastRetention,
                size_bytes: Some(2),
            });
        }
        assert_eq!(sweep.result.report.keys.len(), MAX_REPORTED_KEYS);
        assert!(sweep.result.keys_truncated);
        assert_eq!(sweep.result.report.deleted.archive_past_retention, 1005);
        assert_eq!(sweep.result.report.bytes_freed, 2010);
        let json = crate::codec::json_text(&sweep.result);
        assert!(json.contains(r#""keysTruncated":true"#), "{json}");
        assert!(json.contains(r#""stoppedBy":null"#), "{json}");
    }
}
