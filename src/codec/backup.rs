//! Backups: a gzip'd JSON data bundle holding several sessions' archives, each with its own
//! SHA-256, and a manifest, written last as the commit point, that records the bundle's SHA-256.
//! Also reads backups written by the earlier TypeScript implementation.
//!
//! Per-session checksums: each session's archive document is embedded as a JSON *string* holding
//! its archive JSON text, and `sha256` is taken over that text's UTF-8 bytes. A JSON string
//! round-trips its contents exactly, so the decoder re-derives the very bytes that were hashed,
//! and so does `jq -j '.sessions[0].archive' | sha256sum`. Embedding the document as a JSON value
//! would make the checksum depend on one serializer's number and key formatting; embedding the
//! stored `.json.gz` as base64 would hide the document from `jq` and defeat the outer gzip.
//! (Format 3 packs do carry archives as stored, base64, since archives are to be opaque to
//! backups: see `packs`.)
//!
//! Layouts and a shell recipe to check a backup: docs/FORMAT.md ("Backups").

use std::collections::HashSet;

#[cfg(any(test, feature = "conformance"))]
#[cfg(any(test, feature = "conformance"))]
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::codec::archive::{decode_archive, extract_topics};
use crate::codec::fields::{convert_member, FieldError, Fields, Kind, Member};
use crate::codec::{gzip, json_text};
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, verify_sha256};
use crate::keys::{backup_data_key, legacy_backup_data_key, BackupId, SessionId, UserId};

mod packs;
mod summary;

#[cfg(any(test, feature = "conformance"))]
pub use packs::encode_gzip_pack;
pub use packs::{
    decode_packed_manifest, encode_pack, encode_pack_entry, pack_key, read_pack_entry, verify_pack,
    BackupKind, PackEntry, PackRecord, PackedManifest, StoredArchive, GZIP_PACKED_FORMAT_VERSION,
    PACKED_FORMAT_VERSION,
};
pub use summary::BackupSummary;

/// Version of the data bundle and manifest written by this code.
pub const BACKUP_FORMAT_VERSION: u64 = 1;

/// Bytes of bundle JSON per session besides its archive text (ids, checksum, size, punctuation).
const BUNDLE_OVERHEAD_PER_SESSION: u64 = 512;
/// Bytes of bundle JSON besides the sessions.
const BUNDLE_OVERHEAD: u64 = 1024;

/// One session to put into a backup.
#[derive(Debug, Clone, Copy)]
pub struct BackupSessionInput<'a> {
    /// The session.
    pub session_id: &'a SessionId,
    /// The session's archive document as JSON text (UTF-8 bytes, e.g. an inflated archive).
    pub archive_json: &'a [u8],
}

/// A session as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSessionEntry {
    /// The session.
    pub session_id: SessionId,
    /// SHA-256 (hex) of the session's archive JSON text.
    pub sha256: String,
    /// Length of that text in bytes.
    pub size: u64,
}

/// The manifest of a backup, stored last: a backup without one does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT_VERSION`] at the time of writing.
    pub format_version: u64,
    /// The backup.
    pub backup_id: BackupId,
    /// When the backup was made (epoch ms).
    #[serde(rename = "createdAt")]
    pub created_at_ms: i64,
    /// The user every archive in it belongs to, when the backup was made for one (only that
    /// user's restore may then read it); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The sessions in the backup, in bundle order.
    pub session_ids: Vec<SessionId>,
    /// Sessions that were asked for but had no archive to back up.
    pub missing_session_ids: Vec<SessionId>,
    /// Sum of the sessions' `size`.
    pub total_size: u64,
    /// SHA-256 (hex) of the stored data object (the gzip bytes).
    pub data_sha256: String,
    /// Per-session checksums and sizes, in bundle order.
    pub sessions: Vec<BackupSessionEntry>,
}

/// A freshly encoded format 1 backup: store `data` first, then the manifest.
#[cfg(any(test, feature = "conformance"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBackup {
    /// The gzip'd data bundle.
    pub data: Vec<u8>,
    /// The manifest describing `data`.
    pub manifest: BackupManifest,
}

/// A session read back from a verified backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSession {
    /// The session.
    pub session_id: SessionId,
    /// The archive JSON text exactly as it was backed up.
    pub archive_json: String,
}

/// A backup whose data matched its manifest in every checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBackup {
    /// The backup.
    pub backup_id: BackupId,
    /// When it was made (epoch ms).
    pub created_at_ms: i64,
    /// Its sessions, in manifest order.
    pub sessions: Vec<BackupSession>,
    /// Sessions that were asked for but had no archive.
    pub missing_session_ids: Vec<SessionId>,
}

#[cfg(any(test, feature = "conformance"))]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataBundle<'a> {
    format_version: u64,
    backup_id: &'a BackupId,
    created_at: i64,
    sessions: Vec<BundleSession<'a>>,
}

/// One session of a data bundle or format 2 pack as written: the archive JSON text as a string.
#[cfg(any(test, feature = "conformance"))]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleSession<'a> {
    session_id: &'a SessionId,
    sha256: &'a str,
    size: u64,
    archive: &'a str,
}

