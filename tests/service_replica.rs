//! The replica bucket (issue 18, point 3) over the in-memory stores: writes land in both
//! buckets, a failed copy is queued and settled by `syncReplica`, reads fall back to the
//! replica (never past an erasure), and retention and erasure delete in both.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::keys::{
    archive_object_key, erasure_tombstone_key, replica_pending_key, SessionId, UserId,
    REPLICA_PENDING_PREFIX,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    HealthStatus, RunBudget, ServiceOptions, MIN_REPLICA_SYNC_CALLS, REPLICA_LAG_DEGRADED_MS,
};
use supportbot_persistence::store::memory::{
    block_on, CallFilter, MemoryR2, MemoryStores, OperationKind,
};
use supportbot_persistence::store::{Binding, FailureKind, ObjectPutOptions, ObjectStore};

use common::{archive_now, kv_keys_under, memory_at, service_over, session_at, Lines, Service, T0};

const UNLIMITED: RunBudget = RunBudget {
    max_storage_calls: None,
    deadline_ms: None,
};

/// Stores, their replica bucket, a service over both, and its log lines.
fn setup() -> (MemoryStores, MemoryR2, Service, Rc<Lines>) {
    let stores = MemoryStores::new(T0, 23);
    let replica = stores.replica_bucket();
    let lines = Rc::new(Lines::default());
    let service = service_over(
        &stores,
        lines.clone(),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    )
    .with_replica(replica.clone());
    (stores, replica, service, lines)
}

/// The R2 key of the newest archive of `sid` (its only one in these tests).
fn archive_key(stores: &MemoryStores, sid: &str) -> String {
    let keys = stores.r2.keys();
    keys.into_iter()
        .find(|key| key.contains(&format!("archive_{sid}_")))
        .unwrap()
}

fn served_from_replica(lines: &Lines) -> Vec<Value> {
    lines
        .warnings()
        .into_iter()
        .filter(|line| line["msg"] == "archive served from the replica")
        .collect()
}

fn replica_health(service: &Service) -> (HealthStatus, Value) {
    let report = block_on(service.health_check());
    let json = serde_json::to_value(&report).unwrap();
    (report.status, json["replica"].clone())
}

#[test]
fn every_write_lands_in_both_buckets_as_stored() {
    let (stores, replica, service, _) = setup();
    archive_now(&stores, &service, "s1", Some("u1"), "Where is my invoice?");
    let primary = stores.r2.snapshot();
    let copies = replica.snapshot();
    assert_eq!(primary.len(), 1);
    for (key, object) in &primary {
        let copy = &copies[key];
        assert_eq!(copy.body, object.body, "{key}");
        assert_eq!(
            copy.meta.custom_metadata, object.meta.custom_metadata,
            "{key}"
        );
        assert_eq!(copy.meta.sha256, object.meta.sha256, "{key}");
    }
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 0);
    let (status, health) = replica_health(&service);
    assert_eq!(status, HealthStatus::Healthy);
    assert_eq!(
        health,
        json!({"storage": "healthy", "pending": 0, "pendingComplete": true,
               "oldestPendingMs": null})
    );
}

