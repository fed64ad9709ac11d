//! Format 2 backups: the archives in several gzip'd packs (`pack-<n>.json.gz`), each bounded in
//! bytes and sessions and checked by its own SHA-256, and a manifest, written last as the commit
//! point, that lists every pack. A backup of any size is then written and restored one pack at
//! a time: memory holds one pack, never the whole backup. Format 1 backups (one data bundle)
//! stay readable through the parent module.
//!
//! A pack is a format 1 data bundle with its index (`"pack": n`); the manifest records, per
//! pack, its key, the SHA-256 and size of its stored bytes, and the sessions in it. A session
//! appears at most once in a pack; an incremental backup may hold two archives of one session
//! in different packs. Layouts: docs/FORMAT.md ("Backups", "Format 2").

use serde::Serialize;
use serde_json::Value;

use super::{
    checked_sessions, epoch_ms, first_duplicate, id, join, objects, open, read_session_entry,
    session_ids, sha256, BackupSession, BackupSessionEntry, BackupSessionInput, BundleSession,
    Record, BUNDLE_OVERHEAD, BUNDLE_OVERHEAD_PER_SESSION,
};
use crate::codec::fields::{FieldError, Kind, Member};
use crate::codec::gzip;
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, verify_sha256};
use crate::keys::{backup_pack_key, BackupId, SessionId, UserId};

/// Version of the packs and manifests of multi-pack backups.
pub const PACKED_FORMAT_VERSION: u64 = 2;

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
    /// Its R2 key, `backups/<backupId>/pack-<n>.json.gz`.
    pub key: String,
    /// SHA-256 (hex) of its stored bytes.
    pub sha256: String,
    /// Length of its stored bytes.
    pub stored_size: u64,
    /// Sum of its sessions' `size` (archive JSON text, before compression).
    pub total_size: u64,
    /// Per-session checksums and sizes, in pack order.
    pub sessions: Vec<BackupSessionEntry>,
}

/// The manifest of a multi-pack backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackedManifest {
    /// [`PACKED_FORMAT_VERSION`].
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
    /// The packs, in order: `packs[n]` is `pack-<n>.json.gz`.
    pub packs: Vec<PackRecord>,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl PackedManifest {
    /// A manifest of `packs` with the session lists and totals they imply.
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pack<'a> {
    format_version: u64,
    backup_id: &'a BackupId,
    created_at: i64,
    pack: u32,
    sessions: Vec<BundleSession<'a>>,
}

