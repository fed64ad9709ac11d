//! Erasure of one person's data over the in-memory stores: after a complete `eraseUserData`
//! nothing of theirs is stored readable anywhere (with encryption: what remains inside others'
//! backups no longer decrypts), everyone else's data is byte for byte as it was, and from the
//! tombstone on no listing, retrieval or restore shows the erased data, even mid-sweep.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use supportbot_persistence::hash::KeyHasher;
use supportbot_persistence::keys::UserId;
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    ErasureReceipt, RunBudget, ServiceOptions, MIN_ERASURE_CALLS,
};
use supportbot_persistence::store::memory::{block_on, MemoryStores, StoreSnapshot};

use common::{
    assert_budget_refused, memory_at, places_revealing, service_over, session_at, Discard, Service,
    T0,
};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn options(encrypted: bool) -> ServiceOptions {
    if !encrypted {
        return ServiceOptions::default();
    }
    let keys = json!([{"id": "k1", "key": STANDARD.encode([7u8; 32])}]);
    ServiceOptions::from_json(&json!({ "encryptionKeys": keys }).to_string()).unwrap()
}

fn service(stores: &MemoryStores, encrypted: bool) -> Service {
    service_over(
        stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options(encrypted),
    )
}

fn user_key(user: &str) -> String {
    KeyHasher::default().user_key(&UserId::parse(user).unwrap())
}

/// Archives a conversation of `sid` for `user` whose texts hold `marker`; 1.5 s pass.
fn archive(stores: &MemoryStores, service: &Service, sid: &str, user: Option<&str>, marker: &str) {
    let mut memory = memory_at(
        sid,
        &format!("my card {marker} was charged twice"),
        [T0, T0 + 1],
    );
    memory["summary"] = json!(format!("Refund for {marker}"));
    let session = session_at(sid, user, T0, T0 + 1);
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    stores.clock.advance_ms(1_500);
}

/// Alice: two conversations (one archived twice) and an Agents conversation with a segment;
/// Bob: one; a session without a user. A backup made for Alice and one of every session.
/// Returns the shared backup's id.
fn populate(stores: &MemoryStores, service: &Service) -> String {
    archive(stores, service, "s-a1", Some(ALICE), "ALICE-one");
    archive(stores, service, "s-a2", Some(ALICE), "ALICE-two");
    archive(stores, service, "s-b1", Some(BOB), "BOB-one");
    archive(stores, service, "s-n1", None, "NOBODY-one");
    archive(stores, service, "s-a1", Some(ALICE), "ALICE-three");
    let text =
        |t: &str| json!([{"id": "u1", "role": "user", "parts": [{"type": "text", "text": t}]}]);
    block_on(service.archive_segment("chat-a", 1, &text("ALICE-segment").to_string())).unwrap();
    stores.clock.advance_ms(1_500);
    let options = json!({ "userId": ALICE }).to_string();
    block_on(service.archive_ui_messages("chat-a", &text("ALICE-chat").to_string(), &options))
        .unwrap();
    stores.clock.advance_ms(1_500);
    let alices: Vec<String> = ["s-a1", "s-a2"].map(String::from).to_vec();
    block_on(service.create_backup(&alices, Some(ALICE), false)).unwrap();
    stores.clock.advance_ms(1_500);
    let everyone: Vec<String> = ["s-a1", "s-b1", "s-n1", "chat-a"]
        .map(String::from)
        .to_vec();
    let shared = block_on(service.create_backup(&everyone, None, false)).unwrap();
    stores.clock.advance_ms(1_500);
    shared
}

const ALICE_MARKERS: [&str; 5] = [
    "ALICE-one",
    "ALICE-two",
    "ALICE-three",
    "ALICE-segment",
    "ALICE-chat",
];

fn erase(service: &Service, user: &str, calls: Option<u32>) -> ErasureReceipt {
    let budget = RunBudget {
        max_storage_calls: calls,
        deadline_ms: None,
    };
    block_on(service.erase_user_data(user, budget)).unwrap()
}

