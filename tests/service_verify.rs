//! `verifyStorage`: the corruption matrix (each stored object damaged in turn — a flipped byte,
//! truncated, deleted, two bodies swapped — is reported exactly, with the right problem; with
//! repair, what has a verified copy is repaired and a second pass finds nothing; what has none
//! is reported and left as it is), missing index entries, sampling and resuming, erasures, and
//! what `healthCheck` shows.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{archive_now, assert_budget_refused, service_over, Discard, Service, DAY, NOW};
use serde_json::json;
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    HealthStatus, ProblemKind, RunBudget, Sample, ServiceOptions, VerificationReport,
    VerifyOptions, INDEX_LAG_MS, MIN_VERIFY_CALLS, REPLICA_LAG_DEGRADED_MS,
};
use supportbot_persistence::store::memory::{block_on, MemoryR2, MemoryStores};
use supportbot_persistence::store::{KvStore, ObjectPutOptions, ObjectStore};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn options(encrypted: bool) -> ServiceOptions {
    if !encrypted {
        return ServiceOptions::default();
    }
    let keys = json!([{"id": "k1", "key": STANDARD.encode([7u8; 32])}]);
    ServiceOptions::from_json(&json!({ "encryptionKeys": keys }).to_string()).unwrap()
}

/// A store of four archives (two of Alice, one of Bob, one without a user) and a backup of the
/// first three; `s4` is archived after the backup. The clock is past the index lag.
fn store(encrypted: bool) -> (MemoryStores, Service) {
    let stores = MemoryStores::new(NOW, 7);
    let service = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options(encrypted),
    );
    archive_now(&stores, &service, "s1", Some(ALICE), "my invoice");
    archive_now(&stores, &service, "s2", Some(BOB), "my refund");
    archive_now(&stores, &service, "s3", None, "anonymous question");
    let ids = ["s1", "s2", "s3"].map(String::from);
    block_on(service.create_backup(&ids, None, false)).unwrap();
    stores.clock.advance_ms(1_500);
    archive_now(&stores, &service, "s4", Some(ALICE), "my second invoice");
    stores.clock.advance_ms(INDEX_LAG_MS as u64 + 1_000);
    (stores, service)
}

/// The open problems `healthCheck` shows.
fn open_problems(service: &Service) -> u64 {
    block_on(service.health_check())
        .verification
        .unwrap()
        .problems
}

fn verify(service: &Service, repair: bool) -> VerificationReport {
    let options = VerifyOptions {
        sample: Sample::default(),
        repair,
    };
    block_on(service.verify_storage(options, RunBudget::default())).unwrap()
}

/// The problems of a report by key, with whether each was repaired.
fn problems(report: &VerificationReport) -> BTreeMap<String, (ProblemKind, bool)> {
    report
        .problems
        .iter()
        .map(|problem| (problem.key.clone(), (problem.problem, problem.repaired)))
        .collect()
}

fn archive_key(stores: &MemoryStores, sid: &str) -> String {
    let marker = format!("/archive_{sid}_");
    stores
        .r2
        .keys()
        .into_iter()
        .find(|key| key.contains(&marker))
        .unwrap()
}

fn backup_keys(stores: &MemoryStores) -> (String, String) {
    let keys = stores.r2.keys();
    let manifest = keys.iter().find(|key| key.ends_with("/manifest.json"));
    let pack = keys.iter().find(|key| key.contains("/pack-0."));
    (manifest.unwrap().clone(), pack.unwrap().clone())
}

/// Replaces the body under `key`, keeping its custom metadata (R2's own checksum is lost, as a
/// rewrite by another tool would lose it; the recorded one is in the custom metadata).
fn rewrite(stores: &MemoryStores, key: &str, body: &[u8]) {
    let object = stores.snapshot().r2.remove(key).unwrap();
    let options = ObjectPutOptions {
        custom_metadata: object.meta.custom_metadata,
        ..ObjectPutOptions::default()
    };
    block_on(stores.r2.put(key, body, options)).unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipByte,
    Truncate,
    Delete,
}

