//! Decodes archives made by hand with the recipe in docs/FORMAT.md ("Archives"):
//! `archive_v1.json` written as text, gzip'd with `gzip -n -k archive_v1.json`, checksum
//! recorded with `sha256sum archive_v1.json.gz > archive_v1.json.gz.sha256`; a plain-JSON
//! archive as the earlier TypeScript implementation wrote it; and `ui_messages_v1.json.gz`, the
//! UIMessages of `ui_messages_v1.input.json` as `archiveUIMessages` stored them before it kept
//! each text once (format 1: each text in its message's `content` and in its part), written by
//! that encoder (session `chat-7f3a`, options `{"userId":"user-42","summary":"Double charge
//! refunded."}`, at 1736157600000, gzip level 6), checksum recorded with `sha256sum`.
//!
//! The fixtures are compiled in, so these tests also run under wasm-bindgen-test.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};
use supportbot_persistence::codec::archive::{
    decode_archive, decode_archive_json, encode_archive, encode_conversation, extract_topics,
    read_ui_messages_input, Role, View, FORMAT_VERSION, LEGACY_FORMAT_VERSION,
    TEXT_IN_PARTS_FORMAT_VERSION,
};
use supportbot_persistence::codec::gzip;

const ARCHIVE_V1_JSON: &str = include_str!("fixtures/archive/archive_v1.json");
const ARCHIVE_V1_GZ: &[u8] = include_bytes!("fixtures/archive/archive_v1.json.gz");
/// `sha256sum` output: the digest, two spaces, the file name.
const ARCHIVE_V1_SHA256SUM: &str = include_str!("fixtures/archive/archive_v1.json.gz.sha256");
const LEGACY_ARCHIVE: &[u8] = include_bytes!("fixtures/archive/legacy_archive.json");
const UI_MESSAGES_V1_GZ: &[u8] = include_bytes!("fixtures/archive/ui_messages_v1.json.gz");
const UI_MESSAGES_V1_SHA256SUM: &str =
    include_str!("fixtures/archive/ui_messages_v1.json.gz.sha256");
/// The UIMessages archived in it, as `JSON.stringify` writes them (and a final newline).
const UI_MESSAGES_V1_INPUT: &str = include_str!("fixtures/archive/ui_messages_v1.input.json");

const LIMIT: u64 = 1 << 20;

fn recorded_sha256() -> &'static str {
    ARCHIVE_V1_SHA256SUM
        .split_whitespace()
        .next()
        .expect("the .sha256 file holds a digest")
}

#[test]
fn the_sha256sum_line_names_the_fixture() {
    let mut fields = ARCHIVE_V1_SHA256SUM.split_whitespace();
    assert_eq!(fields.next().map(str::len), Some(64));
    assert_eq!(fields.next(), Some("archive_v1.json.gz"));
}

#[test]
fn hand_made_archive_decodes_with_its_checksum() {
    let decoded = decode_archive(ARCHIVE_V1_GZ, Some(recorded_sha256()), LIMIT).unwrap();

    let metadata = &decoded.metadata;
    assert_eq!(metadata.session_id, "sess-7f3a");
    assert_eq!(metadata.user_id.as_deref(), Some("user-42"));
    assert_eq!(metadata.archived_at, 1_736_157_600_000);
    assert_eq!(metadata.message_count, 3);
    assert_eq!(
        metadata.summary,
        "Customer could not log in; password reset fixed it."
    );
    assert_eq!(metadata.topics, ["authentication", "technical-issue"]);
    assert_eq!(metadata.duration, 125_000);
    assert_eq!(metadata.raw_size, ARCHIVE_V1_JSON.len() as u64);
    assert_eq!(metadata.stored_size, ARCHIVE_V1_GZ.len() as u64);
    assert_eq!(metadata.sha256, recorded_sha256());
    assert_eq!(metadata.format_version, FORMAT_VERSION);

    let memory = &decoded.conversation.memory;
    assert_eq!(memory.session_id, "sess-7f3a");
    assert_eq!(memory.messages.len(), 3);
    let first = &memory.messages[0];
    assert_eq!(first.content, "I can't log in — it says \"error 401\".");
    assert_eq!(first.role, Role::User);
    assert_eq!(first.timestamp, 1_736_157_000_000);
    assert_eq!(first.metadata.as_ref().unwrap()["locale"], "de-DE");
    assert_eq!(first.extra["clientMessageId"], "c-88");
    assert_eq!(
        memory.messages[1].content,
        "Let's reset your password. Grüße 👋"
    );
    assert_eq!(memory.messages[1].role, Role::Assistant);
    assert_eq!(memory.messages[2].metadata, None);
    assert_eq!(memory.context["tags"], json!(["login", 2]));
    assert_eq!(memory.context["escalated"], false);

    let session = decoded.conversation.session_state.as_ref().unwrap();
    assert_eq!(session.status, "ended");
    assert_eq!(session.last_activity - session.created_at, 125_000);
    assert_eq!(session.metadata.as_ref().unwrap()["channel"], "web");
    // The documented topic rules give the topics written by hand.
    assert_eq!(extract_topics(&memory.messages), metadata.topics);
}

