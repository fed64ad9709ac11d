//! enforceRetentionPolicy over the in-memory stores: more than 1000 objects and keys of mixed
//! ages, batched R2 deletes, no reads of values, time-boxed runs that resume to the same state,
//! failures that are counted or stop the run.

#[allow(dead_code)]
mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde_json::json;
use supportbot_persistence::keys::{
    archive_index_key, archive_meta_key, archive_object_key, backup_data_key,
    backup_manifest_kv_key, backup_manifest_object_key, BackupId, SessionId,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    DataPersistenceService, RunBudget, ServiceOptions, StopReason,
};
use supportbot_persistence::store::memory::{
    block_on, CallFilter, MemoryKv, MemoryR2, MemoryStores, OperationKind,
};
use supportbot_persistence::store::{
    Binding, FailureKind, KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue,
    ObjectPutOptions, ObjectStore, StoreResult,
};

use common::{all_keys, quiet_service, Discard, Service, DAY, NOW};

const ARCHIVES: usize = 2500;
const INDEXED: usize = 500;

struct World {
    stores: MemoryStores,
    service: Service,
    /// Keys the sweep must delete.
    doomed: BTreeSet<String>,
}

fn session(index: usize) -> SessionId {
    SessionId::parse(&format!("s{index:04}")).unwrap()
}

fn archive_time(index: usize) -> i64 {
    let age = if index % 3 == 0 { 200 * DAY } else { 10 * DAY };
    NOW - age - index as i64 * 1000
}

impl World {
    /// 2 500 archives, four backups, 2 500 KV keys; a third of everything is past its limit.
    fn build(with_missing_archive: bool) -> Self {
        let stores = MemoryStores::new(NOW, 3);
        let service = quiet_service(&stores);
        let mut world = World {
            stores,
            service,
            doomed: BTreeSet::new(),
        };
        for index in 0..ARCHIVES {
            let key = archive_object_key(&session(index), archive_time(index)).unwrap();
            world.r2_put(&key, NOW, &[]);
            let old = index % 3 == 0;
            world.doom(&key, old);
            if index < INDEXED {
                let metadata = Some(json!({ "key": key }));
                let meta_key = archive_meta_key(&session(index));
                let index_key = archive_index_key(archive_time(index), &session(index)).unwrap();
                world.kv_put(&meta_key, metadata.clone());
                world.kv_put(&index_key, metadata);
                world.doom(&meta_key, old);
                world.doom(&index_key, old);
            }
        }
        for (name, made_at, committed, doomed) in [
            ("b_old", NOW - 200 * DAY, true, true),
            ("b_young", NOW - 10 * DAY, true, false),
            ("b_orphan", NOW - 2 * DAY, false, true),
            ("b_running", NOW - 60_000, false, false),
        ] {
            let id = BackupId::parse(name).unwrap();
            world.r2_put(&backup_data_key(&id), made_at, &[]);
            world.doom(&backup_data_key(&id), doomed);
            if committed {
                let created_at = [("createdAt", made_at.to_string())];
                world.r2_put(&backup_manifest_object_key(&id), made_at, &created_at);
                world.doom(&backup_manifest_object_key(&id), doomed);
                let kv_key = backup_manifest_kv_key(&id);
                world.kv_put(&kv_key, Some(json!({ "createdAt": made_at })));
                world.doom(&kv_key, doomed);
            }
        }
        for index in 0..1000 {
            let expired = index % 2 == 0;
            let expires_at = if expired { NOW - DAY } else { NOW + 2 * DAY };
            let key = format!("query:{index:064x}");
            world.kv_put(
                &key,
                Some(json!({"createdAt": expires_at - DAY, "expiresAt": expires_at})),
            );
            world.doom(&key, expired);
        }
        for index in 0..498 {
            let key = format!("embedding:{index:064x}");
            world.kv_put(
                &key,
                Some(json!({"createdAt": NOW, "expiresAt": NOW + 2 * DAY})),
            );
        }
        if with_missing_archive {
            let ghost = SessionId::parse("ghost").unwrap();
            let missing = archive_object_key(&ghost, NOW - 2 * DAY).unwrap();
            world.kv_put(&archive_meta_key(&ghost), Some(json!({ "key": missing })));
            world.doom(&archive_meta_key(&ghost), true);
        }
        world
    }

    fn doom(&mut self, key: &str, doomed: bool) {
        if doomed {
            self.doomed.insert(key.to_owned());
        }
    }

    fn r2_put(&self, key: &str, uploaded_ms: i64, custom: &[(&str, String)]) {
        self.stores.clock.set_ms(uploaded_ms);
        let options = ObjectPutOptions {
            custom_metadata: custom
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect::<BTreeMap<_, _>>(),
            ..ObjectPutOptions::default()
        };
        block_on(self.stores.r2.put(key, b"0123456789", options)).unwrap();
        self.stores.clock.set_ms(NOW);
    }

