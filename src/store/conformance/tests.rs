//! The suite passes on the in-memory adapter, and each check can fail: adapters broken on
//! purpose make the check that guards that behaviour fail, and only that one.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::store::memory::{block_on, MemoryStores};
use crate::store::{
    KvListOptions, KvListPage, KvPutOptions, KvValue, ObjectListOptions, ObjectListPage,
    ObjectMeta, ObjectPutOptions, PutOutcome, StoredObject,
};

const PREFIX: &str = "conformance-test/";

fn failed_names(report: &ConformanceReport) -> Vec<&str> {
    report
        .failures()
        .into_iter()
        .map(|check| check.name.as_str())
        .collect()
}

#[test]
fn memory_adapter_passes_every_check() {
    let stores = MemoryStores::new(1_700_000_000_000, 1);
    let kv_report = block_on(run_kv_conformance(&stores.kv, &stores.clock, PREFIX));
    let r2_report = block_on(run_r2_conformance(&stores.r2, &stores.clock, PREFIX));
    assert_eq!(failed_names(&kv_report), Vec::<&str>::new(), "{kv_report}");
    assert_eq!(failed_names(&r2_report), Vec::<&str>::new(), "{r2_report}");
    assert_eq!(kv_report.passed(), KV_CHECKS.len());
    assert_eq!(r2_report.passed(), R2_CHECKS.len());
}

#[test]
fn unknown_check_names_fail() {
    let stores = MemoryStores::new(0, 1);
    let outcome = block_on(run_kv_check(&stores.kv, &stores.clock, PREFIX, "kv.nope"));
    assert_eq!(
        outcome.error.as_deref(),
        Some("no KV check is called \"kv.nope\"")
    );
    let outcome = block_on(run_r2_check(&stores.r2, &stores.clock, PREFIX, "r2.nope"));
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

/// A KV broken in one way, to show the suite notices.
struct BrokenKv {
    inner: crate::store::memory::MemoryKv,
    breakage: KvBreakage,
}

#[derive(Clone, Copy)]
enum KvBreakage {
    /// Raises a TTL under 60 s instead of refusing it.
    ClampsShortTtl,
    /// Starts every listing over, ignoring the cursor.
    IgnoresCursor,
    /// Drops the metadata of every put.
    DropsMetadata,
}

impl KvStore for BrokenKv {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: &[u8], mut options: KvPutOptions) -> StoreResult<()> {
        match self.breakage {
            KvBreakage::ClampsShortTtl => {
                options.expiration_ttl_secs = options.expiration_ttl_secs.map(|ttl| ttl.max(60));
            }
            KvBreakage::DropsMetadata => options.metadata = None,
            KvBreakage::IgnoresCursor => {}
        }
        self.inner.put(key, value, options).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, mut options: KvListOptions) -> StoreResult<KvListPage> {
        if let KvBreakage::IgnoresCursor = self.breakage {
            options.cursor = None;
        }
        self.inner.list(options).await
    }
}

fn kv_failures_with(breakage: KvBreakage) -> Vec<String> {
    let stores = MemoryStores::new(1_700_000_000_000, 1);
    stores.kv.set_write_rate_limit(false);
    let broken = BrokenKv {
        inner: stores.kv.clone(),
        breakage,
    };
    let report = block_on(run_kv_conformance(&broken, &stores.clock, PREFIX));
    failed_names(&report)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn kv_checks_catch_broken_adapters() {
    assert_eq!(
        kv_failures_with(KvBreakage::ClampsShortTtl),
        ["kv.ttl_under_60_rejected"]
    );
    assert_eq!(
        kv_failures_with(KvBreakage::IgnoresCursor),
        ["kv.list_pagination"]
    );
    assert_eq!(
        kv_failures_with(KvBreakage::DropsMetadata),
        ["kv.metadata_round_trip", "kv.oversized_metadata_rejected"]
    );
}

/// An R2 bucket broken in one way, to show the suite notices.
struct BrokenR2 {
    inner: crate::store::memory::MemoryR2,
    breakage: R2Breakage,
}

#[derive(Clone, Copy)]
enum R2Breakage {
    /// Never checks nor records `sha256`.
    IgnoresSha256,
    /// Lists custom metadata even when not asked to.
    AlwaysIncludesMetadata,
    /// Overwrites even with `only_if_absent`.
    IgnoresOnlyIfAbsent,
}

impl ObjectStore for BrokenR2 {
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
        match self.breakage {
            R2Breakage::IgnoresSha256 => options.sha256 = None,
            R2Breakage::IgnoresOnlyIfAbsent => options.only_if_absent = false,
            R2Breakage::AlwaysIncludesMetadata => {}
        }
        self.inner.put(key, body, options).await
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        self.inner.delete(keys).await
    }

    async fn list(&self, mut options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        if let R2Breakage::AlwaysIncludesMetadata = self.breakage {
            options.include_custom_metadata = true;
        }
        self.inner.list(options).await
    }
}

fn r2_failures_with(breakage: R2Breakage) -> Vec<String> {
    let stores = MemoryStores::new(1_700_000_000_000, 1);
    stores.r2.set_write_rate_limit(false);
    let broken = BrokenR2 {
        inner: stores.r2.clone(),
        breakage,
    };
    let report = block_on(run_r2_conformance(&broken, &stores.clock, PREFIX));
    failed_names(&report)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn r2_checks_catch_broken_adapters() {
    assert_eq!(
        r2_failures_with(R2Breakage::IgnoresSha256),
        ["r2.sha256_recorded", "r2.sha256_mismatch_rejected"]
    );
    assert_eq!(
        r2_failures_with(R2Breakage::AlwaysIncludesMetadata),
        ["r2.list_custom_metadata_only_with_include"]
    );
    assert_eq!(
        r2_failures_with(R2Breakage::IgnoresOnlyIfAbsent),
        ["r2.only_if_absent"]
    );
}