/// Every stored key that is Alice's: named by her user key or one of her sessions.
fn alices_keys(snapshot: &StoreSnapshot) -> Vec<String> {
    let key = user_key(ALICE);
    // Tombstones stay (a hashed key, session ids and times; no personal data).
    let hers = |name: &str| {
        !name.starts_with("erasures/") && name.contains(&key)
            || !name.starts_with("erasures/")
                && ["s-a1", "s-a2", "chat-a"].iter().any(|sid| {
                    name.contains(&format!("_{sid}_"))
                        || name.ends_with(&format!(":{sid}"))
                        || name.contains(&format!("{sid}:segment"))
                        || name.ends_with(&format!("/{sid}.json"))
                })
    };
    snapshot
        .kv
        .keys()
        .chain(snapshot.r2.keys())
        .filter(|name| hers(name))
        .cloned()
        .collect()
}

/// The stored entries that are not Alice's, her backup's, or the tombstone.
fn others(snapshot: &StoreSnapshot, alices_backup: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mine = alices_keys(snapshot);
    let excluded = |name: &str| {
        mine.iter().any(|key| key == name)
            || name.starts_with("erasures/")
            || name.starts_with("erasure:")
            || alices_backup.is_some_and(|id| name.contains(id))
    };
    let mut entries = BTreeMap::new();
    for (key, value) in &snapshot.kv {
        if !excluded(key) {
            let metadata = value
                .metadata
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
            entries.insert(
                format!("KV {key}"),
                [value.value.clone(), metadata.into_bytes()].concat(),
            );
        }
    }
    for (key, object) in &snapshot.r2 {
        if !excluded(key) {
            let meta = format!("{:?}", object.meta.custom_metadata);
            entries.insert(
                format!("R2 {key}"),
                [object.body.clone(), meta.into_bytes()].concat(),
            );
        }
    }
    entries
}

/// The id of the backup made for Alice.
fn alices_backup(snapshot: &StoreSnapshot) -> String {
    let key = user_key(ALICE);
    snapshot
        .kv
        .iter()
        .find(|(name, value)| {
            name.starts_with("backup_index:")
                && value.metadata.as_ref().and_then(|m| m.get("userKey")) == Some(&json!(key))
        })
        .map(|(name, _)| name.rsplit(':').next().unwrap().to_owned())
        .unwrap()
}