#[test]
fn a_failed_copy_is_acknowledged_queued_shown_in_health_and_synced() {
    let (stores, replica, service, _) = setup();
    let refused = CallFilter::call(Binding::R2Replica, OperationKind::Put);
    stores.faults.fail_next(1, FailureKind::Rejected, refused);
    archive_now(&stores, &service, "s1", None, "Hello");
    let key = archive_key(&stores, "s1");
    assert!(replica.keys().is_empty());
    let queued = stores.kv.snapshot();
    assert!(
        queued.contains_key(&replica_pending_key(&key)),
        "{queued:?}"
    );

    let (status, health) = replica_health(&service);
    assert_eq!(status, HealthStatus::Healthy);
    assert_eq!(health["pending"], 1);
    // An hour and more behind: degraded.
    stores.clock.advance_ms(REPLICA_LAG_DEGRADED_MS as u64 + 1);
    let (status, health) = replica_health(&service);
    assert_eq!(status, HealthStatus::Degraded);
    assert!(health["oldestPendingMs"].as_i64().unwrap() > REPLICA_LAG_DEGRADED_MS);

    let report = block_on(service.sync_replica(UNLIMITED)).unwrap();
    assert_eq!((report.entries, report.copied, report.failed), (1, 1, 0));
    assert!(report.status.complete);
    assert_eq!(
        replica.snapshot()[&key].body,
        stores.r2.snapshot()[&key].body
    );
    let (status, health) = replica_health(&service);
    assert_eq!(
        (status, health["pending"].clone()),
        (HealthStatus::Healthy, json!(0))
    );
}

#[test]
fn a_sync_run_within_its_minimum_budget_makes_progress_and_resumes() {
    let (stores, replica, service, _) = setup();
    let refused = CallFilter::call(Binding::R2Replica, OperationKind::Put);
    stores.faults.fail_next(3, FailureKind::Rejected, refused);
    for sid in ["s1", "s2", "s3"] {
        archive_now(&stores, &service, sid, None, "Hello");
    }
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 3);
    let budget = RunBudget {
        max_storage_calls: Some(MIN_REPLICA_SYNC_CALLS),
        deadline_ms: None,
    };
    let below = RunBudget {
        max_storage_calls: Some(MIN_REPLICA_SYNC_CALLS - 1),
        deadline_ms: None,
    };
    assert_eq!(
        block_on(service.sync_replica(below)).unwrap_err().code(),
        "INVALID_INPUT"
    );
    let mut runs = 0;
    loop {
        runs += 1;
        let report = block_on(service.sync_replica(budget)).unwrap();
        assert!(report.status.storage_calls <= MIN_REPLICA_SYNC_CALLS);
        if report.status.complete {
            break;
        }
        assert_eq!(report.copied, 1);
        assert!(runs < 10);
    }
    assert_eq!(replica.keys(), stores.r2.keys());
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 0);
}

