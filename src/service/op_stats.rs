//! What one call of the library did, for analytics: storage calls, failed attempts, bytes read
//! and written, and whether a cache lookup hit, summed over every operation log ([`OpLog`])
//! opened while the call's future ran.
//!
//! The boundary wraps each call's future in [`Instrumented`], which makes its [`OpStats`] the
//! current one while it is polled (like a tracing span); an `OpLog` adds its counts to the
//! current stats when it ends. No service method takes a parameter for it, and a call that
//! opens several logs (a job calling other operations) is counted once, whole.
//!
//! [`OpLog`]: super::log::OpLog

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The counts of one call.
#[derive(Debug, Default)]
pub struct OpStats {
    storage_calls: Cell<u32>,
    failed_attempts: Cell<u32>,
    bytes_read: Cell<u64>,
    bytes_written: Cell<u64>,
    cache_hit: Cell<Option<bool>>,
}

impl OpStats {
    /// Storage calls made (a retried call once; one the breaker refused, not at all).
    pub fn storage_calls(&self) -> u32 {
        self.storage_calls.get()
    }

    /// Storage attempts that failed (retried or not).
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts.get()
    }

    /// Bytes of the values and object bodies read from KV and R2.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.get()
    }

    /// Bytes of the values and object bodies written to KV and R2.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.get()
    }

    /// For a cache lookup, whether it hit; `None` for any other call.
    pub fn cache_hit(&self) -> Option<bool> {
        self.cache_hit.get()
    }

    pub(super) fn add(&self, counts: &LogCounts) {
        let add32 = |cell: &Cell<u32>, n: u32| cell.set(cell.get().saturating_add(n));
        let add64 = |cell: &Cell<u64>, n: u64| cell.set(cell.get().saturating_add(n));
        add32(&self.storage_calls, counts.storage_calls);
        add32(&self.failed_attempts, counts.failed_attempts);
        add64(&self.bytes_read, counts.bytes_read);
        add64(&self.bytes_written, counts.bytes_written);
        if let Some(hit) = counts.cache_hit {
            self.cache_hit.set(Some(hit));
        }
    }
}

/// What one operation log counted, handed to the current stats when it ends.
pub(super) struct LogCounts {
    pub storage_calls: u32,
    pub failed_attempts: u32,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub cache_hit: Option<bool>,
}

thread_local! {
    /// The stats of the call being polled, if it is instrumented.
    static CURRENT: RefCell<Option<Rc<OpStats>>> = const { RefCell::new(None) };
}

/// The stats of the call being polled, if any.
pub(super) fn current() -> Option<Rc<OpStats>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// A call's future that counts into its own [`OpStats`] while polled.
pub struct Instrumented<F> {
    future: F,
    stats: Rc<OpStats>,
}

/// Wraps `future` so that what it does is counted into the returned stats.
pub fn instrument<F: Future>(future: F) -> (Rc<OpStats>, Instrumented<F>) {
    let stats = Rc::new(OpStats::default());
    (Rc::clone(&stats), instrument_into(stats, future))
}

/// Wraps `future` so that what it does is added to `stats` (a stream's calls into one count).
pub fn instrument_into<F: Future>(stats: Rc<OpStats>, future: F) -> Instrumented<F> {
    Instrumented { future, stats }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of `future`: it is never moved out of `self`, and
        // `Instrumented` has no `Drop` and is `Unpin` only when `F` is (no `Unpin` impl).
        let (future, stats) = unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.future), Rc::clone(&this.stats))
        };
        // Put back whatever was current, should a poll ever run inside another's.
        let outer = CURRENT.with(|current| current.replace(Some(stats)));
        let poll = future.poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = outer);
        poll
    }
}