fn listed(service: &Service, user: Option<&str>) -> Vec<String> {
    block_on(service.list_archived_conversations(user, 1000, None))
        .unwrap()
        .archives
        .iter()
        .map(|entry| entry["sessionId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_complete_erasure_leaves_nothing_of_the_user_and_touches_no_one_else() {
    for encrypted in [false, true] {
        let context = if encrypted { "encrypted" } else { "plaintext" };
        let stores = MemoryStores::new(T0, 3);
        let service = service(&stores, encrypted);
        let shared = populate(&stores, &service);
        let before = stores.snapshot();
        let backup = alices_backup(&before);
        assert!(!alices_keys(&before).is_empty());

        let receipt = erase(&service, ALICE, None);
        assert!(receipt.status.complete, "{context}: {receipt:?}");
        assert_eq!(receipt.user_key, user_key(ALICE));
        assert_eq!(receipt.archives_deleted, 5, "{context}: {receipt:?}");
        assert_eq!(receipt.backups_deleted, 1, "{context}: {receipt:?}");
        // The user's key, and the segment's conversation key.
        assert_eq!(
            receipt.keys_destroyed,
            if encrypted { 2 } else { 0 },
            "{context}"
        );
        assert!(receipt.erased_at.is_some());
        let after = stores.snapshot();
        assert_eq!(alices_keys(&after), Vec::<String>::new(), "{context}");
        assert!(
            !after.r2.keys().any(|key| key.contains(&backup)),
            "{context}"
        );
        assert_eq!(
            others(&after, None),
            others(&before, Some(&backup)),
            "{context}"
        );
        // The receipt names no raw id, and the tombstone holds none.
        let tombstone = &after.r2[&format!("erasures/{}.json", user_key(ALICE))];
        assert!(!String::from_utf8_lossy(&tombstone.body).contains("alice"));
        assert!(!serde_json::to_string(&receipt).unwrap().contains("alice"));

        let readable: Vec<String> = ALICE_MARKERS
            .iter()
            .flat_map(|marker| places_revealing(&after, marker))
            .collect();
        // The shared backup stays, named by the receipt with why.
        assert_eq!(receipt.backups_retained.len(), 1, "{receipt:?}");
        assert_eq!(receipt.backups_retained[0].backup_id, shared);
        assert_eq!(receipt.backups_retained[0].sessions, 2);
        if encrypted {
            assert_eq!(readable, Vec::<String>::new(), "{context}");
            assert_eq!(receipt.backups_retained[0].reason, "shared, encrypted");
        } else {
            // Only inside the shared backup.
            assert!(!readable.is_empty());
            let pack = format!("backups/{shared}/");
            assert!(
                readable.iter().all(|place| place.contains(&pack)),
                "{readable:?}"
            );
            assert_eq!(receipt.backups_retained[0].reason, "shared");
        }
        for marker in ["BOB-one", "NOBODY-one"] {
            assert!(!places_revealing(&after, marker).is_empty() || encrypted);
        }
        assert_eq!(listed(&service, Some(BOB)), ["s-b1"]);
        assert!(block_on(service.retrieve_archived_conversation("s-b1"))
            .unwrap()
            .is_some());

        // Erasing again is harmless, and so is erasing someone unknown.
        let again = erase(&service, ALICE, None);
        assert!(
            again.status.complete && again.archives_deleted == 0,
            "{again:?}"
        );
        let unknown = erase(&service, "nobody@example.com", None);
        assert!(unknown.status.complete, "{unknown:?}");
        assert_eq!(
            (
                unknown.archives_deleted,
                unknown.index_entries_deleted,
                unknown.backups_deleted
            ),
            (0, 0, 0)
        );
    }
}

/// With a budget that stops the run right after the tombstone, nothing is deleted yet, and
/// still no listing, retrieval or restore shows Alice's data; what she archives afterwards is
/// hers again (with encryption: under a new data key).
#[test]
fn from_the_tombstone_on_nothing_erased_is_shown_and_new_archives_start_afresh() {
    for encrypted in [false, true] {
        let context = if encrypted { "encrypted" } else { "plaintext" };
        let stores = MemoryStores::new(T0, 5);
        let service = service(&stores, encrypted);
        let shared = populate(&stores, &service);
        let old_key = stores
            .snapshot()
            .r2
            .get(&format!("keys/users/{}.json", user_key(ALICE)))
            .cloned();
        assert_eq!(old_key.is_some(), encrypted);
        let receipt = erase(&service, ALICE, Some(MIN_ERASURE_CALLS));
        assert!(!receipt.status.complete, "{context}: {receipt:?}");
        assert!(receipt.erased_at.is_some());
        assert!(
            !alices_keys(&stores.snapshot()).is_empty(),
            "{context}: the sweep has not ended"
        );

        assert_eq!(
            listed(&service, Some(ALICE)),
            Vec::<String>::new(),
            "{context}"
        );
        let everyone = listed(&service, None);
        assert!(
            !everyone.iter().any(|sid| sid.starts_with("s-a")),
            "{context}: {everyone:?}"
        );
        assert!(everyone.contains(&"s-b1".to_owned()));
        for sid in ["s-a1", "s-a2"] {
            let found = block_on(service.retrieve_archived_conversation(sid)).unwrap();
            assert_eq!(found, None, "{context}: {sid}");
        }
        // Restoring the backup of everyone brings back everyone but Alice.
        let tally = block_on(service.restore_backup(&shared, None)).unwrap();
        assert!(tally.restored.contains(&"s-b1".to_owned()), "{tally:?}");
        assert!(
            !tally.restored.contains(&"s-a1".to_owned()),
            "{context}: {tally:?}"
        );
        assert!(
            tally.skipped.contains(&"s-a1".to_owned()),
            "{context}: {tally:?}"
        );

        // A new conversation of Alice's is hers again.
        stores.clock.advance_ms(1_000);
        archive(&stores, &service, "s-a3", Some(ALICE), "ALICE-new");
        assert_eq!(listed(&service, Some(ALICE)), ["s-a3"], "{context}");
        assert!(block_on(service.retrieve_archived_conversation("s-a3"))
            .unwrap()
            .is_some());
        if encrypted {
            let new_key =
                stores.snapshot().r2[&format!("keys/users/{}.json", user_key(ALICE))].clone();
            assert_ne!(
                Some(new_key.body),
                old_key.map(|key| key.body),
                "a new data key"
            );
        }
        // The rest of the erasure, resumed by the cron, spares what came after the tombstone.
        let receipts = block_on(service.resume_erasures(RunBudget::default())).unwrap();
        assert_eq!(receipts.len(), 1, "{receipts:?}");
        assert!(receipts[0].status.complete && receipts[0].status.resumed);
        assert_eq!(listed(&service, Some(ALICE)), ["s-a3"], "{context}");
        assert!(block_on(service.retrieve_archived_conversation("s-a3"))
            .unwrap()
            .is_some());
        assert!(block_on(service.retrieve_archived_conversation("s-a1"))
            .unwrap()
            .is_none());
        assert!(block_on(service.resume_erasures(RunBudget::default()))
            .unwrap()
            .is_empty());
    }
}

/// An erasure run in the smallest budgets, resumed until complete, ends where one run does.
#[test]
fn an_erasure_in_small_steps_ends_as_one_run_does() {
    let whole = {
        let stores = MemoryStores::new(T0, 11);
        let service = service(&stores, true);
        populate(&stores, &service);
        let receipt = erase(&service, ALICE, None);
        (stores.snapshot(), receipt)
    };
    let stores = MemoryStores::new(T0, 11);
    let service = service(&stores, true);
    populate(&stores, &service);
    assert_budget_refused(block_on(service.erase_user_data(
        ALICE,
        RunBudget {
            max_storage_calls: Some(MIN_ERASURE_CALLS - 1),
            deadline_ms: None,
        },
    )));
    let mut runs = 0;
    let receipt = loop {
        let receipt = erase(&service, ALICE, Some(MIN_ERASURE_CALLS));
        runs += 1;
        assert!(runs < 200, "never completes: {receipt:?}");
        if receipt.status.complete {
            break receipt;
        }
    };
    assert!(runs > 3, "{runs}");
    let (snapshot, one_run) = whole;
    let strip = |s: &StoreSnapshot| -> Vec<String> {
        s.kv.keys()
            .chain(s.r2.keys())
            .filter(|k| !k.starts_with("erasure"))
            .cloned()
            .collect()
    };
    assert_eq!(strip(&stores.snapshot()), strip(&snapshot));
    assert_eq!(
        (
            receipt.archives_deleted,
            receipt.backups_deleted,
            receipt.keys_destroyed
        ),
        (
            one_run.archives_deleted,
            one_run.backups_deleted,
            one_run.keys_destroyed
        )
    );
}

/// Archives whose KV entries never made it (KV lags, or a crash) are found by their recorded
/// owner in R2; a user id that is invalid is refused before anything is written.
#[test]
fn archives_missing_from_kv_are_found_by_their_recorded_owner() {
    let stores = MemoryStores::new(T0, 13);
    let service = service(&stores, false);
    archive(&stores, &service, "s-a1", Some(ALICE), "ALICE-one");
    archive(&stores, &service, "s-b1", Some(BOB), "BOB-one");
    common::lose_where(&stores, |_| false, |key| key.contains("s-a1"));
    let receipt = erase(&service, ALICE, None);
    assert_eq!(receipt.archives_deleted, 1, "{receipt:?}");
    assert!(places_revealing(&stores.snapshot(), "ALICE-one").is_empty());
    assert!(!places_revealing(&stores.snapshot(), "BOB-one").is_empty());
    let err = block_on(service.erase_user_data("", RunBudget::default())).unwrap_err();
    assert_eq!(err.code(), "INVALID_ID");
}

/// A global listing page of many users reads every tombstone with one R2 list, not a head per
/// user, and hides exactly the erased users' archives.
#[test]
fn a_global_page_of_many_users_lists_the_tombstones_once() {
    use supportbot_persistence::store::memory::OperationKind;
    use supportbot_persistence::store::Binding;
    let stores = MemoryStores::new(T0, 17);
    let service = service(&stores, false);
    for i in 0..6 {
        archive(
            &stores,
            &service,
            &format!("s-{i}"),
            Some(&format!("user-{i}")),
            "TEXT",
        );
    }
    erase(&service, "user-1", None);
    erase(&service, "user-4", Some(MIN_ERASURE_CALLS));
    let counts = stores.faults.counts();
    let mut everyone = listed(&service, None);
    everyone.sort();
    assert_eq!(everyone, ["s-0", "s-2", "s-3", "s-5"]);
    let spent = stores.faults.counts().since(&counts);
    assert_eq!(spent.of(Binding::R2, OperationKind::List), 1);
    assert_eq!(spent.of(Binding::R2, OperationKind::Head), 0);
    // A user's page: one head.
    let counts = stores.faults.counts();
    assert_eq!(listed(&service, Some("user-4")), Vec::<String>::new());
    assert_eq!(listed(&service, Some("user-5")), ["s-5"]);
    let spent = stores.faults.counts().since(&counts);
    assert_eq!(spent.of(Binding::R2, OperationKind::Head), 2);
}

/// An index entry of the user that names another user's archive (damaged, or forged) never
/// makes the erasure delete that archive.
#[test]
fn an_entry_naming_another_archive_deletes_only_what_is_the_users() {
    use supportbot_persistence::store::{KvPutOptions, KvStore};
    let stores = MemoryStores::new(T0, 19);
    let service = service(&stores, false);
    archive(&stores, &service, "s-b1", Some(BOB), "BOB-one");
    let bobs = stores
        .snapshot()
        .r2
        .keys()
        .find(|key| key.contains("s-b1"))
        .cloned()
        .unwrap();
    let forged = format!("user_archives:{}:8263842399999:s-a9", user_key(ALICE));
    let options = KvPutOptions {
        metadata: Some(json!({ "key": bobs, "sessionId": "s-a9", "archivedAt": T0 })),
        ..KvPutOptions::default()
    };
    block_on(stores.kv.put(&forged, bobs.as_bytes(), options)).unwrap();
    let receipt = erase(&service, ALICE, None);
    assert!(receipt.status.complete, "{receipt:?}");
    assert!(
        stores.snapshot().r2.contains_key(&bobs),
        "bob's archive was deleted"
    );
    assert!(block_on(service.retrieve_archived_conversation("s-b1"))
        .unwrap()
        .is_some());
    assert!(!stores.snapshot().kv.contains_key(&forged));
}

/// A failure between the tombstone and the data key's destruction leaves the key in place until
/// the erasure resumes; what the user archives meanwhile (under the doomed key) is erased with
/// the rest, never left unreadable and listed, and what comes after is theirs under a new key.
#[test]
fn a_failure_before_the_key_is_destroyed_leaves_nothing_unreadable_behind() {
    use supportbot_persistence::store::memory::{CallFilter, OperationKind};
    use supportbot_persistence::store::{Binding, FailureKind};
    let stores = MemoryStores::new(T0, 23);
    let service = service(&stores, true);
    archive(&stores, &service, "s-a1", Some(ALICE), "ALICE-one");
    // The data key's head is refused: the run stops after the tombstone.
    let filter = CallFilter::call(Binding::R2, OperationKind::Head);
    stores.faults.fail_next(1, FailureKind::Rejected, filter);
    let first = erase(&service, ALICE, None);
    assert!(!first.status.complete, "{first:?}");
    stores.clock.advance_ms(120_000);
    archive(&stores, &service, "s-a2", Some(ALICE), "ALICE-meanwhile");
    let done = erase(&service, ALICE, None);
    assert!(done.status.complete && done.status.resumed, "{done:?}");
    assert!(done.erased_at > first.erased_at, "{done:?}");
    assert_eq!(done.archives_deleted, 2, "{done:?}");
    for sid in ["s-a1", "s-a2"] {
        assert_eq!(
            block_on(service.retrieve_archived_conversation(sid)).unwrap(),
            None
        );
    }
    assert_eq!(listed(&service, Some(ALICE)), Vec::<String>::new());
    let snapshot = stores.snapshot();
    assert!(places_revealing(&snapshot, "ALICE").is_empty());
    assert!(
        !snapshot.r2.keys().any(|key| key.contains("s-a")),
        "{:?}",
        snapshot.r2.keys()
    );
    stores.clock.advance_ms(1_000);
    archive(&stores, &service, "s-a3", Some(ALICE), "ALICE-after");
    assert!(block_on(service.retrieve_archived_conversation("s-a3"))
        .unwrap()
        .is_some());
}

/// A resume point left behind by a finished erasure (its delete failed, or KV showed an old
/// one) never turns a later erasure into a no-op under the old date.
#[test]
fn a_stale_resume_point_does_not_hide_a_new_erasure() {
    use supportbot_persistence::store::{KvPutOptions, KvStore};
    let stores = MemoryStores::new(T0, 29);
    let service = service(&stores, false);
    archive(&stores, &service, "s-a1", Some(ALICE), "ALICE-one");
    let cursor = format!("erasure:cursor:{}", user_key(ALICE));
    // A run stopped mid-sweep saves its position; then the erasure completes.
    let stopped = erase(&service, ALICE, Some(MIN_ERASURE_CALLS));
    assert!(!stopped.status.complete);
    let saved = stores.snapshot().kv[&cursor].value.clone();
    while !erase(&service, ALICE, Some(MIN_ERASURE_CALLS))
        .status
        .complete
    {}
    // Ten days later the old position is back (a lost delete), and Alice asks again.
    stores.clock.advance_ms(10 * 24 * 60 * 60 * 1000);
    block_on(stores.kv.put(&cursor, &saved, KvPutOptions::default())).unwrap();
    archive(&stores, &service, "s-a2", Some(ALICE), "ALICE-later");
    let again = erase(&service, ALICE, None);
    assert!(again.status.complete, "{again:?}");
    assert!(again.erased_at > stopped.erased_at, "{again:?}");
    assert_eq!(again.archives_deleted, 1, "{again:?}");
    assert_eq!(listed(&service, Some(ALICE)), Vec::<String>::new());
    assert!(places_revealing(&stores.snapshot(), "ALICE-later").is_empty());
}

/// An archive of the earlier implementation, stored a few ms off its recorded time and indexed
/// by `indexLegacyArchives`, is erased with its record.
#[test]
fn a_legacy_archive_is_erased_with_its_record() {
    use supportbot_persistence::service::legacy_suite::{write_legacy_archive, Readings};
    let stores = MemoryStores::new(T0, 31);
    let service = service(&stores, false);
    let readings = Readings::after(T0 - 24 * 60 * 60 * 1000, 3, 3);
    let legacy = block_on(write_legacy_archive(
        &stores.kv, &stores.r2, "legacy-1", "lee", &readings,
    ))
    .unwrap();
    let indexed = block_on(service.index_legacy_archives(RunBudget::default())).unwrap();
    assert!(
        indexed.status.complete && indexed.indexed == 1,
        "{indexed:?}"
    );
    let receipt = erase(&service, "lee", None);
    assert!(
        receipt.status.complete && receipt.archives_deleted == 1,
        "{receipt:?}"
    );
    let snapshot = stores.snapshot();
    assert!(!snapshot.r2.contains_key(&legacy.key));
    assert!(
        !snapshot.kv.keys().any(|key| key.contains("legacy-1")),
        "{:?}",
        snapshot.kv.keys()
    );
}

/// Segments of an erased user's Agents SDK conversation record no user; their conversation's
/// tombstone keeps a restore of an older backup, or an import of an older store export, from
/// bringing them back.
#[test]
fn segments_do_not_come_back_from_older_backups_or_exports() {
    use supportbot_persistence::service::ImportOptions;
    for encrypted in [false, true] {
        let stores = MemoryStores::new(T0, 37);
        let service = service(&stores, encrypted);
        populate(&stores, &service);
        let segment = "chat-a:segment-000001".to_owned();
        let backup =
            block_on(service.create_backup(std::slice::from_ref(&segment), None, false)).unwrap();
        let exported = common::store_export(&service, RunBudget::default(), None);
        let segment_key = stores
            .snapshot()
            .r2
            .keys()
            .find(|key| key.contains("segment-000001"))
            .cloned()
            .unwrap();
        let receipt = erase(&service, ALICE, None);
        assert!(receipt.status.complete, "{receipt:?}");
        assert!(!stores.snapshot().r2.contains_key(&segment_key));

        let tally = block_on(service.restore_backup(&backup, None)).unwrap();
        assert_eq!(tally.restored, Vec::<String>::new(), "{tally:?}");
        assert_eq!(tally.skipped, std::slice::from_ref(&segment));
        let report = common::import_stream(
            &service,
            &exported,
            ImportOptions::default(),
            RunBudget::default(),
            1 << 16,
        )
        .unwrap();
        assert!(report.skipped_erased >= 1, "{report:?}");
        let snapshot = stores.snapshot();
        assert!(
            !snapshot.r2.contains_key(&segment_key),
            "encrypted {encrypted}"
        );
        assert!(places_revealing(&snapshot, "ALICE-segment").is_empty());
        assert!(
            !snapshot.r2.contains_key("keys/sessions/chat-a.json"),
            "encrypted {encrypted}"
        );
        assert!(!snapshot
            .r2
            .contains_key(&format!("keys/users/{}.json", user_key(ALICE))));
        assert_eq!(
            block_on(service.retrieve_ui_messages_by_key(&segment_key)).unwrap(),
            None
        );
        assert!(!listed(&service, None).contains(&segment));
    }
}
