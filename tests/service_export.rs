//! exportUserData, exportStore and importStore over the in-memory stores: a person's export
//! holds every archive of theirs, verified and decrypted, and none an erasure covers; a store
//! export imported into empty bindings reproduces every archive byte for byte (encrypted ones
//! too, read back with the same KEKs), importing twice stores nothing twice, a dry run writes
//! nothing, exports continued by cursor add up to the whole store, and a damaged line is
//! refused by number with nothing of it written. (Faults at every storage call of an import:
//! tests/crash_consistency.rs.)

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use supportbot_persistence::hash::{sha256_hex, KeyHasher};
use supportbot_persistence::keys::{UserId, ARCHIVE_INDEX_PREFIX, ARCHIVE_META_PREFIX};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::legacy_suite::{write_legacy_archive, Readings};
use supportbot_persistence::service::{
    ImportOptions, ImportReport, RunBudget, ServiceOptions, StopReason, EXPORT_CHUNK_BYTES,
    MIN_EXPORT_STORE_CALLS, MIN_IMPORT_CALLS,
};
use supportbot_persistence::store::memory::{block_on, MemoryStores};
use supportbot_persistence::store::{Clock, ObjectPutOptions, ObjectStore};

use common::{
    archive_now, import_stream, ndjson_lines, service_over, store_export, stored_content,
    user_export, verified_end_line, Discard, Service, NOW,
};

const KEK: [u8; 32] = [0x42; 32];

fn options(encrypted: bool) -> ServiceOptions {
    if !encrypted {
        return ServiceOptions::default();
    }
    let keys = json!([{ "id": "k1", "key": STANDARD.encode(KEK) }]);
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
    KeyHasher::plain().user_key(&UserId::parse(user).unwrap())
}

/// Writes the erasure tombstone of `user` (docs/FORMAT.md "Erasure"), erased at `erased_at`.
fn put_tombstone(stores: &MemoryStores, user: &str, erased_at: i64) {
    let user_key = user_key(user);
    let body = json!({"formatVersion": 1, "userKey": user_key, "erasedAt": erased_at,
                      "completedAt": null})
    .to_string();
    let options = ObjectPutOptions {
        custom_metadata: [("erasedAt".to_owned(), erased_at.to_string())].into(),
        content_type: Some("application/json".into()),
        sha256: Some(sha256_hex(body.as_bytes())),
        ..ObjectPutOptions::default()
    };
    let key = format!("erasures/{user_key}.json");
    block_on(stores.r2.put(&key, body.as_bytes(), options)).unwrap();
}

fn parse(line: &[u8]) -> Value {
    serde_json::from_slice(line).unwrap()
}

fn unlimited() -> RunBudget {
    RunBudget::default()
}

fn calls(max: u32) -> RunBudget {
    RunBudget {
        max_storage_calls: Some(max),
        deadline_ms: None,
    }
}

fn import_all(service: &Service, stream: &[u8]) -> ImportReport {
    import_stream(service, stream, ImportOptions::default(), unlimited(), 4096).unwrap()
}

// ---------------------------------------------------------------------------------------------
// exportUserData

