//! Export and import streams across the boundary: `exportUserData` and `exportStore` hand
//! JavaScript a stateful reader whose `next()` resolves to the next chunk of NDJSON (whole
//! lines) or `null`, from which js/api.ts builds a `ReadableStream` that pulls; `importStore`
//! hands it a writer that takes the stream's chunks one at a time. The state between calls
//! (position, running hash, the partial line) lives here in wasm, so JavaScript holds one chunk
//! at a time and no logic.
//!
//! Each call's Promise owns an `Rc` of the service and of the state, which it takes out for the
//! call and puts back after (a call made while another is under way is refused); after an
//! error it is not put back, and the stream or import is over.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::analytics::{record_refused, Outcome, StreamRecord};
use super::convert::integer_arg;
use super::js_error::{to_js_error_in, Operation};
use super::service::{budget_args, BoundService, Service};
use crate::codec::json_text;
use crate::error::PersistenceError;
use crate::platform::JS_MAX_SAFE_INTEGER;
use crate::service::{ImportOptions, StoreExport, StoreImport, UserExport};

/// The state of a stream or import between calls; `None` while a call is under way or after
/// one failed.
type Shared<S> = Rc<RefCell<Option<S>>>;

/// Runs `work` on the state taken out of `state`; puts the state back unless the work failed.
/// With analytics, the work is counted into the stream's `record`, and a failure ends it.
fn with_state<S, T, F, Fut>(
    state: &Shared<S>,
    record: &Option<Rc<StreamRecord>>,
    operation: Operation,
    work: F,
) -> Promise
where
    S: 'static,
    T: Into<JsValue>,
    F: FnOnce(S) -> Fut + 'static,
    Fut: Future<Output = (S, Result<T, PersistenceError>)> + 'static,
{
    let state = Rc::clone(state);
    let record = record.clone();
    future_to_promise(async move {
        let Some(taken) = state.borrow_mut().take() else {
            let err = PersistenceError::invalid_input(
                "stream",
                "a call on it is under way, or it ended with an error (await each call; start \
                 again after an error)",
            );
            return Err(to_js_error_in(operation, &err));
        };
        let (taken, result) = match &record {
            None => work(taken).await,
            Some(record) => record.instrument(work(taken)).await,
        };
        match result {
            Ok(value) => {
                *state.borrow_mut() = Some(taken);
                Ok(value.into())
            }
            Err(err) => {
                if let Some(record) = &record {
                    record.finish(Outcome::Failed(&err));
                }
                Err(to_js_error_in(operation, &err))
            }
        }
    })
}

/// The state of an export stream, which reads its chunks.
trait ExportState: Sized + 'static {
    /// The next chunk (whole lines), or `None` after the end line.
    async fn next_chunk(
        service: &Service,
        export: &mut Self,
    ) -> Result<Option<Vec<u8>>, PersistenceError>;
}

impl ExportState for UserExport {
    async fn next_chunk(
        service: &Service,
        export: &mut Self,
    ) -> Result<Option<Vec<u8>>, PersistenceError> {
        service.next_user_export_chunk(export).await
    }
}

impl ExportState for StoreExport {
    async fn next_chunk(
        service: &Service,
        export: &mut Self,
    ) -> Result<Option<Vec<u8>>, PersistenceError> {
        service.next_store_export_chunk(export).await
    }
}

/// An export stream's `next()`: its next chunk as a Uint8Array, or `null` after the end line
/// (which ends the stream's analytics record).
fn next_chunk<S: ExportState>(
    service: &Rc<Service>,
    state: &Shared<S>,
    record: &Option<Rc<StreamRecord>>,
) -> Promise {
    let service = Rc::clone(service);
    let ended = record.clone();
    with_state(state, record, Operation::Export, async move |mut export| {
        let chunk = S::next_chunk(&service, &mut export).await;
        if let (Some(record), Ok(None)) = (&ended, &chunk) {
            record.finish(Outcome::Ok);
        }
        (export, chunk.map(chunk_or_null))
    })
}

/// A chunk for JavaScript: a copy of the bytes, or `null` at the end.
fn chunk_or_null(chunk: Option<Vec<u8>>) -> JsValue {
    chunk.map_or(JsValue::NULL, |bytes| Uint8Array::from(&bytes[..]).into())
}

/// The NDJSON stream of one person's archives (`exportUserData`).
#[wasm_bindgen]
pub struct UserExportStream {
    service: Rc<Service>,
    state: Shared<UserExport>,
    record: Option<Rc<StreamRecord>>,
}

#[wasm_bindgen]
impl UserExportStream {
    /// The next chunk of the stream (whole lines) as a Uint8Array, or `null` after the end
    /// line. Rejects with the PersistenceError of an archive that cannot be read.
    pub fn next(&self) -> Promise {
        next_chunk(&self.service, &self.state, &self.record)
    }
}

/// The NDJSON stream of a store export (`exportStore`).
#[wasm_bindgen]
pub struct StoreExportStream {
    service: Rc<Service>,
    state: Shared<StoreExport>,
    record: Option<Rc<StreamRecord>>,
}

