//! Deterministic fault injection over the in-memory stores. For createBackup, restoreFromBackup,
//! enforceRetentionPolicy and importStore, each storage call the operation makes in turn (1) is
//! the last one before the Worker dies, (2) is refused (non-retryable), (3) takes effect but its
//! response is lost, or (4) fails transiently once (so does archiveSegment, the Agents SDK
//! offload); archiveConversation gets (2)–(4) (its crashes are covered by `service_archive.rs`).
//! With the faults cleared afterwards: every acknowledged archive is retrievable and verifies,
//! no backup is visible unless complete, a failed restore leaves every session restored or as
//! it was, retention deletes nothing young and leaves no entry pointing at a missing object,
//! and an import run again completes to exactly what one import stores. The earlier
//! implementation's archives (keys off their recorded time, across a month's end) and backups (R2 manifest.json of its shape) go through the same
//! faults when read, indexed and restored. Also: flipped bytes are CHECKSUM_MISMATCH, never
//! wrong data, and bad input is refused with its code without losing anything stored. With a
//! replica bucket, every call of an archive (its copy and queue entry included), of a retention
//! sweep and of an erasure (the replica's deletions included), and of `syncReplica`, goes
//! through (1)–(4): acknowledged archives are readable, what was deleted is gone from both
//! buckets, and the queue converges to a replica that serves every archive alone.
//!
//! Needs the `conformance` feature (the legacy fixture writers live in
//! `service::legacy_suite`): `cargo test --all-features`.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::keys::{
    backup_manifest_object_key, backup_pack_key, BackupId, ARCHIVE_INDEX_PREFIX,
    ARCHIVE_META_PREFIX, BACKUP_MANIFEST_PREFIX, REPLICA_PENDING_PREFIX, USER_INDEX_PREFIX,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::legacy_suite::{
    write_legacy_archive, write_legacy_backup, LegacyArchive, LegacyBackupEntry, Readings,
};
use supportbot_persistence::service::{
    PackBounds, RetentionRun, RunBudget, Sample, ServiceOptions, StopReason, VerificationReport,
    VerifyOptions, INDEX_LAG_MS, MAX_CACHE_TEXT_BYTES, MIN_MIGRATION_CALLS,
    REPLICA_LAG_DEGRADED_MS,
};
use supportbot_persistence::store::memory::{
    block_on, CallFilter, Faults, MemoryR2, MemoryStores, OperationKind, StoreSnapshot,
};
use supportbot_persistence::store::{
    Binding, FailureKind, KvListOptions, KvPutOptions, KvStore, ObjectStore,
};

use common::{
    all_keys, conversation, lose_all_archives, memory_at, quiet_service, service_over, session_at,
    Discard, Service, DAY, NOW,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Every world starts from this seed, so every run is the same run.
const SEED: u64 = 0x5eed;
/// Longer than any backoff, the breaker's open time (30 s) and KV's one-write-a-second rule.
const RECOVERY_MS: u64 = 120_000;

/// One fault planned for the storage call numbered `n` from the start of an operation
/// (1-based; retries are calls too, so a fault shifts the numbers of the calls after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The Worker dies after the operation's first `n` calls: every later call fails.
    CrashAfter(u64),
    /// Call `n` is refused: not retryable, nothing written.
    Reject(u64),
    /// Call `n` takes effect, but the caller sees a network error.
    LoseResponse(u64),
    /// Call `n` fails with a 503 once; the retry goes through.
    FailOnce(u64),
}

impl Fault {
    /// Every fault of every kind for an operation that makes `calls` calls when nothing fails.
    fn all(calls: u64, with_crashes: bool) -> Vec<Fault> {
        let crashes = (0..=calls).filter(|_| with_crashes).map(Fault::CrashAfter);
        let others = (1..=calls)
            .flat_map(|n| [Fault::Reject(n), Fault::LoseResponse(n), Fault::FailOnce(n)]);
        crashes.chain(others).collect()
    }

    /// Plans this fault relative to the calls made so far.
    fn plan(self, faults: &Faults) {
        let base = faults.calls();
        match self {
            Fault::CrashAfter(n) => faults.crash_after(base + n),
            Fault::Reject(n) => faults.fail_call(base + n, FailureKind::Rejected),
            Fault::LoseResponse(n) => faults.lose_response_of_call(base + n),
            Fault::FailOnce(n) => faults.fail_call(base + n, FailureKind::Transient),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashAfter(n) => write!(f, "crash after call {n}"),
            Fault::Reject(n) => write!(f, "call {n} rejected"),
            Fault::LoseResponse(n) => write!(f, "response of call {n} lost"),
            Fault::FailOnce(n) => write!(f, "call {n} failing transiently once"),
        }
    }
}

/// When the conversations archived here took place: 300 days before `NOW`, one second long.
const TALKED_AT: [i64; 2] = [NOW - 300 * DAY, NOW - 300 * DAY + 1_000];

fn memory(sid: &str, text: &str) -> Value {
    memory_at(sid, text, TALKED_AT)
}

fn session(sid: &str, user: Option<&str>) -> Value {
    session_at(sid, user, TALKED_AT[0], TALKED_AT[1])
}

/// What a caller can see of one session: what retrieving it gives (or its error code), and
/// every listing entry of it (global and per user).
#[derive(Debug, Clone, PartialEq)]
struct SessionView {
    retrieved: Result<Option<Value>, &'static str>,
    listed: Vec<Value>,
}

/// The stores, a service over them, and what the service acknowledged.
struct World {
    stores: MemoryStores,
    service: Service,
    /// The replica bucket, in a world whose service has one.
    replica: Option<MemoryR2>,
    /// The conversation each acknowledged archive holds, by session (newest acknowledged).
    acknowledged: BTreeMap<String, Value>,
    /// Users whose listings are checked.
    users: BTreeSet<String>,
}

impl World {
    fn at(now_ms: i64) -> Self {
        let stores = MemoryStores::new(now_ms, SEED);
        let service = quiet_service(&stores);
        Self::over(stores, service)
    }

    /// A world whose service applies `policy`.
    fn with_policy(now_ms: i64, policy: DataRetentionPolicy) -> Self {
        let stores = MemoryStores::new(now_ms, SEED);
        let service = service_over(&stores, Rc::new(Discard), policy, Default::default());
        Self::over(stores, service)
    }

    /// A world whose service puts one archive in each backup pack.
    fn one_archive_per_pack(now_ms: i64) -> Self {
        let stores = MemoryStores::new(now_ms, SEED);
        let options = ServiceOptions {
            backup_pack: PackBounds {
                max_bytes: 1 << 20,
                max_sessions: 1,
            },
            ..ServiceOptions::default()
        };
        let service = service_over(&stores, Rc::new(Discard), Default::default(), options);
        Self::over(stores, service)
    }

    /// Asserts that the visible backup `id` has its `packs` packs (format 3) and, once every
    /// archive is lost, restores the three sessions of `backup_world` as acknowledged, each
    /// archive byte for byte as it was stored.
    fn assert_backup_restores(&self, context: &str, id: &str, packs: u32) {
        let stored = self.stores.snapshot();
        for index in 0..packs {
            let key = backup_pack_key(&BackupId::parse(id).unwrap(), index);
            assert!(stored.r2.contains_key(&key), "{context}: no {key}");
        }
        self.lose_all_archives();
        self.stores.clock.advance_ms(RECOVERY_MS);
        let restored = self.restore(id).unwrap();
        assert_eq!(restored, ["s-1", "s-2", "s-3"], "{context}");
        self.assert_acknowledged_retrievable(&format!("{context}, restored"));
        let after = self.stores.snapshot();
        for (key, object) in stored.r2.range("conversations/".to_owned()..) {
            let back = after.r2.get(key).map(|restored| &restored.body);
            assert!(back == Some(&object.body), "{context}: {key} not as stored");
        }
    }

    /// A world whose service has a replica bucket.
    fn replicated(now_ms: i64) -> Self {
        let stores = MemoryStores::new(now_ms, SEED);
        let replica = stores.replica_bucket();
        let service = quiet_service(&stores).with_replica(replica.clone());
        World {
            replica: Some(replica),
            ..Self::over(stores, service)
        }
    }

    fn over(stores: MemoryStores, service: Service) -> Self {
        World {
            stores,
            service,
            replica: None,
            acknowledged: BTreeMap::new(),
            users: BTreeSet::new(),
        }
    }

    fn try_archive(
        &mut self,
        sid: &str,
        user: Option<&str>,
        text: &str,
    ) -> supportbot_persistence::Result<String> {
        let (m, s) = (memory(sid, text), session(sid, user));
        if let Some(user) = user {
            self.users.insert(user.to_owned());
        }
        let result = block_on(
            self.service
                .archive_conversation(&m.to_string(), &s.to_string()),
        );
        if result.is_ok() {
            self.acknowledged
                .insert(sid.to_owned(), conversation(&m, &s));
        }
        result
    }

    /// Archives, then moves the clock on so the next write is a new archive time and KV's
    /// one-write-a-second-per-key rule holds.
    fn archive(&mut self, sid: &str, user: Option<&str>, text: &str) -> String {
        let key = self.try_archive(sid, user, text).unwrap();
        self.stores.clock.advance_ms(1_500);
        key
    }

    fn retrieve(&self, sid: &str) -> supportbot_persistence::Result<Option<Value>> {
        block_on(self.service.retrieve_archived_conversation(sid))
            .map(|found| found.map(|text| serde_json::from_str(&text).unwrap()))
    }

    fn backup(&self, sids: &[&str]) -> supportbot_persistence::Result<String> {
        let ids: Vec<String> = sids.iter().map(|sid| (*sid).to_owned()).collect();
        block_on(self.service.create_backup(&ids, None, false))
    }

    fn restore(&self, id: &str) -> supportbot_persistence::Result<Vec<String>> {
        block_on(self.service.restore_from_backup(id, None))
    }

    fn sweep(&self) -> RetentionRun {
        block_on(self.service.enforce_retention_policy(RunBudget::default())).unwrap()
    }

    /// Clears the faults and waits out backoffs, open breakers and KV's write-rate window.
    fn recover(&self) {
        self.stores.faults.clear();
        self.stores.clock.advance_ms(RECOVERY_MS);
    }