fn damage(stores: &MemoryStores, key: &str, how: Damage) {
    let body = stores.snapshot().r2[key].body.clone();
    match how {
        Damage::FlipByte => assert!(stores.r2.corrupt(key, body.len() / 2)),
        Damage::Truncate => rewrite(stores, key, &body[..body.len() - 9]),
        Damage::Delete => block_on(stores.r2.delete(&[key.to_owned()])).unwrap(),
    }
}

#[test]
fn a_sound_store_has_no_problems_and_health_shows_the_pass() {
    for encrypted in [false, true] {
        let (_stores, service) = store(encrypted);
        let health = block_on(service.health_check());
        assert_eq!(health.verification, None, "never ran");
        let report = verify(&service, false);
        assert!(report.status.complete, "{report:?}");
        assert_eq!(report.problems, vec![]);
        // 4 archives, the manifest and its pack.
        assert_eq!(report.objects_checked, 6);
        assert_eq!(report.backups_checked, 1);
        // Each archive's 1-2 index entries, then every KV entry pointing at an archive.
        assert!(report.entries_checked >= 7 + 7, "{report:?}");
        // Known from the listings, so without a call each: 2 (resume point, summary), 5 KV
        // lists (the index prefixes before the archives, all three after), 2 R2 lists, 4
        // archives, the manifest and the pack, and the summary written.
        assert_eq!(
            report.status.storage_calls,
            2 + 5 + 2 + 4 + 2 + 1,
            "{report:?}"
        );
        let health = block_on(service.health_check());
        assert_eq!(health.status, HealthStatus::Healthy);
        let verification = health.verification.unwrap();
        assert_eq!(verification.problems, 0);
        assert!(!verification.stale && verification.last_complete_at.is_some());
    }
}

