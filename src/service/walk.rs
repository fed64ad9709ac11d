//! Budgeted, resumable paging through the KV keys under a prefix, on the run driver
//! (`super::run`): [`KvPager`] for every job that lists KV prefixes page by page (the
//! retention sweep's KV phase among them), and [`DataPersistenceService::walk`], the whole run
//! of a job that visits every key of one prefix (`indexLegacyArchives`, `reindexUserArchives`).
//!
//! Pages of 1000 are listed whole; before each key that needs storage calls the job
//! [claims](KvPager::claim) it and checks the budget (keeping one call to save the resume
//! point) and the deadline. When a run stops, its resume point is the page's KV cursor and the
//! first key it did not handle, stored as JSON under the job's own KV key; the next run lists
//! that page again and skips the keys before it. A completed run that had resumed deletes the
//! resume point. (Listing only as many keys as the calls left could handle made a run with a
//! budget of 50 list 9 keys at a time, keys needing nothing included.)

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, StopReason};
use super::DataPersistenceService;
use crate::error::Result;
use crate::platform::MAX_LIST_LIMIT;
use crate::store::{
    Clock, KvListOptions, KvStore, ListedKvKey, ObjectListOptions, ObjectListPage, ObjectStore, Rng,
};

/// Where paging through a KV prefix continues: `{"kvCursor": ..., "kvResumeAt"?: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvPosition {
    /// KV list cursor of the page to list next (`None`: the prefix's first page).
    pub kv_cursor: Option<String>,
    /// In that page, the first key not yet handled, when a run stopped part-way through it
    /// (absent in resume points of earlier versions: the whole page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_resume_at: Option<String>,
}

/// Pages through one KV prefix from a [`KvPosition`], which it keeps up to date.
pub(super) struct KvPager {
    prefix: String,
    /// Where a run that stopped now would continue.
    pub at: KvPosition,
    /// The cursor of the page after the one being handled; `None` once the last page is out.
    next_cursor: Option<String>,
    finished: bool,
}

impl KvPager {
    /// Pages through `prefix` from `at`.
    pub fn new(prefix: impl Into<String>, at: KvPosition) -> Self {
        KvPager {
            prefix: prefix.into(),
            at,
            next_cursor: None,
            finished: false,
        }
    }

    /// Starts handling `key` of the current page: should the run stop before it is done, it
    /// resumes at this key.
    pub fn claim(&mut self, key: &str) {
        self.at.kv_resume_at = Some(key.to_owned());
    }

    /// Whether every page was handled.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Marks the current page handled.
    pub fn page_done(&mut self) {
        self.at.kv_resume_at = None;
        match self.next_cursor.take() {
            Some(next) => self.at.kv_cursor = Some(next),
            None => self.finished = true,
        }
    }
}

/// One run of a walk over one prefix: the driver's run and the pager.
pub(super) struct KvWalk {
    /// The run: budget and status (its position is the pager's, stored when it stops).
    pub run: Run<KvPosition>,
    pager: KvPager,
}

impl KvWalk {
    /// Starts handling `key` of the current page, which may take up to `calls` calls.
    pub fn claim(&mut self, key: &str, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.pager.claim(key);
        self.run.afford(calls, now_ms)
    }
}

/// A job that visits every key under one KV prefix: what it is called and what it needs.
pub(super) struct WalkJob {
    /// The public operation, as logs name it (`"indexLegacyArchives"`).
    pub operation: &'static str,
    /// What the run's own log lines call the job (`"migration"`).
    pub name: &'static str,
    /// The KV key of the walk's resume point.
    pub resume_key: &'static str,
    /// The prefix walked.
    pub prefix: &'static str,
    /// What the log says when a run ends (with the report).
    pub done: &'static str,
    /// Smallest call budget that lets a run make progress.
    pub min_budget: u32,
    /// Calls one key may need, which a page must leave room for.
    pub calls_per_key: u32,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Runs (or continues) `job` within `budget`: every page of its prefix from the stored
    /// position, `visit` called for each key (it [claims](KvWalk::claim) a key before spending
    /// calls on it), the resume point saved or cleared at the end; the run's report, logged.
    /// Errors: `INVALID_INPUT` naming `maxStorageCalls` below the job's minimum.
    pub(super) async fn walk<Report: RunReport>(
        &self,
        job: &WalkJob,
        budget: RunBudget,
        mut visit: impl AsyncFnMut(
            &OpLog<'_>,
            &mut KvWalk,
            &mut Report,
            &ListedKvKey,
        ) -> Result<(), StopReason>,
    ) -> Result<Report> {
        let log = &self.begin(job.operation);
        let mut report = Report::default();
        let run: Run<KvPosition> = self
            .start_run(log, budget, job.min_budget, Some(job.resume_key), job.name)
            .await?;
        let pager = KvPager::new(job.prefix, run.position.clone());
        let mut walk = KvWalk { run, pager };
        let mut outcome = Ok(());
        while outcome.is_ok() {
            let page = match self
                .next_kv_page(log, &mut walk.run, &mut walk.pager, job.calls_per_key)
                .await
            {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(stopped) => {
                    outcome = Err(stopped);
                    break;
                }
            };
            for entry in &page {
                outcome = visit(log, &mut walk, &mut report, entry).await;
                if outcome.is_err() {
                    break;
                }
            }
            if outcome.is_ok() {
                walk.pager.page_done();
            }
        }
        walk.run.position = walk.pager.at;
        self.finish_run(log, &mut walk.run, outcome).await;
        *report.status_mut() = walk.run.status;
        log.event("info", job.done, json!(report));
        Ok(report)
    }