#[test]
fn an_archive_missing_or_damaged_in_the_primary_is_served_from_the_replica() {
    let (stores, _replica, service, lines) = setup();
    let memory = memory_at("s1", "Where is my invoice?", [T0 - 1_000, T0]);
    let session = session_at("s1", Some("u1"), T0 - 1_000, T0);
    let key =
        block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    let expected = block_on(service.retrieve_archived_conversation("s1")).unwrap();
    assert!(served_from_replica(&lines).is_empty());

    assert!(stores.r2.corrupt(&key, 20));
    let read = block_on(service.retrieve_archived_conversation("s1")).unwrap();
    assert_eq!(read, expected);
    assert_eq!(served_from_replica(&lines).len(), 1);
    assert_eq!(
        served_from_replica(&lines)[0]["primary"],
        "CHECKSUM_MISMATCH"
    );

    block_on(stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    assert_eq!(
        block_on(service.retrieve_archived_conversation("s1")).unwrap(),
        expected
    );
    assert_eq!(block_on(service.retrieve_archive(&key)).unwrap(), expected);
    assert!(block_on(service.retrieve_ui_messages("s1"))
        .unwrap()
        .is_some());
    let served = served_from_replica(&lines);
    assert_eq!(served.len(), 4);
    assert!(served[1..]
        .iter()
        .all(|line| line["primary"] == "NOT_FOUND"));
    // Nothing is written back by a read.
    assert!(!stores.r2.keys().contains(&key));
}

#[test]
fn a_replica_that_fails_never_fails_a_read_nor_a_write() {
    let (stores, _replica, service, _) = setup();
    stores.faults.fail_next(
        100,
        FailureKind::Transient,
        CallFilter::binding(Binding::R2Replica),
    );
    archive_now(&stores, &service, "s1", None, "Hello");
    let key = archive_key(&stores, "s1");
    assert!(block_on(service.retrieve_archive(&key)).unwrap().is_some());
    block_on(stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    assert_eq!(block_on(service.retrieve_archive(&key)).unwrap(), None);
    let report = block_on(service.health_check());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.details.breakers.archive_r2, "closed");
    assert_eq!(report.details.breakers.archive_r2_replica, Some("open"));
}

#[test]
fn an_erased_users_archive_is_not_served_from_the_replica() {
    let (stores, replica, service, lines) = setup();
    archive_now(&stores, &service, "s1", Some("u1"), "Where is my invoice?");
    let key = archive_key(&stores, "s1");
    // Mid-sweep: the tombstone is written, the primary object already deleted, the replica's
    // not yet.
    let user_key = service
        .options()
        .hasher
        .user_key(&UserId::parse("u1").unwrap());
    let now = supportbot_persistence::store::Clock::now_ms(&stores.clock);
    let tombstone = json!({"formatVersion": 1, "userKey": user_key, "erasedAt": now,
                           "completedAt": null})
    .to_string();
    let options = ObjectPutOptions {
        custom_metadata: [("erasedAt".to_owned(), now.to_string())].into(),
        ..ObjectPutOptions::default()
    };
    block_on(stores.r2.put(
        &erasure_tombstone_key(&user_key),
        tombstone.as_bytes(),
        options,
    ))
    .unwrap();
    block_on(stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    assert!(replica.keys().contains(&key));
    assert_eq!(block_on(service.retrieve_archive(&key)).unwrap(), None);
    assert_eq!(
        block_on(service.retrieve_archived_conversation("s1")).unwrap(),
        None
    );
    assert!(served_from_replica(&lines).is_empty());
}

#[test]
fn erasure_and_retention_leave_nothing_in_either_bucket() {
    let (stores, replica, service, _) = setup();
    archive_now(&stores, &service, "s1", Some("u1"), "Mine");
    archive_now(&stores, &service, "s2", Some("u2"), "Theirs");
    let receipt = block_on(service.erase_user_data("u1", UNLIMITED)).unwrap();
    assert!(receipt.status.complete);
    for bucket in [stores.r2.keys(), replica.keys()] {
        assert!(
            !bucket.iter().any(|key| key.contains("archive_s1_")),
            "{bucket:?}"
        );
        assert!(
            bucket.iter().any(|key| key.contains("archive_s2_")),
            "{bucket:?}"
        );
    }
    // The tombstone is in both.
    assert_eq!(
        stores
            .r2
            .keys()
            .iter()
            .filter(|k| k.starts_with("erasures/"))
            .count(),
        replica
            .keys()
            .iter()
            .filter(|k| k.starts_with("erasures/"))
            .count()
    );

    // Past retention: the sweep deletes s2 in both.
    let retention = service.policy().archive_retention_ms;
    stores.clock.advance_ms(retention + 2 * 86_400_000);
    let run = block_on(service.enforce_retention_policy(UNLIMITED)).unwrap();
    assert!(run.status.complete);
    for bucket in [stores.r2.keys(), replica.keys()] {
        assert!(
            !bucket.iter().any(|key| key.starts_with("conversations/")),
            "{bucket:?}"
        );
    }
}

#[test]
fn a_failed_replica_deletion_is_queued_and_synced() {
    let (stores, replica, service, _) = setup();
    archive_now(&stores, &service, "s1", None, "Hello");
    archive_now(&stores, &service, "s2", None, "Hello");
    let retention = service.policy().archive_retention_ms;
    stores.clock.advance_ms(retention + 2 * 86_400_000);
    let refused = CallFilter::call(Binding::R2Replica, OperationKind::Delete);
    stores.faults.fail_next(1, FailureKind::Rejected, refused);
    let run = block_on(service.enforce_retention_policy(UNLIMITED)).unwrap();
    assert!(run.status.complete);
    assert!(stores
        .r2
        .keys()
        .iter()
        .all(|k| !k.starts_with("conversations/")));
    assert_eq!(replica.keys().len(), 2);
    // One entry for the batch of two.
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 1);
    let (_, health) = replica_health(&service);
    assert_eq!(health["pending"], 2);
    let report = block_on(service.sync_replica(UNLIMITED)).unwrap();
    assert_eq!((report.entries, report.deleted), (1, 2));
    assert!(replica.keys().is_empty());
}

#[test]
fn a_committed_backup_is_copied_packs_first_and_restored_from_the_replica() {
    let (stores, replica, service, lines) = setup();
    archive_now(&stores, &service, "s1", None, "Hello");
    let key = archive_key(&stores, "s1");
    let backup_id = block_on(service.create_backup(&["s1".to_owned()], None, false)).unwrap();
    // Queued as one entry, copied by the sync.
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 1);
    let report = block_on(service.sync_replica(UNLIMITED)).unwrap();
    assert_eq!(report.copied, 2);
    let prefix = format!("backups/{backup_id}/");
    let in_replica: Vec<String> = replica
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    assert_eq!(in_replica.len(), 2, "{in_replica:?}");

    // The primary loses the archive and the backup's pack: restore reads the replica's pack.
    let pack = in_replica
        .iter()
        .find(|k| k.contains("pack"))
        .unwrap()
        .clone();
    block_on(stores.r2.delete(&[key.clone(), pack])).unwrap();
    let restored = block_on(service.restore_from_backup(&backup_id, None)).unwrap();
    assert_eq!(restored, vec!["s1".to_owned()]);
    assert!(stores.r2.keys().contains(&key));
    assert!(lines
        .warnings()
        .iter()
        .any(|line| line["msg"] == "archive served from the replica"
            && line["key"].as_str().unwrap().contains("pack")));

    // A lost manifest too.
    let manifest = format!("{prefix}manifest.json");
    block_on(stores.r2.delete(std::slice::from_ref(&manifest))).unwrap();
    let restored = block_on(service.restore_from_backup(&backup_id, None)).unwrap();
    assert_eq!(restored, vec!["s1".to_owned()]);
}

