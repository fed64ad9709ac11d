//! A budgeted, resumable walk over the KV keys under one prefix, shared by the maintenance
//! runs that visit every key of a prefix (`indexLegacyArchives`, `reindexUserArchives`).
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
use super::retention::{stop_reason, RetentionBudget, StopReason};
use super::{json_text, PersistenceService};
use crate::store::{Clock, KvListOptions, KvPutOptions, KvStore, ListedKvKey, ObjectStore};

/// Most keys a KV list page returns.
const PAGE_LIMIT: u32 = 1000;

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

/// One run of a walk: its budget, the storage calls it made and where it would resume.
pub(super) struct KvWalk {
    budget: RetentionBudget,
    /// Storage calls made by this run, the caller's included (a retried call counts once).
    pub calls: u32,
    /// True when this run continued an earlier, unfinished one.
    pub resumed: bool,
    position: WalkPosition,
    /// The cursor of the page after the one being handled; `None` once the last page is out.
    next_cursor: Option<String>,
    finished: bool,
    /// The KV key of the resume point.
    position_key: &'static str,
    /// What the log calls the run ("migration", ...).
    name: &'static str,
}

impl KvWalk {
    /// A run of the walk whose resume point is stored under `position_key`.
    pub fn new(budget: RetentionBudget, position_key: &'static str, name: &'static str) -> Self {
        KvWalk {
            budget,
            calls: 0,
            resumed: false,
            position: WalkPosition::default(),
            next_cursor: None,
            finished: false,
            position_key,
            name,
        }
    }

    /// Checks that `calls` more calls, plus the one that saves the resume point, fit the
    /// budget, and that the deadline has not passed.
    pub fn afford(&self, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.budget.afford(self.calls, calls, now_ms)
    }

    /// Starts handling `key` of the current page, which may take up to `calls` calls: should
    /// the run stop before it is done, it resumes at this key.
    pub fn claim(&mut self, key: &str, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        self.position.kv_resume_at = Some(key.to_owned());
        self.afford(calls, now_ms)
    }

    /// Marks the current page handled.
    pub fn page_done(&mut self) {
        self.position.kv_resume_at = None;
        match self.next_cursor.take() {
            Some(next) => self.position.kv_cursor = Some(next),
            None => self.finished = true,
        }
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock> PersistenceService<K, R, C> {
    /// Reads the walk's resume point, if one is stored and readable (1 call).
    pub(super) async fn load_walk_position(&self, log: &OpLog<'_>, walk: &mut KvWalk) {
        walk.calls += 1;
        let stored = match self.kv_get(log, walk.position_key).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(err) => {
                log.event(
                    "warn",
                    &format!(
                        "could not read the {} resume point; starting over",
                        walk.name
                    ),
                    json!({ "error": err.to_string() }),
                );
                return;
            }
        };
        match serde_json::from_slice(&stored.value) {
            Ok(position) => {
                walk.position = position;
                walk.resumed = true;
            }
            Err(err) => log.event(
                "warn",
                &format!("ignoring an unreadable {} resume point", walk.name),
                json!({ "error": err.to_string() }),
            ),
        }
    }

    /// The next page of `prefix`, without the keys a stopped run already handled; `None`
    /// once every page is handled. Needs room for the listing and `min_calls` more.
    pub(super) async fn next_walk_page(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        prefix: &str,
        min_calls: u32,
    ) -> Result<Option<Vec<ListedKvKey>>, StopReason> {
        if walk.finished {
            return Ok(None);
        }
        walk.afford(1 + min_calls, self.clock.now_ms())?;
        walk.calls += 1;
        let options = KvListOptions {
            prefix: Some(prefix.to_owned()),
            cursor: walk.position.kv_cursor.clone(),
            limit: Some(PAGE_LIMIT),
        };
        let page = self
            .kv_list(log, options)
            .await
            .map_err(|err| stop_reason(&err))?;
        walk.next_cursor = page.cursor.filter(|_| !page.list_complete);
        let mut keys = page.keys;
        if let Some(resume_at) = &walk.position.kv_resume_at {
            // KV lists keys in UTF-8 byte order, which is how `str` compares.
            keys.retain(|entry| entry.name >= *resume_at);
        }
        Ok(Some(keys))
    }

    /// Ends the run: a completed run that had resumed deletes the resume point, a stopped one
    /// stores it (1 call each). Failing to is logged: the next run then starts over or
    /// repeats work, which the walks' callers make harmless.
    pub(super) async fn finish_walk(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        outcome: &Result<(), StopReason>,
    ) {
        match outcome {
            Ok(()) if walk.resumed => {
                walk.calls += 1;
                if let Err(err) = self.kv_delete(log, walk.position_key).await {
                    log.event(
                        "warn",
                        &format!("could not clear the {} resume point", walk.name),
                        json!({ "error": err.to_string() }),
                    );
                }
            }
            Ok(()) => {}
            Err(_) => {
                let value = json_text(&walk.position);
                walk.calls += 1;
                let saved = self
                    .kv_put(
                        log,
                        walk.position_key,
                        value.as_bytes(),
                        KvPutOptions::default(),
                    )
                    .await;
                if let Err(err) = saved {
                    log.event(
                        "warn",
                        &format!(
                            "could not save the {} resume point; the next run starts over",
                            walk.name
                        ),
                        json!({ "error": err.to_string() }),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

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
    fn the_budget_reserves_the_call_that_saves_the_resume_point() {
        let mut walk = KvWalk::new(
            RetentionBudget {
                max_storage_calls: Some(20),
                deadline_ms: Some(100),
            },
            "k",
            "test",
        );
        walk.calls = 1;
        assert_eq!(walk.afford(18, 0), Ok(()));
        assert_eq!(walk.afford(19, 0), Err(StopReason::CallBudget));
        assert_eq!(walk.claim("key", 1, 100), Err(StopReason::Deadline));
        assert_eq!(walk.position.kv_resume_at.as_deref(), Some("key"));
        walk.next_cursor = Some("c2".into());
        walk.page_done();
        assert_eq!(
            (walk.position.kv_cursor.as_deref(), walk.finished),
            (Some("c2"), false)
        );
        walk.page_done();
        assert!(walk.finished && walk.position.kv_resume_at.is_none());
    }
}
