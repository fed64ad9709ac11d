//! Any archived conversation as UIMessages: the reader for every format and shape (the
//! earlier implementation's, `archiveConversation`'s, UIMessage archives of either layout),
//! over the conversation JSON a retrieval gives.

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::super::model::{read_conversation, Borrowed, Content, Layout, Role};
use super::super::text_parts::UI_MESSAGE_FIELD;
use crate::codec::fields::{not_json, verbatim, FieldError, Fields, Kind, Verbatim};
use crate::error::{PersistenceError, Result};

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
        content: &'m Content<'m>,
        metadata: Option<&'m Verbatim<'m>>,
    },
}

/// One text part, `{"type":"text","text":...}`.
#[derive(Serialize)]
struct TextPart<'t> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'t Content<'t>,
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
    let conversation = read_conversation::<Borrowed>(fields, Layout::Legacy).map_err(stored)?;
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