/// Builds a format 1 backup's gzip'd data bundle (at gzip `level`) and its manifest. Backups
/// are written in packs (format 2) since; this writer is kept so that tests can store what
/// earlier versions wrote and check it still restores.
///
/// Errors: `INVALID_INPUT` naming `sessions[i]` for an archive that is not UTF-8 JSON or a
/// session listed twice (or also as missing), or naming `createdAt` if it is negative.
#[cfg(any(test, feature = "conformance"))]
pub fn encode_backup(
    backup_id: &BackupId,
    created_at_ms: i64,
    sessions: &[BackupSessionInput<'_>],
    missing_session_ids: &[SessionId],
    level: u32,
) -> Result<EncodedBackup> {
    if created_at_ms < 0 {
        return Err(PersistenceError::invalid_input(
            "createdAt",
            format!("{created_at_ms} is before 1970"),
        ));
    }
    let (entries, texts) = checked_sessions(sessions)?;
    let seen: HashSet<&SessionId> = entries.iter().map(|entry| &entry.session_id).collect();
    if let Some((index, id)) = missing_session_ids
        .iter()
        .enumerate()
        .find(|(_, id)| seen.contains(id))
    {
        return Err(PersistenceError::invalid_input(
            format!("missingSessionIds[{index}]"),
            format!("session {id} is also in the backup"),
        ));
    }

    let bundle = DataBundle {
        format_version: BACKUP_FORMAT_VERSION,
        backup_id,
        created_at: created_at_ms,
        sessions: entries
            .iter()
            .zip(&texts)
            .map(|(entry, text)| BundleSession {
                session_id: &entry.session_id,
                sha256: &entry.sha256,
                size: entry.size,
                archive: text,
            })
            .collect(),
    };
    let bundle_json = serde_json::to_vec(&bundle)
        .map_err(|err| PersistenceError::invalid_input("backup", err.to_string()))?;
    let data = gzip::compress(&bundle_json, level)?;
    let manifest = BackupManifest {
        format_version: BACKUP_FORMAT_VERSION,
        backup_id: backup_id.clone(),
        created_at_ms,
        user_id: None,
        session_ids: entries
            .iter()
            .map(|entry| entry.session_id.clone())
            .collect(),
        missing_session_ids: missing_session_ids.to_vec(),
        total_size: entries.iter().map(|entry| entry.size).sum(),
        data_sha256: sha256_hex(&data),
        sessions: entries,
    };
    Ok(EncodedBackup { data, manifest })
}

/// The entries of `sessions` and their archive texts, checked: each archive UTF-8 JSON, no
/// session twice. Errors: `INVALID_INPUT` naming `sessions[i]`.
#[cfg(any(test, feature = "conformance"))]
fn checked_sessions<'a>(
    sessions: &[BackupSessionInput<'a>],
) -> Result<(Vec<BackupSessionEntry>, Vec<&'a str>)> {
    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(sessions.len());
    let mut texts = Vec::with_capacity(sessions.len());
    for (index, session) in sessions.iter().enumerate() {
        let invalid =
            |reason: String| PersistenceError::invalid_input(format!("sessions[{index}]"), reason);
        let id = session.session_id;
        if !seen.insert(id) {
            return Err(invalid(format!("session {id} is listed twice")));
        }
        let text = std::str::from_utf8(session.archive_json)
            .map_err(|err| invalid(format!("archive of session {id} is not UTF-8: {err}")))?;
        serde_json::from_str::<IgnoredAny>(text)
            .map_err(|err| invalid(format!("archive of session {id} is not JSON: {err}")))?;
        entries.push(BackupSessionEntry {
            session_id: id.clone(),
            sha256: sha256_hex(session.archive_json),
            size: session.archive_json.len() as u64,
        });
        texts.push(text);
    }
    Ok((entries, texts))
}

/// The format 1 manifest as JSON bytes.
#[cfg(any(test, feature = "conformance"))]
pub fn encode_manifest(manifest: &BackupManifest) -> Result<Vec<u8>> {
    serde_json::to_vec(manifest)
        .map_err(|err| PersistenceError::invalid_input("manifest", err.to_string()))
}

/// Decodes a manifest read from `what` (its storage key), checking its shape and internal
/// consistency (`sessionIds` and `sessions` agree, `totalSize` is their sum).
///
/// Errors: `CORRUPT_DATA` naming `what` and the field; `UNSUPPORTED_FORMAT` if written by a
/// newer version.
pub fn decode_manifest(what: &str, bytes: &[u8]) -> Result<BackupManifest> {
    let mut fields = open(what, bytes)?;
    let format_version = read_format_version(what, &mut fields)?;
    let manifest = read_manifest(format_version, fields).map_err(|err| err.corrupt(what))?;

    let corrupt = |reason: String| PersistenceError::corrupt(what, reason);
    let BackupManifest {
        session_ids,
        missing_session_ids,
        sessions,
        total_size,
        ..
    } = &manifest;
    let listed: Vec<&SessionId> = sessions.iter().map(|entry| &entry.session_id).collect();
    if session_ids.iter().ne(listed.iter().copied()) {
        return Err(corrupt(format!(
            "sessionIds [{}] do not match sessions[].sessionId [{}]",
            join(session_ids.iter()),
            join(listed.iter().copied())
        )));
    }
    if let Some(id) = first_duplicate(session_ids.iter().chain(missing_session_ids)) {
        return Err(corrupt(format!(
            "session {id} is listed twice in sessionIds/missingSessionIds"
        )));
    }
    let sum = sessions
        .iter()
        .try_fold(0u64, |sum, entry| sum.checked_add(entry.size));
    if sum != Some(*total_size) {
        return Err(corrupt(format!(
            "totalSize {total_size} is not the sum of sessions[].size"
        )));
    }
    Ok(manifest)
}

/// The fields of a manifest after its `formatVersion`, in the order they are checked.
fn read_manifest(format_version: u64, mut fields: Record) -> Result<BackupManifest, FieldError> {
    Ok(BackupManifest {
        format_version,
        backup_id: fields.convert("backupId", Kind::String, id(BackupId::parse))?,
        created_at_ms: epoch_ms(&mut fields, "createdAt")?,
        user_id: match fields.member("userId") {
            None | Some(Value::Null) => None,
            Some(user_id) => {
                let path = || fields.path_of("userId");
                Some(convert_member(
                    user_id,
                    Kind::String,
                    path,
                    id(UserId::parse),
                )?)
            }
        },
        session_ids: session_ids(&mut fields, "sessionIds")?,
        missing_session_ids: session_ids(&mut fields, "missingSessionIds")?,
        total_size: fields.count("totalSize")?,
        data_sha256: fields.convert("dataSha256", Kind::String, sha256)?,
        sessions: objects(&mut fields, "sessions")?
            .iter_mut()
            .map(read_session_entry)
            .collect::<Result<_, _>>()?,
    })
}

/// A session's `sessionId`, `sha256` and `size`, as the manifest and the bundle record them.
fn read_session_entry(session: &mut Record) -> Result<BackupSessionEntry, FieldError> {
    Ok(BackupSessionEntry {
        session_id: session.convert("sessionId", Kind::String, id(SessionId::parse))?,
        sha256: session.convert("sha256", Kind::String, sha256)?,
        size: session.count("size")?,
    })
}

/// Verifies a backup's stored data object against its (decoded) manifest and returns its
/// sessions in manifest order.
///
/// Errors: `CHECKSUM_MISMATCH` naming the data object's key when the stored bytes do not hash to
/// `dataSha256`, or naming `backup <id> session <sessionId>` when one session's archive does not
/// hash to its checksum; `CORRUPT_DATA` when the bundle does not inflate or parse, disagrees with
/// the manifest (id, time, sizes), or holds sessions the manifest lacks or vice versa (naming
/// them); `UNSUPPORTED_FORMAT` for a newer bundle.
pub fn verify_backup(manifest: &BackupManifest, data_bytes: &[u8]) -> Result<VerifiedBackup> {
    let what = backup_data_key(&manifest.backup_id);
    verify_sha256(&what, data_bytes, &manifest.data_sha256)?;

    // The archives are embedded as JSON strings, which at most double their size when escaped
    // (valid JSON text has no raw control characters), so the manifest bounds the inflated size.
    let max_inflated = manifest
        .total_size
        .saturating_mul(2)
        .saturating_add(BUNDLE_OVERHEAD_PER_SESSION.saturating_mul(manifest.sessions.len() as u64))
        .saturating_add(BUNDLE_OVERHEAD);
    let bundle_json = gzip::decompress(&what, data_bytes, max_inflated)?;
    let mut bundle = open(&what, &bundle_json)?;
    read_format_version(&what, &mut bundle)?;
    let corrupt = |reason: String| PersistenceError::corrupt(what.as_str(), reason);
    let in_bundle = |err: FieldError| err.corrupt(&what);
    let backup_id = bundle.convert("backupId", Kind::String, id(BackupId::parse));
    let backup_id = backup_id.map_err(in_bundle)?;
    if backup_id != manifest.backup_id {
        return Err(corrupt(format!(
            "backupId {backup_id} is not the manifest's {}",
            manifest.backup_id
        )));
    }
    let created_at_ms = epoch_ms(&mut bundle, "createdAt").map_err(in_bundle)?;
    if created_at_ms != manifest.created_at_ms {
        return Err(corrupt(format!(
            "createdAt {created_at_ms} is not the manifest's {}",
            manifest.created_at_ms
        )));
    }

    let mut embedded = Vec::new();
    for mut session in objects(&mut bundle, "sessions").map_err(in_bundle)? {
        let recorded = read_session_entry(&mut session).map_err(in_bundle)?;
        let archive_json = session.string("archive").map_err(in_bundle)?;
        embedded.push((recorded, archive_json.into_owned()));
    }
    if let Some(id) = first_duplicate(embedded.iter().map(|(recorded, _)| &recorded.session_id)) {
        return Err(corrupt(format!("session {id} appears twice")));
    }
    let mut matched = Vec::with_capacity(manifest.sessions.len());
    let mut absent = Vec::new();
    for entry in &manifest.sessions {
        match embedded
            .iter()
            .position(|(recorded, _)| recorded.session_id == entry.session_id)
        {
            Some(position) => matched.push((entry, embedded.remove(position))),
            None => absent.push(&entry.session_id),
        }
    }
    if !embedded.is_empty() {
        return Err(corrupt(format!(
            "sessions in the data but not in the manifest: {}",
            join(embedded.iter().map(|(recorded, _)| &recorded.session_id))
        )));
    }
    if !absent.is_empty() {
        return Err(corrupt(format!(
            "sessions in the manifest but not in the data: {}",
            join(absent.into_iter())
        )));
    }

    let mut sessions = Vec::with_capacity(matched.len());
    for (entry, (recorded, archive_json)) in matched {
        let session_id = recorded.session_id;
        let session_what = format!("backup {} session {session_id}", manifest.backup_id);
        verify_sha256(&session_what, archive_json.as_bytes(), &recorded.sha256)?;
        verify_sha256(&session_what, archive_json.as_bytes(), &entry.sha256)?;
        let actual_size = archive_json.len() as u64;
        if recorded.size != actual_size || entry.size != actual_size {
            return Err(PersistenceError::corrupt(
                session_what,
                format!(
                    "archive is {actual_size} bytes, the data records {} and the manifest {}",
                    recorded.size, entry.size
                ),
            ));
        }
        sessions.push(BackupSession {
            session_id,
            archive_json,
        });
    }
    Ok(VerifiedBackup {
        backup_id,
        created_at_ms,
        sessions,
        missing_session_ids: manifest.missing_session_ids.clone(),
    })
}

/// The KV manifest of a backup written by the earlier TypeScript implementation
/// (`backup_manifest:<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyBackupManifest {
    /// The backup.
    pub backup_id: BackupId,
    /// `timestamp` when it is an integral number (epoch ms); informational only.
    pub timestamp_ms: Option<i64>,
    /// The sessions the backup was made of.
    pub session_ids: Vec<SessionId>,
    /// `totalSize` when present; informational only.
    pub total_size: Option<u64>,
    /// SHA-256 (hex) of the JSON text of `backups/<id>/data.json`.
    pub checksum: String,
    /// `metadata` as stored, if any.
    pub metadata: Option<Value>,
}

