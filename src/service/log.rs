//! Structured JSON log lines: one per storage call, tagged with the request id of the public
//! operation that made it. Keys are logged (they hold session ids and hashes, never message
//! text or raw user ids); values never are.

use serde_json::{json, Map, Value};

use crate::store::{Binding, LogSink};

/// The log of one public operation (`archiveConversation`, ...).
pub struct OpLog<'a> {
    sink: &'a dyn LogSink,
    request_id: String,
    operation: &'static str,
    debug: bool,
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
        }
    }

    /// The request id every line of this operation carries.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Logs a storage attempt. Without `debug`, successful attempts are logged once per call
    /// and retries only as warnings; with `debug`, every attempt is.
    pub fn call(&self, record: &CallRecord<'_>) {
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
        self.sink.emit(&Value::Object(line).to_string());
    }
}
