//! The lines of export streams (docs/FORMAT.md, "Exports"): NDJSON, UTF-8, one JSON object per
//! line ending with `\n`, the last an `end` line carrying how many lines came before it and the
//! SHA-256 of their bytes, newlines included (`head -n -1 export.ndjson | sha256sum`).
//!
//! `exportUserData` writes `conversation` lines (a person's archives, decrypted); `exportStore`
//! writes `object` lines (erasure tombstones, wrapped data keys) and `archive` / `document`
//! lines (archives as stored: format 3 pack entries), which `importStore` reads back here,
//! verifying each line's own checksum before anything is written.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::archive::ArchiveMetadata;
use super::backup::{encode_pack_entry, read_pack_entry, PackEntry};
use super::fields::{convert_member, FieldError, Fields, Kind, Member};
use crate::crypto::data_key::WrappedKey;
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, to_hex, verify_sha256, StreamHasher};
use crate::keys::{parse_data_key_object, parse_erasure_tombstone_key};

/// `type` of a line of `exportUserData`: one archive, decrypted.
pub const CONVERSATION_LINE: &str = "conversation";
/// `type` of a line of `exportStore`: an archive as stored (a format 3 pack entry).
pub const ARCHIVE_LINE: &str = "archive";
/// `type` of a line of `exportStore`: an archive of the earlier implementation, as its document.
pub const DOCUMENT_LINE: &str = "document";
/// `type` of a line of `exportStore`: an R2 object other than an archive (tombstone, data key).
pub const OBJECT_LINE: &str = "object";
/// `type` of the last line of every export.
pub const END_LINE: &str = "end";

/// Custom metadata field of an erasure tombstone: when the erasure began (decimal epoch ms).
const TOMBSTONE_ERASED_AT_FIELD: &str = "erasedAt";
/// Custom metadata field of a wrapped data key: the KEK wrapping it.
const DATA_KEY_KEK_FIELD: &str = "kekId";

/// Counts and hashes the lines of one stream up to its end line: what the end line says.
#[derive(Debug, Clone, Default)]
pub struct LineDigest {
    hasher: StreamHasher,
    count: u64,
}

impl LineDigest {
    /// Takes one line, its bytes as written (with its `\n`).
    pub fn add(&mut self, line: &[u8]) {
        self.add_parts(line, false);
    }

    /// Takes one line given without its `\n`, and that newline unless it is a stream's last,
    /// unended line.
    pub fn add_parts(&mut self, line: &[u8], newline: bool) {
        self.hasher.update(line);
        if newline {
            self.hasher.update(b"\n");
        }
        self.count += 1;
    }

    /// Lines taken.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// SHA-256 of every byte taken, as lowercase hex.
    pub fn sha256(&self) -> String {
        self.hasher.hex()
    }
}

/// The members of an archive document's `metadata` (docs/FORMAT.md "The document"): what a
/// person's export says about each archive besides its conversation.
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConversationHead<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    key: &'a str,
    session_id: &'a str,
    archived_at: i64,
    metadata: DocumentMetadata<'a>,
}

