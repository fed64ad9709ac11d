//! Analytics per operation: with a `PERSISTENCE_ANALYTICS` dataset bound, every call of the
//! service writes one data point when it settles (its name, outcome, storage calls, bytes and
//! duration; the schema is js/analytics.ts's). Writing never blocks or fails the call: the
//! dataset's `writeDataPoint` returns at once, and whatever it throws is dropped.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use js_sys::Date;
use wasm_bindgen::JsValue;

use super::bindings::OperationRecorder;
use crate::error::PersistenceError;
use crate::service::{instrument, instrument_into, Instrumented, OpStats};

/// Writes the data points of one service's calls.
pub(crate) struct Analytics {
    recorder: OperationRecorder,
}

/// One call being measured: its stats and when it started.
pub(crate) struct Measured {
    pub stats: Rc<OpStats>,
    started_ms: f64,
}

impl Measured {
    /// Starts measuring a call that counts into `stats`.
    pub fn start(stats: Rc<OpStats>) -> Self {
        Measured {
            stats,
            started_ms: Date::now(),
        }
    }
}

impl Analytics {
    pub fn new(recorder: OperationRecorder) -> Self {
        Analytics { recorder }
    }

    /// Records the call `name` (its method's JavaScript name), measured by `measured`, with its
    /// outcome: `ok`, `cancelled` (a stream dropped before its end) or the error's code.
    pub fn record(&self, measured: &Measured, name: &'static str, outcome: Outcome<'_>) {
        let stats = &measured.stats;
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed(err) => err.code(),
        };
        let cache = match stats.cache_hit() {
            Some(true) => "hit",
            Some(false) => "miss",
            None => "",
        };
        // Borrowed, not cloned: a clone or drop of a JsValue is a call into JavaScript.
        with_interned([name, outcome, cache], |name, outcome, cache| {
            // A dataset that throws (over its limits, gone) must not fail the call.
            let _ = self.recorder.record(
                name,
                outcome,
                cache,
                stats.storage_calls(),
                stats.failed_attempts(),
                stats.bytes_read() as f64,
                stats.bytes_written() as f64,
                measured.started_ms,
            );
        });
    }
}

/// Records a call refused before it began (a stream whose options are invalid).
pub(crate) fn record_refused(
    analytics: Option<&Rc<Analytics>>,
    name: &'static str,
    err: &PersistenceError,
) {
    if let Some(analytics) = analytics {
        analytics.record(&Measured::start(Rc::default()), name, Outcome::Failed(err));
    }
}

/// Runs `call`, measured and recorded by `analytics` when there is one.
pub(crate) async fn recorded<T>(
    analytics: Option<Rc<Analytics>>,
    name: &'static str,
    call: impl Future<Output = Result<T, PersistenceError>>,
) -> Result<T, PersistenceError> {
    let Some(analytics) = analytics else {
        return call.await;
    };
    let (stats, call) = instrument(call);
    let measured = Measured::start(stats);
    let result = call.await;
    analytics.record(&measured, name, Outcome::from(&result));
    result
}

/// The one data point of a stream (an export read a chunk at a time, an import fed one): the
/// calls of all its chunks summed, recorded when it ends or fails, or as `cancelled` when it is
/// dropped before (its reader cancelled).
pub(crate) struct StreamRecord {
    analytics: Rc<Analytics>,
    measured: Measured,
    name: &'static str,
    recorded: Cell<bool>,
}

impl StreamRecord {
    /// The record of the stream `name` starting now, when there is analytics.
    pub fn start(analytics: Option<&Rc<Analytics>>, name: &'static str) -> Option<Rc<Self>> {
        analytics.map(|analytics| {
            Rc::new(StreamRecord {
                analytics: Rc::clone(analytics),
                measured: Measured::start(Rc::default()),
                name,
                recorded: Cell::new(false),
            })
        })
    }

    /// Counts what `future` (one chunk's work) does into the stream's stats.
    pub fn instrument<F: Future>(&self, future: F) -> Instrumented<F> {
        instrument_into(Rc::clone(&self.measured.stats), future)
    }

    /// Records the stream's data point, once.
    pub fn finish(&self, outcome: Outcome<'_>) {
        if !self.recorded.replace(true) {
            self.analytics.record(&self.measured, self.name, outcome);
        }
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// How a measured call ended.
pub(crate) enum Outcome<'e> {
    Ok,
    Cancelled,
    Failed(&'e PersistenceError),
}

impl<'e, T> From<&'e Result<T, PersistenceError>> for Outcome<'e> {
    fn from(result: &'e Result<T, PersistenceError>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(err) => Outcome::Failed(err),
        }
    }
}

thread_local! {
    /// JavaScript strings of the names and codes recorded so far (a few dozen): made once, so a
    /// data point costs no UTF-8 decoding and no new JavaScript string.
    static INTERNED: RefCell<Vec<(&'static str, JsValue)>> = const { RefCell::new(Vec::new()) };
}

/// Calls `use_them` with the JavaScript strings of `texts`, each made on first use.
fn with_interned(texts: [&'static str; 3], use_them: impl FnOnce(&JsValue, &JsValue, &JsValue)) {
    INTERNED.with(|interned| {
        let mut interned = interned.borrow_mut();
        for text in texts {
            if find(&interned, text).is_none() {
                interned.push((text, JsValue::from_str(text)));
            }
        }
        let [a, b, c] = texts.map(|text| find(&interned, text));
        // All three are there: pushed above if they were not.
        if let (Some(a), Some(b), Some(c)) = (a, b, c) {
            use_them(a, b, c);
        }
    })
}

/// The JavaScript string of `text` among `interned`.
fn find<'i>(interned: &'i [(&'static str, JsValue)], text: &str) -> Option<&'i JsValue> {
    // By address first: the names are literals, so the same name is usually the same pointer.
    let same = |known: &str| std::ptr::eq(known, text) || known == text;
    interned
        .iter()
        .find(|(known, _)| same(known))
        .map(|(_, value)| value)
}
