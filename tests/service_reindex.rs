//! reindexUserArchives over the in-memory stores: after the hash secret changes, users' listings
//! are empty until the per-user index is rebuilt from `archive_index:`; budgeted runs resume
//! and together write each user's entries once; a run repeated changes nothing; archives
//! without a user and unreadable entries are counted and left alone.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::json;
use supportbot_persistence::keys::{
    archive_index_key, archive_meta_key, archive_object_key, legacy_archive_object_key, SessionId,
    USER_INDEX_PREFIX, USER_REINDEX_CURSOR_KEY,
};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{RunBudget, ServiceOptions, StopReason};
use supportbot_persistence::store::memory::{block_on, MemoryStores, OperationKind};
use supportbot_persistence::store::{
    Binding, Clock, KvPutOptions, KvStore, ObjectPutOptions, ObjectStore,
};

use common::{all_keys, service_over, session_at, Discard, Service, DAY, T0};

fn service_with_secret(stores: &MemoryStores, secret: &str) -> Service {
    let options = ServiceOptions::from_json(&json!({ "hashSecret": secret }).to_string()).unwrap();
    service_over(
        stores,
        Rc::new(Discard),
        DataRetentionPolicy::default(),
        options,
    )
}

fn archive(stores: &MemoryStores, service: &Service, sid: &str, user: Option<&str>) {
    let at = stores.clock.now_ms();
    let memory = json!({"sessionId": sid, "summary": "", "context": {}, "messages": [
        {"id": "m1", "sessionId": sid, "role": "user", "content": "my invoice", "timestamp": at}]});
    let session = session_at(sid, user, at, at);
    block_on(service.archive_conversation(&memory.to_string(), &session.to_string())).unwrap();
    stores.clock.advance_ms(1_500);
}

/// Session ids of `user`'s archives, newest first.
fn listed(service: &Service, user: &str) -> Vec<String> {
    let page = block_on(service.list_archived_conversations(Some(user), 1000, None)).unwrap();
    page.archives
        .iter()
        .map(|summary| summary["sessionId"].as_str().unwrap().to_owned())
        .collect()
}

fn reindex(
    service: &Service,
    max_storage_calls: Option<u32>,
) -> supportbot_persistence::service::ReindexReport {
    block_on(service.reindex_user_archives(RunBudget {
        max_storage_calls,
        deadline_ms: None,
    }))
    .unwrap()
}

#[test]
fn a_new_hash_secret_lists_nothing_until_the_user_index_is_rebuilt() {
    let stores = MemoryStores::new(T0, 3);
    let old = service_with_secret(&stores, "the-old-secret-0123456789");
    for index in 0..12 {
        let user = ["alice", "bob", "auth0|Zoë"][index % 3];
        archive(&stores, &old, &format!("s{index:02}"), Some(user));
    }
    archive(&stores, &old, "anon", None);
    let before: Vec<Vec<String>> = ["alice", "bob", "auth0|Zoë"]
        .iter()
        .map(|user| listed(&old, user))
        .collect();
    assert_eq!(before[0], ["s09", "s06", "s03", "s00"]);

    let new = service_with_secret(&stores, "the-new-secret-0123456789");
    assert!(listed(&new, "alice").is_empty());

    // A small budget: runs stop and resume until the walk is complete.
    let mut runs = Vec::new();
    loop {
        stores.clock.advance_ms(2_000);
        let run = reindex(&new, Some(6));
        assert!(run.status.storage_calls <= 6, "{run:?}");
        let stored = stores.snapshot().kv.contains_key(USER_REINDEX_CURSOR_KEY);
        assert_eq!(stored, !run.status.complete, "{run:?}");
        runs.push(run.clone());
        if run.status.complete {
            break;
        }
        assert_eq!(run.status.stopped_by, Some(StopReason::CallBudget));
        assert!(runs.len() < 30, "no progress");
    }
    assert!(runs.len() > 3, "{runs:?}");
    assert!(runs[1..].iter().all(|run| run.status.resumed));
    assert_eq!(runs.iter().map(|run| run.written).sum::<u64>(), 12);
    assert_eq!(runs.iter().map(|run| run.anonymous).sum::<u64>(), 1);
    assert_eq!(runs.iter().map(|run| run.scanned).sum::<u64>(), 13);
    let after: Vec<Vec<String>> = ["alice", "bob", "auth0|Zoë"]
        .iter()
        .map(|user| listed(&new, user))
        .collect();
    assert_eq!(after, before);
    // The listing entries carry the same summaries as the ones archiving wrote.
    let old_page = block_on(old.list_archived_conversations(Some("bob"), 10, None)).unwrap();
    let new_page = block_on(new.list_archived_conversations(Some("bob"), 10, None)).unwrap();
    assert_eq!(new_page.archives, old_page.archives);

    // Once more: the same entries again, nothing else changes.
    stores.clock.advance_ms(2_000);
    let snapshot = stores.snapshot();
    let counts = stores.faults.counts();
    let again = reindex(&new, None);
    assert!(again.status.complete && !again.status.resumed, "{again:?}");
    assert_eq!(again.written, 12);
    assert_eq!(stores.snapshot().kv, snapshot.kv);
    let cost = stores.faults.counts().since(&counts);
    assert_eq!(
        cost.of(Binding::Kv, OperationKind::Get),
        1,
        "only the resume point is read"
    );
    assert_eq!(cost.of(Binding::Kv, OperationKind::Put), 12);
}

