//! A budgeted, resumable walk over the KV keys under one prefix, on the run driver
//! (`super::run`), shared by the maintenance runs that visit every key of a prefix
//! (`indexLegacyArchives`, `reindexUserArchives`).
//!
//! Pages of 1000 are listed whole; before each key that needs storage calls the caller
//! [claims](KvWalk::claim) it, which checks the budget (keeping one call to save the resume
//! point) and the deadline. When a run stops, its resume point is the page's KV cursor and the
//! first key it did not handle, stored as JSON under the walk's own KV key; the next run lists
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
use crate::store::{Clock, KvListOptions, KvStore, ListedKvKey, ObjectStore, Rng};

/// Where an unfinished walk continues: `{"kvCursor": ..., "kvResumeAt"?: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WalkPosition {
    /// KV list cursor of the page to list next (`None`: the prefix's first page).
    pub kv_cursor: Option<String>,
    /// In that page, the first key not yet handled, when a run stopped part-way through it
    /// (absent in resume points of earlier versions: the whole page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_resume_at: Option<String>,
}

/// One run of a walk: the driver's run over a [`WalkPosition`], and the page being handled.
pub(super) struct KvWalk {
    /// The run: budget, status, position.
    pub run: Run<WalkPosition>,
    /// The cursor of the page after the one being handled; `None` once the last page is out.
    next_cursor: Option<String>,
    finished: bool,
}

impl KvWalk {
    /// Starts handling `key` of the current page, which may take up to `calls` calls: should
    /// the run stop before it is done, it resumes at this key.
    pub fn claim(&mut self, key: &str, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.run.position.kv_resume_at = Some(key.to_owned());
        self.run.afford(calls, now_ms)
    }

    /// Marks the current page handled.
    pub fn page_done(&mut self) {
        self.run.position.kv_resume_at = None;
        match self.next_cursor.take() {
            Some(next) => self.run.position.kv_cursor = Some(next),
            None => self.finished = true,
        }
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
        let run = self
            .start_run(log, budget, job.min_budget, Some(job.resume_key), job.name)
            .await?;
        let mut walk = KvWalk {
            run,
            next_cursor: None,
            finished: false,
        };
        let mut outcome = Ok(());
        while outcome.is_ok() {
            let page = match self.next_walk_page(log, &mut walk, job).await {
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
                walk.page_done();
            }
        }
        self.finish_run(log, &mut walk.run, outcome).await;
        *report.status_mut() = walk.run.status;
        log.event("info", job.done, json!(report));
        Ok(report)
    }

    /// The next page of the job's prefix, without the keys a stopped run already handled;
    /// `None` once every page is handled. Needs room for the listing and one key.
    async fn next_walk_page(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        job: &WalkJob,
    ) -> Result<Option<Vec<ListedKvKey>>, StopReason> {
        if walk.finished {
            return Ok(None);
        }
        walk.run
            .afford(1 + job.calls_per_key, self.clock.now_ms())?;
        walk.run.spend(1);
        let options = KvListOptions {
            prefix: Some(job.prefix.to_owned()),
            cursor: walk.run.position.kv_cursor.clone(),
            limit: Some(MAX_LIST_LIMIT),
        };
        let page = self
            .kv_list(log, options)
            .await
            .map_err(|err| stop_reason(&err))?;
        walk.next_cursor = page.cursor.filter(|_| !page.list_complete);
        let mut keys = page.keys;
        if let Some(resume_at) = &walk.run.position.kv_resume_at {
            // KV lists keys in UTF-8 byte order, which is how `str` compares.
            keys.retain(|entry| entry.name >= *resume_at);
        }
        Ok(Some(keys))
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
        let position = WalkPosition {
            kv_cursor: Some("c1".into()),
            kv_resume_at: None,
        };
        let text = json_text(&position);
        assert_eq!(text, r#"{"kvCursor":"c1"}"#);
        assert_eq!(
            serde_json::from_str::<WalkPosition>(&text).ok(),
            Some(position)
        );
        let position = WalkPosition {
            kv_cursor: None,
            kv_resume_at: Some("archive_meta:s1".into()),
        };
        let text = json_text(&position);
        assert_eq!(text, r#"{"kvCursor":null,"kvResumeAt":"archive_meta:s1"}"#);
        assert_eq!(
            serde_json::from_str::<WalkPosition>(&text).ok(),
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
            next_cursor: None,
            finished: false,
        };
        assert_eq!(walk.claim("key", 1, 100), Err(StopReason::Deadline));
        assert_eq!(walk.run.position.kv_resume_at.as_deref(), Some("key"));
        walk.next_cursor = Some("c2".into());
        walk.page_done();
        assert_eq!(
            (walk.run.position.kv_cursor.as_deref(), walk.finished),
            (Some("c2"), false)
        );
        walk.page_done();
        assert!(walk.finished && walk.run.position.kv_resume_at.is_none());
    }
}
