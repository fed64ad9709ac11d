//! `enforceRetentionPolicy`: lists everything, lets the pure planner (`crate::retention`) decide,
//! and deletes as it goes, within a budget of storage calls and time, resuming where the last
//! run stopped.
//!
//! A sweep has two phases. R2 first: `backups/` then `conversations/`, pages of 1000 in key
//! order with custom metadata, each page's deletions sent at once in `delete(keys)` batches of
//! at most 1000 keys. Then KV: `embedding:`, `query:`, `archive_meta:`, `user_archives:`,
//! `archive_index:`, `backup_manifest:`, one `delete` call per key (the binding has no bulk
//! delete). No value is ever read: every decision comes from the listings.
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
//! Memory: one listing page, the planner's set of surviving archive keys (bounded by
//! `RetentionOptions::max_tracked_archive_keys`) and at most [`MAX_REPORTED_KEYS`] report
//! entries.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::log::OpLog;
use super::{json_text, PersistenceService};
use crate::error::{PersistenceError, Result};
use crate::keys::{
    parse_archive_object_key, ARCHIVE_INDEX_PREFIX, ARCHIVE_META_PREFIX, ARCHIVE_PREFIX,
    BACKUP_MANIFEST_PREFIX, BACKUP_PREFIX, EMBEDDING_PREFIX, QUERY_PREFIX, RETENTION_CURSOR_KEY,
    USER_INDEX_PREFIX,
};
use crate::retention::{
    batch_r2_deletions, DeletionReason, ListedKvKey, PlannedDeletion, RetentionPlanner,
    RetentionReport, INDEX_ARCHIVE_KEY_FIELD, R2_MAX_KEYS_PER_DELETE,
};
use crate::store::{Clock, KvListOptions, KvPutOptions, KvStore, ObjectListOptions, ObjectStore};

/// Most deleted keys listed in a report; counts and bytes cover all of them.
pub const MAX_REPORTED_KEYS: usize = 1000;

/// Smallest call budget that lets a run make progress: reading the resume point, one list
/// page, two delete batches and saving the resume point.
pub const MIN_STORAGE_CALLS: u32 = 5;

/// Most keys a list page returns (KV and R2).
const PAGE_LIMIT: u32 = 1000;

/// R2 prefixes swept, in key order (the planner needs the listing sorted).
const R2_PREFIXES: [&str; 2] = [BACKUP_PREFIX, ARCHIVE_PREFIX];

/// KV prefixes swept.
const KV_PREFIXES: [&str; 6] = [
    EMBEDDING_PREFIX,
    QUERY_PREFIX,
    ARCHIVE_META_PREFIX,
    USER_INDEX_PREFIX,
    ARCHIVE_INDEX_PREFIX,
    BACKUP_MANIFEST_PREFIX,
];

/// Limits of one run. Workers allow 50 subrequests per request on the free plan and 1000 on
/// paid; leave room for the caller's own calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionBudget {
    /// Most storage calls this run may make (a retried call counts once); `None`: no limit.
    /// At least [`MIN_STORAGE_CALLS`].
    pub max_storage_calls: Option<u32>,
    /// Epoch ms after which the run starts no new page, deletion or record; `None`: no
    /// deadline.
    pub deadline_ms: Option<i64>,
}

impl RetentionBudget {
    /// Checks that `maxStorageCalls`, when set, is at least `minimum`, the least a run of
    /// the operation needs to make progress. Errors: `INVALID_INPUT` naming `maxStorageCalls`.
    pub(super) fn require_at_least(&self, minimum: u32) -> Result<()> {
        match self.max_storage_calls {
            Some(max) if max < minimum => Err(PersistenceError::invalid_input(
                "maxStorageCalls",
                format!("{max} is below {minimum}, the least one run needs"),
            )),
            _ => Ok(()),
        }
    }

    /// Calls left after `used` of them, keeping one for saving the resume point.
    pub(super) fn calls_left(&self, used: u32) -> u32 {
        self.max_storage_calls
            .map_or(u32::MAX, |max| max.saturating_sub(used).saturating_sub(1))
    }

    /// Checks that `calls` more calls after `used`, plus the one that saves the resume point,
    /// fit the budget, and that the deadline has not passed.
    pub(super) fn afford(&self, used: u32, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        if self.deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
            return Err(StopReason::Deadline);
        }
        if calls > self.calls_left(used) {
            return Err(StopReason::CallBudget);
        }
        Ok(())
    }
}

