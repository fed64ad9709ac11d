//! Reading stored archives: gzip'd documents of this library and plain-JSON documents of the
//! earlier TypeScript implementation, read into the [`Borrowed`] form of the model (or the
//! [`Owned`] one when asked), and the conversation JSON of a verified archive cut out of the
//! inflated document in place. A format 2 document reads as the format 1 document it stands
//! for: each message's content is given back from its UIMessage's parts.

use std::borrow::Cow;
use std::io::{self, Write};
use std::ops::Range;

use serde::Serialize;

use super::model::{epoch_ms, read_conversation, Borrowed, Conversation, Form, Layout, Memory};
use super::model::{Owned, ReadInto, Session};
use super::ui_messages::{ui_messages_json, ui_messages_of_verified_document};
use super::{
    ArchiveMetadata, DecodedArchive, DecodedArchiveJson, FORMAT_VERSION, LEGACY_FORMAT_VERSION,
    NEWEST_FORMAT_VERSION,
};
use crate::codec::fields::{parse_item, FieldError, Fields};
use crate::codec::gzip;
use crate::error::{PersistenceError, Result};
use crate::hash;

/// How errors about stored archives name the object.
const WHAT: &str = super::ARCHIVE_NAME;

/// What a retrieval gives of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    /// The conversation: the memory's fields plus `sessionState`.
    Conversation,
    /// The messages as AI SDK UIMessages (`ui_messages_json`); a message that cannot be read
    /// as one is `CORRUPT_DATA` naming the given name (the archive's key).
    UiMessages(&'a str),
}

fn stored_error(err: FieldError) -> PersistenceError {
    err.corrupt(WHAT)
}

/// Accepts only writes that continue `rest`, the text expected.
struct MatchingWriter<'t> {
    rest: &'t [u8],
}

impl Write for MatchingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) => {
                self.rest = rest;
                Ok(buf.len())
            }
            None => Err(io::Error::other("differs from the expected text")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether serializing `value` gives exactly `expected` (compared as it is written, without
/// holding the serialized text).
fn serializes_to(value: &impl Serialize, expected: &str) -> bool {
    let mut writer = MatchingWriter {
        rest: expected.as_bytes(),
    };
    serde_json::to_writer(&mut writer, value).is_ok() && writer.rest.is_empty()
}

/// Whether `bytes` look like a plain JSON object (a legacy archive): `{` after optional
/// whitespace.
fn is_plain_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{')
}

/// The uncompressed size a gzip member's trailer declares (modulo 2^32, as gzip stores it).
fn gzip_declared_size(bytes: &[u8]) -> Option<u64> {
    let trailer = bytes.get(bytes.len().checked_sub(4)?..)?;
    Some(u64::from(u32::from_le_bytes(trailer.try_into().ok()?)))
}

/// The text of the document inside `stored` (see [`unwrap_document`]) and the SHA-256 of
/// `stored`: verified against `expected_sha256` when given (`CHECKSUM_MISMATCH`), computed
/// otherwise.
fn open_stored<'s>(
    stored: &'s [u8],
    expected_sha256: Option<&str>,
    max_archive_size: u64,
) -> Result<(Cow<'s, str>, String)> {
    let sha256 = match expected_sha256 {
        Some(expected) => {
            hash::verify_sha256(WHAT, stored, expected)?;
            expected.to_ascii_lowercase()
        }
        None => hash::sha256_hex(stored),
    };
    let document = unwrap_document(stored, expected_sha256.is_some(), max_archive_size)?;
    Ok((document_text(document)?, sha256))
}

/// A stored document read in form `F`.
struct StoredDocument<'a, F: Form> {
    metadata: ArchiveMetadata,
    conversation: Conversation<Memory<F>, Session<F>>,
    /// The text of the `conversation` member.
    conversation_text: &'a str,
}

/// The document's text; an owned document keeps its buffer.
fn document_text(document: Cow<'_, [u8]>) -> Result<Cow<'_, str>> {
    let not_text =
        |err: std::str::Utf8Error| PersistenceError::corrupt(WHAT, format!("JSON: {err}"));
    match document {
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|err| not_text(err.utf8_error())),
        Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(not_text),
    }
}

