//! What a call counts for analytics (`instrument`): storage calls and failed attempts as the
//! stores saw them, bytes read and written as stored, the cache lookup's hit or miss, summed
//! over every operation a job opens, and nothing for a call that is not instrumented.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use supportbot_persistence::service::{instrument, OpStats, RunBudget};
use supportbot_persistence::store::memory::{block_on, CallFilter, MemoryStores, OperationKind};
use supportbot_persistence::store::{Binding, FailureKind};

use common::{memory_at, quiet_service, session_at, Service, DAY, T0};

/// Runs `call` instrumented; its result and what it counted.
fn measured<T>(call: impl std::future::Future<Output = T>) -> (T, Rc<OpStats>) {
    let (stats, call) = instrument(call);
    (block_on(call), stats)
}

/// Bytes of every KV value and R2 body stored now.
fn stored_bytes(stores: &MemoryStores) -> u64 {
    let snapshot = stores.snapshot();
    let kv: usize = snapshot.kv.values().map(|value| value.value.len()).sum();
    let r2: usize = snapshot.r2.values().map(|object| object.body.len()).sum();
    (kv + r2) as u64
}

fn archive(service: &Service, sid: &str, user: &str) -> supportbot_persistence::Result<String> {
    let memory = memory_at(sid, "I cannot log in since the update", [T0 - 1_000, T0]);
    let session = session_at(sid, Some(user), T0 - 1_000, T0);
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string()))
}

#[test]
fn an_archive_counts_every_call_and_every_byte_it_stored() {
    let stores = MemoryStores::new(T0, 1);
    let service = quiet_service(&stores);
    let memory = memory_at("s-1", "I cannot log in since the update", [T0 - 1_000, T0]);
    let session = session_at("s-1", Some("u-1"), T0 - 1_000, T0);

    let (key, stats) =
        measured(service.archive_conversation(&memory.to_string(), &session.to_string()));

    key.unwrap();
    assert_eq!(
        u64::from(stats.storage_calls()),
        stores.faults.counts().total()
    );
    assert_eq!(stats.failed_attempts(), 0);
    // Into an empty store, every byte stored now was written by this call.
    assert_eq!(stats.bytes_written(), stored_bytes(&stores));
    assert_eq!(stats.cache_hit(), None);
}

#[test]
fn a_retrieve_counts_the_bytes_of_what_it_read() {
    let stores = MemoryStores::new(T0, 2);
    let service = quiet_service(&stores);
    let key = archive(&service, "s-2", "u-2").unwrap();
    let before = stores.faults.counts();

    let (found, stats) = measured(service.retrieve_archived_conversation("s-2"));

    assert!(found.unwrap().is_some());
    let calls = stores.faults.counts().since(&before);
    assert_eq!(u64::from(stats.storage_calls()), calls.total());
    let body = stores.snapshot().r2[&key].body.len() as u64;
    // The R2 body plus the session's KV index entry, and nothing written.
    assert!(
        stats.bytes_read() > body,
        "{} <= {body}",
        stats.bytes_read()
    );
    assert_eq!(stats.bytes_written(), 0);
}

#[test]
fn a_cache_lookup_says_hit_or_miss_and_reads_what_was_written() {
    let stores = MemoryStores::new(T0, 3);
    let service = quiet_service(&stores);

    let (missed, miss) = measured(service.get_cached_query_result("refund policy"));
    assert_eq!(missed.unwrap(), None);
    assert_eq!(miss.cache_hit(), Some(false));
    assert_eq!(miss.storage_calls(), 1);
    assert_eq!(miss.bytes_read(), 0);

    let (cached, write) =
        measured(service.cache_frequent_query("refund policy", r#"{"days":30}"#, None));
    cached.unwrap();
    assert_eq!(write.cache_hit(), None);
    assert!(write.bytes_written() > 0);

    let (found, hit) = measured(service.get_cached_query_result("refund policy"));
    assert!(found.unwrap().is_some());
    assert_eq!(hit.cache_hit(), Some(true));
    assert_eq!(hit.bytes_read(), write.bytes_written());
}

#[test]
fn failed_attempts_are_counted_and_a_refused_call_counts_nothing() {
    let stores = MemoryStores::new(T0, 4);
    let service = quiet_service(&stores);
    stores.faults.fail_next(
        1,
        FailureKind::Transient,
        CallFilter::call(Binding::R2, OperationKind::Put),
    );

    let memory = memory_at("s-4", "hello", [T0 - 1_000, T0]);
    let session = session_at("s-4", Some("u-4"), T0 - 1_000, T0);
    let (key, retried) =
        measured(service.archive_conversation(&memory.to_string(), &session.to_string()));
    key.unwrap();
    assert_eq!(retried.failed_attempts(), 1);
    assert_eq!(
        u64::from(retried.storage_calls()),
        stores.faults.counts().total() - 1,
        "a retried call counts once"
    );

    let before = stores.faults.counts().total();
    let (refused, stats) = measured(service.archive_conversation("not json", "{}"));
    assert_eq!(refused.unwrap_err().code(), "INVALID_INPUT");
    assert_eq!(stores.faults.counts().total(), before);
    assert_eq!(
        (
            stats.storage_calls(),
            stats.bytes_written(),
            stats.bytes_read()
        ),
        (0, 0, 0)
    );
}

#[test]
fn a_job_is_counted_whole_and_only_calls_that_are_instrumented_count() {
    let stores = MemoryStores::new(T0, 5);
    let service = quiet_service(&stores);
    for n in 0..3 {
        archive(&service, &format!("s-5-{n}"), "u-5").unwrap();
    }
    stores.clock.set_ms(T0 + 400 * DAY);
    let before = stores.faults.counts();

    let (report, stats) = measured(service.enforce_retention_policy(RunBudget::default()));

    let report = report.unwrap();
    assert!(report.status.complete);
    let calls = stores.faults.counts().since(&before);
    assert!(calls.of(Binding::R2, OperationKind::Delete) > 0);
    assert_eq!(u64::from(stats.storage_calls()), calls.total());

    // A call outside `instrument` leaves the stats of an earlier one as they were.
    let counted = stats.storage_calls();
    block_on(service.get_cached_query_result("anything")).unwrap();
    assert_eq!(stats.storage_calls(), counted);
}
