//! AI SDK `UIMessage` conversations as archives of the one kind (docs/FORMAT.md, "UIMessage
//! conversations"): a second shape of conversation over the same document, keys and indexes.
//!
//! Each UIMessage `{id, role, parts, metadata?, ...}` becomes one message of the archive:
//! `{id, sessionId, content, role, timestamp, metadata: {"uiMessage": {parts, metadata?, ...}}}`.
//! `content` is the text of its `text` parts, so topics, summaries and readers that know
//! nothing of UIMessages see the conversation; `metadata.uiMessage` holds every member of the
//! UIMessage but `id` and `role`, verbatim and in order, so it comes back as it was given.
//!
//! Only what the archive reads is checked: an array of objects with a string `id`, a known
//! `role` and an array `parts` of objects with a string `type`, and a string `text` in `text`
//! and `reasoning` parts. Everything else (tool states, part types and fields the AI SDK adds
//! later, metadata of any JSON type) is kept as given, never refused.

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::model::{
    check_epoch_ms, read_conversation, read_role, Borrowed, JsonObject, KeptFields, Memory,
    Message, Role, Session,
};
use super::{check_input, ConversationInput};
use crate::codec::fields::{
    not_json, object_items, parse_item, parse_str, to_verbatim, verbatim, Conventions, FieldError,
    Fields, Kind, Verbatim,
};
use crate::error::{PersistenceError, Result};
use crate::keys::{SessionId, UserId};
use crate::time;

/// The member of an archived message's `metadata` that holds its UIMessage.
pub const UI_MESSAGE_FIELD: &str = "uiMessage";

/// What joins the texts of a message's `text` parts in its `content`.
pub const TEXT_PART_SEPARATOR: &str = "\n\n";

/// The `status` of the session state archived with UIMessages.
pub const UI_SESSION_STATUS: &str = "archived";

/// How errors name the caller's messages and options.
const MESSAGES: &str = "messages";
const OPTIONS: &str = "options";

/// The options of `archiveUIMessages`.
struct Options<'a> {
    user_id: Option<Cow<'a, str>>,
    summary: Option<Cow<'a, str>>,
}

/// Reads `{userId?, summary?}`; any other member is refused, so a misspelt option (`userID`)
/// does not archive without a user unnoticed.
fn read_options(json: &str) -> std::result::Result<Options<'_>, FieldError> {
    let item = parse_item(json).map_err(|err| FieldError::new(OPTIONS, not_json(err)))?;
    let mut fields = Fields::from_item(OPTIONS, item)?;
    let user_id = fields.optional_string("userId")?;
    let summary = fields.optional_string("summary")?;
    match fields.rest(Ok)?.first() {
        Some((name, _)) => Err(FieldError::new(
            format!("{OPTIONS}.{name}"),
            "is not an option (userId, summary)",
        )),
        None => Ok(Options { user_id, summary }),
    }
}

/// The `content` of a message: the texts of its `text` parts, joined by
/// [`TEXT_PART_SEPARATOR`]. Checks that `parts` is an array of objects with a string `type`,
/// and that `text` and `reasoning` parts have a string `text`.
fn text_of_parts(path: String, parts: &RawValue) -> std::result::Result<String, FieldError> {
    let mut content = String::new();
    let mut texts = 0_usize;
    object_items(path, parts, |mut part| {
        let kind = part.string("type")?;
        if matches!(&*kind, "text" | "reasoning") {
            let text = part.string("text")?;
            if kind == "text" {
                if texts > 0 {
                    content.push_str(TEXT_PART_SEPARATOR);
                }
                content.push_str(&text);
                texts += 1;
            }
        }
        Ok(())
    })?;
    Ok(content)
}