/// Reads the `metadata` member of a stored document (`document_size` bytes, stored as
/// `stored_size` bytes with checksum `sha256`).
pub(super) fn read_document_metadata(
    mut fields: Fields<'_>,
    format_version: u32,
    document_size: usize,
    stored_size: u64,
    sha256: String,
) -> Result<ArchiveMetadata, FieldError> {
    let legacy = format_version == LEGACY_FORMAT_VERSION;
    Ok(ArchiveMetadata {
        session_id: fields.string("sessionId")?.into_owned(),
        user_id: fields.optional_string("userId")?.map(Cow::into_owned),
        archived_at: epoch_ms(&mut fields, "archivedAt")?,
        message_count: fields.count("messageCount")?,
        summary: fields
            .optional_string("summary")?
            .map(Cow::into_owned)
            .unwrap_or_default(),
        topics: fields
            .strings("topics")?
            .into_iter()
            .map(Cow::into_owned)
            .collect(),
        // The earlier implementation did not clamp a backwards clock.
        duration: if legacy {
            u64::try_from(fields.number::<i64>("duration", "an integer")?).unwrap_or(0)
        } else {
            fields.count("duration")?
        },
        raw_size: document_size as u64,
        stored_size,
        sha256,
        format_version,
        encrypted_summary: None,
    })
}

/// The members of a stored document and its format version.
fn open_document(document: &str) -> Result<(Fields<'_>, u32)> {
    let item = parse_item(document)
        .map_err(|err| PersistenceError::corrupt(WHAT, format!("JSON: {err}")))?;
    let mut fields = Fields::from_item("", item).map_err(stored_error)?;
    let format_version = read_format_version(&mut fields)?;
    Ok((fields, format_version))
}

/// Reads the document inside a stored archive (see [`decode_archive`] for what is checked).
fn read_stored_document<'a, F: ReadInto<'a>>(
    document: &'a str,
    stored_size: u64,
    sha256: String,
) -> Result<StoredDocument<'a, F>> {
    let (fields, format_version) = open_document(document)?;
    let layout = match format_version {
        LEGACY_FORMAT_VERSION => Layout::Legacy,
        FORMAT_VERSION => Layout::Contents,
        _ => Layout::TextInParts,
    };

    let read = |mut fields: Fields<'a>| -> Result<StoredDocument<'a, F>, FieldError> {
        let metadata_raw = fields.object("metadata")?;
        let conversation_raw = fields.required("conversation")?;
        let conversation =
            read_conversation(Fields::of("conversation", conversation_raw)?, layout)?;
        let metadata = read_document_metadata(
            Fields::of("metadata", metadata_raw)?,
            format_version,
            document.len(),
            stored_size,
            sha256,
        )?;
        let (memory, session) = (&conversation.memory, conversation.session_state.as_ref());
        let session_ids =
            session.map(|session: &Session<F>| (&*session.id, session.user_id.as_deref()));
        check_identity(&metadata, &memory.session_id, session_ids)?;
        if metadata.message_count != memory.messages.len() as u64 {
            return Err(FieldError::new(
                "metadata.messageCount",
                format!(
                    "{} differs from the {} messages of the conversation",
                    metadata.message_count,
                    memory.messages.len()
                ),
            ));
        }
        Ok(StoredDocument {
            metadata,
            conversation,
            conversation_text: conversation_raw.get(),
        })
    };
    read(fields).map_err(stored_error)
}

/// Reads a document whose stored bytes passed their checksum, if it is of format 1: its
/// metadata and where its `conversation` member lies. `None` for other formats, which
/// [`read_stored_document`] converts (a format 2 conversation is not stored as it reads).
///
/// The checksum proves these are the bytes written beside it, and the writers of this format
/// (the encoder, and restore after checking a backup in full) check the messages first; so the
/// messages are not read one by one and re-serialized again. What identifies the conversation
/// is still checked against the metadata: its `sessionId`, and its session's `id` and
/// `userId`, read from the conversation's members (which also proves the document is JSON).
fn read_checksummed_document<'a>(
    document: &'a str,
    stored_size: u64,
    sha256: String,
) -> Result<Option<(ArchiveMetadata, Range<usize>)>> {
    let (mut fields, format_version) = open_document(document)?;
    if format_version != FORMAT_VERSION {
        return Ok(None);
    }
    let read = |fields: &mut Fields<'a>| -> Result<(ArchiveMetadata, &'a str), FieldError> {
        let metadata_fields = fields.fields("metadata")?;
        let conversation_raw = fields.object("conversation")?;
        let metadata = read_document_metadata(
            metadata_fields,
            format_version,
            document.len(),
            stored_size,
            sha256,
        )?;
        let mut conversation = Fields::of("conversation", conversation_raw)?;
        let session_id = conversation.string("sessionId")?;
        let mut session = conversation.fields("sessionState")?;
        let id = session.string("id")?;
        let user_id = session.optional_string("userId")?;
        check_identity(&metadata, &session_id, Some((&id, user_id.as_deref())))?;
        Ok((metadata, conversation_raw.get()))
    };
    let (metadata, conversation_text) = read(&mut fields).map_err(stored_error)?;
    let range = range_within(document, conversation_text).ok_or_else(|| {
        PersistenceError::corrupt(WHAT, "conversation: not a slice of the document")
    })?;
    Ok(Some((metadata, range)))
}

