//! Multi-pack backups: the archives in several packs (`pack-<n>.json`, format 3; format 2 wrote
//! gzip'd `pack-<n>.json.gz`), each bounded in bytes and sessions and checked by its own
//! SHA-256, and a manifest, written last as the commit point, that lists every pack. A backup
//! of any size is then written and restored one pack at a time: memory holds one pack, never
//! the whole backup. Format 1 backups (one data bundle) stay readable through the parent module.
//!
//! A format 3 pack holds each archive **as stored**: its R2 key, its metadata record and its
//! stored bytes (base64), so that a backup never decodes an archive (archives will be
//! encrypted, opaque to backups) and a restore writes the very same bytes back under the very
//! same key. The pack itself is plain JSON: its archives are compressed already, and gzip of
//! their base64 would cost ~50 times the CPU of the base64 to save its third (measured:
//! docs/FORMAT.md, "Pack (format 3)").
//! Archives of the earlier implementation (plain JSON, no recorded checksum) are carried as
//! their document text, as format 2 carried every archive, and restored as format 2 restores
//! them.
//!
//! A format 2 pack is a format 1 data bundle with its index (`"pack": n`). The manifest
//! records, per pack, its key, the SHA-256 and size of its stored bytes, and the sessions in
//! it. A session appears at most once in a pack; an incremental backup may hold two archives
//! of one session in different packs. Layouts: docs/FORMAT.md ("Backups").

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

#[cfg(any(test, feature = "conformance"))]
use super::{checked_sessions, BackupSessionInput, BundleSession};
use super::{
    epoch_ms, first_duplicate, id, join, objects, open, read_session_entry, session_ids, sha256,
    BackupSession, BackupSessionEntry, Record, BUNDLE_OVERHEAD, BUNDLE_OVERHEAD_PER_SESSION,
};
use crate::codec::archive::ArchiveMetadata;
use crate::codec::fields::{convert_member, FieldError, Kind, Member};
use crate::codec::gzip;
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, verify_sha256};
use crate::keys::{
    archive_object_key, backup_pack_key, encrypted_archive_object_key, gzip_backup_pack_key,
    BackupId, SessionId, UserId,
};

/// Version of the packs and manifests of the multi-pack backups written today: archives as
/// stored, plain JSON packs.
pub const PACKED_FORMAT_VERSION: u64 = 3;

/// Version of the earlier multi-pack backups: archive documents inflated, gzip'd packs. Read,
/// and committed by a backup Workflow instance whose packs were written as such.
pub const GZIP_PACKED_FORMAT_VERSION: u64 = 2;

/// The key of pack `index` of a backup of `format_version` (2 or 3).
pub fn pack_key(format_version: u64, backup_id: &BackupId, index: u32) -> String {
    if format_version == GZIP_PACKED_FORMAT_VERSION {
        gzip_backup_pack_key(backup_id, index)
    } else {
        backup_pack_key(backup_id, index)
    }
}

/// Who made a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BackupKind {
    /// `createBackup`, called by the application.
    Manual,
    /// The backup Workflow, started on a schedule.
    Automated,
}

/// One pack as the manifest records it. (Deserialize: for the backup Workflow's state; a manifest
/// is read with [`decode_packed_manifest`].)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackRecord {
    /// Its R2 key, `backups/<backupId>/pack-<n>.json` (format 2: `pack-<n>.json.gz`).
    pub key: String,
    /// SHA-256 (hex) of its stored bytes.
    pub sha256: String,
    /// Length of its stored bytes.
    pub stored_size: u64,
    /// Sum of its sessions' `size` (format 3: stored archive bytes; format 2: archive JSON text).
    pub total_size: u64,
    /// Per-session checksums and sizes, in pack order.
    pub sessions: Vec<BackupSessionEntry>,
}

/// The manifest of a multi-pack backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackedManifest {
    /// [`PACKED_FORMAT_VERSION`], or [`GZIP_PACKED_FORMAT_VERSION`] for an earlier backup.
    pub format_version: u64,
    /// The backup.
    pub backup_id: BackupId,
    /// When the backup was made (epoch ms).
    #[serde(rename = "createdAt")]
    pub created_at_ms: i64,
    /// Who made it.
    pub kind: BackupKind,
    /// The user every archive in it belongs to, when it was made for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The backup this one is incremental to: restoring it restores that one first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_backup_id: Option<BackupId>,
    /// Made with `keep: true`: retention's backup policy never deletes it.
    #[serde(skip_serializing_if = "is_false")]
    pub keep: bool,
    /// The archive time up to which an incremental backup is complete: the next one backs up
    /// the archives made after it.
    #[serde(rename = "highWaterMark", skip_serializing_if = "Option::is_none")]
    pub high_water_mark_ms: Option<i64>,
    /// Every session in the backup, once, in pack order.
    pub session_ids: Vec<SessionId>,
    /// Sessions that were asked for but had no archive to back up.
    pub missing_session_ids: Vec<SessionId>,
    /// Sum of the packs' `totalSize`.
    pub total_size: u64,
    /// The packs, in order: `packs[n]` is `pack-<n>.json` (format 2: `pack-<n>.json.gz`).
    pub packs: Vec<PackRecord>,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl PackedManifest {
    /// A format 3 manifest of `packs` with the session lists and totals they imply.
    pub fn new(
        backup_id: BackupId,
        created_at_ms: i64,
        kind: BackupKind,
        packs: Vec<PackRecord>,
        missing_session_ids: Vec<SessionId>,
    ) -> Self {
        let mut seen = std::collections::HashSet::new();
        let session_ids: Vec<SessionId> = packs
            .iter()
            .flat_map(|pack| &pack.sessions)
            .filter(|entry| seen.insert(&entry.session_id))
            .map(|entry| entry.session_id.clone())
            .collect();
        PackedManifest {
            format_version: PACKED_FORMAT_VERSION,
            backup_id,
            created_at_ms,
            kind,
            user_id: None,
            parent_backup_id: None,
            keep: false,
            high_water_mark_ms: None,
            session_ids,
            missing_session_ids,
            total_size: packs.iter().map(|pack| pack.total_size).sum(),
            packs,
        }
    }

    /// The manifest as JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|err| PersistenceError::invalid_input("manifest", err.to_string()))
    }
}