#[test]
fn a_persons_export_holds_every_archive_verified_then_its_count_and_hash() {
    for encrypted in [false, true] {
        let stores = MemoryStores::new(NOW, 7);
        let service = service(&stores, encrypted);
        // More than one KV page of the person's index.
        let archives = 1_100;
        for i in 0..archives {
            let text = format!("question {i} about my invoice");
            archive_now(&stores, &service, &format!("a-{i}"), Some("alice"), &text);
        }
        archive_now(&stores, &service, "b-1", Some("bob"), "bob's secret");
        archive_now(&stores, &service, "n-1", None, "nobody's");

        let (stream, chunks) = user_export(&service, "alice").unwrap();
        let end = verified_end_line(&stream);
        assert_eq!(end["count"], json!(archives), "encrypted: {encrypted}");
        let lines = ndjson_lines(&stream);
        let largest = lines.iter().map(Vec::len).max().unwrap();
        assert!(chunks
            .iter()
            .all(|size| *size < EXPORT_CHUNK_BYTES + largest));
        assert!(chunks.len() > 1, "{chunks:?}");
        assert!(!String::from_utf8_lossy(&stream).contains("bob"));

        let mut previous = i64::MAX;
        let mut sessions = BTreeSet::new();
        for line in &lines[..archives] {
            let line = parse(line);
            assert_eq!(line["type"], "conversation");
            let key = line["key"].as_str().unwrap();
            let retrieved = block_on(service.retrieve_archive(key)).unwrap().unwrap();
            assert_eq!(line["conversation"], parse(retrieved.as_bytes()), "{key}");
            let sid = line["sessionId"].as_str().unwrap().to_owned();
            let metadata = &line["metadata"];
            let members: Vec<&str> = metadata
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                members,
                [
                    "sessionId",
                    "userId",
                    "archivedAt",
                    "messageCount",
                    "summary",
                    "topics",
                    "duration"
                ]
            );
            // Decrypted, whatever is stored.
            assert_eq!(metadata["summary"], json!(format!("Summary of {sid}")));
            assert_eq!(metadata["userId"], "alice");
            assert_eq!(metadata["topics"], json!(["billing"]));
            assert_eq!(line["archivedAt"], metadata["archivedAt"]);
            let archived_at = line["archivedAt"].as_i64().unwrap();
            assert!(archived_at < previous, "newest first");
            previous = archived_at;
            assert!(key.ends_with(if encrypted {
                ".json.gz.enc"
            } else {
                ".json.gz"
            }));
            sessions.insert(sid);
        }
        assert_eq!(sessions.len(), archives);
    }
}

#[test]
fn archives_an_erasure_covers_are_not_in_the_persons_export() {
    let stores = MemoryStores::new(NOW, 7);
    let service = service(&stores, true);
    archive_now(
        &stores,
        &service,
        "old-1",
        Some("alice"),
        "before the erasure",
    );
    archive_now(
        &stores,
        &service,
        "old-2",
        Some("alice"),
        "before the erasure too",
    );
    archive_now(&stores, &service, "b-1", Some("bob"), "bob's");
    put_tombstone(&stores, "alice", stores.clock.now_ms());
    stores.clock.advance_ms(1_000);
    archive_now(&stores, &service, "new-1", Some("alice"), "after it");

    let (stream, _) = user_export(&service, "alice").unwrap();
    verified_end_line(&stream);
    let sessions: Vec<Value> = ndjson_lines(&stream)
        .iter()
        .map(|line| parse(line)["sessionId"].clone())
        .collect();
    assert_eq!(sessions, [json!("new-1"), Value::Null]);
    let (bob, _) = user_export(&service, "bob").unwrap();
    assert_eq!(verified_end_line(&bob)["count"], 1);
}

#[test]
fn a_damaged_archive_fails_the_persons_export_and_a_missing_one_is_skipped() {
    let stores = MemoryStores::new(NOW, 7);
    let service = service(&stores, false);
    let mut keys = Vec::new();
    for i in 0..3 {
        archive_now(&stores, &service, &format!("a-{i}"), Some("alice"), "hello");
        keys.push(
            stores
                .snapshot()
                .r2
                .keys()
                .find(|key| key.contains(&format!("archive_a-{i}_")))
                .unwrap()
                .clone(),
        );
    }
    // Gone between the index and the read (a retention sweep): skipped.
    block_on(stores.r2.delete(&keys[..1])).unwrap();
    let (stream, _) = user_export(&service, "alice").unwrap();
    assert_eq!(verified_end_line(&stream)["count"], 2);

    // Damaged: the export fails with the code, naming the archive, never skipping it silently.
    assert!(stores.r2.corrupt(&keys[1], 20));
    let err = user_export(&service, "alice").unwrap_err();
    assert_eq!(err.code(), "CHECKSUM_MISMATCH");
    assert!(err.to_string().contains(&keys[1]), "{err}");
}