/// Builds pack `index` of a backup from `sessions` (at gzip `level`): its stored bytes and its
/// record for the manifest.
///
/// Errors: `INVALID_INPUT` naming `sessions[i]` for an archive that is not UTF-8 JSON or a
/// session listed twice, or naming `createdAt` if it is negative.
pub fn encode_pack(
    backup_id: &BackupId,
    created_at_ms: i64,
    index: u32,
    sessions: &[BackupSessionInput<'_>],
    level: u32,
) -> Result<(Vec<u8>, PackRecord)> {
    if created_at_ms < 0 {
        return Err(PersistenceError::invalid_input(
            "createdAt",
            format!("{created_at_ms} is before 1970"),
        ));
    }
    let (entries, texts) = checked_sessions(sessions)?;
    let pack = Pack {
        format_version: PACKED_FORMAT_VERSION,
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
        key: backup_pack_key(backup_id, index),
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
    if format_version != PACKED_FORMAT_VERSION {
        return Err(unsupported_or_corrupt(what, format_version));
    }
    let manifest = read_manifest(fields).map_err(|err| err.corrupt(what))?;
    check_manifest(&manifest).map_err(|reason| PersistenceError::corrupt(what, reason))?;
    Ok(manifest)
}

/// A version other than 2 where one was required: newer is unsupported, older is damage.
fn unsupported_or_corrupt(what: &str, version: u64) -> PersistenceError {
    if version > PACKED_FORMAT_VERSION {
        PersistenceError::UnsupportedFormat {
            what: what.to_owned(),
            version,
        }
    } else {
        let reason = format!("{version} is not {PACKED_FORMAT_VERSION}");
        FieldError::new("formatVersion", reason).corrupt(what)
    }
}

fn read_manifest(mut fields: Record) -> Result<PackedManifest, FieldError> {
    let backup_id = fields.convert("backupId", Kind::String, id(BackupId::parse))?;
    Ok(PackedManifest {
        format_version: PACKED_FORMAT_VERSION,
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
        let expected = backup_pack_key(&manifest.backup_id, index as u32);
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
/// sessions in pack order with their exact archive texts.
///
/// Errors: `CHECKSUM_MISMATCH` naming the pack's key when the stored bytes do not hash to its
/// recorded SHA-256, or naming `backup <id> session <sessionId>` when an archive does not hash
/// to its checksum; `CORRUPT_DATA` naming the pack when it does not inflate or parse, or
/// disagrees with the manifest (id, time, index, sessions, sizes); `INVALID_INPUT` naming
/// `pack` for an index the manifest does not have.
pub fn verify_pack(
    manifest: &PackedManifest,
    index: u32,
    stored: &[u8],
) -> Result<Vec<BackupSession>> {
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
    // Archives are embedded as JSON strings, which escaping at most doubles.
    let max_inflated = record
        .total_size
        .saturating_mul(2)
        .saturating_add(BUNDLE_OVERHEAD_PER_SESSION.saturating_mul(record.sessions.len() as u64))
        .saturating_add(BUNDLE_OVERHEAD);
    let json = gzip::decompress(what, stored, max_inflated)?;
    let mut pack = open(what, &json)?;
    let version = pack
        .count("formatVersion")
        .map_err(|err| err.corrupt(what))?;
    if version != PACKED_FORMAT_VERSION {
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
    let mut sessions = Vec::with_capacity(record.sessions.len());
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
        let archive_json = session.string("archive").map_err(in_pack)?.into_owned();
        let session_what = format!(
            "backup {} session {}",
            manifest.backup_id, listed.session_id
        );
        verify_sha256(&session_what, archive_json.as_bytes(), &listed.sha256)?;
        if archive_json.len() as u64 != listed.size {
            return Err(PersistenceError::corrupt(
                session_what,
                format!(
                    "archive is {} bytes, the manifest records {}",
                    archive_json.len(),
                    listed.size
                ),
            ));
        }
        sessions.push(BackupSession {
            session_id: recorded.session_id,
            archive_json,
        });
    }
    Ok(sessions)
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

    /// Two packs (s1, s2 | s3) and their manifest, with `gone` missing.
    fn backup() -> (Vec<Vec<u8>>, PackedManifest) {
        let (s1, s2, s3) = (sid("s1"), sid("s2"), sid("s3"));
        let first = encode_pack(&bid(), T0, 0, &[input(&s1, A1), input(&s2, A2)], 6).unwrap();
        let second = encode_pack(&bid(), T0, 1, &[input(&s3, A3)], 6).unwrap();
        let manifest = PackedManifest::new(
            bid(),
            T0,
            BackupKind::Automated,
            vec![first.1, second.1],
            vec![sid("gone")],
        );
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
        let texts: Vec<(&str, &str)> = first
            .iter()
            .map(|s| (s.session_id.as_str(), s.archive_json.as_str()))
            .collect();
        assert_eq!(texts, [("s1", A1), ("s2", A2)]);
        let second = verify_pack(&manifest, 1, &packs[1]).unwrap();
        assert_eq!(second[0].archive_json, A3);
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
        newer["formatVersion"] = json!(3);
        assert_eq!(decode(&newer).unwrap_err().code(), "UNSUPPORTED_FORMAT");
        let mut older = good;
        older["formatVersion"] = json!(1);
        assert_eq!(decode(&older).unwrap_err().code(), "CORRUPT_DATA");
    }

    #[test]
    fn a_session_twice_in_one_pack_is_refused_but_allowed_across_packs() {
        let s1 = sid("s1");
        let err = encode_pack(&bid(), T0, 0, &[input(&s1, A1), input(&s1, A1)], 6).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT", "{err}");
        let first = encode_pack(&bid(), T0, 0, &[input(&s1, A1)], 6).unwrap().1;
        let second = encode_pack(&bid(), T0, 1, &[input(&s1, A1)], 6).unwrap().1;
        let manifest = PackedManifest::new(
            bid(),
            T0,
            BackupKind::Automated,
            vec![first, second],
            vec![],
        );
        assert_eq!(manifest.session_ids, [s1]);
        let text = manifest.encode().unwrap();
        assert_eq!(decode_packed_manifest("m", &text).unwrap(), manifest);
    }
}
