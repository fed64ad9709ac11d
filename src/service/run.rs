//! The one driver of every maintenance run (retention, legacy indexing, user reindexing,
//! metrics; and the long jobs to come): a budget of storage calls and time, the reason a run
//! stopped, a resume point saved in KV, and the status every run's report carries.
//!
//! A job keeps its own position type `P` (where it would continue) and its own counts; the
//! driver starts a run ([`DataPersistenceService::start_run`]: checks the budget's minimum, reads
//! the resume point), lets the job [afford](Run::afford) each step, and finishes it
//! ([`DataPersistenceService::finish_run`]): a run that stopped early stores its position, one
//! that completed after resuming deletes it. Failing to read, store or delete a resume point
//! is logged, never fatal: the next run then starts over or repeats work, which every job
//! makes harmless (its writes are idempotent).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::log::OpLog;
use super::DataPersistenceService;
use crate::codec::json_text;
use crate::error::{PersistenceError, Result};
use crate::store::{Clock, KvPutOptions, KvStore, ObjectStore, Rng};

/// Limits of one run. Workers allow 50 subrequests per request on the free plan and 10 000 on
/// paid; leave room for the caller's own calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunBudget {
    /// Most storage calls this run may make (a retried call counts once); `None`: no limit.
    pub max_storage_calls: Option<u32>,
    /// Epoch ms after which the run starts no new page or step; `None`: no deadline.
    pub deadline_ms: Option<i64>,
}

/// Why a run stopped before its job was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The next page or step would not fit `maxStorageCalls`.
    CallBudget,
    /// `deadlineMs` passed.
    Deadline,
    /// A binding's circuit breaker is open.
    CircuitOpen,
    /// A storage call failed after its retries.
    StorageError,
}

/// How a failed storage call affects a run: an open breaker or any other failure stops it.
pub(super) fn stop_reason(err: &PersistenceError) -> StopReason {
    match err {
        PersistenceError::CircuitOpen { .. } => StopReason::CircuitOpen,
        _ => StopReason::StorageError,
    }
}

/// What every run reports besides its job's own counts (flattened into the report's JSON:
/// `"complete", "stoppedBy", "resumed", "storageCalls"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// True when the run reached the end of its job (its resume point is cleared).
    pub complete: bool,
    /// Why the run stopped early, when it did.
    pub stopped_by: Option<StopReason>,
    /// True when this run continued an earlier, unfinished one.
    pub resumed: bool,
    /// Storage calls made by this run (a retried call counts once).
    pub storage_calls: u32,
}

/// A job's report: its own counts beside the [`RunStatus`] every run reports.
pub(super) trait RunReport: Serialize + Default {
    /// The run's status in the report.
    fn status_mut(&mut self) -> &mut RunStatus;
}

/// One run of a job whose position is `P`.
#[derive(Debug)]
pub(super) struct Run<P> {
    budget: RunBudget,
    /// The status the report will carry; `storage_calls` is kept up to date by the job.
    pub status: RunStatus,
    /// Where the job would continue if the run stopped now.
    pub position: P,
    /// The KV key of the resume point; `None` for a run that never resumes (metrics).
    resume_key: Option<String>,
    /// What the log calls the job ("retention", "migration", ...).
    name: &'static str,
}

impl<P: Default> Run<P> {
    /// A fresh run with a resume point under `resume_key`, for unit tests of jobs.
    #[cfg(test)]
    pub fn for_test(budget: RunBudget, resume_key: &'static str) -> Self {
        Run {
            budget,
            status: RunStatus::default(),
            position: P::default(),
            resume_key: Some(resume_key.to_owned()),
            name: "test",
        }
    }
}

impl<P: Default> Run<P> {
    /// A run of the job `name` from `P::default()` that keeps no resume point (the caller
    /// carries its position, as an export's cursor): [`DataPersistenceService::start_run`]
    /// without the KV read, so it starts synchronously. `budget` must allow at least `minimum`
    /// calls. Errors: `INVALID_INPUT` naming `maxStorageCalls`.
    pub fn new(budget: RunBudget, minimum: u32, name: &'static str) -> Result<Self> {
        if let Some(max) = budget.max_storage_calls.filter(|max| *max < minimum) {
            return Err(PersistenceError::invalid_input(
                "maxStorageCalls",
                format!("{max} is below {minimum}, the least one run needs"),
            ));
        }
        Ok(Run {
            budget,
            status: RunStatus::default(),
            position: P::default(),
            resume_key: None,
            name,
        })
    }
}

impl<P> Run<P> {
    /// Counts `calls` storage calls made by the job.
    pub fn spend(&mut self, calls: u32) {
        self.status.storage_calls += calls;
    }

