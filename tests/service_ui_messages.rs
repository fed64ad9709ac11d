//! archiveUIMessages and retrieveUIMessages over the in-memory stores: a round trip of every
//! part type, the same storage calls and the same stored bytes as archiveConversation of the
//! conversation they map to, listing, backup and restore, retention, faults, and bad input.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{RunBudget, ServiceOptions};
use supportbot_persistence::store::memory::{block_on, MemoryStores, OperationKind};
use supportbot_persistence::store::{Binding, FailureKind};

use common::{
    lose_all_archives, memory_at, quiet_service, service_over, session_at, Lines, Service, DAY, T0,
};

const SEED: u64 = 42;

struct Harness {
    stores: MemoryStores,
    service: Service,
}

impl Harness {
    fn new() -> Self {
        let stores = MemoryStores::new(T0, SEED);
        let service = quiet_service(&stores);
        Harness { stores, service }
    }

    fn archive(
        &self,
        session_id: &str,
        messages: &Value,
        options: &Value,
    ) -> supportbot_persistence::Result<String> {
        block_on(self.service.archive_ui_messages(
            session_id,
            &messages.to_string(),
            &options.to_string(),
        ))
    }

    fn retrieve(&self, session_id: &str) -> supportbot_persistence::Result<Option<Value>> {
        block_on(self.service.retrieve_ui_messages(session_id))
            .map(|found| found.map(|text| serde_json::from_str(&text).unwrap()))
    }

    fn retrieve_conversation(&self, session_id: &str) -> Value {
        let text = block_on(self.service.retrieve_archived_conversation(session_id))
            .unwrap()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn listed(&self, user_id: Option<&str>) -> Vec<Value> {
        let listing = block_on(
            self.service
                .list_archived_conversations(user_id, 1000, None),
        )
        .unwrap();
        assert!(listing.list_complete);
        listing.archives
    }
}

/// A support chat with every part type of the AI SDK, tools in every state, and parts, fields
/// and metadata no SDK defines.
fn ui_messages() -> Value {
    json!([
        {"id": "u1", "role": "user", "metadata": {"createdAt": T0 - 60_000},
         "parts": [
            {"type": "text", "text": "I was charged twice for my subscription"},
            {"type": "file", "mediaType": "image/png", "filename": "receipt.png",
             "url": "https://example.com/receipt.png"}
         ]},
        {"id": "a1", "role": "assistant",
         "metadata": {"createdAt": "2025-01-06T09:59:30.000Z", "model": "m", "totalTokens": 42},
         "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "Check the invoices.", "state": "done"},
            {"type": "tool-invoices", "toolCallId": "c1", "state": "input-streaming",
             "input": {"from": "2025-"}},
            {"type": "tool-invoices", "toolCallId": "c2", "state": "input-available",
             "input": {"from": "2025-01"}},
            {"type": "tool-invoices", "toolCallId": "c3", "state": "output-available",
             "input": {"from": "2025-01"}, "output": [{"id": "INV-1", "amount": 9.99}],
             "providerExecuted": true},
            {"type": "tool-refund", "toolCallId": "c4", "state": "output-error",
             "input": {"id": "INV-1"}, "errorText": "not allowed"},
            {"type": "dynamic-tool", "toolName": "crm", "toolCallId": "c5",
             "state": "output-available", "input": {}, "output": {"tier": "gold"}},
            {"type": "source-url", "sourceId": "s1", "url": "https://example.com/billing"},
            {"type": "source-document", "sourceId": "s2", "mediaType": "application/pdf",
             "title": "Terms"},
            {"type": "data-ticket", "id": "t1", "data": {"number": 1234}},
            {"type": "text", "text": "I opened ticket 1234 for the refund.", "state": "done"},
            {"type": "future-part", "payload": {"n": [1, 2.5, null, "ü"]}}
         ],
         "annotations": ["an unknown member of the message"]}
    ])
}

