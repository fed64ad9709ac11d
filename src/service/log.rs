//! Structured JSON log lines, tagged with the request id of the public operation that made
//! them: one line per operation when it ends (storage calls made, failed, time spent in them),
//! one per storage attempt that did not succeed (retries, failures, open circuits), and with
//! `debug` one per storage attempt. Keys are logged (they hold session ids and hashes, never
//! message text or raw user ids); values never are.
//!
//! A line per successful call was measured at ~5 µs each in wasm plus `console.log`, most of
//! a cache hit's cost, and buries the failures an operator looks for; the summary keeps the
//! counts.

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{json, Map, Value};

use super::json_text;
use super::op_stats::{self, LogCounts, OpStats};
use crate::store::{Binding, LogSink};

/// The log of one public operation (`archiveConversation`, ...).
pub struct OpLog<'a> {
    sink: &'a dyn LogSink,
    request_id: String,
    operation: &'static str,
    debug: bool,
    attempts: Cell<u32>,
    /// Calls made (a retried call counts once; a call the breaker refused, not at all).
    calls: Cell<u32>,
    failed_attempts: Cell<u32>,
    storage_ms: Cell<i64>,
    bytes_read: Cell<u64>,
    bytes_written: Cell<u64>,
    cache_hit: Cell<Option<bool>>,
    /// The stats of the instrumented call this operation runs in, which its counts join.
    stats: Option<Rc<OpStats>>,
}

/// How one storage attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Ok,
    /// The attempt failed transiently and will be retried.
    Retry,
    /// The call failed for good.
    Failed,
    /// The circuit breaker refused the call.
    CircuitOpen,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
            Outcome::CircuitOpen => "circuit_open",
        }
    }
}

/// One storage attempt, as logged.
pub struct CallRecord<'k> {
    /// The binding called.
    pub binding: Binding,
    /// The call: get, head, put, delete, list.
    pub call: &'static str,
    /// The key, prefix or first key of a batch.
    pub key: &'k str,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Wall time of the attempt (0 inside production Workers during CPU work).
    pub elapsed_ms: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// The failure, when there was one.
    pub error: Option<String>,
}

impl<'a> OpLog<'a> {
    /// Starts the log of `operation` under `request_id`.
    pub fn new(
        sink: &'a dyn LogSink,
        request_id: String,
        operation: &'static str,
        debug: bool,
    ) -> Self {
        OpLog {
            sink,
            request_id,
            operation,
            debug,
            attempts: Cell::new(0),
            calls: Cell::new(0),
            failed_attempts: Cell::new(0),
            storage_ms: Cell::new(0),
            bytes_read: Cell::new(0),
            bytes_written: Cell::new(0),
            cache_hit: Cell::new(None),
            stats: op_stats::current(),
        }
    }

    /// The request id every line of this operation carries.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Records a storage attempt: counted for the operation's summary, and logged when it did
    /// not succeed, or always with `debug`.
    pub fn call(&self, record: &CallRecord<'_>) {
        self.attempts.set(self.attempts.get().saturating_add(1));
        if record.attempt == 1 && record.outcome != Outcome::CircuitOpen {
            self.calls.set(self.calls.get().saturating_add(1));
        }
        self.storage_ms
            .set(self.storage_ms.get().saturating_add(record.elapsed_ms));
        if record.outcome != Outcome::Ok {
            self.failed_attempts
                .set(self.failed_attempts.get().saturating_add(1));
        } else if !self.debug {
            return;
        }
        let level = match record.outcome {
            Outcome::Ok => "info",
            Outcome::Retry => "warn",
            Outcome::Failed | Outcome::CircuitOpen => "error",
        };
        let mut line = self.base(level);
        line.insert("binding".into(), json!(record.binding.name()));
        line.insert("call".into(), json!(record.call));
        line.insert("key".into(), json!(record.key));
        line.insert("attempt".into(), json!(record.attempt));
        line.insert("ms".into(), json!(record.elapsed_ms));
        line.insert("outcome".into(), json!(record.outcome.as_str()));
        if let Some(error) = &record.error {
            line.insert("error".into(), json!(error));
        }
        self.emit(line);
    }

