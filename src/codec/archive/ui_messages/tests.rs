//! Round trips, the stored layout, bad input, and the two readers agreeing.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;
use crate::codec::archive::{
    decode_archive, decode_archive_json, encode_archive, encode_conversation,
    parse_conversation_input, ConversationMemory, EncodedArchive, SessionState, View,
    FORMAT_VERSION, TEXT_IN_PARTS_FORMAT_VERSION,
};
use crate::codec::gzip;
use crate::error::Result;

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

/// The conversation the archive of `messages` holds, as chat messages.
fn read(messages: &str, options: &str) -> Result<(ConversationMemory, SessionState)> {
    let input = read_ui_messages_input("chat-1", messages, options, NOW)?;
    let archive = encode_conversation(&input, NOW, 6, LIMIT)?;
    let decoded = decode_archive(&archive.bytes, None, LIMIT)?;
    let session = decoded.conversation.session_state.unwrap();
    Ok((decoded.conversation.memory, session))
}

/// The archive of `messages`, encoded as `archiveUIMessages` encodes it.
fn archived(messages: &Value, options: &Value) -> Result<EncodedArchive> {
    let (messages, options) = (messages.to_string(), options.to_string());
    let input = read_ui_messages_input("chat-1", &messages, &options, NOW)?;
    encode_conversation(&input, NOW, 6, LIMIT)
}

fn document_text(archive: &EncodedArchive) -> String {
    String::from_utf8(gzip::decompress("t", &archive.bytes, LIMIT).unwrap()).unwrap()
}

fn document(archive: &EncodedArchive) -> Value {
    serde_json::from_str(&document_text(archive)).unwrap()
}

/// The UIMessages retrieving `archive` gives, as JSON text. Checks that every reader gives
/// them alike: the one pass over a verified format 2 document (`stored`), which must take
/// every such document this library writes, and the general reader (`output`), over the
/// document unverified and over the conversation JSON a retrieval gives.
fn retrieved_text(archive: &EncodedArchive) -> String {
    let sha256 = archive.metadata.sha256.as_str();
    let view = View::UiMessages("archive");
    let verified = decode_archive_json(&archive.bytes, Some(sha256), LIMIT, view).unwrap();
    assert_eq!(verified.metadata, archive.metadata);
    let unverified = decode_archive_json(&archive.bytes, None, LIMIT, view).unwrap();
    assert_eq!(unverified.json, verified.json);
    let conversation =
        decode_archive_json(&archive.bytes, Some(sha256), LIMIT, View::Conversation).unwrap();
    assert_eq!(
        ui_messages_json(&conversation.json, "archive").unwrap(),
        verified.json
    );
    let one_pass = ui_messages_of_verified_document(
        &document_text(archive),
        archive.bytes.len() as u64,
        sha256,
    );
    if archive.metadata.format_version == TEXT_IN_PARTS_FORMAT_VERSION {
        assert_eq!(
            one_pass,
            Some((archive.metadata.clone(), verified.json.clone()))
        );
    } else {
        assert_eq!(one_pass, None);
    }
    verified.json
}

/// The UIMessages retrieving `archive` gives.
fn retrieve(archive: &EncodedArchive) -> Value {
    serde_json::from_str(&retrieved_text(archive)).unwrap()
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
    assert_eq!(retrieved_text(&archive), text);
}