#[test]
fn an_unknown_person_exports_an_end_line_alone_and_a_bad_id_is_refused() {
    let stores = MemoryStores::new(NOW, 7);
    let service = service(&stores, false);
    let (stream, _) = user_export(&service, "nobody").unwrap();
    assert_eq!(ndjson_lines(&stream).len(), 1);
    assert_eq!(verified_end_line(&stream)["count"], 0);
    for bad in ["", "bad\u{0}id"] {
        assert_eq!(
            service.export_user_data(bad).err().unwrap().code(),
            "INVALID_ID"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// exportStore and importStore

/// A store with two users (one with two archives of one session and one with a long summary),
/// a session without a user, an archive of the earlier implementation (indexed), and an erased
/// user whose archives (and, encrypted, data key) predate the erasure.
struct Source {
    stores: MemoryStores,
    service: Service,
    encrypted: bool,
}

/// Sessions of the source an import must bring back.
const IMPORTED: [&str; 6] = ["a-1", "a-2", "b-1", "n-1", "long-1", "legacy-1"];

fn source(encrypted: bool) -> Source {
    let stores = MemoryStores::new(NOW, 11);
    let service = service(&stores, encrypted);
    archive_now(&stores, &service, "a-1", Some("alice"), "first question");
    archive_now(&stores, &service, "e-1", Some("erin"), "erin's secret");
    archive_now(&stores, &service, "a-2", Some("alice"), "second question");
    archive_now(
        &stores,
        &service,
        "e-2",
        Some("erin"),
        "erin's other secret",
    );
    put_tombstone(&stores, "erin", stores.clock.now_ms());
    stores.clock.advance_ms(1_000);
    archive_now(&stores, &service, "b-1", Some("bob"), "bob's question");
    archive_now(&stores, &service, "n-1", None, "nobody's question");
    archive_now(
        &stores,
        &service,
        "a-1",
        Some("alice"),
        "first question, again",
    );
    // A summary too long for a listing entry: the export reads its whole record.
    let now = stores.clock.now_ms();
    let mut memory = common::memory_at("long-1", "a long talk", [now - 1_000, now]);
    memory["summary"] = json!("Ü".repeat(900));
    let session = common::session_at("long-1", Some("bob"), now - 1_000, now);
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    stores.clock.advance_ms(1_500);
    let readings = Readings::after(stores.clock.now_ms() - 60_000, 3, 3);
    block_on(write_legacy_archive(
        &stores.kv, &stores.r2, "legacy-1", "lee", &readings,
    ))
    .unwrap();
    let indexed = block_on(service.index_legacy_archives(unlimited())).unwrap();
    assert!(indexed.status.complete);
    Source {
        stores,
        service,
        encrypted,
    }
}

/// Empty stores, and a service over them configured as the source's.
fn target(source: &Source) -> (MemoryStores, Service) {
    let stores = MemoryStores::new(NOW + 3_600_000, 13);
    let service = service(&stores, source.encrypted);
    (stores, service)
}

fn retrieve(service: &Service, sid: &str) -> Option<Value> {
    block_on(service.retrieve_archived_conversation(sid))
        .unwrap()
        .map(|text| parse(text.as_bytes()))
}

fn listing(service: &Service, user: Option<&str>) -> Vec<Value> {
    let listing = block_on(service.list_archived_conversations(user, 1000, None)).unwrap();
    assert!(listing.list_complete);
    listing.archives
}

/// Lines of each type in a store export.
fn types(stream: &[u8]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in ndjson_lines(stream) {
        let kind = parse(&line)["type"].as_str().unwrap().to_owned();
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

#[test]
fn a_store_export_imported_into_empty_bindings_reproduces_every_archive_byte_for_byte() {
    for encrypted in [false, true] {
        let source = source(encrypted);
        let stream = store_export(&source.service, unlimited(), None);
        let end = verified_end_line(&stream);
        assert_eq!(
            (end["complete"].clone(), end["cursor"].clone()),
            (json!(true), Value::Null)
        );
        let counts = types(&stream);
        // a-1 twice, a-2, b-1, n-1, long-1; the legacy one as its document; erin's not at all.
        assert_eq!(counts.get("archive"), Some(&6), "{counts:?}");
        assert_eq!(counts.get("document"), Some(&1), "{counts:?}");
        // Erin's tombstone; encrypted, alice's, bob's and n-1's data keys (not erin's).
        let objects = if encrypted { 4 } else { 1 };
        assert_eq!(counts.get("object"), Some(&objects), "{counts:?}");
        let text = String::from_utf8_lossy(&stream);
        assert!(!text.contains("archive_e-1_") && !text.contains("archive_e-2_"));
        // Order: tombstones, data keys, then archives.
        let kinds: Vec<String> = ndjson_lines(&stream)
            .iter()
            .map(|line| parse(line)["type"].as_str().unwrap().to_owned())
            .collect();
        let first_archive = kinds.iter().position(|kind| kind != "object").unwrap();
        assert!(kinds[first_archive..].iter().all(|kind| kind != "object"));
        if encrypted {
            // Archives as stored: nothing of a conversation readable in the stream.
            assert!(
                !text.contains("question"),
                "plaintext in an encrypted export"
            );
        }

        let (stores, service) = target(&source);
        let report = import_all(&service, &stream);
        assert!(
            report.status.complete && report.ended && report.export_complete,
            "{report:?}"
        );
        assert_eq!(
            (
                report.archives_written,
                report.objects_written,
                report.skipped_erased
            ),
            (7, objects as u64, 0),
            "{report:?}"
        );
        assert_eq!(
            report.lines,
            stream.iter().filter(|b| **b == b'\n').count() as u64
        );

        let before = stored_content(&source.stores);
        let after = stored_content(&stores);
        // Every archive object (not the erased user's, nor the legacy one, which comes back
        // in the current format) byte for byte, with its checksum and custom metadata.
        let erins_key = format!("keys/users/{}.json", user_key("erin"));
        let carried = |key: &str| {
            (key.starts_with("conversations/") && !key.contains("_e-") && !key.contains("legacy"))
                || (key.starts_with("keys/") && key != erins_key)
                || key.starts_with("erasures/")
        };
        let expected: BTreeMap<_, _> = before.0.iter().filter(|(key, _)| carried(key)).collect();
        let imported: BTreeMap<_, _> = after
            .0
            .iter()
            .filter(|(key, _)| !key.contains("legacy-1"))
            .collect();
        let keys = |objects: &BTreeMap<&String, _>| {
            objects
                .keys()
                .map(|key| (*key).clone())
                .collect::<Vec<String>>()
        };
        assert_eq!(keys(&imported), keys(&expected), "encrypted: {encrypted}");
        for (key, object) in &expected {
            assert!(
                imported[key] == *object,
                "{key} is not as stored in the source"
            );
        }
        assert!(!after.0.contains_key(&erins_key));
        // Plaintext listing entries are rebuilt exactly as archiving wrote them.
        if !encrypted {
            for (key, entry) in &before.1 {
                let archive_entry = key.starts_with(ARCHIVE_META_PREFIX)
                    || key.starts_with(ARCHIVE_INDEX_PREFIX)
                    || key.starts_with("user_archives:");
                if archive_entry && !key.contains("e-") && !key.contains("legacy-1") {
                    assert_eq!(after.1.get(key), Some(entry), "{key}");
                }
            }
        }
        for sid in IMPORTED {
            let found = retrieve(&service, sid);
            assert!(found.is_some(), "{sid} not retrievable");
            assert_eq!(found, retrieve(&source.service, sid), "{sid}");
        }
        for sid in ["e-1", "e-2"] {
            assert_eq!(retrieve(&service, sid), None);
        }
        let comparable = |mut entries: Vec<Value>| {
            for entry in &mut entries {
                if encrypted {
                    // A cut summary may come back whole (or vice versa): docs/FORMAT.md.
                    for field in ["summary", "summaryTruncated", "encryptedSummary"] {
                        entry.as_object_mut().unwrap().remove(field);
                    }
                }
            }
            entries
        };
        for user in ["alice", "bob"] {
            let listed = comparable(listing(&service, Some(user)));
            assert!(!listed.is_empty(), "{user}");
            assert_eq!(
                listed,
                comparable(listing(&source.service, Some(user))),
                "{user}"
            );
        }
        // The legacy archive is listed under the key it came back under.
        let lee = listing(&service, Some("lee"));
        assert_eq!(lee.len(), 1);
        assert_eq!(lee[0]["sessionId"], "legacy-1");
        // Gzip'd again under the key of its time; still read with the legacy rules.
        assert!(lee[0]["key"].as_str().unwrap().ends_with(".json.gz"));
        let everyone: Vec<Value> = comparable(listing(&service, None));
        let sessions: BTreeSet<&str> = everyone
            .iter()
            .map(|entry| entry["sessionId"].as_str().unwrap())
            .collect();
        assert_eq!(sessions, IMPORTED.into_iter().collect());
        assert_eq!(everyone.len(), 7);
        assert_eq!(report.index_entries_written as usize, after.1.len());

        // Importing again stores nothing twice.
        stores.clock.advance_ms(120_000);
        let again = import_all(&service, &stream);
        assert_eq!(stored_content(&stores), after, "encrypted: {encrypted}");
        assert_eq!(
            (
                again.archives_written,
                again.archives_already_present,
                again.objects_written,
                again.objects_already_present,
                again.index_entries_written,
                again.archives_conflicting + again.objects_conflicting
            ),
            (0, 7, 0, objects as u64, 0, 0),
            "{again:?}"
        );
        assert!(again.status.complete);
    }
}

#[test]
fn a_dry_run_writes_nothing_and_reports_what_an_import_writes() {
    for encrypted in [false, true] {
        let source = source(encrypted);
        let stream = store_export(&source.service, unlimited(), None);
        let (stores, service) = target(&source);
        let dry = ImportOptions {
            dry_run: true,
            from_line: 0,
        };
        let preview = import_stream(&service, &stream, dry, unlimited(), 333).unwrap();
        assert!(preview.dry_run && preview.status.complete, "{preview:?}");
        assert_eq!(
            stored_content(&stores),
            stored_content(&MemoryStores::new(NOW, 1))
        );
        let report = import_all(&service, &stream);
        let counts = |r: &ImportReport| {
            (
                r.archives_written,
                r.archives_already_present,
                r.objects_written,
                r.objects_already_present,
                r.index_entries_written,
                r.skipped_erased,
            )
        };
        assert_eq!(counts(&preview), counts(&report), "encrypted: {encrypted}");
        let imported = stored_content(&stores);
        let after = import_stream(&service, &stream, dry, unlimited(), 333).unwrap();
        assert_eq!(stored_content(&stores), imported);
        assert_eq!(
            counts(&after),
            (0, 7, 0, report.objects_written, 0, 0),
            "{after:?}"
        );
    }
}

/// The parts of an export made `calls` storage calls at a time, each ended by a verified end
/// line whose cursor the next part continues from.
fn export_in_parts(service: &Service, calls: u32) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let part = store_export(service, self::calls(calls), cursor.as_deref());
        let end = verified_end_line(&part);
        parts.push(part);
        if end["complete"] == json!(true) {
            assert_eq!(end["cursor"], Value::Null);
            return parts;
        }
        assert_eq!(end["stoppedBy"], "call_budget", "{end}");
        cursor = Some(end["cursor"].as_str().unwrap().to_owned());
        assert!(parts.len() < 100, "the export does not progress");
    }
}

#[test]
fn exports_continued_by_cursor_add_up_to_the_whole_store() {
    let source = source(true);
    let whole = store_export(&source.service, unlimited(), None);
    let body = |stream: &[u8]| {
        let mut lines = ndjson_lines(stream);
        lines.pop();
        lines
    };
    for max in [MIN_EXPORT_STORE_CALLS, 5, 9] {
        let parts = export_in_parts(&source.service, max);
        assert!(parts.len() > 2, "{max}: {} parts", parts.len());
        let joined: Vec<Vec<u8>> = parts.iter().flat_map(|part| body(part)).collect();
        assert_eq!(joined, body(&whole), "{max} calls a part");

        // Imported part after part, or all parts concatenated: the same store.
        let (one_by_one, service) = target(&source);
        for part in &parts {
            let report = import_all(&service, part);
            assert!(report.ended, "{report:?}");
        }
        let (at_once, service_at_once) = target(&source);
        let report = import_all(&service_at_once, &parts.concat());
        assert_eq!(report.end_lines, parts.len() as u64);
        assert!(report.status.complete && report.export_complete);
        let (whole_target, whole_service) = target(&source);
        import_all(&whole_service, &whole);
        assert_eq!(stored_content(&one_by_one), stored_content(&whole_target));
        assert_eq!(stored_content(&at_once), stored_content(&whole_target));
    }
    let err = source
        .service
        .export_store(calls(MIN_EXPORT_STORE_CALLS - 1), None)
        .err()
        .unwrap();
    assert_eq!(err.code(), "INVALID_INPUT");
    assert!(err.to_string().contains("maxStorageCalls"), "{err}");
    for bad in ["xyz", "7b7d", ""] {
        let err = source
            .service
            .export_store(unlimited(), Some(bad))
            .err()
            .unwrap();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("cursor"), "{err}");
    }
}

/// `stream` with line `number` (1-based) replaced by `line` (which must end with `\n`).
fn with_line(stream: &[u8], number: usize, line: &[u8]) -> Vec<u8> {
    let mut lines = ndjson_lines(stream);
    lines[number - 1] = line.to_vec();
    lines.concat()
}

/// The number of the first line of type `kind`.
fn first_line_of(stream: &[u8], kind: &str) -> usize {
    ndjson_lines(stream)
        .iter()
        .position(|line| parse(line)["type"] == kind)
        .unwrap()
        + 1
}

#[test]
fn a_damaged_line_is_refused_by_number_and_nothing_of_it_is_written() {
    let source = source(true);
    let stream = store_export(&source.service, unlimited(), None);
    let lines = ndjson_lines(&stream);
    let k = first_line_of(&stream, "archive") + 1;
    let damaged_key = parse(&lines[k - 1])["key"].as_str().unwrap().to_owned();

    // A flipped byte in the archive's base64.
    let mut line = parse(&lines[k - 1]);
    let mut bytes = STANDARD.decode(line["archive"].as_str().unwrap()).unwrap();
    bytes[40] ^= 0x01;
    line["archive"] = json!(STANDARD.encode(bytes));
    let flipped = with_line(&stream, k, format!("{line}\n").as_bytes());
    // Not JSON, and an unknown type.
    let cut = with_line(&stream, k, b"{\"type\":\"archive\",\"sessionId\":\n");
    let unknown = with_line(&stream, k, b"{\"type\":\"backup\"}\n");
    for (damaged, code) in [
        (flipped, "CHECKSUM_MISMATCH"),
        (cut, "CORRUPT_DATA"),
        (unknown, "CORRUPT_DATA"),
    ] {
        let (stores, service) = target(&source);
        let err = import_stream(
            &service,
            &damaged,
            ImportOptions::default(),
            unlimited(),
            1000,
        )
        .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(&format!("line {k}")), "{err}");
        let content = stored_content(&stores);
        // The lines before it are in, nothing of it is.
        let before_key = parse(&lines[k - 2])["key"].as_str().unwrap().to_owned();
        assert!(
            content.0.contains_key(&before_key),
            "{code}: line {} missing",
            k - 1
        );
        assert!(
            !content.0.contains_key(&damaged_key),
            "{code}: {damaged_key} written"
        );
        assert!(!content
            .1
            .values()
            .any(|(value, _)| value == damaged_key.as_bytes()));
        // Fixed, the import completes; the lines written before stay as they were.
        let report = import_all(&service, &stream);
        assert!(report.status.complete, "{report:?}");
        assert!(report.archives_already_present >= 1, "{report:?}");
    }

    // The end line must match the lines before it.
    let n = lines.len();
    let mut end = parse(&lines[n - 1]);
    end["sha256"] = json!("0".repeat(64));
    let wrong_sha = with_line(&stream, n, format!("{end}\n").as_bytes());
    let mut end = parse(&lines[n - 1]);
    end["count"] = json!(n);
    let wrong_count = with_line(&stream, n, format!("{end}\n").as_bytes());
    let dropped = [&lines[..2], &lines[3..]].concat().concat();
    for damaged in [wrong_sha, wrong_count, dropped] {
        let (_, service) = target(&source);
        let err = import_stream(
            &service,
            &damaged,
            ImportOptions::default(),
            unlimited(),
            97,
        )
        .unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "{err}");
        assert!(err.to_string().contains("(the end line)"), "{err}");
    }

    // Without its end line the import is incomplete; cut inside a line, that line is refused.
    let (_, service) = target(&source);
    let headless = lines[..n - 1].concat();
    let report = import_all(&service, &headless);
    assert!(!report.ended && !report.status.complete, "{report:?}");
    assert_eq!(report.status.stopped_by, None);
    let (_, service) = target(&source);
    let truncated = &stream[..stream.len() - lines[n - 1].len() - 10];
    let err = import_stream(
        &service,
        truncated,
        ImportOptions::default(),
        unlimited(),
        500,
    )
    .unwrap_err();
    assert_eq!(err.code(), "CORRUPT_DATA");
    assert!(
        err.to_string().contains(&format!("line {}", n - 1)),
        "{err}"
    );
    // A person's export is not a store export.
    let (person, _) = user_export(&source.service, "alice").unwrap();
    let err = import_stream(
        &service,
        &person,
        ImportOptions::default(),
        unlimited(),
        500,
    )
    .unwrap_err();
    assert!(err.to_string().contains("line 1") && err.to_string().contains("exportUserData"));
}

