//! The conversation an archive holds: one model, read by one set of functions and written by
//! one `Serialize` derive, in two forms.
//!
//! [`Borrowed`] keeps what this library does not interpret (message text, metadata, context,
//! unknown fields) as slices of the JSON text it was read from: archiving and retrieval use it,
//! so a conversation of tens of MB is never copied into a `Value` tree. [`Owned`] holds
//! `String`s and `Value`s: what [`super::decode_archive`] returns and tests build. Fields this
//! library does not know are kept in `extra` and written back unchanged, so data added by newer
//! callers survives an archive round trip.
//!
//! A message's content is always known, but not always written: an archived UIMessage keeps its
//! text in its parts, and a document written from it leaves `content` out ([`Content::InParts`],
//! format 2); reading such a document gives the content back ([`Layout::TextInParts`]).

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::text_parts::content_in_parts;
use crate::codec::fields::{
    convert_member, not_json, parse_str, to_verbatim, verbatim, FieldError, Fields, Kind, Verbatim,
};

/// A JSON object: field name to value, in document order.
pub type JsonObject = Map<String, Value>;

/// The largest epoch-millisecond time JavaScript's `Date` can hold (ECMAScript's range limit).
const MAX_EPOCH_MS: i64 = 8_640_000_000_000_000;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The end user.
    User,
    /// The AI assistant.
    Assistant,
    /// A system prompt or notice.
    System,
}

impl Role {
    /// The role named by its JSON spelling (`"user"`, `"assistant"`, `"system"`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

/// What every part of a conversation can do: be written, printed, copied and compared (the
/// model's derives ask it of both forms).
pub trait Part: Serialize + Debug + Clone + PartialEq {}

impl<T: Serialize + Debug + Clone + PartialEq> Part for T {}

/// How a conversation holds its parts: [`Owned`] or [`Borrowed`].
pub trait Form: Debug + Clone + PartialEq {
    /// Text this library reads: ids, status, summary.
    type Text: Part + Deref<Target = str>;
    /// A message's text.
    type Content: Part;
    /// An object kept as given: metadata, context.
    type Object: Part;
    /// Unknown fields, kept as given and in order; written as members of their object.
    type Extra: Part;

    /// The text of a message's content.
    fn content_text(content: &Self::Content) -> Cow<'_, str>;
    /// Whether a message's content is kept in its UIMessage's parts, so not written as its
    /// `content` member.
    fn content_in_parts(content: &Self::Content) -> bool;
    /// Whether `extra` holds a field `name`.
    fn has_field(extra: &Self::Extra, name: &str) -> bool;
}

/// A form a conversation is read into from JSON text that lives for `'a`.
pub trait ReadInto<'a>: Form {
    /// Text read from the document.
    fn text(text: Cow<'a, str>) -> Self::Text;
    /// A JSON string, the content of a message.
    fn content(raw: &'a RawValue) -> Result<Self::Content, String>;
    /// The content of a stored message that keeps its text in its parts, from that text.
    fn content_from_parts(text: String) -> Result<Self::Content, String>;
    /// A JSON object kept as given.
    fn object(raw: &'a RawValue) -> Result<Self::Object, String>;
    /// The fields of an object that were not read.
    fn extra(fields: Fields<'a>) -> Result<Self::Extra, FieldError>;
}

/// Owned parts: `String`s and JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned;

impl Form for Owned {
    type Text = String;
    type Content = String;
    type Object = JsonObject;
    type Extra = JsonObject;

    fn content_text(content: &String) -> Cow<'_, str> {
        Cow::Borrowed(content)
    }

    fn content_in_parts(_: &String) -> bool {
        false
    }

    fn has_field(extra: &JsonObject, name: &str) -> bool {
        extra.contains_key(name)
    }
}

impl<'a> ReadInto<'a> for Owned {
    fn text(text: Cow<'a, str>) -> String {
        text.into_owned()
    }

    fn content(raw: &'a RawValue) -> Result<String, String> {
        parse_str(raw).map(Cow::into_owned).map_err(not_json)
    }

    fn content_from_parts(text: String) -> Result<String, String> {
        Ok(text)
    }

    fn object(raw: &'a RawValue) -> Result<JsonObject, String> {
        serde_json::from_str(raw.get()).map_err(not_json)
    }

    fn extra(fields: Fields<'a>) -> Result<JsonObject, FieldError> {
        let rest = fields.rest(|raw| serde_json::from_str::<Value>(raw.get()).map_err(not_json))?;
        Ok(rest
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value))
            .collect())
    }
}

/// Parts borrowed from JSON text that lives for `'a`; what is kept as given stays JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Borrowed<'a>(PhantomData<&'a str>);

/// Unknown fields kept as JSON text, in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeptFields<'a>(pub(super) Vec<(Cow<'a, str>, Verbatim<'a>)>);

/// A message's content in the borrowed form.
#[derive(Debug, Clone, PartialEq)]
pub enum Content<'a> {
    /// A JSON string, written as the message's `content`.
    Given(Verbatim<'a>),
    /// The text of the message's UIMessage parts (`text_parts`): they hold it, so a document
    /// leaves `content` out (format 2) rather than store the text twice.
    InParts(String),
}

impl Serialize for Content<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Given(text) => text.serialize(serializer),
            Content::InParts(text) => serializer.serialize_str(text),
        }
    }
}

