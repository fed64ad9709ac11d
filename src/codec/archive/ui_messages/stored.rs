//! The UIMessages of a verified format 2 document, read in one pass.
//!
//! Retrieving a UIMessage archive is its hot path. The general reader (`output`) takes the
//! conversation JSON cut out of the document and parses each message, then its metadata, then
//! its UIMessage, every level scanning the parts again, and writes every value anew. Here
//! serde_json reads the document once, descending only as far as each UIMessage's members,
//! whose JSON text is copied to the output as it stands.
//!
//! Only for a document whose checksum was verified and whose `formatVersion` is 2: this
//! library's encoder wrote it, so its values are already in the form the general reader would
//! write them in (`verbatim`), and its messages and parts were checked when they were archived
//! (the trust `decode`'s fast path puts in a verified document of format 1: neither reads the
//! messages' other members, nor the parts). Whatever else it meets that the encoder does not
//! write (another format, a message that is no archived UIMessage, metadata besides
//! `uiMessage`, a repeated member, ids or a count that disagree with the metadata, JSON it
//! cannot read) gives `None`, and the caller takes the general path, which reads the document
//! or says what is wrong with it. So for a document this reader takes, the general reader
//! gives the same UIMessages: the same text when its values are written as the encoder writes
//! them, the same JSON values otherwise (a hand-made document's whitespace is copied).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::super::decode::{check_identity, read_document_metadata};
use super::super::text_parts::UI_MESSAGE_FIELD;
use super::super::{ArchiveMetadata, TEXT_IN_PARTS_FORMAT_VERSION};
use crate::codec::fields::{CowStr, Fields};

/// What stops the pass: the document is not one this reader takes (see the module docs).
fn not_taken<E: de::Error>() -> E {
    E::custom("not a document of the form this reader takes")
}

/// The metadata and the UIMessages (the JSON text of an array) of `document`, a format 2
/// document whose stored bytes (`stored_size` of them, with SHA-256 `sha256`) were verified;
/// `None` for anything it does not take (see the module docs).
pub fn ui_messages_of_verified_document(
    document: &str,
    stored_size: u64,
    sha256: &str,
) -> Option<(ArchiveMetadata, String)> {
    let mut out = String::with_capacity(document.len());
    let mut deserializer = serde_json::Deserializer::from_str(document);
    let read = DocumentSeed { out: &mut out }
        .deserialize(&mut deserializer)
        .ok()?;
    deserializer.end().ok()?;
    let version = read
        .format_version
        .filter(|version| *version == u64::from(TEXT_IN_PARTS_FORMAT_VERSION))?;
    let version = u32::try_from(version).ok()?;
    let metadata = read_document_metadata(
        Fields::of("metadata", read.metadata?).ok()?,
        version,
        document.len(),
        stored_size,
        sha256.to_ascii_lowercase(),
    )
    .ok()?;
    let conversation = read.conversation?;
    let mut session = Fields::of("sessionState", conversation.session_state?).ok()?;
    let id = session.string("id").ok()?;
    let user_id = session.optional_string("userId").ok()?;
    let session_id = conversation.session_id?;
    check_identity(&metadata, &session_id, Some((&id, user_id.as_deref()))).ok()?;
    let count = conversation.messages?;
    (metadata.message_count == count as u64).then_some((metadata, out))
}

/// The members of the document this reader uses.
#[derive(Default)]
struct ReadDocument<'de> {
    format_version: Option<u64>,
    metadata: Option<&'de RawValue>,
    conversation: Option<ReadConversation<'de>>,
}

/// The members of the conversation this reader uses; the messages were written out.
#[derive(Default)]
struct ReadConversation<'de> {
    session_id: Option<Cow<'de, str>>,
    /// How many messages were written.
    messages: Option<usize>,
    session_state: Option<&'de RawValue>,
}

/// Sets `slot` to `value`, unless a repeated member already did.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    match slot {
        Some(_) => Err(not_taken()),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Reads the document, writing the UIMessages of its conversation to `out`.