#[test]
fn an_import_honours_the_targets_tombstones() {
    let source = source(true);
    let stream = store_export(&source.service, unlimited(), None);
    let (stores, service) = target(&source);
    put_tombstone(&stores, "alice", stores.clock.now_ms());
    let report = import_all(&service, &stream);
    // a-1 twice and a-2, and alice's data key.
    assert_eq!(report.skipped_erased, 4, "{report:?}");
    for sid in ["a-1", "a-2"] {
        assert_eq!(retrieve(&service, sid), None);
    }
    assert!(listing(&service, Some("alice")).is_empty());
    let content = stored_content(&stores);
    assert!(!content.0.keys().any(|key| key.contains("_a-")));
    assert!(!content
        .0
        .contains_key(&format!("keys/users/{}.json", user_key("alice"))));
    assert_eq!(retrieve(&service, "b-1"), retrieve(&source.service, "b-1"));
}

#[test]
fn an_import_within_a_small_budget_stops_and_continues_from_its_next_line() {
    let source = source(false);
    let stream = store_export(&source.service, unlimited(), None);
    let (whole, whole_service) = target(&source);
    import_all(&whole_service, &stream);

    let (stores, service) = target(&source);
    let mut from_line = 1;
    let mut runs = 0;
    loop {
        runs += 1;
        let options = ImportOptions {
            dry_run: false,
            from_line,
        };
        let report =
            import_stream(&service, &stream, options, calls(MIN_IMPORT_CALLS), 211).unwrap();
        assert!(
            report.status.storage_calls <= MIN_IMPORT_CALLS,
            "{report:?}"
        );
        if report.status.complete {
            assert_eq!(report.next_line, None);
            break;
        }
        assert_eq!(report.status.stopped_by, Some(StopReason::CallBudget));
        let next = report.next_line.unwrap();
        assert!(next > from_line || runs == 1, "no progress: {report:?}");
        from_line = next;
        assert!(runs < 50);
    }
    assert!(runs > 2, "{runs} runs");
    assert_eq!(stored_content(&stores), stored_content(&whole));
    let err = service
        .import_store(ImportOptions::default(), calls(MIN_IMPORT_CALLS - 1))
        .err()
        .unwrap();
    assert!(err.to_string().contains("maxStorageCalls"), "{err}");
}

