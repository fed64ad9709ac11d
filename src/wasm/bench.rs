//! The core pipeline of `bench_native` (examples/bench_native.rs), compiled to wasm for
//! `npm run bench` (feature `bench`, built by scripts/build-bench-core.sh, never shipped).
//!
//! The service runs over the in-memory stores and writes its log lines nowhere, exactly as
//! natively: nothing crosses into JavaScript during an operation. Timing it against the
//! native build compares the two compilations of the same Rust, apart from the cost of the
//! JavaScript boundary that the public API adds (JSON text in and out, storage calls).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::policy::DataRetentionPolicy;
use crate::service::{DataPersistenceService, ServiceOptions};
use crate::store::memory::{block_on, MemoryKv, MemoryR2, MemoryStores, VirtualClock};
use crate::store::LogSink;

/// Builds each log line, as production does, then drops it.
struct DiscardLog;

impl LogSink for DiscardLog {
    fn emit(&self, line: &str) {
        std::hint::black_box(line);
    }
}

fn js_error(err: crate::PersistenceError) -> JsError {
    JsError::new(&err.to_string())
}

/// One conversation archived and retrieved by the service over fresh in-memory stores.
#[wasm_bindgen]
pub struct CorePipelineBench {
    stores: MemoryStores,
    service: DataPersistenceService<MemoryKv, MemoryR2, VirtualClock>,
    memory_json: String,
    session_json: String,
    session_id: String,
}

#[wasm_bindgen]
impl CorePipelineBench {
    /// Empty stores at `start_ms`, for the conversation given as the JSON text of its memory
    /// and session (`session_id` is the session's id).
    #[wasm_bindgen(constructor)]
    pub fn new(
        start_ms: f64,
        memory_json: String,
        session_json: String,
        session_id: String,
    ) -> Result<CorePipelineBench, JsError> {
        // An integral epoch-ms count; `as` saturates, never panics.
        let stores = MemoryStores::new(start_ms as i64, 7);
        // Per-key write rate limits off, as in bench_native: ops come faster than 1 a second.
        stores.kv.set_write_rate_limit(false);
        stores.r2.set_write_rate_limit(false);
        let service = DataPersistenceService::new(
            stores.kv.clone(),
            stores.r2.clone(),
            stores.clock.clone(),
            Rc::new(DiscardLog),
            DataRetentionPolicy::default(),
            ServiceOptions::default(),
        )
        .map_err(js_error)?;
        Ok(CorePipelineBench {
            stores,
            service,
            memory_json,
            session_json,
            session_id,
        })
    }

    /// Archives the conversation `ops` times, a second apart.
    pub fn archive(&self, ops: u32) -> Result<(), JsError> {
        for _ in 0..ops {
            self.stores.clock.advance_ms(1000);
            block_on(
                self.service
                    .archive_conversation(&self.memory_json, &self.session_json),
            )
            .map_err(js_error)?;
        }
        Ok(())
    }

    /// Retrieves the newest archive of the session `ops` times.
    pub fn retrieve(&self, ops: u32) -> Result<(), JsError> {
        for _ in 0..ops {
            let found = block_on(
                self.service
                    .retrieve_archived_conversation(&self.session_id),
            )
            .map_err(js_error)?;
            if std::hint::black_box(found).is_none() {
                return Err(JsError::new("the session has no archive to retrieve"));
            }
        }
        Ok(())
    }
}