/// A session read back from a verified legacy backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyBackupSession {
    /// The session.
    pub session_id: SessionId,
    /// The session's `data`: its JSON text if it was a string, else its compact JSON.
    pub conversation_json: String,
}

/// Which writer a stored backup manifest (R2 `manifest.json` or KV `backup_manifest:<id>`)
/// comes from, as far as its first level tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestShape {
    /// A JSON object with a `formatVersion` below 2: a single-bundle backup of this library
    /// ([`decode_manifest`]).
    Current,
    /// A JSON object with a `formatVersion` of 2 or more: a multi-pack backup
    /// ([`decode_packed_manifest`], which refuses a newer version).
    Packed,
    /// A JSON object without `formatVersion`: the earlier TypeScript implementation's
    /// ([`decode_legacy_manifest`]).
    Legacy,
    /// Not a JSON object: damaged; either decoder says what is wrong.
    Unreadable,
}

/// The [`ManifestShape`] of `bytes`.
pub fn manifest_shape(bytes: &[u8]) -> ManifestShape {
    /// `None` when the member is absent; else its value as a version number, if it is one.
    fn version<'de, D: serde::Deserializer<'de>>(
        value: D,
    ) -> Result<Option<Option<u64>>, D::Error> {
        Value::deserialize(value).map(|value| Some(value.as_u64()))
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        #[serde(default, deserialize_with = "version")]
        format_version: Option<Option<u64>>,
    }
    let is_object = bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&byte| byte == b'{');
    match serde_json::from_slice::<Version>(bytes) {
        Ok(Version {
            format_version: Some(Some(version)),
        }) if is_object && version >= GZIP_PACKED_FORMAT_VERSION => ManifestShape::Packed,
        Ok(version) if is_object && version.format_version.is_some() => ManifestShape::Current,
        Ok(_) if is_object => ManifestShape::Legacy,
        _ => ManifestShape::Unreadable,
    }
}

/// Decodes a legacy KV backup manifest read from `what`. Only `backupId`, `sessionIds` and
/// `checksum` are required: integrity rests on the checksum, the other fields are informational.
///
/// Errors: `CORRUPT_DATA` naming `what` and the field.
pub fn decode_legacy_manifest(what: &str, bytes: &[u8]) -> Result<LegacyBackupManifest> {
    let mut fields = open(what, bytes)?;
    let mut read = || -> Result<_, FieldError> {
        Ok(LegacyBackupManifest {
            backup_id: fields.convert("backupId", Kind::String, id(BackupId::parse))?,
            timestamp_ms: fields.member("timestamp").and_then(|value| value.as_i64()),
            session_ids: session_ids(&mut fields, "sessionIds")?,
            total_size: fields.member("totalSize").and_then(|value| value.as_u64()),
            checksum: fields
                .convert("checksum", Kind::String, sha256)?
                .to_ascii_lowercase(),
            metadata: fields.member("metadata"),
        })
    };
    read().map_err(|err| err.corrupt(what))
}