impl Serialize for KeptFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

impl<'a> Form for Borrowed<'a> {
    type Text = Cow<'a, str>;
    type Content = Content<'a>;
    type Object = Verbatim<'a>;
    type Extra = KeptFields<'a>;

    fn content_text<'c>(content: &'c Content<'a>) -> Cow<'c, str> {
        match content {
            // Content is kept only once serde_json has read it as a string (see `verbatim`).
            Content::Given(text) => parse_str(text.raw()).unwrap_or_default(),
            Content::InParts(text) => Cow::Borrowed(text),
        }
    }

    fn content_in_parts(content: &Content<'a>) -> bool {
        matches!(content, Content::InParts(_))
    }

    fn has_field(extra: &KeptFields<'a>, name: &str) -> bool {
        extra.0.iter().any(|(known, _)| known == name)
    }
}

impl<'a> ReadInto<'a> for Borrowed<'a> {
    fn text(text: Cow<'a, str>) -> Cow<'a, str> {
        text
    }

    fn content(raw: &'a RawValue) -> Result<Content<'a>, String> {
        verbatim(raw).map(Content::Given)
    }

    fn content_from_parts(text: String) -> Result<Content<'a>, String> {
        // Written back as `content`: read, a format 2 message is the format 1 message it stands for.
        to_verbatim(&text).map(Content::Given)
    }

    fn object(raw: &'a RawValue) -> Result<Verbatim<'a>, String> {
        verbatim(raw)
    }

    fn extra(fields: Fields<'a>) -> Result<KeptFields<'a>, FieldError> {
        fields.rest(verbatim).map(KeptFields)
    }
}

/// One message of a conversation (the TypeScript `ChatMessage`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Message<F: Form> {
    /// Message id, unique within its session.
    pub id: F::Text,
    /// The session the message belongs to.
    pub session_id: F::Text,
    /// The message text; not written when its UIMessage's parts hold it (format 2).
    #[serde(skip_serializing_if = "F::content_in_parts")]
    pub content: F::Content,
    /// Who wrote it.
    pub role: Role,
    /// When it was written, in epoch milliseconds.
    pub timestamp: i64,
    /// Caller-defined metadata, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<F::Object>,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: F::Extra,
}

/// The live memory of a conversation (the TypeScript `ConversationMemory`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Memory<F: Form> {
    /// The session this memory belongs to.
    pub session_id: F::Text,
    /// The messages, oldest first.
    pub messages: Vec<Message<F>>,
    /// A running summary of the conversation (`""` when none).
    pub summary: F::Text,
    /// Caller-defined context, kept verbatim (`{}` when none).
    pub context: F::Object,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: F::Extra,
}

/// The state of a session (the TypeScript `SessionState`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Session<F: Form> {
    /// The session id.
    pub id: F::Text,
    /// The user the session belongs to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<F::Text>,
    /// Lifecycle status as the caller names it, e.g. `"active"` or `"ended"`.
    pub status: F::Text,
    /// When the session started, in epoch milliseconds.
    pub created_at: i64,
    /// When the session last saw activity, in epoch milliseconds.
    pub last_activity: i64,
    /// Caller-defined metadata, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<F::Object>,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: F::Extra,
}

/// An owned message.
pub type ChatMessage = Message<Owned>;
/// An owned conversation memory.
pub type ConversationMemory = Memory<Owned>;
/// An owned session state.
pub type SessionState = Session<Owned>;

/// A conversation as archives store it: the memory's fields, then `sessionState`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation<M, S> {
    /// The conversation memory, its fields flattened into the same JSON object.
    #[serde(flatten)]
    pub memory: M,
    /// The session as it was when archived; `None` only in legacy archives that lack it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_state: Option<S>,
}