/// A `conversation` line: the archive under `key`, decoded (and decrypted) to `metadata` and
/// `conversation_json` (the conversation as retrieval returns it).
pub fn conversation_line(
    key: &str,
    metadata: &ArchiveMetadata,
    conversation_json: &str,
) -> Vec<u8> {
    let head = ConversationHead {
        kind: CONVERSATION_LINE,
        key,
        session_id: &metadata.session_id,
        archived_at: metadata.archived_at,
        metadata: DocumentMetadata {
            session_id: &metadata.session_id,
            user_id: metadata.user_id.as_deref(),
            archived_at: metadata.archived_at,
            message_count: metadata.message_count,
            summary: &metadata.summary,
            topics: &metadata.topics,
            duration: metadata.duration,
        },
    };
    let conversation = single_line(conversation_json);
    let mut line = Vec::with_capacity(conversation.len() + 512);
    // Our own struct of strings and numbers: it always serializes.
    serde_json::to_writer(&mut line, &head).unwrap_or_default();
    // Its closing brace makes way for the conversation, passed through as JSON text.
    line.pop();
    line.extend_from_slice(b",\"conversation\":");
    line.extend_from_slice(conversation.as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

/// `json` on one line: whitespace outside strings removed when it holds a line break (a
/// document written by hand may be pretty-printed; valid JSON has no raw line break inside a
/// string). Compact JSON, what this library writes, is returned as it is.
fn single_line(json: &str) -> Cow<'_, str> {
    if !json.bytes().any(|byte| byte == b'\n' || byte == b'\r') {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectLineOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    key: &'a str,
    size: u64,
    sha256: String,
    content_type: &'a str,
    custom_metadata: &'a BTreeMap<String, String>,
    body: String,
}

/// An `object` line: the R2 object under `key`, its body base64 with its SHA-256 and size.
pub fn object_line(
    key: &str,
    content_type: &str,
    custom_metadata: &BTreeMap<String, String>,
    body: &[u8],
) -> Vec<u8> {
    let out = ObjectLineOut {
        kind: OBJECT_LINE,
        key,
        size: body.len() as u64,
        sha256: sha256_hex(body),
        content_type,
        custom_metadata,
        body: BASE64.encode(body),
    };
    let mut line = serde_json::to_vec(&out).unwrap_or_default();
    line.push(b'\n');
    line
}

/// An `archive` line (an archive as stored) or a `document` line (an archive of the earlier
/// implementation): the entry exactly as a format 3 pack holds it, with its type first.
/// Errors: `INVALID_INPUT` naming `what` for an entry a pack would refuse.
pub fn archive_line(entry: &PackEntry, what: &str) -> Result<Vec<u8>> {
    let kind = match entry {
        PackEntry::Stored(_) => ARCHIVE_LINE,
        PackEntry::Document(_) => DOCUMENT_LINE,
    };
    let json = encode_pack_entry(entry, what)?;
    let members = json.get(1..).unwrap_or_default();
    let mut line = Vec::with_capacity(json.len() + 20);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",");
    line.extend_from_slice(members);
    line.push(b'\n');
    Ok(line)
}

/// The end line of a person's export: the lines before it and their SHA-256.
pub fn user_end_line(digest: &LineDigest) -> Vec<u8> {
    end_line(digest, None)
}

/// What a store export's end line says besides the count and the checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreEnd {
    /// The export reached the end of the store (no `cursor`).
    pub complete: bool,
    /// Where a next export continues (its `cursor` option); `None` when complete.
    pub cursor: Option<String>,
    /// Why this export stopped before the end (`"call_budget"`, `"deadline"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// Archives and objects that could not be read (damaged): not in the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// The end line of a store export.
pub fn store_end_line(digest: &LineDigest, end: &StoreEnd) -> Vec<u8> {
    end_line(digest, Some(end))
}

fn end_line(digest: &LineDigest, store: Option<&StoreEnd>) -> Vec<u8> {
    #[derive(Serialize)]
    struct EndOut<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        count: u64,
        sha256: String,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        store: Option<&'a StoreEnd>,
    }
    let out = EndOut {
        kind: END_LINE,
        count: digest.count(),
        sha256: digest.sha256(),
        store,
    };
    let mut line = serde_json::to_vec(&out).unwrap_or_default();
    line.push(b'\n');
    line
}

/// An R2 object of an `object` line, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedObject {
    /// Its key: an erasure tombstone's or a wrapped data key's.
    pub key: String,
    /// What it is.
    pub kind: ObjectKind,
    /// Its content type.
    pub content_type: String,
    /// Its custom metadata.
    pub custom_metadata: BTreeMap<String, String>,
    /// Its body, which hashed to the line's `sha256`.
    pub body: Vec<u8>,
    /// Its SHA-256 (lowercase hex).
    pub sha256: String,
}

/// The kinds of object a store export carries besides archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// An erasure tombstone, and when its erasure began (its `erasedAt`).
    Tombstone {
        /// Epoch ms.
        erased_at: i64,
    },
    /// A wrapped data key: the id of the key it holds, when that key was made, and the user
    /// it belongs to (`None` for a session's key).
    DataKey {
        /// The data key's id (hex).
        dek_id: String,
        /// When the data key was made (epoch ms).
        created_at: i64,
        /// The owner's hashed user key, for a user's key.
        user_key: Option<String>,
    },
}

