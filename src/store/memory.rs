//! The ports in memory, for native tests: KV and R2 that behave like the real services
//! (PLATFORM.md), a virtual clock, and fault injection over both stores. A test double, built
//! only for this crate's unit tests and with the `memory` feature (the integration tests, the
//! native benchmark and the bench wasm build enable it); the shipped library never contains it.
//!
//! ```
//! use supportbot_persistence::store::memory::{block_on, MemoryStores};
//! use supportbot_persistence::store::{FailureKind, KvPutOptions, KvStore};
//!
//! let stores = MemoryStores::new(1_700_000_000_000, 7);
//! stores.faults.fail_call(stores.faults.calls() + 1, FailureKind::Transient);
//! let first = block_on(stores.kv.put("k", b"v", KvPutOptions::default()));
//! assert!(first.unwrap_err().is_transient());
//! block_on(stores.kv.put("k", b"v", KvPutOptions::default())).unwrap();
//! assert_eq!(stores.snapshot().kv["k"].value, b"v");
//! ```

mod clock;
mod faults;
mod kv;
mod r2;
mod table;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub use clock::VirtualClock;
pub use faults::{CallCounts, CallFilter, Faults, OperationKind};
pub use kv::MemoryKv;
pub use r2::MemoryR2;
pub use table::{InMemory, Stored};

use crate::store::{Binding, KvValue, StoredObject};

/// A KV namespace, an R2 bucket, a clock and a fault plan wired together: the stores read time
/// from `clock` and share `faults` (one call counter over both). Fields are handles: clone one
/// to give it to the service and keep the other for assertions.
#[derive(Debug, Clone)]
pub struct MemoryStores {
    /// `CHAT_KV`.
    pub kv: MemoryKv,
    /// `ARCHIVE_R2`.
    pub r2: MemoryR2,
    /// The time both stores and the service read.
    pub clock: VirtualClock,
    /// Faults and call counters of both stores.
    pub faults: Faults,
}

impl MemoryStores {
    /// Empty stores with the clock at `start_ms` (epoch ms) and random values from `seed`.
    pub fn new(start_ms: i64, seed: u64) -> Self {
        let clock = VirtualClock::new(start_ms, seed);
        let faults = Faults::new();
        MemoryStores {
            kv: MemoryKv::new(clock.clone(), faults.clone()),
            r2: MemoryR2::new(clock.clone(), faults.clone()),
            clock,
            faults,
        }
    }

    /// A second, empty R2 bucket on the same clock and fault plan, whose calls count as
    /// `ARCHIVE_R2_REPLICA` (a replica bucket for `DataPersistenceService::with_replica`).
    pub fn replica_bucket(&self) -> MemoryR2 {
        MemoryR2::new(self.clock.clone(), self.faults.clone()).as_binding(Binding::R2Replica)
    }

    /// Everything stored now (not a storage call).
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            kv: self.kv.snapshot(),
            r2: self.r2.snapshot(),
        }
    }
}

/// The contents of both stores at one moment, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSnapshot {
    /// Live KV keys with value and metadata.
    pub kv: BTreeMap<String, KvValue>,
    /// R2 objects with body and metadata.
    pub r2: BTreeMap<String, StoredObject>,
}

/// Polls before [`block_on`] gives up: nothing in memory ever waits, so a future still pending
/// after this many polls waits on something that will never come.
const MAX_POLLS: u32 = 10_000;

/// Runs `future` to completion without a runtime, for native tests over the in-memory stores
/// (whose calls are ready at once).
///
/// # Panics
///
/// If the future is still pending after many polls: it waits on something other than the
/// in-memory stores and the virtual clock (a real timer or I/O), which would never wake it here.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!(
        "block_on: the future was still pending after {MAX_POLLS} polls; it waits on something \
         other than the in-memory stores and the virtual clock"
    );
}

#[cfg(test)]
mod tests;