#[test]
fn without_a_replica_nothing_is_queued_and_sync_is_refused() {
    let stores = MemoryStores::new(T0, 23);
    let service = common::quiet_service(&stores);
    let refused = CallFilter::binding(Binding::R2Replica);
    stores.faults.fail_next(100, FailureKind::Rejected, refused);
    archive_now(&stores, &service, "s1", None, "Hello");
    assert_eq!(kv_keys_under(&stores, REPLICA_PENDING_PREFIX), 0);
    let err = block_on(service.sync_replica(UNLIMITED)).unwrap_err();
    assert_eq!(err.code(), "INVALID_CONFIG");
    let report = serde_json::to_value(block_on(service.health_check())).unwrap();
    assert!(report["details"].get("replica").is_none());
    let key = archive_object_key(&SessionId::parse("s1").unwrap(), T0).unwrap();
    assert!(stores.r2.keys().contains(&key));
}

/// A service with encryption on (one KEK), over `stores`, with `replica`.
fn encrypted_service(stores: &MemoryStores, replica: &MemoryR2, lines: Rc<Lines>) -> Service {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let options = json!({ "encryptionKeys": [{ "id": "k1", "key": key }] }).to_string();
    let options = ServiceOptions::from_json(&options).unwrap();
    service_over(stores, lines, DataRetentionPolicy::default(), options)
        .with_replica(replica.clone())
}

