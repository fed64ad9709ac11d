//! The archive format: one conversation and its session as gzip'd JSON (docs/FORMAT.md,
//! "Archives").
//!
//! The stored object is `gzip(JSON)` of
//! `{"formatVersion":1,"metadata":{...},"conversation":{...,"sessionState":{...}}}`, readable
//! with `gunzip | jq` (`formatVersion` 2 when UIMessages keep their text only in their parts,
//! see `ui_messages`). Its SHA-256 is taken over the stored (compressed) bytes, so
//! `sha256sum` on the downloaded object checks it, and it travels beside the object (R2
//! `customMetadata`, KV), never inside it. The size limit applies to the JSON before
//! compression, so what an archive may hold does not depend on how well it compresses.
//! Plain-JSON archives of the earlier TypeScript implementation decode too.
//!
//! Memory: a Worker isolate has 128 MB, and archives may hold tens of MB of JSON. So JSON is
//! read into the [`Borrowed`] form of the conversation model, never into a `Value` tree; the
//! document is serialized straight into the gzip encoder (and measured on the way), so the
//! uncompressed document is never held; and the conversation JSON of a retrieved archive is
//! cut out of the inflated document in place.

mod decode;
mod encode;
mod model;
mod summary;
mod text_parts;
mod topics;
mod ui_messages;

use serde::{Deserialize, Serialize};

pub use decode::{
    decode_archive, decode_archive_json, decode_decrypted_archive_json,
    decode_verified_archive_json, View,
};
pub use encode::{encode_archive, encode_conversation, encode_conversation_without_checksum};
pub use model::{
    ArchivedConversation, Borrowed, ChatMessage, Content, Conversation, ConversationMemory, Form,
    JsonObject, KeptFields, Layout, Memory, Message, Owned, Part, ReadInto, Role, Session,
    SessionState,
};
pub use summary::{
    listing_entry, listing_summary, r2_custom_metadata, SummaryForm, CUSTOM_RAW_SIZE_FIELD,
    CUSTOM_SHA256_FIELD, ENCRYPTED_SUMMARY_FIELD, R2_CUSTOM_METADATA_MAX_BYTES,
};
pub use text_parts::{TEXT_PART_SEPARATOR, UI_MESSAGE_FIELD};
pub use topics::extract_topics;
pub use ui_messages::{read_ui_messages_input, ui_messages_json, UI_SESSION_STATUS};

use self::model::check_conversation;
use crate::codec::fields::{parse_item, FieldError, Fields};
use crate::error::{PersistenceError, Result};
use crate::keys::{SessionId, UserId};

/// The format version of a document whose every message holds its `content`: what
/// `archiveConversation` writes.
pub const FORMAT_VERSION: u32 = 1;

/// The format version of a document in which a message may leave out `content` because its
/// UIMessage's parts hold the text (docs/FORMAT.md, "UIMessage conversations"): what
/// `archiveUIMessages` writes. A reader of format 1 refuses it (`UNSUPPORTED_FORMAT`) rather
/// than read those messages without their text.
pub const TEXT_IN_PARTS_FORMAT_VERSION: u32 = 2;

/// The newest format version this library reads.
pub const NEWEST_FORMAT_VERSION: u32 = TEXT_IN_PARTS_FORMAT_VERSION;

/// How errors about a stored archive's bytes name it.
pub const ARCHIVE_NAME: &str = "archive";

/// The `formatVersion` reported for plain-JSON archives of the earlier TypeScript
/// implementation, which carry none.
pub const LEGACY_FORMAT_VERSION: u32 = 0;

/// Everything known about an archive without reading its messages: the KV `archive_meta`
/// record and the source of the listing and `customMetadata` forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveMetadata {
    /// The archived session.
    pub session_id: String,
    /// The session's user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When the archive was written, in epoch milliseconds (also part of its key).
    pub archived_at: i64,
    /// Number of messages in the archive.
    pub message_count: u64,
    /// The conversation's summary text.
    pub summary: String,
    /// Topic tags (see [`extract_topics`]).
    pub topics: Vec<String>,
    /// `lastActivity - createdAt` of the session in milliseconds; 0 if the clock ran backwards.
    pub duration: u64,
    /// Size of the archive's JSON document in bytes.
    pub raw_size: u64,
    /// Size of the stored object in bytes.
    pub stored_size: u64,
    /// SHA-256 (lowercase hex) of the stored object's bytes.
    pub sha256: String,
    /// The format version of the stored object ([`LEGACY_FORMAT_VERSION`] for legacy archives).
    pub format_version: u32,
    /// With encryption at rest: `summary` is empty and this holds it, encrypted (base64 of an
    /// encryption envelope under the owner's data key; docs/FORMAT.md, "Encryption").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_summary: Option<String>,
}