#[test]
fn ui_messages_round_trip_are_listed_and_cost_what_an_archive_costs() {
    let h = Harness::new();
    let messages = ui_messages();
    let key = h
        .archive(
            "chat-1",
            &messages,
            &json!({"userId": "user-1", "summary": "Double charge"}),
        )
        .unwrap();
    assert_eq!(
        key,
        "conversations/2025/01/archive_chat-1_1736157600000.json.gz"
    );
    let counts = h.stores.faults.counts();
    assert_eq!(counts.of(Binding::R2, OperationKind::Put), 1);
    assert_eq!(counts.of(Binding::Kv, OperationKind::Put), 3);
    assert_eq!(counts.total(), 4);

    let before = h.stores.faults.counts();
    assert_eq!(h.retrieve("chat-1").unwrap(), Some(messages.clone()));
    let cost = h.stores.faults.counts().since(&before);
    // As an archive: the record, the object, and the R2 head of its user's erasure tombstone.
    assert_eq!(
        (
            cost.of(Binding::Kv, OperationKind::Get),
            cost.of(Binding::R2, OperationKind::Get),
            cost.of(Binding::R2, OperationKind::Head),
            cost.total()
        ),
        (1, 1, 1, 3)
    );

    for user in [Some("user-1"), None] {
        let listed = h.listed(user);
        assert_eq!(listed.len(), 1, "{user:?}");
        let entry = &listed[0];
        assert_eq!(entry["key"], key);
        assert_eq!(entry["sessionId"], "chat-1");
        assert_eq!(entry["userId"], "user-1");
        assert_eq!(entry["messageCount"], 2);
        assert_eq!(entry["summary"], "Double charge");
        assert_eq!(entry["topics"], json!(["billing"]));
        assert_eq!(entry["duration"], 30_000);
    }
    assert!(h.listed(Some("user-2")).is_empty());

    // Readers that know nothing of UIMessages see the text.
    let conversation = h.retrieve_conversation("chat-1");
    let contents: Vec<&Value> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| &message["content"])
        .collect();
    assert_eq!(
        contents,
        [
            "I was charged twice for my subscription",
            "I opened ticket 1234 for the refund."
        ]
    );
}

/// The stores after archiving the same conversation once through each call, from the same
/// start: the same calls, and byte for byte the same objects, records and index entries.
#[test]
fn the_same_keys_bytes_and_calls_as_archive_conversation() {
    let through_ui = Harness::new();
    through_ui
        .archive("chat-1", &ui_messages(), &json!({"userId": "user-1"}))
        .unwrap();
    let calls = through_ui.stores.faults.counts();
    let stored = through_ui.stores.snapshot();
    let mut memory = through_ui.retrieve_conversation("chat-1");
    let session = memory
        .as_object_mut()
        .unwrap()
        .remove("sessionState")
        .unwrap();

    let through_chat = Harness::new();
    block_on(
        through_chat
            .service
            .archive_conversation(&memory.to_string(), &session.to_string()),
    )
    .unwrap();
    assert_eq!(calls, through_chat.stores.faults.counts());
    assert_eq!(stored, through_chat.stores.snapshot());
    assert_eq!(
        through_chat.retrieve("chat-1").unwrap(),
        Some(ui_messages())
    );
}

#[test]
fn archives_of_chat_messages_read_as_text_parts() {
    let h = Harness::new();
    let mut memory = memory_at("s-1", "Where is my invoice?", [T0 - 2_000, T0 - 1_000]);
    memory["messages"][1]["metadata"] = json!({"confidence": 0.9});
    let session = session_at("s-1", None, T0 - 2_000, T0 - 1_000);
    block_on(
        h.service
            .archive_conversation(&memory.to_string(), &session.to_string()),
    )
    .unwrap();
    assert_eq!(
        h.retrieve("s-1").unwrap(),
        Some(json!([
            {"id": "m1", "role": "user",
             "parts": [{"type": "text", "text": "Where is my invoice?"}]},
            {"id": "m2", "role": "assistant",
             "parts": [{"type": "text", "text": "Let me check your invoice."}],
             "metadata": {"confidence": 0.9}}
        ]))
    );
}

#[test]
fn bad_ids_are_refused_before_any_call_and_unknown_sessions_are_none() {
    let h = Harness::new();
    let codes: Vec<&str> = ["a/b", "..", "", "a b"]
        .iter()
        .map(|bad| h.retrieve(bad).unwrap_err().code())
        .collect();
    assert_eq!(codes, ["INVALID_ID"; 4]);
    assert_eq!(h.stores.faults.counts().total(), 0, "no call for a bad id");
    assert_eq!(h.retrieve("never-archived").unwrap(), None);
    assert_eq!(
        h.stores.faults.counts().total(),
        1,
        "one KV get, for never-archived"
    );
}

#[test]
fn bad_input_is_refused_before_any_write() {
    let h = Harness::new();
    let ok = json!([{"id": "1", "role": "user", "parts": []}]);
    let cases = [
        (
            "chat-1",
            json!({"0": ok[0]}),
            json!({}),
            "INVALID_INPUT",
            "messages: must be an array",
        ),
        (
            "chat-1",
            json!([ok[0], ok[0], ok[0], {"id": "4", "role": "user"}]),
            json!({}),
            "INVALID_INPUT",
            "messages[3].parts: is missing",
        ),
        (
            "chat-1",
            json!([ok[0], ok[0], {"id": "3", "role": "user",
                                  "parts": [{"type": "file"}, {"type": "text", "text": 1}]}]),
            json!({}),
            "INVALID_INPUT",
            "messages[2].parts[1].text: must be a string, found number",
        ),
        ("a/b", ok.clone(), json!({}), "INVALID_ID", "sessionId"),
        (
            "chat-1",
            ok.clone(),
            json!({"userId": "tab\there"}),
            "INVALID_ID",
            "userId",
        ),
        (
            "chat-1",
            ok.clone(),
            json!({"userId": 5}),
            "INVALID_INPUT",
            "options.userId",
        ),
    ];
    for (session_id, messages, options, code, needle) in cases {
        let err = h.archive(session_id, &messages, &options).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    }
    assert_eq!(h.stores.faults.counts().total(), 0);
    assert!(h.stores.snapshot().r2.is_empty());
}

