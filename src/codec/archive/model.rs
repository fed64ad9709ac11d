//! The owned conversation types an archive holds, and the checks on them that the types alone
//! cannot express.
//!
//! JSON is read by `view` (borrowing from the text) and converted to these types only where a
//! caller wants owned values. Fields this library does not know are kept in `extra` maps and
//! written back unchanged, so data added by newer callers survives an archive round trip.

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
    check_session_ids(
        &session.id,
        &memory.session_id,
        memory
            .messages
            .iter()
            .map(|message| message.session_id.as_str()),
    )?;
    for (index, message) in memory.messages.iter().enumerate() {
        let path = format!("memory.messages[{index}]");
        check_epoch_ms(&format!("{path}.timestamp"), message.timestamp)?;
        check_extra(&path, &message.extra, &MESSAGE_FIELDS)?;
    }
    Ok(())
}

/// Checks that a conversation is one session's: `memory.sessionId` equals `session.id`, and
/// every message's `sessionId` equals `memory.sessionId` (paths start with `memory`). Shared
/// by the owned form above and the borrowed views of `view::check_membership`.
pub fn check_session_ids<'m>(
    session_id: &str,
    memory_session_id: &str,
    message_session_ids: impl IntoIterator<Item = &'m str>,
) -> Result<(), FieldError> {
    if memory_session_id != session_id {
        return Err(FieldError::new(
            "memory.sessionId",
            format!("{memory_session_id:?} differs from session.id {session_id:?}"),
        ));
    }
    for (index, message_session_id) in message_session_ids.into_iter().enumerate() {
        if message_session_id != memory_session_id {
            return Err(FieldError::new(
                format!("memory.messages[{index}].sessionId"),
                format!(
                    "{message_session_id:?} differs from memory.sessionId {memory_session_id:?}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

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
}