#[test]
fn hand_made_archive_rejects_a_wrong_checksum() {
    let wrong = recorded_sha256().replace(|c: char| c != '0', "0");
    let err = decode_archive(ARCHIVE_V1_GZ, Some(&wrong), LIMIT).unwrap_err();
    assert_eq!(err.code(), "CHECKSUM_MISMATCH");
}

#[test]
fn encoder_writes_the_documented_document() {
    let decoded = decode_archive(ARCHIVE_V1_GZ, None, LIMIT).unwrap();
    let session = decoded.conversation.session_state.as_ref().unwrap();
    let archive = encode_archive(
        &decoded.conversation.memory,
        session,
        decoded.metadata.archived_at,
        gzip::DEFAULT_LEVEL,
        LIMIT,
    )
    .unwrap();
    let written: Value =
        serde_json::from_slice(&gzip::decompress("t", &archive.bytes, LIMIT).unwrap()).unwrap();
    let by_hand: Value = serde_json::from_str(ARCHIVE_V1_JSON).unwrap();
    assert_eq!(written, by_hand);
}

#[test]
fn legacy_plain_json_archive_decodes() {
    let decoded = decode_archive(LEGACY_ARCHIVE, None, LIMIT).unwrap();
    let metadata = &decoded.metadata;
    assert_eq!(metadata.format_version, LEGACY_FORMAT_VERSION);
    assert_eq!(metadata.session_id, "sess-legacy-1");
    assert_eq!(metadata.user_id.as_deref(), Some("user-7"));
    assert_eq!(metadata.archived_at, 1_733_011_200_000);
    assert_eq!(metadata.message_count, 2);
    assert_eq!(metadata.summary, "Asked about a refund.");
    assert_eq!(metadata.topics, ["billing"]);
    // The earlier implementation wrote a negative duration for a backwards clock.
    assert_eq!(metadata.duration, 0);
    assert_eq!(metadata.stored_size, LEGACY_ARCHIVE.len() as u64);

    let memory = &decoded.conversation.memory;
    assert_eq!(memory.messages[0].content, "Where is my refund?");
    assert_eq!(
        memory.messages[1].metadata.as_ref().unwrap()["confidence"],
        0.9
    );
    assert_eq!(memory.context["orderId"], "o-991");
    let session = decoded.conversation.session_state.as_ref().unwrap();
    assert_eq!(session.status, "active");
}

fn digest_of(sha256sum: &str) -> &str {
    sha256sum
        .split_whitespace()
        .next()
        .expect("the .sha256 file holds a digest")
}

/// The texts of the fixture's messages, as chat messages' content (its text parts joined by a
/// blank line).
const UI_MESSAGES_V1_CONTENTS: [&str; 6] = [
    "My invoice shows a double charge.\n\nSee the attached PDF.",
    "You were charged twice; the refund is on its way.\n\n\n\nGrüße 👋 — \"quoted\", tab\tand \\ backslash",
    "",
    "Thanks!",
    "\n\nand one more",
    "Anything else?",
];