/// The conversation stored in an archive, owned.
pub type ArchivedConversation = Conversation<ConversationMemory, SessionState>;

/// The field names of [`Message`], [`Conversation`] and [`Session`] (an `extra` map must not
/// repeat them), separated by spaces.
const MESSAGE_FIELDS: &str = "id sessionId content role timestamp metadata";
const CONVERSATION_FIELDS: &str = "sessionId messages summary context sessionState";
const SESSION_FIELDS: &str = "id userId status createdAt lastActivity metadata";

/// Why `ms` is not a time JavaScript's `Date` can hold from 1970 on, if it is not.
pub fn check_epoch_ms(ms: i64) -> Result<(), String> {
    if (0..=MAX_EPOCH_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "{ms} is outside 0..={MAX_EPOCH_MS} epoch milliseconds"
        ))
    }
}

/// A required time in epoch milliseconds (an integer JavaScript's `Date` can hold).
pub fn epoch_ms(fields: &mut Fields<'_>, name: &str) -> Result<i64, FieldError> {
    let ms = fields.number(name, "an integer number of epoch milliseconds")?;
    check_epoch_ms(ms).map_err(|reason| FieldError::new(fields.path_of(name), reason))?;
    Ok(ms)
}

/// Reads a role given as a JSON string.
pub(super) fn read_role(raw: &RawValue) -> Result<Role, String> {
    let name = parse_str(raw).map_err(not_json)?;
    Role::parse(&name)
        .ok_or_else(|| format!("role {name} is not user, assistant or system (found {name:?})"))
}

/// What a conversation read may leave out, by where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A caller's memory, or a document of format 1: every message has its `content`.
    Contents,
    /// A document of the earlier implementation (format 0), or conversation JSON of any
    /// archive: as [`Layout::Contents`], and `sessionState` may be missing.
    Legacy,
    /// A document of format 2: a message may leave out `content` when its
    /// `metadata.uiMessage.parts` hold its text (see `text_parts`).
    TextInParts,
}

/// Reads a message laid out as `layout` says.
fn read_message<'a, F: ReadInto<'a>>(
    mut fields: Fields<'a>,
    layout: Layout,
) -> Result<Message<F>, FieldError> {
    let id = F::text(fields.string("id")?);
    let session_id = F::text(fields.string("sessionId")?);
    let content = match fields.member("content") {
        Some(raw) => Some(convert_member(
            raw,
            Kind::String,
            || fields.path_of("content"),
            F::content,
        )?),
        None if layout == Layout::TextInParts => None,
        None => return Err(FieldError::new(fields.path_of("content"), "is missing")),
    };
    let role = fields.convert("role", Kind::String, read_role)?;
    let timestamp = epoch_ms(&mut fields, "timestamp")?;
    let metadata_raw = fields.member("metadata");
    let content = match content {
        Some(content) => content,
        None => {
            let text = content_in_parts(fields.path(), metadata_raw)?;
            F::content_from_parts(text)
                .map_err(|reason| FieldError::new(fields.path_of("content"), reason))?
        }
    };
    let metadata = metadata_raw
        .map(|raw| convert_member(raw, Kind::Object, || fields.path_of("metadata"), F::object))
        .transpose()?;
    Ok(Message {
        id,
        session_id,
        content,
        role,
        timestamp,
        metadata,
        extra: F::extra(fields)?,
    })
}

/// Reads the memory fields of a conversation, leaving its unknown fields in `extra`;
/// `sessionState` must have been taken out before.
fn read_memory_fields<'a, F: ReadInto<'a>>(
    mut fields: Fields<'a>,
    layout: Layout,
) -> Result<Memory<F>, FieldError> {
    let session_id = F::text(fields.string("sessionId")?);
    let messages = fields.object_items("messages", |message| read_message(message, layout))?;
    let summary = F::text(fields.optional_string("summary")?.unwrap_or_default());
    let context = match fields.optional_convert("context", Kind::Object, F::object)? {
        Some(context) => context,
        None => serde_json::from_str("{}")
            .map_err(not_json)
            .and_then(F::object)
            .map_err(|reason| FieldError::new(fields.path_of("context"), reason))?,
    };
    Ok(Memory {
        session_id,
        messages,
        summary,
        context,
        extra: F::extra(fields)?,
    })
}