/// A store export's end line, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndLine {
    /// Lines before it (since the previous end line).
    pub count: u64,
    /// SHA-256 of those lines' bytes.
    pub sha256: String,
    /// The store export's `complete`, `cursor`, `stoppedBy` and `unreadable` (a person's
    /// export has none: `complete` then reads as true).
    pub store: StoreEnd,
}

/// One line of a store export, read and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportLine {
    /// An `object` line.
    Object(ImportedObject),
    /// An `archive` or `document` line.
    Archive(PackEntry),
    /// The `end` line.
    End(EndLine),
}

/// What errors call line `line_no` (1-based).
pub fn line_name(line_no: u64) -> String {
    format!("line {line_no}")
}

type Record = Fields<'static, Value>;

#[derive(Deserialize)]
struct LineHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// Whether line `line_no` is an end line, from its `type` alone (for lines an import skips:
/// they were imported by an earlier run, and only their bytes and the end lines count).
/// Errors: `CORRUPT_DATA` naming the line when it is not a JSON object with a string `type`.
pub fn is_end_line(line_no: u64, bytes: &[u8]) -> Result<bool> {
    let head: LineHead<'_> = serde_json::from_slice(bytes).map_err(|err| {
        PersistenceError::corrupt(
            line_name(line_no),
            format!("not a JSON object with a string type: {err}"),
        )
    })?;
    Ok(head.kind == END_LINE)
}

/// Reads line `line_no` of a store export and verifies it: an object's body hashes to its
/// `sha256` and has its `size`, as does an archive's stored bytes (or a document's text), whose
/// metadata must describe it; an end line is only read (its count and checksum are the
/// caller's to compare). Unknown members are ignored. Errors name the line: `CORRUPT_DATA`
/// for text that is not a JSON object, an unknown `type` (or a person's export line), a missing
/// or ill-typed member, an object under a key that is neither a tombstone's nor a data key's,
/// or one whose body disagrees with its custom metadata; `CHECKSUM_MISMATCH` for bytes that do
/// not hash to their `sha256`.
pub fn read_import_line(line_no: u64, bytes: &[u8]) -> Result<ImportLine> {
    let what = line_name(line_no);
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| PersistenceError::corrupt(&what, format!("not JSON: {err}")))?;
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => {
            let found = Kind::of_value(other).with_article();
            return Err(PersistenceError::corrupt(
                &what,
                format!("type: must be a string, not {found}"),
            ));
        }
        None if value.is_object() => {
            return Err(PersistenceError::corrupt(&what, "type: missing"));
        }
        None => return Err(PersistenceError::corrupt(&what, "not a JSON object")),
    };
    match kind.as_str() {
        OBJECT_LINE => read_object(&what, value).map(ImportLine::Object),
        ARCHIVE_LINE | DOCUMENT_LINE => {
            let entry = read_pack_entry(value, &what)?;
            let shape = match &entry {
                PackEntry::Stored(_) => ARCHIVE_LINE,
                PackEntry::Document(_) => DOCUMENT_LINE,
            };
            if shape != kind {
                return Err(PersistenceError::corrupt(
                    &what,
                    format!(
                        "type {kind:?} holds a {shape} entry (document is only in document lines)"
                    ),
                ));
            }
            Ok(ImportLine::Archive(entry))
        }
        END_LINE => read_end(&what, value).map(ImportLine::End),
        CONVERSATION_LINE => Err(PersistenceError::corrupt(
            &what,
            "type \"conversation\" is a line of exportUserData (a person's copy); importStore \
             reads exportStore streams",
        )),
        other => Err(PersistenceError::corrupt(
            &what,
            format!("type {other:?} is not object, archive, document or end"),
        )),
    }
}

/// Reads a JSON string as a SHA-256 in hex.
fn sha256_member(value: Value) -> Result<String, String> {
    let text = value.into_str()?.into_owned();
    if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{text:?} is not 64 hex digits"))
    }
}

