//! Conversations read from JSON text without copying it: the fields this library checks are
//! parsed, everything kept verbatim (message content, metadata, context, unknown fields) stays a
//! slice of the text. The same readers serve caller input and stored archives; errors are
//! [`FieldError`]s naming the JSON path, and the caller picks the error kind.
//!
//! A view serializes exactly as the owned model types of `model` do, so an archive written
//! from a view is byte for byte the one written from the owned conversation it holds.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use super::model::{
    check_session_ids, ArchivedConversation, ChatMessage, ConversationMemory, FieldError,
    JsonObject, Role, SessionState,
};
use super::raw::{parse_str, RawObject, Verbatim};

/// Unknown fields of an object, in document order.
pub type ExtraFields<'a> = Vec<(Cow<'a, str>, Verbatim<'a>)>;

/// One message of a conversation.
pub struct MessageView<'a> {
    id: Cow<'a, str>,
    /// The session the message belongs to.
    pub session_id: Cow<'a, str>,
    /// The message text as a JSON string.
    content: Verbatim<'a>,
    role: Role,
    timestamp: i64,
    metadata: Option<Verbatim<'a>>,
    extra: ExtraFields<'a>,
}

impl MessageView<'_> {
    /// The message text (unescaped; borrowed when it has no escapes).
    pub fn text(&self) -> Result<Cow<'_, str>, serde_json::Error> {
        parse_str(&self.content)
    }
}

/// The memory fields of a conversation.
pub struct MemoryView<'a> {
    /// The session this memory belongs to.
    pub session_id: Cow<'a, str>,
    /// The messages, oldest first.
    pub messages: Vec<MessageView<'a>>,
    /// The running summary (`""` when absent).
    pub summary: Cow<'a, str>,
    context: Option<Verbatim<'a>>,
    extra: ExtraFields<'a>,
}

/// The state of a session.
pub struct SessionView<'a> {
    /// The session id.
    pub id: Cow<'a, str>,
    /// The session's user, when known.
    pub user_id: Option<Cow<'a, str>>,
    status: Cow<'a, str>,
    /// When the session started, in epoch milliseconds.
    pub created_at: i64,
    /// When the session last saw activity, in epoch milliseconds.
    pub last_activity: i64,
    metadata: Option<Verbatim<'a>>,
    extra: ExtraFields<'a>,
}