/// Reads a conversation memory given by a caller. `sessionState` is refused: the archive writes
/// the session beside the memory under that name.
pub fn read_memory<'a, F: ReadInto<'a>>(mut fields: Fields<'a>) -> Result<Memory<F>, FieldError> {
    fields.refuse(
        "sessionState",
        "is reserved: the archive stores the session under this name",
    )?;
    read_memory_fields(fields, Layout::Contents)
}

/// Reads a session state.
pub fn read_session<'a, F: ReadInto<'a>>(mut fields: Fields<'a>) -> Result<Session<F>, FieldError> {
    Ok(Session {
        id: F::text(fields.string("id")?),
        user_id: fields.optional_string("userId")?.map(F::text),
        status: F::text(fields.string("status")?),
        created_at: epoch_ms(&mut fields, "createdAt")?,
        last_activity: epoch_ms(&mut fields, "lastActivity")?,
        metadata: fields.optional_convert("metadata", Kind::Object, F::object)?,
        extra: F::extra(fields)?,
    })
}

/// Reads a stored conversation laid out as `layout` says: its memory and its `sessionState`.
pub fn read_conversation<'a, F: ReadInto<'a>>(
    mut fields: Fields<'a>,
    layout: Layout,
) -> Result<Conversation<Memory<F>, Session<F>>, FieldError> {
    let session = if layout == Layout::Legacy {
        fields.optional_convert("sessionState", Kind::Object, Ok)?
    } else {
        Some(fields.object("sessionState")?)
    };
    let session_state = session
        .map(|raw| read_session(Fields::of(fields.path_of("sessionState"), raw)?))
        .transpose()?;
    Ok(Conversation {
        memory: read_memory_fields(fields, layout)?,
        session_state,
    })
}

/// Checks that `extra` repeats none of the `known` field names (it would write them twice).
fn check_extra<F: Form>(
    path: impl FnOnce() -> String,
    extra: &F::Extra,
    known: &str,
) -> Result<(), FieldError> {
    match known.split(' ').find(|name| F::has_field(extra, name)) {
        Some(name) => Err(FieldError::new(
            format!("{}.{name}", path()),
            "is given twice: as a field and in `extra`",
        )),
        None => Ok(()),
    }
}