/// Decodes a stored archive: gzip'd (this library) or plain JSON (the earlier TypeScript
/// implementation).
///
/// With `expected_sha256`, the stored bytes are verified first (`CHECKSUM_MISMATCH`).
/// A document larger than `max_archive_size` bytes fails with `ARCHIVE_TOO_LARGE` when that is
/// known before inflating (plain JSON, or a verified gzip trailer); otherwise inflating stops
/// at the limit with `CORRUPT_DATA`. A `formatVersion` newer than [`NEWEST_FORMAT_VERSION`]
/// fails with `UNSUPPORTED_FORMAT`; bytes that are not an archive, and metadata that disagrees
/// with the conversation (sessionId, userId, messageCount), with `CORRUPT_DATA`.
pub fn decode_archive(
    stored: &[u8],
    expected_sha256: Option<&str>,
    max_archive_size: u64,
) -> Result<DecodedArchive> {
    let (document, sha256) = open_stored(stored, expected_sha256, max_archive_size)?;
    let read = read_stored_document::<Owned>(&document, stored.len() as u64, sha256)?;
    Ok(DecodedArchive {
        metadata: read.metadata,
        conversation: read.conversation,
    })
}

/// [`decode_archive`], with the conversation as the JSON text
/// [`super::conversation_to_json`] writes for it. For archives this library wrote, that text
/// is the stored `conversation` member itself, cut out of the inflated document without
/// another copy.
///
/// With `expected_sha256`, an archive this library wrote is trusted to hold what the encoder
/// wrote (see `read_checksummed_document` and `ui_messages::stored`): its messages are not read
/// one by one, so the conversation checks of [`decode_archive`] apply only to unverified and
/// older archives.
pub fn decode_archive_json(
    stored: &[u8],
    expected_sha256: Option<&str>,
    max_archive_size: u64,
    view: View<'_>,
) -> Result<DecodedArchiveJson> {
    let verified = expected_sha256.is_some();
    let (document, sha256) = open_stored(stored, expected_sha256, max_archive_size)?;
    decode_document_view(document, stored.len() as u64, sha256, verified, view)
}

/// [`decode_archive_json`] of stored bytes whose SHA-256, `sha256`, the caller verified
/// against the recorded one (hashing them where it is cheapest, `hash::sha256_hex_of_object`).
pub fn decode_verified_archive_json(
    stored: &[u8],
    sha256: &str,
    max_archive_size: u64,
    view: View<'_>,
) -> Result<DecodedArchiveJson> {
    let document = document_text(unwrap_document(stored, true, max_archive_size)?)?;
    let sha256 = sha256.to_ascii_lowercase();
    decode_document_view(document, stored.len() as u64, sha256, true, view)
}

/// [`decode_archive_json`] of an encrypted archive: `gzipped` is what its stored bytes
/// (`stored_size` of them, whose SHA-256 `sha256` the caller verified before decrypting)
/// decrypted to. Trusted like any verified archive: authenticated decryption proves these
/// are the bytes the encoder wrote.
pub fn decode_decrypted_archive_json(
    gzipped: &[u8],
    stored_size: u64,
    sha256: &str,
    max_archive_size: u64,
    view: View<'_>,
) -> Result<DecodedArchiveJson> {
    if !gzip::is_gzip(gzipped) {
        return Err(PersistenceError::corrupt(
            WHAT,
            "decrypted bytes are not gzip",
        ));
    }
    let document = document_text(unwrap_document(gzipped, true, max_archive_size)?)?;
    let sha256 = sha256.to_ascii_lowercase();
    decode_document_view(document, stored_size, sha256, true, view)
}

/// A document read from `stored_size` stored bytes with checksum `sha256` (`verified`: checked
/// against a recorded one) in `view`.
fn decode_document_view(
    document: Cow<'_, str>,
    stored_size: u64,
    sha256: String,
    verified: bool,
    view: View<'_>,
) -> Result<DecodedArchiveJson> {
    let View::UiMessages(what) = view else {
        return decode_document_json(document, stored_size, sha256, verified);
    };
    if verified {
        if let Some((metadata, json)) =
            ui_messages_of_verified_document(&document, stored_size, &sha256)
        {
            return Ok(DecodedArchiveJson { metadata, json });
        }
    }
    let decoded = decode_document_json(document, stored_size, sha256, verified)?;
    Ok(DecodedArchiveJson {
        json: ui_messages_json(&decoded.json, what)?,
        metadata: decoded.metadata,
    })
}