fn read_object(what: &str, value: Value) -> Result<ImportedObject> {
    let field = |err: FieldError| err.corrupt(what);
    let mut line = Record::of("", value).map_err(field)?;
    let key = line.string("key").map_err(field)?.into_owned();
    let size: u64 = line.count("size").map_err(field)?;
    let sha256 = line
        .convert("sha256", Kind::String, sha256_member)
        .map_err(field)?;
    let content_type = line.string("contentType").map_err(field)?.into_owned();
    let custom_metadata = line
        .convert("customMetadata", Kind::Object, |value| {
            serde_json::from_value::<BTreeMap<String, String>>(value)
                .map_err(|_| "must be an object of strings".to_owned())
        })
        .map_err(field)?;
    let body_path = line.path_of("body");
    let body = line.string("body").map_err(field)?;
    let body = BASE64
        .decode(body.as_bytes())
        .map_err(|err| FieldError::new(body_path, format!("not base64: {err}")).corrupt(what))?;
    let corrupt = |reason: String| PersistenceError::corrupt(what, reason);
    verify_sha256(what, &body, &sha256)?;
    if body.len() as u64 != size {
        return Err(corrupt(format!(
            "body is {} bytes, size says {size}",
            body.len()
        )));
    }
    let kind = if let Some(user_key) = parse_erasure_tombstone_key(&key) {
        ObjectKind::Tombstone {
            erased_at: tombstone_erased_at(user_key, &custom_metadata, &body).map_err(corrupt)?,
        }
    } else if let Some(reference) = parse_data_key_object(&key) {
        let user_key = reference.strip_prefix("users/").map(str::to_owned);
        let wrapped = WrappedKey::decode(what, &body)?;
        wrapped.dek_id_bytes(what)?;
        if custom_metadata.get(DATA_KEY_KEK_FIELD) != Some(&wrapped.kek_id) {
            return Err(corrupt(format!(
                "customMetadata.kekId is not {:?}, the KEK the body names",
                wrapped.kek_id
            )));
        }
        ObjectKind::DataKey {
            dek_id: wrapped.dek_id,
            created_at: wrapped.created_at,
            user_key,
        }
    } else {
        return Err(corrupt(format!(
            "key {key:?} is neither an erasure tombstone (erasures/<userKey>.json) nor a data \
             key (keys/users/<userKey>.json, keys/sessions/<sessionId>.json)"
        )));
    };
    Ok(ImportedObject {
        key,
        kind,
        content_type,
        custom_metadata,
        body,
        sha256,
    })
}

/// The `erasedAt` of a tombstone of `user_key`: its custom metadata's (what reads use), which
/// its body must agree with (`userKey`, `erasedAt`).
fn tombstone_erased_at(
    user_key: &str,
    custom_metadata: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<i64, String> {
    let erased_at = custom_metadata
        .get(TOMBSTONE_ERASED_AT_FIELD)
        .and_then(|value| value.parse::<i64>().ok())
        .filter(|ms| *ms >= 0)
        .ok_or("customMetadata.erasedAt: missing or not epoch milliseconds")?;
    let tombstone: Value =
        serde_json::from_slice(body).map_err(|err| format!("body: not JSON: {err}"))?;
    if tombstone.get("userKey").and_then(Value::as_str) != Some(user_key)
        || tombstone.get("erasedAt").and_then(Value::as_i64) != Some(erased_at)
    {
        return Err(format!(
            "body: not the tombstone of {user_key} erased at {erased_at} (its key and \
             customMetadata.erasedAt)"
        ));
    }
    Ok(erased_at)
}

fn read_end(what: &str, value: Value) -> Result<EndLine> {
    let field = |err: FieldError| err.corrupt(what);
    let mut line = Record::of("", value).map_err(field)?;
    let count: u64 = line.count("count").map_err(field)?;
    let sha256 = line
        .convert("sha256", Kind::String, sha256_member)
        .map_err(field)?;
    let complete = line
        .optional_convert("complete", Kind::Boolean, |value| {
            Ok(value == Value::Bool(true))
        })
        .map_err(field)?
        .unwrap_or(true);
    let cursor = match line.member("cursor") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let path = line.path_of("cursor");
            Some(
                convert_member(
                    value,
                    Kind::String,
                    || path,
                    |v| v.into_str().map(Cow::into_owned),
                )
                .map_err(field)?,
            )
        }
    };
    let stopped_by = line
        .optional_string("stoppedBy")
        .map_err(field)?
        .map(Cow::into_owned);
    let unreadable = match line.member("unreadable") {
        None => Vec::new(),
        Some(value) => {
            let path = line.path_of("unreadable");
            serde_json::from_value::<Vec<String>>(value)
                .map_err(|_| FieldError::new(path, "must be an array of strings").corrupt(what))?
        }
    };
    Ok(EndLine {
        count,
        sha256,
        store: StoreEnd {
            complete,
            cursor,
            stopped_by,
            unreadable,
        },
    })
}