#[test]
fn each_damaged_archive_is_reported_and_repaired_from_the_backup() {
    for encrypted in [false, true] {
        for sid in ["s1", "s2", "s3"] {
            for how in [Damage::FlipByte, Damage::Truncate, Damage::Delete] {
                let (stores, service) = store(encrypted);
                let key = archive_key(&stores, sid);
                let original = stores.snapshot().r2[&key].body.clone();
                damage(&stores, &key, how);
                let expected = match how {
                    Damage::Delete => ProblemKind::Missing,
                    _ => ProblemKind::ChecksumMismatch,
                };
                let case = format!("{sid} {how:?} encrypted={encrypted}");
                let found = verify(&service, false);
                let want = BTreeMap::from([(key.clone(), (expected, false))]);
                assert_eq!(problems(&found), want, "{case}");
                let health = block_on(service.health_check());
                assert_eq!(health.status, HealthStatus::Degraded, "{case}");
                assert_eq!(health.verification.unwrap().problems, 1, "{case}");

                let repaired = verify(&service, true);
                let want = BTreeMap::from([(key.clone(), (expected, true))]);
                assert_eq!(problems(&repaired), want, "{case}");
                assert!(repaired.problems[0]
                    .repaired_from
                    .as_deref()
                    .unwrap()
                    .starts_with("backup "));
                assert_eq!(stores.snapshot().r2[&key].body, original, "{case}");
                assert_eq!(verify(&service, false).problems, vec![], "{case}");
                assert!(block_on(service.retrieve_archive(&key)).unwrap().is_some());
                assert_eq!(
                    block_on(service.health_check()).status,
                    HealthStatus::Healthy,
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn two_swapped_archives_are_both_reported_and_both_repaired() {
    for encrypted in [false, true] {
        let (stores, service) = store(encrypted);
        let (one, two) = (archive_key(&stores, "s1"), archive_key(&stores, "s2"));
        let snapshot = stores.snapshot();
        rewrite(&stores, &one, &snapshot.r2[&two].body);
        rewrite(&stores, &two, &snapshot.r2[&one].body);
        let found = problems(&verify(&service, false));
        let want = BTreeMap::from([
            (one.clone(), (ProblemKind::ChecksumMismatch, false)),
            (two.clone(), (ProblemKind::ChecksumMismatch, false)),
        ]);
        assert_eq!(found, want);
        assert_eq!(verify(&service, true).repaired, 2);
        assert_eq!(stores.snapshot().r2[&one].body, snapshot.r2[&one].body);
        assert_eq!(stores.snapshot().r2[&two].body, snapshot.r2[&two].body);
        assert_eq!(verify(&service, false).problems, vec![]);
    }
}

#[test]
fn damage_without_a_verified_copy_is_reported_and_left_as_it_is() {
    for encrypted in [false, true] {
        // s4 was archived after the backup; the backup itself has no copy.
        let (stores, service) = store(encrypted);
        let (manifest, pack) = backup_keys(&stores);
        let s4 = archive_key(&stores, "s4");
        for (key, how, expected) in [
            (s4.clone(), Damage::FlipByte, ProblemKind::ChecksumMismatch),
            (
                pack.clone(),
                Damage::FlipByte,
                ProblemKind::ChecksumMismatch,
            ),
            (
                pack.clone(),
                Damage::Truncate,
                ProblemKind::ChecksumMismatch,
            ),
            (pack.clone(), Damage::Delete, ProblemKind::Missing),
            (manifest.clone(), Damage::FlipByte, ProblemKind::Corrupt),
            (manifest.clone(), Damage::Delete, ProblemKind::Missing),
        ] {
            let (stores, service) = store(encrypted);
            let case = format!("{key} {how:?} encrypted={encrypted}");
            damage(&stores, &key, how);
            let before = stores.snapshot();
            let report = verify(&service, true);
            let want = BTreeMap::from([(key.clone(), (expected, false))]);
            assert_eq!(problems(&report), want, "{case}");
            let after = stores.snapshot();
            assert_eq!(
                after.r2.keys().collect::<Vec<_>>(),
                before.r2.keys().collect::<Vec<_>>()
            );
            for (stored_key, object) in &before.r2 {
                assert_eq!(
                    after.r2[stored_key].body, object.body,
                    "{case}: {stored_key}"
                );
            }
            let health = block_on(service.health_check());
            assert_eq!(health.status, HealthStatus::Degraded, "{case}");
        }
        drop((stores, service));
    }
}

#[test]
fn a_missing_index_entry_is_reported_and_rebuilt_as_archiving_wrote_it() {
    for encrypted in [false, true] {
        let (stores, service) = store(encrypted);
        let snapshot = stores.snapshot();
        let entries: Vec<String> = snapshot
            .kv
            .keys()
            .filter(|key| key.starts_with("archive_index:") || key.starts_with("user_archives:"))
            .filter(|key| key.ends_with(":s1"))
            .cloned()
            .collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        for entry in &entries {
            block_on(stores.kv.delete(entry)).unwrap();
        }
        let key = archive_key(&stores, "s1");
        let report = verify(&service, false);
        assert_eq!(
            problems(&report),
            BTreeMap::from([(key.clone(), (ProblemKind::NotIndexed, false))])
        );
        assert!(
            report.problems[0].detail.contains(&entries[0]),
            "{report:?}"
        );
        let report = verify(&service, true);
        assert_eq!(report.repaired, 1);
        let rebuilt = stores.snapshot();
        for entry in &entries {
            assert_eq!(rebuilt.kv[entry].value, snapshot.kv[entry].value, "{entry}");
            let (was, now) = (&snapshot.kv[entry].metadata, &rebuilt.kv[entry].metadata);
            if !encrypted {
                assert_eq!(now, was, "{entry}");
            }
        }
        // Listed again, its summary readable (sealed again under Alice's key when encrypted).
        let listed = block_on(service.list_archived_conversations(Some(ALICE), 10, None)).unwrap();
        let text = serde_json::to_string(&listed.archives).unwrap();
        assert!(text.contains("Summary of s1"), "{text}");
        if encrypted {
            let entry = &rebuilt.kv[&entries[0]];
            let metadata = entry.metadata.as_ref().unwrap().to_string();
            assert!(!metadata.contains("Summary of s1"), "{metadata}");
        }
        assert_eq!(verify(&service, false).problems, vec![]);
    }
}

#[test]
fn a_sampled_pass_resumes_and_n_passes_check_every_archive_once() {
    let (stores, service) = store(false);
    for n in 5..40 {
        archive_now(&stores, &service, &format!("s{n}"), None, "question");
    }
    stores.clock.advance_ms(INDEX_LAG_MS as u64 + 1_000);
    let archives = stores
        .r2
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("conversations/"))
        .count() as u64;
    let sample = Sample::parse("1/3").unwrap();
    let options = VerifyOptions {
        sample,
        repair: false,
    };
    let budget = RunBudget {
        max_storage_calls: Some(MIN_VERIFY_CALLS + 4),
        deadline_ms: None,
    };
    let mut checked = 0;
    let mut slots = Vec::new();
    let mut runs = 0;
    while slots.len() < 3 {
        let report = block_on(service.verify_storage(options, budget)).unwrap();
        assert!(
            report.status.storage_calls <= MIN_VERIFY_CALLS + 4,
            "{report:?}"
        );
        assert_eq!(report.problems, vec![]);
        checked += report.objects_checked - report.backups_checked;
        runs += 1;
        assert!(runs < 100, "no progress: {report:?}");
        if report.status.complete {
            slots.push(report.slot);
        } else {
            assert!(report.status.stopped_by.is_some());
        }
    }
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2]);
    // Every archive once; packs are counted by the pass of their backup's slot.
    let (_, pack) = backup_keys(&stores);
    let packs = u64::from(stores.r2.keys().contains(&pack));
    assert!(
        checked == archives || checked == archives + packs,
        "{checked} of {archives}"
    );
    assert!(runs > 3, "a small budget needs several runs per pass");
    assert_budget_refused(block_on(service.verify_storage(
        options,
        RunBudget {
            max_storage_calls: Some(MIN_VERIFY_CALLS - 1),
            deadline_ms: None,
        },
    )));
}

#[test]
fn what_an_erasure_covers_is_neither_a_problem_nor_brought_back() {
    let (stores, service) = store(false);
    // Alice's erasure stopped after its tombstone and before her archives went.
    let budget = RunBudget {
        max_storage_calls: Some(supportbot_persistence::service::MIN_ERASURE_CALLS),
        deadline_ms: None,
    };
    let receipt = block_on(service.erase_user_data(ALICE, budget)).unwrap();
    assert!(!receipt.status.complete);
    let s1 = archive_key(&stores, "s1");
    damage(&stores, &s1, Damage::FlipByte);
    let damaged = stores.snapshot().r2[&s1].body.clone();
    let report = verify(&service, true);
    assert!(
        report
            .problems
            .iter()
            .all(|problem| !problem.key.contains("_s1_")),
        "{report:?}"
    );
    let s1_stored = stores
        .snapshot()
        .r2
        .get(&s1)
        .map(|object| object.body.clone());
    assert_eq!(
        s1_stored,
        Some(damaged),
        "the erased archive is not repaired"
    );
    let retrieved = block_on(service.retrieve_archive(&s1)).unwrap_or(None);
    assert_eq!(retrieved, None, "erased");
}

#[test]
fn a_stale_verification_degrades_health() {
    let (stores, service) = store(false);
    verify(&service, false);
    assert_eq!(
        block_on(service.health_check()).status,
        HealthStatus::Healthy
    );
    stores.clock.advance_ms(49 * 60 * 60 * 1000);
    let health = block_on(service.health_check());
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.verification.unwrap().stale);
    verify(&service, false);
    assert_eq!(
        block_on(service.health_check()).status,
        HealthStatus::Healthy
    );
}

#[test]
fn without_encryption_keys_encrypted_archives_are_checked_by_their_checksum() {
    let (stores, _) = store(true);
    let keyless = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    );
    let report = verify(&keyless, false);
    assert_eq!(
        (report.not_decrypted, report.problems.len()),
        (4, 0),
        "{report:?}"
    );
    let s2 = archive_key(&stores, "s2");
    damage(&stores, &s2, Damage::FlipByte);
    let report = verify(&keyless, false);
    let want = BTreeMap::from([(s2, (ProblemKind::ChecksumMismatch, false))]);
    assert_eq!(problems(&report), want);
}

