//! Encryption at rest over the in-memory stores: nothing of a conversation's text is stored
//! readable, everything reads back equal, tampering and moved ciphertexts are refused with a
//! code, keys are made once per owner, and missing or wrong keys say so.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::DataPersistenceService;
use supportbot_persistence::service::{
    BackupRequest, CommitStep, PackStep, RunBudget, ServiceOptions, INDEX_LAG_MS,
    MIN_ENCRYPT_EXISTING_CALLS, MIN_ROTATION_CALLS,
};
use supportbot_persistence::store::memory::{block_on, MemoryR2, MemoryStores};
use supportbot_persistence::store::{
    KvPutOptions, KvStore, ObjectListOptions, ObjectListPage, ObjectMeta, ObjectPutOptions,
    ObjectStore, PutOutcome, StoreResult, StoredObject,
};

use common::{
    conversation, lose_all_archives, memory_at, places_revealing, reveals, service_over,
    session_at, Discard, Service, T0,
};

const KEY_2026: [u8; 32] = [0x26; 32];
const KEY_2025: [u8; 32] = [0x25; 32];

fn keys(entries: &[(&str, [u8; 32])]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(id, key)| json!({"id": id, "key": STANDARD.encode(key)}))
            .collect(),
    )
}

fn options_with(entries: &[(&str, [u8; 32])]) -> ServiceOptions {
    ServiceOptions::from_json(&json!({ "encryptionKeys": keys(entries) }).to_string()).unwrap()
}

fn service(stores: &MemoryStores, entries: &[(&str, [u8; 32])]) -> Service {
    let options = if entries.is_empty() {
        ServiceOptions::default()
    } else {
        options_with(entries)
    };
    service_over(
        stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options,
    )
}

/// A conversation of `sid` whose every text holds `marker`.
fn marked(sid: &str, user: Option<&str>, marker: &str) -> (Value, Value) {
    let mut memory = memory_at(
        sid,
        &format!("my order {marker} never arrived"),
        [T0, T0 + 5_000],
    );
    memory["summary"] = json!(format!("Customer {marker} asked about a refund"));
    memory["context"] = json!({"note": format!("address {marker}")});
    (memory, session_at(sid, user, T0, T0 + 5_000))
}