/// Why a run stopped before the sweep was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The next page, deletion or record would not fit `maxStorageCalls`.
    CallBudget,
    /// `deadlineMs` passed.
    Deadline,
    /// A binding's circuit breaker is open.
    CircuitOpen,
    /// A listing failed after its retries.
    StorageError,
}

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
    /// True when the sweep reached its end in this run (its resume point is cleared).
    pub complete: bool,
    /// Why the run stopped early, when it did.
    pub stopped_by: Option<StopReason>,
    /// True when this run continued an earlier, unfinished one.
    pub resumed: bool,
    /// Storage calls made by this run.
    pub storage_calls: u32,
}

impl RetentionRun {
    /// The run's report as JSON text for JavaScript.
    pub fn to_json(&self) -> String {
        json_text(self)
    }
}

/// Where an unfinished sweep continues, stored as JSON under [`RETENTION_CURSOR_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
enum SweepPosition {
    /// In the R2 phase: list after this key (`None`: from the first key).
    #[serde(rename = "r2", rename_all = "camelCase")]
    R2 { r2_start_after: Option<String> },
    /// In the KV phase: list `kv_prefix` from `kv_cursor` (`None`: from its first key), and
    /// in that page skip the keys before `kv_resume_at`, which a run that stopped part-way
    /// through the page has handled already (absent in resume points of earlier versions).
    #[serde(rename = "kv", rename_all = "camelCase")]
    Kv {
        kv_prefix: String,
        kv_cursor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kv_resume_at: Option<String>,
    },
}

/// The state of one run: its budget, its report and where it would resume.
struct Sweep {
    budget: RetentionBudget,
    run: RetentionRun,
    position: SweepPosition,
}

impl Sweep {
    fn afford(&self, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.budget.afford(self.run.storage_calls, calls, now_ms)
    }

    fn calls_left(&self) -> u32 {
        self.budget.calls_left(self.run.storage_calls)
    }

    fn record(&mut self, deletion: PlannedDeletion) {
        self.run.report.record(deletion);
        if self.run.report.keys.len() > MAX_REPORTED_KEYS {
            self.run.report.keys.pop();
            self.run.keys_truncated = true;
        }
    }
}

