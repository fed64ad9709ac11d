//! Fault injection and call accounting shared by the in-memory KV and R2: one call counter over
//! both bindings, so "fail the N-th storage call" means the same thing whatever the call is.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::store::{Binding, FailureKind, StoreError};

/// The kind of a storage call, for counters and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperationKind {
    /// KV `get` / R2 `get`.
    Get,
    /// R2 `head`.
    Head,
    /// KV `put` / R2 `put`.
    Put,
    /// KV `delete` / R2 `delete` (one call, however many keys).
    Delete,
    /// KV `list` / R2 `list` (one page).
    List,
}

/// Which calls a fault applies to; the default matches every call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only calls to this binding.
    pub binding: Option<Binding>,
    /// Only calls of this kind.
    pub operation: Option<OperationKind>,
}

impl CallFilter {
    /// Calls to `binding` only.
    pub fn binding(binding: Binding) -> Self {
        CallFilter {
            binding: Some(binding),
            operation: None,
        }
    }

    /// Calls of `operation` to `binding` only.
    pub fn call(binding: Binding, operation: OperationKind) -> Self {
        CallFilter {
            binding: Some(binding),
            operation: Some(operation),
        }
    }

    fn matches(&self, binding: Binding, operation: OperationKind) -> bool {
        self.binding.is_none_or(|wanted| wanted == binding)
            && self.operation.is_none_or(|wanted| wanted == operation)
    }
}

/// How many calls each (binding, operation) received, failed ones included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    counts: BTreeMap<(Binding, OperationKind), u64>,
}

impl CallCounts {
    /// Calls of `operation` to `binding`.
    pub fn of(&self, binding: Binding, operation: OperationKind) -> u64 {
        self.counts.get(&(binding, operation)).copied().unwrap_or(0)
    }

