//! archiveConversation, retrieveArchivedConversation and listArchivedConversations over the
//! in-memory stores: round trips, write order and crash consistency, paging, legacy archives,
//! damage detection, and what never appears in keys.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::keys::{
    archive_index_key, archive_meta_key, archive_object_key, legacy_archive_object_key, SessionId,
    ARCHIVE_INDEX_PREFIX, USER_INDEX_PREFIX,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::ServiceOptions;
use supportbot_persistence::store::memory::{block_on, CallCounts, MemoryStores, OperationKind};
use supportbot_persistence::store::{
    Binding, KvPutOptions, KvStore, ObjectPutOptions, ObjectStore,
};

use common::{
    all_keys, conversation, memory_at, service_over, session_at, Lines, Service, LEGACY_ARCHIVE, T0,
};

struct Harness {
    stores: MemoryStores,
    lines: Rc<Lines>,
    service: Service,
}

impl Harness {
    fn with(policy: DataRetentionPolicy) -> Self {
        let stores = MemoryStores::new(T0, 42);
        let lines = Rc::new(Lines::default());
        let service = service_over(&stores, lines.clone(), policy, ServiceOptions::default());
        Harness {
            stores,
            lines,
            service,
        }
    }

    fn new() -> Self {
        Self::with(DataRetentionPolicy::default())
    }

    fn counts(&self) -> CallCounts {
        self.stores.faults.counts()
    }

    /// Archives a one-message conversation of session `s-1`; its R2 key.
    fn archive_s1(&self) -> String {
        self.archive(&memory("s-1", "x"), &session("s-1", None))
            .unwrap()
    }

    fn archive(&self, memory: &Value, session: &Value) -> supportbot_persistence::Result<String> {
        block_on(
            self.service
                .archive_conversation(&memory.to_string(), &session.to_string()),
        )
    }

    fn retrieve(&self, session_id: &str) -> supportbot_persistence::Result<Option<Value>> {
        block_on(self.service.retrieve_archived_conversation(session_id))
            .map(|found| found.map(|text| serde_json::from_str(&text).unwrap()))
    }

    /// Every KV and R2 key stored now.
    fn all_keys(&self) -> BTreeSet<String> {
        all_keys(&self.stores.snapshot())
    }
}

/// The shared memory plus what only clients send (message metadata, a client version), which
/// archives must keep.
fn memory(session_id: &str, text: &str) -> Value {
    let mut memory = memory_at(session_id, text, [T0 - 60_000, T0 - 30_000]);
    memory["messages"][1]["metadata"] = json!({"confidence": 0.9});
    memory["clientVersion"] = json!(3);
    memory
}

fn session(session_id: &str, user_id: Option<&str>) -> Value {
    session_at(session_id, user_id, T0 - 60_000, T0 - 30_000)
}

#[test]
fn archive_round_trips_and_writes_object_before_entries() {
    let h = Harness::new();
    let (m, s) = (
        memory("s-1", "I was charged twice"),
        session("s-1", Some("user-1")),
    );
    let key = h.archive(&m, &s).unwrap();
    assert_eq!(
        key,
        "conversations/2025/01/archive_s-1_1736157600000.json.gz"
    );

    let counts = h.counts();
    assert_eq!(counts.of(Binding::R2, OperationKind::Put), 1);
    assert_eq!(counts.of(Binding::Kv, OperationKind::Put), 3);
    assert_eq!(counts.total(), 4);

    let snapshot = h.stores.snapshot();
    let object = &snapshot.r2[&key];
    assert_eq!(object.meta.custom_metadata["sessionId"], "s-1");
    let sha256 = object.meta.custom_metadata["sha256"].clone();
    assert_eq!(object.meta.sha256.as_deref(), Some(sha256.as_str()));

    let record: Value = serde_json::from_slice(&snapshot.kv["archive_meta:s-1"].value).unwrap();
    assert_eq!(record["key"], key);
    assert_eq!(record["sha256"], sha256);
    assert_eq!(record["archivedAt"], T0);
    assert_eq!(record["messageCount"], 2);

    let index_keys: Vec<&String> = snapshot
        .kv
        .keys()
        .filter(|k| k.starts_with(USER_INDEX_PREFIX) || k.starts_with(ARCHIVE_INDEX_PREFIX))
        .collect();
    assert_eq!(index_keys.len(), 2);
    assert!(
        index_keys.contains(&&archive_index_key(T0, &SessionId::parse("s-1").unwrap()).unwrap())
    );
    for entry in index_keys
        .iter()
        .map(|k| &snapshot.kv[*k])
        .chain([&snapshot.kv["archive_meta:s-1"]])
    {
        let summary = entry.metadata.as_ref().unwrap();
        assert_eq!(
            summary["key"], key,
            "retention reads the archive key from here"
        );
        assert_eq!(summary["sha256"], sha256);
    }

    let before = h.counts();
    let retrieved = h.retrieve("s-1").unwrap().unwrap();
    assert_eq!(retrieved, conversation(&m, &s));
    let cost = h.counts().since(&before);
    assert_eq!(
        (
            cost.of(Binding::Kv, OperationKind::Get),
            cost.of(Binding::R2, OperationKind::Get),
            cost.of(Binding::R2, OperationKind::Head),
            cost.total()
        ),
        // The record, the archive, and the user's erasure tombstone.
        (1, 1, 1, 3)
    );
}

