//! Writing archives: the document is serialized straight into the gzip encoder, measured on
//! the way, so the uncompressed document is never held.

use std::io::{self, BufWriter, Write};

use flate2::{write::GzEncoder, Compression};
use serde::Serialize;

use super::model::{check_epoch_ms, Conversation, ConversationMemory, Form, Memory, Session};
use super::{
    check_input, extract_topics, ArchiveMetadata, ConversationInput, EncodedArchive, SessionState,
    FORMAT_VERSION, TEXT_IN_PARTS_FORMAT_VERSION,
};
use crate::codec::gzip;
use crate::error::{PersistenceError, Result};
use crate::hash;

/// Bytes serialized before they are handed to the gzip encoder (fewer, larger deflate calls).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The `metadata` member of the stored document: the fields that do not describe the stored
/// bytes themselves (those cannot be inside the bytes they describe).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DocumentMetadata<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    archived_at: i64,
    message_count: u64,
    summary: &'a str,
    topics: &'a [String],
    duration: u64,
}

/// The stored document, in the order its members are written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a, C> {
    format_version: u32,
    metadata: DocumentMetadata<'a>,
    conversation: C,
}

/// Encodes a conversation and its session as an archive written at `archived_at_ms`,
/// gzip'd at `level` (0–9; [`gzip::DEFAULT_LEVEL`] is the usual choice).
///
/// Writes the same bytes as [`encode_conversation`] of the JSON text of `memory` and
/// `session`. Fails with `ARCHIVE_TOO_LARGE` when the JSON document (before compression) is
/// larger than `max_archive_size` bytes, and with the errors of
/// [`super::read_conversation_input`] on input that does not hold together.
pub fn encode_archive(
    memory: &ConversationMemory,
    session: &SessionState,
    archived_at_ms: i64,
    level: u32,
    max_archive_size: u64,
) -> Result<EncodedArchive> {
    check_input(memory, session)?;
    let encoded = encode(memory, session, 0, archived_at_ms, level, max_archive_size)?;
    Ok(with_checksum(encoded))
}

/// Encodes a caller's conversation (see [`super::read_conversation_input`]) as an archive
/// written at `archived_at_ms`, gzip'd at `level` (0–9; [`gzip::DEFAULT_LEVEL`] is the usual
/// choice).
///
/// The JSON document is measured while it is compressed and never held uncompressed (see
/// `compress_document`). Fails with `ARCHIVE_TOO_LARGE` when it is larger than
/// `max_archive_size` bytes, and with `INVALID_INPUT` on a bad `archived_at_ms` or `level`.
pub fn encode_conversation(
    input: &ConversationInput<'_>,
    archived_at_ms: i64,
    level: u32,
    max_archive_size: u64,
) -> Result<EncodedArchive> {
    let encoded =
        encode_conversation_without_checksum(input, archived_at_ms, level, max_archive_size)?;
    Ok(with_checksum(encoded))
}

/// [`encode_conversation`] without the checksum: the metadata's `sha256` is left empty for the
/// caller, who records the checksum of what it stores (these bytes, hashed where it is
/// cheapest, or the encrypted ones).
pub fn encode_conversation_without_checksum(
    input: &ConversationInput<'_>,
    archived_at_ms: i64,
    level: u32,
    max_archive_size: u64,
) -> Result<EncodedArchive> {
    let (memory, session) = (&input.memory, &input.session);
    let size_hint = input.text_len;
    encode(
        memory,
        session,
        size_hint,
        archived_at_ms,
        level,
        max_archive_size,
    )
}

/// `encoded` with the SHA-256 of its bytes in its metadata.
fn with_checksum(mut encoded: EncodedArchive) -> EncodedArchive {
    encoded.metadata.sha256 = hash::sha256_hex(&encoded.bytes);
    encoded
}

