//! The in-memory stores: limits, expiry, rate limits and fault injection.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::hash::{sha256_hex, verify_sha256};
use crate::platform::{
    KV_MAX_KEY_BYTES, KV_MAX_METADATA_BYTES, KV_MAX_VALUE_BYTES, R2_MAX_DELETE_KEYS,
    R2_MAX_KEY_BYTES, R2_MAX_METADATA_BYTES,
};
use crate::store::{
    Binding, Clock, FailureKind, KvListOptions, KvPutOptions, KvStore, ObjectListOptions,
    ObjectPutOptions, ObjectStore, PutOutcome, StoreError,
};

const START_MS: i64 = 1_700_000_000_500;

fn stores() -> MemoryStores {
    MemoryStores::new(START_MS, 9)
}

fn kv_put(stores: &MemoryStores, key: &str, value: &[u8]) -> Result<(), StoreError> {
    block_on(stores.kv.put(key, value, KvPutOptions::default()))
}

fn kv_put_ttl(stores: &MemoryStores, key: &str, ttl: u64) -> Result<(), StoreError> {
    let options = KvPutOptions {
        expiration_ttl_secs: Some(ttl),
        metadata: None,
    };
    block_on(stores.kv.put(key, b"v", options))
}

fn r2_put(stores: &MemoryStores, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
    block_on(stores.r2.put(key, body, ObjectPutOptions::default()))
}

fn kind_of<T: std::fmt::Debug>(result: Result<T, StoreError>) -> FailureKind {
    match result {
        Ok(value) => panic!("expected a failure, got {value:?}"),
        Err(err) => err.kind,
    }
}

#[test]
fn nth_call_fails_once_without_effect() {
    let stores = stores();
    stores.faults.fail_call(2, FailureKind::Rejected);
    assert!(kv_put(&stores, "a", b"1").is_ok());
    let err = r2_put(&stores, "b", b"2").unwrap_err();
    assert_eq!(err.kind, FailureKind::Rejected);
    assert_eq!(
        (err.binding, err.operation.as_str()),
        (Binding::R2, "put b")
    );
    assert!(err.message.contains("call 2"), "{}", err.message);
    assert_eq!(stores.r2.keys(), Vec::<String>::new());
    assert!(r2_put(&stores, "b", b"2").is_ok());
    assert_eq!(stores.faults.calls(), 3);
    assert_eq!(stores.faults.injected_failures(), 1);
}

#[test]
fn transient_burst_then_success_respects_the_filter() {
    let stores = stores();
    stores.faults.fail_next(
        2,
        FailureKind::Transient,
        CallFilter::call(Binding::Kv, OperationKind::Get),
    );
    assert!(kv_put(&stores, "k", b"v").is_ok());
    assert!(block_on(stores.r2.get("k")).is_ok());
    assert_eq!(
        kind_of(block_on(stores.kv.get("k"))),
        FailureKind::Transient
    );
    assert_eq!(
        kind_of(block_on(stores.kv.get("k"))),
        FailureKind::Transient
    );
    let value = block_on(stores.kv.get("k")).unwrap();
    assert_eq!(value.map(|v| v.value), Some(b"v".to_vec()));
    assert_eq!(stores.faults.injected_failures(), 2);
}

#[test]
fn crash_after_n_keeps_acknowledged_work_and_stops_the_rest() {
    let stores = stores();
    stores.faults.crash_after(2);
    assert!(kv_put(&stores, "one", b"1").is_ok());
    assert!(r2_put(&stores, "two", b"2").is_ok());
    assert_eq!(
        kind_of(kv_put(&stores, "three", b"3")),
        FailureKind::Transient
    );
    assert_eq!(
        kind_of(block_on(stores.kv.get("one"))),
        FailureKind::Transient
    );
    assert_eq!(
        kind_of(block_on(stores.r2.delete(&["two".into()]))),
        FailureKind::Transient
    );
    let snapshot = stores.snapshot();
    assert_eq!(snapshot.kv.keys().collect::<Vec<_>>(), ["one"]);
    assert_eq!(snapshot.r2.keys().collect::<Vec<_>>(), ["two"]);
    stores.faults.clear();
    assert!(kv_put(&stores, "three", b"3").is_ok());
}

#[test]
fn lost_response_applies_the_write_but_reports_failure() {
    let stores = stores();
    stores.faults.lose_response_of_call(1);
    let err = r2_put(&stores, "k", b"body").unwrap_err();
    assert!(err.is_transient());
    assert_eq!(stores.r2.keys(), ["k"]);
    assert!(r2_put(&stores, "other", b"x").is_ok());
}