#[wasm_bindgen]
impl StoreExportStream {
    /// The next chunk of the stream (whole lines) as a Uint8Array, or `null` after the end
    /// line.
    pub fn next(&self) -> Promise {
        next_chunk(&self.service, &self.state, &self.record)
    }
}

/// An import under way (`importStore`): takes the stream's chunks, then gives the report.
#[wasm_bindgen]
pub struct StoreImporter {
    service: Rc<Service>,
    state: Shared<StoreImport>,
    record: Option<Rc<StreamRecord>>,
}

#[wasm_bindgen]
impl StoreImporter {
    /// Imports the lines `chunk` completes; resolves to whether the import wants more (false
    /// once its run stopped: stop reading the stream and call `finish`).
    pub fn push(&self, chunk: Vec<u8>) -> Promise {
        let service = Rc::clone(&self.service);
        with_state(
            &self.state,
            &self.record,
            Operation::Import,
            async move |mut import| {
                let more = service.import_chunk(&mut import, &chunk).await;
                (import, more.map(JsValue::from_bool))
            },
        )
    }

    /// Ends the import (its last line, if it had no newline); resolves to the report as JSON
    /// text. The importer takes no more chunks after.
    pub fn finish(&self) -> Promise {
        let service = Rc::clone(&self.service);
        let state = Rc::clone(&self.state);
        let record = self.record.clone();
        future_to_promise(async move {
            let Some(import) = state.borrow_mut().take() else {
                let err = PersistenceError::invalid_input(
                    "stream",
                    "the import is under way, finished, or ended with an error",
                );
                return Err(to_js_error_in(Operation::Import, &err));
            };
            let finish = service.finish_import(import);
            let report = match &record {
                None => finish.await,
                Some(record) => {
                    let report = record.instrument(finish).await;
                    record.finish(Outcome::from(&report));
                    report
                }
            };
            report
                .map(|report| json_text(&report).into())
                .map_err(|err| to_js_error_in(Operation::Import, &err))
        })
    }
}

impl BoundService {
    /// The error of a stream refused at its start, recorded with analytics.
    fn refused(&self, family: Operation, name: &'static str, err: &PersistenceError) -> JsValue {
        record_refused(self.analytics.as_ref(), name, err);
        to_js_error_in(family, err)
    }
}

#[wasm_bindgen(js_class = DataPersistenceService)]
impl BoundService {
    /// A person's archives as an NDJSON stream (read with `next()`). Throws INVALID_ID.
    #[wasm_bindgen(js_name = exportUserData)]
    pub fn export_user_data(&self, user_id: String) -> Result<UserExportStream, JsValue> {
        let export = self
            .service
            .export_user_data(&user_id)
            .map_err(|err| self.refused(Operation::Export, "exportUserData", &err))?;
        Ok(UserExportStream {
            service: Rc::clone(&self.service),
            record: StreamRecord::start(self.analytics.as_ref(), "exportUserData"),
            state: Rc::new(RefCell::new(Some(export))),
        })
    }

    /// The store as an NDJSON stream (read with `next()`) within a budget, from `cursor` when
    /// given. Throws INVALID_INPUT naming `maxStorageCalls`, `timeBudgetMs` or `cursor`.
    #[wasm_bindgen(js_name = exportStore)]
    pub fn export_store(
        &self,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
        cursor: Option<String>,
    ) -> Result<StoreExportStream, JsValue> {
        let start = || {
            let budget = budget_args(&self.service, max_storage_calls, time_budget_ms)?;
            self.service.export_store(budget, cursor.as_deref())
        };
        let export = start().map_err(|err| self.refused(Operation::Export, "exportStore", &err))?;
        Ok(StoreExportStream {
            service: Rc::clone(&self.service),
            record: StreamRecord::start(self.analytics.as_ref(), "exportStore"),
            state: Rc::new(RefCell::new(Some(export))),
        })
    }

    /// An import of a store export, `dry_run` or not, from line `from_line` (1-based) within a
    /// budget. Throws INVALID_INPUT naming `fromLine`, `maxStorageCalls` or `timeBudgetMs`.
    #[wasm_bindgen(js_name = importStore)]
    pub fn import_store(
        &self,
        dry_run: bool,
        from_line: Option<f64>,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
    ) -> Result<StoreImporter, JsValue> {
        let start = || {
            let from_line = from_line
                .map(|line| integer_arg("fromLine", line, 1, JS_MAX_SAFE_INTEGER))
                .transpose()?
                .unwrap_or(1);
            let budget = budget_args(&self.service, max_storage_calls, time_budget_ms)?;
            let options = ImportOptions { dry_run, from_line };
            self.service.import_store(options, budget)
        };
        let import = start().map_err(|err| self.refused(Operation::Import, "importStore", &err))?;
        Ok(StoreImporter {
            service: Rc::clone(&self.service),
            record: StreamRecord::start(self.analytics.as_ref(), "importStore"),
            state: Rc::new(RefCell::new(Some(import))),
        })
    }
}