    /// Calls left, keeping one to save the resume point when the run has one.
    pub fn calls_left(&self) -> u32 {
        let reserved = u32::from(self.resume_key.is_some());
        self.budget.max_storage_calls.map_or(u32::MAX, |max| {
            max.saturating_sub(self.status.storage_calls)
                .saturating_sub(reserved)
        })
    }

    /// Checks that `calls` more calls (plus the one that saves the resume point) fit the
    /// budget, and that the deadline has not passed.
    pub fn afford(&self, calls: u32, now_ms: i64) -> Result<(), StopReason> {
        if self
            .budget
            .deadline_ms
            .is_some_and(|deadline| now_ms >= deadline)
        {
            return Err(StopReason::Deadline);
        }
        if calls > self.calls_left() {
            return Err(StopReason::CallBudget);
        }
        Ok(())
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Starts a run of the job `name` within `budget`, which must allow at least `minimum`
    /// calls; with a `resume_key`, continues from the position stored there (1 KV get), else
    /// from `P::default()`. Errors: `INVALID_INPUT` naming `maxStorageCalls`.
    pub(super) async fn start_run<P: Default + DeserializeOwned>(
        &self,
        log: &OpLog<'_>,
        budget: RunBudget,
        minimum: u32,
        resume_key: Option<&str>,
        name: &'static str,
    ) -> Result<Run<P>> {
        let mut run = Run::new(budget, minimum, name)?;
        run.resume_key = resume_key.map(str::to_owned);
        let Some(key) = resume_key else {
            return Ok(run);
        };
        run.spend(1);
        match self.kv_get(log, key).await {
            Ok(Some(stored)) => match serde_json::from_slice(&stored.value) {
                Ok(position) => {
                    run.position = position;
                    run.status.resumed = true;
                }
                Err(err) => log.event(
                    "warn",
                    &format!("ignoring an unreadable {name} resume point"),
                    json!({ "error": err.to_string() }),
                ),
            },
            Ok(None) => {}
            Err(err) => log.event(
                "warn",
                &format!("could not read the {name} resume point; starting over"),
                json!({ "error": err.to_string() }),
            ),
        }
        Ok(run)
    }

    /// Ends a run with the job's `outcome`: records it in the status; a run that stopped
    /// stores its position, one that completed after resuming deletes it (1 call each).
    pub(super) async fn finish_run<P: Serialize>(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<P>,
        outcome: Result<(), StopReason>,
    ) {
        run.status.complete = outcome.is_ok();
        run.status.stopped_by = outcome.err();
        let (Some(key), name) = (run.resume_key.clone(), run.name) else {
            return;
        };
        let key = key.as_str();
        if run.status.complete {
            if run.status.resumed {
                run.spend(1);
                if let Err(err) = self.kv_delete(log, key).await {
                    log.event(
                        "warn",
                        &format!("could not clear the {name} resume point"),
                        json!({ "error": err.to_string() }),
                    );
                }
            }
            return;
        }
        let value = json_text(&run.position);
        run.spend(1);
        let saved = self
            .kv_put(log, key, value.as_bytes(), KvPutOptions::default())
            .await;
        if let Err(err) = saved {
            log.event(
                "warn",
                &format!("could not save the {name} resume point; the next run starts over"),
                json!({ "error": err.to_string() }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn run(max: Option<u32>, resume_key: Option<&str>) -> Run<()> {
        Run {
            budget: RunBudget {
                max_storage_calls: max,
                deadline_ms: Some(100),
            },
            status: RunStatus::default(),
            position: (),
            resume_key: resume_key.map(str::to_owned),
            name: "test",
        }
    }

    #[test]
    fn the_budget_reserves_the_call_that_saves_a_resume_point() {
        let mut resumable = run(Some(20), Some("k"));
        resumable.spend(1);
        assert_eq!(resumable.afford(18, 0), Ok(()));
        assert_eq!(resumable.afford(19, 0), Err(StopReason::CallBudget));
        assert_eq!(resumable.afford(1, 100), Err(StopReason::Deadline));
        // A run without a resume point may spend its whole budget.
        let mut counting = run(Some(20), None);
        counting.spend(1);
        assert_eq!(counting.afford(19, 0), Ok(()));
        assert_eq!(counting.afford(20, 0), Err(StopReason::CallBudget));
        assert_eq!(run(None, Some("k")).calls_left(), u32::MAX);
    }

    #[test]
    fn status_is_camel_case_with_snake_case_reasons() {
        let status = RunStatus {
            complete: false,
            stopped_by: Some(StopReason::CallBudget),
            resumed: true,
            storage_calls: 7,
        };
        assert_eq!(
            json_text(&status),
            r#"{"complete":false,"stoppedBy":"call_budget","resumed":true,"storageCalls":7}"#
        );
    }
}