/// The time `metadata.createdAt` gives, in epoch milliseconds: an integral number, or an
/// RFC 3339 date-time string (a `Date` through `JSON.stringify`), within the range of
/// JavaScript's `Date` from 1970 on. Anything else is no time: metadata is the caller's, and an
/// unusable `createdAt` leaves the message undated rather than refusing it.
fn created_at(metadata: &RawValue) -> Option<i64> {
    if Kind::of_raw(metadata) != Kind::Object {
        return None;
    }
    let created_at = Fields::of("", metadata).ok()?.member("createdAt")?;
    let ms = match Kind::of_raw(created_at) {
        Kind::Number => serde_json::from_str::<f64>(created_at.get())
            .ok()
            .and_then(|ms| time::epoch_ms_from_f64("createdAt", ms).ok()),
        Kind::String => parse_str(created_at)
            .ok()
            .and_then(|text| time::epoch_ms_from_rfc3339(&text)),
        _ => None,
    }?;
    check_epoch_ms(ms).ok().map(|()| ms)
}

/// The `metadata` of an archived message: `{"uiMessage": {...}}`.
#[derive(Serialize)]
struct ArchivedMetadata<'k, 'a> {
    #[serde(rename = "uiMessage")]
    ui_message: &'k KeptFields<'a>,
}

/// Reads one UIMessage as a message of session `session_id`, dated `now_ms` unless its
/// metadata gives a time; the message and that time.
fn read_ui_message<'a>(
    mut fields: Fields<'a>,
    session_id: &'a str,
    now_ms: i64,
) -> std::result::Result<(Message<Borrowed<'a>>, Option<i64>), FieldError> {
    let id = fields.string("id")?;
    let role = fields.convert("role", Kind::String, read_role)?;
    let path = fields.path().to_owned();
    let parts_path = fields.path_of("parts");
    let kept = KeptFields(fields.rest(verbatim)?);
    let member = |name: &str| {
        kept.0
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.raw())
            .filter(|raw| Kind::of_raw(raw) != Kind::Null)
    };
    let parts = member("parts")
        .ok_or_else(|| FieldError::new(parts_path.clone(), Conventions::Archive.missing()))?;
    let content = text_of_parts(parts_path, parts)?;
    let created_at = member("metadata").and_then(created_at);
    let unwritable = |reason: String| FieldError::new(path.clone(), reason);
    let metadata = to_verbatim(&ArchivedMetadata { ui_message: &kept }).map_err(unwritable)?;
    let message = Message {
        id,
        session_id: Cow::Borrowed(session_id),
        content: to_verbatim(&content).map_err(unwritable)?,
        role,
        timestamp: created_at.unwrap_or(now_ms),
        metadata: Some(metadata),
        extra: KeptFields::default(),
    };
    Ok((message, created_at))
}

/// Reads and checks the UIMessages of session `session_id` (the JSON text of an array, as
/// `JSON.stringify` gives it) and the options `{userId?, summary?}` (JSON text) as the
/// conversation an archive written at `now_ms` holds (see the module docs and
/// docs/FORMAT.md), borrowing from the texts.
///
/// Messages dated by `metadata.createdAt` keep that time; the others get `now_ms`. The session
/// lasted from the earliest to the latest dated message (`now_ms` to `now_ms` when none is).
/// Fails with `INVALID_ID` for a session or user id that cannot be used in storage keys, and
/// with `INVALID_INPUT` naming the path of anything else it cannot read
/// (`messages[3].parts: is missing`, `messages[2].parts[1].text: must be a string, found
/// number`, `options.userId`).
pub fn read_ui_messages_input<'a>(
    session_id: &'a str,
    messages_json: &'a str,
    options_json: &'a str,
    now_ms: i64,
) -> Result<ConversationInput<'a>> {
    SessionId::parse(session_id)?;
    let options = read_options(options_json).map_err(FieldError::invalid_input)?;
    if let Some(user_id) = &options.user_id {
        UserId::parse(user_id)?;
    }
    let messages: &RawValue = serde_json::from_str(messages_json)
        .map_err(|err| PersistenceError::invalid_input(MESSAGES, not_json(err)))?;
    let mut dated: Option<(i64, i64)> = None;
    let messages = object_items(MESSAGES, messages, |fields| {
        let (message, created_at) = read_ui_message(fields, session_id, now_ms)?;
        if let Some(ms) = created_at {
            dated = Some(dated.map_or((ms, ms), |(first, last)| (first.min(ms), last.max(ms))));
        }
        Ok(message)
    })
    .map_err(FieldError::invalid_input)?;
    let (created_at, last_activity) = dated.unwrap_or((now_ms, now_ms));
    let unwritable = |err: String| PersistenceError::invalid_input(MESSAGES, err);
    // The document holds each text twice (content, parts) and the parts once more than given.
    let text_len = messages
        .iter()
        .map(|message: &Message<Borrowed>| message.content.raw().get().len())
        .fold(messages_json.len(), usize::saturating_add);
    let memory = Memory {
        session_id: Cow::Borrowed(session_id),
        messages,
        summary: options.summary.unwrap_or_default(),
        context: to_verbatim(&JsonObject::new()).map_err(unwritable)?,
        extra: KeptFields::default(),
    };
    let session = Session {
        id: Cow::Borrowed(session_id),
        user_id: options.user_id,
        status: Cow::Borrowed(UI_SESSION_STATUS),
        created_at,
        last_activity,
        metadata: None,
        extra: KeptFields::default(),
    };
    check_input(&memory, &session)?;
    Ok(ConversationInput {
        memory,
        session,
        text_len,
    })
}