/// One archive of a pack, as a backup puts it in and a restore gets it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackEntry {
    /// An archive as stored (format 3): written back byte for byte under its key.
    Stored(Box<StoredArchive>),
    /// An archive document as JSON text (every archive of a format 2 pack; an archive of the
    /// earlier implementation in format 3): encoded again on restore.
    Document(BackupSession),
}

impl PackEntry {
    /// The archive's session.
    pub fn session_id(&self) -> &SessionId {
        match self {
            PackEntry::Stored(stored) => &stored.session_id,
            PackEntry::Document(document) => &document.session_id,
        }
    }

    /// The bytes it takes in a pack's bounds: the stored bytes, or the document text.
    pub fn size(&self) -> u64 {
        match self {
            PackEntry::Stored(stored) => stored.bytes.len() as u64,
            PackEntry::Document(document) => document.archive_json.len() as u64,
        }
    }
}

/// An archive exactly as R2 stores it, with what its KV entries are rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArchive {
    /// The session.
    pub session_id: SessionId,
    /// Its R2 key, `archive_object_key(sessionId, metadata.archivedAt)`.
    pub key: String,
    /// Its metadata record (as in KV `archive_meta:<sid>`); `sha256` and `storedSize` describe
    /// `bytes`.
    pub metadata: ArchiveMetadata,
    /// `metadata` came from a KV listing entry whose `summary` was cut (or `topics` emptied)
    /// to fit, the archive's own record describing a newer archive: restored entries say so.
    pub summary_truncated: bool,
    /// The stored bytes, opaque.
    pub bytes: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pack<'a, S> {
    format_version: u64,
    backup_id: &'a BackupId,
    created_at: i64,
    pack: u32,
    sessions: Vec<S>,
}

/// A format 3 pack entry as written, in its documented member order.
#[derive(Serialize)]
#[serde(untagged)]
enum EntryOut<'a> {
    #[serde(rename_all = "camelCase")]
    Stored {
        session_id: &'a SessionId,
        sha256: &'a str,
        size: u64,
        key: &'a str,
        metadata: &'a ArchiveMetadata,
        #[serde(skip_serializing_if = "is_false")]
        summary_truncated: bool,
        archive: String,
    },
    #[serde(rename_all = "camelCase")]
    Document {
        session_id: &'a SessionId,
        sha256: String,
        size: u64,
        document: &'a str,
    },
}

/// Builds pack `index` of a backup (format 3) from `entries`: its stored bytes (plain JSON)
/// and its record for the manifest. A stored archive's checksum is taken from its metadata,
/// which the caller checked against the bytes when it read them: nothing is hashed twice.
///
/// Errors: `INVALID_INPUT` naming `sessions[i]` for a session listed twice, a document that is
/// not JSON, or a stored archive whose metadata does not describe it (session, size, key), or
/// naming `createdAt` if it is negative.
pub fn encode_pack(
    backup_id: &BackupId,
    created_at_ms: i64,
    index: u32,
    entries: &[PackEntry],
) -> Result<(Vec<u8>, PackRecord)> {
    check_created_at(created_at_ms)?;
    let mut records = Vec::with_capacity(entries.len());
    let mut sessions = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let invalid = |reason: String| {
            PersistenceError::invalid_input(format!("sessions[{position}]"), reason)
        };
        let session_id = entry.session_id();
        if records
            .iter()
            .any(|known: &BackupSessionEntry| known.session_id == *session_id)
        {
            return Err(invalid(format!("session {session_id} is listed twice")));
        }
        let out = entry_out(entry).map_err(invalid)?;
        let (sha256, size) = match &out {
            EntryOut::Stored { sha256, size, .. } => ((*sha256).to_owned(), *size),
            EntryOut::Document { sha256, size, .. } => (sha256.clone(), *size),
        };
        records.push(BackupSessionEntry {
            session_id: session_id.clone(),
            sha256,
            size,
        });
        sessions.push(out);
    }
    let pack = Pack {
        format_version: PACKED_FORMAT_VERSION,
        backup_id,
        created_at: created_at_ms,
        pack: index,
        sessions,
    };
    let stored = serde_json::to_vec(&pack)
        .map_err(|err| PersistenceError::invalid_input("pack", err.to_string()))?;
    let record = PackRecord {
        key: backup_pack_key(backup_id, index),
        sha256: sha256_hex(&stored),
        stored_size: stored.len() as u64,
        total_size: records.iter().map(|entry| entry.size).sum(),
        sessions: records,
    };
    Ok((stored, record))
}

/// `entry` as a pack holds it; what is wrong with it otherwise (a stored archive its metadata
/// does not describe, a document that is not JSON).
fn entry_out(entry: &PackEntry) -> Result<EntryOut<'_>, String> {
    Ok(match entry {
        PackEntry::Stored(stored) => {
            check_stored(stored)?;
            EntryOut::Stored {
                session_id: &stored.session_id,
                sha256: &stored.metadata.sha256,
                size: stored.bytes.len() as u64,
                key: &stored.key,
                metadata: &stored.metadata,
                summary_truncated: stored.summary_truncated,
                archive: BASE64.encode(&stored.bytes),
            }
        }
        PackEntry::Document(document) => {
            let session_id = &document.session_id;
            let text = &document.archive_json;
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|err| format!("archive of session {session_id} is not JSON: {err}"))?;
            EntryOut::Document {
                session_id,
                sha256: sha256_hex(text.as_bytes()),
                size: text.len() as u64,
                document: text,
            }
        }
    })
}

