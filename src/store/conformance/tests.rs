//! The suite passes on the in-memory adapter, and each check can fail: adapters broken on
//! purpose make the check that guards that behaviour fail, and only that one.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::store::memory::{block_on, MemoryKv, MemoryR2, MemoryStores, VirtualClock};
use crate::store::{
    KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue, ObjectListOptions, ObjectListPage,
    ObjectMeta, ObjectPutOptions, ObjectStore, PutOutcome, StoreResult, StoredObject,
};

const PREFIX: &str = "conformance-test/";

fn failed_names(report: &ConformanceReport) -> Vec<String> {
    let failures = report.failures().into_iter();
    failures.map(|check| check.name.clone()).collect()
}

#[test]
fn memory_adapter_passes_every_check() {
    let stores = MemoryStores::new(1_700_000_000_000, 1);
    let kv_report = block_on(run_conformance(&Kv(&stores.kv), &stores.clock, PREFIX));
    let r2_report = block_on(run_conformance(&R2(&stores.r2), &stores.clock, PREFIX));
    assert_eq!(
        failed_names(&kv_report),
        Vec::<String>::new(),
        "{kv_report}"
    );
    assert_eq!(
        failed_names(&r2_report),
        Vec::<String>::new(),
        "{r2_report}"
    );
    assert_eq!(kv_report.passed(), KV_CHECKS.len());
    assert_eq!(r2_report.passed(), R2_CHECKS.len());
}

#[test]
fn unknown_check_names_fail() {
    let stores = MemoryStores::new(0, 1);
    let outcome = block_on(run_check(&Kv(&stores.kv), &stores.clock, PREFIX, "kv.nope"));
    assert_eq!(
        outcome.error.as_deref(),
        Some("no KV check is called \"kv.nope\"")
    );
    let outcome = block_on(run_check(&R2(&stores.r2), &stores.clock, PREFIX, "r2.nope"));
    assert!(!outcome.passed());
}

#[test]
fn report_counts_and_prints_each_check() {
    let report = ConformanceReport {
        checks: vec![
            CheckOutcome {
                name: "a".into(),
                error: None,
            },
            CheckOutcome {
                name: "b".into(),
                error: Some("boom".into()),
            },
        ],
    };
    assert_eq!((report.passed(), report.failed()), (1, 1));
    assert_eq!(
        report.to_string(),
        "ok   a\nFAIL b: boom\n1 passed, 1 failed"
    );
    assert_eq!(
        serde_json::to_string(&report).unwrap_or_default(),
        r#"{"checks":[{"name":"a","error":null},{"name":"b","error":"boom"}]}"#
    );
}

/// A store that alters the options of every `put` and `list` before passing them on: broken
/// in one way, to show the suite notices.
struct Broken<S, P, L> {
    inner: S,
    put: fn(&mut P),
    list: fn(&mut L),
}

impl KvStore for Broken<MemoryKv, KvPutOptions, KvListOptions> {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: &[u8], mut options: KvPutOptions) -> StoreResult<()> {
        (self.put)(&mut options);
        self.inner.put(key, value, options).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, mut options: KvListOptions) -> StoreResult<KvListPage> {
        (self.list)(&mut options);
        self.inner.list(options).await
    }
}

impl ObjectStore for Broken<MemoryR2, ObjectPutOptions, ObjectListOptions> {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn put(
        &self,
        key: &str,
        body: &[u8],
        mut options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        (self.put)(&mut options);
        self.inner.put(key, body, options).await
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        self.inner.delete(keys).await
    }

    async fn list(&self, mut options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        (self.list)(&mut options);
        self.inner.list(options).await
    }
}

/// Fresh stores, without the per-key write rate limit (broken adapters may write faster).
fn unlimited_stores() -> MemoryStores {
    let stores = MemoryStores::new(1_700_000_000_000, 1);
    stores.kv.set_write_rate_limit(false);
    stores.r2.set_write_rate_limit(false);
    stores
}

/// The checks of `suite` that fail, judged by `clock`.
fn failures<S: Suite>(suite: S, clock: &VirtualClock) -> Vec<String> {
    failed_names(&block_on(run_conformance(&suite, clock, PREFIX)))
}

#[test]
fn kv_checks_catch_broken_adapters() {
    let failures = |put, list| {
        let stores = unlimited_stores();
        let inner = stores.kv.clone();
        failures(Kv(&Broken { inner, put, list }), &stores.clock)
    };
    // Raises a TTL under 60 s instead of refusing it.
    let clamps_short_ttl = |options: &mut KvPutOptions| {
        options.expiration_ttl_secs = options.expiration_ttl_secs.map(|ttl| ttl.max(60));
    };
    assert_eq!(
        failures(clamps_short_ttl, |_| {}),
        ["kv.ttl_under_60_rejected"]
    );
    // Starts every listing over, ignoring the cursor.
    let ignores_cursor = |options: &mut KvListOptions| options.cursor = None;
    assert_eq!(failures(|_| {}, ignores_cursor), ["kv.list_pagination"]);
    let drops_metadata = |options: &mut KvPutOptions| options.metadata = None;
    assert_eq!(
        failures(drops_metadata, |_| {}),
        [
            "kv.metadata_round_trip",
            "kv.empty_value_with_metadata",
            "kv.oversized_metadata_rejected"
        ]
    );
}

#[test]
fn r2_checks_catch_broken_adapters() {
    let failures = |put, list| {
        let stores = unlimited_stores();
        let inner = stores.r2.clone();
        failures(R2(&Broken { inner, put, list }), &stores.clock)
    };
    // Never checks nor records `sha256`.
    let ignores_sha256 = |options: &mut ObjectPutOptions| options.sha256 = None;
    assert_eq!(
        failures(ignores_sha256, |_| {}),
        ["r2.sha256_recorded", "r2.sha256_mismatch_rejected"]
    );
    let always_includes_metadata =
        |options: &mut ObjectListOptions| options.include_custom_metadata = true;
    assert_eq!(
        failures(|_| {}, always_includes_metadata),
        ["r2.list_custom_metadata_only_with_include"]
    );
    let ignores_only_if_absent = |options: &mut ObjectPutOptions| options.only_if_absent = false;
    assert_eq!(
        failures(ignores_only_if_absent, |_| {}),
        ["r2.only_if_absent"]
    );
    let ignores_etag = |options: &mut ObjectPutOptions| options.if_etag_matches = None;
    assert_eq!(failures(ignores_etag, |_| {}), ["r2.put_if_etag_matches"]);
}
