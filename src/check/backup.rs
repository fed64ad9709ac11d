//! Checking a committed backup: its manifest, and through it the objects it names (packs, or a
//! data bundle), each verified exactly as a restore verifies it before writing anything
//! (`codec::backup`), and each archive inside read as [`super::archive`] reads a live one.
//! What the packs record of each archive (its key and SHA-256) is handed back, for comparing
//! the live copies, whose own checksums a copy of the bucket does not carry.

use super::archive::{check_archive, check_encrypted_header};
use super::{Finding, ObjectCheck, ObjectKind, Problem, CHECK_READ_LIMIT};
use crate::codec::archive::{decode_archive_json, View};
use crate::codec::backup::{
    decode_legacy_manifest, decode_manifest, decode_packed_manifest, manifest_shape, verify_backup,
    verify_legacy_backup, verify_pack, ManifestShape, PackEntry,
};
use crate::hash::sha256_hex;
use crate::keys::{backup_data_key, legacy_backup_data_key, parse_archive_object_key};

/// An archive as a backup recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedArchive {
    /// Its R2 key.
    pub key: String,
    /// The SHA-256 of its stored bytes, as the pack records it.
    pub sha256: String,
    /// The backup recording it.
    pub backup_id: String,
}

/// A backup, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupCheck {
    /// The manifest's check; an object it names that is absent is a [`Problem::Missing`] here.
    pub manifest: ObjectCheck,
    /// The manifest reads: the backup is committed, and `named` is every object it has.
    pub readable: bool,
    /// Every key the manifest names (packs, or the data object), present or not.
    pub named: Vec<String>,
    /// The checks of the named objects that are present, in manifest order.
    pub parts: Vec<(String, ObjectCheck)>,
    /// The archives its format 3 packs hold as stored, with their checksums.
    pub recorded: Vec<RecordedArchive>,
}

/// Checks the backup whose manifest `manifest_bytes` is under `manifest_key`, reading the
/// objects it names with `get` (`None`: absent).
pub fn check_backup(
    manifest_key: &str,
    manifest_bytes: &[u8],
    get: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> BackupCheck {
    let mut backup = BackupCheck {
        manifest: ObjectCheck::new(ObjectKind::BackupManifest),
        readable: false,
        named: Vec::new(),
        parts: Vec::new(),
        recorded: Vec::new(),
    };
    match manifest_shape(manifest_bytes) {
        ManifestShape::Packed => check_packed(&mut backup, manifest_key, manifest_bytes, get),
        ManifestShape::Current => check_bundle(&mut backup, manifest_key, manifest_bytes, get),
        ManifestShape::Legacy => check_legacy(&mut backup, manifest_key, manifest_bytes, get),
        ManifestShape::Unreadable => backup.manifest.find(Finding::new(
            Problem::CorruptDocument,
            "not a JSON object: no backup manifest",
        )),
    }
    backup
}

/// The named object `key` of `backup`, or a [`Problem::Missing`] on the manifest.
fn named_object(
    backup: &mut BackupCheck,
    key: &str,
    get: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    backup.named.push(key.to_owned());
    let found = get(key);
    if found.is_none() {
        let reason = format!("{key}, which the manifest names, is absent");
        backup.manifest.find(Finding::new(Problem::Missing, reason));
    }
    found
}

/// A check of a named object of `kind`, with its size and checksum.
fn part_check(kind: ObjectKind, bytes: &[u8]) -> ObjectCheck {
    let mut check = ObjectCheck::new(kind);
    check.fact("storedSize", bytes.len() as u64);
    check.fact("sha256", sha256_hex(bytes));
    check
}

/// Formats 2 and 3: a manifest and its packs.
fn check_packed(
    backup: &mut BackupCheck,
    manifest_key: &str,
    bytes: &[u8],
    get: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    let manifest = match decode_packed_manifest(manifest_key, bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            backup
                .manifest
                .find(Finding::of_error(&err, Problem::CorruptDocument));
            return;
        }
    };
    backup.readable = true;
    let facts = &mut backup.manifest;
    facts.fact("formatVersion", manifest.format_version);
    facts.fact("backupId", manifest.backup_id.as_str());
    facts.fact("createdAt", manifest.created_at_ms);
    facts.fact("packs", manifest.packs.len() as u64);
    facts.fact("sessions", manifest.session_ids.len() as u64);
    facts.fact("totalSize", manifest.total_size);
    if let Some(parent) = &manifest.parent_backup_id {
        facts.fact("parentBackupId", parent.as_str());
    }
    for (index, record) in manifest.packs.iter().enumerate() {
        let Some(stored) = named_object(backup, &record.key, get) else {
            continue;
        };
        let mut check = part_check(ObjectKind::BackupPack, &stored);
        check.fact("sessions", record.sessions.len() as u64);
        // Checked before the pack is read, so a damaged pack is told from one that disagrees.
        let entries = match verify_pack(&manifest, index as u32, &stored) {
            Ok(entries) => entries,
            Err(err) => {
                check.find(Finding::of_error(&err, Problem::PackMismatch));
                backup.parts.push((record.key.clone(), check));
                continue;
            }
        };
        for entry in &entries {
            check_entry(
                &mut check,
                entry,
                manifest.backup_id.as_str(),
                &mut backup.recorded,
            );
        }
        backup.parts.push((record.key.clone(), check));
    }
}