/// Splits a byte stream that arrives in chunks into its lines (without their `\n`), holding
/// only the part of a line not yet complete; a line longer than `max_line_bytes` is refused.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max_line_bytes: usize,
    /// Lines returned so far.
    lines: u64,
}

impl LineSplitter {
    /// A splitter refusing lines over `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            max_line_bytes,
            lines: 0,
        }
    }

    /// The next line of the stream that `chunk` continues, from byte `*at` of it (the part of
    /// a line begun in earlier chunks first), with its number (1-based); `None` when the rest
    /// of `chunk` ends no line (it is kept for the next chunk). Errors: `CORRUPT_DATA` naming
    /// the line when it is longer than allowed.
    pub fn next_line<'c>(
        &mut self,
        chunk: &'c [u8],
        at: &mut usize,
    ) -> Result<Option<(u64, Cow<'c, [u8]>)>> {
        let rest = chunk.get(*at..).unwrap_or_default();
        let end = rest.iter().position(|byte| *byte == b'\n');
        let piece = rest.get(..end.unwrap_or(rest.len())).unwrap_or_default();
        if self.partial.len().saturating_add(piece.len()) > self.max_line_bytes {
            return Err(PersistenceError::corrupt(
                line_name(self.lines + 1),
                format!(
                    "longer than {} bytes, more than an archive may take (maxArchiveSize)",
                    self.max_line_bytes
                ),
            ));
        }
        let Some(end) = end else {
            self.partial.extend_from_slice(piece);
            *at = chunk.len();
            return Ok(None);
        };
        *at += end + 1;
        self.lines += 1;
        let line = if self.partial.is_empty() {
            Cow::Borrowed(piece)
        } else {
            self.partial.extend_from_slice(piece);
            Cow::Owned(std::mem::take(&mut self.partial))
        };
        Ok(Some((self.lines, line)))
    }

    /// The stream's last line when it does not end with `\n`, and its number.
    pub fn finish(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.partial.is_empty() {
            return None;
        }
        self.lines += 1;
        Some((self.lines, std::mem::take(&mut self.partial)))
    }
}

/// Hex of JSON: the form of an export's opaque cursor.
pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    to_hex(&serde_json::to_vec(position).unwrap_or_default())
}