/// Encodes a checked conversation, without the checksum (see [`with_checksum`]); `size_hint` is
/// about the document's size (0 if unknown).
fn encode<F: Form>(
    memory: &Memory<F>,
    session: &Session<F>,
    size_hint: usize,
    archived_at_ms: i64,
    level: u32,
    max_archive_size: u64,
) -> Result<EncodedArchive> {
    check_epoch_ms(archived_at_ms)
        .map_err(|reason| PersistenceError::invalid_input("archivedAt", reason))?;
    let level = gzip::check_level(level)?;

    let topics = extract_topics(&memory.messages);
    // A session whose clock ran backwards lasted no time, rather than failing the archive.
    let duration =
        u64::try_from(session.last_activity.saturating_sub(session.created_at)).unwrap_or(0);
    let message_count = memory.messages.len() as u64;
    // The oldest format that holds the document, so that older readers read what they can.
    let format_version = if memory
        .messages
        .iter()
        .any(|message| F::content_in_parts(&message.content))
    {
        TEXT_IN_PARTS_FORMAT_VERSION
    } else {
        FORMAT_VERSION
    };
    let document = Document {
        format_version,
        metadata: DocumentMetadata {
            session_id: &session.id,
            user_id: session.user_id.as_deref(),
            archived_at: archived_at_ms,
            message_count,
            summary: &memory.summary,
            topics: &topics,
            duration,
        },
        conversation: Conversation {
            memory,
            session_state: Some(session),
        },
    };

    let (bytes, raw_size) = compress_document(&document, size_hint, level, max_archive_size)?;
    let metadata = ArchiveMetadata {
        session_id: session.id.to_string(),
        user_id: session.user_id.as_deref().map(str::to_owned),
        archived_at: archived_at_ms,
        message_count,
        summary: memory.summary.to_string(),
        topics,
        duration,
        raw_size,
        stored_size: bytes.len() as u64,
        sha256: String::new(),
        format_version,
        encrypted_summary: None,
    };
    Ok(EncodedArchive { bytes, metadata })
}

/// Counts every byte written through it, passing them on to `inner` while the total stays
/// within `limit`; past the limit it drops `inner` (its output is no longer wanted) and only
/// counts, so an oversized document is measured whole without being compressed whole.
struct MeasuringWriter<W> {
    inner: Option<W>,
    count: u64,
    limit: u64,
}

impl<W: Write> Write for MeasuringWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.count = self.count.saturating_add(buf.len() as u64);
        if self.count > self.limit {
            self.inner = None;
        }
        match &mut self.inner {
            Some(inner) => inner.write_all(buf).map(|()| buf.len()),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// Serializes `document` through `writer` (buffered: fewer, larger writes reach it).
fn serialize_through<W: Write>(
    document: &impl Serialize,
    writer: MeasuringWriter<W>,
) -> Result<MeasuringWriter<W>> {
    let mut buffered = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    serde_json::to_writer(&mut buffered, document).map_err(|err| {
        if err.is_io() {
            compression_error(err)
        } else {
            PersistenceError::invalid_input("memory", err.to_string())
        }
    })?;
    buffered
        .into_inner()
        .map_err(|err| compression_error(err.into_error()))
}

fn compression_error(err: impl ToString) -> PersistenceError {
    PersistenceError::invalid_input("compression", err.to_string())
}

/// Serializes `document` straight into a gzip encoder at `level`: the gzip'd bytes and the
/// document's size. `size_hint` is about the document's size (the input's JSON length). Fails
/// with `ARCHIVE_TOO_LARGE` when the document is larger than `max_size` bytes.
///
/// One pass, measuring while compressing. Only when the hint already exceeds the limit is the
/// document measured first, so that refusing it costs a serialization, not compressing
/// `max_size` bytes.
fn compress_document(
    document: &impl Serialize,
    size_hint: usize,
    level: u32,
    max_size: u64,
) -> Result<(Vec<u8>, u64)> {
    let too_large = |size: u64| PersistenceError::ArchiveTooLarge {
        size,
        limit: max_size,
    };
    if size_hint as u64 > max_size {
        // The same writer type as below, without an encoder: one instance of the serializer.
        let measured = serialize_through(
            document,
            MeasuringWriter::<GzEncoder<Vec<u8>>> {
                inner: None,
                count: 0,
                limit: 0,
            },
        )?;
        if measured.count > max_size {
            return Err(too_large(measured.count));
        }
    }
    // Chat text compresses to under a third of its JSON; start there to avoid regrowing, and
    // never reserve for more than the limit allows.
    let expected = u64::try_from(size_hint).unwrap_or(u64::MAX).min(max_size);
    let capacity = usize::try_from(expected / 3)
        .unwrap_or(0)
        .saturating_add(64);
    let encoder = GzEncoder::new(Vec::with_capacity(capacity), Compression::new(level));
    let written = serialize_through(
        document,
        MeasuringWriter {
            inner: Some(encoder),
            count: 0,
            limit: max_size,
        },
    )?;
    match written.inner {
        Some(encoder) if written.count <= max_size => {
            Ok((encoder.finish().map_err(compression_error)?, written.count))
        }
        _ => Err(too_large(written.count)),
    }
}