/// Checks what the types alone cannot: the memory and its messages belong to the session
/// (`memory.sessionId` equals `session.id`, and every message's `sessionId` equals
/// `memory.sessionId`), times are representable, and no `extra` map shadows a known field.
/// Paths start with `memory` and `session`.
pub fn check_conversation<F: Form>(
    memory: &Memory<F>,
    session: &Session<F>,
) -> Result<(), FieldError> {
    for (path, ms) in [
        ("session.createdAt", session.created_at),
        ("session.lastActivity", session.last_activity),
    ] {
        check_epoch_ms(ms).map_err(|reason| FieldError::new(path, reason))?;
    }
    check_extra::<F>(|| "session".into(), &session.extra, SESSION_FIELDS)?;
    check_extra::<F>(|| "memory".into(), &memory.extra, CONVERSATION_FIELDS)?;
    let (session_id, memory_session_id) = (&*session.id, &*memory.session_id);
    if memory_session_id != session_id {
        return Err(FieldError::new(
            "memory.sessionId",
            format!("{memory_session_id:?} differs from session.id {session_id:?}"),
        ));
    }
    for (index, message) in memory.messages.iter().enumerate() {
        let path = || format!("memory.messages[{index}]");
        let message_session_id = &*message.session_id;
        if message_session_id != memory_session_id {
            return Err(FieldError::new(
                format!("{}.sessionId", path()),
                format!(
                    "{message_session_id:?} differs from memory.sessionId {memory_session_id:?}"
                ),
            ));
        }
    }
    for (index, message) in memory.messages.iter().enumerate() {
        let path = || format!("memory.messages[{index}]");
        check_epoch_ms(message.timestamp)
            .map_err(|reason| FieldError::new(format!("{}.timestamp", path()), reason))?;
        check_extra::<F>(path, &message.extra, MESSAGE_FIELDS)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    fn parse_document(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    fn object<'a>(path: &str, text: &'a str) -> Fields<'a> {
        Fields::of(path, parse_document(text)).unwrap()
    }

    fn message_json() -> Value {
        json!({
            "id": "m1", "sessionId": "s1", "content": "hi", "role": "user",
            "timestamp": 1_736_157_600_000_i64, "metadata": {"lang": "en"}, "x-trace": [1, 2]
        })
    }

    fn read(value: &Value) -> Result<ChatMessage, FieldError> {
        let text = value.to_string();
        read_message(object("m", &text), Layout::Contents)
    }

    fn message(session_id: &str) -> ChatMessage {
        ChatMessage {
            id: "m".into(),
            session_id: session_id.into(),
            content: "hi".into(),
            role: Role::User,
            timestamp: 1_736_157_600_000,
            metadata: None,
            extra: JsonObject::new(),
        }
    }

    #[test]
    fn consistency_check_names_the_offender() {
        let session = SessionState {
            id: "s1".into(),
            user_id: None,
            status: "ended".into(),
            created_at: 1,
            last_activity: 2,
            metadata: None,
            extra: JsonObject::new(),
        };
        let mut memory = ConversationMemory {
            session_id: "s1".into(),
            messages: vec![message("s1"), message("s1")],
            summary: String::new(),
            context: JsonObject::new(),
            extra: JsonObject::new(),
        };
        assert_eq!(check_conversation(&memory, &session), Ok(()));

        memory.messages[1].session_id = "s2".into();
        assert_eq!(
            check_conversation(&memory, &session).unwrap_err().path,
            "memory.messages[1].sessionId"
        );
        memory.messages[1].session_id = "s1".into();
        memory.messages[0].extra.insert("role".into(), json!("x"));
        assert_eq!(
            check_conversation(&memory, &session).unwrap_err().path,
            "memory.messages[0].role"
        );
        memory.messages[0].extra.clear();
        memory.messages[0].timestamp = -1;
        assert_eq!(
            check_conversation(&memory, &session).unwrap_err().path,
            "memory.messages[0].timestamp"
        );
        memory.messages[0].timestamp = 1;
        memory.session_id = "other".into();
        assert_eq!(
            check_conversation(&memory, &session).unwrap_err().path,
            "memory.sessionId"
        );
    }

    #[test]
    fn reads_a_message_and_keeps_unknown_fields_in_order() {
        let mut value = message_json();
        value["z"] = json!(null);
        value["a"] = json!({"deep": true});
        let message = read(&value).unwrap();
        assert_eq!(message.role, Role::User);
        assert_eq!(message.timestamp, 1_736_157_600_000);
        assert_eq!(
            message.metadata,
            Some(json!({"lang": "en"}).as_object().cloned().unwrap())
        );
        let keys: Vec<&str> = message.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["x-trace", "z", "a"]);
        let written = serde_json::to_value(&message).unwrap();
        assert_eq!(written["x-trace"], json!([1, 2]));
        assert_eq!(written["role"], json!("user"));
    }

    #[test]
    fn a_borrowed_message_writes_what_its_owned_message_writes() {
        let text = r#"{"id":"m\n1","sessionId":"s1","content":"say \"hi\"\n","role":"system","timestamp":5,"x":{ "f": 1.50 },"metadata":null}"#;
        let view: Message<Borrowed> = read_message(object("m", text), Layout::Contents).unwrap();
        assert_eq!(Borrowed::content_text(&view.content), "say \"hi\"\n");
        let owned: ChatMessage = read_message(object("m", text), Layout::Contents).unwrap();
        let owned = serde_json::to_string(&owned).unwrap();
        assert_eq!(serde_json::to_string(&view).unwrap(), owned);
        assert_eq!(
            owned,
            r#"{"id":"m\n1","sessionId":"s1","content":"say \"hi\"\n","role":"system","timestamp":5,"x":{"f":1.5}}"#
        );
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            ("timestamp", json!(1.5), "m.timestamp", "integer"),
            ("timestamp", json!(-1), "m.timestamp", "outside"),
            ("timestamp", json!("2025"), "m.timestamp", "integer"),
            ("role", json!("robot"), "m.role", "\"robot\""),
            ("content", json!(7), "m.content", "found number"),
            ("metadata", json!([1]), "m.metadata", "found array"),
        ];
        for (field, bad, path, needle) in cases {
            let mut value = message_json();
            value[field] = bad;
            let err = read(&value).unwrap_err();
            assert_eq!(err.path, path);
            assert!(err.reason.contains(needle), "{}", err.reason);
        }
        let mut value = message_json();
        value.as_object_mut().unwrap().remove("id");
        assert_eq!(
            read(&value).unwrap_err(),
            FieldError::new("m.id", "is missing")
        );
        let text = r#"{"id":"m","sessionId":"s","content":"\ud800","role":"user","timestamp":1}"#;
        for err in [
            read_message::<Borrowed>(object("m", text), Layout::Contents)
                .err()
                .unwrap(),
            read_message::<Owned>(object("m", text), Layout::Contents)
                .err()
                .unwrap(),
        ] {
            assert_eq!(err.path, "m.content");
        }
    }

    #[test]
    fn a_message_may_keep_its_text_in_its_parts_only_in_format_2() {
        let text = r#"{"id":"m","sessionId":"s1","role":"user","timestamp":5,"metadata":{"uiMessage":{"parts":[{"type":"text","text":"a"},{"type":"step-start"},{"type":"text","text":"b\n\nc"}]}}}"#;
        let err = read_message::<Borrowed>(object("m", text), Layout::Contents)
            .err()
            .unwrap();
        assert_eq!(err, FieldError::new("m.content", "is missing"));
        assert_eq!(
            read_message::<Owned>(object("m", text), Layout::Legacy).unwrap_err(),
            err
        );

        // Read, it is the message with its content: both forms write it with `content`.
        let view: Message<Borrowed> = read_message(object("m", text), Layout::TextInParts).unwrap();
        let owned: ChatMessage = read_message(object("m", text), Layout::TextInParts).unwrap();
        assert_eq!(owned.content, "a\n\nb\n\nc");
        assert_eq!(Borrowed::content_text(&view.content), owned.content);
        let written = serde_json::to_value(&view).unwrap();
        assert_eq!(written, serde_json::to_value(&owned).unwrap());
        assert_eq!(written["content"], "a\n\nb\n\nc");

        // A message that has its content reads as in format 1.
        let with_content = text.replace(r#""role""#, r#""content":"own","role""#);
        let owned: ChatMessage =
            read_message(object("m", &with_content), Layout::TextInParts).unwrap();
        assert_eq!(owned.content, "own");

        // Kept in its parts (as archiving UIMessages keeps it), it is not written.
        let mut view = view;
        view.content = Content::InParts("a\n\nb\n\nc".into());
        assert_eq!(Borrowed::content_text(&view.content), "a\n\nb\n\nc");
        let written = serde_json::to_value(&view).unwrap();
        assert_eq!(written.get("content"), None);
        assert_eq!(written["role"], "user");
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let mut value = message_json();
        value["metadata"] = Value::Null;
        assert_eq!(read(&value).unwrap().metadata, None);
        let text = r#"{"sessionId":"s1","messages":[],"summary":null,"context":null}"#;
        let memory: Memory<Borrowed> = read_memory(object("memory", text)).unwrap();
        assert_eq!(memory.summary, "");
        let owned: ConversationMemory = read_memory(object("memory", text)).unwrap();
        assert!(owned.context.is_empty());
        assert_eq!(memory.context.raw().get(), "{}");
    }

    #[test]
    fn caller_memory_may_not_carry_session_state() {
        let text = r#"{"sessionId":"s1","messages":[],"sessionState":{}}"#;
        let err = read_memory::<Borrowed>(object("memory", text))
            .err()
            .unwrap();
        assert_eq!(err.path, "memory.sessionState");
    }

    #[test]
    fn stored_conversation_needs_session_state_unless_legacy() {
        let text = r#"{"sessionId":"s1","messages":[],"summary":"","context":{}}"#;
        let err = read_conversation::<Borrowed>(object("conversation", text), Layout::Contents)
            .err()
            .unwrap();
        assert_eq!(
            err,
            FieldError::new("conversation.sessionState", "is missing")
        );
        let read =
            read_conversation::<Borrowed>(object("conversation", text), Layout::Legacy).unwrap();
        assert!(read.session_state.is_none());
    }

    #[test]
    fn membership_check_names_the_offender() {
        let session_text = r#"{"id":"s1","status":"ended","createdAt":1,"lastActivity":2}"#;
        let memory_text = |first: &str, second: &str| {
            format!(
                r#"{{"sessionId":"{first}","messages":[{{"id":"a","sessionId":"{first}","content":"","role":"user","timestamp":1}},{{"id":"b","sessionId":"{second}","content":"","role":"user","timestamp":1}}]}}"#
            )
        };
        let check = |text: String| {
            let memory = read_memory(object("memory", &text)).unwrap();
            let session: Session<Borrowed> = read_session(object("session", session_text)).unwrap();
            check_conversation(&memory, &session).map_err(|err| err.path)
        };
        assert_eq!(check(memory_text("s1", "s1")), Ok(()));
        assert_eq!(
            check(memory_text("s1", "s2")),
            Err("memory.messages[1].sessionId".to_owned())
        );
        assert_eq!(
            check(memory_text("other", "other")),
            Err("memory.sessionId".to_owned())
        );
    }
}
