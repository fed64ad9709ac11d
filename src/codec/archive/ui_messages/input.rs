//! A caller's UIMessages, read and checked as the conversation their archive holds.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::model::{
    check_epoch_ms, read_role, Borrowed, Content, JsonObject, KeptFields, Memory, Message, Session,
};
use super::super::text_parts::text_of_parts;
use super::super::{check_input, ConversationInput};
use super::UI_SESSION_STATUS;
use crate::codec::fields::{
    not_json, object_items, parse_item, parse_str, to_verbatim, verbatim, Conventions, FieldError,
    Fields, Kind,
};
use crate::error::{PersistenceError, Result};
use crate::keys::{SessionId, UserId};
use crate::time;

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
/// metadata gives a time; the message and that time. Its content is the text of its parts,
/// which keep it ([`Content::InParts`]).
fn read_ui_message<'a>(
    mut fields: Fields<'a>,
    session_id: &'a str,
    now_ms: i64,
) -> std::result::Result<(Message<Borrowed<'a>>, Option<i64>), FieldError> {
    let id = fields.string("id")?;
    let role = fields.convert("role", Kind::String, read_role)?;
    // Named only in errors: built when one is.
    let path = fields.path().to_owned();
    let parts_path = || format!("{path}.parts");
    let kept = KeptFields(fields.rest(verbatim)?);
    let member = |name: &str| {
        kept.0
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.raw())
            .filter(|raw| Kind::of_raw(raw) != Kind::Null)
    };
    let parts = member("parts")
        .ok_or_else(|| FieldError::new(parts_path(), Conventions::Archive.missing()))?;
    let content = text_of_parts(parts_path, parts)?;
    let created_at = member("metadata").and_then(created_at);
    let metadata = to_verbatim(&ArchivedMetadata { ui_message: &kept })
        .map_err(|reason| FieldError::new(path.as_str(), reason))?;
    let message = Message {
        id,
        session_id: Cow::Borrowed(session_id),
        content: Content::InParts(content),
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
        // About the document's size: it holds the messages' JSON once, plus some 80 bytes a
        // message around each.
        text_len: messages_json.len(),
    })
}