#[test]
fn corruption_flips_one_byte_and_checksums_catch_it() {
    let stores = stores();
    let body = b"archive body".to_vec();
    let digest = sha256_hex(&body);
    let options = ObjectPutOptions {
        sha256: Some(digest.clone()),
        ..ObjectPutOptions::default()
    };
    assert!(block_on(stores.r2.put("obj", &body, options)).is_ok());
    assert!(stores.r2.corrupt("obj", 3));
    assert!(!stores.r2.corrupt("obj", 99));
    assert!(!stores.r2.corrupt("missing", 0));
    let read = block_on(stores.r2.get("obj")).unwrap().unwrap();
    assert_eq!(read.body[3], body[3] ^ 0xff);
    assert_eq!(read.meta.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(read.meta.size, body.len() as u64);
    let err = verify_sha256("obj", &read.body, &digest).unwrap_err();
    assert_eq!(err.code(), "CHECKSUM_MISMATCH");

    assert!(kv_put(&stores, "kv", b"abc").is_ok());
    assert!(stores.kv.corrupt("kv", 0));
    assert!(!stores.kv.corrupt("kv", 3));
    assert_eq!(stores.kv.snapshot()["kv"].value, [b'a' ^ 0xff, b'b', b'c']);
}

#[test]
fn counters_count_each_binding_and_operation() {
    let stores = stores();
    let before = stores.faults.counts();
    assert!(kv_put(&stores, "k", b"v").is_ok());
    assert!(block_on(stores.kv.list(KvListOptions::default())).is_ok());
    assert!(block_on(stores.kv.list(KvListOptions::default())).is_ok());
    assert!(block_on(stores.r2.head("x")).is_ok());
    assert!(block_on(stores.r2.delete(&["a".into(), "b".into()])).is_ok());
    let used = stores.faults.counts().since(&before);
    assert_eq!(used.of(Binding::Kv, OperationKind::List), 2);
    assert_eq!(used.of(Binding::Kv, OperationKind::Put), 1);
    assert_eq!(used.of(Binding::Kv, OperationKind::Get), 0);
    assert_eq!(used.of(Binding::R2, OperationKind::Head), 1);
    assert_eq!(used.of(Binding::R2, OperationKind::Delete), 1);
    assert_eq!(used.of_binding(Binding::Kv), 3);
    assert_eq!(used.total(), 5);
    let later = stores.faults.counts();
    assert!(kv_put(&stores, "k2", b"v").is_ok());
    assert_eq!(stores.faults.counts().since(&later).total(), 1);
    // Snapshots and key listings are not storage calls.
    let _ = stores.snapshot();
    assert_eq!(stores.faults.calls(), 6);
}

#[test]
fn kv_ttl_entries_expire_on_the_virtual_clock() {
    let stores = stores();
    assert!(kv_put_ttl(&stores, "short", 60).is_ok());
    assert!(kv_put_ttl(&stores, "long", 120).is_ok());
    assert!(kv_put(&stores, "forever", b"v").is_ok());
    let page = block_on(stores.kv.list(KvListOptions::default())).unwrap();
    let expirations: Vec<_> = page
        .keys
        .iter()
        .map(|k| (k.name.as_str(), k.expiration_s))
        .collect();
    let now_s = (START_MS / 1000) as u64;
    assert_eq!(
        expirations,
        [
            ("forever", None),
            ("long", Some(now_s + 120)),
            ("short", Some(now_s + 60))
        ]
    );
    stores.clock.set_ms(((now_s + 60) * 1000) as i64 - 1);
    assert!(block_on(stores.kv.get("short")).unwrap().is_some());
    stores.clock.advance_ms(1);
    assert_eq!(block_on(stores.kv.get("short")).unwrap(), None);
    assert_eq!(stores.kv.keys(), ["forever", "long"]);
    stores.clock.advance_ms(60_000);
    assert_eq!(stores.kv.keys(), ["forever"]);
}

#[test]
fn kv_ttl_under_60_is_rejected_with_kvs_message() {
    let stores = stores();
    let err = kv_put_ttl(&stores, "k", 59).unwrap_err();
    assert_eq!(err.kind, FailureKind::Rejected);
    assert_eq!(
        err.message,
        "KV PUT failed: 400 Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    );
    assert!(kv_put_ttl(&stores, "k", 60).is_ok());
}

#[test]
fn kv_second_write_to_a_key_within_a_second_gets_429() {
    let stores = stores();
    assert!(kv_put(&stores, "k", b"1").is_ok());
    stores.clock.advance_ms(999);
    let err = kv_put(&stores, "k", b"2").unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (
            FailureKind::RateLimited,
            "KV PUT failed: 429 Too Many Requests"
        )
    );
    assert!(kv_put(&stores, "other", b"x").is_ok());
    stores.clock.advance_ms(1);
    assert!(kv_put(&stores, "k", b"2").is_ok());
    assert_eq!(stores.kv.snapshot()["k"].value, b"2");
    stores.kv.set_write_rate_limit(false);
    assert!(kv_put(&stores, "k", b"3").is_ok());
}

#[test]
fn r2_second_write_to_a_key_within_a_second_gets_429() {
    let stores = stores();
    assert!(r2_put(&stores, "k", b"1").is_ok());
    assert_eq!(
        kind_of(r2_put(&stores, "k", b"2")),
        FailureKind::RateLimited
    );
    stores.r2.set_write_rate_limit(false);
    assert!(r2_put(&stores, "k", b"2").is_ok());
}

/// The message of the refusal of `over_limit`, a call like `at_limit`, which succeeded, but one
/// past a limit.
fn refused_past_limit<T: std::fmt::Debug>(
    at_limit: Result<T, StoreError>,
    over_limit: Result<T, StoreError>,
) -> String {
    assert!(at_limit.is_ok(), "{at_limit:?}");
    let err = over_limit.unwrap_err();
    assert_eq!(err.kind, FailureKind::Rejected, "{err}");
    err.message
}

#[test]
fn kv_limits_are_enforced_at_their_boundaries() {
    let stores = stores();
    stores.kv.set_write_rate_limit(false);
    let key_of = |length: usize| "k".repeat(length);
    assert_eq!(
        refused_past_limit(
            kv_put(&stores, &key_of(KV_MAX_KEY_BYTES), b"v"),
            kv_put(&stores, &key_of(KV_MAX_KEY_BYTES + 1), b"v")
        ),
        "KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    );
    for bad in ["", ".", ".."] {
        assert_eq!(
            kind_of(kv_put(&stores, bad, b"v")),
            FailureKind::Rejected,
            "{bad:?}"
        );
    }
    let metadata_of = |length: usize| KvPutOptions {
        expiration_ttl_secs: None,
        metadata: Some(json!({ "p": "x".repeat(length - 8) })),
    };
    let put = |options| block_on(stores.kv.put("m", b"v", options));
    assert_eq!(
        refused_past_limit(
            put(metadata_of(KV_MAX_METADATA_BYTES)),
            put(metadata_of(KV_MAX_METADATA_BYTES + 1))
        ),
        "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024."
    );
    let too_big = vec![0_u8; KV_MAX_VALUE_BYTES + 1];
    assert_eq!(
        kind_of(kv_put(&stores, "big", &too_big)),
        FailureKind::Rejected
    );
}

#[test]
fn kv_list_pages_and_rejects_bad_arguments() {
    let stores = stores();
    for i in 0..5 {
        assert!(kv_put(&stores, &format!("p/{i}"), b"v").is_ok());
    }
    assert!(kv_put(&stores, "q", b"v").is_ok());
    let first = block_on(stores.kv.list(KvListOptions {
        prefix: Some("p/".into()),
        cursor: None,
        limit: Some(3),
    }))
    .unwrap();
    let names = |page: &crate::store::KvListPage| -> Vec<String> {
        page.keys.iter().map(|k| k.name.clone()).collect()
    };
    assert_eq!(names(&first), ["p/0", "p/1", "p/2"]);
    assert!(!first.list_complete);
    let second = block_on(stores.kv.list(KvListOptions {
        prefix: Some("p/".into()),
        cursor: first.cursor.clone(),
        limit: Some(3),
    }))
    .unwrap();
    assert_eq!(names(&second), ["p/3", "p/4"]);
    assert!(second.list_complete);
    assert_eq!(second.cursor, None);
    let zero = KvListOptions {
        limit: Some(0),
        ..KvListOptions::default()
    };
    assert_eq!(
        kind_of(block_on(stores.kv.list(zero))),
        FailureKind::Rejected
    );
    let junk = KvListOptions {
        cursor: Some("not-a-cursor".into()),
        ..KvListOptions::default()
    };
    assert_eq!(
        kind_of(block_on(stores.kv.list(junk))),
        FailureKind::Rejected
    );
}

#[test]
fn r2_limits_are_enforced_at_their_boundaries() {
    let stores = stores();
    let key_of = |length: usize| "k".repeat(length);
    refused_past_limit(
        r2_put(&stores, &key_of(R2_MAX_KEY_BYTES), b"v"),
        r2_put(&stores, &key_of(R2_MAX_KEY_BYTES + 1), b"v"),
    );
    assert_eq!(kind_of(r2_put(&stores, "", b"v")), FailureKind::Rejected);
    let metadata_of = |length: usize| ObjectPutOptions {
        custom_metadata: BTreeMap::from([("p".to_owned(), "x".repeat(length - 1))]),
        ..ObjectPutOptions::default()
    };
    refused_past_limit(
        block_on(stores.r2.put("m", b"v", metadata_of(R2_MAX_METADATA_BYTES))),
        block_on(
            stores
                .r2
                .put("n", b"v", metadata_of(R2_MAX_METADATA_BYTES + 1)),
        ),
    );
    let keys: Vec<String> = (0..=R2_MAX_DELETE_KEYS).map(|i| format!("k{i}")).collect();
    let delete = |keys: &[String]| block_on(stores.r2.delete(keys));
    refused_past_limit(delete(&keys[..R2_MAX_DELETE_KEYS]), delete(&keys));
}

#[test]
fn r2_sha256_is_checked_and_recorded() {
    let stores = stores();
    let with_sha = |sha: &str| ObjectPutOptions {
        sha256: Some(sha.to_owned()),
        ..ObjectPutOptions::default()
    };
    let err = block_on(stores.r2.put("k", b"body", with_sha(&sha256_hex(b"other")))).unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient);
    assert!(err.message.contains("did not match"), "{}", err.message);
    assert_eq!(
        kind_of(block_on(stores.r2.put("k", b"body", with_sha("abc")))),
        FailureKind::Rejected
    );
    assert_eq!(stores.r2.keys(), Vec::<String>::new());
    let upper = sha256_hex(b"body").to_ascii_uppercase();
    let Ok(PutOutcome::Stored(meta)) = block_on(stores.r2.put("k", b"body", with_sha(&upper)))
    else {
        panic!("put with the right sha256 failed");
    };
    assert_eq!(meta.sha256, Some(sha256_hex(b"body")));
    assert_eq!(meta.uploaded_ms, START_MS);
}

#[test]
fn r2_only_if_absent_never_overwrites() {
    let stores = stores();
    let absent = ObjectPutOptions {
        only_if_absent: true,
        ..ObjectPutOptions::default()
    };
    assert!(matches!(
        block_on(stores.r2.put("m", b"1", absent.clone())),
        Ok(PutOutcome::Stored(_))
    ));
    assert_eq!(
        block_on(stores.r2.put("m", b"2", absent)),
        Ok(PutOutcome::AlreadyExists)
    );
    assert_eq!(stores.r2.snapshot()["m"].body, b"1");
}

#[test]
fn r2_list_combines_start_after_cursor_and_include() {
    let stores = stores();
    let with_meta = ObjectPutOptions {
        custom_metadata: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
        ..ObjectPutOptions::default()
    };
    for key in ["x/1", "x/2", "x/3", "x/4", "y"] {
        assert!(block_on(stores.r2.put(key, b"v", with_meta.clone())).is_ok());
    }
    let list = |cursor: Option<String>, include: bool| {
        block_on(stores.r2.list(ObjectListOptions {
            prefix: Some("x/".into()),
            cursor,
            start_after: Some("x/1".into()),
            limit: Some(2),
            include_custom_metadata: include,
        }))
        .unwrap()
    };
    let first = list(None, false);
    let keys: Vec<&str> = first.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!((keys, first.truncated), (vec!["x/2", "x/3"], true));
    assert_eq!(first.objects[0].custom_metadata, None);
    let second = list(first.cursor, true);
    let keys: Vec<&str> = second.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        (keys, second.truncated, second.cursor),
        (vec!["x/4"], false, None)
    );
    assert_eq!(
        second.objects[0].custom_metadata,
        Some(with_meta.custom_metadata)
    );
    assert_eq!(second.objects[0].uploaded_ms, START_MS);
}

