//! Segments (the Agents SDK integration's offload) over the in-memory stores: a segment is an
//! archive of the one kind under `<sessionId>:segment-<n>`, read back by its key; a user's
//! listing never shows it; the global archive index (whole-store backups) holds it; backups,
//! restores and retention treat it as any archive; bad input is INVALID_INPUT naming the field
//! with no storage call. Faults at each storage call of a segment write: crash_consistency.rs.

#[allow(dead_code)]
mod common;

use serde_json::{json, Value};
use supportbot_persistence::keys::ARCHIVE_INDEX_PREFIX;
use supportbot_persistence::service::RunBudget;
use supportbot_persistence::store::memory::{block_on, MemoryStores};

use common::{all_keys, lose_all_archives, quiet_service, Service, DAY, T0};

fn messages(from: usize, to: usize) -> Value {
    (from..to)
        .map(|i| {
            json!({"id": format!("m{i}"), "role": if i % 2 == 0 { "user" } else { "assistant" },
                   "parts": [{"type": "text", "text": format!("message {i}")},
                             {"type": "tool-lookup", "toolCallId": format!("c{i}"),
                              "state": "output-available", "input": {"q": i}, "output": {"ok": true}}]})
        })
        .collect()
}

fn harness() -> (MemoryStores, Service) {
    let stores = MemoryStores::new(T0, 7);
    let service = quiet_service(&stores);
    (stores, service)
}

fn by_key(service: &Service, key: &str) -> Option<Value> {
    block_on(service.retrieve_ui_messages_by_key(key))
        .unwrap()
        .map(|text| serde_json::from_str(&text).unwrap())
}

#[test]
fn segments_round_trip_by_key_and_stay_out_of_user_listings() {
    let (stores, service) = harness();
    let first =
        block_on(service.archive_segment("chat-1", 1, &messages(0, 10).to_string())).unwrap();
    stores.clock.advance_ms(1_500);
    let second =
        block_on(service.archive_segment("chat-1", 2, &messages(10, 20).to_string())).unwrap();
    assert!(first.contains("archive_chat-1:segment-000001_"), "{first}");
    assert_eq!(by_key(&service, &first), Some(messages(0, 10)));
    assert_eq!(by_key(&service, &second), Some(messages(10, 20)));
    stores.clock.advance_ms(1_500);
    block_on(service.archive_ui_messages(
        "chat-1",
        &messages(0, 25).to_string(),
        r#"{"userId":"u-1"}"#,
    ))
    .unwrap();
    let listed = block_on(service.list_archived_conversations(Some("u-1"), 1000, None)).unwrap();
    assert_eq!(listed.archives.len(), 1, "one entry per conversation");
    // The global archive index, which whole-store backups walk, holds both segments.
    let indexed: Vec<String> = all_keys(&stores.snapshot())
        .into_iter()
        .filter(|key| key.starts_with(ARCHIVE_INDEX_PREFIX) && key.contains(":segment-"))
        .collect();
    assert_eq!(indexed.len(), 2, "{indexed:?}");
}

#[test]
fn backups_restores_and_retention_treat_segments_as_archives() {
    let (stores, service) = harness();
    let key = block_on(service.archive_segment("chat-1", 1, &messages(0, 5).to_string())).unwrap();
    let backup =
        block_on(service.create_backup(&["chat-1:segment-000001".to_owned()], None, false))
            .unwrap();
    lose_all_archives(&stores);
    assert_eq!(by_key(&service, &key), None);
    stores.clock.advance_ms(2_000);
    let restored = block_on(service.restore_from_backup(&backup, None)).unwrap();
    assert_eq!(restored, ["chat-1:segment-000001"]);
    let retrieved = block_on(service.retrieve_ui_messages("chat-1:segment-000001"))
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&retrieved).unwrap(),
        messages(0, 5)
    );
    stores.clock.advance_ms(91 * DAY as u64);
    block_on(service.enforce_retention_policy(RunBudget::default())).unwrap();
    assert_eq!(
        block_on(service.retrieve_ui_messages("chat-1:segment-000001")).unwrap(),
        None
    );
}

#[test]
fn bad_input_names_the_field_and_makes_no_storage_call() {
    let (stores, service) = harness();
    let cases = [
        ("chat-1", 0, messages(0, 1), "seq"),
        ("chat-1", 1_000_000, messages(0, 1), "seq"),
        (&*"a".repeat(114), 1, messages(0, 1), "sessionId"),
        (
            "chat-1",
            1,
            json!([{"id": "m", "role": "user"}]),
            "messages[0].parts",
        ),
        ("chat-1", 1, json!({}), "messages"),
    ];
    for (sid, seq, body, field) in cases {
        let err = block_on(service.archive_segment(sid, seq, &body.to_string())).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{field}: {err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let err = block_on(service.retrieve_ui_messages_by_key("segments/chat-1")).unwrap_err();
    assert!(err.to_string().contains("archiveKey"), "{err}");
    assert_eq!(stores.faults.counts().total(), 0);
}