/// How a failed storage call affects a maintenance run: an open breaker or a failed listing
/// stops it.
pub(super) fn stop_reason(err: &PersistenceError) -> StopReason {
    match err {
        PersistenceError::CircuitOpen { .. } => StopReason::CircuitOpen,
        _ => StopReason::StorageError,
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock> PersistenceService<K, R, C> {
    /// Runs (or continues) a retention sweep within `budget` and reports what it deleted.
    ///
    /// Costs 1 KV get (the resume point), 1 list per page of each swept prefix, 1 R2 delete
    /// per 1000 deleted objects, 1 KV delete per deleted KV key, and 1 KV put or delete for the
    /// resume point when the run stops early or completes a resumed sweep. Storage failures
    /// never fail the call: they stop the run (`stoppedBy`) or are counted
    /// (`failedDeletions`). Errors: `INVALID_INPUT` naming `maxStorageCalls` below
    /// [`MIN_STORAGE_CALLS`].
    pub async fn enforce_retention_policy(&self, budget: RetentionBudget) -> Result<RetentionRun> {
        let log = self.begin("enforceRetentionPolicy");
        budget.require_at_least(MIN_STORAGE_CALLS)?;
        let mut sweep = Sweep {
            budget,
            run: RetentionRun::default(),
            position: SweepPosition::R2 {
                r2_start_after: None,
            },
        };
        let resume = self.load_sweep_position(&log, &mut sweep).await;
        sweep.run.resumed = resume.is_some();
        let now_ms = self.clock.now_ms();
        let options = self.options.retention;
        let outcome = match resume.unwrap_or(SweepPosition::R2 {
            r2_start_after: None,
        }) {
            SweepPosition::R2 { r2_start_after } => {
                let mut planner = match r2_start_after.clone() {
                    Some(after) => {
                        RetentionPlanner::resuming_r2_after(&self.policy, now_ms, options, after)
                    }
                    None => RetentionPlanner::new(&self.policy, now_ms, options),
                };
                match self
                    .sweep_r2(&log, &mut sweep, &mut planner, r2_start_after)
                    .await
                {
                    Ok(()) => {
                        self.sweep_kv(&log, &mut sweep, &planner, 0, None, None)
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
                // KV decisions need no R2 listing except to detect missing archives, which a
                // resumed sweep does not attempt.
                let planner = RetentionPlanner::new(&self.policy, now_ms, options);
                // An unknown prefix (from another version): the KV phase starts over.
                let (first, cursor, resume_at) =
                    match KV_PREFIXES.iter().position(|prefix| *prefix == kv_prefix) {
                        Some(first) => (first, kv_cursor, kv_resume_at),
                        None => (0, None, None),
                    };
                self.sweep_kv(&log, &mut sweep, &planner, first, cursor, resume_at)
                    .await
            }
        };
        match outcome {
            Ok(()) => {
                sweep.run.complete = true;
                if sweep.run.resumed {
                    sweep.run.storage_calls += 1;
                    if let Err(err) = self.kv_delete(&log, RETENTION_CURSOR_KEY).await {
                        log.event(
                            "warn",
                            "could not clear the retention resume point",
                            json!({ "error": err.to_string() }),
                        );
                    }
                }
            }
            Err(stop) => {
                sweep.run.stopped_by = Some(stop);
                self.save_sweep_position(&log, &mut sweep).await;
            }
        }
        let run = sweep.run;
        log.event(
            "info",
            "retention run",
            json!({
                "deleted": run.report.deleted,
                "bytesFreed": run.report.bytes_freed,
                "failedDeletions": run.failed_deletions,
                "complete": run.complete,
                "stoppedBy": run.stopped_by,
                "storageCalls": run.storage_calls,
            }),
        );
        Ok(run)
    }

    /// The resume point of an unfinished sweep, if one is stored and readable.
    async fn load_sweep_position(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
    ) -> Option<SweepPosition> {
        sweep.run.storage_calls += 1;
        match self.kv_get(log, RETENTION_CURSOR_KEY).await {
            Ok(Some(stored)) => match serde_json::from_slice(&stored.value) {
                Ok(position) => Some(position),
                Err(err) => {
                    log.event(
                        "warn",
                        "ignoring an unreadable retention resume point",
                        json!({ "error": err.to_string() }),
                    );
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the retention resume point; sweeping from the start",
                    json!({ "error": err.to_string() }),
                );
                None
            }
        }
    }

    async fn save_sweep_position(&self, log: &OpLog<'_>, sweep: &mut Sweep) {
        let value = json_text(&sweep.position);
        sweep.run.storage_calls += 1;
        if let Err(err) = self
            .kv_put(
                log,
                RETENTION_CURSOR_KEY,
                value.as_bytes(),
                KvPutOptions::default(),
            )
            .await
        {
            log.event(
                "warn",
                "could not save the retention resume point; the next run starts over",
                json!({ "error": err.to_string() }),
            );
        }
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
                sweep.position = SweepPosition::R2 {
                    r2_start_after: planner.r2_resume_after().map(str::to_owned),
                };
                // A page of 1000 plus an undecided backup of the page before needs two batches.
                sweep.afford(3, self.clock.now_ms())?;
                sweep.run.storage_calls += 1;
                let options = ObjectListOptions {
                    prefix: Some((*prefix).to_owned()),
                    start_after: if cursor.is_none() {
                        start_after.clone()
                    } else {
                        None
                    },
                    cursor: cursor.clone(),
                    limit: Some(PAGE_LIMIT),
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
                self.delete_r2(log, sweep, planned).await?;
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
        planned: Vec<PlannedDeletion>,
    ) -> Result<(), StopReason> {
        let batches = batch_r2_deletions(&planned, R2_MAX_KEYS_PER_DELETE);
        if batches.len() as u64 > u64::from(sweep.calls_left()) {
            return Err(StopReason::CallBudget);
        }
        let mut deletions = planned.into_iter();
        for batch in batches {
            let settled: Vec<PlannedDeletion> = deletions.by_ref().take(batch.len()).collect();
            sweep.run.storage_calls += 1;
            match self.r2_delete(log, &batch).await {
                Ok(()) => settled
                    .into_iter()
                    .for_each(|deletion| sweep.record(deletion)),
                Err(err @ PersistenceError::CircuitOpen { .. }) => return Err(stop_reason(&err)),
                Err(err) => {
                    sweep.run.failed_deletions += batch.len() as u64;
                    log.event("warn", "R2 delete failed; a later sweep retries", json!({ "first": batch.first(), "keys": batch.len(), "error": err.to_string() }));
                }
            }
        }
        Ok(())
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

    /// The KV phase: every page of each swept prefix, from `KV_PREFIXES[first]` at `cursor`,
    /// skipping that first page's keys before `resume_at`. Pages are listed whole; when the
    /// budget or the deadline runs out part-way through one, the resume point names the page
    /// and the first key not yet handled, so the next run lists that page again and goes on
    /// from there. (Listing only as many keys as the calls left could delete made a run with
    /// a budget of 50 list 16 keys at a time, live ones included.)
    async fn sweep_kv(
        &self,
        log: &OpLog<'_>,
        sweep: &mut Sweep,
        planner: &RetentionPlanner,
        first: usize,
        mut cursor: Option<String>,
        mut resume_at: Option<String>,
    ) -> Result<(), StopReason> {
        for prefix in KV_PREFIXES.iter().skip(first) {
            loop {
                sweep.position = SweepPosition::Kv {
                    kv_prefix: (*prefix).to_owned(),
                    kv_cursor: cursor.clone(),
                    kv_resume_at: resume_at.clone(),
                };
                // The listing and at least one deletion.
                sweep.afford(2, self.clock.now_ms())?;
                sweep.run.storage_calls += 1;
                let options = KvListOptions {
                    prefix: Some((*prefix).to_owned()),
                    cursor: cursor.clone(),
                    limit: Some(PAGE_LIMIT),
                };
                let mut page = self
                    .kv_list(log, options)
                    .await
                    .map_err(|err| stop_reason(&err))?;
                if let Some(resume_at) = resume_at.take() {
                    // KV lists keys in UTF-8 byte order, which is how `str` compares.
                    page.keys.retain(|entry| entry.name >= resume_at);
                }
                for deletion in planner.plan_kv_page(&page.keys) {
                    // Should the run stop before this key is handled, it resumes at it.
                    sweep.position = SweepPosition::Kv {
                        kv_prefix: (*prefix).to_owned(),
                        kv_cursor: cursor.clone(),
                        kv_resume_at: Some(deletion.key.clone()),
                    };
                    let young_archive = self.young_archive_of(&deletion, &page.keys);
                    let calls = if young_archive.is_some() { 2 } else { 1 };
                    sweep.afford(calls, self.clock.now_ms())?;
                    if let Some(archive_key) = young_archive {
                        // Planned as pointing at a missing archive that is within its
                        // retention: the listing may predate a restore that has since written
                        // it. R2 is strongly consistent, so ask it before deleting.
                        sweep.run.storage_calls += 1;
                        match self.r2_head(log, &archive_key).await {
                            Ok(None) => {}
                            Ok(Some(_)) => continue,
                            Err(err) => return Err(stop_reason(&err)),
                        }
                    }
                    sweep.run.storage_calls += 1;
                    match self.kv_delete(log, &deletion.key).await {
                        Ok(()) => sweep.record(deletion),
                        Err(err @ PersistenceError::CircuitOpen { .. }) => {
                            return Err(stop_reason(&err))
                        }
                        Err(err) => {
                            sweep.run.failed_deletions += 1;
                            log.event(
                                "warn",
                                "KV delete failed; a later sweep retries",
                                json!({ "key": deletion.key, "error": err.to_string() }),
                            );
                        }
                    }
                }
                match page.cursor.filter(|_| !page.list_complete) {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            cursor = None;
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
    fn budget_reserves_the_call_that_saves_the_resume_point() {
        let mut sweep = Sweep {
            budget: RetentionBudget {
                max_storage_calls: Some(10),
                deadline_ms: Some(100),
            },
            run: RetentionRun::default(),
            position: SweepPosition::R2 {
                r2_start_after: None,
            },
        };
        sweep.run.storage_calls = 6;
        assert_eq!(sweep.afford(3, 0), Ok(()));
        assert_eq!(sweep.afford(4, 0), Err(StopReason::CallBudget));
        assert_eq!(sweep.afford(1, 100), Err(StopReason::Deadline));
        assert_eq!(sweep.calls_left(), 3);
    }

    #[test]
    fn report_lists_at_most_the_cap_but_counts_everything() {
        let mut sweep = Sweep {
            budget: RetentionBudget::default(),
            run: RetentionRun::default(),
            position: SweepPosition::R2 {
                r2_start_after: None,
            },
        };
        for index in 0..MAX_REPORTED_KEYS + 5 {
            sweep.record(PlannedDeletion {
                store: crate::retention::Store::R2,
                key: format!("k{index}"),
                reason: crate::retention::DeletionReason::ArchivePastRetention,
                size_bytes: Some(2),
            });
        }
        assert_eq!(sweep.run.report.keys.len(), MAX_REPORTED_KEYS);
        assert!(sweep.run.keys_truncated);
        assert_eq!(sweep.run.report.deleted.archive_past_retention, 1005);
        assert_eq!(sweep.run.report.bytes_freed, 2010);
        let json = sweep.run.to_json();
        assert!(json.contains(r#""keysTruncated":true"#), "{json}");
        assert!(json.contains(r#""stoppedBy":null"#), "{json}");
    }
}