#[test]
fn sessions_without_archives_and_bad_ids() {
    let h = Harness::new();
    assert_eq!(h.retrieve("never-archived").unwrap(), None);
    for bad in ["a/b", "..", "", "a b"] {
        assert_eq!(h.retrieve(bad).unwrap_err().code(), "INVALID_ID", "{bad:?}");
    }
}

#[test]
fn bad_input_is_refused_before_any_write() {
    let h = Harness::new();
    let cases = [
        (json!([]), session("s-1", None), "INVALID_INPUT"),
        (
            json!({"sessionId": "s-1"}),
            session("s-1", None),
            "INVALID_INPUT",
        ),
        (memory("a/b", "x"), session("a/b", None), "INVALID_ID"),
        (
            memory("s-1", "x"),
            session("s-1", Some("tab\tin the middle")),
            "INVALID_ID",
        ),
        (memory("s-1", "x"), session("s-2", None), "INVALID_INPUT"),
    ];
    for (m, s, code) in cases {
        assert_eq!(h.archive(&m, &s).unwrap_err().code(), code, "{m} {s}");
    }
    assert_eq!(h.counts().total(), 0);
}

#[test]
fn too_large_archives_write_nothing() {
    let policy = DataRetentionPolicy {
        max_archive_size_bytes: 2_000,
        ..DataRetentionPolicy::default()
    };
    let h = Harness::with(policy);
    let err = h
        .archive(
            &memory("s-1", &"x".repeat(3_000)),
            &session("s-1", Some("u")),
        )
        .unwrap_err();
    assert_eq!(err.code(), "ARCHIVE_TOO_LARGE");
    assert_eq!(h.counts().total(), 0);
    assert!(h.all_keys().is_empty());
}

#[test]
fn the_newest_archive_of_a_session_is_retrieved() {
    let h = Harness::new();
    let s = session("s-1", Some("u-1"));
    h.archive(&memory("s-1", "first version"), &s).unwrap();
    h.stores.clock.advance_ms(5_000);
    let newer = memory("s-1", "second version");
    let key = h.archive(&newer, &s).unwrap();
    assert_eq!(
        key,
        archive_object_key(&SessionId::parse("s-1").unwrap(), T0 + 5_000).unwrap()
    );
    assert_eq!(
        h.retrieve("s-1").unwrap().unwrap(),
        conversation(&newer, &s)
    );
    // Both archives stay listed (they are both stored), newest first.
    let listing = block_on(h.service.list_archived_conversations(Some("u-1"), 20, None)).unwrap();
    let times: Vec<&Value> = listing.archives.iter().map(|a| &a["archivedAt"]).collect();
    assert_eq!(times, [&json!(T0 + 5_000), &json!(T0)]);
}

#[test]
fn same_millisecond_archives_of_one_session_both_survive() {
    let h = Harness::new();
    // Two writes to archive_meta within a second would hit KV's 429 rule; this test is about R2.
    h.stores.kv.set_write_rate_limit(false);
    let s = session("s-1", None);
    let first = h.archive(&memory("s-1", "one"), &s).unwrap();
    let newer = memory("s-1", "two");
    let second = h.archive(&newer, &s).unwrap();
    let sid = SessionId::parse("s-1").unwrap();
    assert_eq!(first, archive_object_key(&sid, T0).unwrap());
    assert_eq!(second, archive_object_key(&sid, T0 + 1).unwrap());
    assert_eq!(h.stores.snapshot().r2.len(), 2);
    assert_eq!(
        h.retrieve("s-1").unwrap().unwrap(),
        conversation(&newer, &s)
    );
    let record: Value =
        serde_json::from_slice(&h.stores.snapshot().kv["archive_meta:s-1"].value).unwrap();
    assert_eq!(
        record["archivedAt"],
        T0 + 1,
        "metadata carries the bumped time too"
    );
}