/// [`store`] with a replica bucket, in sync (the backup's queued copy made), past the lag
/// within which a copy may still be queued.
fn replicated_store(encrypted: bool) -> (MemoryStores, MemoryR2, Service) {
    let stores = MemoryStores::new(NOW, 7);
    let replica = stores.replica_bucket();
    let service = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options(encrypted),
    )
    .with_replica(replica.clone());
    archive_now(&stores, &service, "s1", Some(ALICE), "my invoice");
    archive_now(&stores, &service, "s2", Some(BOB), "my refund");
    archive_now(&stores, &service, "s3", None, "anonymous question");
    let ids = ["s1", "s2", "s3"].map(String::from);
    block_on(service.create_backup(&ids, None, false)).unwrap();
    stores.clock.advance_ms(1_500);
    archive_now(&stores, &service, "s4", Some(ALICE), "my second invoice");
    let synced = block_on(service.sync_replica(RunBudget::default())).unwrap();
    assert!(synced.status.complete, "{synced:?}");
    stores
        .clock
        .advance_ms(REPLICA_LAG_DEGRADED_MS as u64 + 1_000);
    (stores, replica, service)
}

fn damage_in(bucket: &MemoryR2, key: &str, how: Damage) {
    let object = bucket.snapshot().remove(key).unwrap();
    let body = &object.body;
    match how {
        Damage::FlipByte => assert!(bucket.corrupt(key, body.len() / 2)),
        Damage::Truncate => {
            let options = ObjectPutOptions {
                custom_metadata: object.meta.custom_metadata.clone(),
                ..ObjectPutOptions::default()
            };
            block_on(bucket.put(key, &body[..body.len() - 9], options)).unwrap();
        }
        Damage::Delete => block_on(bucket.delete(&[key.to_owned()])).unwrap(),
    }
}