/// An encoded archive, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedArchive {
    /// The object body: gzip'd JSON.
    pub bytes: Vec<u8>,
    /// Its metadata, including the checksum of `bytes` (left empty by
    /// [`encode_conversation_without_checksum`] for its caller to fill in).
    pub metadata: ArchiveMetadata,
}

/// A decoded archive.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedArchive {
    /// The archive's metadata; sizes and checksum describe the bytes that were decoded.
    pub metadata: ArchiveMetadata,
    /// The archived conversation.
    pub conversation: ArchivedConversation,
}

/// A decoded archive as JSON text (what JavaScript is handed), in the [`View`] asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedArchiveJson {
    /// The archive's metadata; sizes and checksum describe the bytes that were decoded.
    pub metadata: ArchiveMetadata,
    /// The archived conversation as [`conversation_to_json`] writes it ([`View::Conversation`]),
    /// or its messages as UIMessages, the JSON text of an array ([`View::UiMessages`]).
    pub json: String,
}

/// A caller's conversation memory and session, checked, borrowing from their JSON text.
pub struct ConversationInput<'a> {
    memory: Memory<Borrowed<'a>>,
    session: Session<Borrowed<'a>>,
    /// Bytes of JSON text the input was read from (about the document's size).
    text_len: usize,
}

impl ConversationInput<'_> {
    /// The session id (valid in storage keys).
    pub fn session_id(&self) -> &str {
        &self.session.id
    }
}

/// Everything a conversation given to the encoder must be that its types do not ensure: ids
/// valid in storage keys (`INVALID_ID`), and what [`check_conversation`] checks
/// (`INVALID_INPUT`).
fn check_input<F: Form>(memory: &Memory<F>, session: &Session<F>) -> Result<()> {
    SessionId::parse(&session.id)?;
    if let Some(user_id) = &session.user_id {
        UserId::parse(user_id)?;
    }
    check_conversation(memory, session).map_err(FieldError::invalid_input)
}

/// Reads and checks a memory and a session given as JSON text, in form `F`.
fn read_input<'a, F: ReadInto<'a>>(
    memory_json: &'a str,
    session_json: &'a str,
) -> Result<(Memory<F>, Session<F>)> {
    fn object<'t>(field: &str, json: &'t str) -> Result<Fields<'t>> {
        let item = parse_item(json)
            .map_err(|err| PersistenceError::invalid_input(field, format!("is not JSON: {err}")))?;
        Fields::from_item(field, item).map_err(FieldError::invalid_input)
    }
    let memory = model::read_memory(object("memory", memory_json)?);
    let memory = memory.map_err(FieldError::invalid_input)?;
    let session = model::read_session(object("session", session_json)?);
    let session = session.map_err(FieldError::invalid_input)?;
    check_input(&memory, &session)?;
    Ok((memory, session))
}

/// Reads and checks the JSON text of a `ConversationMemory` and a `SessionState` given by a
/// caller (JavaScript hands over `JSON.stringify` output), borrowing from the text.
///
/// Fails with `INVALID_INPUT` naming the path of the first missing or ill-typed field (e.g.
/// `memory.messages[3].timestamp`), an unknown `role`, a `memory.sessionId` or message
/// `sessionId` that differs from `session.id`, or a `memory.sessionState` field (reserved);
/// with `INVALID_ID` when `session.id` or `session.userId` cannot be used in storage keys.
pub fn read_conversation_input<'a>(
    memory_json: &'a str,
    session_json: &'a str,
) -> Result<ConversationInput<'a>> {
    let (memory, session) = read_input(memory_json, session_json)?;
    Ok(ConversationInput {
        memory,
        session,
        text_len: memory_json.len().saturating_add(session_json.len()),
    })
}

/// [`read_conversation_input`], as owned values.
pub fn parse_conversation_input(
    memory_json: &str,
    session_json: &str,
) -> Result<(ConversationMemory, SessionState)> {
    read_input(memory_json, session_json)
}