    /// Calls one operation makes when nothing fails, measured on a world built the same way.
    fn calls_of(&self, operation: impl FnOnce(&World)) -> u64 {
        let before = self.stores.faults.calls();
        operation(self);
        self.stores.faults.calls() - before
    }

    fn view(&self, sid: &str) -> SessionView {
        SessionView {
            retrieved: self.retrieve(sid).map_err(|err| err.code()),
            listed: self
                .listed()
                .into_iter()
                .filter(|summary| summary["sessionId"] == sid)
                .collect(),
        }
    }

    /// Every acknowledged archive is retrieved exactly as it was archived.
    fn assert_acknowledged_retrievable(&self, context: &str) {
        for (sid, expected) in &self.acknowledged {
            let retrieved = self.retrieve(sid);
            assert_eq!(
                retrieved.as_ref().map_err(|err| err.to_string()),
                Ok(&Some(expected.clone())),
                "{context}: acknowledged archive of {sid}"
            );
        }
    }

    /// Every session a listing shows can be retrieved.
    fn assert_listed_retrievable(&self, context: &str) {
        for summary in self.listed() {
            let sid = summary["sessionId"].as_str().unwrap();
            assert!(
                matches!(self.retrieve(sid), Ok(Some(_))),
                "{context}: {sid} is listed but not retrievable"
            );
        }
    }

    /// Every entry of the global listing and of each known user's listing.
    fn listed(&self) -> Vec<Value> {
        let users = self.users.iter().map(|user| Some(user.as_str()));
        [None]
            .into_iter()
            .chain(users)
            .flat_map(|user| {
                let listing =
                    block_on(self.service.list_archived_conversations(user, 1000, None)).unwrap();
                assert!(listing.list_complete);
                listing.archives
            })
            .collect()
    }