#[test]
fn with_a_replica_each_bucket_is_compared_and_repaired_from_the_other() {
    for encrypted in [false, true] {
        let (stores, replica, service) = replicated_store(encrypted);
        let report = verify(&service, false);
        assert_eq!(report.problems, vec![], "in sync");
        let (manifest, pack) = backup_keys(&stores);
        let objects = [
            archive_key(&stores, "s1"),
            archive_key(&stores, "s3"),
            archive_key(&stores, "s4"),
            pack,
            manifest,
        ];
        for key in &objects {
            for how in [Damage::FlipByte, Damage::Truncate, Damage::Delete] {
                for in_primary in [true, false] {
                    let (stores, replica, service) = replicated_store(encrypted);
                    let case = format!("{key} {how:?} primary={in_primary} encrypted={encrypted}");
                    let original = stores.snapshot().r2[key].body.clone();
                    let bucket = if in_primary { &stores.r2 } else { &replica };
                    damage_in(bucket, key, how);
                    let expected = match (in_primary, how, key.ends_with("manifest.json")) {
                        (true, Damage::Delete, _) => ProblemKind::Missing,
                        (true, _, true) => ProblemKind::Corrupt,
                        (true, _, false) => ProblemKind::ChecksumMismatch,
                        (false, Damage::Delete, _) => ProblemKind::ReplicaMissing,
                        (false, _, _) => ProblemKind::ReplicaMismatch,
                    };
                    let found = verify(&service, false);
                    let want = BTreeMap::from([(key.clone(), (expected, false))]);
                    assert_eq!(problems(&found), want, "{case}");
                    let repaired = verify(&service, true);
                    let want = BTreeMap::from([(key.clone(), (expected, true))]);
                    assert_eq!(problems(&repaired), want, "{case}");
                    let from = if in_primary { "replica" } else { "primary" };
                    assert_eq!(
                        repaired.problems[0].repaired_from.as_deref(),
                        Some(from),
                        "{case}"
                    );
                    assert_eq!(stores.snapshot().r2[key].body, original, "{case}");
                    assert_eq!(replica.snapshot()[key].body, original, "{case}");
                    assert_eq!(verify(&service, false).problems, vec![], "{case}");
                    let health = block_on(service.health_check());
                    assert_eq!(health.status, HealthStatus::Healthy, "{case}");
                }
            }
        }
        drop((stores, replica, service));
    }
}

