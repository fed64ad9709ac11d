//! The automated backup's steps (plan, one pack per step, commit) over the in-memory stores,
//! driven as the backup Workflow drives them: packs bounded per step, idempotent retries,
//! incremental backups, and nothing visible before the commit.

#[allow(dead_code)]
mod common;

use serde_json::{json, Value};
use supportbot_persistence::keys::{backup_manifest_object_key, backup_pack_key, BackupId};
use supportbot_persistence::service::{
    BackupPlan, BackupRequest, CommitStep, PackStep, PackStepReport, RunBudget, INDEX_LAG_MS,
};
use supportbot_persistence::store::memory::{block_on, MemoryStores};

use common::{archive_now, lose_all_archives, quiet_service, Service, DAY, T0};

struct Desk {
    stores: MemoryStores,
    service: Service,
}

impl Desk {
    fn new() -> Self {
        let stores = MemoryStores::new(T0, 11);
        let service = quiet_service(&stores);
        Desk { stores, service }
    }

    fn archive(&self, sid: &str, user: Option<&str>) {
        archive_now(
            &self.stores,
            &self.service,
            sid,
            user,
            "a question about my order",
        );
    }

    /// The pack steps of `plan` until the source is exhausted, each run twice (a retry) to
    /// check it writes the same pack; their reports.
    fn pack_steps(&self, plan: &BackupPlan) -> Vec<PackStepReport> {
        let mut reports = Vec::new();
        let mut from = None;
        loop {
            let written = reports
                .iter()
                .filter(|r: &&PackStepReport| r.record.is_some());
            let step = PackStep {
                plan: plan.clone(),
                pack: written.count() as u32,
                from: from.clone(),
            };
            let report = block_on(self.service.backup_pack(step.clone())).unwrap();
            let written = self.stores.snapshot();
            self.stores.clock.advance_ms(1_500);
            let retried = block_on(self.service.backup_pack(step)).unwrap();
            assert_eq!(retried, report, "a retried step does the same");
            if let Some(record) = &report.record {
                let again = &self.stores.snapshot().r2[&record.key];
                assert_eq!(again.body, written.r2[&record.key].body, "same bytes");
            }
            from = report.next.clone();
            reports.push(report);
            if from.is_none() {
                return reports;
            }
        }
    }

    /// A whole automated backup of `request`: its id and its steps' reports.
    fn backup(&self, request: BackupRequest, max_sessions: u32) -> (String, Vec<PackStepReport>) {
        let plan = block_on(self.service.plan_backup(request, max_sessions)).unwrap();
        let reports = self.pack_steps(&plan);
        let commit = CommitStep {
            plan: plan.clone(),
            packs: reports.iter().filter_map(|r| r.record.clone()).collect(),
            missing_session_ids: reports
                .iter()
                .flat_map(|r| r.missing_session_ids.clone())
                .collect(),
        };
        let id = block_on(self.service.commit_backup(commit)).unwrap();
        self.stores.clock.advance_ms(1_500);
        (id, reports)
    }

    /// Archives `first`, backs them up, archives `then` and backs up again (`per_pack` archives a
    /// step): the ids of the full backup and of the incremental one.
    fn full_then_incremental(
        &self,
        first: std::ops::Range<usize>,
        then: std::ops::Range<usize>,
        per_pack: u32,
    ) -> (String, String) {
        for sid in sids(first) {
            self.archive(&sid, None);
        }
        let (full, _) = self.backup(BackupRequest::default(), per_pack);
        for sid in sids(then) {
            self.archive(&sid, None);
        }
        let (incremental, _) = self.backup(BackupRequest::default(), per_pack);
        (full, incremental)
    }

    fn manifest(&self, id: &str) -> Value {
        let key = backup_manifest_object_key(&BackupId::parse(id).unwrap());
        serde_json::from_slice(&self.stores.snapshot().r2[&key].body).unwrap()
    }

