//! The backup policy over the in-memory stores: retention deletes what restic's rotation does
//! not keep (with its KV entries), keeps pinned backups, the parents of kept ones and the head
//! of the automated chain; a dry run deletes nothing and says why each backup stays or goes;
//! `listBackups` pages newest first with the same decisions; every count 0 means age.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::keys::{backup_manifest_object_key, BackupId, BACKUP_INDEX_PREFIX};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    BackupListing, BackupRequest, CommitStep, PackStep, RunBudget, ServiceOptions,
};
use supportbot_persistence::store::memory::{block_on, CallFilter, MemoryStores, OperationKind};
use supportbot_persistence::store::{Binding, FailureKind, KvPutOptions, KvStore};

use common::{archive_now, service_over, Discard, Service, DAY, T0};

struct Desk {
    stores: MemoryStores,
    service: Service,
}

/// A policy keeping `last` backups and the newest of `daily` days, nothing by week or month.
fn rotation(last: u64, daily: u64) -> DataRetentionPolicy {
    DataRetentionPolicy {
        backup_keep_last: last,
        backup_keep_daily: daily,
        backup_keep_weekly: 0,
        backup_keep_monthly: 0,
        ..DataRetentionPolicy::default()
    }
}

impl Desk {
    fn new(policy: DataRetentionPolicy) -> Self {
        let stores = MemoryStores::new(T0, 5);
        let service = service_over(&stores, Rc::new(Discard), policy, ServiceOptions::default());
        let desk = Desk { stores, service };
        desk.archive("s-1", Some("u-1"));
        desk.archive("s-2", None);
        desk
    }

    fn archive(&self, sid: &str, user: Option<&str>) {
        archive_now(&self.stores, &self.service, sid, user, "where is my parcel");
    }

    /// A manual backup made at `at_ms`.
    fn manual_at(&self, at_ms: i64, owner: Option<&str>, keep: bool) -> String {
        self.stores.clock.set_ms(at_ms);
        let sessions = match owner {
            Some(_) => vec!["s-1".to_owned()],
            None => vec!["s-1".to_owned(), "s-2".to_owned()],
        };
        block_on(self.service.create_backup(&sessions, owner, keep)).unwrap()
    }

    /// An automated backup of the whole store made at `at_ms` (the Workflow's three steps).
    fn automated_at(&self, at_ms: i64) -> String {
        self.stores.clock.set_ms(at_ms);
        let plan = block_on(self.service.plan_backup(BackupRequest::default(), 40)).unwrap();
        let mut packs = Vec::new();
        let mut from = None;
        loop {
            let step = PackStep {
                plan: plan.clone(),
                pack: packs.len() as u32,
                from,
            };
            let report = block_on(self.service.backup_pack(step)).unwrap();
            packs.extend(report.record.clone());
            from = report.next;
            if from.is_none() {
                break;
            }
        }
        let commit = CommitStep {
            plan,
            packs,
            missing_session_ids: Vec::new(),
        };
        block_on(self.service.commit_backup(commit)).unwrap()
    }

    fn exists(&self, id: &str) -> bool {
        let key = backup_manifest_object_key(&BackupId::parse(id).unwrap());
        let snapshot = self.stores.snapshot();
        let kv_entries = snapshot.kv.keys().filter(|key| key.ends_with(id)).count();
        match (snapshot.r2.contains_key(&key), kv_entries) {
            (true, 2) => true,
            (false, 0) => {
                assert!(
                    !snapshot.r2.keys().any(|key| key.contains(id)),
                    "{id} left R2 objects"
                );
                false
            }
            other => panic!("{id} is half there: {other:?}"),
        }
    }

    fn list(&self, user: Option<&str>, limit: u32, cursor: Option<&str>) -> BackupListing {
        block_on(self.service.list_backups(user, limit, cursor)).unwrap()
    }

    /// Every page of `listBackups` at `limit` a page, as JSON.
    fn list_all(&self, user: Option<&str>, limit: u32) -> Vec<Value> {
        let mut backups = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(user, limit, cursor.as_deref());
            assert!(page.backups.len() <= limit as usize);
            backups.extend(page.backups.iter().map(|backup| json!(backup)));
            assert_eq!(page.list_complete, page.cursor.is_none());
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return backups,
            }
        }
    }

    fn sweep(&self) -> Value {
        let run = block_on(self.service.enforce_retention_policy(RunBudget::default())).unwrap();
        assert!(run.status.complete && run.failed_deletions == 0, "{run:?}");
        json!(run)
    }
}