#[test]
fn each_ui_message_is_a_message_of_the_archive_document() {
    let archive = archived(
        &every_part_type(),
        &json!({"userId": "user-1", "summary": "Refund"}),
    )
    .unwrap();
    let document = document(&archive);
    // Each text is stored once, in its part: a document of format 2.
    assert_eq!(document["formatVersion"], TEXT_IN_PARTS_FORMAT_VERSION);
    assert_eq!(
        archive.metadata.format_version,
        TEXT_IN_PARTS_FORMAT_VERSION
    );
    let conversation = &document["conversation"];
    assert_eq!(conversation["sessionId"], "chat-1");
    assert_eq!(conversation["summary"], "Refund");
    assert_eq!(conversation["context"], json!({}));
    let first = &conversation["messages"][0];
    let stored_first = json!({
        "id": "u1", "sessionId": "chat-1",
        "role": "user", "timestamp": 1_736_157_000_000_i64,
        "metadata": {"uiMessage": {
            "metadata": {"createdAt": 1_736_157_000_000_i64, "locale": "de-DE"},
            "parts": every_part_type()[0]["parts"].clone()
        }}
    });
    assert_eq!(first, &stored_first);
    let messages = conversation["messages"].as_array().unwrap();
    let field = |name: &str| -> Vec<Value> { messages.iter().map(|m| m[name].clone()).collect() };
    assert!(messages.iter().all(|m| m.get("content").is_none()));

    // Read as chat messages, each has the content the parts give.
    let read_back = decode_archive(&archive.bytes, Some(&archive.metadata.sha256), LIMIT)
        .unwrap()
        .conversation;
    let mut with_content = stored_first;
    with_content
        .as_object_mut()
        .unwrap()
        .insert("content".into(), json!("My invoice shows a double charge."));
    assert_eq!(
        serde_json::to_value(&read_back.memory.messages[0]).unwrap(),
        with_content
    );
    let contents: Vec<&str> = read_back
        .memory
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    // Only text parts make the content, joined by a blank line; reasoning stays in parts.
    assert_eq!(
        contents,
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
            let back: Value = serde_json::from_str(&retrieved_text(&archive)).unwrap();
            prop_assert_eq!(back, Value::from(messages.clone()));

            // Each text once: the document is the format 1 document of the conversation it
            // reads as, without the messages' `content` (format 2 once a message leaves it out).
            let decoded = decode_archive(&archive.bytes, None, LIMIT).unwrap();
            let session = decoded.conversation.session_state.as_ref().unwrap();
            let contents = encode_archive(&decoded.conversation.memory, session, now, 1, LIMIT)
                .unwrap();
            prop_assert_eq!(contents.metadata.format_version, FORMAT_VERSION);
            let mut expected = document(&contents);
            if !messages.is_empty() {
                expected["formatVersion"] = json!(TEXT_IN_PARTS_FORMAT_VERSION);
                for message in expected["conversation"]["messages"].as_array_mut().unwrap() {
                    message.as_object_mut().unwrap().shift_remove("content");
                }
            }
            prop_assert_eq!(document(&archive), expected);
            // And it reads as that conversation.
            let conversation = |archive: &EncodedArchive| {
                let sha256 = Some(archive.metadata.sha256.as_str());
                decode_archive_json(&archive.bytes, sha256, LIMIT, View::Conversation)
                    .unwrap()
                    .json
            };
            prop_assert_eq!(conversation(&archive), conversation(&contents));
        }
    }
}

/// A hand-made archive of `document`, with its checksum.
fn stored(document: &str) -> (Vec<u8>, String) {
    let bytes = gzip::compress(document.as_bytes(), 6).unwrap();
    let sha256 = crate::hash::sha256_hex(&bytes);
    (bytes, sha256)
}

/// `decode_archive_json` in `view` of a hand-made archive of `document`, verified.
fn decode_verified(document: &str, view: View) -> Result<String> {
    let (bytes, sha256) = stored(document);
    decode_archive_json(&bytes, Some(&sha256), LIMIT, view).map(|decoded| decoded.json)
}

/// Whether the one pass takes `document`.
fn one_pass_takes(document: &str) -> bool {
    let (bytes, sha256) = stored(document);
    ui_messages_of_verified_document(document, bytes.len() as u64, &sha256).is_some()
}

