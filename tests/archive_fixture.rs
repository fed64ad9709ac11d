//! Decodes archives made by hand with the recipe in docs/FORMAT.md ("Archives"):
//! `archive_v1.json` written as text, gzip'd with `gzip -n -k archive_v1.json`, checksum
//! recorded with `sha256sum archive_v1.json.gz > archive_v1.json.gz.sha256`; and a plain-JSON
//! archive as the earlier TypeScript implementation wrote it.
//!
//! The fixtures are compiled in, so these tests also run under wasm-bindgen-test.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};
use supportbot_persistence::codec::archive::{
    decode_archive, encode_archive, extract_topics, Role, FORMAT_VERSION, LEGACY_FORMAT_VERSION,
};
use supportbot_persistence::codec::gzip;

const ARCHIVE_V1_JSON: &str = include_str!("fixtures/archive/archive_v1.json");
const ARCHIVE_V1_GZ: &[u8] = include_bytes!("fixtures/archive/archive_v1.json.gz");
/// `sha256sum` output: the digest, two spaces, the file name.
const ARCHIVE_V1_SHA256SUM: &str = include_str!("fixtures/archive/archive_v1.json.gz.sha256");
const LEGACY_ARCHIVE: &[u8] = include_bytes!("fixtures/archive/legacy_archive.json");

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