/// A message of an archive as a UIMessage.
enum UiMessage<'m> {
    /// Archived from a UIMessage: `id`, `role` and the members of `metadata.uiMessage`.
    Archived {
        id: &'m str,
        role: Role,
        members: Vec<(Cow<'m, str>, Verbatim<'m>)>,
    },
    /// A plain chat message: its content as one text part, and its metadata.
    Plain {
        id: &'m str,
        role: Role,
        content: &'m Verbatim<'m>,
        metadata: Option<&'m Verbatim<'m>>,
    },
}

/// One text part, `{"type":"text","text":...}`.
#[derive(Serialize)]
struct TextPart<'t> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'t Verbatim<'t>,
}

impl Serialize for UiMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            UiMessage::Archived { id, role, members } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("role", role)?;
                // Never written there by this library; a hand-made archive's would repeat them.
                for (name, value) in members
                    .iter()
                    .filter(|(name, _)| name != "id" && name != "role")
                {
                    map.serialize_entry(name, value)?;
                }
            }
            UiMessage::Plain {
                id,
                role,
                content,
                metadata,
            } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("role", role)?;
                let part = TextPart {
                    kind: "text",
                    text: content,
                };
                map.serialize_entry("parts", &[part])?;
                if let Some(metadata) = metadata {
                    map.serialize_entry("metadata", metadata)?;
                }
            }
        }
        map.end()
    }
}

/// The members of the UIMessage an archived message's `metadata` holds: its `uiMessage`
/// member, when that is an object with an array `parts`. `None` for anything else, which is a
/// plain chat message's own metadata.
fn archived_ui_message(metadata: &RawValue) -> Option<Vec<(Cow<'_, str>, Verbatim<'_>)>> {
    if Kind::of_raw(metadata) != Kind::Object {
        return None;
    }
    let ui_message = Fields::of("", metadata).ok()?.member(UI_MESSAGE_FIELD)?;
    if Kind::of_raw(ui_message) != Kind::Object {
        return None;
    }
    let members = Fields::of("", ui_message).ok()?.rest(verbatim).ok()?;
    members
        .iter()
        .any(|(name, value)| name == "parts" && Kind::of_raw(value.raw()) == Kind::Array)
        .then_some(members)
}

