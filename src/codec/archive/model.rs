//! The conversation types an archive holds, and the one reader that turns JSON into them.
//!
//! The same reader serves caller input (errors become `INVALID_INPUT`) and stored archives
//! (errors become `CORRUPT_DATA`): it reports a [`FieldError`] with the JSON path of the
//! offending value, and the caller picks the error kind. Fields this library does not know are
//! kept in `extra` maps and written back unchanged, so data added by newer callers survives an
//! archive round trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object: field name to value, in document order.
pub type JsonObject = Map<String, Value>;

/// The largest epoch-millisecond time JavaScript's `Date` can hold (ECMAScript's range limit).
const MAX_EPOCH_MS: i64 = 8_640_000_000_000_000;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One message of a conversation (the TypeScript `ChatMessage`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Message id, unique within its session.
    pub id: String,
    /// The session the message belongs to.
    pub session_id: String,
    /// The message text.
    pub content: String,
    /// Who wrote it.
    pub role: Role,
    /// When it was written, in epoch milliseconds.
    pub timestamp: i64,
    /// Caller-defined metadata, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The live memory of a conversation (the TypeScript `ConversationMemory`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMemory {
    /// The session this memory belongs to.
    pub session_id: String,
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// A running summary of the conversation (`""` when none).
    pub summary: String,
    /// Caller-defined context, kept verbatim (`{}` when none).
    pub context: JsonObject,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The state of a session (the TypeScript `SessionState`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    /// The session id.
    pub id: String,
    /// The user the session belongs to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Lifecycle status as the caller names it, e.g. `"active"` or `"ended"`.
    pub status: String,
    /// When the session started, in epoch milliseconds.
    pub created_at: i64,
    /// When the session last saw activity, in epoch milliseconds.
    pub last_activity: i64,
    /// Caller-defined metadata, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    /// Fields this library does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The conversation stored in an archive: the memory's fields plus `sessionState`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedConversation {
    /// The conversation memory, its fields flattened into the same JSON object.
    #[serde(flatten)]
    pub memory: ConversationMemory,
    /// The session as it was when archived; `None` only in legacy archives that lack it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_state: Option<SessionState>,
}

/// The field names of [`ChatMessage`] (an `extra` map must not repeat them).
const MESSAGE_FIELDS: [&str; 6] = [
    "id",
    "sessionId",
    "content",
    "role",
    "timestamp",
    "metadata",
];
/// The field names of an [`ArchivedConversation`] object.
const CONVERSATION_FIELDS: [&str; 5] = [
    "sessionId",
    "messages",
    "summary",
    "context",
    "sessionState",
];
/// The field names of [`SessionState`].
const SESSION_FIELDS: [&str; 6] = [
    "id",
    "userId",
    "status",
    "createdAt",
    "lastActivity",
    "metadata",
];

/// What is wrong with one value of a JSON document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the value, e.g. `memory.messages[3].timestamp`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The JSON type name of `value`, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads the fields of one JSON object, removing each as it is read so that what remains is
/// the object's unknown fields, in their original order.
pub struct ObjectReader {
    path: String,
    fields: JsonObject,
}

impl ObjectReader {
    /// Starts reading `value`, which must be an object; `path` names it in errors.
    pub fn new(path: impl Into<String>, value: Value) -> Result<Self, FieldError> {
        let path = path.into();
        match value {
            Value::Object(fields) => Ok(Self { path, fields }),
            other => Err(FieldError::new(
                path,
                format!("must be an object, found {}", kind(&other)),
            )),
        }
    }

    /// The path of field `name` of this object (just `name` at the document root, whose path
    /// is empty).
    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Removes field `name`; an explicit `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.fields
            .shift_remove(name)
            .filter(|value| !value.is_null())
    }

    /// Removes field `name` and checks that it is absent (this library writes it itself).
    pub fn refuse(&mut self, name: &str, why: &str) -> Result<(), FieldError> {
        match self.take(name) {
            Some(_) => Err(FieldError::new(self.path_of(name), why)),
            None => Ok(()),
        }
    }

    /// A required field.
    pub fn required(&mut self, name: &str) -> Result<Value, FieldError> {
        self.take(name)
            .ok_or_else(|| FieldError::new(self.path_of(name), "is missing"))
    }

    /// A required string.
    pub fn string(&mut self, name: &str) -> Result<String, FieldError> {
        let value = self.required(name)?;
        self.as_string(name, value)
    }

    /// An optional string (`null` counts as absent).
    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, FieldError> {
        self.take(name)
            .map(|value| self.as_string(name, value))
            .transpose()
    }

    fn as_string(&self, name: &str, value: Value) -> Result<String, FieldError> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(FieldError::new(
                self.path_of(name),
                format!("must be a string, found {}", kind(&other)),
            )),
        }
    }

    /// A required non-negative integer.
    pub fn count(&mut self, name: &str) -> Result<u64, FieldError> {
        self.optional_count(name)?
            .ok_or_else(|| FieldError::new(self.path_of(name), "is missing"))
    }

    /// An optional non-negative integer (`null` counts as absent).
    pub fn optional_count(&mut self, name: &str) -> Result<Option<u64>, FieldError> {
        self.take(name)
            .map(|value| {
                value.as_u64().ok_or_else(|| {
                    FieldError::new(
                        self.path_of(name),
                        format!("must be a non-negative integer, found {value}"),
                    )
                })
            })
            .transpose()
    }

    /// A required integer (which may be negative).
    pub fn integer(&mut self, name: &str) -> Result<i64, FieldError> {
        let value = self.required(name)?;
        value.as_i64().ok_or_else(|| {
            FieldError::new(
                self.path_of(name),
                format!("must be an integer, found {value}"),
            )
        })
    }

    /// A required time in epoch milliseconds (an integer JavaScript's `Date` can hold).
    pub fn epoch_ms(&mut self, name: &str) -> Result<i64, FieldError> {
        let value = self.required(name)?;
        let path = self.path_of(name);
        let ms = value.as_i64().ok_or_else(|| {
            FieldError::new(
                &path,
                format!("must be an integer number of epoch milliseconds, found {value}"),
            )
        })?;
        check_epoch_ms(&path, ms)?;
        Ok(ms)
    }

    /// A required object.
    pub fn object(&mut self, name: &str) -> Result<JsonObject, FieldError> {
        let value = self.required(name)?;
        self.as_object(name, value)
    }

    /// An optional object (`null` counts as absent).
    pub fn optional_object(&mut self, name: &str) -> Result<Option<JsonObject>, FieldError> {
        self.take(name)
            .map(|value| self.as_object(name, value))
            .transpose()
    }

    fn as_object(&self, name: &str, value: Value) -> Result<JsonObject, FieldError> {
        match value {
            Value::Object(fields) => Ok(fields),
            other => Err(FieldError::new(
                self.path_of(name),
                format!("must be an object, found {}", kind(&other)),
            )),
        }
    }

    /// A required array.
    pub fn array(&mut self, name: &str) -> Result<Vec<Value>, FieldError> {
        match self.required(name)? {
            Value::Array(items) => Ok(items),
            other => Err(FieldError::new(
                self.path_of(name),
                format!("must be an array, found {}", kind(&other)),
            )),
        }
    }

    /// A required array of strings.
    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, FieldError> {
        let path = self.path_of(name);
        self.array(name)?
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text),
                other => Err(FieldError::new(
                    format!("{path}[{index}]"),
                    format!("must be a string, found {}", kind(&other)),
                )),
            })
            .collect()
    }

    /// The fields not read, in their original order.
    pub fn rest(self) -> JsonObject {
        self.fields
    }
}

/// Checks that `ms` is a time JavaScript's `Date` can hold and not before 1970.
pub fn check_epoch_ms(path: &str, ms: i64) -> Result<(), FieldError> {
    if (0..=MAX_EPOCH_MS).contains(&ms) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("{ms} is outside 0..={MAX_EPOCH_MS} epoch milliseconds"),
        ))
    }
}

/// Reads a [`ChatMessage`] from `value`.
pub fn read_message(path: String, value: Value) -> Result<ChatMessage, FieldError> {
    let mut reader = ObjectReader::new(path, value)?;
    let id = reader.string("id")?;
    let session_id = reader.string("sessionId")?;
    let content = reader.string("content")?;
    let role_name = reader.string("role")?;
    let role = Role::parse(&role_name).ok_or_else(|| {
        FieldError::new(
            reader.path_of("role"),
            format!("{role_name:?} is not one of \"user\", \"assistant\", \"system\""),
        )
    })?;
    let timestamp = reader.epoch_ms("timestamp")?;
    let metadata = reader.optional_object("metadata")?;
    Ok(ChatMessage {
        id,
        session_id,
        content,
        role,
        timestamp,
        metadata,
        extra: reader.rest(),
    })
}

/// Reads the memory fields of a conversation from `reader`, leaving its unknown fields in
/// `extra`; `sessionState` must have been taken out before.
fn read_memory_fields(mut reader: ObjectReader) -> Result<ConversationMemory, FieldError> {
    let session_id = reader.string("sessionId")?;
    let messages_path = reader.path_of("messages");
    let messages = reader
        .array("messages")?
        .into_iter()
        .enumerate()
        .map(|(index, item)| read_message(format!("{messages_path}[{index}]"), item))
        .collect::<Result<Vec<_>, _>>()?;
    let summary = reader.optional_string("summary")?.unwrap_or_default();
    let context = reader.optional_object("context")?.unwrap_or_default();
    Ok(ConversationMemory {
        session_id,
        messages,
        summary,
        context,
        extra: reader.rest(),
    })
}

/// Reads a [`ConversationMemory`] given by a caller. `sessionState` is refused: the archive
/// writes the session beside the memory under that name.
pub fn read_memory(path: &str, value: Value) -> Result<ConversationMemory, FieldError> {
    let mut reader = ObjectReader::new(path, value)?;
    reader.refuse(
        "sessionState",
        "is reserved: the archive stores the session under this name",
    )?;
    read_memory_fields(reader)
}

/// Reads a [`SessionState`] from `value`.
pub fn read_session(path: &str, value: Value) -> Result<SessionState, FieldError> {
    let mut reader = ObjectReader::new(path, value)?;
    let id = reader.string("id")?;
    let user_id = reader.optional_string("userId")?;
    let status = reader.string("status")?;
    let created_at = reader.epoch_ms("createdAt")?;
    let last_activity = reader.epoch_ms("lastActivity")?;
    let metadata = reader.optional_object("metadata")?;
    Ok(SessionState {
        id,
        user_id,
        status,
        created_at,
        last_activity,
        metadata,
        extra: reader.rest(),
    })
}

/// Reads a stored [`ArchivedConversation`]; `sessionState` is required unless `legacy`.
pub fn read_conversation(
    path: &str,
    value: Value,
    legacy: bool,
) -> Result<ArchivedConversation, FieldError> {
    let mut reader = ObjectReader::new(path, value)?;
    let session_fields = if legacy {
        reader.optional_object("sessionState")?
    } else {
        Some(reader.object("sessionState")?)
    };
    let session_state = session_fields
        .map(|fields| read_session(&reader.path_of("sessionState"), Value::Object(fields)))
        .transpose()?;
    Ok(ArchivedConversation {
        memory: read_memory_fields(reader)?,
        session_state,
    })
}

/// Checks that `extra` repeats none of the `known` field names (it would write them twice).
fn check_extra(path: &str, extra: &JsonObject, known: &[&str]) -> Result<(), FieldError> {
    match known.iter().find(|name| extra.contains_key(**name)) {
        Some(name) => Err(FieldError::new(
            format!("{path}.{name}"),
            "is given twice: as a field and in `extra`",
        )),
        None => Ok(()),
    }
}

/// Checks what the types alone cannot: the memory and its messages belong to the session,
/// times are representable, and no `extra` map shadows a known field. Paths start with
/// `memory` and `session`.
pub fn check_conversation(
    memory: &ConversationMemory,
    session: &SessionState,
) -> Result<(), FieldError> {
    check_epoch_ms("session.createdAt", session.created_at)?;
    check_epoch_ms("session.lastActivity", session.last_activity)?;
    check_extra("session", &session.extra, &SESSION_FIELDS)?;
    check_extra("memory", &memory.extra, &CONVERSATION_FIELDS)?;
    if memory.session_id != session.id {
        return Err(FieldError::new(
            "memory.sessionId",
            format!(
                "{:?} differs from session.id {:?}",
                memory.session_id, session.id
            ),
        ));
    }
    for (index, message) in memory.messages.iter().enumerate() {
        let path = format!("memory.messages[{index}]");
        if message.session_id != memory.session_id {
            return Err(FieldError::new(
                format!("{path}.sessionId"),
                format!(
                    "{:?} differs from memory.sessionId {:?}",
                    message.session_id, memory.session_id
                ),
            ));
        }
        check_epoch_ms(&format!("{path}.timestamp"), message.timestamp)?;
        check_extra(&path, &message.extra, &MESSAGE_FIELDS)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    fn message_json() -> Value {
        json!({
            "id": "m1", "sessionId": "s1", "content": "hi", "role": "user",
            "timestamp": 1_736_157_600_000_i64, "metadata": {"lang": "en"}, "x-trace": [1, 2]
        })
    }

    #[test]
    fn reads_a_message_and_keeps_unknown_fields_in_order() {
        let mut value = message_json();
        value["z"] = json!(null);
        value["a"] = json!({"deep": true});
        let message = read_message("m".into(), value).unwrap();
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
            let err = read_message("m".into(), value).unwrap_err();
            assert_eq!(err.path, path);
            assert!(err.reason.contains(needle), "{}", err.reason);
        }
        let mut value = message_json();
        value.as_object_mut().unwrap().remove("id");
        assert_eq!(
            read_message("m".into(), value).unwrap_err(),
            FieldError::new("m.id", "is missing")
        );
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let mut value = message_json();
        value["metadata"] = Value::Null;
        assert_eq!(read_message("m".into(), value).unwrap().metadata, None);
        let memory = read_memory(
            "memory",
            json!({"sessionId": "s1", "messages": [], "summary": null, "context": null}),
        )
        .unwrap();
        assert_eq!(memory.summary, "");
        assert!(memory.context.is_empty());
    }

    #[test]
    fn caller_memory_may_not_carry_session_state() {
        let err = read_memory(
            "memory",
            json!({"sessionId": "s1", "messages": [], "sessionState": {}}),
        )
        .unwrap_err();
        assert_eq!(err.path, "memory.sessionState");
    }

    #[test]
    fn stored_conversation_needs_session_state_unless_legacy() {
        let conversation = json!({"sessionId": "s1", "messages": [], "summary": "", "context": {}});
        let err = read_conversation("conversation", conversation.clone(), false).unwrap_err();
        assert_eq!(
            err,
            FieldError::new("conversation.sessionState", "is missing")
        );
        let legacy = read_conversation("conversation", conversation, true).unwrap();
        assert_eq!(legacy.session_state, None);
    }

    #[test]
    fn consistency_check_names_the_offender() {
        let session = read_session(
            "session",
            json!({"id": "s1", "status": "ended", "createdAt": 1, "lastActivity": 2}),
        )
        .unwrap();
        let mut memory = read_memory(
            "memory",
            json!({"sessionId": "s1", "messages": [message_json(), message_json()]}),
        )
        .unwrap();
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
        memory.session_id = "other".into();
        assert_eq!(
            check_conversation(&memory, &session).unwrap_err().path,
            "memory.sessionId"
        );
    }
}