#[test]
fn an_encrypted_archive_and_its_data_key_lost_in_the_primary_are_read_from_the_replica() {
    let stores = MemoryStores::new(T0, 29);
    let replica = stores.replica_bucket();
    let lines = Rc::new(Lines::default());
    let writer = encrypted_service(&stores, &replica, lines.clone());
    archive_now(
        &stores,
        &writer,
        "s1",
        Some("u1"),
        "My card 4242 was charged twice",
    );
    let expected = block_on(writer.retrieve_archived_conversation("s1")).unwrap();
    // The data key was copied too, as stored.
    let keys: Vec<String> = stores.r2.keys();
    assert!(
        keys.iter().any(|key| key.starts_with("keys/users/")),
        "{keys:?}"
    );
    assert_eq!(replica.snapshot(), stores.r2.snapshot());

    // The primary loses the archive and the key; a new service (no cached key) reads both
    // from the replica.
    block_on(stores.r2.delete(&keys)).unwrap();
    let reader = encrypted_service(&stores, &replica, lines.clone());
    assert_eq!(
        block_on(reader.retrieve_archived_conversation("s1")).unwrap(),
        expected
    );
    assert!(lines
        .warnings()
        .iter()
        .any(|line| line["msg"] == "data key served from the replica"));

    // Once the user is erased, the replica's key is not used, even before it is deleted there
    // (its deletion refused, so queued).
    let stored_copy = replica.snapshot();
    let eraser = encrypted_service(&stores, &replica, lines.clone());
    let refused = CallFilter::call(Binding::R2Replica, OperationKind::Delete);
    stores.faults.fail_next(2, FailureKind::Rejected, refused);
    let receipt = block_on(eraser.erase_user_data("u1", UNLIMITED)).unwrap();
    assert!(receipt.status.complete);
    assert!(replica
        .keys()
        .iter()
        .any(|key| key.starts_with("keys/users/")));
    // The erasure's pass over the replica deleted the archive there all the same.
    assert!(!replica
        .keys()
        .iter()
        .any(|key| key.starts_with("conversations/")));
    // An old copy of the archive put back in the primary (by hand, a stale tool) is not read.
    for (key, object) in stored_copy
        .iter()
        .filter(|(key, _)| key.starts_with("conversations/"))
    {
        let options = ObjectPutOptions {
            custom_metadata: object.meta.custom_metadata.clone(),
            sha256: object.meta.sha256.clone(),
            ..ObjectPutOptions::default()
        };
        block_on(stores.r2.put(key, &object.body, options)).unwrap();
        let fresh = encrypted_service(&stores, &replica, lines.clone());
        let served_before = lines.0.borrow().len();
        assert_eq!(block_on(fresh.retrieve_archive(key)).unwrap(), None);
        let after: Vec<String> = lines.0.borrow()[served_before..].to_vec();
        assert!(
            !after
                .iter()
                .any(|line| line.contains("data key served from the replica")),
            "{after:?}"
        );
    }
    // syncReplica then deletes the key the primary no longer has.
    let report = block_on(eraser.sync_replica(UNLIMITED)).unwrap();
    assert!(report.status.complete && report.failed == 0, "{report:?}");
    assert!(!replica
        .keys()
        .iter()
        .any(|key| key.starts_with("keys/users/")));
}

#[test]
fn an_erasure_deletes_the_users_archives_only_the_replica_still_holds() {
    let (stores, replica, service, _) = setup();
    archive_now(&stores, &service, "s1", Some("u1"), "Mine");
    archive_now(&stores, &service, "s2", Some("u2"), "Theirs");
    let key = archive_key(&stores, "s1");
    // The primary lost the archive and every KV entry of it: only the replica knows it.
    block_on(stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    for name in stores.kv.keys() {
        if name.ends_with(":s1") {
            block_on(supportbot_persistence::store::KvStore::delete(
                &stores.kv, &name,
            ))
            .unwrap();
        }
    }
    assert!(replica.keys().contains(&key));
    let receipt = block_on(service.erase_user_data("u1", UNLIMITED)).unwrap();
    assert!(receipt.status.complete);
    assert!(!replica.keys().contains(&key), "{:?}", replica.keys());
    assert!(replica.keys().iter().any(|k| k.contains("archive_s2_")));
}