    /// The next page of `pager`'s prefix, without the keys a stopped run already handled;
    /// `None` once every page is handled. Needs room in `run` for the listing and one key's
    /// `calls_per_key`.
    pub(super) async fn next_kv_page<P>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
        pager: &mut KvPager,
        calls_per_key: u32,
    ) -> Result<Option<Vec<ListedKvKey>>, StopReason> {
        if pager.finished {
            return Ok(None);
        }
        run.afford(1 + calls_per_key, self.clock.now_ms())?;
        run.spend(1);
        self.list_kv_page(log, pager)
            .await
            .map(Some)
            .map_err(|err| stop_reason(&err))
    }

    /// Lists the page `pager` is at (1 KV list), without the keys a stopped run already
    /// handled, for a job without a budget (a person's export); [`Self::next_kv_page`] for a
    /// run. Call only while the pager is not [finished](KvPager::is_finished).
    pub(super) async fn list_kv_page(
        &self,
        log: &OpLog<'_>,
        pager: &mut KvPager,
    ) -> Result<Vec<ListedKvKey>> {
        let options = KvListOptions {
            prefix: Some(pager.prefix.clone()),
            cursor: pager.at.kv_cursor.clone(),
            limit: Some(MAX_LIST_LIMIT),
        };
        let page = self.kv_list(log, options).await?;
        pager.next_cursor = page.cursor.filter(|_| !page.list_complete);
        let mut keys = page.keys;
        if let Some(resume_at) = &pager.at.kv_resume_at {
            // KV lists keys in UTF-8 byte order, which is how `str` compares.
            keys.retain(|entry| entry.name >= *resume_at);
        }
        Ok(keys)
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Visits every key under `prefix` from the position `kv_of` finds in the run's position
    /// (which it keeps up to date), page by page, within `run`: the part of a job that pages
    /// through one KV prefix among others (an erasure's phases). `visit` [claims](KvPager::claim)
    /// a key before spending calls on it; each page leaves room for `calls_per_key`.
    pub(super) async fn for_each_kv_key<P>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
        kv_of: fn(&mut P) -> &mut KvPosition,
        prefix: impl Into<String>,
        calls_per_key: u32,
        mut visit: impl AsyncFnMut(&mut Run<P>, &mut KvPager, &ListedKvKey) -> Result<(), StopReason>,
    ) -> Result<(), StopReason> {
        let mut pager = KvPager::new(prefix, std::mem::take(kv_of(&mut run.position)));
        let mut outcome = Ok(());
        'pages: loop {
            let page = match self.next_kv_page(log, run, &mut pager, calls_per_key).await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(stopped) => {
                    outcome = Err(stopped);
                    break;
                }
            };
            for entry in &page {
                if let Err(stopped) = visit(run, &mut pager, entry).await {
                    outcome = Err(stopped);
                    break 'pages;
                }
            }
            pager.page_done();
        }
        *kv_of(&mut run.position) = pager.at;
        outcome
    }

    /// The next page (up to 1000) of the R2 objects under `prefix` after the key `after`, with
    /// their custom metadata when `with_metadata`, for a run that walks R2 in key order
    /// (rotation, `encryptExistingArchives`): afforded and counted against `run`; a failed
    /// listing stops it.
    pub(super) async fn next_r2_page<P>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
        prefix: &str,
        after: Option<String>,
        with_metadata: bool,
    ) -> Result<ObjectListPage, StopReason> {
        run.afford(1, self.clock.now_ms())?;
        run.spend(1);
        let options = ObjectListOptions {
            prefix: Some(prefix.to_owned()),
            start_after: after,
            limit: Some(MAX_LIST_LIMIT),
            include_custom_metadata: with_metadata,
            ..ObjectListOptions::default()
        };
        self.r2_list(log, options)
            .await
            .map_err(|err| stop_reason(&err))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::json_text;

    #[test]
    fn positions_are_camel_case_json_and_read_without_a_resume_key() {
        // As earlier versions wrote it: the whole page.
        let position = KvPosition {
            kv_cursor: Some("c1".into()),
            kv_resume_at: None,
        };
        let text = json_text(&position);
        assert_eq!(text, r#"{"kvCursor":"c1"}"#);
        assert_eq!(
            serde_json::from_str::<KvPosition>(&text).ok(),
            Some(position)
        );
        let position = KvPosition {
            kv_cursor: None,
            kv_resume_at: Some("archive_meta:s1".into()),
        };
        let text = json_text(&position);
        assert_eq!(text, r#"{"kvCursor":null,"kvResumeAt":"archive_meta:s1"}"#);
        assert_eq!(
            serde_json::from_str::<KvPosition>(&text).ok(),
            Some(position)
        );
    }

    #[test]
    fn claiming_a_key_makes_it_the_resume_point_and_pages_advance_the_cursor() {
        let mut walk = KvWalk {
            run: Run::for_test(
                RunBudget {
                    max_storage_calls: Some(20),
                    deadline_ms: Some(100),
                },
                "k",
            ),
            pager: KvPager::new("p:", KvPosition::default()),
        };
        assert_eq!(walk.claim("key", 1, 100), Err(StopReason::Deadline));
        assert_eq!(walk.pager.at.kv_resume_at.as_deref(), Some("key"));
        walk.pager.next_cursor = Some("c2".into());
        walk.pager.page_done();
        assert_eq!(
            (walk.pager.at.kv_cursor.as_deref(), walk.pager.finished),
            (Some("c2"), false)
        );
        walk.pager.page_done();
        assert!(walk.pager.finished && walk.pager.at.kv_resume_at.is_none());
    }
}