struct DocumentSeed<'o> {
    out: &'o mut String,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = ReadDocument<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = ReadDocument<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an archive document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = ReadDocument::default();
        while let Some(CowStr(name)) = map.next_key()? {
            match &*name {
                "formatVersion" => set_once(&mut read.format_version, map.next_value()?)?,
                "metadata" => set_once(&mut read.metadata, map.next_value()?)?,
                "conversation" => {
                    if read.conversation.is_some() {
                        return Err(not_taken());
                    }
                    let seed = ConversationSeed {
                        out: &mut *self.out,
                    };
                    read.conversation = Some(map.next_value_seed(seed)?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(read)
    }
}

/// Reads the conversation, writing its messages' UIMessages to `out`.
struct ConversationSeed<'o> {
    out: &'o mut String,
}

impl<'de> DeserializeSeed<'de> for ConversationSeed<'_> {
    type Value = ReadConversation<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConversationSeed<'_> {
    type Value = ReadConversation<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a conversation")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = ReadConversation::default();
        while let Some(CowStr(name)) = map.next_key()? {
            match &*name {
                "sessionId" => {
                    let CowStr(session_id) = map.next_value()?;
                    set_once(&mut read.session_id, session_id)?;
                }
                "messages" => {
                    if read.messages.is_some() {
                        return Err(not_taken());
                    }
                    let seed = MessagesSeed {
                        out: &mut *self.out,
                    };
                    read.messages = Some(map.next_value_seed(seed)?);
                }
                "sessionState" => set_once(&mut read.session_state, map.next_value()?)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(read)
    }
}

/// Writes the UIMessages of the messages, as a JSON array, to `out`; their number.
struct MessagesSeed<'o> {
    out: &'o mut String,
}

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.out.push('[');
        let mut count = 0_usize;
        while let Some(message) = seq.next_element::<ReadMessage<'de>>()? {
            if count > 0 {
                self.out.push(',');
            }
            message.write(self.out)?;
            count += 1;
        }
        self.out.push(']');
        Ok(count)
    }
}

/// The members of an archived UIMessage's message this reader uses.
#[derive(Default)]
struct ReadMessage<'de> {
    id: Option<&'de RawValue>,
    role: Option<&'de RawValue>,
    /// The members of its `metadata.uiMessage`.
    ui_message: Option<Vec<(Cow<'de, str>, &'de RawValue)>>,
}

/// The JSON text of the roles (as the encoder writes them).
const ROLES: [&str; 3] = [r#""user""#, r#""assistant""#, r#""system""#];

impl ReadMessage<'_> {
    /// Writes the UIMessage, `{id, role, ...metadata.uiMessage}`, as the general reader does
    /// (an `id` or `role` inside `uiMessage` is not written twice).
    fn write<E: de::Error>(&self, out: &mut String) -> Result<(), E> {
        let id = self.id.filter(|id| id.get().starts_with('"'));
        let role = self.role.filter(|role| ROLES.contains(&role.get()));
        let (Some(id), Some(role), Some(members)) = (id, role, &self.ui_message) else {
            return Err(not_taken());
        };
        out.push_str(r#"{"id":"#);
        out.push_str(id.get());
        out.push_str(r#","role":"#);
        out.push_str(role.get());
        for (name, value) in members {
            if name == "id" || name == "role" {
                continue;
            }
            out.push(',');
            push_json_string(out, name)?;
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        Ok(())
    }
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it.
fn push_json_string<E: de::Error>(out: &mut String, text: &str) -> Result<(), E> {
    if text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).map_err(|_| not_taken::<E>())?);
    }
    Ok(())
}

impl<'de> serde::Deserialize<'de> for ReadMessage<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = ReadMessage<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = ReadMessage::default();
        while let Some(CowStr(name)) = map.next_key()? {
            match &*name {
                "id" => set_once(&mut read.id, map.next_value()?)?,
                "role" => set_once(&mut read.role, map.next_value()?)?,
                "metadata" => {
                    let ArchivedMetadata(members) = map.next_value()?;
                    set_once(&mut read.ui_message, members)?;
                }
                // The content is in the parts; the rest is not part of a UIMessage.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(read)
    }
}

/// The members of the UIMessage of a message's metadata, `{"uiMessage": {..., "parts": [...]}}`
/// (nothing else, as the encoder writes it).
struct ArchivedMetadata<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> serde::Deserialize<'de> for ArchivedMetadata<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = ArchivedMetadata<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the metadata of an archived UIMessage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ui_message = None;
        while let Some(CowStr(name)) = map.next_key()? {
            if name != UI_MESSAGE_FIELD {
                return Err(not_taken());
            }
            let UiMessageMembers(members) = map.next_value()?;
            set_once(&mut ui_message, members)?;
        }
        ui_message.map(ArchivedMetadata).ok_or_else(not_taken)
    }
}

/// The members of an archived UIMessage, each as its JSON text; it has an array `parts`.
struct UiMessageMembers<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> serde::Deserialize<'de> for UiMessageMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UiMessageVisitor)
    }
}

struct UiMessageVisitor;

impl<'de> Visitor<'de> for UiMessageVisitor {
    type Value = UiMessageMembers<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an archived UIMessage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
        while let Some(CowStr(name)) = map.next_key()? {
            if members.iter().any(|(known, _)| *known == name) {
                return Err(not_taken());
            }
            let value: &'de RawValue = map.next_value()?;
            members.push((name, value));
        }
        let has_parts = members
            .iter()
            .any(|(name, value)| name == "parts" && value.get().starts_with('['));
        if has_parts {
            Ok(UiMessageMembers(members))
        } else {
            Err(not_taken())
        }
    }
}