#[test]
fn an_archive_damaged_in_both_buckets_without_a_backup_is_left_as_it_is() {
    let (stores, replica, service) = replicated_store(false);
    let s4 = archive_key(&stores, "s4");
    damage_in(&stores.r2, &s4, Damage::FlipByte);
    damage_in(&replica, &s4, Damage::Truncate);
    let (primary, copy) = (
        stores.snapshot().r2[&s4].body.clone(),
        replica.snapshot()[&s4].body.clone(),
    );
    let report = verify(&service, true);
    assert_eq!(
        problems(&report),
        BTreeMap::from([(s4.clone(), (ProblemKind::ChecksumMismatch, false))])
    );
    assert_eq!(stores.snapshot().r2[&s4].body, primary);
    assert_eq!(replica.snapshot()[&s4].body, copy);
    assert_eq!(open_problems(&service), 1);
}

fn verify_within(service: &Service, repair: bool, max_storage_calls: u32) -> VerificationReport {
    let options = VerifyOptions {
        sample: Sample::default(),
        repair,
    };
    let budget = RunBudget {
        max_storage_calls: Some(max_storage_calls),
        deadline_ms: None,
    };
    block_on(service.verify_storage(options, budget)).unwrap()
}

#[test]
fn a_repair_that_does_not_fit_the_budget_is_reported_and_the_pass_goes_on() {
    for max in [MIN_VERIFY_CALLS, 16, 21] {
        let (stores, service) = store(false);
        let key = archive_key(&stores, "s1");
        damage(&stores, &key, Damage::FlipByte);
        let mut found = Vec::new();
        let mut runs = 0;
        loop {
            let report = verify_within(&service, true, max);
            assert!(report.status.storage_calls <= max, "{report:?}");
            found.extend(report.problems.clone());
            runs += 1;
            assert!(runs < 30, "max {max}: the pass never completes");
            if report.status.complete {
                break;
            }
        }
        let problem = found.iter().find(|problem| problem.key == key).unwrap();
        assert_eq!(problem.problem, ProblemKind::ChecksumMismatch, "max {max}");
    }
}

#[test]
fn what_retention_is_deleting_is_neither_a_problem_nor_brought_back() {
    let (stores, service) = store(false);
    stores.clock.advance_ms(91 * DAY as u64);
    // A sweep that stopped after deleting the objects, before their entries.
    let budget = RunBudget {
        max_storage_calls: Some(8),
        deadline_ms: None,
    };
    block_on(service.enforce_retention_policy(budget)).unwrap();
    let left: Vec<String> = stores
        .r2
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("conversations/"))
        .collect();
    let report = verify(&service, true);
    assert_eq!(report.problems, vec![], "{report:?}");
    let after: Vec<String> = stores
        .r2
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("conversations/"))
        .collect();
    assert_eq!(after, left, "nothing brought back");
}