#[test]
fn a_retried_put_whose_response_was_lost_is_not_a_collision() {
    let h = Harness::new();
    // The R2 put is the first call; it lands, but the service sees a network error and retries.
    h.stores.faults.lose_response_of_call(1);
    let key = h.archive_s1();
    assert_eq!(
        key,
        archive_object_key(&SessionId::parse("s-1").unwrap(), T0).unwrap()
    );
    assert_eq!(h.stores.snapshot().r2.len(), 1);
    assert_eq!(h.counts().of(Binding::R2, OperationKind::Head), 1);
    assert!(h.retrieve("s-1").unwrap().is_some());
}

#[test]
fn a_kv_put_whose_response_was_lost_is_retried_after_the_rate_window() {
    let h = Harness::new();
    // Call 2 is the archive_meta put: it lands, the service sees an error and retries; KV
    // refuses a second write to the key within a second, so the retry must wait that out.
    h.stores.faults.lose_response_of_call(2);
    let slept_before = h.stores.clock.slept_ms();
    h.archive(&memory("s-1", "x"), &session("s-1", None))
        .unwrap();
    assert!(h.stores.clock.slept_ms() - slept_before >= 1_000);
    assert!(h.retrieve("s-1").unwrap().is_some());
}

#[test]
fn listing_pages_through_one_users_archives_newest_first_with_one_list_per_page() {
    let h = Harness::new();
    let sessions = (0..45).map(|i| (format!("a-{i:02}"), "alice"));
    for (sid, user) in sessions.chain((0..5).map(|i| (format!("b-{i}"), "bob"))) {
        h.archive(&memory(&sid, "help"), &session(&sid, Some(user)))
            .unwrap();
        h.stores.clock.advance_ms(1_000);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let before = h.counts();
        let page = block_on(h.service.list_archived_conversations(
            Some("alice"),
            20,
            cursor.as_deref(),
        ))
        .unwrap();
        let cost = h.counts().since(&before);
        // One KV list, and the R2 head of the user's erasure tombstone.
        assert_eq!(
            (
                cost.of(Binding::Kv, OperationKind::List),
                cost.of(Binding::R2, OperationKind::Head),
                cost.total()
            ),
            (1, 1, 2)
        );
        pages.push(page.archives.len());
        seen.extend(
            page.archives
                .iter()
                .map(|a| a["sessionId"].as_str().unwrap().to_owned()),
        );
        assert_eq!(page.cursor.is_none(), page.list_complete);
        if page.list_complete {
            break;
        }
        cursor = page.cursor;
        assert!(pages.len() < 10, "listing does not end");
    }
    assert_eq!(pages, [20, 20, 5]);
    let expected: Vec<String> = (0..45).rev().map(|i| format!("a-{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "all of alice's archives, newest first, none of bob's"
    );

    let everyone = block_on(h.service.list_archived_conversations(None, 1000, None)).unwrap();
    assert!(everyone.list_complete);
    assert_eq!(everyone.archives.len(), 50);
    assert_eq!(everyone.archives[0]["sessionId"], "b-4");
    assert_eq!(everyone.archives[49]["sessionId"], "a-00");

    let nobody = block_on(
        h.service
            .list_archived_conversations(Some("carol"), 20, None),
    )
    .unwrap();
    assert!(nobody.archives.is_empty() && nobody.list_complete);
}

#[test]
fn listing_refuses_bad_limits_cursors_and_user_ids() {
    let h = Harness::new();
    for (limit, cursor, user, code, field) in [
        (0, None, None, "INVALID_INPUT", "limit"),
        (1001, None, None, "INVALID_INPUT", "limit"),
        (20, Some(""), None, "INVALID_INPUT", "cursor"),
        (20, None, Some("a\u{0}b"), "INVALID_ID", "userId"),
    ] {
        let err = block_on(h.service.list_archived_conversations(user, limit, cursor)).unwrap_err();
        assert_eq!(err.code(), code);
        assert!(err.to_string().contains(field), "{err}");
    }
    assert_eq!(h.counts().total(), 0);
}

#[test]
fn legacy_archives_of_the_typescript_implementation_are_retrievable() {
    let h = Harness::new();
    let sid = SessionId::parse("sess-legacy-1").unwrap();
    let archived_at = 1_733_011_200_000;
    let key = legacy_archive_object_key(&sid, archived_at).unwrap();
    assert_eq!(
        key,
        "conversations/2024/12/archive_sess-legacy-1_1733011200000.json"
    );
    block_on(
        h.stores
            .r2
            .put(&key, LEGACY_ARCHIVE, ObjectPutOptions::default()),
    )
    .unwrap();
    let legacy_meta = json!({"sessionId": "sess-legacy-1", "archivedAt": archived_at,
                             "messageCount": 2, "summary": "Asked about a refund.",
                             "topics": ["billing"], "duration": -1500, "userId": "user-7"});
    block_on(h.stores.kv.put(
        &archive_meta_key(&sid),
        legacy_meta.to_string().as_bytes(),
        KvPutOptions::default(),
    ))
    .unwrap();

    let conversation = h.retrieve("sess-legacy-1").unwrap().unwrap();
    let stored: Value = serde_json::from_slice(LEGACY_ARCHIVE).unwrap();
    assert_eq!(conversation, stored["conversation"]);
}

#[test]
fn a_flipped_byte_is_a_checksum_mismatch_never_wrong_data() {
    let h = Harness::new();
    let key = h.archive_s1();
    let size = h.stores.snapshot().r2[&key].body.len();
    for position in [0, 3, 10, size / 2, size - 1] {
        assert!(h.stores.r2.corrupt(&key, position));
        let err = h.retrieve("s-1").unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
        assert!(err.to_string().contains("archive"), "{err}");
        // Flipping the same byte again restores the object.
        assert!(h.stores.r2.corrupt(&key, position));
        assert!(h.retrieve("s-1").unwrap().is_some(), "byte {position}");
    }
}

#[test]
fn metadata_pointing_at_a_missing_object_is_a_logged_miss() {
    let h = Harness::new();
    let key = h.archive_s1();
    block_on(h.stores.r2.delete(std::slice::from_ref(&key))).unwrap();
    assert_eq!(h.retrieve("s-1").unwrap(), None);
    let warnings = h.lines.warnings();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["key"], key);
    assert_eq!(warnings[0]["op"], "retrieveArchivedConversation");
}

