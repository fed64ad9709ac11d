//! archiveUIMessages and retrieveUIMessages over the in-memory stores: a round trip of every
//! part type, the same storage calls and the same stored bytes as archiveConversation of the
//! conversation they map to, listing, backup and restore, retention, faults, and bad input.

#[allow(dead_code)]
mod common;

use std::rc::Rc;

use serde_json::{json, Value};
use supportbot_persistence::codec::gzip;
use supportbot_persistence::policy::DataRetentionPolicy;
use supportbot_persistence::service::{RunBudget, ServiceOptions};
use supportbot_persistence::store::memory::{block_on, MemoryStores, OperationKind};
use supportbot_persistence::store::{Binding, FailureKind, ObjectPutOptions, ObjectStore};

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

/// What describes an archive's bytes rather than its conversation: the members of its records
/// and listing entries, and of its object's custom metadata, that differ between the two
/// layouts of the same conversation.
const DESCRIBING_THE_BYTES: [&str; 4] = ["rawSize", "storedSize", "sha256", "formatVersion"];

/// KV entries or R2 objects by key, as JSON values to compare.
type Entries = Vec<(String, Value)>;

/// The stores with the archive objects as their documents, and what describes the bytes left
/// out, so that two layouts of the same conversation compare (`drop_content`: leave out the
/// messages' `content` too).
fn by_conversation(stores: &MemoryStores, drop_content: bool) -> (Entries, Entries) {
    let without_sizes = |value: &mut Value| {
        if let Some(object) = value.as_object_mut() {
            for field in DESCRIBING_THE_BYTES {
                object.shift_remove(field);
            }
        }
    };
    let snapshot = stores.snapshot();
    let kv = snapshot
        .kv
        .into_iter()
        .map(|(key, stored)| {
            let mut value = serde_json::from_slice(&stored.value)
                .unwrap_or_else(|_| Value::String(String::from_utf8(stored.value).unwrap()));
            without_sizes(&mut value);
            let mut metadata = stored.metadata.unwrap_or(Value::Null);
            without_sizes(&mut metadata);
            (key, json!({"value": value, "metadata": metadata}))
        })
        .collect();
    let r2 = snapshot
        .r2
        .into_iter()
        .map(|(key, stored)| {
            let document = gzip::decompress("t", &stored.body, 1 << 20).unwrap();
            let mut document: Value = serde_json::from_slice(&document).unwrap();
            without_sizes(&mut document);
            if drop_content {
                for message in document["conversation"]["messages"].as_array_mut().unwrap() {
                    message.as_object_mut().unwrap().shift_remove("content");
                }
            }
            let mut custom = json!(stored.meta.custom_metadata);
            without_sizes(&mut custom);
            (key, json!({"document": document, "customMetadata": custom}))
        })
        .collect();
    (kv, r2)
}

/// The same conversation archived through each call, from the same start: the same calls,
/// keys, records, index entries and custom metadata, and the same document but for where the
/// text is: archiveConversation stores the conversation retrieveArchivedConversation gives
/// (format 1, each text in `content` and in its part), archiveUIMessages stores each text once
/// (format 2, without `content`). Both read back alike, either way.
#[test]
fn the_same_keys_calls_and_conversation_as_archive_conversation() {
    let through_ui = Harness::new();
    through_ui
        .archive("chat-1", &ui_messages(), &json!({"userId": "user-1"}))
        .unwrap();
    let calls = through_ui.stores.faults.counts();
    let conversation = through_ui.retrieve_conversation("chat-1");
    let mut memory = conversation.clone();
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
    let (ui_kv, ui_r2) = by_conversation(&through_ui.stores, false);
    let (chat_kv, chat_r2) = by_conversation(&through_chat.stores, true);
    assert_eq!(ui_kv, chat_kv);
    assert_eq!(ui_r2, chat_r2);
    let format = |h: &Harness| {
        let listed = h.listed(None);
        (
            listed[0]["formatVersion"].clone(),
            listed[0]["rawSize"].as_u64().unwrap(),
        )
    };
    let (ui_format, ui_size) = format(&through_ui);
    let (chat_format, chat_size) = format(&through_chat);
    assert_eq!((ui_format, chat_format), (json!(2), json!(1)));
    assert!(ui_size < chat_size, "{ui_size} < {chat_size}");

    assert_eq!(through_chat.retrieve_conversation("chat-1"), conversation);
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
    let messages = json!([{"id": "1", "role": "user",
                           "parts": [{"type": "text", "text": "x".repeat(1_500)}]}])
    .to_string();
    let archive_with_limit = |limit: u64| {
        let stores = MemoryStores::new(T0, SEED);
        let policy = DataRetentionPolicy {
            max_archive_size_bytes: limit,
            ..DataRetentionPolicy::default()
        };
        let service = service_over(
            &stores,
            Rc::new(Lines::default()),
            policy,
            ServiceOptions::default(),
        );
        let archived = block_on(service.archive_ui_messages("chat-1", &messages, "{}"));
        (archived, stores)
    };
    let (archived, stores) = archive_with_limit(1 << 20);
    archived.unwrap();
    let raw_size = block_on(quiet_service(&stores).list_archived_conversations(None, 10, None))
        .unwrap()
        .archives[0]["rawSize"]
        .as_u64()
        .unwrap();
    // The document is measured, not the input: it holds the text once, and more around it.
    assert!(raw_size > messages.len() as u64 + 200, "{raw_size}");
    let (archived, stores) = archive_with_limit(raw_size - 1);
    assert_eq!(archived.unwrap_err().code(), "ARCHIVE_TOO_LARGE");
    assert_eq!(stores.faults.counts().total(), 0);
    let (archived, _) = archive_with_limit(raw_size);
    archived.unwrap();
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

/// An archive `archiveUIMessages` wrote before each text was kept once (format 1: each text in
/// its message's `content` and in its part; see tests/archive_fixture.rs) reads as it always
/// did, as UIMessages and as a conversation.
#[test]
fn archives_of_the_earlier_layout_read_as_they_always_did() {
    const STORED: &[u8] = include_bytes!("fixtures/archive/ui_messages_v1.json.gz");
    const SHA256SUM: &str = include_str!("fixtures/archive/ui_messages_v1.json.gz.sha256");
    const INPUT: &str = include_str!("fixtures/archive/ui_messages_v1.input.json");
    let h = Harness::new();
    let key = "conversations/2025/01/archive_chat-7f3a_1736157600000.json.gz";
    let sha256 = SHA256SUM.split_whitespace().next().unwrap();
    let raw_size = gzip::decompress("t", STORED, 1 << 20).unwrap().len();
    let options = ObjectPutOptions {
        custom_metadata: [
            ("sha256".to_owned(), sha256.to_owned()),
            ("rawSize".to_owned(), raw_size.to_string()),
        ]
        .into(),
        sha256: Some(sha256.to_owned()),
        ..ObjectPutOptions::default()
    };
    block_on(h.stores.r2.put(key, STORED, options)).unwrap();

    let messages = block_on(h.service.retrieve_ui_messages_by_key(key))
        .unwrap()
        .unwrap();
    assert_eq!(messages, INPUT.trim_end());
    let conversation: Value =
        serde_json::from_str(&block_on(h.service.retrieve_archive(key)).unwrap().unwrap()).unwrap();
    let document: Value =
        serde_json::from_slice(&gzip::decompress("t", STORED, 1 << 20).unwrap()).unwrap();
    assert_eq!(conversation, document["conversation"]);
    assert_eq!(
        conversation["messages"][0]["content"],
        "My invoice shows a double charge.\n\nSee the attached PDF."
    );
}