/// The conversation of a document read from `stored_size` stored bytes with checksum `sha256`
/// (`verified`: checked against a recorded one).
fn decode_document_json(
    document: Cow<'_, str>,
    stored_size: u64,
    sha256: String,
    verified: bool,
) -> Result<DecodedArchiveJson> {
    if verified {
        if let Some((metadata, range)) =
            read_checksummed_document(&document, stored_size, sha256.clone())?
        {
            return Ok(DecodedArchiveJson {
                metadata,
                json: cut_out(document, range),
            });
        }
    }
    let (metadata, conversation) = {
        let read = read_stored_document::<Borrowed>(&document, stored_size, sha256)?;
        let stored_text = read.conversation_text;
        let in_place = serializes_to(&read.conversation, stored_text)
            .then(|| range_within(&document, stored_text))
            .flatten();
        let conversation = match in_place {
            Some(range) => Ok(range),
            None => Err(serde_json::to_string(&read.conversation)
                .map_err(|err| PersistenceError::corrupt(WHAT, format!("conversation: {err}")))?),
        };
        (read.metadata, conversation)
    };
    let json = match conversation {
        Ok(range) => cut_out(document, range),
        Err(text) => text,
    };
    Ok(DecodedArchiveJson { metadata, json })
}

/// Where `part`, a slice of `whole`, lies in it.
fn range_within(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    // Within `whole` and on character boundaries: that range is `part` itself (same memory),
    // so its bytes need no comparing.
    whole.get(range.clone()).map(|_| range)
}

/// The text at `range` of `document` (checked by [`range_within`]), reusing an owned
/// document's buffer.
fn cut_out(document: Cow<'_, str>, range: Range<usize>) -> String {
    match document {
        Cow::Owned(mut text) => {
            text.truncate(range.end);
            text.drain(..range.start);
            text
        }
        Cow::Borrowed(text) => text.get(range).unwrap_or_default().to_owned(),
    }
}

/// The JSON document inside stored archive bytes: inflated from gzip, or the bytes themselves
/// if they are plain JSON (legacy). `verified` says whether the bytes passed their checksum.
fn unwrap_document(stored: &[u8], verified: bool, max_archive_size: u64) -> Result<Cow<'_, [u8]>> {
    let too_large = |size: u64| PersistenceError::ArchiveTooLarge {
        size,
        limit: max_archive_size,
    };
    if is_plain_json(stored) {
        if stored.len() as u64 > max_archive_size {
            return Err(too_large(stored.len() as u64));
        }
        Ok(Cow::Borrowed(stored))
    } else if gzip::is_gzip(stored) {
        // Only a verified trailer is evidence of size; an unverified one may be corrupt.
        if let Some(size) = gzip_declared_size(stored).filter(|_| verified) {
            if size > max_archive_size {
                return Err(too_large(size));
            }
        }
        Ok(Cow::Owned(gzip::decompress(
            WHAT,
            stored,
            max_archive_size,
        )?))
    } else {
        Err(PersistenceError::corrupt(
            WHAT,
            "neither gzip (1f 8b) nor a JSON object",
        ))
    }
}

/// The document's `formatVersion`: [`LEGACY_FORMAT_VERSION`] when absent, `UNSUPPORTED_FORMAT`
/// when newer than this library.
fn read_format_version(fields: &mut Fields<'_>) -> Result<u32> {
    match fields
        .optional_number::<u64>("formatVersion", "a non-negative integer")
        .map_err(stored_error)?
    {
        None => Ok(LEGACY_FORMAT_VERSION),
        Some(version @ 1..) if version <= u64::from(NEWEST_FORMAT_VERSION) => {
            u32::try_from(version).map_err(|_| PersistenceError::UnsupportedFormat {
                what: WHAT.to_owned(),
                version,
            })
        }
        Some(0) => Err(PersistenceError::corrupt(
            WHAT,
            "formatVersion: 0 is not a format version",
        )),
        Some(version) => Err(PersistenceError::UnsupportedFormat {
            what: WHAT.to_owned(),
            version,
        }),
    }
}

/// Checks the ids that tie a conversation to its metadata: the conversation's `session_id`
/// and, when it has a session state, that session's `(id, userId)` (the user is not checked
/// in legacy archives, whose metadata may lack it).
pub(super) fn check_identity(
    metadata: &ArchiveMetadata,
    session_id: &str,
    session: Option<(&str, Option<&str>)>,
) -> Result<(), FieldError> {
    if metadata.session_id != session_id {
        return Err(FieldError::new(
            "metadata.sessionId",
            format!(
                "{:?} differs from conversation.sessionId {session_id:?}",
                metadata.session_id
            ),
        ));
    }
    let Some((id, user_id)) = session else {
        return Ok(());
    };
    if id != session_id {
        return Err(FieldError::new(
            "conversation.sessionState.id",
            format!("{id:?} differs from conversation.sessionId {session_id:?}"),
        ));
    }
    if metadata.format_version != LEGACY_FORMAT_VERSION && user_id != metadata.user_id.as_deref() {
        return Err(FieldError::new(
            "metadata.userId",
            format!(
                "{:?} differs from conversation.sessionState.userId {user_id:?}",
                metadata.user_id
            ),
        ));
    }
    Ok(())
}