/// `reasons` of each backup of a listing or dry-run report, by id.
fn reasons_by_id(backups: &[Value]) -> BTreeMap<String, Value> {
    backups
        .iter()
        .map(|backup| {
            let id = backup["backupId"].as_str().unwrap().to_owned();
            (id, backup["reasons"].clone())
        })
        .collect()
}

/// 2026-06-01T12:00:00Z and the days before it.
const JUNE_1: i64 = 1_780_315_200_000;

#[test]
fn retention_deletes_what_the_rotation_does_not_keep_and_a_dry_run_says_so_first() {
    let desk = Desk::new(rotation(1, 2));
    let morning = desk.manual_at(JUNE_1 - 3 * DAY, None, false);
    let evening = desk.manual_at(JUNE_1 - 3 * DAY + 8 * 3_600_000, None, false);
    let pinned = desk.manual_at(JUNE_1 - 2 * DAY, None, true);
    let two_days = desk.manual_at(JUNE_1 - 2 * DAY + 60_000, None, false);
    let yesterday = desk.manual_at(JUNE_1 - DAY, None, false);
    let today = desk.manual_at(JUNE_1, None, false);
    desk.stores.clock.set_ms(JUNE_1 + 60_000);

    let before = desk.stores.snapshot();
    let preview = block_on(desk.service.preview_retention_policy(RunBudget::default())).unwrap();
    assert_eq!(desk.stores.snapshot(), before, "a dry run deletes nothing");
    let report = json!(preview);
    assert_eq!(report["dryRun"], true);
    let fates = reasons_by_id(report["backups"].as_array().unwrap());
    let expected = BTreeMap::from([
        (today.clone(), json!(["last", "daily"])),
        (yesterday.clone(), json!(["daily"])),
        (two_days.clone(), json!([])),
        (pinned.clone(), json!(["pinned"])),
        (evening.clone(), json!([])),
        (morning.clone(), json!([])),
    ]);
    assert_eq!(fates, expected);
    // Each deleted backup: its manifest, its one pack and its two KV entries.
    assert_eq!(report["deleted"]["backupPastRetention"], 3 * 4);

    let listed = desk.list_all(None, 1000);
    assert_eq!(
        reasons_by_id(&listed),
        expected,
        "listBackups shows the same"
    );

    let run = desk.sweep();
    assert_eq!(run["deleted"]["backupPastRetention"], 3 * 4);
    assert!(run.get("backups").is_none() && run.get("dryRun").is_none());
    for (id, alive) in [
        (&today, true),
        (&yesterday, true),
        (&pinned, true),
        (&two_days, false),
        (&evening, false),
        (&morning, false),
    ] {
        assert_eq!(desk.exists(id), alive, "{id}");
    }
    // Planning again over what was kept deletes nothing.
    let again = desk.sweep();
    assert_eq!(again["deleted"]["backupPastRetention"], 0);
}

#[test]
fn the_chain_head_and_the_parents_of_kept_backups_stay() {
    let desk = Desk::new(rotation(0, 1));
    let full = desk.automated_at(JUNE_1 - 2 * DAY);
    desk.archive("s-3", None);
    let incremental = desk.automated_at(JUNE_1 - DAY);
    // A manual backup later the same day takes the day's slot from the automated one.
    let manual = desk.manual_at(JUNE_1 - DAY + 3_600_000, None, false);
    desk.stores.clock.set_ms(JUNE_1);
    let listed = desk.list_all(None, 2);
    assert_eq!(
        reasons_by_id(&listed),
        BTreeMap::from([
            (manual.clone(), json!(["daily"])),
            (incremental.clone(), json!(["chainHead"])),
            (full.clone(), json!(["parent"])),
        ])
    );
    let kinds: Vec<(&str, bool)> = listed
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap(),
                b["incremental"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("manual", false), ("automated", true), ("automated", false)]
    );
    assert_eq!(listed[1]["parentBackupId"], json!(full));
    desk.sweep();
    assert!(desk.exists(&full) && desk.exists(&incremental) && desk.exists(&manual));
}