#[test]
fn ui_messages_archived_in_format_1_read_as_they_always_did() {
    let sha256 = digest_of(UI_MESSAGES_V1_SHA256SUM);
    let input = UI_MESSAGES_V1_INPUT.trim_end();
    // Verified or not: the UIMessages as they were given, byte for byte.
    for expected in [Some(sha256), None] {
        let decoded = decode_archive_json(
            UI_MESSAGES_V1_GZ,
            expected,
            LIMIT,
            View::UiMessages("fixture"),
        )
        .unwrap();
        assert_eq!(decoded.json, input);
        let metadata = &decoded.metadata;
        assert_eq!(metadata.format_version, FORMAT_VERSION);
        assert_eq!(metadata.session_id, "chat-7f3a");
        assert_eq!(metadata.user_id.as_deref(), Some("user-42"));
        assert_eq!(metadata.message_count, 6);
        assert_eq!(metadata.topics, ["billing"]);
        assert_eq!(metadata.duration, 60_000);
        assert_eq!(metadata.sha256, sha256);
    }
    // As a conversation: the stored member, each text in `content` and in its part.
    let document: Value =
        serde_json::from_slice(&gzip::decompress("t", UI_MESSAGES_V1_GZ, LIMIT).unwrap()).unwrap();
    let conversation =
        decode_archive_json(UI_MESSAGES_V1_GZ, Some(sha256), LIMIT, View::Conversation).unwrap();
    let conversation: Value = serde_json::from_str(&conversation.json).unwrap();
    assert_eq!(conversation, document["conversation"]);
    let contents: Vec<&Value> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| &message["content"])
        .collect();
    assert_eq!(contents, UI_MESSAGES_V1_CONTENTS);
    assert_eq!(
        conversation["messages"][1]["metadata"]["uiMessage"]["parts"][13]["text"],
        "You were charged twice; the refund is on its way."
    );
    let owned = decode_archive(UI_MESSAGES_V1_GZ, Some(sha256), LIMIT).unwrap();
    let owned: Vec<&str> = owned
        .conversation
        .memory
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .collect();
    assert_eq!(owned, UI_MESSAGES_V1_CONTENTS);
}

/// The same UIMessages archived today: each text once (format 2), a smaller document, and
/// every reading of it the same as of the format 1 archive.
#[test]
fn ui_messages_archived_today_read_as_the_format_1_archive() {
    let sha256 = digest_of(UI_MESSAGES_V1_SHA256SUM);
    let options = r#"{"userId":"user-42","summary":"Double charge refunded."}"#;
    let input = read_ui_messages_input(
        "chat-7f3a",
        UI_MESSAGES_V1_INPUT.trim_end(),
        options,
        1_736_157_600_000,
    )
    .unwrap();
    let archive =
        encode_conversation(&input, 1_736_157_600_000, gzip::DEFAULT_LEVEL, LIMIT).unwrap();
    let today = &archive.metadata;
    assert_eq!(today.format_version, TEXT_IN_PARTS_FORMAT_VERSION);
    let before = decode_archive(UI_MESSAGES_V1_GZ, Some(sha256), LIMIT)
        .unwrap()
        .metadata;
    assert!(today.raw_size < before.raw_size, "{today:?} {before:?}");
    let described = |metadata: &supportbot_persistence::codec::archive::ArchiveMetadata| {
        (
            metadata.session_id.clone(),
            metadata.user_id.clone(),
            metadata.archived_at,
            metadata.message_count,
            metadata.summary.clone(),
            metadata.topics.clone(),
            metadata.duration,
        )
    };
    assert_eq!(described(today), described(&before));
    for view in [View::UiMessages("fixture"), View::Conversation] {
        let now = decode_archive_json(&archive.bytes, Some(&today.sha256), LIMIT, view).unwrap();
        let then = decode_archive_json(UI_MESSAGES_V1_GZ, Some(sha256), LIMIT, view).unwrap();
        assert_eq!(now.json, then.json, "{view:?}");
    }
}