    /// Lists every `archive_meta:`, `user_archives:`, `archive_index:` and `backup_manifest:`
    /// entry through the KV port and heads the R2 object each points at: none may be missing.
    fn assert_no_entry_points_at_a_missing_object(&self, context: &str) {
        for prefix in [
            ARCHIVE_META_PREFIX,
            USER_INDEX_PREFIX,
            ARCHIVE_INDEX_PREFIX,
            BACKUP_MANIFEST_PREFIX,
        ] {
            let mut cursor = None;
            loop {
                let page = block_on(self.stores.kv.list(KvListOptions {
                    prefix: Some(prefix.to_owned()),
                    cursor: cursor.take(),
                    limit: None,
                }))
                .unwrap();
                for entry in &page.keys {
                    let pointed = match entry.name.strip_prefix(BACKUP_MANIFEST_PREFIX) {
                        Some(id) => backup_manifest_object_key(&BackupId::parse(id).unwrap()),
                        None => entry.metadata.as_ref().unwrap()["key"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    };
                    let head = block_on(self.stores.r2.head(&pointed)).unwrap();
                    assert!(
                        head.is_some(),
                        "{context}: {} points at missing {pointed}",
                        entry.name
                    );
                }
                if page.list_complete {
                    break;
                }
                cursor = page.cursor;
            }
        }
    }

    /// Deletes every archive object and every archive KV entry (not storage calls that fail).
    fn lose_all_archives(&self) {
        lose_all_archives(&self.stores);
    }

    fn writes(&self) -> u64 {
        let counts = self.stores.faults.counts();
        [Binding::Kv, Binding::R2]
            .iter()
            .map(|binding| {
                counts.of(*binding, OperationKind::Put) + counts.of(*binding, OperationKind::Delete)
            })
            .sum()
    }
}

/// Backup ids that have a manifest in R2.
fn committed_backups(snapshot: &StoreSnapshot) -> BTreeSet<String> {
    snapshot
        .r2
        .keys()
        .filter_map(|key| {
            key.strip_prefix("backups/")?
                .strip_suffix("/manifest.json")
                .map(str::to_owned)
        })
        .collect()
}

/// Keys added or changed between two snapshots.
fn changed_keys(before: &StoreSnapshot, after: &StoreSnapshot) -> BTreeSet<String> {
    let kv = after
        .kv
        .iter()
        .filter(|(key, value)| before.kv.get(*key) != Some(value))
        .map(|(key, _)| key.clone());
    let r2 = after
        .r2
        .iter()
        .filter(|(key, object)| before.r2.get(*key) != Some(object))
        .map(|(key, _)| key.clone());
    kv.chain(r2).collect()
}

// ---------------------------------------------------------------------------------------------
// archiveConversation

/// Two sessions archived before; then `s-1` is archived again (3 KV puts with its user, 1 R2
/// put).
fn archive_world() -> World {
    let mut world = World::at(NOW);
    world.archive("s-1", Some("u-1"), "first version");
    world.archive("s-2", None, "other session");
    world
}

/// Rejected, lost and once-failing calls of an archive: acknowledged archives (before and now)
/// stay retrievable, a refused call is an error, a transient one is retried, and whatever a
/// listing shows can be retrieved.
#[test]
fn archive_faults_lose_nothing_acknowledged() {
    let calls = {
        let mut world = archive_world();
        let before = world.stores.faults.calls();
        world.try_archive("s-1", Some("u-1"), "second").unwrap();
        world.stores.faults.calls() - before
    };
    assert_eq!(calls, 4);
    for fault in Fault::all(calls, false) {
        let mut world = archive_world();
        let earlier = world.acknowledged.clone();
        let before = world.stores.snapshot();
        fault.plan(&world.stores.faults);
        let result = world.try_archive("s-1", Some("u-1"), "second version");
        match fault {
            Fault::Reject(_) => {
                assert_eq!(
                    result.as_ref().unwrap_err().code(),
                    "STORAGE_UNAVAILABLE",
                    "{fault}"
                )
            }
            Fault::FailOnce(_) => assert!(result.is_ok(), "{fault}: {result:?}"),
            _ => {}
        }
        world.recover();
        let context = format!("{fault} ({result:?})");
        assert_r2_objects_kept(&before, &world, &context);
        if result.is_err() {
            // The failed attempt may have reached archive_meta: then its (complete) archive is
            // the newest; otherwise the acknowledged one still is.
            let attempted = conversation(
                &memory("s-1", "second version"),
                &session("s-1", Some("u-1")),
            );
            let retrieved = world.retrieve("s-1").unwrap();
            assert!(
                retrieved == Some(earlier["s-1"].clone()) || retrieved == Some(attempted),
                "{context}: {retrieved:?}"
            );
            world.acknowledged.remove("s-1");
        }
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
    }
}

/// Runs `syncReplica` until a run completes (each run within 20 calls), then checks that the
/// queue is empty and that the replica holds every acknowledged archive as the primary does,
/// and that each stays retrievable from the replica alone once the primary's copy is gone.
fn assert_replica_converges(world: &World, context: &str) {
    let replica = world.replica.as_ref().unwrap();
    let budget = RunBudget {
        max_storage_calls: Some(20),
        deadline_ms: None,
    };
    for run in 0.. {
        assert!(run < 20, "{context}: syncReplica never completes");
        let report = block_on(world.service.sync_replica(budget)).unwrap();
        if report.status.complete && report.failed == 0 {
            break;
        }
    }
    let queue = world.stores.kv.snapshot();
    let pending: Vec<&String> = queue
        .keys()
        .filter(|key| key.starts_with(REPLICA_PENDING_PREFIX))
        .collect();
    assert!(pending.is_empty(), "{context}: still queued {pending:?}");
    let primary = world.stores.r2.snapshot();
    let copies = replica.snapshot();
    let acknowledged: Vec<String> = world
        .acknowledged
        .keys()
        .map(|sid| {
            let meta = &world.stores.kv.snapshot()[&format!("archive_meta:{sid}")];
            let record: Value = serde_json::from_slice(&meta.value).unwrap();
            record["key"].as_str().unwrap().to_owned()
        })
        .collect();
    for key in &acknowledged {
        let copy = copies.get(key).map(|object| &object.body);
        assert!(
            copy.is_some() && copy == primary.get(key).map(|object| &object.body),
            "{context}: {key} not copied as stored"
        );
    }
    block_on(world.stores.r2.delete(&acknowledged)).unwrap();
    world.assert_acknowledged_retrievable(&format!("{context}, from the replica"));
}

/// Every storage call of an archive with a replica bucket crashing, refused, lost or failing
/// once (the replica's copy and its queue entry included): what was acknowledged is
/// retrievable, and after `syncReplica` the replica holds it as stored and serves it alone.
#[test]
fn replicated_archive_faults_lose_nothing_and_the_replica_converges() {
    let replicated_world = || {
        let mut world = World::replicated(NOW);
        world.archive("s-1", Some("u-1"), "first version");
        world
    };
    let calls = {
        let mut world = replicated_world();
        let before = world.stores.faults.calls();
        world.try_archive("s-2", Some("u-1"), "second").unwrap();
        world.stores.faults.calls() - before
    };
    // The primary put, its copy, archive_meta and two index entries.
    assert_eq!(calls, 5);
    for fault in Fault::all(calls, true) {
        let mut world = replicated_world();
        fault.plan(&world.stores.faults);
        let result = world.try_archive("s-2", Some("u-1"), "second version");
        if matches!(fault, Fault::FailOnce(_)) {
            assert!(result.is_ok(), "{fault}: {result:?}");
        }
        world.recover();
        let context = format!("{fault} ({result:?})");
        world.assert_acknowledged_retrievable(&context);
        assert_replica_converges(&world, &context);
    }
}

/// Three archives whose copies failed (queued), then every storage call of `syncReplica`
/// crashing, refused, lost or failing once: later runs settle the queue and the replica serves
/// every archive as stored.
#[test]
fn sync_replica_faults_converge() {
    let queued_world = || {
        let mut world = World::replicated(NOW);
        let refused = CallFilter::call(Binding::R2Replica, OperationKind::Put);
        world
            .stores
            .faults
            .fail_next(3, FailureKind::Rejected, refused);
        for sid in ["s-1", "s-2", "s-3"] {
            world.archive(sid, None, "queued copy");
        }
        world.stores.faults.clear();
        world
    };
    let calls = {
        let world = queued_world();
        world.calls_of(|world| {
            let report = block_on(world.service.sync_replica(RunBudget::default())).unwrap();
            assert_eq!((report.copied, report.entries), (3, 3));
        })
    };
    // 1 resume point read, 1 list, 3 × (get, put, queue delete).
    assert_eq!(calls, 11);
    for fault in Fault::all(calls, true) {
        let world = queued_world();
        fault.plan(&world.stores.faults);
        let result = block_on(world.service.sync_replica(RunBudget::default()));
        world.recover();
        assert_replica_converges(&world, &format!("{fault} ({result:?})"));
    }
}

/// Keys of both buckets (primary, replica) that hold one of `sids`' archives.
fn archives_of(world: &World, sids: &[&str]) -> Vec<String> {
    let replica = world.replica.as_ref().unwrap();
    let primary = world
        .stores
        .r2
        .keys()
        .into_iter()
        .map(|key| format!("primary {key}"));
    let copies = replica
        .keys()
        .into_iter()
        .map(|key| format!("replica {key}"));
    primary
        .chain(copies)
        .filter(|key| {
            sids.iter()
                .any(|sid| key.contains(&format!("archive_{sid}_")))
        })
        .collect()
}

/// Two archives past retention and one within it, with a replica bucket.
fn replicated_retention_world() -> World {
    let mut world = World::replicated(NOW - 100 * DAY);
    world.archive("s-old-1", None, "old");
    world.archive("s-old-2", Some("u-1"), "old");
    world.stores.clock.advance_ms(100 * DAY as u64);
    world.archive("s-young", Some("u-1"), "young");
    world
}

/// Every call of a retention sweep with a replica bucket (the replica's deletion, sent first,
/// and its queue entry included) crashing, refused, lost or failing once: after the next
/// sweeps and `syncReplica`, nothing past retention is in either bucket, and the young archive
/// is in both and served by the replica alone.
#[test]
fn replicated_retention_faults_delete_in_both_buckets() {
    let calls = replicated_retention_world().calls_of(|world| {
        assert!(world.sweep().status.complete);
    });
    for fault in Fault::all(calls, true) {
        let mut world = replicated_retention_world();
        fault.plan(&world.stores.faults);
        let first = block_on(world.service.enforce_retention_policy(RunBudget::default()));
        world.recover();
        let context = format!("{fault} ({:?})", first.map(|run| run.status));
        for sweep in 0.. {
            assert!(sweep < 5, "{context}: the sweep never completes");
            if world.sweep().status.complete {
                break;
            }
        }
        world.acknowledged.retain(|sid, _| sid == "s-young");
        world.assert_acknowledged_retrievable(&context);
        assert_replica_converges(&world, &context);
        let left = archives_of(&world, &["s-old-1", "s-old-2"]);
        assert!(left.is_empty(), "{context}: {left:?}");
    }
}

/// A user with two archives and another with one, with a replica bucket.
fn replicated_erasure_world() -> World {
    let mut world = World::replicated(NOW);
    world.archive("s-1", Some("u-1"), "mine");
    world.archive("s-2", Some("u-1"), "mine too");
    world.archive("s-3", Some("u-2"), "theirs");
    world
}

/// Every call of an erasure with a replica bucket crashing, refused, lost or failing once:
/// the next runs and `syncReplica` leave nothing of the user in either bucket (their
/// tombstone aside, which both hold), and the other user's archive in both.
#[test]
fn replicated_erasure_faults_leave_nothing_of_the_user_in_either_bucket() {
    let erase =
        |world: &World| block_on(world.service.erase_user_data("u-1", RunBudget::default()));
    let calls = replicated_erasure_world().calls_of(|world| {
        assert!(erase(world).unwrap().status.complete);
    });
    for fault in Fault::all(calls, true) {
        let mut world = replicated_erasure_world();
        fault.plan(&world.stores.faults);
        let first = erase(&world);
        world.recover();
        let context = format!("{fault} ({:?})", first.map(|receipt| receipt.status));
        for run in 0.. {
            assert!(run < 5, "{context}: the erasure never completes");
            if erase(&world).unwrap().status.complete {
                break;
            }
        }
        world.acknowledged.retain(|sid, _| sid == "s-3");
        assert_replica_converges(&world, &context);
        let left = archives_of(&world, &["s-1", "s-2"]);
        assert!(left.is_empty(), "{context}: {left:?}");
        let tombstones = |keys: Vec<String>| {
            keys.into_iter()
                .filter(|key| key.starts_with("erasures/"))
                .count()
        };
        let replica = world.replica.as_ref().unwrap();
        assert_eq!(tombstones(world.stores.r2.keys()), 1, "{context}");
        assert_eq!(tombstones(replica.keys()), 1, "{context}");
    }
}

/// UIMessages of one offloaded segment (the Agents SDK integration).
fn segment_messages(from: usize, to: usize) -> Value {
    (from..to)
        .map(|i| json!({"id": format!("m{i}"), "role": "user", "parts": [{"type": "text", "text": format!("m {i}")}]}))
        .collect()
}

/// Every R2 object stored `before` a faulted call is there still, byte for byte, superseded
/// or not.
fn assert_r2_objects_kept(before: &StoreSnapshot, world: &World, context: &str) {
    let after = world.stores.snapshot();
    for (key, object) in &before.r2 {
        assert_eq!(after.r2.get(key), Some(object), "{context}: {key}");
    }
}

fn segment_by_key(world: &World, key: &str) -> Option<Value> {
    block_on(world.service.retrieve_ui_messages_by_key(key))
        .unwrap()
        .map(|text| serde_json::from_str(&text).unwrap())
}

/// Every fault of every kind, crashes included, at each storage call of a segment write
/// (`archiveSegment`, the offload of `supportbot-persistence/agents`): an acknowledged segment
/// reads back whole by its key, the earlier segment and archives stay byte for byte, a refused
/// call is an error (the agent keeps the messages), a transient one is retried, and no entry
/// points at a missing object.
#[test]
fn segment_faults_lose_nothing_acknowledged() {
    let segment_world = || {
        let world = archive_world();
        let first = block_on(world.service.archive_segment(
            "s-1",
            1,
            &segment_messages(0, 4).to_string(),
        ))
        .unwrap();
        world.stores.clock.advance_ms(1_500);
        (world, first)
    };
    let calls = {
        let (world, _) = segment_world();
        world.calls_of(|world| {
            block_on(
                world
                    .service
                    .archive_segment("s-1", 2, &segment_messages(4, 9).to_string()),
            )
            .unwrap();
        })
    };
    assert_eq!(calls, 3);
    for fault in Fault::all(calls, true) {
        let (world, first) = segment_world();
        let before = world.stores.snapshot();
        fault.plan(&world.stores.faults);
        let result = block_on(world.service.archive_segment(
            "s-1",
            2,
            &segment_messages(4, 9).to_string(),
        ));
        match fault {
            Fault::Reject(_) | Fault::CrashAfter(_) | Fault::LoseResponse(_) if result.is_err() => {
            }
            Fault::FailOnce(_) => assert!(result.is_ok(), "{fault}: {result:?}"),
            Fault::Reject(_) => panic!("{fault}: a refused call was acknowledged: {result:?}"),
            _ => {}
        }
        world.recover();
        let context = format!("{fault} ({result:?})");
        assert_r2_objects_kept(&before, &world, &context);
        if let Ok(key) = &result {
            assert_eq!(
                segment_by_key(&world, key),
                Some(segment_messages(4, 9)),
                "{context}"
            );
        }
        assert_eq!(
            segment_by_key(&world, &first),
            Some(segment_messages(0, 4)),
            "{context}"
        );
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
    }
}

// ---------------------------------------------------------------------------------------------
// createBackup

const BACKED_UP: [&str; 4] = ["s-1", "s-2", "s-3", "never-archived"];

fn backup_world() -> World {
    let mut world = World::at(NOW);
    world.archive("s-1", Some("u-1"), "billing question");
    world.archive("s-2", None, "login trouble");
    world.archive("s-3", Some("u-2"), "refund please");
    world
}

/// A createBackup of three packs failing at any call shows no backup, or one whose every pack
/// is there and restores completely: the manifest, written last, is the commit point.
#[test]
fn create_backup_faults_across_packs_never_expose_an_incomplete_backup() {
    let world_in_packs = || {
        let mut world = World::one_archive_per_pack(NOW);
        world.archive("s-1", Some("u-1"), "billing question");
        world.archive("s-2", None, "login trouble");
        world.archive("s-3", Some("u-2"), "refund please");
        world
    };
    let calls = world_in_packs().calls_of(|world| {
        world.backup(&BACKED_UP).unwrap();
    });
    // 3 × (KV get + R2 get), 1 KV get for the session without archive, 4 R2 puts, 2 KV puts.
    assert_eq!(calls, 13);
    for fault in Fault::all(calls, true) {
        let world = world_in_packs();
        fault.plan(&world.stores.faults);
        let result = world.backup(&BACKED_UP);
        world.recover();
        let context = format!("{fault} ({result:?})");
        let after = world.stores.snapshot();
        let visible = committed_backups(&after);
        if let Ok(id) = &result {
            assert_eq!(visible, BTreeSet::from([id.clone()]), "{context}");
        }
        assert!(visible.len() <= 1, "{context}: {visible:?}");
        for id in &visible {
            world.assert_backup_restores(&context, id, 3);
        }
    }
}

/// A failed createBackup shows no backup, or one that restores completely; an acknowledged one
/// always restores; archives are untouched either way.
#[test]
fn create_backup_faults_never_expose_an_incomplete_backup() {
    let calls = backup_world().calls_of(|world| {
        world.backup(&BACKED_UP).unwrap();
    });
    // 3 × (KV get + R2 get), 1 KV get for the session without archive, 2 R2 puts, 2 KV puts
    // (after the manifest, the commit point: their failures are logged, not returned).
    assert_eq!(calls, 11);
    for fault in Fault::all(calls, true) {
        let world = backup_world();
        let before = world.stores.snapshot();
        fault.plan(&world.stores.faults);
        let result = world.backup(&BACKED_UP);
        if matches!(fault, Fault::FailOnce(_) | Fault::CrashAfter(9..)) {
            assert!(result.is_ok(), "{fault}: {result:?}");
        }
        world.recover();
        let context = format!("{fault} ({result:?})");
        let after = world.stores.snapshot();
        // Archives untouched.
        for (key, value) in before.kv.iter() {
            assert_eq!(after.kv.get(key), Some(value), "{context}: {key}");
        }
        assert!(
            before
                .r2
                .iter()
                .all(|(key, o)| after.r2.get(key) == Some(o)),
            "{context}"
        );
        world.assert_acknowledged_retrievable(&context);

        let visible = committed_backups(&after);
        match &result {
            Ok(id) => assert_eq!(visible, BTreeSet::from([id.clone()]), "{context}"),
            Err(err) => {
                assert!(
                    ["STORAGE_UNAVAILABLE", "CIRCUIT_OPEN"].contains(&err.code()),
                    "{context}"
                );
                assert!(visible.len() <= 1, "{context}: {visible:?}");
            }
        }
        // Whatever is visible is complete: its data is there and it restores every session.
        world.assert_no_entry_points_at_a_missing_object(&context);
        for id in &visible {
            world.assert_backup_restores(&context, id, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// restoreFromBackup

/// s-1..s-3 backed up; then s-4 archived, s-1 lost entirely and s-2's object damaged.
fn restore_world() -> (World, String) {
    let mut world = backup_world();
    let id = world.backup(&["s-1", "s-2", "s-3"]).unwrap();
    world.stores.clock.advance_ms(1_500);
    world.archive("s-4", Some("u-1"), "after the backup");
    common::lose_where(
        &world.stores,
        |key| key.contains("archive_s-1_"),
        |key| key.ends_with(":s-1"),
    );
    let snapshot = world.stores.snapshot();
    let s2 = snapshot
        .r2
        .keys()
        .find(|key| key.contains("archive_s-2_"))
        .unwrap();
    assert!(world.stores.r2.corrupt(s2, 30));
    world.stores.clock.advance_ms(RECOVERY_MS);
    (world, id)
}

const RESTORED: [&str; 3] = ["s-1", "s-2", "s-3"];
const RESTORED_TEXTS: [&str; 3] = ["billing question", "login trouble", "refund please"];
const RESTORED_USERS: [Option<&str>; 3] = [Some("u-1"), None, Some("u-2")];

/// Runs a restore under every fault and checks what is left. With `listings`, a session whose
/// restore failed must look exactly as before in listings too, not only in `retrieve`.
fn check_restore_faults(listings: bool) {
    let (world, id) = restore_world();
    // s-1 is gone, s-2 is damaged: that is the state a failed restore may leave.
    assert_eq!(world.view("s-1").retrieved, Ok(None));
    assert_eq!(world.view("s-2").retrieved, Err("CHECKSUM_MISMATCH"));
    let calls = world.calls_of(|world| {
        world.restore(&id).unwrap();
    });
    // 2 R2 gets; 1 R2 list of the erasure tombstones (two users); s-1: R2 put, KV get, 3 KV
    // puts; s-2: R2 put, get, put, KV get, 1 index get; s-3: R2 put, get, KV get, 2 index gets
    // (archive_meta of s-2 and s-3 already points at the restored key, so only missing index
    // entries would be written).
    assert_eq!(calls, 18);
    let all_restored: Vec<String> = RESTORED.map(String::from).to_vec();
    for fault in Fault::all(calls, true) {
        let (mut world, id) = restore_world();
        let before: BTreeMap<&str, SessionView> =
            RESTORED.iter().map(|sid| (*sid, world.view(sid))).collect();
        fault.plan(&world.stores.faults);
        let result = world.restore(&id);
        if matches!(fault, Fault::FailOnce(_)) || fault == Fault::CrashAfter(calls) {
            assert_eq!(result.as_ref().ok(), Some(&all_restored), "{fault}");
        }
        world.recover();
        let context = format!("{fault} ({result:?})");
        // s-4 was archived after the backup and never touched; s-3 was intact throughout.
        world
            .acknowledged
            .retain(|sid, _| sid == "s-4" || sid == "s-3");
        world.assert_acknowledged_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
        for (index, sid) in RESTORED.iter().enumerate() {
            let view = world.view(sid);
            let restored = conversation(
                &memory(sid, RESTORED_TEXTS[index]),
                &session(sid, RESTORED_USERS[index]),
            );
            if result.is_ok() {
                assert_eq!(view.retrieved, Ok(Some(restored)), "{context}: {sid}");
            } else if listings {
                assert!(
                    view == before[sid] || view.retrieved == Ok(Some(restored)),
                    "{context}: {sid} is half restored: {view:?}, was {:?}",
                    before[sid]
                );
            } else {
                assert!(
                    view.retrieved == before[sid].retrieved || view.retrieved == Ok(Some(restored)),
                    "{context}: {sid} retrieves {:?}, was {:?}",
                    view.retrieved,
                    before[sid].retrieved
                );
            }
        }

        assert_eq!(
            world.restore(&id).unwrap(),
            all_restored,
            "{context}, rerun"
        );
        for (index, sid) in RESTORED.iter().enumerate() {
            let restored = conversation(
                &memory(sid, RESTORED_TEXTS[index]),
                &session(sid, RESTORED_USERS[index]),
            );
            assert_eq!(
                world.view(sid).retrieved,
                Ok(Some(restored)),
                "{context}: {sid}"
            );
        }
        world.assert_listed_retrievable(&context);
        let first = world.stores.snapshot();
        world.stores.clock.advance_ms(RECOVERY_MS);
        assert_eq!(
            world.restore(&id).unwrap(),
            all_restored,
            "{context}, again"
        );
        assert_eq!(
            world.stores.snapshot(),
            first,
            "{context}: second rerun wrote"
        );
    }
}

/// A failed restore loses nothing and never makes a session retrieve anything but its previous
/// state or its verified backup; restoring again completes, and a further restore changes
/// nothing.
#[test]
fn restore_faults_leave_sessions_retrievable_or_as_they_were_and_a_rerun_completes() {
    check_restore_faults(false);
}

/// The stricter form: a session whose restore failed is not listed unless retrievable.
#[test]
fn restore_faults_leave_no_session_listed_but_not_retrievable() {
    check_restore_faults(true);
}

// ---------------------------------------------------------------------------------------------
// enforceRetentionPolicy

/// Archives, backups and cache entries of mixed ages, all written through the service at their
/// time, and the keys a complete sweep at [`NOW`] must delete.
fn retention_world() -> (World, BTreeSet<String>) {
    // Backups rotate by `last` alone: the newest is kept, the older one goes with its KV
    // entries (manifest copy and index entry).
    let policy = DataRetentionPolicy {
        backup_keep_last: 1,
        backup_keep_daily: 0,
        backup_keep_weekly: 0,
        backup_keep_monthly: 0,
        ..DataRetentionPolicy::default()
    };
    let mut world = World::with_policy(NOW, policy);
    let mut doomed = BTreeSet::new();
    let mut young = BTreeSet::new();
    let mut at = |world: &mut World, time: i64, is_doomed: bool, write: &dyn Fn(&mut World)| {
        world.stores.clock.set_ms(time);
        let before = world.stores.snapshot();
        write(world);
        let changed = changed_keys(&before, &world.stores.snapshot());
        // A later write wins: archive_meta of a session archived again is young.
        for key in changed {
            doomed.remove(&key);
            young.remove(&key);
            if is_doomed {
                doomed.insert(key);
            } else {
                young.insert(key);
            }
        }
    };
    // Archives: retention is 90 days, decided by the time in the key.
    at(&mut world, NOW - 200 * DAY, true, &|w| {
        w.archive("old-1", Some("u-old"), "ancient");
    });
    at(&mut world, NOW - 91 * DAY, true, &|w| {
        w.archive("old-2", None, "just past");
    });
    at(&mut world, NOW - 89 * DAY, false, &|w| {
        w.archive("young-2", None, "just inside");
    });
    at(&mut world, NOW - 10 * DAY, false, &|w| {
        w.archive("young-1", Some("u-young"), "recent");
    });
    at(&mut world, NOW - 150 * DAY, true, &|w| {
        w.archive("mixed", Some("u-mixed"), "old version");
    });
    at(&mut world, NOW - 5 * DAY, false, &|w| {
        w.archive("mixed", Some("u-mixed"), "new version");
    });
    // Backups: a committed old one, a young one the rotation no longer keeps, the newest
    // (kept), orphan data past the 1 h grace and orphan data within it (a createBackup whose
    // manifest put was refused).
    at(&mut world, NOW - 200 * DAY + MINUTE, true, &|w| {
        w.backup(&["old-1"]).unwrap();
    });
    at(&mut world, NOW - 5 * DAY + MINUTE, true, &|w| {
        w.backup(&["young-1", "mixed"]).unwrap();
    });
    at(&mut world, NOW - DAY, false, &|w| {
        w.backup(&["young-1"]).unwrap();
    });
    for (time, is_doomed) in [(NOW - 2 * DAY, true), (NOW - 10 * MINUTE, false)] {
        at(&mut world, time, is_doomed, &|w| {
            // KV get + R2 get of the session, data put, then the manifest put: refused.
            let faults = &w.stores.faults;
            faults.fail_call(faults.calls() + 4, FailureKind::Rejected);
            let err = w.backup(&["young-1"]).unwrap_err();
            assert_eq!(err.code(), "STORAGE_UNAVAILABLE");
        });
    }
    // Cache entries: young ones through the service; expired ones as KV would still list them
    // until its own expirationTtl (written directly, with the list metadata the service writes).
    at(&mut world, NOW - HOUR, false, &|w| {
        block_on(w.service.cache_embedding(
            "how do refunds work",
            &[0.25, -1.5],
            Some(r#"{"model":"m"}"#),
        ))
        .unwrap();
        block_on(
            w.service
                .cache_frequent_query("refund policy", r#"{"a":1}"#, None),
        )
        .unwrap();
    });
    at(&mut world, NOW - 3 * DAY, true, &|w| {
        for (index, prefix) in ["embedding:", "query:"].iter().enumerate() {
            let options = KvPutOptions {
                expiration_ttl_secs: None,
                metadata: Some(json!({"createdAt": NOW - 3 * DAY, "expiresAt": NOW - 2 * DAY})),
            };
            let key = format!("{prefix}{:064x}", index + 1);
            block_on(w.stores.kv.put(&key, b"{}", options)).unwrap();
        }
    });
    world.stores.clock.set_ms(NOW);
    world.acknowledged.retain(|sid, _| !sid.starts_with("old-"));
    assert!(
        doomed.len() >= 15 && young.len() >= 15,
        "{doomed:?} {young:?}"
    );
    (world, doomed)
}

/// A retention run with any one call crashed, refused, lost or failing once never fails and
/// never deletes anything young; the next run completes, after which exactly what is past its
/// limit is gone and no entry points at a missing object.
#[test]
fn retention_faults_delete_nothing_young_and_the_next_run_leaves_no_dangling_entry() {
    let (world, doomed) = retention_world();
    let everything = all_keys(&world.stores.snapshot());
    let survivors: BTreeSet<String> = everything.difference(&doomed).cloned().collect();
    let calls = world.calls_of(|world| {
        let run = world.sweep();
        assert!(run.status.complete);
        assert_eq!(run.report.deleted.total(), doomed.len() as u64);
    });
    assert_eq!(all_keys(&world.stores.snapshot()), survivors);
    assert!(calls > 15, "{calls}");

    for fault in Fault::all(calls, true) {
        let (world, _) = retention_world();
        fault.plan(&world.stores.faults);
        let first = world.sweep();
        let context = format!(
            "{fault} (first run {})",
            serde_json::to_string(&first).unwrap()
        );
        if matches!(fault, Fault::FailOnce(_)) {
            assert!(
                first.status.complete && first.failed_deletions == 0,
                "{context}"
            );
        }
        world.recover();
        let kept = all_keys(&world.stores.snapshot());
        assert!(
            survivors
                .iter()
                .all(|key| kept.contains(key) || key == "retention:cursor"),
            "{context}: deleted {:?}",
            survivors.difference(&kept).collect::<Vec<_>>()
        );
        let next = world.sweep();
        assert!(
            next.status.complete,
            "{context}: {}",
            serde_json::to_string(&next).unwrap()
        );
        assert_eq!(
            all_keys(&world.stores.snapshot()),
            survivors,
            "{context}, then {}",
            serde_json::to_string(&next).unwrap()
        );
        world.assert_no_entry_points_at_a_missing_object(&context);
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
    }
}

// ---------------------------------------------------------------------------------------------
// verifyStorage with repair

/// s-1..s-3 backed up, past the index lag; then s-1's object damaged and s-3's global index
/// entry lost; with a replica (in sync, past its lag), also s-2's copy there deleted. Returns
/// the world, s-1's key and its original bytes.
fn verification_world(replicated: bool) -> (World, String, Vec<u8>) {
    let mut world = if replicated {
        World::replicated(NOW)
    } else {
        World::at(NOW)
    };
    world.archive("s-1", Some("u-1"), "billing question");
    world.archive("s-2", None, "login trouble");
    world.archive("s-3", Some("u-2"), "refund please");
    world.backup(&["s-1", "s-2", "s-3"]).unwrap();
    if let Some(replica) = &world.replica {
        let synced = block_on(world.service.sync_replica(RunBudget::default())).unwrap();
        assert!(synced.status.complete);
        let s2 = replica
            .keys()
            .into_iter()
            .find(|key| key.contains("archive_s-2_"))
            .unwrap();
        block_on(replica.delete(&[s2])).unwrap();
        world
            .stores
            .clock
            .advance_ms(REPLICA_LAG_DEGRADED_MS as u64);
    }
    world.stores.clock.advance_ms(INDEX_LAG_MS as u64 + 1_000);
    let snapshot = world.stores.snapshot();
    let s1 = snapshot
        .r2
        .keys()
        .find(|key| key.contains("archive_s-1_"))
        .unwrap()
        .clone();
    let original = snapshot.r2[&s1].body.clone();
    assert!(world.stores.r2.corrupt(&s1, 40));
    let s3_entry = snapshot
        .kv
        .keys()
        .find(|key| key.starts_with(ARCHIVE_INDEX_PREFIX) && key.ends_with(":s-3"))
        .unwrap();
    block_on(world.stores.kv.delete(s3_entry)).unwrap();
    (world, s1, original)
}

fn verify_and_repair(world: &World) -> VerificationReport {
    let options = VerifyOptions {
        sample: Sample::default(),
        repair: true,
    };
    block_on(world.service.verify_storage(options, RunBudget::default())).unwrap()
}

/// A repairing verification with any one call crashed, refused, lost or failing once never
/// fails, deletes nothing and changes no stored object but the damaged ones (each either as
/// damaged as before or exactly its original); the next run repairs everything, after which
/// every session is retrievable and listed, no entry points at a missing object, and a third
/// run finds nothing. With a replica, the same, its calls and repairs included.
#[test]
fn verification_faults_change_nothing_but_repairs_and_the_next_run_completes_them() {
    for replicated in [false, true] {
        check_verification_faults(replicated);
    }
}

fn check_verification_faults(replicated: bool) {
    let (world, _, _) = verification_world(replicated);
    let calls = world.calls_of(|world| {
        let report = verify_and_repair(world);
        assert!(report.status.complete, "{report:?}");
        let found = 2 + u32::from(replicated);
        assert_eq!(
            (report.problems_found, report.repaired),
            (found, found),
            "{report:?}"
        );
    });
    assert!(calls > 15, "{calls}");

    for fault in Fault::all(calls, true) {
        let (world, s1, original) = verification_world(replicated);
        let before = world.stores.snapshot();
        let replica_before = world.replica.as_ref().map(MemoryR2::snapshot);
        fault.plan(&world.stores.faults);
        let first = verify_and_repair(&world);
        let context = format!("replica={replicated}, {fault} (first run {first:?})");
        world.recover();
        let after = world.stores.snapshot();
        for (key, object) in &before.r2 {
            let now = &after
                .r2
                .get(key)
                .unwrap_or_else(|| panic!("{context}: {key} deleted"))
                .body;
            assert!(
                *now == object.body || (*key == s1 && *now == original),
                "{context}: {key} changed"
            );
        }
        for key in before.kv.keys().filter(|key| !key.starts_with("verify:")) {
            assert!(after.kv.contains_key(key), "{context}: {key} deleted");
        }
        if let (Some(replica), Some(replica_before)) = (&world.replica, &replica_before) {
            let now = replica.snapshot();
            for (key, object) in replica_before {
                assert_eq!(
                    now.get(key).map(|copy| &copy.body),
                    Some(&object.body),
                    "{context}: replica {key}"
                );
            }
        }
        let next = verify_and_repair(&world);
        assert!(next.status.complete, "{context}, then {next:?}");
        let clean = verify_and_repair(&world);
        assert_eq!(clean.problems, vec![], "{context}, then {next:?}");
        assert_eq!(world.stores.snapshot().r2[&s1].body, original, "{context}");
        if let Some(replica) = &world.replica {
            assert_eq!(
                replica.snapshot().len(),
                after.r2.len(),
                "{context}: replica in sync"
            );
        }
        world.assert_no_entry_points_at_a_missing_object(&context);
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        assert_eq!(world.listed().len(), 3 + 2, "{context}");
    }
}

// ---------------------------------------------------------------------------------------------
// Flipped bytes

/// Every byte of a backup's pack and manifest flipped in turn: restore refuses it (pack:
/// CHECKSUM_MISMATCH naming the pack) and writes nothing; never Ok with other data.
#[test]
fn a_flipped_byte_anywhere_in_a_backup_is_refused_and_nothing_is_written() {
    let world = backup_world();
    let id = world.backup(&["s-1", "s-2", "s-3"]).unwrap();
    world.lose_all_archives();
    world.stores.clock.advance_ms(RECOVERY_MS);
    let backup_id = BackupId::parse(&id).unwrap();
    let data_key = backup_pack_key(&backup_id, 0);
    let manifest_key = backup_manifest_object_key(&backup_id);
    let before = world.stores.snapshot();
    let writes = world.writes();
    let data_len = before.r2[&data_key].body.len();
    assert!(data_len > 100, "{data_len}");
    // Every position: gzip header, deflate stream, CRC32 and size trailer.
    for position in 0..data_len {
        assert!(world.stores.r2.corrupt(&data_key, position));
        let err = world.restore(&id).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "data byte {position}");
        assert!(err.to_string().contains(&data_key), "{err}");
        assert!(world.stores.r2.corrupt(&data_key, position));
    }
    for position in 0..before.r2[&manifest_key].body.len() {
        assert!(world.stores.r2.corrupt(&manifest_key, position));
        let err = world.restore(&id).unwrap_err();
        assert!(
            ["CHECKSUM_MISMATCH", "CORRUPT_DATA", "UNSUPPORTED_FORMAT"].contains(&err.code()),
            "manifest byte {position}: {err}"
        );
        assert!(world.stores.r2.corrupt(&manifest_key, position));
    }
    assert_eq!(world.writes(), writes);
    assert_eq!(world.stores.snapshot(), before);
    // Undamaged again, it restores.
    assert_eq!(world.restore(&id).unwrap(), ["s-1", "s-2", "s-3"]);
    world.assert_acknowledged_retrievable("after the flips");
}

/// Every byte of a stored archive flipped in turn: retrieving it and backing it up are both
/// CHECKSUM_MISMATCH, and no backup appears.
#[test]
fn a_flipped_byte_anywhere_in_an_archive_is_never_returned_or_backed_up() {
    let mut world = World::at(NOW);
    let key = world.archive("s-1", Some("u-1"), "I was charged twice");
    world.stores.clock.advance_ms(RECOVERY_MS);
    let before = world.stores.snapshot();
    let len = before.r2[&key].body.len();
    let positions: Vec<usize> = (0..12)
        .chain(len / 2 - 4..len / 2 + 4)
        .chain(len - 12..len)
        .collect();
    for position in positions {
        assert!(world.stores.r2.corrupt(&key, position));
        let err = world.retrieve("s-1").unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
        let err = world.backup(&["s-1"]).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
        assert!(world.stores.r2.corrupt(&key, position));
    }
    assert_eq!(world.stores.snapshot(), before);
    world.assert_acknowledged_retrievable("after the flips");
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// Archives, a complete backup, a backup whose pack is gone, and cache entries.
fn bad_input_world() -> (World, String, String) {
    let world = backup_world();
    let complete = world.backup(&["s-1", "s-2"]).unwrap();
    world.stores.clock.advance_ms(1_500);
    let broken = world.backup(&["s-3"]).unwrap();
    let data_key = backup_pack_key(&BackupId::parse(&broken).unwrap(), 0);
    block_on(world.stores.r2.delete(std::slice::from_ref(&data_key))).unwrap();
    block_on(world.service.cache_embedding("hello", &[1.0, 2.0], None)).unwrap();
    block_on(world.service.cache_frequent_query("hello", "[1]", None)).unwrap();
    world.stores.clock.advance_ms(RECOVERY_MS);
    (world, complete, broken)
}

/// Asserts that `outcome` is an error with `code` whose message names `named`.
fn assert_refused<T: fmt::Debug>(
    case: &str,
    outcome: supportbot_persistence::Result<T>,
    code: &str,
    named: &str,
) {
    let err = outcome.expect_err(case);
    assert_eq!(err.code(), code, "{case}: {err}");
    assert!(
        err.to_string().contains(named),
        "{case}: {err} does not name {named:?}"
    );
}

/// `memory("s-9")` with the field at `path` (dot-separated, array indexes as numbers) set to
/// `value`, or removed when `value` is null.
fn memory_with(path: &str, value: Value) -> String {
    let mut memory = memory("s-9", "text");
    let (parents, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut target = &mut memory;
    for part in parents.split('.').filter(|part| !part.is_empty()) {
        target = match part.parse::<usize>() {
            Ok(index) => &mut target[index],
            Err(_) => &mut target[part],
        };
    }
    if value.is_null() {
        target.as_object_mut().unwrap().remove(last);
    } else {
        target[last] = value;
    }
    memory.to_string()
}

/// Each bad input is refused with its code (and names what is wrong), nothing is written, and
/// everything stored is still there.
#[test]
fn bad_input_is_refused_with_its_code_and_nothing_stored_is_lost() {
    let (world, _complete, broken) = bad_input_world();
    let before = world.stores.snapshot();
    let writes = world.writes();
    let svc = &world.service;
    let plain_session = session("s-9", None).to_string();
    let good_memory = memory("s-9", "text").to_string();
    let archive_cases = [
        (
            "42".to_owned(),
            plain_session.clone(),
            "INVALID_INPUT",
            "memory",
        ),
        (
            "[]".to_owned(),
            plain_session.clone(),
            "INVALID_INPUT",
            "memory",
        ),
        (
            "null".to_owned(),
            plain_session.clone(),
            "INVALID_INPUT",
            "memory",
        ),
        (
            "{".to_owned(),
            plain_session.clone(),
            "INVALID_INPUT",
            "memory",
        ),
        (
            good_memory.clone(),
            "[]".to_owned(),
            "INVALID_INPUT",
            "session",
        ),
        (
            memory_with("messages", Value::Null),
            plain_session.clone(),
            "INVALID_INPUT",
            "messages",
        ),
        (
            memory_with("messages", json!({})),
            plain_session.clone(),
            "INVALID_INPUT",
            "messages",
        ),
        (
            memory_with("messages.0.timestamp", json!("2025-01-01")),
            plain_session.clone(),
            "INVALID_INPUT",
            "messages[0].timestamp",
        ),
        (
            memory_with("messages.1.role", json!("robot")),
            plain_session.clone(),
            "INVALID_INPUT",
            "messages[1].role",
        ),
        (
            memory_with("messages.0.content", Value::Null),
            plain_session.clone(),
            "INVALID_INPUT",
            "messages[0].content",
        ),
        (
            memory("a/b", "x").to_string(),
            session("a/b", None).to_string(),
            "INVALID_ID",
            "a/b",
        ),
        (
            memory("..", "x").to_string(),
            session("..", None).to_string(),
            "INVALID_ID",
            "..",
        ),
        (
            good_memory.clone(),
            session("s-9", Some("u\u{7}1")).to_string(),
            "INVALID_ID",
            "userId",
        ),
        (
            good_memory.clone(),
            session("s-9", Some("")).to_string(),
            "INVALID_ID",
            "userId",
        ),
    ];
    for (memory, session, code, named) in &archive_cases {
        let outcome = block_on(svc.archive_conversation(memory, session));
        assert_refused(&format!("archive {memory} {session}"), outcome, code, named);
    }
    for id in ["a/b", "..", "../x", "x/../y"] {
        let case = format!("id {id:?}");
        let retrieved = block_on(svc.retrieve_archived_conversation(id));
        assert_refused(&case, retrieved, "INVALID_ID", id);
        assert_refused(&case, world.backup(&["s-1", id]), "INVALID_ID", id);
        assert_refused(&case, world.restore(id), "INVALID_ID", id);
    }
    // User ids are only hashed: a path-like one lists nothing rather than being refused.
    let listed = block_on(svc.list_archived_conversations(Some("../x"), 20, None)).unwrap();
    assert!(listed.archives.is_empty());
    let listed = block_on(svc.list_archived_conversations(Some("u\n"), 20, None));
    assert_refused("user id \"u\\n\"", listed, "INVALID_ID", "userId");
    assert_refused(
        "no sessions",
        world.backup(&[]),
        "INVALID_INPUT",
        "sessionIds",
    );
    let unknown = world.restore("backup_unknown");
    let manifest = "backups/backup_unknown/manifest.json";
    assert_refused("unknown backup", unknown, "NOT_FOUND", manifest);
    // The manifest is there, its pack is not: NOT_FOUND naming the pack.
    let broken_data = backup_pack_key(&BackupId::parse(&broken).unwrap(), 0);
    assert_refused("no data", world.restore(&broken), "NOT_FOUND", &broken_data);

    for text in ["", " \n"] {
        let case = format!("text {text:?}");
        let cached = block_on(svc.cache_embedding(text, &[1.0], None));
        assert_refused(&case, cached, "INVALID_INPUT", "text");
        let found = block_on(svc.get_cached_embedding(text, None));
        assert_refused(&case, found, "INVALID_INPUT", "text");
        let cached = block_on(svc.cache_frequent_query(text, "1", None));
        assert_refused(&case, cached, "INVALID_INPUT", "query");
        let found = block_on(svc.get_cached_query_result(text));
        assert_refused(&case, found, "INVALID_INPUT", "query");
    }
    for (embedding, named) in [
        (vec![0.5, f64::NAN], "embedding[1]"),
        (vec![f64::INFINITY], "embedding[0]"),
        (vec![0.0, 1.0, f64::NEG_INFINITY], "embedding[2]"),
        (vec![], "embedding"),
    ] {
        let cached = block_on(svc.cache_embedding("hello", &embedding, None));
        assert_refused(&format!("{embedding:?}"), cached, "INVALID_INPUT", named);
    }
    let cached = block_on(svc.cache_embedding("hello", &[1.0], Some("[1]")));
    assert_refused("metadata [1]", cached, "INVALID_INPUT", "metadata");

    assert_eq!(world.writes(), writes);
    assert_eq!(world.stores.snapshot(), before);
    world.assert_acknowledged_retrievable("after bad input");
    assert_eq!(
        block_on(world.service.get_cached_embedding("hello", None)).unwrap(),
        Some(vec![1.0, 2.0])
    );
}

/// A text at the cache's limit is cached and found, under one new key, and nothing else
/// changes. One byte over it, or a 10 MB text, is refused.
#[test]
fn cache_texts_up_to_the_limit_are_hashed_and_larger_ones_refused() {
    let (world, _, _) = bad_input_world();
    let before = world.stores.snapshot();
    let large = "x".repeat(MAX_CACHE_TEXT_BYTES);
    block_on(world.service.cache_embedding(&large, &[0.5], None)).unwrap();
    assert_eq!(
        block_on(world.service.get_cached_embedding(&large, None)).unwrap(),
        Some(vec![0.5])
    );
    let after = world.stores.snapshot();
    let added: Vec<String> = changed_keys(&before, &after).into_iter().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        added[0].starts_with("embedding:") && added[0].len() < 100,
        "{added:?}"
    );
    assert!(all_keys(&before).is_subset(&all_keys(&after)));

    let ten_megabytes = "refund ".repeat(10 * 1024 * 1024 / 7);
    let err = block_on(
        world
            .service
            .cache_frequent_query(&ten_megabytes, "1", None),
    )
    .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().contains("query")),
        ("INVALID_INPUT", true)
    );
    let too_large = "x".repeat(MAX_CACHE_TEXT_BYTES + 1);
    let err = block_on(world.service.cache_embedding(&too_large, &[0.5], None)).unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().contains("text")),
        ("INVALID_INPUT", true)
    );
    let err = block_on(world.service.get_cached_query_result(&too_large)).unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().contains("query")),
        ("INVALID_INPUT", true)
    );
    assert_eq!(world.stores.snapshot(), after);
}

// ---------------------------------------------------------------------------------------------
// The earlier implementation's archives and backups (service::legacy_suite writes them as it did)

/// 2025-01-31T23:59:59.998Z: the month-end archive's `archivedAt`.
const LAST_MS_OF_JANUARY: i64 = 1_738_367_999_998;

/// `old-1`: its key's time 2 ms after `archivedAt`; `old-2`: recorded on January's last
/// milliseconds, its folder read after midnight (February's); `old-1_x`: shares `old-1`'s
/// listing prefix and folder. Each is `(session, user, archive)`.
fn legacy_world() -> (World, Vec<(&'static str, &'static str, LegacyArchive)>) {
    let world = World::at(NOW);
    let recorded_at = NOW - 10 * DAY;
    let fixtures = [
        ("old-1", "u-1", Readings::after(recorded_at, 2, 3)),
        ("old-1_x", "u-2", Readings::after(recorded_at, 5, 5)),
        ("old-2", "u-1", Readings::after(LAST_MS_OF_JANUARY, 1, 3)),
    ];
    let archives = fixtures
        .into_iter()
        .map(|(sid, user, readings)| {
            let archive = block_on(write_legacy_archive(
                &world.stores.kv,
                &world.stores.r2,
                sid,
                user,
                &readings,
            ))
            .unwrap();
            (sid, user, archive)
        })
        .collect();
    (world, archives)
}

/// A read of a legacy archive whose key is not the one its `archivedAt` gives, under every
/// fault of each of its calls: the right conversation or a storage error, never `null` or
/// another session's archive; it writes nothing; after recovery it reads the right one.
#[test]
fn legacy_lookups_under_faults_return_the_right_archive_or_an_error() {
    for (sid, _, _) in &legacy_world().1 {
        let calls = legacy_world().0.calls_of(|world| {
            world.retrieve(sid).unwrap().unwrap();
        });
        // 1 KV get, the R2 get that misses, 1 list per folder, the R2 get of what was found,
        // the R2 head of its user's erasure tombstone.
        let folders = if *sid == "old-2" { 2 } else { 1 };
        assert_eq!(calls, 4 + folders, "{sid}");
        for fault in Fault::all(calls, true) {
            let (world, archives) = legacy_world();
            let expected = &archives.iter().find(|(id, ..)| id == sid).unwrap().2;
            let before = world.stores.snapshot();
            fault.plan(&world.stores.faults);
            let result = world.retrieve(sid);
            let context = format!("{sid}, {fault} ({result:?})");
            match &result {
                Ok(found) => assert_eq!(found.as_ref(), Some(&expected.conversation), "{context}"),
                Err(err) => assert!(
                    ["STORAGE_UNAVAILABLE", "CIRCUIT_OPEN"].contains(&err.code()),
                    "{context}"
                ),
            }
            if matches!(fault, Fault::FailOnce(_)) {
                assert!(result.is_ok(), "{context}");
            }
            world.recover();
            assert_eq!(world.stores.snapshot(), before, "{context}: a read wrote");
            assert_eq!(
                world.retrieve(sid).unwrap().as_ref(),
                Some(&expected.conversation),
                "{context}: after recovery"
            );
        }
    }
}

/// indexLegacyArchives under every fault of each of its calls: the run stops or completes, a
/// rerun completes, and then every legacy archive is listed for its user under its real key
/// and retrievable, and nothing is indexed twice.
#[test]
fn legacy_indexing_faults_are_repaired_by_the_next_run() {
    let index = |world: &World| {
        block_on(world.service.index_legacy_archives(RunBudget::default())).unwrap()
    };
    let calls = legacy_world().0.calls_of(|world| {
        assert!(index(world).status.complete);
    });
    for fault in Fault::all(calls, true) {
        let (mut world, archives) = legacy_world();
        fault.plan(&world.stores.faults);
        let first = index(&world);
        world.recover();
        let rerun = index(&world);
        let context = format!("{fault} (first run {first:?}, rerun {rerun:?})");
        assert!(rerun.status.complete, "{context}");
        for (sid, user, archive) in &archives {
            world.users.insert((*user).to_owned());
            world
                .acknowledged
                .insert((*sid).to_owned(), archive.conversation.clone());
            let listing = block_on(world.service.list_archived_conversations(
                Some(user),
                1000,
                None,
            ))
            .unwrap();
            let keys: Vec<&Value> = listing
                .archives
                .iter()
                .filter(|entry| entry["sessionId"] == *sid)
                .map(|entry| &entry["key"])
                .collect();
            assert_eq!(keys, [&json!(archive.key)], "{context}: {sid}");
        }
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
        // The entries agree with their archive's key, so rebuilding the user index keeps them.
        let reindexed =
            block_on(world.service.reindex_user_archives(RunBudget::default())).unwrap();
        assert!(reindexed.status.complete, "{context}: {reindexed:?}");
        assert_eq!(
            (reindexed.written, reindexed.unreadable),
            (3, 0),
            "{context}"
        );
    }
}

/// indexLegacyArchives at its smallest budget, with every record's object to be searched for:
/// each run makes progress and the runs complete.
#[test]
fn legacy_indexing_at_the_smallest_budget_completes() {
    let (world, archives) = legacy_world();
    let budget = RunBudget {
        max_storage_calls: Some(MIN_MIGRATION_CALLS),
        deadline_ms: None,
    };
    let mut runs = Vec::new();
    while runs.len() < 3 * archives.len() + 1 {
        let run = block_on(world.service.index_legacy_archives(budget)).unwrap();
        assert!(run.status.storage_calls <= MIN_MIGRATION_CALLS, "{run:?}");
        runs.push(run);
        if runs.last().is_some_and(|run| run.status.complete) {
            break;
        }
        world.stores.clock.advance_ms(1_500);
    }
    assert!(
        runs.last().is_some_and(|run| run.status.complete),
        "{runs:?}"
    );
    let indexed: u64 = runs.iter().map(|run| run.indexed).sum();
    assert_eq!(indexed, archives.len() as u64, "{runs:?}");
}

/// A backup of the earlier implementation (its R2 manifest.json, no formatVersion) restored
/// under every fault of each call: each session is restored or as it was, and a rerun
/// restores every one.
#[test]
fn legacy_backup_restore_faults_are_completed_by_a_rerun() {
    let backup_id = "backup_1748736000000";
    let world_with_backup = || {
        let (mut world, archives) = legacy_world();
        let entries: Vec<LegacyBackupEntry<'_>> = archives
            .iter()
            .map(|(sid, _, archive)| LegacyBackupEntry {
                session_id: sid,
                data: archive.conversation.clone(),
            })
            .collect();
        block_on(write_legacy_backup(
            &world.stores.kv,
            &world.stores.r2,
            backup_id,
            NOW - DAY,
            &entries,
            &["never-archived"],
            false,
        ))
        .unwrap();
        lose_all_archives(&world.stores);
        for (sid, user, archive) in &archives {
            world.users.insert((*user).to_owned());
            world
                .acknowledged
                .insert((*sid).to_owned(), archive.conversation.clone());
        }
        world.stores.clock.advance_ms(RECOVERY_MS);
        world
    };
    let restored: Vec<String> = ["old-1", "old-1_x", "old-2"].map(String::from).to_vec();
    let calls = world_with_backup().calls_of(|world| {
        assert_eq!(world.restore(backup_id).unwrap(), restored);
    });
    for fault in Fault::all(calls, true) {
        let world = world_with_backup();
        fault.plan(&world.stores.faults);
        let result = world.restore(backup_id);
        world.recover();
        let context = format!("{fault} ({result:?})");
        for sid in &restored {
            let retrieved = world.retrieve(sid).unwrap();
            assert!(
                retrieved.is_none() || retrieved.as_ref() == world.acknowledged.get(sid.as_str()),
                "{context}: {sid} retrieves {retrieved:?}"
            );
        }
        assert_eq!(
            world.restore(backup_id).unwrap(),
            restored,
            "{context}, rerun"
        );
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
    }
}

/// Service options with the KEKs `keys` (`(id, byte)`: 32 times that byte), newest first.
fn encryption_options(keys: &[(&str, u8)]) -> ServiceOptions {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, byte)| {
            let key: String = base64_of(&[*byte; 32]);
            json!({ "id": id, "key": key })
        })
        .collect();
    ServiceOptions::from_json(&json!({ "encryptionKeys": keys }).to_string()).unwrap()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A world whose archives were written in plaintext (two users, a session without one, and
/// an older archive of s-1), now served with a key configured.
fn plaintext_world() -> World {
    let mut world = World::at(NOW);
    world.archive("s-1", Some("u-1"), "older version");
    world.archive("s-2", Some("u-2"), "other user");
    world.archive("s-3", None, "no user");
    world.archive("s-1", Some("u-1"), "newest version");
    world.service = service_over(
        &world.stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        encryption_options(&[("k1", 1)]),
    );
    world
}

/// Every storage call of encryptExistingArchives crashing, refused, answered but lost, or
/// failing once: at that moment every acknowledged archive is still retrievable and every
/// listed one too; runs after recovery complete, leaving only encrypted archives.
#[test]
fn encrypt_existing_faults_lose_no_archive_and_the_runs_complete() {
    let encrypt = |world: &World| {
        block_on(
            world
                .service
                .encrypt_existing_archives(RunBudget::default()),
        )
        .unwrap()
    };
    let calls = plaintext_world().calls_of(|world| {
        let report = encrypt(world);
        assert!(
            report.status.complete && report.encrypted == 4,
            "{report:?}"
        );
    });
    for fault in Fault::all(calls, true) {
        let world = plaintext_world();
        fault.plan(&world.stores.faults);
        let first = encrypt(&world);
        world.recover();
        let context = format!("{fault} (first run {first:?})");
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
        let mut runs = 0;
        while !encrypt(&world).status.complete {
            runs += 1;
            assert!(runs < 3, "{context}: the runs do not complete");
            world.stores.clock.advance_ms(RECOVERY_MS);
        }
        world.assert_acknowledged_retrievable(&context);
        world.assert_listed_retrievable(&context);
        world.assert_no_entry_points_at_a_missing_object(&context);
        let snapshot = world.stores.snapshot();
        let archives: Vec<&String> = snapshot
            .r2
            .keys()
            .filter(|k| k.starts_with("conversations/"))
            .collect();
        assert_eq!(archives.len(), 4, "{context}: {archives:?}");
        assert!(
            archives.iter().all(|key| key.ends_with(".enc")),
            "{context}: {archives:?}"
        );
    }
}

/// A world whose data keys are wrapped by k1, served with k2 (newest) and k1.
fn rotation_world() -> World {
    let mut world = World::at(NOW);
    world.service = service_over(
        &world.stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        encryption_options(&[("k1", 1)]),
    );
    world.archive("s-1", Some("u-1"), "first user");
    world.archive("s-2", Some("u-2"), "second user");
    world.archive("s-3", None, "no user");
    world.service = service_over(
        &world.stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        encryption_options(&[("k2", 2), ("k1", 1)]),
    );
    world
}

/// Every storage call of rotateEncryptionKeys crashing, refused, answered but lost, or failing
/// once: every archive stays readable (with both KEKs), the runs after recovery complete, and
/// then the old KEK can be removed.
#[test]
fn rotation_faults_leave_every_archive_readable_and_the_runs_complete() {
    let rotate = |world: &World| {
        block_on(world.service.rotate_encryption_keys(RunBudget::default())).unwrap()
    };
    let calls = rotation_world().calls_of(|world| {
        let report = rotate(world);
        assert!(
            report.status.complete && report.rewrapped == 3,
            "{report:?}"
        );
    });
    for fault in Fault::all(calls, true) {
        let mut world = rotation_world();
        fault.plan(&world.stores.faults);
        let first = rotate(&world);
        world.recover();
        let context = format!("{fault} (first run {first:?})");
        world.assert_acknowledged_retrievable(&context);
        let mut runs = 0;
        loop {
            let report = rotate(&world);
            if report.status.complete {
                assert_eq!(
                    report.key_unavailable + report.damaged,
                    0,
                    "{context}: {report:?}"
                );
                break;
            }
            runs += 1;
            assert!(runs < 3, "{context}: the runs do not complete");
            world.stores.clock.advance_ms(RECOVERY_MS);
        }
        world.service = service_over(
            &world.stores,
            Rc::new(Discard),
            DataRetentionPolicy::default(),
            encryption_options(&[("k2", 2)]),
        );
        world.assert_acknowledged_retrievable(&format!("{context}, with k2 alone"));
        world.assert_listed_retrievable(&context);
    }
}

/// A world where u-1 has three archives (s-1 twice, s-4) and a backup made for them, u-2 one,
/// and a session without a user one; served with encryption when `encrypted`.
fn erasure_world(encrypted: bool) -> World {
    let mut world = World::at(NOW);
    if encrypted {
        world.service = service_over(
            &world.stores,
            Rc::new(Discard),
            DataRetentionPolicy::default(),
            encryption_options(&[("k1", 1)]),
        );
    }
    world.archive("s-1", Some("u-1"), "first of u-1");
    world.archive("s-2", Some("u-2"), "of u-2");
    world.archive("s-3", None, "of nobody");
    world.archive("s-1", Some("u-1"), "newest of u-1");
    world.archive("s-4", Some("u-1"), "second of u-1");
    let sids = ["s-1".to_owned(), "s-4".to_owned()];
    block_on(world.service.create_backup(&sids, Some("u-1"), false)).unwrap();
    world.stores.clock.advance_ms(1_500);
    world
}

/// What is stored of anyone but u-1 (keys, bodies, metadata), ignoring erasure bookkeeping.
fn not_of_u1(snapshot: &StoreSnapshot) -> BTreeMap<String, String> {
    let user_key = supportbot_persistence::hash::KeyHasher::default()
        .user_key(&supportbot_persistence::keys::UserId::parse("u-1").unwrap());
    let u1_backups: BTreeSet<String> = snapshot
        .kv
        .iter()
        .filter(|(_, value)| {
            value.metadata.as_ref().and_then(|m| m.get("userKey")) == Some(&json!(user_key))
        })
        .filter_map(|(name, _)| name.rsplit(':').next().map(str::to_owned))
        .collect();
    let of_u1 = |name: &str| {
        name.contains(&user_key)
            || name.contains("erasure")
            || ["s-1", "s-4"]
                .iter()
                .any(|sid| name.contains(&format!("_{sid}_")) || name.ends_with(&format!(":{sid}")))
            || u1_backups.iter().any(|id| name.contains(id.as_str()))
    };
    let kv = snapshot
        .kv
        .iter()
        .map(|(name, value)| (name, format!("{:?}{:?}", value.value, value.metadata)));
    let r2 = snapshot.r2.iter().map(|(name, object)| {
        (
            name,
            format!("{:?}{:?}", object.body, object.meta.custom_metadata),
        )
    });
    kv.chain(r2)
        .filter(|(name, _)| !of_u1(name))
        .map(|(name, value)| (name.clone(), value))
        .collect()
}

/// Every storage call of eraseUserData crashing, refused, answered but lost, or failing once:
/// nothing of anyone else is ever deleted or changed; once the tombstone is written, no
/// listing or retrieval shows u-1's archives; the runs after recovery complete, leaving what
/// one clean run leaves.
#[test]
fn erasure_faults_resume_to_a_complete_receipt_and_touch_no_one_else() {
    for encrypted in [false, true] {
        let erase = |world: &World| {
            block_on(world.service.erase_user_data("u-1", RunBudget::default())).unwrap()
        };
        let (clean, clean_receipt) = {
            let world = erasure_world(encrypted);
            let receipt = erase(&world);
            assert!(
                receipt.status.complete && receipt.archives_deleted == 3,
                "{receipt:?}"
            );
            (all_keys(&world.stores.snapshot()), receipt)
        };
        let calls = erasure_world(encrypted).calls_of(|world| {
            erase(world);
        });
        for fault in Fault::all(calls, true) {
            let world = erasure_world(encrypted);
            let others = not_of_u1(&world.stores.snapshot());
            fault.plan(&world.stores.faults);
            let first = erase(&world);
            world.recover();
            let context = format!("{fault}, encrypted {encrypted} (first run {first:?})");
            assert_eq!(not_of_u1(&world.stores.snapshot()), others, "{context}");
            let tombstoned = world
                .stores
                .snapshot()
                .r2
                .keys()
                .any(|k| k.starts_with("erasures/"));
            if tombstoned {
                let listed = block_on(world.service.list_archived_conversations(
                    Some("u-1"),
                    100,
                    None,
                ));
                assert_eq!(listed.unwrap().archives, Vec::<Value>::new(), "{context}");
                for sid in ["s-1", "s-4"] {
                    assert_eq!(world.retrieve(sid).unwrap(), None, "{context}: {sid}");
                }
            }
            for sid in ["s-2", "s-3"] {
                assert!(world.retrieve(sid).unwrap().is_some(), "{context}: {sid}");
            }
            let mut runs = 0;
            let last = loop {
                let receipt = erase(&world);
                if receipt.status.complete {
                    break receipt;
                }
                runs += 1;
                assert!(runs < 3, "{context}: the runs do not complete");
                world.stores.clock.advance_ms(RECOVERY_MS);
            };
            assert_eq!(not_of_u1(&world.stores.snapshot()), others, "{context}");
            let left: BTreeSet<String> = all_keys(&world.stores.snapshot())
                .into_iter()
                .filter(|key| !key.starts_with("erasure"))
                .collect();
            let expected: BTreeSet<String> = clean
                .iter()
                .filter(|key| !key.starts_with("erasure"))
                .cloned()
                .collect();
            assert_eq!(left, expected, "{context}: {last:?}");
            assert_eq!(last.user_key, clean_receipt.user_key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// importStore

/// An encrypted store export of two users' archives (one session archived twice), a session
/// without a user, and an erasure tombstone: what each import world imports.
fn import_source() -> (World, Vec<u8>) {
    let mut source = World::at(NOW);
    source.service = service_over(
        &source.stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        encryption_options(&[("k1", 1)]),
    );
    source.archive("s-1", Some("u-1"), "older version");
    source.archive("s-2", Some("u-2"), "other user");
    source.archive("s-3", None, "no user");
    source.archive("s-1", Some("u-1"), "newest version");
    let user_key = supportbot_persistence::hash::KeyHasher::plain()
        .user_key(&supportbot_persistence::keys::UserId::parse("u-9").unwrap());
    let body = json!({"formatVersion": 1, "userKey": user_key, "erasedAt": NOW,
                      "completedAt": NOW})
    .to_string();
    let options = supportbot_persistence::store::ObjectPutOptions {
        custom_metadata: [
            ("erasedAt".to_owned(), NOW.to_string()),
            ("completedAt".to_owned(), NOW.to_string()),
        ]
        .into(),
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    let key = format!("erasures/{user_key}.json");
    block_on(source.stores.r2.put(&key, body.as_bytes(), options)).unwrap();
    let stream = common::store_export(&source.service, RunBudget::default(), None);
    (source, stream)
}

/// Empty stores with a service holding the source's KEK, told which users to list.
fn import_world() -> World {
    let mut world = World::at(NOW + HOUR);
    world.service = service_over(
        &world.stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        encryption_options(&[("k1", 1)]),
    );
    world.users = ["u-1", "u-2"].map(String::from).into();
    world
}

fn import(world: &World, stream: &[u8]) -> supportbot_persistence::service::ImportReport {
    common::import_stream(
        &world.service,
        stream,
        Default::default(),
        RunBudget::default(),
        700,
    )
    .unwrap()
}

/// Every storage call of an import crashing, refused, answered but lost, or failing once: the
/// import stops (or retries) without an error, nothing it leaves is listed but missing, and
/// importing again completes it to exactly what an import without faults stores; a further
/// import writes nothing.
#[test]
fn import_faults_are_completed_by_a_rerun_and_nothing_is_stored_twice() {
    let (source, stream) = import_source();
    let reference = import_world();
    let calls = reference.calls_of(|world| {
        let report = import(world, &stream);
        assert!(report.status.complete, "{report:?}");
        assert_eq!((report.archives_written, report.objects_written), (4, 4));
    });
    let imported = common::stored_content(&reference.stores);
    for fault in Fault::all(calls, true) {
        let world = import_world();
        fault.plan(&world.stores.faults);
        let first = import(&world, &stream);
        match fault {
            Fault::FailOnce(_) | Fault::LoseResponse(_) => {
                // Retried: a lost put finds its own write.
                assert!(first.status.complete, "{fault}: {first:?}");
            }
            Fault::CrashAfter(n) if n == calls => assert!(first.status.complete, "{fault}"),
            Fault::CrashAfter(_) | Fault::Reject(_) => {
                assert!(!first.status.complete, "{fault}: {first:?}");
                assert_eq!(first.status.stopped_by, Some(StopReason::StorageError));
                assert!(first.next_line.is_some(), "{fault}: {first:?}");
            }
        }
        world.recover();
        let context = format!("{fault} (first import {first:?})");
        world.assert_no_entry_points_at_a_missing_object(&context);
        world.assert_listed_retrievable(&context);

        let rerun = import(&world, &stream);
        assert!(rerun.status.complete, "{context}: rerun {rerun:?}");
        assert_eq!(common::stored_content(&world.stores), imported, "{context}");
        for sid in ["s-1", "s-2", "s-3"] {
            let expected = block_on(source.service.retrieve_archived_conversation(sid)).unwrap();
            let found = block_on(world.service.retrieve_archived_conversation(sid)).unwrap();
            assert_eq!(found, expected, "{context}: {sid}");
        }
        world.stores.clock.advance_ms(RECOVERY_MS);
        // Conditional puts find their objects; nothing else is written.
        let again = import(&world, &stream);
        assert_eq!(
            common::stored_content(&world.stores),
            imported,
            "{context}: a third import changed something"
        );
        let kv_puts = world
            .stores
            .faults
            .counts()
            .of(Binding::Kv, OperationKind::Put);
        let again_kv = import(&world, &stream);
        assert_eq!(
            world
                .stores
                .faults
                .counts()
                .of(Binding::Kv, OperationKind::Put),
            kv_puts,
            "{context}: {again_kv:?}"
        );
        assert_eq!(
            (
                again.archives_written,
                again.objects_written,
                again.index_entries_written
            ),
            (0, 0, 0),
            "{context}: {again:?}"
        );
    }
}