/// One entry exactly as a format 3 pack writes it (compact JSON, in its documented member
/// order), for a line of a store export. Errors: `INVALID_INPUT` naming `what`, as
/// [`encode_pack`] for one entry.
pub fn encode_pack_entry(entry: &PackEntry, what: &str) -> Result<Vec<u8>> {
    let out = entry_out(entry).map_err(|reason| PersistenceError::invalid_input(what, reason))?;
    serde_json::to_vec(&out).map_err(|err| PersistenceError::invalid_input(what, err.to_string()))
}

impl StoredArchive {
    /// What about the archive its metadata does not describe, if anything (see
    /// [`check_stored`]): a backup checks this before packing it, as restore will.
    pub fn check(&self) -> Result<(), String> {
        check_stored(self)
    }
}

/// What about a stored archive its metadata does not describe, if anything: its session, its
/// size, its checksum's form, and its key (the one `archivedAt` gives, so that the index
/// entries rebuilt from the metadata name it).
fn check_stored(stored: &StoredArchive) -> Result<(), String> {
    let metadata = &stored.metadata;
    let session_id = &stored.session_id;
    if metadata.session_id != session_id.as_str() {
        return Err(format!(
            "metadata.sessionId {:?} is not {:?}",
            metadata.session_id,
            session_id.as_str()
        ));
    }
    if metadata.stored_size != stored.bytes.len() as u64 {
        return Err(format!(
            "metadata.storedSize {} is not the {} bytes stored",
            metadata.stored_size,
            stored.bytes.len()
        ));
    }
    sha256(Value::from(metadata.sha256.as_str()))
        .map_err(|err| format!("metadata.sha256: {err}"))?;
    let expected = archive_object_key(session_id, metadata.archived_at)
        .map_err(|err| format!("metadata.archivedAt: {err}"))?;
    // An encrypted archive's key is the same with `.enc` appended.
    let encrypted = encrypted_archive_object_key(session_id, metadata.archived_at)
        .map_err(|err| format!("metadata.archivedAt: {err}"))?;
    if stored.key != expected && stored.key != encrypted {
        return Err(format!(
            "key {:?} is not {expected:?} (nor {encrypted:?}), the key of metadata.archivedAt",
            stored.key
        ));
    }
    Ok(())
}

fn check_created_at(created_at_ms: i64) -> Result<()> {
    if created_at_ms < 0 {
        return Err(PersistenceError::invalid_input(
            "createdAt",
            format!("{created_at_ms} is before 1970"),
        ));
    }
    Ok(())
}

