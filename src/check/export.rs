//! Checking a store export (`exportStore`'s NDJSON, docs/FORMAT.md "Exports") line by line:
//! each line as an import verifies it before writing (`codec::export::read_import_line`),
//! each archive inside read as [`super::archive`] reads a live one and compared with the
//! metadata record beside it, and each end line's count and SHA-256 against the lines before
//! it. Encrypted archives decrypt with the data keys of the stream's own `object` lines.
//!
//! A person's export (`exportUserData`) is read too: its `conversation` lines hold no stored
//! bytes, so each is checked as the archive document its `metadata` and `conversation` make
//! (read with the rules of an archive without a recorded checksum) and against its key.

use std::collections::BTreeMap;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::archive::{
    check_archive, check_encrypted_archive, check_encrypted_header, key_disagreement, ReadArchive,
};
use super::object::{check_object, Context};
use super::{Finding, ObjectCheck, ObjectKind, Problem, CHECK_READ_LIMIT};
use crate::codec::archive::{decode_archive_json, ArchiveMetadata, View};
use crate::codec::backup::PackEntry;
use crate::codec::export::{
    line_name, read_import_line, ImportLine, LineDigest, ObjectKind as Line, CONVERSATION_LINE,
};
use crate::crypto::keyring::KeyRing;
use crate::keys::parse_archive_object_key;

/// One line, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LineCheck {
    /// The object's key, or `line <n>` for an end line or a line whose key cannot be read.
    pub name: String,
    /// The check; its facts include `line`.
    pub check: ObjectCheck,
}

/// Checks the lines of one export stream, in order.
#[derive(Debug, Default)]
pub struct ExportChecker {
    digest: LineDigest,
    line_no: u64,
    last_was_end: bool,
    end_lines: u64,
    /// The data key objects met so far, by key.
    data_keys: BTreeMap<String, Vec<u8>>,
}

impl ExportChecker {
    /// A checker at the start of a stream.
    pub fn new() -> Self {
        ExportChecker::default()
    }

    /// Checks the next line, `bytes` without its `\n` (`newline`: it had one; only a stream's
    /// last line may lack it). With `ring`, encrypted archives are decrypted.
    pub async fn line(&mut self, bytes: &[u8], newline: bool, ring: Option<&KeyRing>) -> LineCheck {
        self.line_no += 1;
        let line_no = self.line_no;
        let (name, mut check) = match read_import_line(line_no, bytes) {
            Ok(ImportLine::End(end)) => {
                let name = line_name(line_no);
                let mut check = ObjectCheck::new(ObjectKind::ExportLine);
                check.fact("type", "end");
                check.fact("count", end.count);
                check.fact("complete", end.store.complete);
                let (count, sha256) = (self.digest.count(), self.digest.sha256());
                if end.count != count || !end.sha256.eq_ignore_ascii_case(&sha256) {
                    let reason = format!(
                        "says {} lines with SHA-256 {}; the {count} lines before it hash to {sha256}",
                        end.count, end.sha256
                    );
                    check.find(Finding::new(Problem::EndLineMismatch, reason));
                }
                self.digest = LineDigest::default();
                self.last_was_end = true;
                self.end_lines += 1;
                check.fact("line", line_no);
                return LineCheck { name, check };
            }
            Ok(ImportLine::Object(object)) => {
                // Read again as the object it is: a data key is unwrapped when keys are given.
                let context = Context {
                    recorded_sha256: Some(&object.sha256),
                    data_key: None,
                    ring,
                };
                let (mut check, _) = check_object(&object.key, &object.body, context).await;
                check.fact("type", "object");
                if let Line::DataKey { .. } = &object.kind {
                    self.data_keys.insert(object.key.clone(), object.body);
                }
                (object.key, check)
            }
            Ok(ImportLine::Archive(PackEntry::Stored(stored))) => {
                let encrypted = parse_archive_object_key(&stored.key).is_some_and(|k| k.encrypted);
                let (mut check, read) = if encrypted {
                    let head = check_encrypted_header(&stored.key, &stored.bytes).1;
                    let data_key = head
                        .and_then(|head| self.data_keys.get(&head.data_key_object))
                        .map(Vec::as_slice);
                    check_encrypted_archive(&stored.key, &stored.bytes, data_key, ring).await
                } else {
                    check_archive(&stored.key, &stored.bytes)
                };
                if let Some(read) = read {
                    if let Some(reason) = record_disagreement(&stored.metadata, &read) {
                        check.find(Finding::new(Problem::CorruptDocument, reason));
                    }
                }
                check.fact("type", "archive");
                (stored.key, check)
            }
            Ok(ImportLine::Archive(PackEntry::Document(document))) => {
                let mut check = ObjectCheck::new(ObjectKind::LegacyArchive);
                check.fact("type", "document");
                check.fact("sessionId", document.session_id.as_str());
                let text = document.archive_json.as_bytes();
                match decode_archive_json(text, None, CHECK_READ_LIMIT, View::Conversation) {
                    Ok(read) => check.fact("messageCount", read.metadata.message_count),
                    Err(err) => check.find(Finding::of_error(&err, Problem::CorruptDocument)),
                }
                (line_name(line_no), check)
            }
            Err(err) => match conversation_line(bytes) {
                Some(checked) => checked,
                None => {
                    let mut check = ObjectCheck::new(ObjectKind::ExportLine);
                    check.find(Finding::of_error(&err, Problem::CorruptDocument));
                    let name = key_of(bytes).unwrap_or_else(|| line_name(line_no));
                    (name, check)
                }
            },
        };
        check.fact("line", line_no);
        self.digest.add_parts(bytes, newline);
        self.last_was_end = false;
        LineCheck { name, check }
    }