/// Reads a cursor [`encode_cursor`] made; `None` when it is not one.
pub fn decode_cursor<T: for<'de> Deserialize<'de>>(cursor: &str) -> Option<T> {
    if cursor.len() % 2 != 0 || !cursor.is_ascii() {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(cursor.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::codec::backup::{BackupSession, StoredArchive};
    use crate::keys::{archive_object_key, SessionId};

    const T0: i64 = 1_736_157_600_000;
    const USER_KEY: &str = "6899f2e5b1f8a4d9e3c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a998877f01";

    fn metadata(bytes: &[u8]) -> ArchiveMetadata {
        ArchiveMetadata {
            session_id: "s1".into(),
            user_id: Some("alice".into()),
            archived_at: T0,
            message_count: 2,
            summary: "Refund \"now\"\nplease".into(),
            topics: vec!["billing".into()],
            duration: 5_000,
            raw_size: 300,
            stored_size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            format_version: 1,
            encrypted_summary: None,
        }
    }

    fn stored_entry() -> PackEntry {
        let bytes = b"\x1f\x8b stored bytes \x00\xff".to_vec();
        PackEntry::Stored(Box::new(StoredArchive {
            session_id: SessionId::parse("s1").unwrap(),
            key: archive_object_key(&SessionId::parse("s1").unwrap(), T0).unwrap(),
            metadata: metadata(&bytes),
            summary_truncated: true,
            bytes,
        }))
    }

    fn tombstone_line() -> Vec<u8> {
        let body = format!(
            r#"{{"formatVersion":1,"userKey":"{USER_KEY}","erasedAt":{T0},"completedAt":null}}"#
        );
        let custom = BTreeMap::from([("erasedAt".to_owned(), T0.to_string())]);
        object_line(
            &format!("erasures/{USER_KEY}.json"),
            "application/json",
            &custom,
            body.as_bytes(),
        )
    }

    fn data_key_line() -> Vec<u8> {
        let wrapped = WrappedKey {
            format_version: 1,
            dek_id: "0123456789abcdef0123456789abcdef".into(),
            kek_id: "k1".into(),
            nonce: "AAAAAAAAAAAAAAAA".into(),
            wrapped_key: BASE64.encode([7u8; 48]),
            created_at: T0 - 1,
        };
        let custom = BTreeMap::from([("kekId".to_owned(), "k1".to_owned())]);
        object_line(
            &format!("keys/users/{USER_KEY}.json"),
            "application/json",
            &custom,
            &wrapped.encode(),
        )
    }

    /// The line without its newline, as the splitter gives it.
    fn read(line_no: u64, line: &[u8]) -> Result<ImportLine> {
        read_import_line(line_no, line.strip_suffix(b"\n").unwrap_or(line))
    }

    fn code_and_message(result: Result<ImportLine>) -> (&'static str, String) {
        let err = result.unwrap_err();
        (err.code(), err.to_string())
    }

    #[test]
    fn a_conversation_line_is_one_line_with_the_documents_metadata() {
        let pretty =
            "{\n  \"sessionId\": \"s1\",\n  \"messages\": [\"a b\", \"c\\n\"],\n  \"x\": 1.50\n}";
        let line = conversation_line(
            "conversations/2025/01/archive_s1_1736157600000.json.gz",
            &metadata(b"x"),
            pretty,
        );
        assert_eq!(line.iter().filter(|byte| **byte == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            json!({"type": "conversation", "key": "conversations/2025/01/archive_s1_1736157600000.json.gz",
                   "sessionId": "s1", "archivedAt": T0,
                   "metadata": {"sessionId": "s1", "userId": "alice", "archivedAt": T0, "messageCount": 2,
                                "summary": "Refund \"now\"\nplease", "topics": ["billing"], "duration": 5000},
                   "conversation": {"sessionId": "s1", "messages": ["a b", "c\n"], "x": 1.50}})
        );
        // Whitespace inside strings is kept; numbers keep their spelling.
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.contains(r#""messages":["a b","c\n"],"x":1.50}"#),
            "{text}"
        );
        // Compact JSON is passed through untouched.
        assert_eq!(
            single_line(r#"{"a":"b c"}"#),
            Cow::Borrowed(r#"{"a":"b c"}"#)
        );
    }

    #[test]
    fn end_lines_count_and_hash_the_lines_before_them() {
        let mut digest = LineDigest::default();
        digest.add(b"{\"a\":1}\n");
        digest.add(b"{\"b\":2}\n");
        let user = user_end_line(&digest);
        assert_eq!(
            String::from_utf8(user).unwrap(),
            format!(
                "{{\"type\":\"end\",\"count\":2,\"sha256\":\"{}\"}}\n",
                sha256_hex(b"{\"a\":1}\n{\"b\":2}\n")
            )
        );
        let end = StoreEnd {
            complete: false,
            cursor: Some("7b7d".into()),
            stopped_by: Some("call_budget".into()),
            unreadable: vec!["conversations/x".into()],
        };
        let line = store_end_line(&digest, &end);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["complete"], false);
        assert_eq!(value["cursor"], "7b7d");
        let ImportLine::End(read_back) = read(9, &line).unwrap() else {
            panic!("not an end line");
        };
        assert_eq!((read_back.count, read_back.store), (2, end));
        let complete = store_end_line(
            &digest,
            &StoreEnd {
                complete: true,
                ..StoreEnd::default()
            },
        );
        assert!(complete.ends_with(b",\"complete\":true,\"cursor\":null}\n"));
    }

    #[test]
    fn archive_and_document_lines_read_back_as_the_entries_they_hold() {
        let stored = stored_entry();
        let line = archive_line(&stored, "s1").unwrap();
        assert!(line.starts_with(br#"{"type":"archive","sessionId":"s1","sha256":""#));
        assert_eq!(read(1, &line).unwrap(), ImportLine::Archive(stored));

        let document = PackEntry::Document(BackupSession {
            session_id: SessionId::parse("old-1").unwrap(),
            archive_json: r#"{"metadata":{"sessionId":"old-1"},"conversation":{"messages":[]}}"#
                .into(),
        });
        let line = archive_line(&document, "old-1").unwrap();
        assert!(line.starts_with(br#"{"type":"document","sessionId":"old-1""#));
        assert_eq!(read(2, &line).unwrap(), ImportLine::Archive(document));

        // The type must say what the line holds.
        let text = String::from_utf8(line)
            .unwrap()
            .replacen("\"document\"", "\"archive\"", 1);
        let (code, message) = code_and_message(read(3, text.as_bytes()));
        assert_eq!(code, "CORRUPT_DATA");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn objects_read_back_verified_and_named_by_kind() {
        let ImportLine::Object(tombstone) = read(1, &tombstone_line()).unwrap() else {
            panic!("not an object");
        };
        assert_eq!(tombstone.kind, ObjectKind::Tombstone { erased_at: T0 });
        assert_eq!(tombstone.custom_metadata["erasedAt"], T0.to_string());
        let ImportLine::Object(key) = read(2, &data_key_line()).unwrap() else {
            panic!("not an object");
        };
        assert_eq!(
            key.kind,
            ObjectKind::DataKey {
                dek_id: "0123456789abcdef0123456789abcdef".into(),
                created_at: T0 - 1,
                user_key: Some(USER_KEY.into())
            }
        );
        assert_eq!(key.sha256, sha256_hex(&key.body));
    }

    /// `line` with its JSON member `name` replaced by `value` (removed when `None`).
    fn with_member(line: &[u8], name: &str, value: Option<Value>) -> Vec<u8> {
        let mut object: Value = serde_json::from_slice(line).unwrap();
        match value {
            Some(value) => object[name] = value,
            None => {
                object.as_object_mut().unwrap().shift_remove(name);
            }
        }
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn bad_lines_are_refused_with_a_code_naming_the_line() {
        let archive = archive_line(&stored_entry(), "s1").unwrap();
        let tombstone = tombstone_line();
        let body = serde_json::from_slice::<Value>(&tombstone).unwrap()["body"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut flipped = BASE64.decode(&body).unwrap();
        flipped[3] ^= 1;
        let other_archive = {
            let value: Value = serde_json::from_slice(&archive).unwrap();
            let mut bytes = BASE64.decode(value["archive"].as_str().unwrap()).unwrap();
            bytes[0] ^= 0x80;
            with_member(&archive, "archive", Some(json!(BASE64.encode(bytes))))
        };
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (b"not json".to_vec(), "CORRUPT_DATA", "not JSON"),
            (b"[1,2]".to_vec(), "CORRUPT_DATA", "not a JSON object"),
            (br#"{"count":1}"#.to_vec(), "CORRUPT_DATA", "type: missing"),
            (
                br#"{"type":7}"#.to_vec(),
                "CORRUPT_DATA",
                "type: must be a string",
            ),
            (br#"{"type":"blob"}"#.to_vec(), "CORRUPT_DATA", "\"blob\""),
            (
                br#"{"type":"conversation","key":"k"}"#.to_vec(),
                "CORRUPT_DATA",
                "exportUserData",
            ),
            (
                with_member(&archive, "metadata", None),
                "CORRUPT_DATA",
                "metadata",
            ),
            (
                with_member(&archive, "size", Some(json!("12"))),
                "CORRUPT_DATA",
                "size",
            ),
            (
                with_member(&archive, "archive", Some(json!("%%%"))),
                "CORRUPT_DATA",
                "not base64",
            ),
            (other_archive, "CHECKSUM_MISMATCH", "line 7"),
            (
                with_member(&archive, "size", Some(json!(3))),
                "CORRUPT_DATA",
                "3",
            ),
            (
                with_member(&tombstone, "body", Some(json!(BASE64.encode(&flipped)))),
                "CHECKSUM_MISMATCH",
                "line 7",
            ),
            (
                with_member(&tombstone, "key", Some(json!("backups/b1/manifest.json"))),
                "CORRUPT_DATA",
                "neither",
            ),
            (
                with_member(&tombstone, "customMetadata", Some(json!({"erasedAt": "5"}))),
                "CORRUPT_DATA",
                "not the tombstone",
            ),
            (
                with_member(&tombstone, "customMetadata", Some(json!({"erasedAt": 5}))),
                "CORRUPT_DATA",
                "customMetadata",
            ),
            (
                with_member(
                    &data_key_line(),
                    "customMetadata",
                    Some(json!({"kekId": "k9"})),
                ),
                "CORRUPT_DATA",
                "kekId",
            ),
            (
                br#"{"type":"end","count":-1,"sha256":"00"}"#.to_vec(),
                "CORRUPT_DATA",
                "count",
            ),
            (
                format!(
                    r#"{{"type":"end","count":1,"sha256":"{}","cursor":5}}"#,
                    "a".repeat(64)
                )
                .into_bytes(),
                "CORRUPT_DATA",
                "cursor",
            ),
        ];
        for (line, code, needle) in cases {
            let text = String::from_utf8_lossy(&line).into_owned();
            let (found, message) = code_and_message(read(7, &line));
            assert_eq!(found, code, "{text}: {message}");
            assert!(message.contains("line 7"), "{text}: {message}");
            assert!(message.contains(needle), "{text}: {message} lacks {needle}");
        }
    }

    #[test]
    fn end_lines_are_told_from_their_type_alone() {
        assert!(is_end_line(1, br#"{"type":"end","anything":[1]}"#).unwrap());
        assert!(!is_end_line(1, &archive_line(&stored_entry(), "s1").unwrap()).unwrap());
        assert_eq!(is_end_line(4, b"{").unwrap_err().code(), "CORRUPT_DATA");
    }

    #[test]
    fn the_splitter_gives_whole_lines_whatever_the_chunks() {
        let stream = b"{\"a\":1}\n\n{\"b\":\"x\"}\n{\"c\":3}";
        for size in 1..stream.len() {
            let mut splitter = LineSplitter::new(100);
            let mut lines = Vec::new();
            for chunk in stream.chunks(size) {
                let mut at = 0;
                while let Some((number, line)) = splitter.next_line(chunk, &mut at).unwrap() {
                    lines.push((number, line.into_owned()));
                }
                assert_eq!(at, chunk.len());
            }
            let last = splitter.finish();
            assert_eq!(
                lines,
                vec![
                    (1, b"{\"a\":1}".to_vec()),
                    (2, Vec::new()),
                    (3, b"{\"b\":\"x\"}".to_vec())
                ],
                "chunks of {size}"
            );
            assert_eq!(last, Some((4, b"{\"c\":3}".to_vec())), "chunks of {size}");
            assert_eq!(splitter.finish(), None);
        }
        // A line longer than allowed is refused by number, before it is held whole.
        let mut splitter = LineSplitter::new(4);
        let mut at = 0;
        assert!(splitter.next_line(b"abcd\nabc", &mut at).unwrap().is_some());
        assert!(splitter.next_line(b"abcd\nabc", &mut at).unwrap().is_none());
        let mut at = 0;
        let err = splitter.next_line(b"de\n", &mut at).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