/// A conversation to archive: session id, user id, the marker its texts hold.
type Case = (&'static str, Option<&'static str>, &'static str);

/// Archives each case through `service`, a second and a half apart; their R2 keys.
fn archive_cases(stores: &MemoryStores, service: &Service, cases: &[Case]) -> Vec<String> {
    let mut keys = Vec::new();
    for (sid, user, marker) in cases {
        let (memory, session) = marked(sid, *user, marker);
        keys.push(archive(service, &memory, &session));
        stores.clock.advance_ms(1_500);
    }
    keys
}

/// Every case retrieves through `service` as it was archived.
fn assert_cases_retrievable(service: &Service, cases: &[Case], context: &str) {
    for (sid, user, marker) in cases {
        let (memory, session) = marked(sid, *user, marker);
        assert_eq!(
            retrieve(service, sid).unwrap(),
            Some(conversation(&memory, &session)),
            "{sid}: {context}"
        );
    }
}

fn archive(service: &Service, memory: &Value, session: &Value) -> String {
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap()
}

fn retrieve(service: &Service, sid: &str) -> supportbot_persistence::Result<Option<Value>> {
    block_on(service.retrieve_archived_conversation(sid))
        .map(|found| found.map(|text| serde_json::from_str(&text).unwrap()))
}

#[test]
fn the_scan_finds_a_marker_in_every_form() {
    let marker = "MARKER-7f3a9c";
    assert!(reveals(marker.as_bytes(), marker));
    for prefix in ["", "a", "ab"] {
        let encoded = STANDARD.encode(format!("{prefix}{marker} and more"));
        assert!(reveals(encoded.as_bytes(), marker), "{prefix}");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, marker.as_bytes()).unwrap();
    assert!(reveals(&gz.finish().unwrap(), marker));
    assert!(!reveals(b"nothing here", marker));
}

#[test]
fn no_conversation_text_is_stored_readable_and_everything_reads_back() {
    let stores = MemoryStores::new(T0, 7);
    let service = service(&stores, &[("k2026", KEY_2026)]);
    let cases = [
        ("s-alice-1", Some("alice@example.com"), "MARKER-a1c3"),
        ("s-alice-2", Some("alice@example.com"), "MARKER-a2d4"),
        ("s-anon", None, "MARKER-e5f6"),
    ];
    let keys = archive_cases(&stores, &service, &cases);
    assert!(
        keys.iter().all(|key| key.ends_with(".json.gz.enc")),
        "{keys:?}"
    );
    assert_cases_retrievable(&service, &cases, "after archiving");
    let snapshot = stores.snapshot();
    for (_, _, marker) in cases {
        assert_eq!(
            places_revealing(&snapshot, marker),
            Vec::<String>::new(),
            "{marker}"
        );
    }
    // One data key per user, one for the session without a user.
    let data_keys: Vec<&String> = snapshot
        .r2
        .keys()
        .filter(|k| k.starts_with("keys/"))
        .collect();
    assert_eq!(data_keys.len(), 2, "{data_keys:?}");
    assert!(data_keys
        .iter()
        .any(|k| k.as_str() == "keys/sessions/s-anon.json"));

    // Listings decrypt the summaries.
    let listing =
        block_on(service.list_archived_conversations(Some("alice@example.com"), 10, None)).unwrap();
    let summaries: Vec<&str> = listing
        .archives
        .iter()
        .map(|a| a["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        [
            "Customer MARKER-a2d4 asked about a refund",
            "Customer MARKER-a1c3 asked about a refund"
        ]
    );
    assert!(listing
        .archives
        .iter()
        .all(|a| a.get("encryptedSummary").is_none()));
    let global = block_on(service.list_archived_conversations(None, 10, None)).unwrap();
    assert_eq!(global.archives.len(), 3);
    assert_eq!(
        global.archives[0]["summary"],
        "Customer MARKER-e5f6 asked about a refund"
    );
    // By key, from R2 alone.
    let by_key = block_on(service.retrieve_archive(&keys[2]))
        .unwrap()
        .unwrap();
    assert!(by_key.contains("MARKER-e5f6"));

    // A service in another isolate (empty cache) reads the same.
    let other = service_over(
        &stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options_with(&[("k2026", KEY_2026)]),
    );
    let (memory, session) = marked("s-alice-1", Some("alice@example.com"), "MARKER-a1c3");
    assert_eq!(
        retrieve(&other, "s-alice-1").unwrap(),
        Some(conversation(&memory, &session))
    );
}

/// Backups of encrypted archives (made at once, and by the Workflow's steps) hold no readable
/// conversation text, and restoring them after every archive was lost gives back what was
/// archived: retrieval, listings with their summaries, and the stored bytes themselves.
#[test]
fn backups_hold_no_plaintext_and_restore_what_was_archived() {
    let stores = MemoryStores::new(T0, 9);
    let service = service(&stores, &[("k2026", KEY_2026)]);
    let cases = [
        ("s-bob-1", Some("bob@example.com"), "MARKER-b0b1"),
        ("s-bob-2", Some("bob@example.com"), "MARKER-b0b2"),
        ("s-nobody", None, "MARKER-n0b0"),
    ];
    archive_cases(&stores, &service, &cases);
    let sids: Vec<String> = cases.iter().map(|(sid, _, _)| (*sid).to_owned()).collect();
    let archived = stores.snapshot();
    let at_once = block_on(service.create_backup(&sids, None, false)).unwrap();
    stores.clock.advance_ms(INDEX_LAG_MS as u64 + 1_000);
    let plan = block_on(service.plan_backup(BackupRequest::default(), 2)).unwrap();
    let mut packs = Vec::new();
    let mut from = None;
    loop {
        let step = PackStep {
            plan: plan.clone(),
            pack: packs.len() as u32,
            from,
        };
        let report = block_on(service.backup_pack(step)).unwrap();
        packs.extend(report.record);
        from = report.next;
        if from.is_none() {
            break;
        }
    }
    assert!(packs.len() >= 2, "{packs:?}");
    let commit = CommitStep {
        plan,
        packs,
        missing_session_ids: Vec::new(),
    };
    let by_steps = block_on(service.commit_backup(commit)).unwrap();
    let backed_up = stores.snapshot();
    assert!(backed_up.r2.keys().any(|key| key.starts_with("backups/")));
    for (_, _, marker) in cases {
        assert_eq!(
            places_revealing(&backed_up, marker),
            Vec::<String>::new(),
            "{marker}"
        );
    }

    let listed = |service: &Service| {
        block_on(service.list_archived_conversations(Some("bob@example.com"), 10, None))
            .unwrap()
            .archives
    };
    let listing_before = listed(&service);
    for backup in [&at_once, &by_steps] {
        lose_all_archives(&stores);
        assert_eq!(retrieve(&service, "s-bob-1").unwrap(), None);
        let mut restored = if backup == &at_once {
            block_on(service.restore_from_backup(backup, None)).unwrap()
        } else {
            let mut restored = Vec::new();
            for (id, count, _) in block_on(service.plan_restore(backup, None)).unwrap() {
                for index in 0..count {
                    let step = service.restore_pack(&id, index, None, 0..usize::MAX);
                    restored.extend(block_on(step).unwrap());
                }
            }
            restored
        };
        restored.sort();
        let mut expected = sids.clone();
        expected.sort();
        assert_eq!(restored, expected, "{backup}");
        let now = stores.snapshot();
        for (key, object) in archived.r2.iter().filter(|(k, _)| k.ends_with(".enc")) {
            assert_eq!(now.r2[key].body, object.body, "{key} restored as stored");
        }
        assert_cases_retrievable(&service, &cases, &format!("restored from {backup}"));
        assert_eq!(listed(&service), listing_before, "{backup}");
        for (_, _, marker) in cases {
            assert_eq!(places_revealing(&now, marker), Vec::<String>::new());
        }
    }
}

#[test]
fn a_long_summary_is_cut_in_the_listing_and_whole_in_the_record() {
    let stores = MemoryStores::new(T0, 7);
    let service = service(&stores, &[("k2026", KEY_2026)]);
    let (mut memory, session) = marked("s-long", Some("bob"), "MARKER-long");
    let long = format!("MARKER-long {}", "word ".repeat(400));
    memory["summary"] = json!(long);
    archive(&service, &memory, &session);
    let listing = block_on(service.list_archived_conversations(Some("bob"), 10, None)).unwrap();
    let listed = listing.archives[0]["summary"].as_str().unwrap();
    assert_eq!(listing.archives[0]["summaryTruncated"], true);
    assert!(
        long.starts_with(listed) && listed.len() > 200 && listed.len() < long.len(),
        "{}",
        listed.len()
    );
    let snapshot = stores.snapshot();
    for value in snapshot.kv.values() {
        assert!(value
            .metadata
            .as_ref()
            .is_none_or(|m| m.to_string().len() <= 1024));
    }
    assert_eq!(
        places_revealing(&snapshot, "MARKER-long"),
        Vec::<String>::new()
    );
    let retrieved = retrieve(&service, "s-long").unwrap().unwrap();
    assert_eq!(retrieved["summary"], json!(long));
}

#[test]
fn plaintext_archives_stay_readable_once_keys_are_configured() {
    let stores = MemoryStores::new(T0, 7);
    let (memory, session) = marked("s-old", Some("carol"), "MARKER-old");
    let key = archive(&service(&stores, &[]), &memory, &session);
    assert!(key.ends_with(".json.gz"));
    let encrypted = service(&stores, &[("k2026", KEY_2026)]);
    assert_eq!(
        retrieve(&encrypted, "s-old").unwrap(),
        Some(conversation(&memory, &session))
    );
    let listing = block_on(encrypted.list_archived_conversations(Some("carol"), 10, None)).unwrap();
    assert_eq!(
        listing.archives[0]["summary"],
        "Customer MARKER-old asked about a refund"
    );
}

#[test]
fn tampering_and_moved_ciphertexts_fail_with_a_code_never_wrong_data() {
    let stores = MemoryStores::new(T0, 7);
    let service = service(&stores, &[("k2026", KEY_2026)]);
    let (memory, session) = marked("s-t", Some("dave"), "MARKER-t");
    let key = archive(&service, &memory, &session);
    let stored = stores.snapshot().r2[&key].clone();
    let len = stored.body.len();
    // Header (magic, version, reference, DEK id, nonce), ciphertext, tag.
    for position in [0, 4, 5, 10, 80, 100, len / 2, len - 8, len - 1] {
        let mut bytes = stored.body.clone();
        bytes[position] ^= 0x01;
        // Rewritten with a matching SHA-256, as an attacker with write access would.
        put_raw(&stores, &key, &bytes);
        let err = retrieve(&service, "s-t").unwrap_err();
        assert!(
            [
                "DECRYPTION_FAILED",
                "CORRUPT_DATA",
                "UNSUPPORTED_FORMAT",
                "KEY_UNAVAILABLE"
            ]
            .contains(&err.code()),
            "byte {position}: {err}"
        );
        let by_key = block_on(service.retrieve_archive(&key)).unwrap_err();
        assert_eq!(by_key.code(), err.code(), "byte {position}");
    }
    // A damaged body whose recorded checksum was kept: the checksum is checked first.
    let mut damaged = stored.body.clone();
    damaged[len / 2] ^= 0x01;
    stores.clock.advance_ms(1_100);
    block_on(stores.r2.put(
        &key,
        &damaged,
        ObjectPutOptions {
            custom_metadata: stored.meta.custom_metadata.clone(),
            ..ObjectPutOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(
        retrieve(&service, "s-t").unwrap_err().code(),
        "CHECKSUM_MISMATCH"
    );

    // The intact ciphertext copied to another session's archive key.
    put_raw(&stores, &key, &stored.body);
    let (other_memory, other_session) = marked("s-u", Some("dave"), "MARKER-u");
    stores.clock.advance_ms(1_500);
    let other_key = archive(&service, &other_memory, &other_session);
    put_raw(&stores, &other_key, &stored.body);
    assert_eq!(
        retrieve(&service, "s-u").unwrap_err().code(),
        "DECRYPTION_FAILED"
    );
    assert_eq!(
        retrieve(&service, "s-t").unwrap(),
        Some(conversation(&memory, &session))
    );
}

/// Stores `bytes` under `key` with their own SHA-256 recorded, as the archive writer does.
fn put_raw(stores: &MemoryStores, key: &str, bytes: &[u8]) {
    // R2 and KV take one write a second per key.
    stores.clock.advance_ms(1_100);
    let sha = supportbot_persistence::hash::sha256_hex(bytes);
    let mut custom = stores.snapshot().r2[key].meta.custom_metadata.clone();
    custom.insert("sha256".into(), sha.clone());
    block_on(stores.r2.put(
        key,
        bytes,
        ObjectPutOptions {
            custom_metadata: custom,
            sha256: Some(sha),
            ..ObjectPutOptions::default()
        },
    ))
    .unwrap();
    // The KV record checks against its own copy: point it at these bytes too.
    let meta_key = format!(
        "archive_meta:{}",
        supportbot_persistence::keys::parse_archive_object_key(key)
            .unwrap()
            .session_id
    );
    let record = stores.snapshot().kv[&meta_key].clone();
    let mut value: Value = serde_json::from_slice(&record.value).unwrap();
    if value["key"] == key {
        value["sha256"] = json!(supportbot_persistence::hash::sha256_hex(bytes));
        block_on(supportbot_persistence::store::KvStore::put(
            &stores.kv,
            &meta_key,
            value.to_string().as_bytes(),
            Default::default(),
        ))
        .unwrap();
    }
}

#[test]
fn missing_or_wrong_keys_are_named_and_never_echoed() {
    let stores = MemoryStores::new(T0, 7);
    let (memory, session) = marked("s-k", Some("erin"), "MARKER-k");
    archive(&service(&stores, &[("k2025", KEY_2025)]), &memory, &session);

    let without = retrieve(&service(&stores, &[]), "s-k").unwrap_err();
    assert_eq!(without.code(), "KEY_UNAVAILABLE");
    let other_kek = retrieve(&service(&stores, &[("k2026", KEY_2026)]), "s-k").unwrap_err();
    assert_eq!(other_kek.code(), "KEY_UNAVAILABLE");
    assert!(other_kek.to_string().contains("\"k2025\""), "{other_kek}");
    let same_id_other_bytes =
        retrieve(&service(&stores, &[("k2025", KEY_2026)]), "s-k").unwrap_err();
    assert_eq!(same_id_other_bytes.code(), "DECRYPTION_FAILED");
    for err in [&without, &other_kek, &same_id_other_bytes] {
        for key in [KEY_2025, KEY_2026] {
            assert!(!err.to_string().contains(&STANDARD.encode(key)), "{err}");
        }
    }
    // The newest KEK first, the old one still configured: reads, and new owners get the new KEK.
    let both = service(&stores, &[("k2026", KEY_2026), ("k2025", KEY_2025)]);
    assert_eq!(
        retrieve(&both, "s-k").unwrap(),
        Some(conversation(&memory, &session))
    );
    let (memory2, session2) = marked("s-new", Some("frank"), "MARKER-n");
    archive(&both, &memory2, &session2);
    let snapshot = stores.snapshot();
    let wrapped: Value = serde_json::from_slice(
        &snapshot
            .r2
            .iter()
            .find(|(k, o)| {
                k.starts_with("keys/users/")
                    && !o.body.is_empty()
                    && serde_json::from_slice::<Value>(&o.body).unwrap()["kekId"] == "k2026"
            })
            .unwrap()
            .1
            .body,
    )
    .unwrap();
    assert_eq!(wrapped["kekId"], "k2026");

    // A destroyed data key: the archive is unreadable, with a code.
    let keys_now: Vec<String> = snapshot
        .r2
        .keys()
        .filter(|k| k.starts_with("keys/"))
        .cloned()
        .collect();
    block_on(stores.r2.delete(&keys_now)).unwrap();
    let fresh = service(&stores, &[("k2026", KEY_2026), ("k2025", KEY_2025)]);
    assert_eq!(
        retrieve(&fresh, "s-k").unwrap_err().code(),
        "KEY_UNAVAILABLE"
    );
}

#[test]
fn one_data_key_per_owner_whichever_service_makes_it() {
    let stores = MemoryStores::new(T0, 7);
    let first = service(&stores, &[("k2026", KEY_2026)]);
    let second = service(&stores, &[("k2026", KEY_2026)]);
    for (index, service) in [&first, &second, &first, &second].into_iter().enumerate() {
        let sid = format!("s-{index}");
        let (memory, session) = marked(&sid, Some("gina"), "MARKER-g");
        archive(service, &memory, &session);
        stores.clock.advance_ms(1_500);
    }
    let snapshot = stores.snapshot();
    assert_eq!(
        snapshot
            .r2
            .keys()
            .filter(|k| k.starts_with("keys/"))
            .count(),
        1
    );
    for index in 0..4 {
        assert!(retrieve(&first, &format!("s-{index}")).unwrap().is_some());
        assert!(retrieve(&second, &format!("s-{index}")).unwrap().is_some());
    }
}

fn budget(calls: Option<u32>) -> RunBudget {
    RunBudget {
        max_storage_calls: calls,
        deadline_ms: None,
    }
}

/// The KEK ids the data key objects are wrapped by, by object.
fn wrapping_keks(stores: &MemoryStores) -> Vec<String> {
    let snapshot = stores.snapshot();
    let keks = snapshot
        .r2
        .iter()
        .filter(|(key, _)| key.starts_with("keys/"));
    keks.map(|(_, object)| {
        let wrapped: Value = serde_json::from_slice(&object.body).unwrap();
        wrapped["kekId"].as_str().unwrap().to_owned()
    })
    .collect()
}

/// Rotation rewraps every data key (and only them: archives are not rewritten), resumes at
/// any budget, records its completion so the next run costs 1 KV get, and after it the old
/// KEK can go; a key wrapped by a KEK that is not configured is reported and left alone.
#[test]
fn rotation_rewraps_every_data_key_and_never_an_archive() {
    let stores = MemoryStores::new(T0, 5);
    let old = service(&stores, &[("k2025", KEY_2025)]);
    let cases = [
        ("s-r1", Some("rita@example.com"), "MARKER-r1"),
        ("s-r2", Some("sam@example.com"), "MARKER-r2"),
        ("s-r3", None, "MARKER-r3"),
        ("s-r4", None, "MARKER-r4"),
    ];
    archive_cases(&stores, &old, &cases);
    assert_eq!(wrapping_keks(&stores), ["k2025"; 4]);
    let archives_before: Vec<(String, Vec<u8>)> = stores
        .snapshot()
        .r2
        .iter()
        .filter(|(key, _)| key.starts_with("conversations/"))
        .map(|(key, object)| (key.clone(), object.body.clone()))
        .collect();

    let both = service(&stores, &[("k2026", KEY_2026), ("k2025", KEY_2025)]);
    // At the smallest budget, run after run, until complete.
    let mut reports = Vec::new();
    loop {
        let report =
            block_on(both.rotate_encryption_keys(budget(Some(MIN_ROTATION_CALLS)))).unwrap();
        assert!(
            report.status.storage_calls <= MIN_ROTATION_CALLS,
            "{report:?}"
        );
        reports.push(report.clone());
        if report.status.complete {
            break;
        }
        assert!(reports.len() < 10, "{reports:?}");
    }
    let rewrapped: u64 = reports.iter().map(|r| r.rewrapped).sum();
    assert_eq!(rewrapped, 4, "{reports:?}");
    assert!(reports
        .iter()
        .all(|r| r.key_unavailable + r.damaged + r.changed == 0));
    assert_eq!(wrapping_keks(&stores), ["k2026"; 4]);
    let archives_after: Vec<(String, Vec<u8>)> = stores
        .snapshot()
        .r2
        .iter()
        .filter(|(key, _)| key.starts_with("conversations/"))
        .map(|(key, object)| (key.clone(), object.body.clone()))
        .collect();
    assert_eq!(archives_after, archives_before, "no archive rewritten");

    // Recorded: the next run reads one KV key and stops.
    let again = block_on(both.rotate_encryption_keys(budget(None))).unwrap();
    assert!(again.up_to_date && again.status.complete, "{again:?}");
    assert_eq!((again.scanned, again.status.storage_calls), (0, 2));
    // A day later the record is no longer trusted: a key made meanwhile by an isolate still on
    // the old secret would be found. Every key is listed again (current ones cost no get).
    stores.clock.advance_ms(25 * 3_600_000);
    let (memory, session) = marked("s-r-late", Some("late@example.com"), "MARKER-rlate");
    archive(&old, &memory, &session);
    let recheck = block_on(both.rotate_encryption_keys(budget(None))).unwrap();
    assert!(
        !recheck.up_to_date && recheck.status.complete,
        "{recheck:?}"
    );
    assert_eq!(
        (recheck.scanned, recheck.already_current, recheck.rewrapped),
        (5, 4, 1),
        "{recheck:?}"
    );
    let data_key_gets = recheck.status.storage_calls;
    assert_eq!(
        data_key_gets,
        2 + 1 + 2 + 1,
        "resume point, state, list, get+put, record"
    );

    // The old KEK can go: everything reads with the new one alone.
    let new_only = service(&stores, &[("k2026", KEY_2026)]);
    assert_cases_retrievable(&new_only, &cases, "with the new KEK alone");
    let listing = block_on(new_only.list_archived_conversations(None, 10, None)).unwrap();
    assert!(listing.archives.iter().all(|a| a["summary"]
        .as_str()
        .is_some_and(|s| s.contains("MARKER-r"))));

    // A newer KEK, configured without the one a key is wrapped by: that key is reported and
    // left as it is; the state is not recorded, so the next run looks again.
    let (memory, session) = marked("s-r5", Some("tess@example.com"), "MARKER-r5");
    archive(&old, &memory, &session);
    let partial = service(&stores, &[("k2027", [0x27; 32]), ("k2026", KEY_2026)]);
    let report = block_on(partial.rotate_encryption_keys(budget(None))).unwrap();
    assert_eq!(
        (report.scanned, report.rewrapped, report.key_unavailable),
        (6, 5, 1),
        "{report:?}"
    );
    assert!(report.status.complete && !report.up_to_date);
    let next = block_on(partial.rotate_encryption_keys(budget(None))).unwrap();
    assert!(!next.up_to_date, "{next:?}");
    assert_eq!((next.already_current, next.key_unavailable), (5, 1));

    // Without keys there is nothing to rotate.
    let plain = service(&stores, &[]);
    let err = block_on(plain.rotate_encryption_keys(budget(None))).unwrap_err();
    assert_eq!(err.code(), "INVALID_CONFIG");
}

/// Turning encryption on for a store with plaintext archives: they stay readable, and
/// encryptExistingArchives (resumable at its smallest budget) rewrites each one encrypted,
/// points its record and index entries at it and deletes the plaintext; listings and
/// retrieval are as before, and nothing readable is left.
#[test]
fn existing_archives_are_encrypted_in_place_and_read_the_same() {
    let stores = MemoryStores::new(T0, 3);
    let plain = service(&stores, &[]);
    let cases = [
        ("s-e1", Some("una@example.com"), "MARKER-e1"),
        ("s-e2", Some("una@example.com"), "MARKER-e2"),
        ("s-e3", None, "MARKER-e3"),
    ];
    archive_cases(&stores, &plain, &cases);
    // An older archive of s-e1 beside its newest: both are encrypted, the record stays on
    // the newest.
    let (older_memory, older_session) = marked("s-e1", Some("una@example.com"), "MARKER-e0");
    stores.clock.advance_ms(1_500);
    let (memory, session) = marked("s-e1", Some("una@example.com"), "MARKER-e1");
    archive(&plain, &older_memory, &older_session);
    stores.clock.advance_ms(1_500);
    archive(&plain, &memory, &session);
    stores.clock.advance_ms(1_500);

    let plain_keys: Vec<String> = stores
        .snapshot()
        .r2
        .keys()
        .filter(|key| key.starts_with("conversations/"))
        .cloned()
        .collect();
    let stale_record = stores.snapshot().kv["archive_meta:s-e2"].clone();
    let keyed = service(&stores, &[("k2026", KEY_2026)]);
    let listed = |service: &Service, user: Option<&str>| {
        block_on(service.list_archived_conversations(user, 10, None))
            .unwrap()
            .archives
            .into_iter()
            .map(|mut entry| {
                // What a caller compares: everything but the storage details encryption
                // changes.
                for field in ["key", "sha256", "storedSize"] {
                    entry.as_object_mut().unwrap().remove(field);
                }
                entry
            })
            .collect::<Vec<_>>()
    };
    let before = (
        listed(&plain, None),
        listed(&plain, Some("una@example.com")),
    );
    assert_eq!(before.0.len(), 5);
    // Readable before the run, with the keys configured.
    assert_eq!(
        retrieve(&keyed, "s-e1").unwrap(),
        Some(conversation(&memory, &session))
    );

    let mut reports = Vec::new();
    loop {
        let report =
            block_on(keyed.encrypt_existing_archives(budget(Some(MIN_ENCRYPT_EXISTING_CALLS))))
                .unwrap();
        assert!(
            report.status.storage_calls <= MIN_ENCRYPT_EXISTING_CALLS,
            "{report:?}"
        );
        reports.push(report.clone());
        // Readable between runs.
        assert_cases_retrievable(&keyed, &cases, &format!("after run {}", reports.len()));
        if report.status.complete {
            break;
        }
        assert!(reports.len() < 20, "{reports:?}");
        stores.clock.advance_ms(1_500);
    }
    let encrypted: u64 = reports.iter().map(|r| r.encrypted).sum();
    assert_eq!(encrypted, 5, "{reports:?}");
    let snapshot = stores.snapshot();
    let archive_keys: Vec<&String> = snapshot
        .r2
        .keys()
        .filter(|key| key.starts_with("conversations/"))
        .collect();
    assert_eq!(archive_keys.len(), 5);
    assert!(
        archive_keys.iter().all(|key| key.ends_with(".enc")),
        "{archive_keys:?}"
    );
    for marker in ["MARKER-e0", "MARKER-e1", "MARKER-e2", "MARKER-e3"] {
        assert_eq!(places_revealing(&snapshot, marker), Vec::<String>::new());
    }
    assert_eq!(listed(&keyed, None), before.0);
    assert_eq!(listed(&keyed, Some("una@example.com")), before.1);
    assert_cases_retrievable(&keyed, &cases, "after the runs");
    // Keys handed out before stay valid: by key, and through a record KV has not updated
    // yet (here put back as it was).
    for key in &plain_keys {
        let by_key = block_on(keyed.retrieve_archive(key)).unwrap();
        assert!(
            by_key.is_some_and(|text| text.contains("MARKER-e")),
            "{key}"
        );
    }
    let (memory2, session2) = marked("s-e2", Some("una@example.com"), "MARKER-e2");
    let options = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: stale_record.metadata.clone(),
    };
    block_on(
        stores
            .kv
            .put("archive_meta:s-e2", &stale_record.value, options),
    )
    .unwrap();
    assert_eq!(
        retrieve(&keyed, "s-e2").unwrap(),
        Some(conversation(&memory2, &session2))
    );
    stores.clock.advance_ms(1_500);
    let snapshot = stores.snapshot();
    // Done: a second run changes nothing.
    let again = block_on(keyed.encrypt_existing_archives(budget(None))).unwrap();
    assert_eq!(
        (again.encrypted, again.already_encrypted),
        (0, 5),
        "{again:?}"
    );
    assert_eq!(stores.snapshot(), snapshot);
    let err = block_on(plain.encrypt_existing_archives(budget(None))).unwrap_err();
    assert_eq!(err.code(), "INVALID_CONFIG");
}

/// R2 where every data key is destroyed just before a rewrap of it reaches the bucket, as
/// an erasure running beside the rotation would destroy it.
struct ErasedDuringRotation(MemoryR2);

impl ObjectStore for ErasedDuringRotation {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        self.0.get(key).await
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.0.head(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        if options.if_etag_matches.is_some() {
            self.0.delete(&[key.to_owned()]).await?;
        }
        self.0.put(key, body, options).await
    }
    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        self.0.delete(keys).await
    }
    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        self.0.list(options).await
    }
}

/// A data key destroyed while the rotation rewraps it stays destroyed (the rewrap is
/// conditional on the version read), and the run says so.
#[test]
fn a_data_key_destroyed_during_rotation_is_never_brought_back() {
    let stores = MemoryStores::new(T0, 4);
    let old = service(&stores, &[("k2025", KEY_2025)]);
    let (memory, session) = marked("s-gone", Some("gone@example.com"), "MARKER-g");
    archive(&old, &memory, &session);
    let rotating = DataPersistenceService::new(
        stores.kv.clone(),
        ErasedDuringRotation(stores.r2.clone()),
        stores.clock.clone(),
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options_with(&[("k2026", KEY_2026), ("k2025", KEY_2025)]),
    )
    .unwrap();
    let report = block_on(rotating.rotate_encryption_keys(budget(None))).unwrap();
    assert_eq!(
        (report.scanned, report.changed, report.rewrapped),
        (1, 1, 0),
        "{report:?}"
    );
    assert!(!stores
        .snapshot()
        .r2
        .keys()
        .any(|key| key.starts_with("keys/")));
    // (A service that never held the key: caches live as long as their service.)
    let fresh = service(&stores, &[("k2026", KEY_2026), ("k2025", KEY_2025)]);
    let err = retrieve(&fresh, "s-gone").unwrap_err();
    assert_eq!(err.code(), "KEY_UNAVAILABLE", "{err}");
}

/// The 32 bytes of the data key stored under `object_key`, unwrapped here with the KEK bytes
/// (independently of the library), to look for them in logs. (RustCrypto's aes-gcm is a
/// dependency on native targets only.)
#[cfg(not(target_arch = "wasm32"))]
fn unwrapped_data_key(stores: &MemoryStores, object_key: &str, kek: &[u8; 32]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let wrapped: Value = serde_json::from_slice(&stores.snapshot().r2[object_key].body).unwrap();
    let field = |name: &str| wrapped[name].as_str().unwrap().to_owned();
    let aad = [
        "supportbot-persistence/data-key/v1",
        object_key,
        &field("dekId"),
        &field("kekId"),
    ]
    .join("\0");
    let cipher = aes_gcm::Aes256Gcm::new(kek.into());
    let nonce = STANDARD.decode(field("nonce")).unwrap();
    let sealed = STANDARD.decode(field("wrappedKey")).unwrap();
    let payload = Payload {
        msg: &sealed,
        aad: aad.as_bytes(),
    };
    cipher
        .decrypt(aes_gcm::Nonce::from_slice(&nonce), payload)
        .unwrap()
}

/// With debug logging on, through archiving, reading, listing, a backup and its restore, a
/// rotation, the encryption of an existing archive and the key errors: no log line holds a
/// KEK or a data key, in base64 or hex.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn no_key_material_reaches_a_log_line() {
    let stores = MemoryStores::new(T0, 13);
    let lines = Rc::new(common::Lines::default());
    let logged = |keys: &[(&str, [u8; 32])]| {
        let mut options = options_with(keys);
        options.debug = true;
        service_over(
            &stores,
            lines.clone(),
            DataRetentionPolicy::default(),
            options,
        )
    };
    let plain = service_over(
        &stores,
        lines.clone(),
        DataRetentionPolicy::default(),
        ServiceOptions::default(),
    );
    let (memory, session) = marked("s-log-0", Some("lou@example.com"), "MARKER-l0");
    archive(&plain, &memory, &session);
    stores.clock.advance_ms(1_500);
    let old = logged(&[("k2025", KEY_2025)]);
    let (memory, session) = marked("s-log-1", Some("lou@example.com"), "MARKER-l1");
    archive(&old, &memory, &session);
    stores.clock.advance_ms(1_500);
    retrieve(&old, "s-log-1").unwrap();
    block_on(old.list_archived_conversations(Some("lou@example.com"), 10, None)).unwrap();
    let backup = block_on(old.create_backup(&["s-log-1".to_owned()], None, false)).unwrap();
    lose_all_archives(&stores);
    block_on(old.restore_from_backup(&backup, None)).unwrap();
    block_on(old.encrypt_existing_archives(budget(None))).unwrap();
    let both = logged(&[("k2026", KEY_2026), ("k2025", KEY_2025)]);
    block_on(both.rotate_encryption_keys(budget(None))).unwrap();
    retrieve(&logged(&[("k2025", KEY_2025)]), "s-log-1").unwrap_err();
    retrieve(&logged(&[("k2025", KEY_2026)]), "s-log-1").unwrap_err();

    let snapshot = stores.snapshot();
    let data_key_objects: Vec<&String> = snapshot
        .r2
        .keys()
        .filter(|key| key.starts_with("keys/"))
        .collect();
    assert_eq!(data_key_objects.len(), 1);
    let dek = unwrapped_data_key(&stores, data_key_objects[0], &KEY_2026);
    let secrets: Vec<Vec<u8>> = vec![KEY_2025.to_vec(), KEY_2026.to_vec(), dek];
    let log = lines.0.borrow().join("\n");
    for operation in [
        "rotateEncryptionKeys",
        "encryptExistingArchives",
        "restoreFromBackup",
    ] {
        assert!(log.contains(operation), "{operation} logged nothing");
    }
    for secret in &secrets {
        let hex: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
        assert!(!log.contains(&hex), "a key in hex is logged");
        assert!(!reveals(log.as_bytes(), &String::from_utf8_lossy(secret)));
        let base64 = STANDARD.encode(secret);
        assert!(!log.contains(&base64[..40]), "a key in base64 is logged");
    }
}