/// Reads one archive of a verified pack into `check` (the pack's), as a live one is read, and
/// records a stored archive's checksum.
fn check_entry(
    check: &mut ObjectCheck,
    entry: &PackEntry,
    backup_id: &str,
    recorded: &mut Vec<RecordedArchive>,
) {
    let (label, inner) = match entry {
        PackEntry::Stored(stored) => {
            recorded.push(RecordedArchive {
                key: stored.key.clone(),
                sha256: stored.metadata.sha256.to_ascii_lowercase(),
                backup_id: backup_id.to_owned(),
            });
            let encrypted = parse_archive_object_key(&stored.key).is_some_and(|k| k.encrypted);
            let inner = if encrypted {
                check_encrypted_header(&stored.key, &stored.bytes).0
            } else {
                check_archive(&stored.key, &stored.bytes).0
            };
            (stored.key.clone(), inner)
        }
        PackEntry::Document(document) => {
            let mut inner = ObjectCheck::new(ObjectKind::LegacyArchive);
            let text = document.archive_json.as_bytes();
            if let Err(err) = decode_archive_json(text, None, CHECK_READ_LIMIT, View::Conversation)
            {
                inner.find(Finding::of_error(&err, Problem::CorruptDocument));
            }
            (format!("session {}", document.session_id), inner)
        }
    };
    for finding in inner.findings {
        let detail = format!("{label}: {}", finding.detail);
        check.find(Finding::new(finding.problem, detail));
    }
}

/// Format 1: a manifest and one gzip'd data bundle.
fn check_bundle(
    backup: &mut BackupCheck,
    manifest_key: &str,
    bytes: &[u8],
    get: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    let manifest = match decode_manifest(manifest_key, bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            let finding = Finding::of_error(&err, Problem::CorruptDocument);
            backup.manifest.find(finding);
            return;
        }
    };
    backup.readable = true;
    backup
        .manifest
        .fact("formatVersion", manifest.format_version);
    backup
        .manifest
        .fact("backupId", manifest.backup_id.as_str());
    backup.manifest.fact("createdAt", manifest.created_at_ms);
    backup
        .manifest
        .fact("sessions", manifest.session_ids.len() as u64);
    let data_key = backup_data_key(&manifest.backup_id);
    let Some(data) = named_object(backup, &data_key, get) else {
        return;
    };
    let mut check = part_check(ObjectKind::BackupData, &data);
    match verify_backup(&manifest, &data) {
        Ok(verified) => {
            for session in &verified.sessions {
                let entry = PackEntry::Document(session.clone());
                check_entry(
                    &mut check,
                    &entry,
                    manifest.backup_id.as_str(),
                    &mut backup.recorded,
                );
            }
        }
        Err(err) => check.find(Finding::of_error(&err, Problem::PackMismatch)),
    }
    backup.parts.push((data_key, check));
}

/// The earlier implementation's backups: a manifest whose checksum covers `data.json`.
fn check_legacy(
    backup: &mut BackupCheck,
    manifest_key: &str,
    bytes: &[u8],
    get: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    let manifest = match decode_legacy_manifest(manifest_key, bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            let finding = Finding::of_error(&err, Problem::CorruptDocument);
            backup.manifest.find(finding);
            return;
        }
    };
    backup.readable = true;
    backup.manifest.fact("formatVersion", 0);
    backup
        .manifest
        .fact("backupId", manifest.backup_id.as_str());
    backup
        .manifest
        .fact("sessions", manifest.session_ids.len() as u64);
    let data_key = legacy_backup_data_key(&manifest.backup_id);
    let Some(data) = named_object(backup, &data_key, get) else {
        return;
    };
    let mut check = part_check(ObjectKind::LegacyBackupData, &data);
    if let Err(err) = verify_legacy_backup(&manifest, &data) {
        check.find(Finding::of_error(&err, Problem::CorruptDocument));
    }
    backup.parts.push((data_key, check));
}