#[test]
fn block_on_returns_ready_output() {
    let clock = VirtualClock::new(0, 0);
    assert_eq!(
        block_on(async {
            clock.sleep(5).await;
            clock.now_ms()
        }),
        5
    );
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
#[should_panic(expected = "still pending after 10000 polls")]
fn block_on_panics_on_a_future_that_never_completes() {
    block_on(std::future::pending::<()>());
}

#[test]
fn a_replica_bucket_is_a_second_bucket_counted_and_failed_under_its_own_binding() {
    let stores = stores();
    let replica = stores.replica_bucket();
    let filter = CallFilter::binding(Binding::R2Replica);
    stores.faults.fail_next(1, FailureKind::Rejected, filter);
    let put = |bucket: &MemoryR2| block_on(bucket.put("k", b"v", ObjectPutOptions::default()));
    // The primary is not filtered; the replica's first call fails, naming its binding.
    assert!(put(&stores.r2).is_ok());
    let err = put(&replica).unwrap_err();
    assert_eq!(err.binding, Binding::R2Replica);
    assert!(put(&replica).is_ok());
    let counts = stores.faults.counts();
    assert_eq!(counts.of(Binding::R2, OperationKind::Put), 1);
    assert_eq!(counts.of(Binding::R2Replica, OperationKind::Put), 2);
    // Two buckets: deleting in one leaves the other.
    assert!(block_on(stores.r2.delete(&["k".into()])).is_ok());
    assert_eq!(replica.keys(), ["k"]);
    assert!(stores.r2.keys().is_empty());
}
