//! indexLegacyArchives and retrieveArchive over the in-memory stores: archives of the earlier
//! TypeScript implementation become listed (globally and per user) and stay retrievable; a
//! second run writes nothing; missing objects and unreadable records are reported and left
//! alone; budgeted runs resume; a crash at any call is repaired by the next run. Archives are
//! read back by their R2 key alone, verified.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::keys::{
    archive_meta_key, archive_object_key, legacy_archive_object_key, SessionId,
    ARCHIVE_INDEX_PREFIX, LEGACY_INDEX_CURSOR_KEY, USER_INDEX_PREFIX,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{
    MigrationReport, RunBudget, RunStatus, ServiceOptions, StopReason,
};
use supportbot_persistence::store::memory::{
    block_on, CallCounts, MemoryStores, OperationKind, StoreSnapshot,
};
use supportbot_persistence::store::{
    Binding, Clock, KvPutOptions, KvStore, ObjectPutOptions, ObjectStore,
};

use common::{conversation, service_over, Lines, Service, DAY, LEGACY_ARCHIVE, T0};

/// The fixture's session, user and archive time.
const FIXTURE_SESSION: &str = "sess-legacy-1";
const FIXTURE_USER: &str = "user-7";
const FIXTURE_ARCHIVED_AT: i64 = 1_733_011_200_000;

struct Harness {
    stores: MemoryStores,
    lines: Rc<Lines>,
    service: Service,
}

impl Harness {
    fn new() -> Self {
        let stores = MemoryStores::new(T0, 7);
        let lines = Rc::new(Lines::default());
        let service = service_over(
            &stores,
            lines.clone(),
            DataRetentionPolicy::default(),
            ServiceOptions::default(),
        );
        Harness {
            stores,
            lines,
            service,
        }
    }

    fn counts(&self) -> CallCounts {
        self.stores.faults.counts()
    }

    /// Moves past KV's one-write-a-second window, as time passes between real runs.
    fn later(&self) {
        self.stores.clock.advance_ms(2_000);
    }

    /// What the earlier implementation stored for one archive: the plain JSON document under
    /// its legacy key, and `archive_meta:<sid>` = its metadata, without list metadata.
    fn put_legacy(&self, session_id: &str, user_id: Option<&str>, archived_at: i64) -> String {
        let mut metadata = json!({"sessionId": session_id, "archivedAt": archived_at,
                                  "messageCount": 1, "summary": format!("old {session_id}"),
                                  "topics": ["billing"], "duration": 60_000});
        if let Some(user_id) = user_id {
            metadata["userId"] = json!(user_id);
        }
        let document = json!({
            "metadata": metadata,
            "conversation": {"sessionId": session_id, "summary": format!("old {session_id}"),
                             "context": {}, "messages": [{"id": "m1", "sessionId": session_id,
                             "role": "user", "content": "refund?", "timestamp": archived_at}]}
        });
        self.put_legacy_raw(
            session_id,
            archived_at,
            document.to_string().as_bytes(),
            &metadata,
        )
    }

    /// The fixture file of the earlier implementation, with its `archive_meta` record.
    fn put_legacy_fixture(&self) -> String {
        let stored: Value = serde_json::from_slice(LEGACY_ARCHIVE).unwrap();
        self.put_legacy_raw(
            FIXTURE_SESSION,
            FIXTURE_ARCHIVED_AT,
            LEGACY_ARCHIVE,
            &stored["metadata"],
        )
    }

    fn put_legacy_raw(
        &self,
        session_id: &str,
        archived_at: i64,
        body: &[u8],
        metadata: &Value,
    ) -> String {
        let sid = SessionId::parse(session_id).unwrap();
        let key = legacy_archive_object_key(&sid, archived_at).unwrap();
        block_on(self.stores.r2.put(&key, body, ObjectPutOptions::default())).unwrap();
        self.put_kv(&archive_meta_key(&sid), metadata.to_string().as_bytes());
        key
    }

    fn put_kv(&self, key: &str, value: &[u8]) {
        block_on(self.stores.kv.put(key, value, KvPutOptions::default())).unwrap();
    }