    fn kv_put(&self, key: &str, metadata: Option<serde_json::Value>) {
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata,
        };
        block_on(self.stores.kv.put(key, b"v", options)).unwrap();
    }

    fn keys(&self) -> BTreeSet<String> {
        all_keys(&self.stores.snapshot())
    }

    fn sweep(&self, budget: RunBudget) -> supportbot_persistence::service::RetentionRun {
        block_on(self.service.enforce_retention_policy(budget)).unwrap()
    }
}

#[test]
fn a_sweep_deletes_exactly_what_is_past_its_limit_across_all_pages() {
    let world = World::build(true);
    let before = world.keys();
    assert!(before.len() > 5000);
    let counts = world.stores.faults.counts();
    let run = world.sweep(RunBudget::default());

    assert!(run.status.complete && run.status.stopped_by.is_none() && !run.status.resumed);
    assert_eq!(run.failed_deletions, 0);
    let expected: BTreeSet<String> = before.difference(&world.doomed).cloned().collect();
    assert_eq!(world.keys(), expected);
    assert_eq!(run.report.deleted.total(), world.doomed.len() as u64);
    assert_eq!(run.report.deleted.archive_past_retention, 834);
    assert_eq!(run.report.deleted.expired_cache_entry, 500);
    assert_eq!(run.report.deleted.dangling_index_entry, 2 * 167 + 1);
    assert_eq!(run.report.deleted.backup_past_retention, 3);
    assert_eq!(run.report.deleted.orphan_backup_data, 1);
    assert_eq!(run.report.bytes_freed, 10 * (834 + 2 + 1));
    assert_eq!(run.report.keys.len(), 1000);
    assert!(run.keys_truncated);

    let cost = world.stores.faults.counts().since(&counts);
    // Only the resume point is read: every decision comes from the listings.
    assert_eq!(cost.of(Binding::Kv, OperationKind::Get), 1);
    assert_eq!(cost.of(Binding::R2, OperationKind::Get), 0);
    // 837 R2 deletions, at most 1000 keys a call (the store refuses more).
    let r2_deletes = cost.of(Binding::R2, OperationKind::Delete);
    assert!((1..=4).contains(&r2_deletes), "{r2_deletes}");
    assert_eq!(
        cost.of(Binding::Kv, OperationKind::Delete),
        500 + 2 * 167 + 1 + 1
    );
    assert_eq!(u64::from(run.status.storage_calls), cost.total());

    // Nothing left to do.
    world.stores.clock.advance_ms(60_000);
    let again = world.sweep(RunBudget::default());
    assert_eq!(again.report.deleted.total(), 0);
}

#[test]
fn time_boxed_runs_resume_to_the_same_final_state() {
    let whole = World::build(false);
    whole.sweep(RunBudget::default());
    let boxed = World::build(false);
    let mut runs = Vec::new();
    loop {
        // Cron runs are minutes apart (KV also allows one write a second per key).
        boxed.stores.clock.advance_ms(60_000);
        let run = boxed.sweep(RunBudget {
            max_storage_calls: Some(50),
            deadline_ms: None,
        });
        assert!(
            run.status.storage_calls <= 50,
            "{}",
            run.status.storage_calls
        );
        assert_eq!(run.failed_deletions, 0);
        let complete = run.status.complete;
        runs.push(run);
        if complete {
            break;
        }
        assert_eq!(
            runs.last().unwrap().status.stopped_by,
            Some(StopReason::CallBudget)
        );
        assert!(runs.len() < 200, "no progress");
    }
    assert!(runs.len() > 5, "{} runs", runs.len());
    assert!(runs[1..].iter().all(|run| run.status.resumed));
    assert_eq!(boxed.keys(), whole.keys());
    assert!(
        !boxed.keys().contains("retention:cursor"),
        "a completed sweep clears it"
    );
    let deleted: u64 = runs.iter().map(|run| run.report.deleted.total()).sum();
    assert_eq!(deleted, boxed.doomed.len() as u64);
}

/// Stores holding only `query:` entries, `expired` of them past their expiry time, followed
/// in key order by `live` ones.
fn query_entries(expired: usize, live: usize) -> (MemoryStores, Service) {
    let stores = MemoryStores::new(NOW, 3);
    let service = quiet_service(&stores);
    for index in 0..expired + live {
        let expires_at = if index < expired {
            NOW - DAY
        } else {
            NOW + DAY
        };
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(json!({"createdAt": expires_at - DAY, "expiresAt": expires_at})),
        };
        let key = format!("query:{index:064x}");
        block_on(stores.kv.put(&key, b"v", options)).unwrap();
    }
    (stores, service)
}

