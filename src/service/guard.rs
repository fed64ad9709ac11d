//! Every storage call goes through here: the binding's circuit breaker, retries of transient
//! failures with exponential backoff and full jitter, and one log line per attempt.
//!
//! Breaker per binding (KV and R2 fail independently): closed until `failure_threshold`
//! consecutive failed attempts, then open for `open_ms` (calls fail fast with CIRCUIT_OPEN),
//! then half-open: one trial call goes through; its success closes the breaker, its failure
//! opens it again. A trial that never settles (its request was cancelled and the future
//! dropped) does not wedge the breaker: after another `open_ms` a new trial is let through.
//! State lives in the service instance, i.e. per isolate.

use std::cell::Cell;

use super::log::{CallRecord, OpLog, Outcome};
use super::options::{BreakerPolicy, RetryPolicy};
use crate::error::{PersistenceError, Result};
use crate::platform::SAME_KEY_WRITE_INTERVAL_MS;
use crate::store::{Binding, Clock, FailureKind, Rng, StoreResult};

/// A breaker's state, as reported by the health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the given time (epoch ms).
    Open {
        /// When a trial call will be let through.
        until_ms: i64,
    },
    /// One trial call is in flight since the given time (epoch ms); others fail fast.
    HalfOpen {
        /// When the trial call was admitted.
        since_ms: i64,
    },
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// One binding's breaker. Cells, not RefCell: no borrow is ever held across an await.
#[derive(Debug)]
struct Breaker {
    state: Cell<BreakerState>,
    consecutive_failures: Cell<u32>,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            state: Cell::new(BreakerState::Closed),
            consecutive_failures: Cell::new(0),
        }
    }

    /// Admits a call at `now_ms`, or says how long until it would be admitted.
    fn admit(&self, policy: &BreakerPolicy, now_ms: i64) -> std::result::Result<(), u64> {
        let trial_deadline = |since_ms: i64| {
            since_ms.saturating_add(i64::try_from(policy.open_ms).unwrap_or(i64::MAX))
        };
        match self.state.get() {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen { since_ms } if now_ms < trial_deadline(since_ms) => {
                Err(u64::try_from(trial_deadline(since_ms) - now_ms).unwrap_or(1))
            }
            BreakerState::Open { until_ms } if now_ms < until_ms => {
                Err(u64::try_from(until_ms - now_ms).unwrap_or(1))
            }
            // Open and cooled down, or a trial that never settled: let one call through.
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                self.state.set(BreakerState::HalfOpen { since_ms: now_ms });
                Ok(())
            }
        }
    }

    fn succeeded(&self) {
        self.consecutive_failures.set(0);
        self.state.set(BreakerState::Closed);
    }

    fn failed(&self, policy: &BreakerPolicy, now_ms: i64) {
        let failures = self.consecutive_failures.get().saturating_add(1);
        self.consecutive_failures.set(failures);
        let trial_failed = matches!(self.state.get(), BreakerState::HalfOpen { .. });
        if trial_failed || failures >= policy.failure_threshold {
            let open_for = i64::try_from(policy.open_ms).unwrap_or(i64::MAX);
            self.state.set(BreakerState::Open {
                until_ms: now_ms.saturating_add(open_for),
            });
        }
    }
}

/// Retry and breaker policy plus one breaker per binding.
#[derive(Debug)]
pub struct StorageGuard {
    retry: RetryPolicy,
    breaker_policy: BreakerPolicy,
    kv: Breaker,
    r2: Breaker,
    r2_replica: Breaker,
}

impl StorageGuard {
    /// A guard with every breaker closed.
    pub fn new(retry: RetryPolicy, breaker_policy: BreakerPolicy) -> Self {
        StorageGuard {
            retry,
            breaker_policy,
            kv: Breaker::new(),
            r2: Breaker::new(),
            r2_replica: Breaker::new(),
        }
    }

    fn breaker(&self, binding: Binding) -> &Breaker {
        match binding {
            Binding::Kv => &self.kv,
            Binding::R2 => &self.r2,
            Binding::R2Replica => &self.r2_replica,
        }
    }

    /// The current state of `binding`'s breaker.
    pub fn breaker_state(&self, binding: Binding) -> BreakerState {
        self.breaker(binding).state.get()
    }