    /// After the last line: a [`Problem::NoEndLine`] unless the stream ended with an end line.
    pub fn finish(&self) -> Option<Finding> {
        if self.last_was_end {
            return None;
        }
        let reason = match self.line_no {
            0 => "the stream is empty".to_owned(),
            n => format!("line {n}, the last, is not an end line: the stream was cut short"),
        };
        Some(Finding::new(Problem::NoEndLine, reason))
    }

    /// End lines met.
    pub fn end_lines(&self) -> u64 {
        self.end_lines
    }
}

/// A person's export line, as written by `codec::export::conversation_line`.
#[derive(Deserialize)]
struct ConversationLine<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    key: String,
    #[serde(borrow)]
    metadata: &'a RawValue,
    #[serde(borrow)]
    conversation: &'a RawValue,
}

/// Checks `bytes` as a `conversation` line of a person's export; `None` when it is not one.
fn conversation_line(bytes: &[u8]) -> Option<(String, ObjectCheck)> {
    let line: ConversationLine<'_> = serde_json::from_slice(bytes).ok()?;
    if line.kind != CONVERSATION_LINE {
        return None;
    }
    let mut check = ObjectCheck::new(ObjectKind::ExportLine);
    check.fact("type", CONVERSATION_LINE);
    // The document an archive without formatVersion holds: read with the legacy rules, which
    // check the metadata against the conversation (session, user, message count).
    let document = format!(
        "{{\"metadata\":{},\"conversation\":{}}}",
        line.metadata.get(),
        line.conversation.get()
    );
    let decoded = decode_archive_json(
        document.as_bytes(),
        None,
        CHECK_READ_LIMIT,
        View::Conversation,
    );
    match (decoded, parse_archive_object_key(&line.key)) {
        (Err(err), _) => check.find(Finding::of_error(&err, Problem::CorruptDocument)),
        (Ok(_), None) => check.find(Finding::new(
            Problem::CorruptDocument,
            "key: not an archive key",
        )),
        (Ok(read), Some(parsed)) => {
            check.fact("sessionId", read.metadata.session_id.as_str());
            check.fact("messageCount", read.metadata.message_count);
            if let Some(reason) = key_disagreement(&parsed, &read.metadata) {
                check.find(Finding::new(Problem::CorruptDocument, reason));
            }
        }
    }
    Some((line.key, check))
}

/// The `key` member of a line that is a JSON object with one (read again only for a line that
/// failed, to name it).
fn key_of(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get("key")?.as_str().map(str::to_owned)
}

/// What in an archive line's metadata record disagrees with the archive it carries.
fn record_disagreement(record: &ArchiveMetadata, read: &ReadArchive) -> Option<String> {
    let document = &read.metadata;
    let pairs = [
        ("sessionId", record.session_id == document.session_id),
        ("userId", record.user_id == document.user_id),
        ("archivedAt", record.archived_at == document.archived_at),
        (
            "messageCount",
            record.message_count == document.message_count,
        ),
        ("rawSize", record.raw_size == document.raw_size),
        (
            "formatVersion",
            record.format_version == document.format_version,
        ),
    ];
    let differing: Vec<&str> = pairs
        .iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| *name)
        .collect();
    (!differing.is_empty()).then(|| {
        format!(
            "metadata {} differ from the archive's document",
            differing.join(", ")
        )
    })
}