/// encryptExistingArchives never makes an older archive the newest: here KV at this location
/// still shows the record of a plaintext archive while R2 already holds the session's newer
/// (encrypted) one, as in the minute after it was archived elsewhere. Archives past
/// archiveRetention are left to retention.
#[test]
fn encrypting_an_older_archive_never_overwrites_a_newer_record() {
    let stores = MemoryStores::new(T0, 21);
    let plain = service(&stores, &[]);
    let (older, session) = marked("s-race", Some("rae@example.com"), "MARKER-old");
    archive(&plain, &older, &session);
    let stale = stores.snapshot().kv["archive_meta:s-race"].clone();
    stores.clock.advance_ms(1_500);
    let keyed = service(&stores, &[("k2026", KEY_2026)]);
    let (newer, session2) = marked("s-race", Some("rae@example.com"), "MARKER-new");
    archive(&keyed, &newer, &session2);
    stores.clock.advance_ms(1_500);
    let options = KvPutOptions {
        expiration_ttl_secs: None,
        metadata: stale.metadata.clone(),
    };
    block_on(stores.kv.put("archive_meta:s-race", &stale.value, options)).unwrap();
    let report = block_on(keyed.encrypt_existing_archives(budget(None))).unwrap();
    assert_eq!(report.encrypted, 1, "{report:?}");
    assert_eq!(
        stores.snapshot().kv["archive_meta:s-race"].value,
        stale.value,
        "the record was not switched to the older archive"
    );

    // An archive past retention is not encrypted (nor kept alive by new index entries).
    let old_store = MemoryStores::new(T0, 22);
    let plain = service(&old_store, &[]);
    let (memory, session) = marked("s-aged", None, "MARKER-aged");
    archive(&plain, &memory, &session);
    old_store.clock.advance_ms(91 * 24 * 3_600_000);
    let keyed = service(&old_store, &[("k2026", KEY_2026)]);
    let report = block_on(keyed.encrypt_existing_archives(budget(None))).unwrap();
    assert_eq!((report.expired, report.encrypted), (1, 0), "{report:?}");
}