    /// Runs `attempt` under `binding`'s breaker, retrying transient failures.
    ///
    /// Errors: `CIRCUIT_OPEN` when the breaker refuses the call; `STORAGE_UNAVAILABLE` when the
    /// call was rejected or every attempt failed.
    pub async fn call<T, C: Clock + Rng>(
        &self,
        clock: &C,
        log: &OpLog<'_>,
        binding: Binding,
        call: &'static str,
        key: &str,
        mut attempt: impl AsyncFnMut() -> StoreResult<T>,
    ) -> Result<T> {
        let breaker = self.breaker(binding);
        let mut number = 1;
        loop {
            let started = clock.now_ms();
            if let Err(retry_after_ms) = breaker.admit(&self.breaker_policy, started) {
                log.call(&CallRecord {
                    binding,
                    call,
                    key,
                    attempt: number,
                    elapsed_ms: 0,
                    outcome: Outcome::CircuitOpen,
                    error: None,
                });
                return Err(PersistenceError::CircuitOpen {
                    binding: binding.name().to_owned(),
                    retry_after_ms,
                });
            }
            let result = attempt().await;
            let elapsed_ms = clock.now_ms().saturating_sub(started);
            let record = |outcome, error| CallRecord {
                binding,
                call,
                key,
                attempt: number,
                elapsed_ms,
                outcome,
                error,
            };
            match result {
                Ok(value) => {
                    breaker.succeeded();
                    log.call(&record(Outcome::Ok, None));
                    return Ok(value);
                }
                Err(err) => {
                    // A rejected request proves the service answered: not a breaker failure.
                    // Nor is a 429: KV and R2 allow one write a second per key, so it says
                    // that one key is busy, not that the binding is down (a hot cache key
                    // must not open the circuit for every other call).
                    if err.is_transient() && err.kind != FailureKind::RateLimited {
                        breaker.failed(&self.breaker_policy, clock.now_ms());
                    } else {
                        breaker.succeeded();
                    }
                    let may_retry = err.is_transient()
                        && number < self.retry.max_attempts
                        && breaker.state.get() == BreakerState::Closed;
                    if !may_retry {
                        log.call(&record(Outcome::Failed, Some(err.message.clone())));
                        return Err(err.into());
                    }
                    log.call(&record(Outcome::Retry, Some(err.message.clone())));
                    let bound = self.retry.backoff_bound_ms(number);
                    let mut wait = if bound == 0 {
                        0
                    } else {
                        clock.random_u64() % (bound + 1)
                    };
                    // A 429 means a write to this key landed less than a second ago (often our
                    // own attempt whose response was lost): retrying sooner cannot succeed.
                    if err.kind == FailureKind::RateLimited {
                        wait = wait.max(SAME_KEY_WRITE_INTERVAL_MS);
                    }
                    clock.sleep(wait).await;
                    number += 1;
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

    const POLICY: BreakerPolicy = BreakerPolicy {
        failure_threshold: 2,
        open_ms: 1_000,
    };

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cool_down() {
        let breaker = Breaker::new();
        breaker.failed(&POLICY, 0);
        assert_eq!(breaker.admit(&POLICY, 0), Ok(()));
        breaker.failed(&POLICY, 10);
        assert_eq!(breaker.state.get(), BreakerState::Open { until_ms: 1_010 });
        assert_eq!(breaker.admit(&POLICY, 500), Err(510));
        assert_eq!(breaker.admit(&POLICY, 1_010), Ok(()));
        assert_eq!(
            breaker.state.get(),
            BreakerState::HalfOpen { since_ms: 1_010 }
        );
        // Only the one trial goes through until it settles.
        assert_eq!(breaker.admit(&POLICY, 1_020), Err(990));
        breaker.succeeded();
        assert_eq!(breaker.admit(&POLICY, 1_030), Ok(()));
    }

    #[test]
    fn a_failed_trial_reopens_at_once() {
        let breaker = Breaker::new();
        breaker.state.set(BreakerState::HalfOpen { since_ms: 0 });
        breaker.failed(&POLICY, 5);
        assert_eq!(breaker.state.get(), BreakerState::Open { until_ms: 1_005 });
    }

    #[test]
    fn a_trial_that_never_settles_does_not_wedge_the_breaker() {
        let breaker = Breaker::new();
        breaker.state.set(BreakerState::Open { until_ms: 0 });
        assert_eq!(breaker.admit(&POLICY, 0), Ok(()));
        // The trial's future was dropped: no success or failure is ever recorded.
        assert!(breaker.admit(&POLICY, 999).is_err());
        assert_eq!(breaker.admit(&POLICY, 1_000), Ok(()));
        assert_eq!(
            breaker.state.get(),
            BreakerState::HalfOpen { since_ms: 1_000 }
        );
    }
}
