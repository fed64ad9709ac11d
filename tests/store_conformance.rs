//! The port conformance suite against the in-memory adapter, natively. The same suite runs
//! inside workerd against real local KV and R2 (through the JS adapters).
//!
//! Needs the `conformance` and `memory` features: `cargo test --features conformance,memory
//! --test store_conformance`.

use supportbot_persistence::service::legacy_suite::{run_legacy_conformance, LEGACY_CHECKS};
use supportbot_persistence::store::conformance::{
    run_conformance, ConformanceReport, Kv, KV_CHECKS, R2, R2_CHECKS,
};
use supportbot_persistence::store::memory::{block_on, MemoryStores};

const START_MS: i64 = 1_735_689_600_000;

fn assert_all_passed(report: &ConformanceReport, expected_checks: usize) {
    let failed: Vec<&str> = report.failures().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, Vec::<&str>::new(), "\n{report}");
    assert_eq!(report.checks.len(), expected_checks);
    assert_eq!(report.passed(), expected_checks);
}

/// Runs the KV and the R2 suite against `stores` under `prefix`; both must pass.
fn assert_suites_pass(stores: &MemoryStores, prefix: &str) {
    let kv = block_on(run_conformance(&Kv(&stores.kv), &stores.clock, prefix));
    assert_all_passed(&kv, KV_CHECKS.len());
    let r2 = block_on(run_conformance(&R2(&stores.r2), &stores.clock, prefix));
    assert_all_passed(&r2, R2_CHECKS.len());
}

#[test]
fn memory_stores_conform_and_clean_up() {
    assert_eq!((KV_CHECKS.len(), R2_CHECKS.len()), (14, 19));
    let stores = MemoryStores::new(START_MS, 1);
    assert_suites_pass(&stores, "suite/");
    assert_eq!(stores.r2.keys(), Vec::<String>::new());
    // Every check cleaned up except KV's pagination one, whose keys carry a TTL.
    let keys = stores.kv.keys();
    assert_eq!(keys.len(), 1001);
    assert!(keys
        .iter()
        .all(|k| k.starts_with("suite/kv.list_pagination/")));
    stores.clock.advance_ms(3_600_000);
    assert_eq!(stores.kv.keys(), Vec::<String>::new());
}

#[test]
fn two_runs_under_different_prefixes_share_one_namespace() {
    let stores = MemoryStores::new(START_MS, 1);
    assert_suites_pass(&stores, "run-1/");
    assert_suites_pass(&stores, "run-2/");
}

#[test]
fn a_failing_store_is_reported_per_check() {
    let stores = MemoryStores::new(START_MS, 1);
    stores.faults.crash_after(0);
    let report = block_on(run_conformance(&R2(&stores.r2), &stores.clock, "suite/"));
    assert_eq!(report.passed(), 0);
    assert_eq!(report.failed(), R2_CHECKS.len());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, R2_CHECKS);
}

#[test]
fn the_earlier_implementations_data_reads_back_through_the_service() {
    let stores = MemoryStores::new(START_MS, 1);
    let report = block_on(run_legacy_conformance(
        &stores.kv,
        &stores.r2,
        &stores.clock,
    ));
    assert_all_passed(&report, LEGACY_CHECKS.len());
    assert_eq!(LEGACY_CHECKS.len(), 7);
    // A second run in the same namespace (as in workerd, where runs share it) passes too.
    stores.clock.advance_ms(60_000);
    let again = block_on(run_legacy_conformance(
        &stores.kv,
        &stores.r2,
        &stores.clock,
    ));
    assert_all_passed(&again, LEGACY_CHECKS.len());
}
