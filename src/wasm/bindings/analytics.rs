//! The operation recorder js/analytics.ts builds over a Workers Analytics Engine dataset
//! (`PERSISTENCE_ANALYTICS`): one `record` call per library call, which writes one data point.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `{ record(op, outcome, cache, storageCalls, failedAttempts, bytesRead, bytesWritten,
    /// startedMs) }`: the names and outcome as strings, the counts as numbers, and the call's
    /// start (`Date.now()`), from which the recorder takes the duration.
    pub type OperationRecorder;

    /// Writes one data point; throws whatever the dataset throws.
    #[wasm_bindgen(method, catch)]
    #[allow(clippy::too_many_arguments)] // one data point's fields, positional for speed
    pub fn record(
        this: &OperationRecorder,
        op: &JsValue,
        outcome: &JsValue,
        cache: &JsValue,
        storage_calls: u32,
        failed_attempts: u32,
        bytes_read: f64,
        bytes_written: f64,
        started_ms: f64,
    ) -> Result<(), JsValue>;
}