#[test]
fn an_object_holding_another_session_is_corrupt_data() {
    let h = Harness::new();
    h.archive(&memory("s-2", "x"), &session("s-2", None))
        .unwrap();
    let other = h.stores.snapshot().r2.into_values().next().unwrap();
    // A record for s-1 whose key and checksum describe an object holding s-2.
    let key = archive_object_key(&SessionId::parse("s-1").unwrap(), T0).unwrap();
    block_on(
        h.stores
            .r2
            .put(&key, &other.body, ObjectPutOptions::default()),
    )
    .unwrap();
    let record = json!({"key": key, "sha256": other.meta.sha256, "sessionId": "s-1"});
    block_on(h.stores.kv.put(
        "archive_meta:s-1",
        record.to_string().as_bytes(),
        KvPutOptions::default(),
    ))
    .unwrap();
    let err = h.retrieve("s-1").unwrap_err();
    assert_eq!(err.code(), "CORRUPT_DATA");
    assert!(err.to_string().contains("s-2"), "{err}");
}

#[test]
fn keys_and_logs_never_hold_raw_user_ids() {
    let h = Harness::new();
    h.archive(
        &memory("s-1", "x"),
        &session("s-1", Some("alice@example.com")),
    )
    .unwrap();
    block_on(
        h.service
            .list_archived_conversations(Some("alice@example.com"), 20, None),
    )
    .unwrap();
    for key in h.all_keys() {
        assert!(!key.contains("alice"), "{key}");
    }
    for line in h.lines.0.borrow().iter() {
        assert!(!line.contains("alice"), "{line}");
    }
}

/// Crash the Worker after each storage call of an archive in turn: an acknowledged archive is
/// always retrievable; an unacknowledged one is either invisible or complete, and whatever a
/// listing shows can be retrieved.
#[test]
fn a_crash_at_any_call_loses_nothing_acknowledged_and_shows_nothing_half_written() {
    let calls = {
        let h = Harness::new();
        h.archive(&memory("s-1", "x"), &session("s-1", Some("u-1")))
            .unwrap();
        h.counts().total()
    };
    assert_eq!(calls, 4);
    for survived in 0..=calls {
        let h = Harness::new();
        h.stores.faults.crash_after(survived);
        let result = h.archive(&memory("s-1", "x"), &session("s-1", Some("u-1")));
        assert_eq!(result.is_ok(), survived == calls, "crash after {survived}");
        h.stores.faults.clear();
        // Past any backoff and breaker window the failed calls may have opened.
        h.stores.clock.advance_ms(120_000);

        let retrieved = h.retrieve("s-1").unwrap();
        if result.is_ok() {
            assert!(retrieved.is_some());
        }
        for user in [Some("u-1"), None] {
            let listing = block_on(h.service.list_archived_conversations(user, 20, None)).unwrap();
            for summary in &listing.archives {
                let sid = summary["sessionId"].as_str().unwrap();
                assert!(
                    h.retrieve(sid).unwrap().is_some(),
                    "listed but not retrievable"
                );
            }
        }
    }
}
