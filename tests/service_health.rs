//! healthCheck and getStorageMetrics over the in-memory stores: real probes with injected
//! failures, breaker states, and counts over more than one listing page.

#[allow(dead_code)]
mod common;

use serde_json::{json, Value};
use supportbot_persistence::keys::{
    archive_meta_key, archive_object_key, backup_data_key, backup_manifest_object_key, BackupId,
    SessionId,
};
use supportbot_persistence::service::{HealthStatus, RunBudget};
use supportbot_persistence::store::memory::{block_on, CallFilter, MemoryStores, OperationKind};
use supportbot_persistence::store::{
    Binding, FailureKind, KvPutOptions, KvStore, ObjectPutOptions, ObjectStore,
};

use common::{quiet_service, Service, T0};

fn setup() -> (MemoryStores, Service) {
    let stores = MemoryStores::new(T0, 11);
    let service = quiet_service(&stores);
    (stores, service)
}

fn fail_binding(stores: &MemoryStores, binding: Binding, calls: u64) {
    stores
        .faults
        .fail_next(calls, FailureKind::Transient, CallFilter::binding(binding));
}

#[test]
fn healthy_when_both_probes_answer_and_it_never_writes() {
    let (stores, service) = setup();
    let report = block_on(service.health_check());
    assert_eq!(report.status, HealthStatus::Healthy);
    let counts = stores.faults.counts();
    // The KV probe, and what verification keeps (`verify:summary`).
    assert_eq!(counts.of(Binding::Kv, OperationKind::Get), 2);
    assert_eq!(counts.of(Binding::R2, OperationKind::Head), 1);
    assert_eq!(counts.total(), 3);
    let json: Value = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json,
        json!({"status": "healthy", "details": {
            "r2_storage": "healthy", "kv_cache": "healthy",
            "timestamp": "2025-01-06T10:00:00.000Z",
            "latencies": {"r2_ms": 0, "kv_ms": 0},
            "breakers": {"ARCHIVE_R2": "closed", "CHAT_KV": "closed"}},
            "verification": null})
    );
}

#[test]
fn degraded_with_one_failing_binding_unhealthy_with_both() {
    let (stores, service) = setup();
    fail_binding(&stores, Binding::Kv, 4);
    let report = block_on(service.health_check());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.details.kv_cache, "unhealthy: STORAGE_UNAVAILABLE");
    assert_eq!(report.details.r2_storage, "healthy");
    // The retries' backoff shows in the latency.
    assert!(report.details.latencies.kv_ms > 0);

    stores.faults.clear();
    fail_binding(&stores, Binding::R2, 4);
    let report = block_on(service.health_check());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.details.r2_storage, "unhealthy: STORAGE_UNAVAILABLE");

    stores.faults.clear();
    fail_binding(&stores, Binding::R2, 4);
    fail_binding(&stores, Binding::Kv, 4);
    let report = block_on(service.health_check());
    assert_eq!(report.status, HealthStatus::Unhealthy);
    // Five consecutive R2 failures (4 + 1 before) open its breaker.
    assert_eq!(report.details.breakers.archive_r2, "open");

    // An open breaker answers without a call.
    let calls = stores.faults.counts().of_binding(Binding::R2);
    let report = block_on(service.health_check());
    assert_eq!(report.details.r2_storage, "unhealthy: CIRCUIT_OPEN");
    assert_eq!(stores.faults.counts().of_binding(Binding::R2), calls);
}

#[test]
fn metrics_count_every_page() {
    let (stores, service) = setup();
    stores.kv.set_write_rate_limit(false);
    for (prefix, count) in [("embedding", 1200), ("query", 1001)] {
        for index in 0..count {
            let key = format!("{prefix}:{index:064x}");
            block_on(stores.kv.put(&key, b"e", KvPutOptions::default())).unwrap();
        }
    }
    for index in 0..3 {
        let sid = SessionId::parse(&format!("s{index}")).unwrap();
        block_on(
            stores
                .kv
                .put(&archive_meta_key(&sid), b"{}", KvPutOptions::default()),
        )
        .unwrap();
    }
    let put = |key: &str, bytes: usize| {
        block_on(
            stores
                .r2
                .put(key, &vec![b'x'; bytes], ObjectPutOptions::default()),
        )
        .unwrap();
    };
    for index in 0..1500 {
        let sid = SessionId::parse(&format!("s{index:04}")).unwrap();
        put(&archive_object_key(&sid, T0 + index).unwrap(), 10);
    }
    put("conversations/notes.txt", 7);
    let committed = BackupId::parse("b1").unwrap();
    put(&backup_data_key(&committed), 100);
    put(&backup_manifest_object_key(&committed), 20);
    put(&backup_data_key(&BackupId::parse("b2").unwrap()), 100);

    let counts = stores.faults.counts();
    let metrics = block_on(service.get_storage_metrics(RunBudget::default())).unwrap();
    let json: Value = serde_json::to_value(&metrics).unwrap();
    assert_eq!(
        json,
        json!({"cache": {"embeddings": 1200, "queries": 1001, "archives_metadata": 3},
               "storage": {"archived_conversations": 1500, "backups": 1,
                           "bytes": 1500 * 10 + 7 + 220},
               "complete": true})
    );
    let cost = stores.faults.counts().since(&counts);
    assert_eq!(cost.of(Binding::Kv, OperationKind::List), 2 + 2 + 1);
    assert_eq!(cost.of(Binding::R2, OperationKind::List), 1 + 2);
    assert_eq!(cost.total(), 8, "no value is read");

    // Exactly the 8 lists it needs, then one fewer: the second `conversations/` page is left.
    let budget = |calls| RunBudget {
        max_storage_calls: Some(calls),
        deadline_ms: None,
    };
    assert_eq!(
        block_on(service.get_storage_metrics(budget(8))).unwrap(),
        metrics
    );
    let counts = stores.faults.counts();
    let partial = block_on(service.get_storage_metrics(budget(7))).unwrap();
    assert_eq!(stores.faults.counts().since(&counts).total(), 7);
    assert!(!partial.complete);
    assert_eq!(partial.cache, metrics.cache);
    assert_eq!(partial.storage.archived_conversations, 1000);
    assert_eq!(partial.storage.backups, 1);
    // The listings take turns: 5 calls read the first page of each, so no count is left at 0.
    let first_pages = block_on(service.get_storage_metrics(budget(5))).unwrap();
    assert!(!first_pages.complete);
    assert_eq!(
        (
            first_pages.cache.embeddings,
            first_pages.cache.queries,
            first_pages.cache.archives_metadata
        ),
        (1000, 1000, 3)
    );
    assert_eq!(
        (
            first_pages.storage.backups,
            first_pages.storage.archived_conversations
        ),
        (1, 1000)
    );
    // A deadline already passed lists nothing.
    let none = block_on(service.get_storage_metrics(RunBudget {
        max_storage_calls: None,
        deadline_ms: Some(T0),
    }))
    .unwrap();
    assert_eq!((none.complete, none.cache.embeddings), (false, 0));
    let err = block_on(service.get_storage_metrics(budget(0))).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT");

    fail_binding(&stores, Binding::Kv, 4);
    let err = block_on(service.get_storage_metrics(RunBudget::default())).unwrap_err();
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE");
}