    /// All calls to `binding`.
    pub fn of_binding(&self, binding: Binding) -> u64 {
        self.counts
            .iter()
            .filter(|((b, _), _)| *b == binding)
            .map(|(_, n)| n)
            .sum()
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The calls made since `earlier` was taken (both from the same [`Faults`]).
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        let counts = self
            .counts
            .iter()
            .map(|(call, n)| {
                (
                    *call,
                    n.saturating_sub(earlier.counts.get(call).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        CallCounts { counts }
    }
}

/// Why a store refuses a call: the kind of failure and the service's own message.
pub(crate) type Refusal = (FailureKind, String);

/// A burst of failures for the next matching calls.
#[derive(Debug, Clone)]
struct Burst {
    remaining: u64,
    kind: FailureKind,
    filter: CallFilter,
}

#[derive(Debug, Default)]
struct FaultState {
    calls: u64,
    counts: CallCounts,
    fail_at: BTreeMap<u64, FailureKind>,
    lose_response_at: BTreeSet<u64>,
    bursts: Vec<Burst>,
    crash_after: Option<u64>,
    injected: u64,
}

/// The fault plan and call counters shared by [`MemoryKv`](super::MemoryKv) and
/// [`MemoryR2`](super::MemoryR2). Calls are numbered from 1 across both bindings, in the order
/// they arrive; every call counts, including the ones a fault fails. Clones share the plan.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Rc<RefCell<FaultState>>,
}

impl Faults {
    /// A plan with no faults.
    pub fn new() -> Self {
        Faults::default()
    }

    /// Fails call number `call` (1-based, counted over both bindings since creation) with
    /// `kind`; it has no effect on the store. Use [`Faults::calls`] to address calls relative
    /// to now: `fail_call(faults.calls() + 1, ..)` fails the next one.
    pub fn fail_call(&self, call: u64, kind: FailureKind) {
        self.state.borrow_mut().fail_at.insert(call, kind);
    }

    /// Call number `call` takes effect, but its caller sees a transient failure, as when the
    /// response is lost on the way back (the service cannot know whether a write happened).
    pub fn lose_response_of_call(&self, call: u64) {
        self.state.borrow_mut().lose_response_at.insert(call);
    }

    /// Fails the next `count` calls matching `filter` with `kind`; other calls pass.
    pub fn fail_next(&self, count: u64, kind: FailureKind, filter: CallFilter) {
        self.state.borrow_mut().bursts.push(Burst {
            remaining: count,
            kind,
            filter,
        });
    }

    /// Every call numbered above `call` fails transiently without effect, as if the Worker died
    /// after call `call` was acknowledged: what was done stays, nothing later happens.
    pub fn crash_after(&self, call: u64) {
        self.state.borrow_mut().crash_after = Some(call);
    }

    /// Removes every planned fault (counters stay).
    pub fn clear(&self) {
        let mut state = self.state.borrow_mut();
        state.fail_at.clear();
        state.lose_response_at.clear();
        state.bursts.clear();
        state.crash_after = None;
    }

    /// How many calls arrived so far (the number of the last one).
    pub fn calls(&self) -> u64 {
        self.state.borrow().calls
    }

    /// How many calls a planned fault has failed so far.
    pub fn injected_failures(&self) -> u64 {
        self.state.borrow().injected
    }

    /// Per binding and operation counters.
    pub fn counts(&self) -> CallCounts {
        self.state.borrow().counts.clone()
    }

    /// Runs storage call `operation` on `binding`, named `target` in its errors (`put
    /// conversations/...`): numbers and counts it, fails it if a fault says so, otherwise runs
    /// `call`, whose response a fault may then lose.
    pub(crate) fn run<T>(
        &self,
        binding: Binding,
        operation: OperationKind,
        target: &str,
        call: impl FnOnce() -> Result<T, Refusal>,
    ) -> Result<T, StoreError> {
        let error = |(kind, message): Refusal| StoreError {
            binding,
            operation: target.to_owned(),
            kind,
            message,
        };
        let lost_response = self.admit(binding, operation).map_err(error)?;
        let output = call().map_err(error)?;
        match lost_response {
            Some(call) => Err(error((
                FailureKind::Transient,
                format!(
                    "network connection lost after the request was sent (injected fault, call {call})"
                ),
            ))),
            None => Ok(output),
        }
    }

    /// Numbers the call and counts it; the fault that fails it, if any, or else the call's
    /// number if its response is to be lost.
    fn admit(&self, binding: Binding, operation: OperationKind) -> Result<Option<u64>, Refusal> {
        let mut state = self.state.borrow_mut();
        state.calls += 1;
        let call = state.calls;
        *state.counts.counts.entry((binding, operation)).or_insert(0) += 1;
        let failure = if state.crash_after.is_some_and(|last| call > last) {
            Some((
                FailureKind::Transient,
                format!("network connection lost (simulated crash; call {call} never ran)"),
            ))
        } else if let Some(kind) = state.fail_at.remove(&call) {
            Some((kind, injected_message(kind, call)))
        } else if let Some(burst) = state
            .bursts
            .iter_mut()
            .find(|burst| burst.remaining > 0 && burst.filter.matches(binding, operation))
        {
            burst.remaining -= 1;
            let kind = burst.kind;
            Some((kind, injected_message(kind, call)))
        } else {
            None
        };
        if let Some(failure) = failure {
            state.injected += 1;
            return Err(failure);
        }
        let lost_response = state.lose_response_at.remove(&call);
        state.injected += u64::from(lost_response);
        Ok(lost_response.then_some(call))
    }
}

fn injected_message(kind: FailureKind, call: u64) -> String {
    match kind {
        FailureKind::Transient => format!("503 Service Unavailable (injected fault, call {call})"),
        FailureKind::RateLimited => format!("429 Too Many Requests (injected fault, call {call})"),
        FailureKind::Rejected => format!("400 Bad Request (injected fault, call {call})"),
    }
}