#[test]
fn a_damaged_archive_is_listed_in_the_store_exports_end_line_and_a_legacy_one_exported() {
    let source = source(false);
    // The earlier implementation's archive, in its owner's export too.
    let (lee, _) = user_export(&source.service, "lee").unwrap();
    let lines = ndjson_lines(&lee);
    assert_eq!(verified_end_line(&lee)["count"], 1);
    let line = parse(&lines[0]);
    assert_eq!(line["sessionId"], "legacy-1");
    assert_eq!(
        Some(line["conversation"].clone()),
        retrieve(&source.service, "legacy-1")
    );

    let damaged = source
        .stores
        .snapshot()
        .r2
        .keys()
        .find(|key| key.contains("archive_b-1_"))
        .unwrap()
        .clone();
    assert!(source.stores.r2.corrupt(&damaged, 25));
    let stream = store_export(&source.service, unlimited(), None);
    let end = verified_end_line(&stream);
    assert_eq!(end["unreadable"], json!([damaged]));
    assert_eq!(end["complete"], true);
    assert!(!String::from_utf8_lossy(&stream).contains("\"sessionId\":\"b-1\""));
    let (_, service) = target(&source);
    let report = import_all(&service, &stream);
    assert_eq!(report.export_unreadable, [damaged]);
    assert_eq!(report.archives_written, 6);
    assert_eq!(retrieve(&service, "b-1"), None);
}