    /// Counts `bytes` read from storage (a value or an object body).
    pub fn read_bytes(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.bytes_read
            .set(self.bytes_read.get().saturating_add(bytes));
    }

    /// Counts `bytes` written to storage.
    pub fn wrote_bytes(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.bytes_written
            .set(self.bytes_written.get().saturating_add(bytes));
    }

    /// Records whether the operation's cache lookup hit.
    pub fn cache_lookup(&self, hit: bool) {
        self.cache_hit.set(Some(hit));
    }

    /// Storage calls made so far, as run budgets count them: a retried call once.
    pub fn storage_calls(&self) -> u32 {
        self.calls.get()
    }

    /// Logs an event of the operation itself (its result, a skipped item, a report).
    pub fn event(&self, level: &'static str, message: &str, fields: Value) {
        let mut line = self.base(level);
        line.insert("msg".into(), json!(message));
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        self.emit(line);
    }

    /// Logs details only wanted when debugging (sizes, plans).
    pub fn debug(&self, message: &str, fields: Value) {
        if self.debug {
            self.event("debug", message, fields);
        }
    }

    fn base(&self, level: &'static str) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("level".into(), json!(level));
        line.insert("requestId".into(), json!(self.request_id));
        line.insert("op".into(), json!(self.operation));
        line
    }

    fn emit(&self, line: Map<String, Value>) {
        self.sink.emit(&json_text(&line));
    }
}

impl Drop for OpLog<'_> {
    /// The operation's summary line, whichever way it ended. Written by hand rather than
    /// through a `serde_json::Map`: it is emitted by every call (a cache hit included), every
    /// field is a number or one of our own ASCII names, and this halves its cost (~3 µs in wasm).
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.add(&LogCounts {
                storage_calls: self.calls.get(),
                failed_attempts: self.failed_attempts.get(),
                bytes_read: self.bytes_read.get(),
                bytes_written: self.bytes_written.get(),
                cache_hit: self.cache_hit.get(),
            });
        }
        self.sink.emit(&format!(
            r#"{{"level":"info","requestId":"{}","op":"{}","msg":"done","storageCalls":{},"failedCalls":{},"storageMs":{}}}"#,
            self.request_id,
            self.operation,
            self.attempts.get(),
            self.failed_attempts.get(),
            self.storage_ms.get(),
        ));
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::cell::RefCell;

    use super::*;

    #[derive(Default)]
    struct Lines(RefCell<Vec<Value>>);

    impl LogSink for Lines {
        fn emit(&self, line: &str) {
            self.0
                .borrow_mut()
                .push(serde_json::from_str(line).unwrap());
        }
    }

    fn record(outcome: Outcome) -> CallRecord<'static> {
        CallRecord {
            binding: Binding::Kv,
            call: "get",
            key: "archive_meta:s1",
            attempt: 1,
            elapsed_ms: 3,
            outcome,
            error: (outcome != Outcome::Ok).then(|| "503".to_owned()),
        }
    }

    #[test]
    fn quiet_on_success_loud_on_failure_and_always_summarised() {
        let lines = Lines::default();
        {
            let log = OpLog::new(&lines, "r1".into(), "retrieveArchivedConversation", false);
            log.call(&record(Outcome::Ok));
            log.call(&record(Outcome::Retry));
            log.call(&record(Outcome::Ok));
        }
        let lines = lines.0.into_inner();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["outcome"], "retry");
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["requestId"], "r1");
        assert_eq!(
            (
                &lines[1]["msg"],
                &lines[1]["storageCalls"],
                &lines[1]["failedCalls"],
                &lines[1]["storageMs"]
            ),
            (&json!("done"), &json!(3), &json!(1), &json!(9))
        );
        assert_eq!(lines[1]["op"], "retrieveArchivedConversation");
    }

    #[test]
    fn debug_logs_every_attempt() {
        let lines = Lines::default();
        {
            let log = OpLog::new(&lines, "r2".into(), "cacheEmbedding", true);
            log.call(&record(Outcome::Ok));
            log.debug("sizes", json!({"bytes": 10}));
        }
        let lines = lines.0.into_inner();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["outcome"], "ok");
        assert_eq!(lines[1]["bytes"], 10);
        assert_eq!(lines[2]["msg"], "done");
    }
}