#[test]
fn the_one_pass_leaves_what_the_encoder_does_not_write_to_the_general_reader() {
    let messages = every_part_type();
    let archive = archived(&messages, &json!({"userId": "user-1"})).unwrap();
    let written = document(&archive);
    assert!(one_pass_takes(&document_text(&archive)));
    let ui = View::UiMessages("archive");

    // Read by the general reader (or, `taken`, the one pass), to the same UIMessages.
    let read_as = |taken: bool, edit: &dyn Fn(&mut Value)| {
        let mut document = written.clone();
        edit(&mut document);
        let text = document.to_string();
        assert_eq!(one_pass_takes(&text), taken, "{text}");
        let back: Value = serde_json::from_str(&decode_verified(&text, ui).unwrap()).unwrap();
        back
    };
    let same_messages = |edit: &dyn Fn(&mut Value)| read_as(false, edit);
    fn first(document: &mut Value) -> &mut Value {
        &mut document["conversation"]["messages"][0]
    }
    // Metadata besides `uiMessage`, which the general reader leaves out too.
    assert_eq!(
        same_messages(&|d| first(d)["metadata"]["note"] = json!("x")),
        messages
    );
    // A message with its content too (as format 1 writes it): the parts are what it reads.
    let with_content = |d: &mut Value| first(d)["content"] = json!("not read");
    assert_eq!(read_as(true, &with_content), messages);
    // A plain chat message among them: one text part.
    let plain = same_messages(&|d| {
        *first(d) = json!({"id": "p1", "sessionId": "chat-1", "content": "plain", "role": "user",
                           "timestamp": 1});
    });
    assert_eq!(
        plain[0],
        json!({"id": "p1", "role": "user", "parts": [{"type": "text", "text": "plain"}]})
    );
    assert_eq!(
        plain.as_array().unwrap()[1..],
        messages.as_array().unwrap()[1..]
    );
    // An id inside the UIMessage, which is not written twice.
    assert_eq!(
        read_as(true, &|d| first(d)["metadata"]["uiMessage"]["id"] =
            json!("other")),
        messages
    );

    // A document whose ids or count disagree, or whose message has neither content nor
    // parts: the general reader names what is wrong.
    let corrupt = |edit: &dyn Fn(&mut Value), needle: &str| {
        let mut document = written.clone();
        edit(&mut document);
        let text = document.to_string();
        assert!(!one_pass_takes(&text), "{text}");
        let err = decode_verified(&text, ui).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    };
    // Format 1 has every message's content.
    corrupt(
        &|d| d["formatVersion"] = json!(FORMAT_VERSION),
        "conversation.messages[0].content: is missing",
    );
    corrupt(
        &|d| d["metadata"]["messageCount"] = json!(5),
        "metadata.messageCount",
    );
    corrupt(
        &|d| d["conversation"]["sessionState"]["id"] = json!("chat-2"),
        "conversation.sessionState.id",
    );
    corrupt(
        &|d| d["metadata"]["userId"] = json!("user-2"),
        "metadata.userId",
    );
    corrupt(
        &|d| {
            first(d)["metadata"]["uiMessage"]
                .as_object_mut()
                .unwrap()
                .shift_remove("parts");
        },
        "conversation.messages[0].content: is missing",
    );
    // The one pass does not read the parts: as for format 1, a verified document is trusted to
    // hold what the encoder checked. Read as chat messages, the parts must give the content.
    let mut document = written.clone();
    first(&mut document)["metadata"]["uiMessage"]["parts"][0]["text"] = json!(7);
    let text = document.to_string();
    assert!(one_pass_takes(&text));
    let err = decode_verified(&text, View::Conversation).unwrap_err();
    assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
    let needle = "conversation.messages[0].metadata.uiMessage.parts[0].text";
    assert!(err.to_string().contains(needle), "{err}");
    corrupt(
        &|d| first(d)["role"] = json!("robot"),
        "conversation.messages[0].role",
    );

    // A member given twice.
    let text = document_text(&archive).replacen(r#""id":"u1","#, r#""id":"u0","id":"u1","#, 1);
    assert!(!one_pass_takes(&text));
    let back: Value = serde_json::from_str(&decode_verified(&text, ui).unwrap()).unwrap();
    assert_eq!(back, messages);
}

#[test]
fn the_one_pass_copies_values_as_they_stand() {
    // Whitespace is not what the encoder writes; the values are the same.
    let archive = archived(&every_part_type(), &json!({})).unwrap();
    let pretty = serde_json::to_string_pretty(&document(&archive)).unwrap();
    assert!(one_pass_takes(&pretty));
    let back: Value =
        serde_json::from_str(&decode_verified(&pretty, View::UiMessages("a")).unwrap()).unwrap();
    assert_eq!(back, every_part_type());
    // Member names are escaped as serde_json escapes them.
    let messages = json!([{"id": "1", "role": "user", "parts": [],
                           "we\"ird\n\u{1}": {"é": "\\"}}]);
    let archive = archived(&messages, &json!({})).unwrap();
    assert_eq!(retrieve(&archive), messages);
}