#[test]
fn list_backups_pages_newest_first_with_one_kv_list_a_page() {
    let desk = Desk::new(DataRetentionPolicy::default());
    let ids: Vec<String> = (0..7)
        .map(|n| desk.manual_at(JUNE_1 - (7 - n) * DAY, None, false))
        .collect();
    let own = desk.manual_at(JUNE_1, Some("u-1"), false);
    desk.stores.clock.set_ms(JUNE_1 + 1);
    let whole = desk.list_all(None, 1000);
    let newest_first: Vec<&str> = whole
        .iter()
        .map(|b| b["backupId"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    expected.insert(0, &own);
    assert_eq!(newest_first, expected);
    assert_eq!(whole[0]["forUser"], true);
    assert_eq!(whole[0]["sessionCount"], 1);
    assert_eq!(whole[1]["sessionCount"], 2);
    assert!(whole[1]["storedSize"].as_u64().unwrap() > 100);
    // Paged at any size: the same backups with the same decisions.
    for limit in [1, 2, 3, 8] {
        let counts = desk.stores.faults.counts();
        assert_eq!(desk.list_all(None, limit), whole, "limit {limit}");
        let lists = desk.stores.faults.counts().since(&counts);
        let pages = whole.len().div_ceil(limit as usize) as u64;
        assert!(lists.of(Binding::Kv, OperationKind::List) <= pages + 1);
        assert_eq!(lists.total(), lists.of(Binding::Kv, OperationKind::List));
    }
    // One user's backups only, with the decisions of the whole listing.
    let mine = desk.list_all(Some("u-1"), 3);
    assert_eq!(mine, whole[..1]);
    assert!(desk.list_all(Some("u-2"), 3).is_empty());
    // Bad input is named.
    for (limit, cursor, field) in [
        (0, None, "limit"),
        (1001, None, "limit"),
        (5, Some(""), "cursor"),
        (5, Some("7b7d"), "cursor"),
    ] {
        let err = block_on(desk.service.list_backups(None, limit, cursor)).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = block_on(desk.service.list_backups(Some(""), 5, None)).unwrap_err();
    assert_eq!(err.code(), "INVALID_ID");
}

#[test]
fn with_every_count_zero_backups_are_kept_by_age() {
    let policy = DataRetentionPolicy {
        archive_retention_ms: 10 * DAY as u64,
        ..rotation(0, 0)
    };
    let desk = Desk::new(policy);
    let old = desk.manual_at(JUNE_1 - 10 * DAY, None, false);
    let young = desk.manual_at(JUNE_1 - 9 * DAY, None, false);
    desk.stores.clock.set_ms(JUNE_1);
    assert_eq!(
        reasons_by_id(&desk.list_all(None, 5)),
        BTreeMap::from([
            (young.clone(), json!(["withinRetention"])),
            (old.clone(), json!([]))
        ])
    );
    desk.sweep();
    assert!(desk.exists(&young) && !desk.exists(&old));
}

#[test]
fn a_backup_missing_from_the_index_is_decided_by_age() {
    let desk = Desk::new(rotation(1, 0));
    let unindexed = desk.manual_at(T0 + DAY, None, false);
    let newest = desk.manual_at(T0 + 2 * DAY, None, false);
    // The index entry was never written (a failed KV put after the commit).
    let index_key = desk
        .stores
        .snapshot()
        .kv
        .keys()
        .find(|key| key.starts_with(BACKUP_INDEX_PREFIX) && key.ends_with(&unindexed))
        .cloned()
        .unwrap();
    block_on(desk.stores.kv.delete(&index_key)).unwrap();
    desk.sweep();
    assert!(desk
        .stores
        .snapshot()
        .r2
        .contains_key(&backup_manifest_object_key(
            &BackupId::parse(&unindexed).unwrap()
        )));
    assert!(desk.exists(&newest));
    desk.stores.clock.set_ms(T0 + 2 * DAY + 91 * DAY);
    desk.sweep();
    assert!(!desk
        .stores
        .snapshot()
        .r2
        .keys()
        .any(|key| key.contains(&unindexed)));
}

#[test]
fn index_failures_after_the_commit_leave_the_backup_whole() {
    let desk = Desk::new(DataRetentionPolicy::default());
    desk.stores.clock.set_ms(JUNE_1);
    // The calls of a backup of one session: KV get, R2 get, pack put, manifest put, then the
    // two KV puts (manifest copy and index entry), which may fail without failing the backup.
    let calls = desk.stores.faults.calls();
    desk.stores.faults.crash_after(calls + 4);
    let id = block_on(desk.service.create_backup(&["s-2".to_owned()], None, false)).unwrap();
    desk.stores.faults.clear();
    // Past the KV breaker the failures opened.
    desk.stores.clock.advance_ms(60_000);
    assert!(desk.list_all(None, 10).is_empty());
    assert_eq!(
        block_on(desk.service.restore_from_backup(&id, None)).unwrap(),
        ["s-2"]
    );
}

#[test]
fn backups_outside_the_index_keep_their_pins_and_parents() {
    let desk = Desk::new(rotation(1, 0));
    let pinned = desk.manual_at(JUNE_1 - 4 * DAY, None, true);
    let full = desk.automated_at(JUNE_1 - 3 * DAY);
    desk.archive("s-3", None);
    let middle = desk.automated_at(JUNE_1 - 2 * DAY);
    desk.archive("s-4", Some("u-1"));
    let newest = desk.automated_at(JUNE_1 - DAY);
    // Made before the index existed: only their `backup_manifest:` entries describe them.
    for id in [&pinned, &middle] {
        let index_key = desk
            .stores
            .snapshot()
            .kv
            .keys()
            .find(|key| key.starts_with(BACKUP_INDEX_PREFIX) && key.ends_with(id.as_str()))
            .cloned()
            .unwrap();
        block_on(desk.stores.kv.delete(&index_key)).unwrap();
    }
    // Long past `archiveRetention`: age alone would delete the two outside the index, and the
    // rotation (keep 1) every indexed one but the newest.
    desk.stores.clock.set_ms(JUNE_1 + 200 * DAY);
    let preview = block_on(desk.service.preview_retention_policy(RunBudget::default())).unwrap();
    let fates = reasons_by_id(json!(preview)["backups"].as_array().unwrap());
    assert_eq!(
        fates,
        BTreeMap::from([
            (newest.clone(), json!(["last", "chainHead"])),
            (middle.clone(), json!(["parent"])),
            (full.clone(), json!(["parent"])),
            (pinned.clone(), json!(["pinned"])),
        ])
    );
    desk.sweep();
    let r2 = desk.stores.snapshot().r2;
    for id in [&pinned, &full, &middle, &newest] {
        let manifest = backup_manifest_object_key(&BackupId::parse(id).unwrap());
        assert!(r2.contains_key(&manifest), "{id}");
    }
    let restored = block_on(desk.service.restore_from_backup(&newest, None)).unwrap();
    assert_eq!(restored.len(), 4, "{restored:?}");
}

#[test]
fn a_backup_whose_r2_delete_failed_keeps_its_kv_entries_through_resumed_runs() {
    let desk = Desk::new(rotation(1, 0));
    let old = desk.manual_at(JUNE_1 - DAY, None, false);
    let newest = desk.manual_at(JUNE_1, None, false);
    // Expired cache entries, enough that a budgeted run stops in the KV phase before it
    // reaches the backups' entries.
    for n in 0..120 {
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(json!({"createdAt": JUNE_1 - DAY, "expiresAt": JUNE_1})),
        };
        block_on(
            desk.stores
                .kv
                .put(&format!("query:{n:064x}"), b"v", options),
        )
        .unwrap();
    }
    desk.stores.clock.set_ms(JUNE_1 + 60_000);
    // The delete of the old backup's R2 objects fails, for this run only.
    desk.stores.faults.fail_next(
        1,
        FailureKind::Rejected,
        CallFilter::call(Binding::R2, OperationKind::Delete),
    );
    let budget = RunBudget {
        max_storage_calls: Some(40),
        deadline_ms: None,
    };
    let first = block_on(desk.service.enforce_retention_policy(budget)).unwrap();
    assert!(!first.status.complete, "{:?}", first.status);
    assert!(first.failed_deletions > 0 && desk.exists(&old));
    // The resumed runs start in the KV phase: they never list the old backup in R2, whose
    // manifest is still there, so its KV entries stay (the policy still decides it).
    loop {
        desk.stores.clock.advance_ms(60_000);
        let run = block_on(desk.service.enforce_retention_policy(budget)).unwrap();
        assert!(run.status.resumed, "{run:?}");
        if run.status.complete {
            break;
        }
    }
    assert!(
        desk.exists(&old),
        "the old backup is whole and still indexed"
    );
    assert_eq!(
        reasons_by_id(&desk.list_all(None, 10)),
        BTreeMap::from([(newest.clone(), json!(["last"])), (old.clone(), json!([]))])
    );
    // The next run from the start deletes it, R2 first.
    desk.sweep();
    assert!(!desk.exists(&old) && desk.exists(&newest));
}