/// Builds pack `index` of a format 2 backup (archive documents, gzip'd at `level`). Backups are
/// written in format 3 since; this writer is kept so that tests can store what earlier versions
/// wrote and check it still restores.
///
/// Errors: `INVALID_INPUT` naming `sessions[i]` for an archive that is not UTF-8 JSON or a
/// session listed twice, or naming `createdAt` if it is negative.
#[cfg(any(test, feature = "conformance"))]
pub fn encode_gzip_pack(
    backup_id: &BackupId,
    created_at_ms: i64,
    index: u32,
    sessions: &[BackupSessionInput<'_>],
    level: u32,
) -> Result<(Vec<u8>, PackRecord)> {
    check_created_at(created_at_ms)?;
    let (entries, texts) = checked_sessions(sessions)?;
    let pack = Pack {
        format_version: GZIP_PACKED_FORMAT_VERSION,
        backup_id,
        created_at: created_at_ms,
        pack: index,
        sessions: entries
            .iter()
            .zip(texts)
            .map(|(entry, archive)| BundleSession {
                session_id: &entry.session_id,
                sha256: &entry.sha256,
                size: entry.size,
                archive,
            })
            .collect(),
    };
    let json = serde_json::to_vec(&pack)
        .map_err(|err| PersistenceError::invalid_input("pack", err.to_string()))?;
    let stored = gzip::compress(&json, level)?;
    let record = PackRecord {
        key: gzip_backup_pack_key(backup_id, index),
        sha256: sha256_hex(&stored),
        stored_size: stored.len() as u64,
        total_size: entries.iter().map(|entry| entry.size).sum(),
        sessions: entries,
    };
    Ok((stored, record))
}

/// Decodes a multi-pack manifest read from `what`, checking its shape and its internal
/// consistency: each pack under its own key, its `totalSize` the sum of its sessions, no session
/// twice in a pack, `sessionIds` the sessions of the packs in order, `missingSessionIds`
/// disjoint from them, `totalSize` the sum of the packs'.
///
/// Errors: `CORRUPT_DATA` naming `what` and the field; `UNSUPPORTED_FORMAT` if written by a
/// newer version.
pub fn decode_packed_manifest(what: &str, bytes: &[u8]) -> Result<PackedManifest> {
    let mut fields = open(what, bytes)?;
    let format_version = fields
        .count("formatVersion")
        .map_err(|err| err.corrupt(what))?;
    if !(GZIP_PACKED_FORMAT_VERSION..=PACKED_FORMAT_VERSION).contains(&format_version) {
        return Err(unsupported_or_corrupt(what, format_version));
    }
    let manifest = read_manifest(format_version, fields).map_err(|err| err.corrupt(what))?;
    check_manifest(&manifest).map_err(|reason| PersistenceError::corrupt(what, reason))?;
    Ok(manifest)
}

/// A version other than the one required (2 or 3): newer is unsupported, older is damage.
fn unsupported_or_corrupt(what: &str, version: u64) -> PersistenceError {
    if version > PACKED_FORMAT_VERSION {
        PersistenceError::UnsupportedFormat {
            what: what.to_owned(),
            version,
        }
    } else {
        let reason = format!("{version} is not a version of multi-pack backups");
        FieldError::new("formatVersion", reason).corrupt(what)
    }
}

fn read_manifest(format_version: u64, mut fields: Record) -> Result<PackedManifest, FieldError> {
    let backup_id = fields.convert("backupId", Kind::String, id(BackupId::parse))?;
    Ok(PackedManifest {
        format_version,
        created_at_ms: epoch_ms(&mut fields, "createdAt")?,
        kind: fields.convert("kind", Kind::String, |value| {
            match value.into_str()?.as_ref() {
                "manual" => Ok(BackupKind::Manual),
                "automated" => Ok(BackupKind::Automated),
                other => Err(format!("{other:?} is not \"manual\" or \"automated\"")),
            }
        })?,
        user_id: fields.optional_convert("userId", Kind::String, id(UserId::parse))?,
        parent_backup_id: fields.optional_convert(
            "parentBackupId",
            Kind::String,
            id(BackupId::parse),
        )?,
        keep: fields
            .optional_convert(
                "keep",
                Kind::Boolean,
                |value| Ok(value == Value::Bool(true)),
            )?
            .unwrap_or(false),
        high_water_mark_ms: fields
            .optional_number::<u64>("highWaterMark", "epoch milliseconds")?
            .map(|ms| {
                let reason = format!("must be epoch milliseconds, not {ms}");
                i64::try_from(ms)
                    .map_err(|_| FieldError::new(fields.path_of("highWaterMark"), reason))
            })
            .transpose()?,
        session_ids: session_ids(&mut fields, "sessionIds")?,
        missing_session_ids: session_ids(&mut fields, "missingSessionIds")?,
        total_size: fields.count("totalSize")?,
        packs: objects(&mut fields, "packs")?
            .iter_mut()
            .map(read_pack_record)
            .collect::<Result<_, _>>()?,
        backup_id,
    })
}

fn read_pack_record(pack: &mut Record) -> Result<PackRecord, FieldError> {
    Ok(PackRecord {
        key: pack.string("key")?.into_owned(),
        sha256: pack.convert("sha256", Kind::String, sha256)?,
        stored_size: pack.count("storedSize")?,
        total_size: pack.count("totalSize")?,
        sessions: objects(pack, "sessions")?
            .iter_mut()
            .map(read_session_entry)
            .collect::<Result<_, _>>()?,
    })
}

/// What is inconsistent in a manifest that parsed, if anything.
fn check_manifest(manifest: &PackedManifest) -> Result<(), String> {
    if let Some(mark) = manifest.high_water_mark_ms {
        if mark > manifest.created_at_ms {
            return Err(format!(
                "highWaterMark {mark} is after createdAt {}",
                manifest.created_at_ms
            ));
        }
    }
    let mut sum: u64 = 0;
    for (index, pack) in manifest.packs.iter().enumerate() {
        let expected = pack_key(manifest.format_version, &manifest.backup_id, index as u32);
        if pack.key != expected {
            return Err(format!(
                "packs[{index}].key: {:?} is not {expected:?}",
                pack.key
            ));
        }
        let sessions = pack.sessions.iter();
        if sessions
            .clone()
            .map(|entry| entry.size)
            .try_fold(0u64, u64::checked_add)
            != Some(pack.total_size)
        {
            return Err(format!(
                "packs[{index}].totalSize {} is not the sum of its sessions' size",
                pack.total_size
            ));
        }
        if let Some(id) = first_duplicate(sessions.map(|entry| &entry.session_id)) {
            return Err(format!("packs[{index}]: session {id} is listed twice"));
        }
        sum = sum
            .checked_add(pack.total_size)
            .ok_or("totalSize overflows")?;
    }
    if sum != manifest.total_size {
        return Err(format!(
            "totalSize {} is not the sum of packs[].totalSize",
            manifest.total_size
        ));
    }
    let implied = PackedManifest::new(
        manifest.backup_id.clone(),
        0,
        BackupKind::Manual,
        manifest.packs.clone(),
        Vec::new(),
    );
    if implied.session_ids != manifest.session_ids {
        return Err(format!(
            "sessionIds [{}] are not the sessions of the packs in order [{}]",
            join(manifest.session_ids.iter()),
            join(implied.session_ids.iter())
        ));
    }
    let listed = manifest
        .session_ids
        .iter()
        .chain(&manifest.missing_session_ids);
    if let Some(id) = first_duplicate(listed) {
        return Err(format!(
            "session {id} is listed twice in sessionIds/missingSessionIds"
        ));
    }
    Ok(())
}

/// Verifies pack `index` of a backup, read as `stored`, against the manifest, and returns its
/// archives in pack order: as stored (format 3), or as document texts (format 2, and archives
/// of the earlier implementation in format 3). Each archive's bytes are hashed once, against
/// the checksum the manifest lists; nothing is inflated but a format 2 pack.
///
/// Errors: `CHECKSUM_MISMATCH` naming the pack's key when the stored bytes do not hash to its
/// recorded SHA-256, or naming `backup <id> session <sessionId>` when an archive does not hash
/// to its checksum; `CORRUPT_DATA` naming the pack when it does not parse (or inflate), or
/// disagrees with the manifest (id, time, index, sessions, sizes), or an archive's metadata
/// does not describe it (session, size, checksum, key); `INVALID_INPUT` naming `pack` for an
/// index the manifest does not have.
pub fn verify_pack(manifest: &PackedManifest, index: u32, stored: &[u8]) -> Result<Vec<PackEntry>> {
    let record = manifest.packs.get(index as usize).ok_or_else(|| {
        PersistenceError::invalid_input("pack", format!("backup has no pack {index}"))
    })?;
    let what = record.key.as_str();
    verify_sha256(what, stored, &record.sha256)?;
    if stored.len() as u64 != record.stored_size {
        return Err(PersistenceError::corrupt(
            what,
            format!(
                "is {} bytes, the manifest records {}",
                stored.len(),
                record.stored_size
            ),
        ));
    }
    let inflated;
    let json = if manifest.format_version == GZIP_PACKED_FORMAT_VERSION {
        // Archives are embedded as JSON strings, which escaping at most doubles.
        let max_inflated = record
            .total_size
            .saturating_mul(2)
            .saturating_add(
                BUNDLE_OVERHEAD_PER_SESSION.saturating_mul(record.sessions.len() as u64),
            )
            .saturating_add(BUNDLE_OVERHEAD);
        inflated = gzip::decompress(what, stored, max_inflated)?;
        &inflated[..]
    } else {
        stored
    };
    let mut pack = open(what, json)?;
    let version = pack
        .count("formatVersion")
        .map_err(|err| err.corrupt(what))?;
    if version != manifest.format_version {
        return Err(unsupported_or_corrupt(what, version));
    }
    let corrupt = |reason: String| PersistenceError::corrupt(what, reason);
    let in_pack = |err: FieldError| err.corrupt(what);
    let backup_id = pack.convert("backupId", Kind::String, id(BackupId::parse));
    let created_at_ms = epoch_ms(&mut pack, "createdAt");
    let found_index = pack.count("pack");
    let found = (
        backup_id.map_err(in_pack)?,
        created_at_ms.map_err(in_pack)?,
        found_index.map_err(in_pack)?,
    );
    let expected = (
        manifest.backup_id.clone(),
        manifest.created_at_ms,
        u64::from(index),
    );
    if found != expected {
        return Err(corrupt(format!(
            "backupId, createdAt and pack {found:?} are not the manifest's {expected:?}"
        )));
    }
    let mut entries = Vec::with_capacity(record.sessions.len());
    let embedded = objects(&mut pack, "sessions").map_err(in_pack)?;
    if embedded.len() != record.sessions.len() {
        return Err(corrupt(format!(
            "holds {} sessions, the manifest lists {}",
            embedded.len(),
            record.sessions.len()
        )));
    }
    for (position, (mut session, listed)) in embedded.into_iter().zip(&record.sessions).enumerate()
    {
        let recorded = read_session_entry(&mut session).map_err(in_pack)?;
        if &recorded != listed {
            return Err(corrupt(format!(
                "sessions[{position}] is {} ({} bytes), the manifest lists {} ({} bytes)",
                recorded.session_id, recorded.size, listed.session_id, listed.size
            )));
        }
        let session_what = format!(
            "backup {} session {}",
            manifest.backup_id, listed.session_id
        );
        let documents_only = manifest.format_version == GZIP_PACKED_FORMAT_VERSION;
        let entry =
            read_entry_archive(&mut session, recorded, documents_only, what, &session_what)?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads and verifies one format 3 pack entry given as a JSON object (`sessionId`, `sha256`,
/// `size`, then `key`, `metadata`, [`summaryTruncated`] and `archive`, or `document`; other
/// members are ignored), exactly as a restore checks the entries of a pack: what a store
/// export's archive lines hold. Errors name `what`: `CORRUPT_DATA` for a missing or ill-typed
/// member or a stored archive its metadata does not describe, `CHECKSUM_MISMATCH` when the
/// archive's bytes do not hash to `sha256` (checked before their size).
pub fn read_pack_entry(entry: Value, what: &str) -> Result<PackEntry> {
    let mut entry = Record::of("", entry).map_err(|err| err.corrupt(what))?;
    let recorded = read_session_entry(&mut entry).map_err(|err| err.corrupt(what))?;
    read_entry_archive(&mut entry, recorded, false, what, what)
}

/// The archive of a pack entry whose `sessionId`, `sha256` and `size` were read as `recorded`:
/// a document (every entry of a format 2 pack, `documents_only`; a `document` of format 3) or
/// a stored archive, verified against `recorded` (`CHECKSUM_MISMATCH` / `CORRUPT_DATA` naming
/// `archive_what`) and, stored, against its metadata. Field errors are `CORRUPT_DATA` naming
/// `what`.
fn read_entry_archive(
    session: &mut Record,
    recorded: BackupSessionEntry,
    documents_only: bool,
    what: &str,
    archive_what: &str,
) -> Result<PackEntry> {
    let in_pack = |err: FieldError| err.corrupt(what);
    // Format 2 has only documents (`archive`); format 3 a stored archive, or a `document`.
    let document = match documents_only {
        true => Some(session.string("archive").map_err(in_pack)?),
        false => match session.member("document") {
            Some(value) => {
                let path = session.path_of("document");
                let text = convert_member(
                    value,
                    Kind::String,
                    || path,
                    |value| value.into_str().map(|text| text.into_owned()),
                );
                Some(std::borrow::Cow::Owned(text.map_err(in_pack)?))
            }
            None => None,
        },
    };
    let (sha256, size) = (recorded.sha256.clone(), recorded.size);
    Ok(match document {
        None => {
            let archive = read_stored(session, recorded).map_err(in_pack)?;
            verify_sha256(archive_what, &archive.bytes, &sha256)?;
            check_size(archive_what, archive.bytes.len(), size)?;
            check_stored(&archive)
                .map_err(|reason| PersistenceError::corrupt(archive_what, reason))?;
            PackEntry::Stored(Box::new(archive))
        }
        Some(archive_json) => {
            let archive_json = archive_json.into_owned();
            verify_sha256(archive_what, archive_json.as_bytes(), &sha256)?;
            check_size(archive_what, archive_json.len(), size)?;
            PackEntry::Document(BackupSession {
                session_id: recorded.session_id,
                archive_json,
            })
        }
    })
}

/// A format 3 entry's stored archive: `key`, `metadata`, `summaryTruncated` and the base64
/// `archive` decoded, not yet checked.
fn read_stored(
    session: &mut Record,
    recorded: BackupSessionEntry,
) -> Result<StoredArchive, FieldError> {
    let key = session.string("key")?.into_owned();
    let metadata = session.convert("metadata", Kind::Object, |value| {
        serde_json::from_value::<ArchiveMetadata>(value).map_err(|err| err.to_string())
    })?;
    let summary_truncated = session
        .optional_convert("summaryTruncated", Kind::Boolean, |value| {
            Ok(value == Value::Bool(true))
        })?
        .unwrap_or(false);
    let archive_path = session.path_of("archive");
    let bytes = BASE64
        .decode(session.string("archive")?.as_bytes())
        .map_err(|err| FieldError::new(archive_path, format!("not base64: {err}")))?;
    Ok(StoredArchive {
        session_id: recorded.session_id,
        key,
        metadata,
        summary_truncated,
        bytes,
    })
}

/// `CORRUPT_DATA` naming `what` when an archive is not the size the manifest records.
fn check_size(what: &str, actual: usize, recorded: u64) -> Result<()> {
    if actual as u64 == recorded {
        return Ok(());
    }
    Err(PersistenceError::corrupt(
        what,
        format!("archive is {actual} bytes, the manifest records {recorded}"),
    ))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    const T0: i64 = 1_736_157_600_000;
    const A1: &str = r#"{"metadata":{"sessionId":"s1"},"conversation":{"messages":[]}}"#;
    const A2: &str = r#"{"metadata":{"sessionId":"s2"},"conversation":{"note":"Héllo \"x\"\n"}}"#;
    const A3: &str = r#"{"metadata":{"sessionId":"s3"},"conversation":{}}"#;

    fn sid(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    fn bid() -> BackupId {
        BackupId::parse("backup_1").unwrap()
    }

    fn input<'a>(session_id: &'a SessionId, text: &'a str) -> BackupSessionInput<'a> {
        BackupSessionInput {
            session_id,
            archive_json: text.as_bytes(),
        }
    }

    fn document(id: &str, text: &str) -> PackEntry {
        PackEntry::Document(BackupSession {
            session_id: sid(id),
            archive_json: text.to_owned(),
        })
    }

    /// Two format 2 packs (s1, s2 | s3) and their manifest, with `gone` missing.
    fn backup() -> (Vec<Vec<u8>>, PackedManifest) {
        let (s1, s2, s3) = (sid("s1"), sid("s2"), sid("s3"));
        let first = encode_gzip_pack(&bid(), T0, 0, &[input(&s1, A1), input(&s2, A2)], 6).unwrap();
        let second = encode_gzip_pack(&bid(), T0, 1, &[input(&s3, A3)], 6).unwrap();
        let mut manifest = PackedManifest::new(
            bid(),
            T0,
            BackupKind::Automated,
            vec![first.1, second.1],
            vec![sid("gone")],
        );
        manifest.format_version = GZIP_PACKED_FORMAT_VERSION;
        (vec![first.0, second.0], manifest)
    }

    fn decode(value: &serde_json::Value) -> Result<PackedManifest> {
        decode_packed_manifest("m", value.to_string().as_bytes())
    }

    #[test]
    fn manifests_round_trip_in_their_documented_member_order() {
        let (packs, mut manifest) = backup();
        manifest.user_id = Some(UserId::parse("alice").unwrap());
        manifest.parent_backup_id = Some(BackupId::parse("backup_0").unwrap());
        manifest.keep = true;
        manifest.high_water_mark_ms = Some(T0 - 1);
        let text = String::from_utf8(manifest.encode().unwrap()).unwrap();
        let order = [
            "formatVersion",
            "backupId",
            "createdAt",
            "kind",
            "userId",
            "parentBackupId",
            "keep",
            "highWaterMark",
            "sessionIds",
            "missingSessionIds",
            "totalSize",
            "packs",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|name| text.find(&format!("\"{name}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert_eq!(
            decode_packed_manifest("m", text.as_bytes()).unwrap(),
            manifest
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["sessionIds"], json!(["s1", "s2", "s3"]));
        assert_eq!(
            value["packs"][1]["key"],
            json!("backups/backup_1/pack-1.json.gz")
        );
        assert_eq!(value["packs"][0]["storedSize"], json!(packs[0].len()));
        assert_eq!(value["totalSize"], json!(A1.len() + A2.len() + A3.len()));
        // Defaults are left out: no owner, parent, keep or high-water mark.
        let (_, plain) = backup();
        let text = String::from_utf8(plain.encode().unwrap()).unwrap();
        for absent in ["userId", "parentBackupId", "keep", "highWaterMark"] {
            assert!(!text.contains(absent), "{text}");
        }
    }

    #[test]
    fn every_pack_verifies_and_gives_back_the_exact_archives() {
        let (packs, manifest) = backup();
        let first = verify_pack(&manifest, 0, &packs[0]).unwrap();
        assert_eq!(first, [document("s1", A1), document("s2", A2)]);
        let second = verify_pack(&manifest, 1, &packs[1]).unwrap();
        assert_eq!(second, [document("s3", A3)]);
        let err = verify_pack(&manifest, 2, &packs[1]).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{err}");
    }

    #[test]
    fn every_single_byte_corruption_of_a_pack_is_a_checksum_mismatch_naming_it() {
        let (packs, manifest) = backup();
        for position in 0..packs[0].len() {
            let mut damaged = packs[0].clone();
            damaged[position] ^= 0x01;
            let err = verify_pack(&manifest, 0, &damaged).unwrap_err();
            assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
            assert!(err.to_string().contains("pack-0.json.gz"), "{err}");
        }
    }

    #[test]
    fn a_pack_that_is_not_the_one_the_manifest_lists_is_refused() {
        let (packs, mut manifest) = backup();
        // Pack 1's bytes recorded as pack 0: its checksum matches, its index does not.
        manifest.packs[0].sha256 = manifest.packs[1].sha256.clone();
        manifest.packs[0].stored_size = manifest.packs[1].stored_size;
        let err = verify_pack(&manifest, 0, &packs[1]).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
        assert!(err.to_string().contains("pack-0.json.gz"), "{err}");
        // A recorded size that disagrees with the stored bytes.
        let (packs, mut manifest) = backup();
        manifest.packs[1].stored_size += 1;
        let err = verify_pack(&manifest, 1, &packs[1]).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
        // A session the manifest records with another checksum.
        let (packs, mut manifest) = backup();
        manifest.packs[0].sessions[1].sha256 = "00".repeat(32);
        let err = verify_pack(&manifest, 0, &packs[0]).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
        assert!(err.to_string().contains("sessions[1]"), "{err}");
    }

    #[test]
    fn inconsistent_manifests_are_corrupt_naming_what_disagrees() {
        let (_, manifest) = backup();
        let good = serde_json::to_value(&manifest).unwrap();
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = good.clone();
            edit(&mut value);
            decode(&value).unwrap_err()
        };
        let cases: Vec<(PersistenceError, &str)> = vec![
            (
                edited(&|v| v["packs"][1]["key"] = json!("backups/other/pack-1.json.gz")),
                "packs[1].key",
            ),
            (
                edited(&|v| v["packs"][0]["totalSize"] = json!(1)),
                "packs[0].totalSize",
            ),
            (edited(&|v| v["totalSize"] = json!(1)), "totalSize"),
            (
                edited(&|v| v["sessionIds"] = json!(["s2", "s1", "s3"])),
                "sessionIds",
            ),
            (
                edited(&|v| v["missingSessionIds"] = json!(["s3"])),
                "listed twice",
            ),
            (edited(&|v| v["kind"] = json!("nightly")), "kind"),
            (edited(&|v| v["keep"] = json!("yes")), "keep"),
            (edited(&|v| v["highWaterMark"] = json!(-1)), "highWaterMark"),
            (
                edited(&|v| v["packs"][0]["sha256"] = json!("xyz")),
                "packs[0].sha256",
            ),
            (
                edited(&|v| v["packs"][0]["sessions"][1] = v["packs"][0]["sessions"][0].clone()),
                "packs",
            ),
        ];
        for (err, needle) in cases {
            assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
        let mut newer = good.clone();
        newer["formatVersion"] = json!(4);
        assert_eq!(decode(&newer).unwrap_err().code(), "UNSUPPORTED_FORMAT");
        let mut older = good;
        older["formatVersion"] = json!(1);
        assert_eq!(decode(&older).unwrap_err().code(), "CORRUPT_DATA");
    }

    #[test]
    fn a_session_twice_in_one_pack_is_refused_but_allowed_across_packs() {
        let s1 = sid("s1");
        let err =
            encode_gzip_pack(&bid(), T0, 0, &[input(&s1, A1), input(&s1, A1)], 6).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{err}");
        let first = encode_gzip_pack(&bid(), T0, 0, &[input(&s1, A1)], 6)
            .unwrap()
            .1;
        let second = encode_gzip_pack(&bid(), T0, 1, &[input(&s1, A1)], 6)
            .unwrap()
            .1;
        let mut manifest = PackedManifest::new(
            bid(),
            T0,
            BackupKind::Automated,
            vec![first, second],
            vec![],
        );
        manifest.format_version = GZIP_PACKED_FORMAT_VERSION;
        assert_eq!(manifest.session_ids, [s1]);
        let text = manifest.encode().unwrap();
        assert_eq!(decode_packed_manifest("m", &text).unwrap(), manifest);
    }

    /// Bytes that are not gzip nor JSON, as an encrypted archive's are.
    fn opaque(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ 0xa5)
            .collect()
    }

    fn stored(id: &str, archived_at: i64, bytes: Vec<u8>) -> StoredArchive {
        let metadata = ArchiveMetadata {
            session_id: id.to_owned(),
            user_id: Some("alice".into()),
            archived_at,
            message_count: 2,
            summary: "a summary".into(),
            topics: vec!["billing".into()],
            duration: 5,
            raw_size: 1000,
            stored_size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            format_version: 1,
            encrypted_summary: None,
        };
        StoredArchive {
            session_id: sid(id),
            key: archive_object_key(&sid(id), archived_at).unwrap(),
            metadata,
            summary_truncated: false,
            bytes,
        }
    }

    /// One format 3 pack: s1 as stored (opaque bytes), s2 as stored with a cut summary, s3 a
    /// legacy document; and its manifest.
    fn stored_backup() -> (Vec<u8>, PackedManifest, Vec<PackEntry>) {
        let mut cut = stored("s2", T0 + 1, opaque(2, 300));
        cut.summary_truncated = true;
        let entries = vec![
            PackEntry::Stored(Box::new(stored("s1", T0, opaque(1, 100)))),
            PackEntry::Stored(Box::new(cut)),
            document("s3", A3),
        ];
        let (bytes, record) = encode_pack(&bid(), T0 + 10, 0, &entries).unwrap();
        let manifest =
            PackedManifest::new(bid(), T0 + 10, BackupKind::Manual, vec![record], vec![]);
        (bytes, manifest, entries)
    }

    #[test]
    fn a_format_3_pack_gives_back_the_stored_bytes_their_keys_and_metadata_exactly() {
        let (bytes, manifest, entries) = stored_backup();
        assert_eq!(manifest.format_version, 3);
        assert_eq!(manifest.packs[0].key, "backups/backup_1/pack-0.json");
        let text = manifest.encode().unwrap();
        assert_eq!(decode_packed_manifest("m", &text).unwrap(), manifest);
        // The manifest lists the stored bytes' checksums and sizes.
        let first = match &entries[0] {
            PackEntry::Stored(first) => (**first).clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            manifest.packs[0].sessions[0].sha256,
            sha256_hex(&first.bytes)
        );
        assert_eq!(manifest.packs[0].sessions[0].size, 100);
        assert_eq!(manifest.total_size, 100 + 300 + A3.len() as u64);
        // Plain JSON, documented member order, base64 of the stored bytes.
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let entry = value["sessions"][0].as_object().unwrap();
        let names: Vec<&str> = entry.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["sessionId", "sha256", "size", "key", "metadata", "archive"]
        );
        assert_eq!(value["sessions"][0]["archive"], BASE64.encode(&first.bytes));
        assert_eq!(value["sessions"][0]["metadata"]["storedSize"], 100);
        assert_eq!(value["sessions"][1]["summaryTruncated"], true);
        let legacy = value["sessions"][2].as_object().unwrap();
        let names: Vec<&str> = legacy.keys().map(String::as_str).collect();
        assert_eq!(names, ["sessionId", "sha256", "size", "document"]);
        assert_eq!(verify_pack(&manifest, 0, &bytes).unwrap(), entries);
    }

    #[test]
    fn every_single_byte_corruption_of_a_format_3_pack_is_a_checksum_mismatch() {
        let (bytes, manifest, _) = stored_backup();
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            let err = verify_pack(&manifest, 0, &damaged).unwrap_err();
            assert_eq!(err.code(), "CHECKSUM_MISMATCH", "byte {position}");
            assert!(err.to_string().contains("pack-0.json"), "{err}");
        }
    }

    /// The pack re-hashed into the manifest after `edit`: only the checks inside it remain.
    fn verify_edited(edit: &dyn Fn(&mut Value)) -> PersistenceError {
        let (bytes, mut manifest, _) = stored_backup();
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        edit(&mut value);
        let bytes = serde_json::to_vec(&value).unwrap();
        manifest.packs[0].sha256 = sha256_hex(&bytes);
        manifest.packs[0].stored_size = bytes.len() as u64;
        verify_pack(&manifest, 0, &bytes).unwrap_err()
    }

    #[test]
    fn a_format_3_archive_that_does_not_match_its_checksum_or_metadata_is_refused() {
        let other = BASE64.encode(opaque(9, 100));
        let err = verify_edited(&|v| v["sessions"][0]["archive"] = json!(other));
        assert_eq!(err.code(), "CHECKSUM_MISMATCH", "{err}");
        assert!(
            err.to_string().contains("backup backup_1 session s1"),
            "{err}"
        );
        let cases: Vec<(PersistenceError, &str)> = vec![
            (
                verify_edited(&|v| v["sessions"][0]["archive"] = json!("**")),
                "not base64",
            ),
            (
                verify_edited(&|v| v["sessions"][0]["metadata"]["storedSize"] = json!(7)),
                "metadata.storedSize",
            ),
            (
                verify_edited(&|v| v["sessions"][0]["metadata"]["sessionId"] = json!("s9")),
                "metadata.sessionId",
            ),
            (
                verify_edited(&|v| v["sessions"][0]["metadata"]["archivedAt"] = json!(T0 + 5)),
                "the key of metadata.archivedAt",
            ),
            (
                verify_edited(&|v| v["sessions"][0]["key"] = json!("backups/x")),
                "key",
            ),
            (
                verify_edited(&|v| {
                    v["sessions"][0].as_object_mut().unwrap().remove("metadata");
                }),
                "metadata: missing",
            ),
            (
                verify_edited(&|v| v["sessions"][0]["metadata"]["topics"] = json!("billing")),
                "metadata",
            ),
            (
                verify_edited(&|v| v["formatVersion"] = json!(2)),
                "formatVersion",
            ),
        ];
        for (err, needle) in cases {
            assert_eq!(err.code(), "CORRUPT_DATA", "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn a_stored_archive_its_metadata_does_not_describe_is_never_packed() {
        let mut wrong_size = stored("s1", T0, opaque(1, 10));
        wrong_size.metadata.stored_size = 11;
        let mut wrong_key = stored("s1", T0, opaque(1, 10));
        wrong_key.key = archive_object_key(&sid("s1"), T0 + 1).unwrap();
        let mut wrong_session = stored("s1", T0, opaque(1, 10));
        wrong_session.session_id = sid("s2");
        for archive in [wrong_size, wrong_key, wrong_session] {
            let err =
                encode_pack(&bid(), T0, 0, &[PackEntry::Stored(Box::new(archive))]).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{err}");
            assert!(err.to_string().contains("sessions[0]"), "{err}");
        }
        let twice = [
            PackEntry::Stored(Box::new(stored("s1", T0, opaque(1, 10)))),
            document("s1", A1),
        ];
        assert_eq!(
            encode_pack(&bid(), T0, 0, &twice).unwrap_err().code(),
            "INVALID_INPUT"
        );
    }

    #[test]
    fn format_2_and_format_3_manifests_name_their_own_pack_keys() {
        let (_, manifest, _) = stored_backup();
        let mut value = serde_json::to_value(&manifest).unwrap();
        value["packs"][0]["key"] = json!("backups/backup_1/pack-0.json.gz");
        let err = decode(&value).unwrap_err();
        assert!(err.to_string().contains("packs[0].key"), "{err}");
        value["formatVersion"] = json!(2);
        assert_eq!(decode(&value).unwrap().format_version, 2);
    }
}