/// Reads a message.
pub fn read_message(mut reader: RawObject<'_>) -> Result<MessageView<'_>, FieldError> {
    let id = reader.string("id")?;
    let session_id = reader.string("sessionId")?;
    let content = reader.verbatim_string("content")?;
    let role_name = reader.string("role")?;
    let role = Role::parse(&role_name).ok_or_else(|| {
        FieldError::new(
            reader.path_of("role"),
            format!("role {role_name} is not user, assistant or system (found {role_name:?})"),
        )
    })?;
    let timestamp = reader.epoch_ms("timestamp")?;
    let metadata = reader.optional_verbatim_object("metadata")?;
    Ok(MessageView {
        id,
        session_id,
        content,
        role,
        timestamp,
        metadata,
        extra: reader.rest()?,
    })
}

/// Reads the memory fields of a conversation from `reader`, leaving its unknown fields in
/// `extra`; `sessionState` must have been taken out before.
fn read_memory_fields(mut reader: RawObject<'_>) -> Result<MemoryView<'_>, FieldError> {
    let session_id = reader.string("sessionId")?;
    let messages = reader.object_items("messages", read_message)?;
    let summary = reader.optional_string("summary")?.unwrap_or_default();
    let context = reader.optional_verbatim_object("context")?;
    Ok(MemoryView {
        session_id,
        messages,
        summary,
        context,
        extra: reader.rest()?,
    })
}

/// Reads a conversation memory given by a caller. `sessionState` is refused: the archive writes
/// the session beside the memory under that name.
pub fn read_memory(mut reader: RawObject<'_>) -> Result<MemoryView<'_>, FieldError> {
    reader.refuse(
        "sessionState",
        "is reserved: the archive stores the session under this name",
    )?;
    read_memory_fields(reader)
}

/// Reads a session state.
pub fn read_session(mut reader: RawObject<'_>) -> Result<SessionView<'_>, FieldError> {
    let id = reader.string("id")?;
    let user_id = reader.optional_string("userId")?;
    let status = reader.string("status")?;
    let created_at = reader.epoch_ms("createdAt")?;
    let last_activity = reader.epoch_ms("lastActivity")?;
    let metadata = reader.optional_verbatim_object("metadata")?;
    Ok(SessionView {
        id,
        user_id,
        status,
        created_at,
        last_activity,
        metadata,
        extra: reader.rest()?,
    })
}

/// Reads a stored conversation: its memory and its `sessionState`, which is required unless
/// `legacy`.
pub fn read_conversation<'a>(
    path: &str,
    raw: &'a RawValue,
    legacy: bool,
) -> Result<(MemoryView<'a>, Option<SessionView<'a>>), FieldError> {
    let mut reader = RawObject::new(path, raw)?;
    let session_raw = if legacy {
        reader.optional_object("sessionState")?
    } else {
        Some(reader.object("sessionState")?)
    };
    let session = session_raw
        .map(|raw| read_session(RawObject::new(reader.path_of("sessionState"), raw)?))
        .transpose()?;
    Ok((read_memory_fields(reader)?, session))
}

/// Checks that the memory and its messages belong to the session (paths start with `memory`).
pub fn check_membership(memory: &MemoryView, session: &SessionView) -> Result<(), FieldError> {
    check_session_ids(
        &session.id,
        &memory.session_id,
        memory.messages.iter().map(|message| &*message.session_id),
    )
}

/// A conversation as archives store it: the memory's fields, then `sessionState`.
pub struct ConversationView<'v, 'a> {
    /// The memory.
    pub memory: &'v MemoryView<'a>,
    /// The session; `None` only in legacy archives that lack it.
    pub session: Option<&'v SessionView<'a>>,
}

fn serialize_extra<M: SerializeMap>(map: &mut M, extra: &ExtraFields) -> Result<(), M::Error> {
    extra
        .iter()
        .try_for_each(|(name, value)| map.serialize_entry(name, value))
}

impl Serialize for MessageView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("sessionId", &self.session_id)?;
        map.serialize_entry("content", &self.content)?;
        map.serialize_entry("role", &self.role)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        if let Some(metadata) = &self.metadata {
            map.serialize_entry("metadata", metadata)?;
        }
        serialize_extra(&mut map, &self.extra)?;
        map.end()
    }
}

impl Serialize for SessionView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if let Some(user_id) = &self.user_id {
            map.serialize_entry("userId", user_id)?;
        }
        map.serialize_entry("status", &self.status)?;
        map.serialize_entry("createdAt", &self.created_at)?;
        map.serialize_entry("lastActivity", &self.last_activity)?;
        if let Some(metadata) = &self.metadata {
            map.serialize_entry("metadata", metadata)?;
        }
        serialize_extra(&mut map, &self.extra)?;
        map.end()
    }
}

impl Serialize for ConversationView<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let memory = self.memory;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("sessionId", &memory.session_id)?;
        map.serialize_entry("messages", &memory.messages)?;
        map.serialize_entry("summary", &memory.summary)?;
        match &memory.context {
            Some(context) => map.serialize_entry("context", context)?,
            None => map.serialize_entry("context", &JsonObject::new())?,
        }
        serialize_extra(&mut map, &memory.extra)?;
        if let Some(session) = self.session {
            map.serialize_entry("sessionState", session)?;
        }
        map.end()
    }
}

fn object_of(raw: Option<&Verbatim>) -> Result<Option<JsonObject>, serde_json::Error> {
    raw.map(|raw| serde_json::from_str(raw.get())).transpose()
}

fn extra_of(extra: &ExtraFields) -> Result<JsonObject, serde_json::Error> {
    extra
        .iter()
        .map(|(name, value)| {
            let value: serde_json::Value = serde_json::from_str(value.get())?;
            Ok((name.clone().into_owned(), value))
        })
        .collect()
}

impl MessageView<'_> {
    /// The owned message.
    pub fn to_message(&self) -> Result<ChatMessage, serde_json::Error> {
        Ok(ChatMessage {
            id: self.id.clone().into_owned(),
            session_id: self.session_id.clone().into_owned(),
            content: self.text()?.into_owned(),
            role: self.role,
            timestamp: self.timestamp,
            metadata: object_of(self.metadata.as_ref())?,
            extra: extra_of(&self.extra)?,
        })
    }
}