#[test]
fn a_problem_whose_object_is_gone_is_closed_by_the_next_pass() {
    let (stores, service) = store(false);
    let s4 = archive_key(&stores, "s4");
    damage(&stores, &s4, Damage::FlipByte);
    assert_eq!(verify(&service, true).problems.len(), 1);
    assert_eq!(
        block_on(service.health_check()).status,
        HealthStatus::Degraded
    );
    // Gone with its entries (retention, an erasure, by hand): nothing finds it again.
    common::lose_where(&stores, |key| key == s4, |key| key.ends_with(":s4"));
    assert_eq!(verify(&service, false).problems, vec![]);
    let health = block_on(service.health_check());
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.verification.unwrap().problems, 0);
}

#[test]
fn a_sampled_pass_closes_only_its_own_slot() {
    let (stores, service) = store(false);
    let s4 = archive_key(&stores, "s4");
    damage(&stores, &s4, Damage::FlipByte);
    let options = VerifyOptions {
        sample: Sample::parse("1/2").unwrap(),
        repair: false,
    };
    let pass = || block_on(service.verify_storage(options, RunBudget::default())).unwrap();
    let (first, second) = (pass(), pass());
    assert_ne!(first.slot, second.slot);
    // Found by the pass of its slot, kept open by the other's.
    assert_eq!(first.problems.len() + second.problems.len(), 1);
    assert_eq!(open_problems(&service), 1);
}

#[test]
fn bytes_that_match_their_checksum_are_not_repaired_by_a_copy() {
    // The data keys gone (no erasure): the archives cannot be decrypted, and a backed-up copy
    // is the same bytes.
    let (stores, service) = store(true);
    let keyless = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options(true),
    );
    let keys: Vec<String> = stores
        .r2
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("keys/"))
        .collect();
    block_on(stores.r2.delete(&keys)).unwrap();
    let report = verify(&keyless, true);
    assert!(!report.problems.is_empty());
    assert!(
        report
            .problems
            .iter()
            .all(|problem| problem.problem == ProblemKind::Undecryptable && !problem.repaired),
        "{report:?}"
    );
    assert_eq!(
        block_on(keyless.health_check())
            .verification
            .unwrap()
            .problems,
        report.problems.len() as u64
    );
    drop(service);
}

#[test]
fn a_failed_summary_read_does_not_lose_the_open_problems() {
    let (stores, service) = store(false);
    let s4 = archive_key(&stores, "s4");
    damage(&stores, &s4, Damage::FlipByte);
    verify(&service, false);
    // Every attempt of the next run's summary read fails (its 2nd call: after the resume point).
    let base = stores.faults.calls();
    for attempt in 0..4 {
        stores.faults.fail_call(
            base + 2 + attempt,
            supportbot_persistence::store::FailureKind::Transient,
        );
    }
    verify(&service, false);
    stores.faults.clear();
    assert_eq!(open_problems(&service), 1);
}

#[test]
fn a_missing_archive_of_an_erased_user_is_not_brought_back() {
    let (stores, service) = store(false);
    let budget = RunBudget {
        max_storage_calls: Some(supportbot_persistence::service::MIN_ERASURE_CALLS),
        deadline_ms: None,
    };
    // Mid-erasure: tombstone written; then Alice's objects gone, their entries still there.
    block_on(service.erase_user_data(ALICE, budget)).unwrap();
    let s1 = archive_key(&stores, "s1");
    let s4 = archive_key(&stores, "s4");
    block_on(stores.r2.delete(&[s1.clone(), s4.clone()])).unwrap();
    let report = verify(&service, true);
    assert!(
        report
            .problems
            .iter()
            .all(|problem| problem.key != s1 && problem.key != s4),
        "{report:?}"
    );
    let keys = stores.r2.keys();
    assert!(
        !keys.contains(&s1) && !keys.contains(&s4),
        "erased archives brought back"
    );
}