/// The UIMessages of an archived conversation (its JSON text, as retrieving it gives it), as
/// the JSON text of an array.
///
/// A message archived from a UIMessage comes back as it was given: `{id, role, ...}` with the
/// members of its `metadata.uiMessage`. Any other message (archived by
/// `archiveConversation`) becomes `{id, role, parts: [{type: "text", text: content}],
/// metadata}` (`metadata` only when it has one). Fails with `CORRUPT_DATA` naming `what`
/// when the conversation cannot be read.
pub fn ui_messages_json(conversation_json: &str, what: &str) -> Result<String> {
    let stored = |err: FieldError| err.corrupt(what);
    let conversation: &RawValue = serde_json::from_str(conversation_json).map_err(|err| {
        PersistenceError::corrupt(what, format!("conversation: {}", not_json(err)))
    })?;
    let fields = Fields::of("conversation", conversation).map_err(stored)?;
    let conversation = read_conversation::<Borrowed>(fields, true).map_err(stored)?;
    let messages: Vec<UiMessage> = conversation
        .memory
        .messages
        .iter()
        .map(|message| {
            let metadata = message.metadata.as_ref();
            match metadata.and_then(|metadata| archived_ui_message(metadata.raw())) {
                Some(members) => UiMessage::Archived {
                    id: &message.id,
                    role: message.role,
                    members,
                },
                None => UiMessage::Plain {
                    id: &message.id,
                    role: message.role,
                    content: &message.content,
                    metadata,
                },
            }
        })
        .collect();
    serde_json::to_string(&messages)
        .map_err(|err| PersistenceError::corrupt(what, format!("conversation: {err}")))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;
    use crate::codec::archive::{
        decode_archive_json, encode_archive, encode_conversation, parse_conversation_input,
    };
    use crate::codec::gzip;

    /// When the archive is written: 2025-01-06T10:00:00Z.
    const NOW: i64 = 1_736_157_600_000;
    const LIMIT: u64 = 1 << 20;

    /// One UIMessage of every part type the AI SDK defines, tools in every state, fields it
    /// added after v5 and ones no SDK has, and metadata of every JSON type.
    fn every_part_type() -> Value {
        json!([
            {"id": "u1", "role": "user",
             "metadata": {"createdAt": 1_736_157_000_000_i64, "locale": "de-DE"},
             "parts": [
                {"type": "text", "text": "My invoice shows a double charge."},
                {"type": "file", "mediaType": "application/pdf", "filename": "invoice.pdf",
                 "url": "data:application/pdf;base64,JVBERi0xLjQK"}
             ]},
            {"id": "a1", "role": "assistant",
             "metadata": {"createdAt": "2025-01-06T09:51:00.000Z", "model": "m-1",
                          "usage": {"inputTokens": 12, "outputTokens": 3.5}},
             "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "Maybe a password problem?", "state": "done",
                 "providerMetadata": {"anthropic": {"signature": "sig=="}}},
                {"type": "tool-lookupInvoice", "toolCallId": "c1", "state": "input-streaming",
                 "input": {"invoiceId": "INV-"}, "rawInput": "{\"invoiceId\":\"INV-"},
                {"type": "tool-lookupInvoice", "toolCallId": "c2", "state": "input-available",
                 "input": {"invoiceId": "INV-7"}, "providerExecuted": false,
                 "callProviderMetadata": {"openai": {"itemId": "x"}}},
                {"type": "tool-lookupInvoice", "toolCallId": "c3", "state": "output-available",
                 "input": {"invoiceId": "INV-7"},
                 "output": {"amount": 12.5, "lines": [1, 2, null], "paid": true},
                 "preliminary": false},
                {"type": "tool-refund", "toolCallId": "c4", "state": "output-error",
                 "input": {"amount": 12.5}, "errorText": "refund service unavailable"},
                {"type": "tool-refund", "toolCallId": "c5", "state": "approval-requested",
                 "input": {"amount": 12.5}, "approval": {"id": "ap-1"}},
                {"type": "dynamic-tool", "toolName": "mcp_search", "toolCallId": "c6",
                 "state": "output-available", "input": {"q": "double charge"},
                 "output": [{"title": "FAQ"}], "title": "Search"},
                {"type": "dynamic-tool", "toolName": "mcp_search", "toolCallId": "c7",
                 "state": "output-error", "input": null, "errorText": "timeout"},
                {"type": "source-url", "sourceId": "s1", "url": "https://example.com/faq",
                 "title": "FAQ"},
                {"type": "source-document", "sourceId": "s2", "mediaType": "text/plain",
                 "title": "Refund policy", "filename": "refunds.txt"},
                {"type": "data-refundStatus", "id": "d1", "data": {"status": "pending"}},
                {"type": "data-weather", "data": 21},
                {"type": "text", "text": "You were charged twice; the refund is on its way.",
                 "state": "done", "providerMetadata": {"openai": {"id": "t"}}},
                {"type": "x-future-part", "anything": [{"deep": {"er": ["é", "😀", "\u{0}"]}}]}
             ]},
            {"id": "s1", "role": "system", "parts": [], "futureField": {"kept": true}},
            {"id": "u2", "role": "user", "metadata": "just a string",
             "parts": [{"type": "text", "text": "Thanks!"}]},
            {"id": "u3", "role": "user", "metadata": null,
             "parts": [{"type": "text", "text": ""}, {"type": "text", "text": "and one more"}]},
            {"id": "a2", "role": "assistant", "metadata": [1, "two"],
             "parts": [{"type": "text", "text": "Anything else?"}]}
        ])
    }

    fn read(
        messages: &str,
        options: &str,
    ) -> Result<(super::super::ConversationMemory, super::super::SessionState)> {
        let input = read_ui_messages_input("chat-1", messages, options, NOW)?;
        let memory = serde_json::to_string(&input.memory).unwrap();
        let session = serde_json::to_string(&input.session).unwrap();
        Ok(parse_conversation_input(&memory, &session).unwrap())
    }

    /// The archive of `messages`, encoded as `archiveUIMessages` encodes it.
    fn archived(messages: &Value, options: &Value) -> Result<super::super::EncodedArchive> {
        let (messages, options) = (messages.to_string(), options.to_string());
        let input = read_ui_messages_input("chat-1", &messages, &options, NOW)?;
        encode_conversation(&input, NOW, 6, LIMIT)
    }

    /// The UIMessages retrieving `archive` gives.
    fn retrieve(archive: &super::super::EncodedArchive) -> Value {
        let sha256 = Some(archive.metadata.sha256.as_str());
        let decoded = decode_archive_json(&archive.bytes, sha256, LIMIT).unwrap();
        let text = ui_messages_json(&decoded.conversation_json, "archive").unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn document(archive: &super::super::EncodedArchive) -> Value {
        serde_json::from_slice(&gzip::decompress("t", &archive.bytes, LIMIT).unwrap()).unwrap()
    }

    #[test]
    fn every_part_type_comes_back_as_given() {
        let messages = every_part_type();
        let archive = archived(&messages, &json!({"userId": "user-1"})).unwrap();
        assert_eq!(retrieve(&archive), messages);
    }

    #[test]
    fn compact_input_comes_back_byte_for_byte() {
        // What JSON.stringify writes for members in the order id, role, then the rest.
        let text = r#"[{"id":"a1","role":"assistant","parts":[{"type":"text","text":"hi \"you\"\n"},{"type":"data-x","data":{"b":[1,true,null],"a":"z"}}],"metadata":{"createdAt":1736157000000,"z":1,"a":2},"later":"kept"}]"#;
        let input = read_ui_messages_input("chat-1", text, "{}", NOW).unwrap();
        let archive = encode_conversation(&input, NOW, 6, LIMIT).unwrap();
        let decoded =
            decode_archive_json(&archive.bytes, Some(&archive.metadata.sha256), LIMIT).unwrap();
        assert_eq!(
            ui_messages_json(&decoded.conversation_json, "archive").unwrap(),
            text
        );
    }

    #[test]
    fn each_ui_message_is_a_message_of_the_archive_document() {
        let archive = archived(
            &every_part_type(),
            &json!({"userId": "user-1", "summary": "Refund"}),
        )
        .unwrap();
        let document = document(&archive);
        let conversation = &document["conversation"];
        assert_eq!(conversation["sessionId"], "chat-1");
        assert_eq!(conversation["summary"], "Refund");
        assert_eq!(conversation["context"], json!({}));
        let first = &conversation["messages"][0];
        assert_eq!(
            first,
            &json!({
                "id": "u1", "sessionId": "chat-1",
                "content": "My invoice shows a double charge.",
                "role": "user", "timestamp": 1_736_157_000_000_i64,
                "metadata": {"uiMessage": {
                    "metadata": {"createdAt": 1_736_157_000_000_i64, "locale": "de-DE"},
                    "parts": every_part_type()[0]["parts"].clone()
                }}
            })
        );
        let messages = conversation["messages"].as_array().unwrap();
        let field =
            |name: &str| -> Vec<Value> { messages.iter().map(|m| m[name].clone()).collect() };
        // Only text parts make the content, joined by a blank line; reasoning stays in parts.
        assert_eq!(
            field("content"),
            [
                "My invoice shows a double charge.",
                "You were charged twice; the refund is on its way.",
                "",
                "Thanks!",
                "\n\nand one more",
                "Anything else?"
            ]
        );
        // createdAt as epoch ms or an ISO string; undated messages get the archive time.
        assert_eq!(
            field("timestamp"),
            [1_736_157_000_000_i64, 1_736_157_060_000, NOW, NOW, NOW, NOW]
        );
        assert_eq!(
            field("role"),
            ["user", "assistant", "system", "user", "user", "assistant"]
        );
        assert_eq!(
            messages[2]["metadata"],
            json!({"uiMessage": {"parts": [], "futureField": {"kept": true}}})
        );
        assert_eq!(
            messages[4]["metadata"],
            json!({"uiMessage": {"metadata": null,
                                 "parts": every_part_type()[4]["parts"].clone()}})
        );
        // The session lasted from the first to the last dated message.
        assert_eq!(
            conversation["sessionState"],
            json!({"id": "chat-1", "userId": "user-1", "status": "archived",
                   "createdAt": 1_736_157_000_000_i64, "lastActivity": 1_736_157_060_000_i64})
        );
        let metadata = &archive.metadata;
        assert_eq!(metadata.duration, 60_000);
        assert_eq!(metadata.message_count, 6);
        assert_eq!(metadata.user_id.as_deref(), Some("user-1"));
        assert_eq!(metadata.summary, "Refund");
        // "invoice" and "charged" are in text parts; "password" only in reasoning.
        assert_eq!(metadata.topics, ["billing"]);
    }

    #[test]
    fn topics_and_duration_come_from_text_parts_and_created_at() {
        let messages = json!([
            {"id": "1", "role": "user", "metadata": {"createdAt": "2025-01-06T10:00:00+01:00"},
             "parts": [{"type": "text", "text": "I cannot log in"},
                       {"type": "data-note", "data": {"text": "refund"}}]},
            {"id": "2", "role": "assistant", "metadata": {"createdAt": 1_736_154_300_000_i64},
             "parts": [{"type": "reasoning", "text": "a bug in billing?"},
                       {"type": "tool-x", "toolCallId": "t", "state": "output-available",
                        "input": {}, "output": {"text": "feature suggestion"}},
                       {"type": "text", "text": "Reset your password."}]},
            // Not usable as times: the message is undated.
            {"id": "3", "role": "user", "metadata": {"createdAt": -5},
             "parts": [{"type": "text", "text": "my account settings"}]},
            {"id": "4", "role": "user", "metadata": {"createdAt": 1.5},
             "parts": [{"type": "text", "text": "ok"}]},
            {"id": "5", "role": "user", "metadata": {"createdAt": "yesterday"}, "parts": []},
            {"id": "6", "role": "user", "metadata": {"createdAt": true}, "parts": []}
        ]);
        let archive = archived(&messages, &json!({})).unwrap();
        assert_eq!(
            archive.metadata.topics,
            ["authentication", "account-management"]
        );
        assert_eq!(archive.metadata.duration, 300_000);
        assert_eq!(archive.metadata.user_id, None);
        let timestamps: Vec<Value> = document(&archive)["conversation"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["timestamp"].clone())
            .collect();
        assert_eq!(
            timestamps,
            [1_736_154_000_000_i64, 1_736_154_300_000, NOW, NOW, NOW, NOW]
        );
        assert_eq!(retrieve(&archive), messages);

        // Nothing dated: the session starts and ends when it is archived.
        let undated = json!([{"id": "1", "role": "user", "parts": []}]);
        let archive = archived(&undated, &json!({})).unwrap();
        assert_eq!(archive.metadata.duration, 0);
        let session = &document(&archive)["conversation"]["sessionState"];
        assert_eq!(
            (
                session["createdAt"].clone(),
                session["lastActivity"].clone()
            ),
            (json!(NOW), json!(NOW))
        );
    }

    #[test]
    fn an_empty_conversation_is_an_archive_of_no_messages() {
        let archive = archived(&json!([]), &json!({})).unwrap();
        assert_eq!(archive.metadata.message_count, 0);
        assert_eq!(retrieve(&archive), json!([]));
    }

    #[test]
    fn bad_input_names_the_path() {
        let cases = [
            (
                json!({"id": "1"}),
                "messages: must be an array, found object",
            ),
            (json!("[]"), "messages: must be an array, found string"),
            (json!([null]), "messages[0]: must be an object, found null"),
            (
                json!([{"role": "user", "parts": []}]),
                "messages[0].id: is missing",
            ),
            (
                json!([{"id": 7, "role": "user", "parts": []}]),
                "messages[0].id: must be a string, found number",
            ),
            (
                json!([{"id": "1", "parts": []}]),
                "messages[0].role: is missing",
            ),
            (
                json!([{"id": "1", "role": "tool", "parts": []}]),
                "messages[0].role: role tool is not user, assistant or system",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": []},
                       {"id": "2", "role": "user", "parts": []},
                       {"id": "3", "role": "user", "parts": []},
                       {"id": "4", "role": "user"}]),
                "messages[3].parts: is missing",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": null}]),
                "messages[0].parts: is missing",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": {"type": "text"}}]),
                "messages[0].parts: must be an array, found object",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": ["hi"]}]),
                "messages[0].parts[0]: must be an object, found string",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": [{"text": "hi"}]}]),
                "messages[0].parts[0].type: is missing",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": [{"type": 3}]}]),
                "messages[0].parts[0].type: must be a string, found number",
            ),
            (
                json!([{"id": "1", "role": "user", "parts": []},
                       {"id": "2", "role": "user", "parts": []},
                       {"id": "3", "role": "assistant",
                        "parts": [{"type": "step-start"}, {"type": "text", "text": 5}]}]),
                "messages[2].parts[1].text: must be a string, found number",
            ),
            (
                json!([{"id": "1", "role": "assistant", "parts": [{"type": "reasoning"}]}]),
                "messages[0].parts[0].text: is missing",
            ),
        ];
        for (messages, needle) in cases {
            let err = archived(&messages, &json!({})).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
        let err = read_ui_messages_input("chat-1", "[{", "{}", NOW)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("messages: is not valid JSON"),
            "{err}"
        );
        // A lone surrogate is no text: refused where it is, not stored as U+FFFD.
        let text = r#"[{"id":"1","role":"user","parts":[{"type":"data-x","data":"\ud800"}]}]"#;
        let err = read_ui_messages_input("chat-1", text, "{}", NOW)
            .err()
            .unwrap();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("messages[0].parts"), "{err}");
    }

    #[test]
    fn bad_options_and_ids_are_refused() {
        let ok = json!([]).to_string();
        let expect = |session_id: &str, options: &str, code: &str, needle: &str| {
            let err = read_ui_messages_input(session_id, &ok, options, NOW)
                .err()
                .unwrap();
            assert_eq!(err.code(), code, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        };
        expect(
            "chat-1",
            r#"{"userId":7}"#,
            "INVALID_INPUT",
            "options.userId: must be a string, found number",
        );
        expect(
            "chat-1",
            r#"{"summary":[]}"#,
            "INVALID_INPUT",
            "options.summary: must be a string",
        );
        expect(
            "chat-1",
            r#"{"userID":"u"}"#,
            "INVALID_INPUT",
            "options.userID: is not an option",
        );
        expect(
            "chat-1",
            "[]",
            "INVALID_INPUT",
            "options: must be an object, found array",
        );
        expect("chat-1", r#"{"userId":""}"#, "INVALID_ID", "userId");
        expect("../x", "{}", "INVALID_ID", "sessionId");
        expect("", "{}", "INVALID_ID", "sessionId");
        // Null is no user and no summary, as `undefined` would be.
        let (memory, session) = read(&ok, r#"{"userId":null,"summary":null}"#).unwrap();
        assert_eq!((session.user_id, memory.summary), (None, String::new()));
    }

    #[test]
    fn plain_chat_messages_come_back_as_one_text_part() {
        let memory = json!({
            "sessionId": "chat-1",
            "messages": [
                {"id": "m1", "sessionId": "chat-1", "content": "I was charged twice",
                 "role": "user", "timestamp": 1_736_157_000_000_i64, "lang": "en"},
                {"id": "m2", "sessionId": "chat-1", "content": "Refunded.", "role": "assistant",
                 "timestamp": 1_736_157_060_000_i64, "metadata": {"confidence": 0.9}},
                // A caller's own `uiMessage` that is no archived UIMessage (no parts array).
                {"id": "m3", "sessionId": "chat-1", "content": "bye", "role": "user",
                 "timestamp": 1_736_157_090_000_i64, "metadata": {"uiMessage": {"parts": "no"}}},
                {"id": "m4", "sessionId": "chat-1", "content": "", "role": "system",
                 "timestamp": 1_736_157_090_000_i64, "metadata": {"uiMessage": 3}}
            ]
        });
        let session = json!({"id": "chat-1", "status": "ended",
                             "createdAt": 1_736_157_000_000_i64,
                             "lastActivity": 1_736_157_090_000_i64});
        let (memory, session) =
            parse_conversation_input(&memory.to_string(), &session.to_string()).unwrap();
        let archive = encode_archive(&memory, &session, NOW, 6, LIMIT).unwrap();
        assert_eq!(
            retrieve(&archive),
            json!([
                {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "I was charged twice"}]},
                {"id": "m2", "role": "assistant", "parts": [{"type": "text", "text": "Refunded."}],
                 "metadata": {"confidence": 0.9}},
                {"id": "m3", "role": "user", "parts": [{"type": "text", "text": "bye"}],
                 "metadata": {"uiMessage": {"parts": "no"}}},
                {"id": "m4", "role": "system", "parts": [{"type": "text", "text": ""}],
                 "metadata": {"uiMessage": 3}}
            ])
        );
    }

    #[test]
    fn unreadable_conversations_are_corrupt_data() {
        for text in ["{", "[]", r#"{"sessionId":"s","messages":[{"id":"m"}]}"#] {
            let err = ui_messages_json(text, "conversations/x.json.gz").unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
            assert!(err.to_string().contains("conversations/x.json.gz"), "{err}");
        }
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::codec::archive::proptests::json_value;
    use crate::codec::archive::{decode_archive_json, encode_conversation};

    const LIMIT: u64 = 1 << 22;

    /// A part: a text part, or any other type with any fields.
    fn part() -> impl Strategy<Value = Value> {
        let fields = || prop::collection::vec(("x_\\PC{0,6}", json_value()), 0..3);
        prop_oneof![
            (any::<String>(), fields()).prop_map(|(text, fields)| {
                let mut part = json!({"type": "text", "text": text});
                part.as_object_mut().unwrap().extend(fields);
                part
            }),
            ("[a-z-]{0,12}", fields()).prop_map(|(kind, fields)| {
                let mut part = json!({"type": kind});
                part.as_object_mut().unwrap().extend(fields);
                if kind == "text" || kind == "reasoning" {
                    part["text"] = json!("t");
                }
                part
            }),
        ]
    }

    fn ui_message() -> impl Strategy<Value = Value> {
        (
            any::<String>(),
            prop_oneof![Just("user"), Just("assistant"), Just("system")],
            prop::collection::vec(part(), 0..5),
            prop::option::of(json_value()),
            prop::collection::vec(("x_\\PC{0,6}", json_value()), 0..2),
        )
            .prop_map(|(id, role, parts, metadata, extra)| {
                let mut message = json!({"id": id, "role": role, "parts": parts});
                if let Some(metadata) = metadata {
                    message["metadata"] = metadata;
                }
                message.as_object_mut().unwrap().extend(extra);
                message
            })
    }

    proptest! {
        #[test]
        fn any_ui_messages_come_back_as_given(
            messages in prop::collection::vec(ui_message(), 0..5),
            now in 0_i64..4_000_000_000_000,
        ) {
            let text = Value::from(messages.clone()).to_string();
            let input = read_ui_messages_input("s", &text, "{}", now).unwrap();
            let archive = encode_conversation(&input, now, 1, LIMIT).unwrap();
            let decoded =
                decode_archive_json(&archive.bytes, Some(&archive.metadata.sha256), LIMIT).unwrap();
            let back: Value =
                serde_json::from_str(&ui_messages_json(&decoded.conversation_json, "a").unwrap())
                    .unwrap();
            prop_assert_eq!(back, Value::from(messages));
        }
    }
}