    fn sessions_of(&self, id: &str) -> Vec<String> {
        let ids = self.manifest(id)["sessionIds"].as_array().unwrap().clone();
        let mut ids: Vec<String> = ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    }
}

fn sids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("s-{n:02}")).collect()
}

#[test]
fn the_whole_store_is_backed_up_a_bounded_pack_per_step_and_restores() {
    let desk = Desk::new();
    for sid in sids(0..7) {
        desk.archive(&sid, Some("u-1"));
    }
    let (id, reports) = desk.backup(BackupRequest::default(), 3);
    let sizes: Vec<usize> = reports
        .iter()
        .map(|r| r.record.as_ref().map_or(0, |p| p.sessions.len()))
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    let manifest = desk.manifest(&id);
    assert_eq!(manifest["kind"], json!("automated"));
    assert!(manifest.get("parentBackupId").is_none());
    assert_eq!(desk.sessions_of(&id), sids(0..7));
    for index in 0..3 {
        let key = backup_pack_key(&BackupId::parse(&id).unwrap(), index);
        assert!(desk.stores.snapshot().r2.contains_key(&key), "{key}");
    }
    lose_all_archives(&desk.stores);
    let mut restored = block_on(desk.service.restore_from_backup(&id, None)).unwrap();
    restored.sort();
    assert_eq!(restored, sids(0..7));
}

#[test]
fn an_incremental_backup_holds_what_was_archived_after_the_last_one() {
    let desk = Desk::new();
    // Three more archives right after the first four: those are within the high-water mark's
    // lag, listed again, and skipped because the parent holds them.
    let (full, incremental) = desk.full_then_incremental(0..4, 4..7, 2);
    let manifest = desk.manifest(&incremental);
    assert_eq!(manifest["parentBackupId"], json!(full));
    assert_eq!(desk.sessions_of(&incremental), sids(4..7));
    // Restoring the incremental one restores its parent first.
    lose_all_archives(&desk.stores);
    let mut restored = block_on(desk.service.restore_from_backup(&incremental, None)).unwrap();
    restored.sort();
    assert_eq!(restored, sids(0..7));
    // Long after, with nothing new: an empty incremental backup of the second.
    desk.stores.clock.advance_ms(INDEX_LAG_MS as u64 + 60_000);
    let (third, _) = desk.backup(BackupRequest::default(), 2);
    assert_eq!(desk.manifest(&third)["parentBackupId"], json!(incremental));
    assert_eq!(desk.sessions_of(&third), Vec::<String>::new());
}

#[test]
fn given_sessions_and_one_users_archives_are_backed_up_alone() {
    let desk = Desk::new();
    desk.archive("mine-1", Some("alice"));
    desk.archive("theirs", Some("bob"));
    desk.archive("mine-2", Some("alice"));
    let request = BackupRequest {
        user_id: Some("alice".into()),
        ..BackupRequest::default()
    };
    let (id, _) = desk.backup(request, 1);
    assert_eq!(desk.sessions_of(&id), ["mine-1", "mine-2"]);
    assert_eq!(desk.manifest(&id)["userId"], json!("alice"));
    let request = BackupRequest {
        session_ids: Some(vec![
            "theirs".into(),
            "gone".into(),
            "theirs".into(),
            "mine-1".into(),
        ]),
        ..BackupRequest::default()
    };
    let (id, reports) = desk.backup(request, 1);
    assert_eq!(desk.sessions_of(&id), ["mine-1", "theirs"]);
    assert_eq!(desk.manifest(&id)["missingSessionIds"], json!(["gone"]));
    assert_eq!(reports.len(), 3);
}

