//! [`ConsoleLog`]: the [`LogSink`] port over `console.log`, which Workers forward to their logs
//! (`wrangler tail`, Workers Logs).

use super::bindings::global::console_log;
use crate::store::LogSink;

/// Writes each structured log line with `console.log`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleLog;

impl ConsoleLog {
    /// The isolate's console.
    pub fn new() -> Self {
        Self
    }
}

impl LogSink for ConsoleLog {
    fn emit(&self, line: &str) {
        // A console that throws leaves nowhere to report it; the line is dropped.
        let _ = console_log(line);
    }
}