/// The archived conversation as JSON text for JavaScript (`JSON.parse` gives the memory's
/// fields, unknown ones included, plus `sessionState`).
pub fn conversation_to_json(conversation: &ArchivedConversation) -> Result<String> {
    serde_json::to_string(conversation)
        .map_err(|err| PersistenceError::invalid_input("conversation", err.to_string()))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;
    use crate::codec::gzip;
    use crate::hash;

    const ARCHIVED_AT: i64 = 1_736_157_600_000;
    const LIMIT: u64 = 1 << 20;

    fn memory_json() -> Value {
        json!({
            "sessionId": "s-1",
            "messages": [
                {"id": "m1", "sessionId": "s-1", "content": "I can't log in, wrong password?",
                 "role": "user", "timestamp": 1_736_157_000_000_i64, "lang": "en"},
                {"id": "m2", "sessionId": "s-1", "content": "Fixed — it was a bug. Ünïcödé 😀",
                 "role": "assistant", "timestamp": 1_736_157_060_000_i64,
                 "metadata": {"model": "x", "tokens": 12}},
                {"id": "m3", "sessionId": "s-1", "content": "thanks", "role": "system",
                 "timestamp": 1_736_157_090_000_i64}
            ],
            "summary": "Login problem fixed.",
            "context": {"plan": "pro", "nested": {"a": [1, 2.5, null]}},
            "version": 7
        })
    }

    fn session_json() -> Value {
        json!({"id": "s-1", "userId": "u-1", "status": "ended",
               "createdAt": 1_736_157_000_000_i64, "lastActivity": 1_736_157_090_000_i64,
               "metadata": {"ip": "::1"}, "channel": "web"})
    }

    fn parse(memory: &Value, session: &Value) -> Result<(ConversationMemory, SessionState)> {
        parse_conversation_input(&memory.to_string(), &session.to_string())
    }

    fn sample() -> (ConversationMemory, SessionState) {
        parse(&memory_json(), &session_json()).unwrap()
    }

    fn encoded() -> EncodedArchive {
        let (memory, session) = sample();
        encode_archive(&memory, &session, ARCHIVED_AT, 6, LIMIT).unwrap()
    }

    fn gzip_json(value: &Value) -> Vec<u8> {
        gzip::compress(value.to_string().as_bytes(), 6).unwrap()
    }

    fn stored_document() -> Value {
        let bytes = encoded().bytes;
        serde_json::from_slice(&gzip::decompress("t", &bytes, LIMIT).unwrap()).unwrap()
    }

    #[test]
    fn parses_input_and_keeps_unknown_fields() {
        let (memory, session) = sample();
        assert_eq!(memory.messages.len(), 3);
        assert_eq!(memory.messages[0].extra["lang"], "en");
        assert_eq!(memory.messages[1].metadata.as_ref().unwrap()["tokens"], 12);
        assert_eq!(memory.messages[2].role, Role::System);
        assert_eq!(memory.context["nested"]["a"], json!([1, 2.5, null]));
        assert_eq!(memory.extra["version"], 7);
        assert_eq!(session.user_id.as_deref(), Some("u-1"));
        assert_eq!(session.extra["channel"], "web");
    }

    #[test]
    fn input_errors_name_the_path() {
        let expect = |memory: Value, session: Value, code: &str, needle: &str| {
            let err = parse(&memory, &session).unwrap_err();
            assert_eq!(err.code(), code, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        };
        expect(
            json!([]),
            session_json(),
            "INVALID_INPUT",
            "memory: must be an object, found array",
        );
        let mut memory = memory_json();
        memory["messages"][2]["timestamp"] = json!("yesterday");
        expect(
            memory,
            session_json(),
            "INVALID_INPUT",
            "memory.messages[2].timestamp",
        );
        let mut memory = memory_json();
        memory["messages"][1]["role"] = json!("tool");
        expect(
            memory,
            session_json(),
            "INVALID_INPUT",
            "memory.messages[1].role",
        );
        let mut memory = memory_json();
        memory["messages"][0]["sessionId"] = json!("s-2");
        expect(
            memory,
            session_json(),
            "INVALID_INPUT",
            "memory.messages[0].sessionId",
        );
        let mut session = session_json();
        session["id"] = json!("s-2");
        expect(
            memory_json(),
            session.clone(),
            "INVALID_INPUT",
            "memory.sessionId",
        );
        session["lastActivity"] = json!(null);
        expect(
            memory_json(),
            session,
            "INVALID_INPUT",
            "session.lastActivity: is missing",
        );
        let mut session = session_json();
        session["id"] = json!("../etc");
        let mut memory = memory_json();
        memory["sessionId"] = json!("../etc");
        memory["messages"] = json!([]);
        expect(memory, session, "INVALID_ID", "sessionId");
        let mut session = session_json();
        session["userId"] = json!("a\u{7}b");
        expect(memory_json(), session, "INVALID_ID", "userId");

        let err = parse_conversation_input("{", "{}").unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("memory: is not JSON"), "{err}");
    }

    #[test]
    fn encodes_metadata_and_decodes_it_back() {
        let (memory, session) = sample();
        let archive = encode_archive(&memory, &session, ARCHIVED_AT, 6, LIMIT).unwrap();
        let metadata = &archive.metadata;
        assert_eq!(metadata.session_id, "s-1");
        assert_eq!(metadata.user_id.as_deref(), Some("u-1"));
        assert_eq!(metadata.archived_at, ARCHIVED_AT);
        assert_eq!(metadata.message_count, 3);
        assert_eq!(metadata.summary, "Login problem fixed.");
        assert_eq!(metadata.topics, ["authentication", "technical-issue"]);
        assert_eq!(metadata.duration, 90_000);
        assert_eq!(metadata.stored_size, archive.bytes.len() as u64);
        assert_eq!(metadata.sha256, hash::sha256_hex(&archive.bytes));
        assert_eq!(metadata.format_version, 1);
        assert!(gzip::is_gzip(&archive.bytes));

        let decoded = decode_archive(&archive.bytes, Some(&metadata.sha256), LIMIT).unwrap();
        assert_eq!(&decoded.metadata, metadata);
        assert_eq!(decoded.conversation.memory, memory);
        assert_eq!(decoded.conversation.session_state, Some(session));
        // The checksum may be given in upper case, as some tools print it.
        let upper = metadata.sha256.to_uppercase();
        assert_eq!(
            decode_archive(&archive.bytes, Some(&upper), LIMIT).unwrap(),
            decoded
        );
    }

    #[test]
    fn stored_document_has_the_documented_shape() {
        let document = stored_document();
        let members: Vec<&String> = document.as_object().unwrap().keys().collect();
        assert_eq!(members, ["formatVersion", "metadata", "conversation"]);
        assert_eq!(document["formatVersion"], 1);
        assert_eq!(
            document["metadata"],
            json!({"sessionId": "s-1", "userId": "u-1", "archivedAt": ARCHIVED_AT,
                   "messageCount": 3, "summary": "Login problem fixed.",
                   "topics": ["authentication", "technical-issue"], "duration": 90_000})
        );
        let conversation = &document["conversation"];
        let mut expected = memory_json();
        expected["sessionState"] = session_json();
        assert_eq!(conversation, &expected);
        assert_eq!(
            encoded().metadata.raw_size,
            document.to_string().len() as u64
        );
    }

    #[test]
    fn conversation_json_gives_back_what_came_in() {
        let decoded = decode_archive(&encoded().bytes, None, LIMIT).unwrap();
        let text = conversation_to_json(&decoded.conversation).unwrap();
        let mut expected = memory_json();
        expected["sessionState"] = session_json();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
    }

    #[test]
    fn conversation_json_is_cut_from_the_document_or_rewritten() {
        let archive = encoded();
        let owned = decode_archive(&archive.bytes, None, LIMIT).unwrap();
        let text = decode_archive_json(&archive.bytes, None, LIMIT, View::Conversation).unwrap();
        assert_eq!(text.metadata, owned.metadata);
        assert_eq!(
            text.json,
            conversation_to_json(&owned.conversation).unwrap()
        );

        // Written by hand: whitespace, nulls, members in another order, a float spelled
        // differently. The text given is the one the owned conversation gives.
        let legacy = r#" {"conversation": {"sessionState": {"id": "s-1", "status": "x",
            "createdAt": 1, "lastActivity": 2, "userId": null}, "context": {"f": 1.50},
            "messages": [{"id": "m", "sessionId": "s-1", "content": "bug\u0021",
            "role": "user", "timestamp": 3, "metadata": null}], "sessionId": "s-1"},
            "metadata": {"sessionId": "s-1", "archivedAt": 4, "messageCount": 1,
            "topics": [], "duration": 1}}"#;
        let owned = decode_archive(legacy.as_bytes(), None, LIMIT).unwrap();
        let text = decode_archive_json(legacy.as_bytes(), None, LIMIT, View::Conversation).unwrap();
        assert_eq!(text.metadata, owned.metadata);
        assert_eq!(
            text.json,
            r#"{"sessionId":"s-1","messages":[{"id":"m","sessionId":"s-1","content":"bug!","role":"user","timestamp":3}],"summary":"","context":{"f":1.5},"sessionState":{"id":"s-1","status":"x","createdAt":1,"lastActivity":2}}"#
        );
        assert_eq!(
            text.json,
            conversation_to_json(&owned.conversation).unwrap()
        );
        let err = decode_archive_json(legacy.as_bytes(), None, 10, View::Conversation).unwrap_err();
        assert_eq!(err.code(), "ARCHIVE_TOO_LARGE");
    }

    #[test]
    fn checksummed_archives_are_cut_without_reading_messages() {
        let archive = encoded();
        let sha256 = archive.metadata.sha256.as_str();
        let unverified =
            decode_archive_json(&archive.bytes, None, LIMIT, View::Conversation).unwrap();
        let verified =
            decode_archive_json(&archive.bytes, Some(sha256), LIMIT, View::Conversation).unwrap();
        assert_eq!(verified, unverified);

        // Written by another hand, spaced and reordered: verified, the conversation comes back
        // as stored; unverified, it is read in full and rewritten in the canonical form.
        let by_hand = r#"{"formatVersion": 1, "metadata": {"sessionId": "s-1", "archivedAt": 4,
            "messageCount": 1, "topics": [], "duration": 1},
            "conversation": {"messages": [{"id": "m", "sessionId": "s-1", "content": "hi",
            "role": "user", "timestamp": 3}], "sessionId": "s-1",
            "sessionState": {"id": "s-1", "status": "x", "createdAt": 1, "lastActivity": 2}}}"#;
        let bytes = gzip::compress(by_hand.as_bytes(), 6).unwrap();
        let sha256 = hash::sha256_hex(&bytes);
        let as_stored = &by_hand[by_hand.find(r#"{"messages""#).unwrap()..by_hand.len() - 1];
        let verified =
            decode_archive_json(&bytes, Some(&sha256), LIMIT, View::Conversation).unwrap();
        assert_eq!(verified.json, as_stored);
        let unverified = decode_archive_json(&bytes, None, LIMIT, View::Conversation).unwrap();
        assert!(unverified
            .json
            .starts_with(r#"{"sessionId":"s-1","messages":[{"id":"m""#));
        assert_eq!(verified.metadata, unverified.metadata);

        // What identifies the conversation is checked either way.
        let cases = [
            ("/metadata/sessionId", json!("s-9"), "metadata.sessionId"),
            ("/metadata/userId", json!("u-9"), "metadata.userId"),
            (
                "/conversation/sessionState/id",
                json!("s-9"),
                "conversation.sessionState.id",
            ),
        ];
        for (pointer, bad, path) in cases {
            let mut document = stored_document();
            *document.pointer_mut(pointer).unwrap() = bad;
            let bytes = gzip_json(&document);
            let sha256 = hash::sha256_hex(&bytes);
            for expected in [Some(sha256.as_str()), None] {
                let err =
                    decode_archive_json(&bytes, expected, LIMIT, View::Conversation).unwrap_err();
                assert_eq!(err.code(), "CORRUPT_DATA", "{pointer}");
                assert!(err.to_string().contains(path), "{pointer}: {err}");
            }
        }

        // A checksummed legacy archive is still converted to the current form.
        let legacy =
            br#"{"conversation": {"sessionId": "s-1", "messages": [], "context": {"f": 1.50}},
            "metadata": {"sessionId": "s-1", "archivedAt": 4, "messageCount": 0,
            "topics": [], "duration": 1}}"#;
        let legacy_sha256 = hash::sha256_hex(legacy);
        let text =
            decode_archive_json(legacy, Some(&legacy_sha256), LIMIT, View::Conversation).unwrap();
        assert_eq!(text.metadata.format_version, LEGACY_FORMAT_VERSION);
        assert_eq!(
            text.json,
            r#"{"sessionId":"s-1","messages":[],"summary":"","context":{"f":1.5}}"#
        );

        // The members are still read: a conversation that is no object is corrupt.
        let mut document = stored_document();
        document["conversation"] = json!([1]);
        let bytes = gzip_json(&document);
        let err = decode_archive_json(
            &bytes,
            Some(&hash::sha256_hex(&bytes)),
            LIMIT,
            View::Conversation,
        )
        .unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("conversation"), "{err}");
    }

    #[test]
    fn input_is_read_without_copying_its_text() {
        let memory = memory_json().to_string();
        let session = session_json().to_string();
        let input = read_conversation_input(&memory, &session).unwrap();
        assert_eq!(input.session_id(), "s-1");
        let archive = encode_conversation(&input, ARCHIVED_AT, 6, LIMIT).unwrap();
        assert_eq!(archive, encoded());
    }

    #[test]
    fn size_limit_applies_to_the_json_before_compression() {
        let (memory, session) = sample();
        let raw_size = encoded().metadata.raw_size;
        assert!(encode_archive(&memory, &session, ARCHIVED_AT, 6, raw_size).is_ok());
        let err = encode_archive(&memory, &session, ARCHIVED_AT, 6, raw_size - 1).unwrap_err();
        assert_eq!(
            err,
            PersistenceError::ArchiveTooLarge {
                size: raw_size,
                limit: raw_size - 1
            }
        );
        // Far past the limit, the document is still measured whole.
        let err = encode_archive(&memory, &session, ARCHIVED_AT, 6, 10).unwrap_err();
        assert_eq!(
            err,
            PersistenceError::ArchiveTooLarge {
                size: raw_size,
                limit: 10
            }
        );
    }

    #[test]
    fn decode_enforces_the_size_limit() {
        let archive = encoded();
        let raw_size = archive.metadata.raw_size;
        let sha = archive.metadata.sha256.as_str();
        assert!(decode_archive(&archive.bytes, Some(sha), raw_size).is_ok());
        assert_eq!(
            decode_archive(&archive.bytes, Some(sha), raw_size - 1).unwrap_err(),
            PersistenceError::ArchiveTooLarge {
                size: raw_size,
                limit: raw_size - 1
            }
        );
        // Unverified, the trailer is no evidence: inflating stops at the limit.
        let err = decode_archive(&archive.bytes, None, raw_size - 1).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
    }

    #[test]
    fn rejects_bad_input_to_encode() {
        let (mut memory, session) = sample();
        assert_eq!(
            encode_archive(&memory, &session, -1, 6, LIMIT)
                .unwrap_err()
                .code(),
            "INVALID_INPUT"
        );
        assert_eq!(
            encode_archive(&memory, &session, ARCHIVED_AT, 10, LIMIT)
                .unwrap_err()
                .code(),
            "INVALID_INPUT"
        );
        memory.extra.insert("sessionState".into(), json!({}));
        let err = encode_archive(&memory, &session, ARCHIVED_AT, 6, LIMIT).unwrap_err();
        assert_eq!(
            err,
            PersistenceError::invalid_input(
                "memory.sessionState",
                "is given twice: as a field and in `extra`"
            )
        );
    }

    #[test]
    fn backwards_clock_means_zero_duration() {
        let (memory, mut session) = sample();
        session.last_activity = session.created_at - 5_000;
        let archive = encode_archive(&memory, &session, ARCHIVED_AT, 6, LIMIT).unwrap();
        assert_eq!(archive.metadata.duration, 0);
    }

    #[test]
    fn checksum_mismatch_is_reported_with_both_digests() {
        let archive = encoded();
        let wrong = hash::sha256_hex(b"other");
        let err = decode_archive(&archive.bytes, Some(&wrong), LIMIT).unwrap_err();
        assert_eq!(
            err,
            PersistenceError::ChecksumMismatch {
                what: "archive".into(),
                expected: wrong,
                actual: archive.metadata.sha256,
            }
        );
    }

    #[test]
    fn decodes_legacy_plain_json() {
        let mut conversation = memory_json();
        conversation["sessionState"] = session_json();
        let legacy = json!({
            "metadata": {"sessionId": "s-1", "userId": "u-1", "archivedAt": ARCHIVED_AT,
                         "messageCount": 3, "summary": "old", "topics": ["billing"],
                         "duration": -20},
            "conversation": conversation
        });
        let bytes = format!("\n  {legacy}");
        let decoded = decode_archive(bytes.as_bytes(), None, LIMIT).unwrap();
        assert_eq!(decoded.metadata.format_version, LEGACY_FORMAT_VERSION);
        assert_eq!(decoded.metadata.duration, 0);
        assert_eq!(decoded.metadata.topics, ["billing"]);
        assert_eq!(decoded.metadata.raw_size, bytes.len() as u64);
        assert_eq!(decoded.metadata.sha256, hash::sha256_hex(bytes.as_bytes()));
        assert_eq!(decoded.conversation.memory, sample().0);

        let mut without_session = legacy.clone();
        without_session["conversation"]
            .as_object_mut()
            .unwrap()
            .remove("sessionState");
        let decoded = decode_archive(without_session.to_string().as_bytes(), None, LIMIT).unwrap();
        assert_eq!(decoded.conversation.session_state, None);

        let text = legacy.to_string();
        assert_eq!(
            decode_archive(text.as_bytes(), None, 100).unwrap_err(),
            PersistenceError::ArchiveTooLarge {
                size: text.len() as u64,
                limit: 100
            }
        );
    }

    #[test]
    fn newer_format_is_unsupported() {
        let mut document = stored_document();
        document["formatVersion"] = json!(NEWEST_FORMAT_VERSION + 1);
        let err = decode_archive(&gzip_json(&document), None, LIMIT).unwrap_err();
        assert_eq!(
            err,
            PersistenceError::UnsupportedFormat {
                what: "archive".into(),
                version: u64::from(NEWEST_FORMAT_VERSION + 1)
            }
        );
        document["formatVersion"] = json!(u64::MAX);
        let err = decode_archive(&gzip_json(&document), None, LIMIT).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED_FORMAT");
        document["formatVersion"] = json!(0);
        let err = decode_archive(&gzip_json(&document), None, LIMIT).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
    }

    #[test]
    fn metadata_must_agree_with_the_conversation() {
        let cases = [
            ("/metadata/messageCount", json!(4), "metadata.messageCount"),
            ("/metadata/sessionId", json!("s-9"), "metadata.sessionId"),
            ("/metadata/userId", json!("u-9"), "metadata.userId"),
            (
                "/conversation/sessionState/id",
                json!("s-9"),
                "conversation.sessionState.id",
            ),
            (
                "/conversation/messages/1/role",
                json!("robot"),
                "conversation.messages[1].role",
            ),
        ];
        for (pointer, bad, path) in cases {
            let mut document = stored_document();
            *document.pointer_mut(pointer).unwrap() = bad;
            let err = decode_archive(&gzip_json(&document), None, LIMIT).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{pointer}");
            assert!(err.to_string().contains(path), "{err}");
        }
        let mut document = stored_document();
        document["conversation"]
            .as_object_mut()
            .unwrap()
            .remove("sessionState");
        let err = decode_archive(&gzip_json(&document), None, LIMIT).unwrap_err();
        assert!(
            err.to_string()
                .contains("conversation.sessionState: is missing"),
            "{err}"
        );
    }

    #[test]
    fn bytes_that_are_no_archive_are_corrupt() {
        for bytes in [
            &b""[..],
            b"   ",
            b"[1,2]",
            b"hello",
            b"\x1f\x8b",
            b"{\"metadata\":",
        ] {
            let err = decode_archive(bytes, None, LIMIT).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{bytes:?}");
        }
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let archive = encoded();
        let sha = archive.metadata.sha256.as_str();
        let original = decode_archive(&archive.bytes, None, LIMIT).unwrap();
        let mut undetected_without_checksum = Vec::new();
        for position in 0..archive.bytes.len() {
            let mut bytes = archive.bytes.clone();
            bytes[position] ^= 0x01;
            let err = decode_archive(&bytes, Some(sha), LIMIT).unwrap_err();
            assert_eq!(err.code(), "CHECKSUM_MISMATCH", "at {position}");
            match decode_archive(&bytes, None, LIMIT) {
                Err(err) => assert_eq!(err.code(), "CORRUPT_DATA", "at {position}: {err}"),
                Ok(decoded) => {
                    // Only a header byte that carries no data may change unnoticed, and the
                    // conversation read must still be the original one.
                    assert_eq!(decoded.conversation, original.conversation, "at {position}");
                    undetected_without_checksum.push(position);
                }
            }
        }
        // gzip header: FLG's FTEXT bit (3), MTIME (4-7), XFL (8), OS (9) are not covered by
        // the CRC-32, which guards the inflated data only.
        assert_eq!(undetected_without_checksum, [3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn metadata_record_round_trips_through_json() {
        let metadata = encoded().metadata;
        let text = serde_json::to_string(&metadata).unwrap();
        assert!(
            text.starts_with(r#"{"sessionId":"s-1","userId":"u-1","archivedAt":1736157600000,"#)
        );
        assert!(text.contains(r#""rawSize":"#) && text.contains(r#""formatVersion":1"#));
        assert_eq!(
            serde_json::from_str::<ArchiveMetadata>(&text).unwrap(),
            metadata
        );
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::codec::gzip;

    const LIMIT: u64 = 1 << 22;

    /// Any JSON value, nested up to three levels (shared with `ui_messages`' property tests).
    pub(super) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Eighths are exact in binary and decimal, so they survive any float printer.
            (-1_000_000_i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((any::<String>(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = JsonObject> {
        prop::collection::vec((any::<String>(), json_value()), 0..3)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    /// Unknown fields: names that cannot collide with known ones.
    fn extra_fields() -> impl Strategy<Value = JsonObject> {
        prop::collection::vec(("x_\\PC{0,6}", json_value()), 0..3)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::User), Just(Role::Assistant), Just(Role::System)]
    }

    fn conversation() -> impl Strategy<Value = (ConversationMemory, SessionState)> {
        let message = (
            "[a-z0-9]{1,8}",
            any::<String>(),
            role(),
            0_i64..=8_640_000_000_000_000,
            prop::option::of(json_object()),
            extra_fields(),
        );
        (
            "[A-Za-z0-9_-]{1,24}",
            prop::option::of("[a-z0-9@_-]{1,12}"),
            prop::collection::vec(message, 0..6),
            any::<String>(),
            json_object(),
            extra_fields(),
            (
                any::<String>(),
                0_i64..4_000_000_000_000,
                0_i64..4_000_000_000_000,
            ),
            (prop::option::of(json_object()), extra_fields()),
        )
            .prop_map(
                |(session_id, user_id, messages, summary, context, extra, times, session_more)| {
                    let (status, created_at, last_activity) = times;
                    let (session_metadata, session_extra) = session_more;
                    let messages = messages
                        .into_iter()
                        .map(
                            |(id, content, role, timestamp, metadata, extra)| ChatMessage {
                                id,
                                session_id: session_id.clone(),
                                content,
                                role,
                                timestamp,
                                metadata,
                                extra,
                            },
                        )
                        .collect();
                    let memory = ConversationMemory {
                        session_id: session_id.clone(),
                        messages,
                        summary,
                        context,
                        extra,
                    };
                    let session = SessionState {
                        id: session_id,
                        user_id,
                        status,
                        created_at,
                        last_activity,
                        metadata: session_metadata,
                        extra: session_extra,
                    };
                    (memory, session)
                },
            )
    }

    fn small_archive() -> EncodedArchive {
        let memory: ConversationMemory = ConversationMemory {
            session_id: "s".into(),
            messages: vec![ChatMessage {
                id: "m".into(),
                session_id: "s".into(),
                content: "a billing bug".into(),
                role: Role::User,
                timestamp: 5,
                metadata: None,
                extra: JsonObject::new(),
            }],
            summary: String::new(),
            context: JsonObject::new(),
            extra: JsonObject::new(),
        };
        let session = SessionState {
            id: "s".into(),
            user_id: None,
            status: "ended".into(),
            created_at: 1,
            last_activity: 9,
            metadata: None,
            extra: JsonObject::new(),
        };
        encode_archive(&memory, &session, 10, 6, LIMIT).unwrap()
    }

    fn is_decode_error(err: &PersistenceError) -> bool {
        matches!(
            err.code(),
            "CORRUPT_DATA" | "UNSUPPORTED_FORMAT" | "ARCHIVE_TOO_LARGE"
        )
    }

    proptest! {
        #[test]
        fn round_trips_any_conversation((memory, session) in conversation(), level in 0_u32..=9) {
            let archive = encode_archive(&memory, &session, 1_736_157_600_000, level, LIMIT).unwrap();
            let decoded =
                decode_archive(&archive.bytes, Some(&archive.metadata.sha256), LIMIT).unwrap();
            prop_assert_eq!(&decoded.metadata, &archive.metadata);
            prop_assert_eq!(&decoded.conversation.memory, &memory);
            prop_assert_eq!(decoded.conversation.session_state.as_ref(), Some(&session));

            // The document is byte for byte what serializing the owned values gives.
            let mut metadata = serde_json::to_value(&archive.metadata).unwrap();
            for written_beside in ["rawSize", "storedSize", "sha256", "formatVersion"] {
                metadata.as_object_mut().unwrap().shift_remove(written_beside);
            }
            let expected = json!({
                "formatVersion": FORMAT_VERSION,
                "metadata": metadata,
                "conversation": serde_json::to_value(&decoded.conversation).unwrap(),
            });
            let document = gzip::decompress("t", &archive.bytes, LIMIT).unwrap();
            prop_assert_eq!(String::from_utf8(document).unwrap(), expected.to_string());

            // Retrieval hands over the same text the owned conversation gives.
            let json_decoded =
                decode_archive_json(&archive.bytes, Some(&archive.metadata.sha256), LIMIT, View::Conversation).unwrap();
            prop_assert_eq!(&json_decoded.metadata, &archive.metadata);
            prop_assert_eq!(
                json_decoded.json,
                conversation_to_json(&decoded.conversation).unwrap()
            );

            // Through the JSON text JavaScript would get and hand back.
            let text = conversation_to_json(&decoded.conversation).unwrap();
            let mut value: Value = serde_json::from_str(&text).unwrap();
            let session_value = value.as_object_mut().unwrap().remove("sessionState").unwrap();
            let (memory_again, session_again) =
                parse_conversation_input(&value.to_string(), &session_value.to_string()).unwrap();
            prop_assert_eq!(memory_again, memory);
            prop_assert_eq!(session_again, session);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            prefix in prop_oneof![Just(vec![]), Just(vec![0x1f, 0x8b, 8, 0]), Just(b"{".to_vec())],
            body in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let bytes = [prefix, body].concat();
            if let Err(err) = decode_archive(&bytes, None, LIMIT) {
                prop_assert!(is_decode_error(&err), "{}", err);
            }
        }

        #[test]
        fn truncated_archives_are_corrupt(cut in 0_usize..10_000) {
            let archive = small_archive();
            let cut = cut % archive.bytes.len();
            let truncated = &archive.bytes[..cut];
            let err = decode_archive(truncated, None, LIMIT).unwrap_err();
            prop_assert_eq!(err.code(), "CORRUPT_DATA");
            let err = decode_archive(truncated, Some(&archive.metadata.sha256), LIMIT).unwrap_err();
            prop_assert_eq!(err.code(), "CHECKSUM_MISMATCH");
        }

        #[test]
        fn flipped_bytes_never_go_unnoticed(position in 0_usize..10_000, flip in 1_u8..=255) {
            let archive = small_archive();
            let original = decode_archive(&archive.bytes, None, LIMIT).unwrap();
            let mut bytes = archive.bytes.clone();
            let position = position % bytes.len();
            bytes[position] ^= flip;
            let err = decode_archive(&bytes, Some(&archive.metadata.sha256), LIMIT).unwrap_err();
            prop_assert_eq!(err.code(), "CHECKSUM_MISMATCH");
            match decode_archive(&bytes, None, LIMIT) {
                Err(err) => prop_assert!(is_decode_error(&err), "{}", err),
                // Header bytes outside the CRC, or padding bits after the last deflate block,
                // may change without changing what is read.
                Ok(decoded) => prop_assert_eq!(decoded.conversation, original.conversation),
            }
        }
    }
}