#[test]
fn an_entry_without_a_readable_summary_is_counted_and_left_alone() {
    let stores = MemoryStores::new(T0, 3);
    let service = service_with_secret(&stores, "the-old-secret-0123456789");
    archive(&stores, &service, "s1", Some("alice"));
    for (key, metadata) in [
        ("archive_index:8263842399999:hand", None),
        (
            "archive_index:8263842399998:bad",
            Some(json!({"userId": 7})),
        ),
    ] {
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata,
        };
        block_on(stores.kv.put(key, b"k", options)).unwrap();
    }
    let run = reindex(&service, None);
    assert_eq!(
        (run.scanned, run.written, run.unreadable, run.anonymous),
        (3, 1, 2, 0)
    );
    assert!(stores
        .snapshot()
        .kv
        .contains_key("archive_index:8263842399999:hand"));
}

#[test]
fn a_budget_below_the_minimum_is_invalid_input() {
    let stores = MemoryStores::new(T0, 3);
    let service = service_with_secret(&stores, "the-old-secret-0123456789");
    common::assert_budget_refused(block_on(service.reindex_user_archives(RunBudget {
        max_storage_calls: Some(3),
        deadline_ms: None,
    })));
}

#[test]
fn archives_indexed_from_the_earlier_implementation_are_reindexed_too() {
    let stores = MemoryStores::new(T0, 3);
    let old = service_with_secret(&stores, "the-old-secret-0123456789");
    // What the earlier implementation stored: the plain document and archive_meta, no index.
    let sid = SessionId::parse("legacy-1").unwrap();
    let at = T0 - 10 * DAY;
    let metadata = json!({"sessionId": "legacy-1", "userId": "carol", "archivedAt": at,
                          "messageCount": 1, "summary": "old", "topics": [], "duration": 0});
    let document = json!({"metadata": metadata, "conversation": {"sessionId": "legacy-1",
        "messages": [{"id": "m1", "sessionId": "legacy-1", "role": "user", "content": "hi",
                      "timestamp": at}], "summary": "old", "context": {}}});
    let key = legacy_archive_object_key(&sid, at).unwrap();
    block_on(stores.r2.put(
        &key,
        document.to_string().as_bytes(),
        ObjectPutOptions::default(),
    ))
    .unwrap();
    let record = metadata.to_string();
    block_on(stores.kv.put(
        &archive_meta_key(&sid),
        record.as_bytes(),
        KvPutOptions::default(),
    ))
    .unwrap();
    let migrated = block_on(old.index_legacy_archives(RunBudget::default())).unwrap();
    assert_eq!(migrated.indexed, 1);
    assert_eq!(listed(&old, "carol"), ["legacy-1"]);

    let new = service_with_secret(&stores, "the-new-secret-0123456789");
    assert!(listed(&new, "carol").is_empty());
    assert_eq!(reindex(&new, None).written, 1);
    assert_eq!(listed(&new, "carol"), ["legacy-1"]);
}

#[test]
fn a_walk_over_several_pages_writes_every_entry_once() {
    let stores = MemoryStores::new(T0, 3);
    let service = service_with_secret(&stores, "the-new-secret-0123456789");
    // 1100 entries as archiving writes them (reindexing reads only the listing).
    for index in 0..1100_i64 {
        let sid = SessionId::parse(&format!("bulk-{index:04}")).unwrap();
        let at = T0 + index;
        let summary = json!({"key": archive_object_key(&sid, at).unwrap(),
                             "sessionId": sid.as_str(), "userId": "bulk", "archivedAt": at});
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(summary),
        };
        block_on(
            stores
                .kv
                .put(&archive_index_key(at, &sid).unwrap(), b"k", options),
        )
        .unwrap();
    }
    let counts = stores.faults.counts();
    let run = reindex(&service, None);
    assert_eq!((run.scanned, run.written, run.unreadable), (1100, 1100, 0));
    let cost = stores.faults.counts().since(&counts);
    assert_eq!(cost.of(Binding::Kv, OperationKind::List), 2);
    let user_entries = all_keys(&stores.snapshot())
        .iter()
        .filter(|key| key.starts_with(USER_INDEX_PREFIX))
        .count();
    assert_eq!(user_entries, 1100);
}