#[test]
fn nothing_is_visible_before_the_commit_and_bad_plans_are_refused() {
    let desk = Desk::new();
    desk.archive("s-1", None);
    let plan = block_on(desk.service.plan_backup(BackupRequest::default(), 5)).unwrap();
    let reports = desk.pack_steps(&plan);
    assert_eq!(reports.len(), 1);
    // Packs written, no manifest: no backup.
    let err = block_on(desk.service.restore_from_backup(&plan.backup_id, None)).unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    // A commit with packs that are not this backup's, in order, is refused.
    let mut packs: Vec<_> = reports.iter().filter_map(|r| r.record.clone()).collect();
    packs[0].key = "backups/other/pack-0.json.gz".into();
    let commit = CommitStep {
        plan: plan.clone(),
        packs,
        missing_session_ids: vec![],
    };
    let err = block_on(desk.service.commit_backup(commit)).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    for (request, field) in [
        (
            BackupRequest {
                session_ids: Some(vec![]),
                ..Default::default()
            },
            "sessionIds",
        ),
        (
            BackupRequest {
                session_ids: Some(vec!["s-1".into()]),
                since: Some(1),
                ..Default::default()
            },
            "sessionIds",
        ),
    ] {
        let err = block_on(desk.service.plan_backup(request, 5)).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    let request = BackupRequest {
        user_id: Some("bad\nuser".into()),
        ..Default::default()
    };
    assert_eq!(
        block_on(desk.service.plan_backup(request, 5))
            .unwrap_err()
            .code(),
        "INVALID_ID"
    );
}

#[test]
fn a_restore_runs_a_pack_at_a_time_along_the_chain() {
    let desk = Desk::new();
    let (full, incremental) = desk.full_then_incremental(0..5, 5..7, 2);
    let chain = block_on(desk.service.plan_restore(&incremental, None)).unwrap();
    // Five archives two a pack, then two in one pack: the plan says how many each pack holds.
    assert_eq!(
        chain,
        [
            (full.clone(), 3, vec![2, 2, 1]),
            (incremental.clone(), 1, vec![2])
        ]
    );
    lose_all_archives(&desk.stores);
    let mut restored = Vec::new();
    for (id, packs, archives) in &chain {
        assert_eq!(archives.len(), *packs);
        // A step per archive, as a RestoreWorkflow with RESTORE_STEP_SESSIONS = 1 runs it.
        for (index, count) in archives.iter().enumerate() {
            for first in 0..*count {
                let step = desk.service.restore_pack(id, index, None, first..first + 1);
                let sessions = block_on(step).unwrap();
                assert_eq!(sessions.len(), 1, "{id} pack {index} archive {first}");
                restored.extend(sessions);
            }
        }
    }
    restored.sort();
    assert_eq!(restored, sids(0..7));
    // Idempotent (the index's order: newest first), and a pack the backup does not have is
    // refused naming it.
    assert_eq!(
        block_on(
            desk.service
                .restore_pack(&incremental, 0, None, 0..usize::MAX)
        )
        .unwrap(),
        ["s-06", "s-05"]
    );
    // A slice of a pack: its archives at those positions, fewer at the pack's end.
    let slice = |range| block_on(desk.service.restore_pack(&incremental, 0, None, range)).unwrap();
    assert_eq!(slice(1..2), ["s-05"]);
    assert_eq!(slice(1..9), ["s-05"]);
    assert!(slice(2..3).is_empty() && slice(5..9).is_empty());
    let err = block_on(desk.service.restore_pack(&incremental, 1, None, 0..1)).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    assert!(err.to_string().contains("pack 1"), "{err}");
}

#[test]
fn only_backups_of_the_whole_store_continue_the_chain() {
    let desk = Desk::new();
    desk.archive("alice-1", Some("alice"));
    desk.archive("bob-0", Some("bob"));
    let (full, _) = desk.backup(BackupRequest::default(), 10);
    desk.archive("bob-1", Some("bob"));
    let alices = BackupRequest {
        user_id: Some("alice".into()),
        ..BackupRequest::default()
    };
    desk.backup(alices, 10);
    let from_time = BackupRequest {
        since: Some(T0 + 3_600_000),
        ..BackupRequest::default()
    };
    desk.backup(from_time, 10);
    // The next backup of the whole store chains to the full one, so bob-1 is in it.
    let (next, _) = desk.backup(BackupRequest::default(), 10);
    assert_eq!(desk.manifest(&next)["parentBackupId"], json!(full));
    assert!(desk.sessions_of(&next).contains(&"bob-1".to_owned()));
}

#[test]
fn a_damaged_archive_is_left_out_and_reported_without_stopping_the_backup() {
    let desk = Desk::new();
    for sid in sids(0..3) {
        desk.archive(&sid, None);
    }
    let snapshot = desk.stores.snapshot();
    let damaged = snapshot
        .r2
        .keys()
        .find(|key| key.contains("archive_s-01_"))
        .unwrap()
        .clone();
    assert!(desk.stores.r2.corrupt(&damaged, 20));
    let (id, reports) = desk.backup(BackupRequest::default(), 10);
    let unreadable: Vec<String> = reports
        .iter()
        .flat_map(|r| r.unreadable_archives.clone())
        .collect();
    assert_eq!(unreadable, [damaged]);
    assert_eq!(desk.sessions_of(&id), ["s-00", "s-02"]);
}

#[test]
fn retention_keeps_the_backups_a_newer_one_depends_on_and_those_made_to_keep() {
    let desk = Desk::new();
    desk.archive("s-1", None);
    let (full, _) = desk.backup(BackupRequest::default(), 10);
    let pinned = BackupRequest {
        session_ids: Some(vec!["s-1".into()]),
        keep: true,
        ..BackupRequest::default()
    };
    let (kept, _) = desk.backup(pinned, 10);
    desk.stores.clock.advance_ms(6 * DAY as u64);
    desk.archive("s-2", None);
    let (incremental, _) = desk.backup(BackupRequest::default(), 10);
    assert_eq!(desk.manifest(&incremental)["parentBackupId"], json!(full));
    // Past archiveRetention (90 days) for the full backup and the kept one, not the incremental.
    desk.stores.clock.advance_ms(85 * DAY as u64);
    let run = block_on(desk.service.enforce_retention_policy(RunBudget::default())).unwrap();
    assert!(run.status.complete, "{run:?}");
    let stored = desk.stores.snapshot();
    for id in [&full, &kept] {
        let key = backup_manifest_object_key(&BackupId::parse(id).unwrap());
        assert!(stored.r2.contains_key(&key), "{key} deleted");
        assert!(
            stored.kv.contains_key(&format!("backup_manifest:{id}")),
            "{id}'s copy"
        );
    }
    lose_all_archives(&desk.stores);
    let mut restored = block_on(desk.service.restore_from_backup(&incremental, None)).unwrap();
    restored.sort();
    assert_eq!(restored, ["s-1", "s-2"]);
}

#[test]
fn a_chain_that_began_a_week_ago_ends_with_a_full_backup() {
    let desk = Desk::new();
    desk.archive("s-1", None);
    let (first, _) = desk.backup(BackupRequest::default(), 10);
    desk.stores.clock.advance_ms(3 * DAY as u64);
    desk.archive("s-2", None);
    let (second, _) = desk.backup(BackupRequest::default(), 10);
    assert_eq!(desk.manifest(&second)["parentBackupId"], json!(first));
    desk.stores.clock.advance_ms(5 * DAY as u64);
    desk.archive("s-3", None);
    let (third, _) = desk.backup(BackupRequest::default(), 10);
    // Eight days after the chain's first backup: a full one, holding everything.
    assert!(desk.manifest(&third).get("parentBackupId").is_none());
    assert_eq!(desk.sessions_of(&third), ["s-1", "s-2", "s-3"]);
    desk.stores.clock.advance_ms(DAY as u64);
    desk.archive("s-4", None);
    let (fourth, _) = desk.backup(BackupRequest::default(), 10);
    assert_eq!(desk.manifest(&fourth)["parentBackupId"], json!(third));
}

#[test]
fn a_backup_too_old_to_commit_safely_is_refused_and_its_packs_are_swept() {
    const HOUR: i64 = 3_600_000;
    let desk = Desk::new();
    desk.archive("s-1", None);
    let plan = block_on(desk.service.plan_backup(BackupRequest::default(), 5)).unwrap();
    let reports = desk.pack_steps(&plan);
    let commit = CommitStep {
        plan: plan.clone(),
        packs: reports.iter().filter_map(|r| r.record.clone()).collect(),
        missing_session_ids: vec![],
    };
    // Retention sweeps an uncommitted backup's packs once all are older than 24 h; its steps
    // stop an hour before that.
    desk.stores.clock.set_ms(plan.created_at + 23 * HOUR + 1);
    let err = block_on(desk.service.commit_backup(commit.clone())).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    assert!(err.to_string().contains("plan.createdAt"), "{err}");
    let step = PackStep {
        plan: plan.clone(),
        pack: 0,
        from: None,
    };
    let err = block_on(desk.service.backup_pack(step)).unwrap_err();
    assert!(err.to_string().contains("plan.createdAt"), "{err}");
    desk.stores.clock.set_ms(plan.created_at + 25 * HOUR);
    let run = block_on(desk.service.enforce_retention_policy(RunBudget::default())).unwrap();
    assert!(run.status.complete, "{run:?}");
    assert!(
        !desk
            .stores
            .snapshot()
            .r2
            .keys()
            .any(|key| key.contains(&plan.backup_id)),
        "the packs are swept"
    );
    // Just within the bound, a commit succeeds.
    let plan = block_on(desk.service.plan_backup(BackupRequest::default(), 5)).unwrap();
    let reports = desk.pack_steps(&plan);
    desk.stores.clock.set_ms(plan.created_at + 23 * HOUR);
    let commit = CommitStep {
        plan: plan.clone(),
        packs: reports.iter().filter_map(|r| r.record.clone()).collect(),
        missing_session_ids: vec![],
    };
    assert_eq!(
        block_on(desk.service.commit_backup(commit)).unwrap(),
        plan.backup_id
    );
}

impl Desk {
    /// Restores `id` and the backups it depends on a pack step at a time, as the restore
    /// Workflow does; the sessions restored.
    fn restore_in_steps(&self, id: &str, owner: Option<&str>) -> Vec<String> {
        let mut restored = Vec::new();
        for (id, packs, _) in block_on(self.service.plan_restore(id, owner)).unwrap() {
            for index in 0..packs {
                let step = self.service.restore_pack(&id, index, owner, 0..usize::MAX);
                restored.extend(block_on(step).unwrap());
            }
        }
        restored
    }
}

/// The Workflow's steps back up archives whose stored bytes cannot be decoded (as encrypted
/// ones will be) as stored, from given sessions, a user's index and the whole store's, and
/// restore them byte for byte under their own keys with their KV entries as they were; also an
/// older archive of a session whose summary its listing had to cut (its record describes the
/// newer one): its restored listing entries are as they were, cut and saying so.
#[test]
fn steps_back_up_and_restore_archives_as_stored_never_decoded() {
    let desk = Desk::new();
    desk.archive("plain", None);
    desk.archive("sealed", Some("u-1"));
    let long = json!({"sessionId": "long", "messages": [], "summary": "word ".repeat(400),
                      "context": {}});
    for _ in 0..2 {
        let now = supportbot_persistence::store::Clock::now_ms(&desk.stores.clock);
        let session = common::session_at("long", Some("u-1"), now - 1_000, now);
        block_on(
            desk.service
                .archive_conversation(&long.to_string(), &session.to_string()),
        )
        .unwrap();
        desk.stores.clock.advance_ms(1_500);
    }
    common::seal_archives(&desk.stores, "sealed");
    common::seal_archives(&desk.stores, "long");
    let before = desk.stores.snapshot();
    let cut = before
        .kv
        .iter()
        .filter(|(key, _)| key.starts_with("archive_index:") && key.ends_with(":long"))
        .all(|(_, entry)| entry.metadata.as_ref().unwrap()["summaryTruncated"] == json!(true));
    assert!(cut, "the long summary is cut in its listing entries");

    let requests = [
        (BackupRequest::default(), None, 4),
        (
            BackupRequest {
                user_id: Some("u-1".into()),
                ..BackupRequest::default()
            },
            Some("u-1"),
            3,
        ),
        (
            BackupRequest {
                session_ids: Some(vec!["sealed".into(), "long".into(), "plain".into()]),
                ..BackupRequest::default()
            },
            None,
            3,
        ),
    ];
    // Every backup made of the same archives first; each then restored into empty stores.
    let backups: Vec<_> = requests
        .into_iter()
        .map(|(request, owner, archives)| {
            let context = format!("{request:?}");
            (desk.backup(request, 40).0, owner, archives, context)
        })
        .collect();
    for (id, owner, archives, context) in backups {
        let manifest = desk.manifest(&id);
        assert_eq!(manifest["formatVersion"], json!(3), "{context}");
        let listed: usize = manifest["packs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pack| pack["sessions"].as_array().unwrap().len())
            .sum();
        assert_eq!(listed, archives, "{context}");
        lose_all_archives(&desk.stores);
        desk.stores.clock.advance_ms(5_000);
        let restored = desk.restore_in_steps(&id, owner);
        assert_eq!(restored.len(), archives, "{context}: {restored:?}");
        let mut expected = before.clone();
        if archives == 3 {
            // Given sessions: each one's newest archive; a user's: not the anonymous one.
            let older_long = before
                .r2
                .keys()
                .find(|key| key.contains("_long_"))
                .unwrap()
                .clone();
            let keep_older = owner.is_some();
            expected.r2.retain(|key, _| {
                (keep_older || *key != older_long) && (owner.is_none() || !key.contains("_plain_"))
            });
            expected.kv.retain(|key, entry| {
                let older = entry
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m["key"] == json!(older_long));
                (keep_older || !older || key.starts_with("archive_meta:"))
                    && (owner.is_none() || !key.ends_with(":plain"))
            });
        }
        common::assert_archives_as_before(&expected, &desk.stores.snapshot());
    }
}

/// An index backup of an encrypted store takes every archive the index lists, an older one of
/// a session included: its listing entry (no `summary`, an `encryptedSummary`) describes it,
/// where the session's record now describes the newer one.
#[test]
fn an_index_backup_of_an_encrypted_store_takes_superseded_archives_too() {
    use std::rc::Rc;

    let stores = MemoryStores::new(T0, 11);
    let keys = json!([{"id": "k1", "key": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="}]);
    let options = supportbot_persistence::service::ServiceOptions::from_json(
        &json!({ "encryptionKeys": keys }).to_string(),
    )
    .unwrap();
    let service = common::service_over(
        &stores,
        Rc::new(common::Discard),
        Default::default(),
        options,
    );
    let desk = Desk { stores, service };
    desk.archive("twice", Some("u-1"));
    desk.archive("other", Some("u-2"));
    desk.archive("twice", Some("u-1"));
    let before = desk.stores.snapshot();
    let archives: Vec<String> = before
        .r2
        .keys()
        .filter(|key| key.starts_with("conversations/"))
        .cloned()
        .collect();
    assert_eq!(archives.len(), 3);
    assert!(archives.iter().all(|key| key.ends_with(".json.gz.enc")));

    let (id, reports) = desk.backup(BackupRequest::default(), 40);
    let unreadable: Vec<&String> = reports
        .iter()
        .flat_map(|r| &r.unreadable_archives)
        .collect();
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let packed: usize = desk.manifest(&id)["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pack| pack["sessions"].as_array().unwrap().len())
        .sum();
    assert_eq!(packed, 3);
    lose_all_archives(&desk.stores);
    desk.stores.clock.advance_ms(5_000);
    block_on(desk.service.restore_from_backup(&id, None)).unwrap();
    let after = desk.stores.snapshot();
    for key in &archives {
        assert!(
            after.r2[key].body == before.r2[key].body,
            "{key} not restored as stored"
        );
    }
}