/// Verifies a legacy backup's `data.json` (a JSON array of `{sessionId, data, size}`) against
/// its manifest's checksum and returns its sessions in stored order.
///
/// The earlier code hashed `JSON.stringify(JSON.parse(text))`; for text it wrote itself (with
/// `JSON.stringify`) that equals the stored text, so the stored bytes are checked first. Should
/// they differ, the compact re-serialization of the parsed JSON is checked too: it matches text
/// that was only re-indented since (serde_json and `JSON.stringify` differ solely in rare number
/// spellings such as `1e21` / `1e+21`, which a mismatch then reports). The manifest's
/// `sessionIds` are not compared with the data: the checksum already binds the data to the
/// manifest, and the earlier code listed requested ids there, whether archived or not.
///
/// Errors: `CHECKSUM_MISMATCH` naming the data object's key; `CORRUPT_DATA` naming it and the
/// entry when the array or an entry is malformed.
pub fn verify_legacy_backup(
    manifest: &LegacyBackupManifest,
    data_bytes: &[u8],
) -> Result<Vec<LegacyBackupSession>> {
    let what = legacy_backup_data_key(&manifest.backup_id);
    let stored_sha256 = sha256_hex(data_bytes);
    let parsed = serde_json::from_slice::<Value>(data_bytes);
    if !stored_sha256.eq_ignore_ascii_case(&manifest.checksum) {
        let reserialized_matches = parsed
            .as_ref()
            .ok()
            .and_then(|value| serde_json::to_vec(value).ok())
            .is_some_and(|bytes| sha256_hex(&bytes).eq_ignore_ascii_case(&manifest.checksum));
        if !reserialized_matches {
            return Err(PersistenceError::ChecksumMismatch {
                what,
                expected: manifest.checksum.clone(),
                actual: stored_sha256,
            });
        }
    }
    let entries = match parsed {
        Ok(Value::Array(entries)) => entries,
        Ok(other) => {
            let kind = Kind::of_value(&other).with_article();
            return Err(PersistenceError::corrupt(
                what,
                format!("must be a JSON array, not {kind}"),
            ));
        }
        Err(err) => return Err(PersistenceError::corrupt(what, format!("not JSON: {err}"))),
    };
    let read = |(index, entry)| -> Result<_, FieldError> {
        let mut entry = Record::of(format!("[{index}]"), entry)?;
        Ok(LegacyBackupSession {
            session_id: entry.convert("sessionId", Kind::String, id(SessionId::parse))?,
            conversation_json: match entry.required("data")? {
                Value::String(text) => text,
                other => other.to_string(),
            },
        })
    };
    entries
        .into_iter()
        .enumerate()
        .map(|entry| read(entry).map_err(|err| err.corrupt(&what)))
        .collect()
}

/// The archive document of a session from a legacy backup. Its `data` is either a whole
/// archive document (`{metadata, conversation}`), kept as it is, or the archived conversation,
/// which is wrapped in the earlier implementation's document form with `archivedAt` =
/// `archived_at_ms` (read back with the legacy rules: no `formatVersion`, `sessionState`
/// optional). Errors: `CORRUPT_DATA` naming `what`.
pub fn legacy_backup_document(what: &str, data_json: &str, archived_at_ms: i64) -> Result<String> {
    let data: Value = serde_json::from_str(data_json)
        .map_err(|err| PersistenceError::corrupt(what, format!("not JSON: {err}")))?;
    if data.get("metadata").is_some() && data.get("conversation").is_some() {
        return Ok(data_json.to_owned());
    }
    let session_id = data.get("sessionId").cloned().unwrap_or(Value::Null);
    let session_state = data.get("sessionState");
    let user_id = session_state.and_then(|state| state.get("userId")).cloned();
    let time = |name: &str| {
        session_state
            .and_then(|state| state.get(name))
            .and_then(Value::as_i64)
    };
    let duration = match (time("createdAt"), time("lastActivity")) {
        (Some(start), Some(end)) => end.saturating_sub(start).max(0),
        _ => 0,
    };
    let message_count = data
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let summary = data.get("summary").cloned().unwrap_or_else(|| json!(""));
    let mut metadata = Map::new();
    metadata.insert("sessionId".into(), session_id);
    if let Some(user_id) = user_id.filter(Value::is_string) {
        metadata.insert("userId".into(), user_id);
    }
    metadata.insert("archivedAt".into(), json!(archived_at_ms));
    metadata.insert("messageCount".into(), json!(message_count));
    metadata.insert("summary".into(), summary);
    metadata.insert("topics".into(), json!([]));
    metadata.insert("duration".into(), json!(duration));
    let mut document = json!({ "metadata": metadata, "conversation": data });
    // Topics come from the messages as the codec reads them.
    let text = json_text(&document);
    let decoded = decode_archive(text.as_bytes(), None, u64::MAX)
        .map_err(|err| PersistenceError::corrupt(what, err.to_string()))?;
    let topics = json!(extract_topics(&decoded.conversation.memory.messages));
    if let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("topics".into(), topics);
    }
    Ok(json_text(&document))
}

/// A backup document read field by field.
type Record = Fields<'static, Value>;

/// Parses `bytes`, stored as `what`, as a JSON object to read field by field.
fn open(what: &str, bytes: &[u8]) -> Result<Record> {
    let value = serde_json::from_slice(bytes)
        .map_err(|err| PersistenceError::corrupt(what, format!("not JSON: {err}")))?;
    Record::of("", value)
        .map_err(|err| PersistenceError::corrupt(what, format!("document: {}", err.reason)))
}

/// Checks `formatVersion`: 1 ..= [`BACKUP_FORMAT_VERSION`].
fn read_format_version(what: &str, fields: &mut Record) -> Result<u64> {
    match fields.count("formatVersion") {
        Ok(0) => Err(FieldError::new("formatVersion", "0 is not a version").corrupt(what)),
        Ok(version) if version > BACKUP_FORMAT_VERSION => {
            Err(PersistenceError::UnsupportedFormat {
                what: what.to_owned(),
                version,
            })
        }
        Ok(version) => Ok(version),
        Err(err) => Err(err.corrupt(what)),
    }
}

/// Reads a JSON string as an id with `parse`.
fn id<T>(parse: fn(&str) -> Result<T>) -> impl FnOnce(Value) -> Result<T, String> {
    move |value| {
        let text = value.into_str()?;
        parse(&text).map_err(|err| err.to_string())
    }
}

/// Reads a JSON string as a SHA-256 in hex.
fn sha256(value: Value) -> Result<String, String> {
    let text = value.into_str()?.into_owned();
    if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(text)
    } else {
        Err(format!("{text:?} is not 64 hex digits"))
    }
}

/// Epoch milliseconds: a non-negative integer.
fn epoch_ms(fields: &mut Record, name: &str) -> Result<i64, FieldError> {
    const WANTED: &str = "epoch milliseconds";
    let ms: u64 = fields.number(name, WANTED)?;
    i64::try_from(ms)
        .map_err(|_| FieldError::new(fields.path_of(name), format!("must be {WANTED}, not {ms}")))
}

/// An array of session ids.
fn session_ids(fields: &mut Record, name: &str) -> Result<Vec<SessionId>, FieldError> {
    fields.items(name, |path, item| {
        convert_member(item, Kind::String, || path, id(SessionId::parse))
    })
}

/// An array of objects, each to read field by field.
fn objects(fields: &mut Record, name: &str) -> Result<Vec<Record>, FieldError> {
    fields.items(name, Record::of)
}

/// The first item that occurs twice.
fn first_duplicate<'a>(mut ids: impl Iterator<Item = &'a SessionId>) -> Option<&'a SessionId> {
    let mut seen = HashSet::new();
    ids.find(|id| !seen.insert(*id))
}