const CRON_BUDGET: RunBudget = RunBudget {
    max_storage_calls: Some(50),
    deadline_ms: None,
};

#[test]
fn a_budgeted_run_lists_whole_kv_pages_of_live_entries() {
    let (stores, service) = query_entries(0, 2500);
    let run = block_on(service.enforce_retention_policy(CRON_BUDGET)).unwrap();
    // 1 get (resume point), 2 KV lists to decide backups (the index, then the KV manifest
    // copies for backups outside it), 2 R2 lists, 3 pages of query:, 1 list of each of the
    // other 6 KV prefixes.
    assert!(run.status.complete, "{run:?}");
    assert_eq!(run.status.storage_calls, 1 + 2 + 2 + 3 + 6);
    assert_eq!(
        stores.faults.counts().of(Binding::Kv, OperationKind::List),
        11
    );
}

#[test]
fn a_run_stopped_mid_page_resumes_at_the_first_key_it_did_not_handle() {
    let (stores, service) = query_entries(300, 200);
    let mut runs = Vec::new();
    loop {
        let lists = stores.faults.counts().of(Binding::Kv, OperationKind::List);
        stores.clock.advance_ms(60_000);
        let run = block_on(service.enforce_retention_policy(CRON_BUDGET)).unwrap();
        assert!(run.status.storage_calls <= 50, "{run:?}");
        let lists = stores.faults.counts().of(Binding::Kv, OperationKind::List) - lists;
        if run.status.complete {
            runs.push(run);
            break;
        }
        // The two listings that decide backups, one listing of the page (the first run also
        // lists the empty `embedding:`), then as many deletions as the budget allows.
        assert_eq!(lists, if runs.is_empty() { 4 } else { 3 });
        assert_eq!(run.status.stopped_by, Some(StopReason::CallBudget));
        let deleted = runs
            .iter()
            .map(|run: &supportbot_persistence::service::RetentionRun| run.report.deleted.total())
            .sum::<u64>()
            + run.report.deleted.total();
        let position = block_on(stores.kv.get("retention:cursor"))
            .unwrap()
            .unwrap();
        let position: serde_json::Value = serde_json::from_slice(&position.value).unwrap();
        assert_eq!(position["kvPrefix"], "query:");
        assert_eq!(position["kvResumeAt"], format!("query:{deleted:064x}"));
        runs.push(run);
        assert!(runs.len() < 20, "no progress");
    }
    // Of the 50 calls, the first run spends 1 on the resume point's get, 6 on lists (the two
    // deciding backups among them) and keeps 1 for its put: 42 deletions. A resumed run lists
    // three times: 45.
    let per_run: Vec<u64> = runs.iter().map(|run| run.report.deleted.total()).collect();
    assert_eq!(per_run, [42, 45, 45, 45, 45, 45, 33]);
    let deleted: u64 = runs.iter().map(|run| run.report.deleted.total()).sum();
    assert_eq!(deleted, 300);
    let left = all_keys(&stores.snapshot());
    assert_eq!(
        left.iter().filter(|key| key.starts_with("query:")).count(),
        200
    );
    assert!(!left.contains("retention:cursor"));
}

#[test]
fn a_resumed_run_does_not_go_back_over_keys_before_its_resume_point() {
    let (stores, service) = query_entries(300, 0);
    // The first deletion fails for good: the key stays for a later sweep, not for the next run
    // of this one, which starts at the first key the stopped run did not handle.
    stores.faults.fail_next(
        1,
        FailureKind::Rejected,
        CallFilter::call(Binding::Kv, OperationKind::Delete),
    );
    let first = block_on(service.enforce_retention_policy(CRON_BUDGET)).unwrap();
    assert_eq!(
        (first.failed_deletions, first.report.deleted.total()),
        (1, 41)
    );
    stores.clock.advance_ms(60_000);
    let second = block_on(service.enforce_retention_policy(CRON_BUDGET)).unwrap();
    assert_eq!(second.report.deleted.total(), 45, "{second:?}");
    let failed = format!("query:{:064x}", 0);
    assert!(all_keys(&stores.snapshot()).contains(&failed));
}

#[test]
fn a_deadline_stops_the_run_and_the_next_one_resumes() {
    let world = World::build(false);
    let run = world.sweep(RunBudget {
        max_storage_calls: None,
        deadline_ms: Some(NOW),
    });
    assert_eq!(run.status.stopped_by, Some(StopReason::Deadline));
    assert!(!run.status.complete);
    assert_eq!(run.report.deleted.total(), 0);
    assert!(world.keys().contains("retention:cursor"));
    world.stores.clock.advance_ms(60_000);
    let run = world.sweep(RunBudget::default());
    assert!(run.status.complete && run.status.resumed);
    assert!(!world.keys().contains("retention:cursor"));
}