/// The segments of an offloaded conversation are encrypted under the conversation's own data
/// key: one key for the whole conversation, none made per segment.
#[test]
fn segments_share_their_conversation_data_key() {
    let stores = MemoryStores::new(T0, 23);
    let service = service(&stores, &[("k2026", KEY_2026)]);
    let messages = |marker: &str| {
        json!([{"id": "m1", "role": "user", "parts": [{"type": "text", "text": marker}]}])
            .to_string()
    };
    let first = block_on(service.archive_segment("chat-9", 1, &messages("MARKER-seg1"))).unwrap();
    let second = block_on(service.archive_segment("chat-9", 2, &messages("MARKER-seg2"))).unwrap();
    assert!(first.ends_with(".enc") && second.ends_with(".enc"));
    let snapshot = stores.snapshot();
    let data_keys: Vec<&String> = snapshot
        .r2
        .keys()
        .filter(|key| key.starts_with("keys/"))
        .collect();
    assert_eq!(data_keys, ["keys/sessions/chat-9.json"]);
    for marker in ["MARKER-seg1", "MARKER-seg2"] {
        assert_eq!(places_revealing(&snapshot, marker), Vec::<String>::new());
    }
    let back = block_on(service.retrieve_archive(&second))
        .unwrap()
        .unwrap();
    assert!(back.contains("MARKER-seg2"));
}