fn join<'a>(ids: impl Iterator<Item = &'a SessionId>) -> String {
    ids.map(SessionId::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const T0: i64 = 1_736_157_600_000;
    const ARCHIVE_1: &str = r#"{"metadata":{"sessionId":"s1","messageCount":2},"conversation":{"messages":[{"role":"user","content":"Hi \"there\"\n"},{"role":"assistant","content":"Héllo ✓"}]}}"#;
    const ARCHIVE_2: &str = r#"{"metadata":{"sessionId":"s2"},"conversation":{"messages":[]}}"#;
    const ARCHIVE_3: &str = "{\n  \"pretty\": [1, 2.5, null]\n}";

    fn sid(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    fn bid() -> BackupId {
        BackupId::parse("backup_1736157600000_00ff").unwrap()
    }

    fn backup() -> EncodedBackup {
        let (s1, s2, s3) = (sid("s1"), sid("s2"), sid("s3"));
        let inputs = [
            BackupSessionInput {
                session_id: &s1,
                archive_json: ARCHIVE_1.as_bytes(),
            },
            BackupSessionInput {
                session_id: &s2,
                archive_json: ARCHIVE_2.as_bytes(),
            },
            BackupSessionInput {
                session_id: &s3,
                archive_json: ARCHIVE_3.as_bytes(),
            },
        ];
        encode_backup(&bid(), T0, &inputs, &[sid("gone")], gzip::DEFAULT_LEVEL).unwrap()
    }

    fn bundle_text(data: &[u8]) -> String {
        String::from_utf8(gzip::decompress("t", data, 1 << 20).unwrap()).unwrap()
    }

    /// The backup with its bundle replaced by `text`, re-hashed so `dataSha256` matches.
    fn with_bundle(text: &str) -> (BackupManifest, Vec<u8>) {
        let mut manifest = backup().manifest;
        let data = gzip::compress(text.as_bytes(), 6).unwrap();
        manifest.data_sha256 = sha256_hex(&data);
        (manifest, data)
    }

    fn verify_err(text: &str) -> PersistenceError {
        let (manifest, data) = with_bundle(text);
        verify_backup(&manifest, &data).unwrap_err()
    }

    fn manifest_err(text: &str) -> PersistenceError {
        decode_manifest("backups/b/manifest.json", text.as_bytes()).unwrap_err()
    }

    fn manifest_json() -> Value {
        serde_json::from_slice(&encode_manifest(&backup().manifest).unwrap()).unwrap()
    }

    #[test]
    fn manifest_records_every_session() {
        let backup = backup();
        let manifest = &backup.manifest;
        assert_eq!(manifest.format_version, 1);
        assert_eq!(manifest.backup_id, bid());
        assert_eq!(manifest.created_at_ms, T0);
        assert_eq!(manifest.session_ids, [sid("s1"), sid("s2"), sid("s3")]);
        assert_eq!(manifest.missing_session_ids, [sid("gone")]);
        assert_eq!(
            manifest.total_size,
            (ARCHIVE_1.len() + ARCHIVE_2.len() + ARCHIVE_3.len()) as u64
        );
        assert_eq!(manifest.data_sha256, sha256_hex(&backup.data));
        assert_eq!(
            manifest.sessions[0],
            BackupSessionEntry {
                session_id: sid("s1"),
                sha256: sha256_hex(ARCHIVE_1.as_bytes()),
                size: ARCHIVE_1.len() as u64,
            }
        );
    }

    #[test]
    fn manifest_json_is_exact_and_round_trips() {
        let manifest = backup().manifest;
        let text = String::from_utf8(encode_manifest(&manifest).unwrap()).unwrap();
        let sessions = manifest
            .sessions
            .iter()
            .map(|s| {
                format!(
                    r#"{{"sessionId":"{}","sha256":"{}","size":{}}}"#,
                    s.session_id, s.sha256, s.size
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            text,
            format!(
                r#"{{"formatVersion":1,"backupId":"backup_1736157600000_00ff","createdAt":{T0},"sessionIds":["s1","s2","s3"],"missingSessionIds":["gone"],"totalSize":{},"dataSha256":"{}","sessions":[{sessions}]}}"#,
                manifest.total_size, manifest.data_sha256
            )
        );
        assert_eq!(decode_manifest("m", text.as_bytes()).unwrap(), manifest);

        // A backup made for one user names that user after createdAt.
        let owned = BackupManifest {
            user_id: Some(UserId::parse("auth0|Zoë").unwrap()),
            ..manifest
        };
        let text = String::from_utf8(encode_manifest(&owned).unwrap()).unwrap();
        assert!(
            text.contains(&format!(
                r#""createdAt":{T0},"userId":"auth0|Zoë","sessionIds""#
            )),
            "{text}"
        );
        assert_eq!(decode_manifest("m", text.as_bytes()).unwrap(), owned);
    }

    #[test]
    fn bundle_embeds_archives_as_strings_with_their_checksums() {
        let backup = backup();
        let text = bundle_text(&backup.data);
        let expected_session = |id: &str, archive: &str| {
            format!(
                r#"{{"sessionId":"{id}","sha256":"{}","size":{},"archive":{}}}"#,
                sha256_hex(archive.as_bytes()),
                archive.len(),
                Value::from(archive)
            )
        };
        assert_eq!(
            text,
            format!(
                r#"{{"formatVersion":1,"backupId":"backup_1736157600000_00ff","createdAt":{T0},"sessions":[{},{},{}]}}"#,
                expected_session("s1", ARCHIVE_1),
                expected_session("s2", ARCHIVE_2),
                expected_session("s3", ARCHIVE_3)
            )
        );
    }

    #[test]
    fn verify_returns_the_exact_archives_in_order() {
        let backup = backup();
        let verified = verify_backup(&backup.manifest, &backup.data).unwrap();
        assert_eq!(verified.backup_id, bid());
        assert_eq!(verified.created_at_ms, T0);
        assert_eq!(verified.missing_session_ids, [sid("gone")]);
        let restored: Vec<(&str, &str)> = verified
            .sessions
            .iter()
            .map(|s| (s.session_id.as_str(), s.archive_json.as_str()))
            .collect();
        assert_eq!(
            restored,
            [("s1", ARCHIVE_1), ("s2", ARCHIVE_2), ("s3", ARCHIVE_3)]
        );
    }

    #[test]
    fn an_empty_backup_round_trips() {
        let encoded = encode_backup(&bid(), T0, &[], &[sid("a")], 6).unwrap();
        assert_eq!(encoded.manifest.total_size, 0);
        let verified = verify_backup(&encoded.manifest, &encoded.data).unwrap();
        assert!(verified.sessions.is_empty());
        assert_eq!(verified.missing_session_ids, [sid("a")]);
    }

    #[test]
    fn encoder_rejects_bad_sessions() {
        let (s1, s2) = (sid("s1"), sid("s2"));
        let input = |id, json: &'static [u8]| BackupSessionInput {
            session_id: id,
            archive_json: json,
        };
        let cases: [(Vec<BackupSessionInput<'_>>, Vec<SessionId>, &str); 4] = [
            (
                vec![input(&s1, b"{}"), input(&s2, b"\xff")],
                vec![],
                "sessions[1]: archive of session s2 is not UTF-8",
            ),
            (
                vec![input(&s1, b"{\"a\":")],
                vec![],
                "sessions[0]: archive of session s1 is not JSON",
            ),
            (
                vec![input(&s1, b"{}"), input(&s1, b"{}")],
                vec![],
                "sessions[1]: session s1 is listed twice",
            ),
            (
                vec![input(&s1, b"{}")],
                vec![sid("x"), s1.clone()],
                "missingSessionIds[1]: session s1 is also in the backup",
            ),
        ];
        for (sessions, missing, message) in cases {
            let err = encode_backup(&bid(), T0, &sessions, &missing, 6).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains(message), "{err}");
        }
        let err = encode_backup(&bid(), -1, &[], &[], 6).unwrap_err();
        assert!(err.to_string().contains("createdAt"), "{err}");
        let err = encode_backup(&bid(), T0, &[], &[], 10).unwrap_err();
        assert!(err.to_string().contains("compressionLevel"), "{err}");
    }

    #[test]
    fn every_single_byte_corruption_of_the_data_is_a_checksum_mismatch() {
        let backup = backup();
        let mut data = backup.data.clone();
        for position in 0..data.len() {
            data[position] ^= 0x01;
            let err = verify_backup(&backup.manifest, &data).unwrap_err();
            assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
            assert!(
                err.to_string()
                    .contains("backups/backup_1736157600000_00ff/data.json.gz"),
                "{err}"
            );
            data[position] ^= 0x01;
        }
        let err = verify_backup(&backup.manifest, &data[..data.len() - 1]).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH");
    }

    #[test]
    fn a_corrupted_session_is_named_even_when_the_data_was_rehashed() {
        let text = bundle_text(&backup().data).replace("Héllo", "Hállo");
        let err = verify_err(&text);
        assert_eq!(err.code(), "CHECKSUM_MISMATCH");
        let PersistenceError::ChecksumMismatch {
            what,
            expected,
            actual,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(what, "backup backup_1736157600000_00ff session s1");
        assert_eq!(expected, sha256_hex(ARCHIVE_1.as_bytes()));
        assert_eq!(
            actual,
            sha256_hex(ARCHIVE_1.replace("Héllo", "Hállo").as_bytes())
        );
    }

    #[test]
    fn a_manifest_checksum_that_disagrees_with_the_data_names_the_session() {
        let mut backup = backup();
        backup.manifest.sessions[2].sha256 = sha256_hex(b"other");
        let err = verify_backup(&backup.manifest, &backup.data).unwrap_err();
        assert_eq!(err.code(), "CHECKSUM_MISMATCH");
        assert!(err.to_string().contains("session s3"), "{err}");
        assert!(err.to_string().contains(&sha256_hex(b"other")), "{err}");
    }

    #[test]
    fn sessions_missing_from_either_side_are_named() {
        let text = bundle_text(&backup().data);
        let mut bundle: Value = serde_json::from_str(&text).unwrap();
        let sessions = bundle["sessions"].as_array_mut().unwrap();
        let mut extra = sessions[1].clone();
        extra["sessionId"] = "s9".into();
        sessions.push(extra);
        let err = verify_err(&bundle.to_string());
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(
            err.to_string()
                .contains("sessions in the data but not in the manifest: s9"),
            "{err}"
        );

        let mut bundle: Value = serde_json::from_str(&text).unwrap();
        let sessions = bundle["sessions"].as_array_mut().unwrap();
        sessions.remove(2);
        sessions.remove(0);
        let err = verify_err(&bundle.to_string());
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(
            err.to_string()
                .contains("sessions in the manifest but not in the data: s1, s3"),
            "{err}"
        );

        let mut bundle: Value = serde_json::from_str(&text).unwrap();
        let sessions = bundle["sessions"].as_array_mut().unwrap();
        let twin = sessions[0].clone();
        sessions.push(twin);
        assert!(verify_err(&bundle.to_string())
            .to_string()
            .contains("session s1 appears twice"));
    }

    #[test]
    fn bundle_fields_must_agree_with_the_manifest() {
        let text = bundle_text(&backup().data);
        let edit = |edit: &dyn Fn(&mut Value)| {
            let mut bundle: Value = serde_json::from_str(&text).unwrap();
            edit(&mut bundle);
            verify_err(&bundle.to_string())
        };
        let err = edit(&|b| b["backupId"] = "backup_other".into());
        assert!(
            err.to_string()
                .contains("backupId backup_other is not the manifest's"),
            "{err}"
        );
        let err = edit(&|b| b["createdAt"] = (T0 + 1).into());
        assert!(err.to_string().contains("createdAt"), "{err}");
        let err = edit(&|b| b["sessions"][1]["size"] = 1.into());
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("session s2: archive is"), "{err}");
        let err = edit(&|b| b["sessions"][1]["archive"] = 5.into());
        assert!(
            err.to_string()
                .contains("sessions[1].archive: must be a string, not a number"),
            "{err}"
        );
        let err = edit(&|b| b["sessions"][0]["sessionId"] = "a/b".into());
        assert!(
            err.to_string()
                .contains("sessions[0].sessionId: invalid sessionId"),
            "{err}"
        );
        let err = edit(&|b| b["sessions"][2]["sha256"] = "xyz".into());
        assert!(
            err.to_string()
                .contains("sessions[2].sha256: \"xyz\" is not 64 hex digits"),
            "{err}"
        );
        let err = edit(&|b| b["formatVersion"] = 2.into());
        assert_eq!(err.code(), "UNSUPPORTED_FORMAT");
        let err = edit(&|b| b["sessions"] = serde_json::json!({}));
        assert!(
            err.to_string().contains("sessions: must be an array"),
            "{err}"
        );
        let err = edit(&|b| b["sessions"][0] = serde_json::json!([]));
        assert!(
            err.to_string().contains("sessions[0]: must be an object"),
            "{err}"
        );
        for err in [
            edit(&|b| b["formatVersion"] = 2.into()),
            edit(&|b| b["sessions"][0] = serde_json::json!([])),
        ] {
            assert!(
                err.to_string()
                    .contains("backups/backup_1736157600000_00ff/data.json.gz"),
                "{err}"
            );
        }
    }

    #[test]
    fn undecodable_bundles_are_corrupt() {
        let err = verify_err("not json");
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = verify_err("[]");
        assert!(
            err.to_string()
                .contains("document: must be an object, not an array"),
            "{err}"
        );

        let mut manifest = backup().manifest;
        let data = b"plain bytes".to_vec();
        manifest.data_sha256 = sha256_hex(&data);
        let err = verify_backup(&manifest, &data).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("gzip"), "{err}");

        // A bundle larger than the manifest's sizes allow is refused before it is inflated.
        let err = verify_err(&" ".repeat(1 << 16));
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("inflates to more than"), "{err}");
    }

    #[test]
    fn manifest_decoder_names_the_faulty_field() {
        let edit = |edit: &dyn Fn(&mut Value)| {
            let mut manifest = manifest_json();
            edit(&mut manifest);
            manifest_err(&manifest.to_string())
        };
        let cases: Vec<(PersistenceError, &str)> = vec![
            (manifest_err("{"), "not JSON"),
            (
                manifest_err("7"),
                "document: must be an object, not a number",
            ),
            (
                edit(&|m| {
                    m.as_object_mut().unwrap().remove("formatVersion");
                }),
                "formatVersion: missing",
            ),
            (
                edit(&|m| m["formatVersion"] = 0.into()),
                "formatVersion: 0 is not a version",
            ),
            (
                edit(&|m| m["formatVersion"] = "1".into()),
                "formatVersion: must be a non-negative integer",
            ),
            (
                edit(&|m| m["backupId"] = "../x".into()),
                "backupId: invalid backupId",
            ),
            (
                edit(&|m| m["createdAt"] = (-5).into()),
                "createdAt: must be epoch milliseconds, not -5",
            ),
            (
                edit(&|m| m["userId"] = 7.into()),
                "userId: must be a string, not a number",
            ),
            (edit(&|m| m["userId"] = "".into()), "userId: invalid userId"),
            (
                edit(&|m| m["sessionIds"][1] = 3.into()),
                "sessionIds[1]: must be a string, not a number",
            ),
            (
                edit(&|m| m["missingSessionIds"][0] = "".into()),
                "missingSessionIds[0]: invalid sessionId",
            ),
            (
                edit(&|m| m["totalSize"] = 1.5.into()),
                "totalSize: must be a non-negative integer",
            ),
            (
                edit(&|m| m["dataSha256"] = "abc".into()),
                "dataSha256: \"abc\" is not 64 hex digits",
            ),
            (
                edit(&|m| {
                    m["sessions"][1].as_object_mut().unwrap().remove("size");
                }),
                "sessions[1].size: missing",
            ),
            (
                edit(&|m| m["sessionIds"][2] = "s9".into()),
                "sessionIds [s1, s2, s9] do not match sessions[].sessionId [s1, s2, s3]",
            ),
            (
                edit(&|m| m["missingSessionIds"][0] = "s2".into()),
                "session s2 is listed twice",
            ),
            (
                edit(&|m| m["totalSize"] = 3.into()),
                "totalSize 3 is not the sum of sessions[].size",
            ),
        ];
        for (err, reason) in cases {
            assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
            assert!(err.to_string().contains("backups/b/manifest.json"), "{err}");
            assert!(err.to_string().contains(reason), "{reason}: {err}");
        }
        let err = edit(&|m| m["formatVersion"] = 2.into());
        assert_eq!(err.code(), "UNSUPPORTED_FORMAT");
        assert_eq!(
            err.to_string(),
            "unsupported format version 2 in backups/b/manifest.json"
        );
    }

    const LEGACY_ID: &str = "backup_1736157600000_k3j9x2";

    /// Data as the earlier implementation's `JSON.stringify(backupData)` wrote it.
    fn legacy_data() -> String {
        r#"[{"sessionId":"s1","data":{"metadata":{"sessionId":"s1"},"conversation":{"messages":[{"role":"user","content":"Hi ✓"}]}},"size":88},{"sessionId":"s2","data":"{\"conversation\":{}}","size":19}]"#.to_owned()
    }

    fn legacy_manifest(checksum: &str) -> String {
        format!(
            r#"{{"backupId":"{LEGACY_ID}","timestamp":{T0},"sessionIds":["s1","s2","s3"],"totalSize":107,"checksum":"{checksum}","metadata":{{"version":"1.0","sessionCount":2}}}}"#
        )
    }

    fn legacy_err(manifest: &str) -> PersistenceError {
        decode_legacy_manifest("backup_manifest:x", manifest.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_manifests_shape_tells_its_writer() {
        let shape = |text: &str| manifest_shape(text.as_bytes());
        assert_eq!(
            shape(r#" {"formatVersion":1,"backupId":"b"}"#),
            ManifestShape::Current
        );
        assert_eq!(shape(r#"{"formatVersion":null}"#), ManifestShape::Current);
        assert_eq!(
            shape(&legacy_manifest(&"a".repeat(64))),
            ManifestShape::Legacy
        );
        assert_eq!(shape("{}"), ManifestShape::Legacy);
        for damaged in ["", "[1]", "{\"backupId\":", "null", "\u{fffd}"] {
            assert_eq!(shape(damaged), ManifestShape::Unreadable, "{damaged:?}");
        }
    }

    #[test]
    fn legacy_manifest_decodes() {
        let checksum = sha256_hex(legacy_data().as_bytes());
        let manifest =
            decode_legacy_manifest("k", legacy_manifest(&checksum.to_uppercase()).as_bytes())
                .unwrap();
        assert_eq!(
            manifest,
            LegacyBackupManifest {
                backup_id: BackupId::parse(LEGACY_ID).unwrap(),
                timestamp_ms: Some(T0),
                session_ids: vec![sid("s1"), sid("s2"), sid("s3")],
                total_size: Some(107),
                checksum,
                metadata: Some(serde_json::json!({"version": "1.0", "sessionCount": 2})),
            }
        );
        let minimal = format!(
            r#"{{"backupId":"{LEGACY_ID}","timestamp":"2025-01-06T10:00:00Z","sessionIds":[],"checksum":"{}"}}"#,
            "0".repeat(64)
        );
        let manifest = decode_legacy_manifest("k", minimal.as_bytes()).unwrap();
        assert_eq!(manifest.timestamp_ms, None);
        assert_eq!(manifest.total_size, None);
        assert_eq!(manifest.metadata, None);
    }

    #[test]
    fn legacy_manifest_decoder_names_the_faulty_field() {
        let valid = legacy_manifest(&"a".repeat(64));
        for (text, reason) in [
            ("nope".to_owned(), "not JSON"),
            (
                valid.replace(r#""checksum""#, r#""checksun""#),
                "checksum: missing",
            ),
            (
                valid.replace(&"a".repeat(64), "abc"),
                "checksum: \"abc\" is not 64 hex digits",
            ),
            (
                valid.replace(LEGACY_ID, "a b"),
                "backupId: invalid backupId",
            ),
            (
                valid.replace(r#"["s1","s2","s3"]"#, "{}"),
                "sessionIds: must be an array",
            ),
        ] {
            let err = legacy_err(&text);
            assert_eq!(err.code(), "CORRUPT_DATA");
            assert!(err.to_string().contains("backup_manifest:x"), "{err}");
            assert!(err.to_string().contains(reason), "{reason}: {err}");
        }
    }

    fn legacy_manifest_for(data: &str) -> LegacyBackupManifest {
        let text = legacy_manifest(&sha256_hex(data.as_bytes()));
        decode_legacy_manifest("k", text.as_bytes()).unwrap()
    }

    #[test]
    fn legacy_backup_verifies_against_the_stored_text() {
        let data = legacy_data();
        let sessions = verify_legacy_backup(&legacy_manifest_for(&data), data.as_bytes()).unwrap();
        assert_eq!(
            sessions,
            [
                LegacyBackupSession {
                    session_id: sid("s1"),
                    conversation_json: r#"{"metadata":{"sessionId":"s1"},"conversation":{"messages":[{"role":"user","content":"Hi ✓"}]}}"#.into(),
                },
                LegacyBackupSession {
                    session_id: sid("s2"),
                    conversation_json: r#"{"conversation":{}}"#.into(),
                },
            ]
        );
    }

    #[test]
    fn legacy_backup_reindented_since_still_verifies() {
        let data = legacy_data();
        let manifest = legacy_manifest_for(&data);
        let value: Value = serde_json::from_str(&data).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert_ne!(pretty, data);
        let sessions = verify_legacy_backup(&manifest, pretty.as_bytes()).unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[1].conversation_json, r#"{"conversation":{}}"#);
    }

    #[test]
    fn every_single_byte_corruption_of_legacy_data_is_a_checksum_mismatch() {
        let data = legacy_data();
        let manifest = legacy_manifest_for(&data);
        let mut bytes = data.into_bytes();
        for position in 0..bytes.len() {
            bytes[position] ^= 0x01;
            let err = verify_legacy_backup(&manifest, &bytes).unwrap_err();
            assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
            assert!(
                err.to_string()
                    .contains("backups/backup_1736157600000_k3j9x2/data.json"),
                "{err}"
            );
            bytes[position] ^= 0x01;
        }
    }

    #[test]
    fn malformed_legacy_data_with_a_matching_checksum_is_corrupt() {
        for (data, reason) in [
            ("{}", "must be a JSON array, not an object"),
            ("[1]", "[0]: must be an object, not a number"),
            (r#"[{"data":{}}]"#, "[0].sessionId: missing"),
            (r#"[{"sessionId":"s1"}]"#, "[0].data: missing"),
            ("[", "not JSON"),
        ] {
            let err =
                verify_legacy_backup(&legacy_manifest_for(data), data.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{data}");
            assert!(err.to_string().contains("data.json"), "{err}");
            assert!(err.to_string().contains(reason), "{reason}: {err}");
        }
    }

    #[test]
    fn a_legacy_conversation_is_wrapped_as_a_legacy_backup_document() {
        let data = json!({
            "sessionId": "s1",
            "messages": [{"id": "m1", "sessionId": "s1", "content": "refund my invoice",
                          "role": "user", "timestamp": 5}],
            "summary": "billing",
            "context": {},
            "sessionState": {"id": "s1", "userId": "u1", "status": "ended",
                             "createdAt": 10, "lastActivity": 40}
        });
        let text = legacy_backup_document("w", &data.to_string(), 1_736_157_600_000).unwrap();
        let decoded = decode_archive(text.as_bytes(), None, u64::MAX).unwrap();
        assert_eq!(decoded.metadata.session_id, "s1");
        assert_eq!(decoded.metadata.user_id.as_deref(), Some("u1"));
        assert_eq!(decoded.metadata.archived_at, 1_736_157_600_000);
        assert_eq!(decoded.metadata.message_count, 1);
        assert_eq!(decoded.metadata.duration, 30);
        assert_eq!(decoded.metadata.topics, ["billing"]);
        assert_eq!(decoded.metadata.format_version, 0);
    }

    #[test]
    fn a_legacy_document_is_kept_as_it_is_and_bad_data_is_named() {
        let document = r#"{"metadata":{"sessionId":"s1"},"conversation":{}}"#;
        assert_eq!(legacy_backup_document("w", document, 5).unwrap(), document);
        let err = legacy_backup_document("backups/b/data.json session s1", "[1", 5).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(
            err.to_string().contains("backups/b/data.json session s1"),
            "{err}"
        );
        let err = legacy_backup_document("w", r#"{"sessionId":"s1"}"#, 5).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_736_157_600_000;

    fn bid() -> BackupId {
        BackupId::parse("backup_1").unwrap()
    }

    /// Archive-like JSON text: strings with quotes, backslashes, newlines and non-ASCII.
    fn archive_json() -> impl Strategy<Value = String> {
        prop::collection::vec(("[a-z]{1,6}", "(.|\n|\"|\\\\){0,24}"), 0..6).prop_map(|pairs| {
            let map: Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            Value::Object(map).to_string()
        })
    }

    fn sessions() -> impl Strategy<Value = Vec<(SessionId, String)>> {
        prop::collection::btree_map("[a-z0-9_-]{1,12}", archive_json(), 0..5).prop_map(|map| {
            map.into_iter()
                .map(|(id, json)| (SessionId::parse(&id).unwrap(), json))
                .collect()
        })
    }

    fn encode(sessions: &[(SessionId, String)]) -> EncodedBackup {
        let inputs: Vec<BackupSessionInput<'_>> = sessions
            .iter()
            .map(|(id, json)| BackupSessionInput {
                session_id: id,
                archive_json: json.as_bytes(),
            })
            .collect();
        encode_backup(&bid(), T0, &inputs, &[], 6).unwrap()
    }

    proptest! {
        #[test]
        fn backups_round_trip_exactly(sessions in sessions()) {
            let encoded = encode(&sessions);
            let manifest_bytes = encode_manifest(&encoded.manifest).unwrap();
            let manifest = decode_manifest("m", &manifest_bytes).unwrap();
            prop_assert_eq!(&manifest, &encoded.manifest);
            let verified = verify_backup(&manifest, &encoded.data).unwrap();
            let restored: Vec<(SessionId, String)> = verified
                .sessions
                .into_iter()
                .map(|s| (s.session_id, s.archive_json))
                .collect();
            prop_assert_eq!(restored, sessions);
        }

        #[test]
        fn a_changed_session_is_named(
            sessions in sessions().prop_filter("non-empty", |s| !s.is_empty()),
            pick in any::<prop::sample::Index>(),
        ) {
            let encoded = encode(&sessions);
            let victim = pick.index(sessions.len());
            let mut bundle: Value =
                serde_json::from_slice(&gzip::decompress("t", &encoded.data, 1 << 20).unwrap())
                    .unwrap();
            let archive = bundle["sessions"][victim]["archive"].as_str().unwrap().to_owned();
            bundle["sessions"][victim]["archive"] = format!("{archive} ").into();
            let data = gzip::compress(bundle.to_string().as_bytes(), 6).unwrap();
            let mut manifest = encoded.manifest;
            manifest.data_sha256 = sha256_hex(&data);
            let err = verify_backup(&manifest, &data).unwrap_err();
            prop_assert_eq!(err.code(), "CHECKSUM_MISMATCH");
            let expected = format!("backup backup_1 session {}", sessions[victim].0);
            prop_assert!(err.to_string().contains(&expected), "{}", err);
        }

        #[test]
        fn manifest_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_manifest("m", &bytes);
            let _ = decode_legacy_manifest("m", &bytes);
        }

        #[test]
        fn damaged_manifests_never_panic(
            sessions in sessions(),
            position in any::<prop::sample::Index>(),
            mask in 1u8..,
        ) {
            let mut bytes = encode_manifest(&encode(&sessions).manifest).unwrap();
            let position = position.index(bytes.len());
            bytes[position] ^= mask;
            let _ = decode_manifest("m", &bytes);
            let _ = decode_manifest("m", &bytes[..position]);
        }

        #[test]
        fn verify_never_panics_on_rehashed_garbage(
            sessions in sessions(),
            garbage in prop::collection::vec(any::<u8>(), 0..256),
            position in any::<prop::sample::Index>(),
            mask in 1u8..,
        ) {
            let encoded = encode(&sessions);
            let inflated = gzip::decompress("t", &encoded.data, 1 << 20).unwrap();
            let mut flipped = inflated.clone();
            let position = position.index(flipped.len());
            flipped[position] ^= mask;
            let candidates = [
                garbage.clone(),
                gzip::compress(&garbage, 6).unwrap(),
                gzip::compress(&flipped, 6).unwrap(),
                gzip::compress(&inflated[..position], 6).unwrap(),
                encoded.data[..position.min(encoded.data.len())].to_vec(),
            ];
            for data in candidates {
                let mut manifest = encoded.manifest.clone();
                manifest.data_sha256 = sha256_hex(&data);
                let _ = verify_backup(&manifest, &data);
            }
        }

        #[test]
        fn legacy_verify_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..256)) {
            let manifest = LegacyBackupManifest {
                backup_id: bid(),
                timestamp_ms: None,
                session_ids: vec![],
                total_size: None,
                checksum: sha256_hex(&garbage),
                metadata: None,
            };
            let _ = verify_legacy_backup(&manifest, &garbage);
        }
    }
}