impl MemoryView<'_> {
    /// The owned memory.
    pub fn to_memory(&self) -> Result<ConversationMemory, serde_json::Error> {
        Ok(ConversationMemory {
            session_id: self.session_id.clone().into_owned(),
            messages: self
                .messages
                .iter()
                .map(MessageView::to_message)
                .collect::<Result<_, _>>()?,
            summary: self.summary.clone().into_owned(),
            context: object_of(self.context.as_ref())?.unwrap_or_default(),
            extra: extra_of(&self.extra)?,
        })
    }
}

impl SessionView<'_> {
    /// The owned session state.
    pub fn to_session(&self) -> Result<SessionState, serde_json::Error> {
        Ok(SessionState {
            id: self.id.clone().into_owned(),
            user_id: self.user_id.clone().map(Cow::into_owned),
            status: self.status.clone().into_owned(),
            created_at: self.created_at,
            last_activity: self.last_activity,
            metadata: object_of(self.metadata.as_ref())?,
            extra: extra_of(&self.extra)?,
        })
    }
}

impl ConversationView<'_, '_> {
    /// The owned conversation.
    pub fn to_conversation(&self) -> Result<ArchivedConversation, serde_json::Error> {
        Ok(ArchivedConversation {
            memory: self.memory.to_memory()?,
            session_state: self.session.map(SessionView::to_session).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;

    fn parse_document(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    fn object<'a>(path: &str, text: &'a str) -> RawObject<'a> {
        RawObject::new(path, parse_document(text)).unwrap()
    }

    fn message_json() -> Value {
        json!({
            "id": "m1", "sessionId": "s1", "content": "hi", "role": "user",
            "timestamp": 1_736_157_600_000_i64, "metadata": {"lang": "en"}, "x-trace": [1, 2]
        })
    }

    fn read(value: &Value) -> Result<ChatMessage, FieldError> {
        let text = value.to_string();
        read_message(object("m", &text)).map(|m| m.to_message().unwrap())
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
    fn a_view_writes_what_its_owned_message_writes() {
        let text = r#"{"id":"m\n1","sessionId":"s1","content":"say \"hi\"\n","role":"system","timestamp":5,"x":{ "f": 1.50 },"metadata":null}"#;
        let view = read_message(object("m", text)).unwrap();
        assert_eq!(view.text().unwrap(), "say \"hi\"\n");
        let owned = serde_json::to_string(&view.to_message().unwrap()).unwrap();
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
        let err = read_message(object("m", text)).err().unwrap();
        assert_eq!(err.path, "m.content");
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let mut value = message_json();
        value["metadata"] = Value::Null;
        assert_eq!(read(&value).unwrap().metadata, None);
        let text = r#"{"sessionId":"s1","messages":[],"summary":null,"context":null}"#;
        let memory = read_memory(object("memory", text)).unwrap();
        assert_eq!(memory.summary, "");
        let owned = memory.to_memory().unwrap();
        assert!(owned.context.is_empty());
    }

    #[test]
    fn caller_memory_may_not_carry_session_state() {
        let text = r#"{"sessionId":"s1","messages":[],"sessionState":{}}"#;
        let err = read_memory(object("memory", text)).err().unwrap();
        assert_eq!(err.path, "memory.sessionState");
    }

    #[test]
    fn stored_conversation_needs_session_state_unless_legacy() {
        let text = r#"{"sessionId":"s1","messages":[],"summary":"","context":{}}"#;
        let raw = parse_document(text);
        let err = read_conversation("conversation", raw, false).err().unwrap();
        assert_eq!(
            err,
            FieldError::new("conversation.sessionState", "is missing")
        );
        let (_, session) = read_conversation("conversation", raw, true).unwrap();
        assert!(session.is_none());
    }

    #[test]
    fn membership_check_names_the_offender() {
        let session_text = r#"{"id":"s1","status":"ended","createdAt":1,"lastActivity":2}"#;
        let session = read_session(object("session", session_text)).unwrap();
        let memory_text = |first: &str, second: &str| {
            format!(
                r#"{{"sessionId":"{first}","messages":[{{"id":"a","sessionId":"{first}","content":"","role":"user","timestamp":1}},{{"id":"b","sessionId":"{second}","content":"","role":"user","timestamp":1}}]}}"#
            )
        };
        let check = |text: String| {
            let memory = read_memory(object("memory", &text)).unwrap();
            check_membership(&memory, &session).map_err(|err| err.path)
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