#[test]
fn too_large_ui_conversations_write_nothing() {
    let stores = MemoryStores::new(T0, SEED);
    let policy = DataRetentionPolicy {
        max_archive_size_bytes: 2_000,
        ..DataRetentionPolicy::default()
    };
    let service = service_over(
        &stores,
        Rc::new(Lines::default()),
        policy,
        ServiceOptions::default(),
    );
    let messages = json!([{"id": "1", "role": "user",
                           "parts": [{"type": "text", "text": "x".repeat(1_500)}]}]);
    let err =
        block_on(service.archive_ui_messages("chat-1", &messages.to_string(), "{}")).unwrap_err();
    // The text is stored twice (content and parts): the document is measured, not the input.
    assert_eq!(err.code(), "ARCHIVE_TOO_LARGE");
    assert_eq!(stores.faults.counts().total(), 0);
}

#[test]
fn backups_restore_and_retention_treat_them_as_any_archive() {
    let h = Harness::new();
    h.archive("chat-1", &ui_messages(), &json!({"userId": "user-1"}))
        .unwrap();
    let backup_id = block_on(h.service.create_backup(
        &["chat-1".to_owned()],
        Some("user-1"),
        false,
    ))
    .unwrap();
    lose_all_archives(&h.stores);
    assert_eq!(h.retrieve("chat-1").unwrap(), None);
    h.stores.clock.advance_ms(2_000);
    let restored = block_on(h.service.restore_from_backup(&backup_id, Some("user-1"))).unwrap();
    assert_eq!(restored, ["chat-1"]);
    assert_eq!(h.retrieve("chat-1").unwrap(), Some(ui_messages()));
    assert_eq!(h.listed(Some("user-1")).len(), 1);

    // Past archiveRetention (90 days) the sweep deletes it like any archive.
    h.stores.clock.advance_ms(91 * DAY as u64);
    block_on(h.service.enforce_retention_policy(RunBudget::default())).unwrap();
    assert_eq!(h.retrieve("chat-1").unwrap(), None);
    assert!(h.listed(Some("user-1")).is_empty());
}

/// archiveUIMessages adds no storage path: its calls are archiveConversation's (see
/// `the_same_keys_bytes_and_calls_as_archive_conversation`), whose crashes and faults
/// `service_archive.rs` and `crash_consistency.rs` cover. Here each of its calls is refused,
/// or fails once, in turn: a refusal is an error and the acknowledged archive is still the one
/// retrieved (or, once the record was written, the new complete one); a transient failure is
/// retried.
#[test]
fn a_failing_call_loses_no_acknowledged_ui_archive() {
    let newer = json!([{"id": "n1", "role": "user", "parts": [{"type": "text", "text": "again"}]}]);
    for call in 1..=4 {
        for kind in [FailureKind::Rejected, FailureKind::Transient] {
            let h = Harness::new();
            h.archive("chat-1", &ui_messages(), &json!({"userId": "user-1"}))
                .unwrap();
            h.stores.clock.advance_ms(1_500);
            h.stores
                .faults
                .fail_call(h.stores.faults.calls() + call, kind);
            let result = h.archive("chat-1", &newer, &json!({"userId": "user-1"}));
            h.stores.faults.clear();
            h.stores.clock.advance_ms(120_000);
            let retrieved = h.retrieve("chat-1").unwrap();
            let context = format!("call {call} {kind:?}: {result:?}");
            match kind {
                FailureKind::Transient => {
                    assert!(result.is_ok(), "{context}");
                    assert_eq!(retrieved, Some(newer.clone()), "{context}");
                }
                _ => {
                    assert_eq!(
                        result.unwrap_err().code(),
                        "STORAGE_UNAVAILABLE",
                        "{context}"
                    );
                    assert!(
                        retrieved == Some(ui_messages()) || retrieved == Some(newer.clone()),
                        "{context}: {retrieved:?}"
                    );
                }
            }
            // Whatever is listed can be retrieved.
            for entry in h.listed(Some("user-1")) {
                assert!(h
                    .retrieve(entry["sessionId"].as_str().unwrap())
                    .unwrap()
                    .is_some());
            }
        }
    }
}