#[test]
fn failed_deletions_are_counted_and_an_open_breaker_stops_the_run() {
    let world = World::build(false);
    world.stores.faults.fail_next(
        1,
        FailureKind::Rejected,
        CallFilter::call(Binding::R2, OperationKind::Delete),
    );
    let run = world.sweep(RunBudget::default());
    assert!(run.status.complete);
    assert!(run.failed_deletions > 0);
    assert!(world.keys().iter().any(|key| world.doomed.contains(key)));
    // The next sweep deletes what the failure left.
    world.stores.clock.advance_ms(60_000);
    world.sweep(RunBudget::default());
    assert!(world.keys().iter().all(|key| !world.doomed.contains(key)));

    let world = World::build(false);
    world.stores.faults.fail_next(
        1000,
        FailureKind::Transient,
        CallFilter::call(Binding::R2, OperationKind::List),
    );
    // Four failed attempts: the listing fails, the run stops and keeps its resume point.
    let run = world.sweep(RunBudget::default());
    assert_eq!(run.status.stopped_by, Some(StopReason::StorageError));
    assert_eq!(run.report.deleted.total(), 0);
    assert!(world.keys().contains("retention:cursor"));
    // The fifth consecutive failure opens the R2 breaker; then R2 is not even called.
    world.sweep(RunBudget::default());
    let lists = world
        .stores
        .faults
        .counts()
        .of(Binding::R2, OperationKind::List);
    let run = world.sweep(RunBudget::default());
    assert_eq!(run.status.stopped_by, Some(StopReason::CircuitOpen));
    assert_eq!(
        world
            .stores
            .faults
            .counts()
            .of(Binding::R2, OperationKind::List),
        lists
    );
}

#[test]
fn a_budget_too_small_to_progress_is_refused() {
    let world = World::build(false);
    common::assert_budget_refused(block_on(world.service.enforce_retention_policy(
        RunBudget {
            max_storage_calls: Some(4),
            deadline_ms: None,
        },
    )));
}

/// An R2 object (key, body) waiting to be written.
type PendingObject = Rc<RefCell<Option<(String, Vec<u8>)>>>;

/// KV whose first `list` first writes an R2 object: an archive a restore writes while a sweep
/// is between its R2 listing and its KV pages.
struct RacingKv {
    inner: MemoryKv,
    r2: MemoryR2,
    restore: PendingObject,
}

impl KvStore for RacingKv {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()> {
        self.inner.put(key, value, options).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage> {
        let pending = self.restore.borrow_mut().take();
        if let Some((key, body)) = pending {
            self.r2
                .put(&key, &body, ObjectPutOptions::default())
                .await?;
        }
        self.inner.list(options).await
    }
}

#[test]
fn an_archive_restored_during_a_sweep_keeps_its_index_entries() {
    let stores = MemoryStores::new(NOW, 5);
    let restore: PendingObject = Rc::new(RefCell::new(None));
    let racing = RacingKv {
        inner: stores.kv.clone(),
        r2: stores.r2.clone(),
        restore: Rc::clone(&restore),
    };
    let service = DataPersistenceService::new(
        racing,
        stores.r2.clone(),
        stores.clock.clone(),
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    )
    .unwrap();
    // A session archived 10 days ago (well within the 90-day retention)...
    stores.clock.set_ms(NOW - 10 * DAY);
    let memory = json!({"sessionId": "s1", "messages": [{"id": "m1", "sessionId": "s1",
        "content": "hello", "role": "user", "timestamp": NOW - 10 * DAY}]});
    let session = json!({"id": "s1", "userId": "u1", "status": "ended",
        "createdAt": NOW - 10 * DAY, "lastActivity": NOW - 10 * DAY});
    let key =
        block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    // ...whose object is being restored: absent when the sweep lists R2, present by the time
    // it reaches the KV index entries.
    let object = stores.r2.snapshot()[&key].body.clone();
    block_on(stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    stores.clock.set_ms(NOW);
    *restore.borrow_mut() = Some((key.clone(), object));
    let run = block_on(service.enforce_retention_policy(RunBudget::default())).unwrap();
    assert!(run.status.complete);
    assert_eq!(run.report.deleted.dangling_index_entry, 0, "{run:?}");
    assert!(block_on(service.retrieve_archived_conversation("s1"))
        .unwrap()
        .is_some());
    let listed = block_on(service.list_archived_conversations(Some("u1"), 10, None)).unwrap();
    assert_eq!(listed.archives.len(), 1);
}
