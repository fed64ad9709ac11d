//! The store conformance suite ([`crate::store::conformance`]) and the earlier
//! implementation's data read back through the service ([`crate::service::legacy_suite`])
//! exported to JavaScript, so `tests/workerd/conformance.test.ts` runs the same checks inside
//! workerd, through [`JsKv`] and [`JsR2`], against real local KV and R2 that the in-memory
//! adapter passes natively.
//!
//! Built only with the `conformance` feature (`scripts/build-conformance.sh`, a separate wasm
//! module); the npm package never contains it.

use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::bindings::{KVNamespace, R2Bucket};
use super::clock::JsClock;
use super::convert::json_to_js;
use super::kv::JsKv;
use super::r2::JsR2;
use crate::service::legacy_suite::{run_legacy_conformance, LEGACY_CHECKS};
use crate::store::conformance::{run_conformance, CheckOutcome, Kv, KV_CHECKS, R2, R2_CHECKS};

/// One check's outcome as JavaScript sees it: `{ name, ok, message }`, `message` empty when
/// the check passed.
#[derive(Serialize)]
struct CheckResult<'a> {
    name: &'a str,
    ok: bool,
    message: &'a str,
}

impl<'a> From<&'a CheckOutcome> for CheckResult<'a> {
    fn from(outcome: &'a CheckOutcome) -> Self {
        Self {
            name: &outcome.name,
            ok: outcome.passed(),
            message: outcome.error.as_deref().unwrap_or(""),
        }
    }
}

/// The names of every check, KV first, then R2, then legacy, in the order
/// [`run_store_conformance`] runs them; known before running, so a test can expect an outcome
/// for each.
#[wasm_bindgen(js_name = conformanceCheckNames)]
pub fn conformance_check_names() -> Vec<String> {
    KV_CHECKS
        .iter()
        .chain(R2_CHECKS.iter())
        .chain(LEGACY_CHECKS.iter())
        .map(|name| (*name).to_owned())
        .collect()
}

/// Runs every KV check against `kv` and every R2 check against `r2`, under keys starting with
/// `prefix` (give each run its own), then the legacy checks through a service over both (under
/// ids of their own run); resolves to an array of `{ name, ok, message }`. It rejects only if
/// the outcomes cannot be handed to JavaScript: a failed check is an outcome.
#[wasm_bindgen(js_name = runStoreConformance)]
pub fn run_store_conformance(kv: KVNamespace, r2: R2Bucket, prefix: String) -> Promise {
    future_to_promise(async move {
        let clock = JsClock::new();
        let (kv, r2) = (JsKv::new(kv), JsR2::new(r2));
        let kv_report = run_conformance(&Kv(&kv), &clock, &prefix).await;
        let r2_report = run_conformance(&R2(&r2), &clock, &prefix).await;
        let legacy_report = run_legacy_conformance(&kv, &r2, &clock).await;
        let results: Vec<CheckResult<'_>> = kv_report
            .checks
            .iter()
            .chain(&r2_report.checks)
            .chain(&legacy_report.checks)
            .map(CheckResult::from)
            .collect();
        let results = serde_json::to_value(results)
            .map_err(|err| js_sys::Error::new(&format!("conformance results: {err}")))?;
        json_to_js("conformance results", &results).map_err(|err| js_sys::Error::new(&err).into())
    })
}
