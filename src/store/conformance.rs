//! One conformance suite for the ports, run against the in-memory adapter natively and against
//! real KV and R2 inside workerd (through the JS adapters), so both behave the same where the
//! service relies on it.
//!
//! Only what the real services guarantee is checked (PLATFORM.md); behaviour local workerd may
//! not enforce (one write a second per key, the 1000-key cap of an R2 delete) is tested in the
//! memory adapter's own unit tests instead. Every check works under `prefix` + its name, so the
//! suite can share a namespace; give each run its own prefix (e.g. with a timestamp), since the
//! pagination checks leave their keys behind (KV ones with a TTL). Checks can run one at a time
//! ([`run_check`]) when a Worker's per-invocation operation limit matters.

mod kv;
mod r2;
mod shared;

use std::fmt;

use serde::Serialize;

use crate::store::{Clock, FailureKind, Rng, StoreResult};

pub use kv::{Kv, KV_CHECKS};
pub use r2::{R2, R2_CHECKS};

/// How far (ms) a service's clock may be from the caller's clock in time checks.
pub const CLOCK_TOLERANCE_MS: i64 = 60_000;

/// The outcome of one named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    /// The check's name, e.g. `kv.list_pagination`.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub error: Option<String>,
}

impl CheckOutcome {
    /// The outcome of check `name` that ended with `result`.
    pub fn of(name: &str, result: Check) -> Self {
        CheckOutcome {
            name: name.to_owned(),
            error: result.err(),
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// The outcomes of a suite run, in the order the checks ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConformanceReport {
    /// One outcome per check.
    pub checks: Vec<CheckOutcome>,
}

impl ConformanceReport {
    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|check| check.passed()).count()
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&CheckOutcome> {
        self.checks.iter().filter(|check| !check.passed()).collect()
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.error {
                None => writeln!(f, "ok   {}", check.name)?,
                Some(error) => writeln!(f, "FAIL {}: {error}", check.name)?,
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// The checks of one port, each known by name: [`Kv`] and [`R2`].
pub trait Suite {
    /// The names of the checks, in the order [`run_conformance`] runs them.
    const CHECKS: &'static [&'static str];

    /// Runs check `name` with every key under `scope`; `clock` is the caller's time, against
    /// which the times the store reports are judged.
    async fn run<C: Clock + Rng>(&self, clock: &C, scope: &str, name: &str) -> Check;
}

/// Runs every check of `suite` under `prefix`, one after the other.
pub async fn run_conformance<S: Suite, C: Clock + Rng>(
    suite: &S,
    clock: &C,
    prefix: &str,
) -> ConformanceReport {
    let mut checks = Vec::with_capacity(S::CHECKS.len());
    for name in S::CHECKS {
        checks.push(run_check(suite, clock, prefix, name).await);
    }
    ConformanceReport { checks }
}

/// Runs the check of `suite` called `name` (one of its [`Suite::CHECKS`]) under `prefix` +
/// `name` + `/`.
pub async fn run_check<S: Suite, C: Clock + Rng>(
    suite: &S,
    clock: &C,
    prefix: &str,
    name: &str,
) -> CheckOutcome {
    let scope = format!("{prefix}{name}/");
    CheckOutcome::of(name, suite.run(clock, &scope, name).await)
}

/// A check's result: `Err` says what differed.
pub(crate) type Check = Result<(), String>;

/// Turns a failed storage call into a check failure naming the step.
trait During<T> {
    fn during(self, step: &str) -> Result<T, String>;
}

impl<T> During<T> for StoreResult<T> {
    fn during(self, step: &str) -> Result<T, String> {
        self.map_err(|err| format!("{step}: {err}"))
    }
}

/// Fails with `what` unless `holds`.
pub(crate) fn ensure(holds: bool, what: impl FnOnce() -> String) -> Check {
    if holds {
        Ok(())
    } else {
        Err(what())
    }
}

/// Fails unless `actual == expected`, showing both.
pub(crate) fn ensure_eq<T: PartialEq + fmt::Debug>(what: &str, actual: T, expected: T) -> Check {
    ensure(actual == expected, || {
        format!("{what}: expected {expected:?}, got {actual:?}")
    })
}

/// Fails unless `outcome` is a failure of `kind`; `what` names the call.
fn expect_failure<T: fmt::Debug>(what: &str, outcome: StoreResult<T>, kind: FailureKind) -> Check {
    match outcome {
        Ok(value) => Err(format!("{what} succeeded: {value:?}")),
        Err(err) => ensure_eq(&format!("failure kind of {what} ({err})"), err.kind, kind),
    }
}

/// Every byte value once.
fn all_byte_values() -> Vec<u8> {
    (0..=u8::MAX).collect()
}

/// A key of exactly `length` bytes starting with `scope` (ASCII padding).
fn pad_key(scope: &str, length: usize) -> String {
    format!("{scope}{}", "x".repeat(length.saturating_sub(scope.len())))
}

/// Text with multi-byte UTF-8, quotes and a newline.
const SAMPLE_TEXT: &str = "héllo wörld — 你好 🚀\n\"quoted\" {json: [1, 2]}";

/// Key suffixes whose byte order differs from a case-insensitive or locale order.
const ORDER_SUFFIXES: [&str; 5] = ["a0", "ä", "a/b", "A", "a"];
/// [`ORDER_SUFFIXES`] in UTF-8 byte order.
const ORDER_SUFFIXES_SORTED: [&str; 5] = ["A", "a", "a/b", "a0", "ä"];

/// More keys than one page holds.
const PAGINATION_KEYS: usize = 1001;

/// Pages a listing may take before the check gives up (a cursor that never ends).
const MAX_PAGES: usize = 50;

#[cfg(test)]
mod tests;