    fn migrate(&self, budget: RunBudget) -> MigrationReport {
        block_on(self.service.index_legacy_archives(budget)).unwrap()
    }

    fn migrate_all(&self) -> MigrationReport {
        self.migrate(RunBudget::default())
    }

    /// Session ids listed, newest first: of `user_id`, or of everyone.
    fn listed(&self, user_id: Option<&str>) -> Vec<String> {
        self.listing(user_id)
            .iter()
            .map(|summary| summary["sessionId"].as_str().unwrap().to_owned())
            .collect()
    }

    fn listing(&self, user_id: Option<&str>) -> Vec<Value> {
        let page = block_on(
            self.service
                .list_archived_conversations(user_id, 1000, None),
        )
        .unwrap();
        assert!(page.list_complete);
        page.archives
    }

    fn retrieve(&self, session_id: &str) -> Option<Value> {
        block_on(self.service.retrieve_archived_conversation(session_id))
            .unwrap()
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    fn retrieve_by_key(&self, key: &str) -> supportbot_persistence::Result<Option<Value>> {
        block_on(self.service.retrieve_archive(key))
            .map(|found| found.map(|text| serde_json::from_str(&text).unwrap()))
    }

    fn archive(&self, session_id: &str, user_id: &str) -> (String, Value) {
        let memory = json!({
            "sessionId": session_id, "summary": "new", "context": {"plan": "pro"},
            "messages": [{"id": "m1", "sessionId": session_id, "role": "user",
                          "content": "I was charged twice", "timestamp": T0 - 1_000}]
        });
        let session = json!({"id": session_id, "userId": user_id, "status": "ended",
                             "createdAt": T0 - 1_000, "lastActivity": T0});
        let key = block_on(
            self.service
                .archive_conversation(&memory.to_string(), &session.to_string()),
        )
        .unwrap();
        (key, conversation(&memory, &session))
    }

    fn snapshot(&self) -> StoreSnapshot {
        self.stores.snapshot()
    }
}

fn report(scanned: u64, indexed: u64, missing_objects: u64, unreadable: u64) -> MigrationReport {
    MigrationReport {
        scanned,
        indexed,
        missing_objects,
        unreadable,
        status: RunStatus {
            complete: true,
            ..RunStatus::default()
        },
    }
}

/// The report without its call count, to compare the counters.
fn counters(mut run: MigrationReport) -> MigrationReport {
    run.status.storage_calls = 0;
    run
}

#[test]
fn legacy_archives_are_listed_after_indexing_globally_and_per_user() {
    let h = Harness::new();
    let (new_key, _) = h.archive("s-new", FIXTURE_USER);
    let fixture_key = h.put_legacy_fixture();
    let anonymous_key = h.put_legacy("sess-legacy-2", None, T0 - 10 * DAY);
    h.later();
    assert_eq!(
        h.listed(None),
        ["s-new"],
        "legacy archives are not listed yet"
    );
    assert_eq!(h.listed(Some(FIXTURE_USER)), ["s-new"]);
    let fixture_record = h.snapshot().kv["archive_meta:sess-legacy-1"].clone();
    assert_eq!(fixture_record.metadata, None);

    let before = h.counts();
    let run = h.migrate_all();
    assert_eq!(counters(run.clone()), report(3, 2, 0, 0));
    // The resume point's get, one list, then per record: get, head, its index puts, re-put.
    assert_eq!(run.status.storage_calls, 1 + 1 + 5 + 4);
    let cost = h.counts().since(&before);
    assert_eq!(cost.total(), u64::from(run.status.storage_calls));
    assert_eq!(cost.of(Binding::Kv, OperationKind::Get), 3);
    assert_eq!(cost.of(Binding::R2, OperationKind::Head), 2);
    assert_eq!(cost.of(Binding::R2, OperationKind::Get), 0);
    assert_eq!(cost.of(Binding::Kv, OperationKind::Put), 5);

    assert_eq!(
        h.listed(None),
        ["s-new", "sess-legacy-2", FIXTURE_SESSION],
        "newest first"
    );
    assert_eq!(h.listed(Some(FIXTURE_USER)), ["s-new", FIXTURE_SESSION]);
    let summary = &h.listing(Some(FIXTURE_USER))[1];
    assert_eq!(
        summary,
        &json!({"key": fixture_key, "sessionId": FIXTURE_SESSION, "userId": FIXTURE_USER,
                "archivedAt": FIXTURE_ARCHIVED_AT, "messageCount": 2, "duration": 0,
                "topics": ["billing"], "rawSize": LEGACY_ARCHIVE.len(),
                "storedSize": LEGACY_ARCHIVE.len(), "sha256": "", "formatVersion": 0,
                "summary": "Asked about a refund.", "summaryTruncated": false})
    );
    assert_eq!(h.listing(None)[1]["key"], anonymous_key);
    assert_eq!(h.listing(None)[0]["key"], new_key);

    // The record keeps its value; its list metadata now names the archive.
    let record = h.snapshot().kv["archive_meta:sess-legacy-1"].clone();
    assert_eq!(record.value, fixture_record.value);
    assert_eq!(record.metadata.unwrap()["key"], fixture_key);

    let stored: Value = serde_json::from_slice(LEGACY_ARCHIVE).unwrap();
    assert_eq!(h.retrieve(FIXTURE_SESSION).unwrap(), stored["conversation"]);
    assert_eq!(
        h.retrieve_by_key(&fixture_key).unwrap().unwrap(),
        stored["conversation"]
    );
    for key in h.snapshot().kv.keys() {
        assert!(!key.contains(FIXTURE_USER), "{key}");
    }
}

#[test]
fn a_second_run_writes_nothing() {
    let h = Harness::new();
    h.archive("s-new", "u-1");
    h.put_legacy_fixture();
    h.put_legacy("sess-legacy-2", Some("u-2"), T0 - DAY);
    h.later();
    assert_eq!(h.migrate_all().indexed, 2);
    let after_first = h.snapshot();

    h.later();
    let before = h.counts();
    let run = h.migrate_all();
    assert_eq!(counters(run.clone()), report(3, 0, 0, 0));
    let cost = h.counts().since(&before);
    assert_eq!(
        (cost.of(Binding::Kv, OperationKind::List), cost.total()),
        (1, 2),
        "one list and the resume point's get, nothing per entry"
    );
    assert_eq!(h.snapshot(), after_first);
}

#[test]
fn a_record_whose_object_is_gone_is_reported_and_left_alone() {
    let h = Harness::new();
    let gone = h.put_legacy("gone", Some("u-1"), T0 - DAY);
    h.put_legacy("kept", Some("u-1"), T0 - 2 * DAY);
    block_on(h.stores.r2.delete(std::slice::from_ref(&gone))).unwrap();
    h.later();
    let gone_record = h.snapshot().kv["archive_meta:gone"].clone();

    assert_eq!(counters(h.migrate_all()), report(2, 1, 1, 0));
    assert_eq!(h.snapshot().kv["archive_meta:gone"], gone_record);
    assert_eq!(h.listed(Some("u-1")), ["kept"]);
    let warning = h
        .lines
        .warnings()
        .into_iter()
        .find(|line| line["key"] == gone.as_str())
        .expect("the missing object is logged");
    assert_eq!(warning["metaKey"], "archive_meta:gone");

    // Not marked, so the next run looks again (and writes nothing).
    h.later();
    let before = h.snapshot();
    assert_eq!(counters(h.migrate_all()), report(2, 0, 1, 0));
    assert_eq!(h.snapshot(), before);
}

#[test]
fn legacy_user_ids_outside_the_key_alphabet_are_indexed() {
    let h = Harness::new();
    for (session, user) in [
        ("plus", "alice+support@example.com"),
        ("spaced", "Alice Smith"),
    ] {
        h.put_legacy(session, Some(user), T0 - DAY);
    }
    h.later();
    assert_eq!(counters(h.migrate_all()), report(2, 2, 0, 0));
    assert_eq!(h.listed(Some("alice+support@example.com")), ["plus"]);
    assert_eq!(h.listed(Some("Alice Smith")), ["spaced"]);
}

#[test]
fn unreadable_records_are_counted_and_left_alone() {
    let h = Harness::new();
    h.put_kv("archive_meta:not-json", b"{");
    h.put_kv("archive_meta:a b", b"{}");
    // The object exists, but its user id holds a control character.
    h.put_legacy("bad-user", Some("raw-user-id\u{1}"), T0 - DAY);
    // Points at another session's archive.
    h.put_kv(
        "archive_meta:other",
        json!({"sessionId": "someone-else", "archivedAt": T0})
            .to_string()
            .as_bytes(),
    );
    h.put_legacy("fine", None, T0 - DAY);
    h.later();
    let before = h.snapshot();

    assert_eq!(counters(h.migrate_all()), report(5, 1, 0, 4));
    assert_eq!(h.listed(None), ["fine"]);
    let after = h.snapshot();
    for key in [
        "archive_meta:not-json",
        "archive_meta:a b",
        "archive_meta:bad-user",
        "archive_meta:other",
    ] {
        assert_eq!(after.kv[key], before.kv[key], "{key}");
    }
    let warned: Vec<Value> = h
        .lines
        .warnings()
        .into_iter()
        .map(|line| line["key"].clone())
        .collect();
    assert!(
        warned.contains(&json!("archive_meta:not-json")),
        "{warned:?}"
    );
    assert!(warned.contains(&json!("archive_meta:a b")), "{warned:?}");
    for line in h.lines.0.borrow().iter() {
        assert!(!line.contains("raw-user-id"), "raw user id logged: {line}");
    }
}

#[test]
fn records_of_this_library_without_list_metadata_are_indexed_too() {
    let h = Harness::new();
    let (key, expected) = h.archive("s-1", "u-1");
    let complete = h.snapshot();
    // As if written by hand: the record without list metadata, and no index entries.
    let record = complete.kv["archive_meta:s-1"].clone();
    h.later();
    h.put_kv("archive_meta:s-1", &record.value);
    for index_key in complete
        .kv
        .keys()
        .filter(|k| k.starts_with(ARCHIVE_INDEX_PREFIX) || k.starts_with(USER_INDEX_PREFIX))
    {
        block_on(h.stores.kv.delete(index_key)).unwrap();
    }
    assert!(h.listed(None).is_empty());
    h.later();

    assert_eq!(counters(h.migrate_all()), report(1, 1, 0, 0));
    assert_eq!(h.snapshot().kv, complete.kv, "exactly what archiving wrote");
    assert_eq!(h.listed(Some("u-1")), ["s-1"]);
    assert_eq!(h.retrieve_by_key(&key).unwrap().unwrap(), expected);
}

#[test]
fn budgeted_runs_resume_where_they_stopped_and_together_index_everything() {
    let h = Harness::new();
    let sessions: Vec<String> = (0..12).map(|i| format!("old-{i:02}")).collect();
    for (i, session_id) in sessions.iter().enumerate() {
        let user = if i % 2 == 0 { Some("u-even") } else { None };
        h.put_legacy(session_id, user, T0 - DAY - i as i64 * 1_000);
    }
    h.later();
    let budget = RunBudget {
        max_storage_calls: Some(14),
        deadline_ms: None,
    };
    let mut runs = Vec::new();
    loop {
        let before = h.counts();
        let run = h.migrate(budget);
        assert!(run.status.storage_calls <= 14, "{run:?}");
        assert_eq!(
            h.counts().since(&before).total(),
            u64::from(run.status.storage_calls)
        );
        assert_eq!(run.status.resumed, !runs.is_empty());
        let cursor_stored = h.snapshot().kv.contains_key(LEGACY_INDEX_CURSOR_KEY);
        assert_eq!(cursor_stored, !run.status.complete, "{run:?}");
        if !run.status.complete {
            assert_eq!(run.status.stopped_by, Some(StopReason::CallBudget));
        }
        runs.push(run.clone());
        if run.status.complete {
            break;
        }
        assert!(runs.len() < 20, "the runs do not finish");
        h.later();
    }
    assert!(runs.len() >= 4, "{runs:?}");
    assert_eq!(runs.iter().map(|run| run.indexed).sum::<u64>(), 12);
    assert_eq!(runs.iter().map(|run| run.scanned).sum::<u64>(), 12);
    // old-00 was archived last.
    let newest_first = sessions;
    assert_eq!(h.listed(None), newest_first);
    let even: Vec<String> = newest_first
        .iter()
        .filter(|id| id[4..].parse::<u32>().unwrap() % 2 == 0)
        .cloned()
        .collect();
    assert_eq!(h.listed(Some("u-even")), even);

    // A deadline that has passed stops a run before its first page, keeping the position.
    h.put_legacy("late", None, T0 - DAY);
    h.later();
    let stopped = h.migrate(RunBudget {
        max_storage_calls: None,
        deadline_ms: Some(h.service.clock().now_ms()),
    });
    assert_eq!(stopped.status.stopped_by, Some(StopReason::Deadline));
    assert_eq!((stopped.scanned, stopped.indexed), (0, 0));
    h.later();
    let finished = h.migrate_all();
    assert!(finished.status.resumed && finished.status.complete);
    assert_eq!(finished.indexed, 1);
    assert!(!h.snapshot().kv.contains_key(LEGACY_INDEX_CURSOR_KEY));
}

#[test]
fn a_budgeted_run_lists_whole_pages_and_resumes_inside_one() {
    let h = Harness::new();
    // 1500 entries this library indexed already (their list metadata names the archive), and
    // among them, in key order, 12 legacy records.
    for i in 0..1500 {
        let sid = SessionId::parse(&format!("new-{i:04}")).unwrap();
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(json!({"key": archive_object_key(&sid, T0).unwrap()})),
        };
        block_on(h.stores.kv.put(&archive_meta_key(&sid), b"{}", options)).unwrap();
    }
    for i in 0..12 {
        h.put_legacy(&format!("new-{:04}x", i * 100), None, T0 - DAY);
    }
    h.later();
    let budget = RunBudget {
        max_storage_calls: Some(50),
        deadline_ms: None,
    };
    let lists = |since: &CallCounts| h.counts().since(since).of(Binding::Kv, OperationKind::List);
    let before = h.counts();
    let first = h.migrate(budget);
    // Of the 50 calls: the resume point's get, two lists of 1000, 11 records of 4 calls (no
    // userId), and a twelfth that may take 5 does not fit beside the resume point's put.
    // (When pages held only as many entries as the calls left could index, a run listed 9 at
    // a time, indexed ones included.)
    assert_eq!(
        first.status.stopped_by,
        Some(StopReason::CallBudget),
        "{first:?}"
    );
    assert_eq!(first.indexed, 11);
    assert_eq!(lists(&before), 2);
    let position: Value = serde_json::from_slice(
        &block_on(h.stores.kv.get(LEGACY_INDEX_CURSOR_KEY))
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    assert_eq!(position["kvResumeAt"], "archive_meta:new-1100x");
    h.later();
    let before = h.counts();
    let second = h.migrate(budget);
    assert!(
        second.status.complete && second.status.resumed,
        "{second:?}"
    );
    assert_eq!(second.indexed, 1);
    // The second page again, from the record the first run stopped at.
    assert_eq!(lists(&before), 1);
    assert_eq!(first.scanned + second.scanned, 1512);
    assert_eq!(h.listed(None).len(), 12);
}

#[test]
fn a_budget_below_the_minimum_is_invalid_input() {
    let h = Harness::new();
    common::assert_budget_refused(block_on(h.service.index_legacy_archives(RunBudget {
        max_storage_calls: Some(7),
        deadline_ms: None,
    })));
    assert_eq!(h.counts().total(), 0);
}

/// Crash the Worker after each storage call of a run in turn: the next run repairs everything,
/// because the mark that makes later runs skip an entry is written after its index entries.
#[test]
fn a_crash_at_any_call_is_repaired_by_the_next_run() {
    let calls = {
        let h = Harness::new();
        h.put_legacy_fixture();
        h.later();
        h.migrate_all().status.storage_calls
    };
    assert_eq!(calls, 7);
    for survived in 0..calls {
        let h = Harness::new();
        h.put_legacy_fixture();
        h.later();
        h.stores
            .faults
            .crash_after(h.stores.faults.calls() + u64::from(survived));
        let crashed = h.migrate_all();
        assert!(!crashed.status.complete, "crash after {survived}");
        h.stores.faults.clear();
        // Past any backoff and breaker window the failed calls may have opened.
        h.stores.clock.advance_ms(120_000);

        let repaired = h.migrate_all();
        assert!(
            repaired.status.complete,
            "crash after {survived}: {repaired:?}"
        );
        assert_eq!(h.listed(None), [FIXTURE_SESSION], "crash after {survived}");
        assert_eq!(h.listed(Some(FIXTURE_USER)), [FIXTURE_SESSION]);
        assert!(h.retrieve(FIXTURE_SESSION).is_some());
        h.later();
        assert_eq!(h.migrate_all().indexed, 0, "crash after {survived}");
    }
}

#[test]
fn an_archive_is_retrieved_by_its_key_from_r2_alone() {
    let h = Harness::new();
    let (key, expected) = h.archive("s-1", "u-1");
    // As if KV had not yet seen the archive's entries where this call runs.
    for kv_key in h.stores.kv.keys() {
        block_on(h.stores.kv.delete(&kv_key)).unwrap();
    }
    let before = h.counts();
    assert_eq!(h.retrieve_by_key(&key).unwrap().unwrap(), expected);
    let cost = h.counts().since(&before);
    // The archive, and the R2 head of its user's erasure tombstone: R2 alone.
    assert_eq!(
        (
            cost.of(Binding::R2, OperationKind::Get),
            cost.of(Binding::R2, OperationKind::Head),
            cost.total()
        ),
        (1, 1, 2)
    );
    assert_eq!(h.retrieve("s-1"), None, "the session lookup needs KV");

    let absent = archive_object_key(&SessionId::parse("s-1").unwrap(), T0 + 1).unwrap();
    let before = h.counts();
    assert_eq!(h.retrieve_by_key(&absent).unwrap(), None);
    // The key, then its encrypted copy (`encryptExistingArchives` may have replaced it).
    assert_eq!(h.counts().since(&before).total(), 2);
}

#[test]
fn a_flipped_byte_under_a_key_is_a_checksum_mismatch() {
    let h = Harness::new();
    let (key, _) = h.archive("s-1", "u-1");
    let size = h.snapshot().r2[&key].body.len();
    for position in [0, 5, size / 2, size - 1] {
        assert!(h.stores.r2.corrupt(&key, position));
        let err = h.retrieve_by_key(&key).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
        assert!(h.stores.r2.corrupt(&key, position));
    }
    assert!(h.retrieve_by_key(&key).unwrap().is_some());
}

#[test]
fn keys_of_other_kinds_are_invalid_input_before_any_call() {
    let h = Harness::new();
    for bad in [
        "",
        "archive_meta:s-1",
        "backups/b1/manifest.json",
        "backups/b1/data.json.gz",
        "conversations/2025/02/archive_s-1_1736157600000.json.gz",
        "conversations/2025/01/archive_s-1_1736157600000.json",
        "conversations/2025/01/../archive_s-1_1736157600000.json.gz",
        "conversations/2025/01/archive_a/b_1736157600000.json.gz",
    ] {
        let err = h.retrieve_by_key(bad).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{bad:?}");
        assert!(err.to_string().contains("archiveKey"), "{err}");
    }
    assert_eq!(h.counts().total(), 0);
}

#[test]
fn an_object_holding_another_session_is_corrupt_data() {
    let h = Harness::new();
    let (other_key, _) = h.archive("s-2", "u-1");
    let other = h.snapshot().r2[&other_key].clone();
    let key = archive_object_key(&SessionId::parse("s-1").unwrap(), T0).unwrap();
    let options = ObjectPutOptions {
        custom_metadata: other.meta.custom_metadata.clone(),
        sha256: other.meta.sha256.clone(),
        ..ObjectPutOptions::default()
    };
    block_on(h.stores.r2.put(&key, &other.body, options)).unwrap();
    let err = h.retrieve_by_key(&key).unwrap_err();
    assert_eq!(err.code(), "CORRUPT_DATA");
    assert!(err.to_string().contains("s-2"), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
}
