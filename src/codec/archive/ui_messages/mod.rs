//! AI SDK `UIMessage` conversations as archives of the one kind (docs/FORMAT.md, "UIMessage
//! conversations"): a second shape of conversation over the same document, keys and indexes.
//!
//! Each UIMessage `{id, role, parts, metadata?, ...}` becomes one message of the archive:
//! `{id, sessionId, role, timestamp, metadata: {"uiMessage": {parts, metadata?, ...}}}`.
//! `metadata.uiMessage` holds every member of the UIMessage but `id` and `role`, verbatim and
//! in order, so it comes back as it was given. The message's `content`, the text of its `text`
//! parts (`text_parts`), is what topics are found in and what readers that know nothing of
//! UIMessages see; the document does not store it a second time beside the parts, but leaves
//! it out, which makes it a document of format 2 (`model::Content::InParts`): a reader of
//! format 1 refuses it rather than read messages without their text, and this library's
//! readers give the content back from the parts (`model::Layout::TextInParts`). Archives
//! written before, with the text in both places (format 1), read as they always did.
//!
//! Only what the archive reads is checked: an array of objects with a string `id`, a known
//! `role` and an array `parts` of objects with a string `type`, and a string `text` in `text`
//! and `reasoning` parts. Everything else (tool states, part types and fields the AI SDK adds
//! later, metadata of any JSON type) is kept as given, never refused.
//!
//! Reading: `output` gives any archived conversation as UIMessages; `stored` does the same in
//! one pass over a verified format 2 document, the layout this library writes.

mod input;
mod output;
mod stored;

pub use input::read_ui_messages_input;
pub use output::ui_messages_json;
pub(super) use stored::ui_messages_of_verified_document;

/// The `status` of the session state archived with UIMessages.
pub const UI_SESSION_STATUS: &str = "archived";

#[cfg(test)]
mod tests;
