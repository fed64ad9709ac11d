//! What `verifyStorage` repairs with (`repair: true`), never deleting anything: a damaged or
//! missing archive is written back from a copy proven to be it (the same key and the SHA-256
//! recorded for it), the replica's (`super::verify_replica`) or else one found in the newest
//! backups; a missing index entry is rebuilt from the
//! archive it should point at (for an encrypted archive, with its summary sealed again under
//! its own data key, so no plaintext reaches KV).

use serde_json::json;

use super::backup::{prepare_stored, RestorableArchive, RestoredObject};
use super::index_entries::ArchiveEntries;
use super::log::OpLog;
use super::verify::Verification;
use super::DataPersistenceService;
use crate::codec::archive::ArchiveMetadata;
use crate::codec::backup::{
    decode_packed_manifest, manifest_shape, verify_pack, ManifestShape, PackEntry,
};
use crate::crypto::envelope;
use crate::error::Result;
use crate::keys::{
    backup_manifest_object_key, parse_archive_object_key, parse_backup_index_key, BackupId,
    SessionId, BACKUP_INDEX_PREFIX,
};
use crate::store::{Clock, KvListOptions, KvStore, ObjectStore, Rng};

/// Newest backups whose manifests a repair searches for a copy.
pub(super) const REPAIR_BACKUPS: u32 = 8;

/// Packs a repair reads at most (one that turns out damaged too lets it try one more backup).
const REPAIR_PACKS: u32 = 2;

/// Calls one archive's repair may take: the replica's copy, the backup index page, the
/// manifests, the packs, the tombstone and up to three writes.
pub(super) const REPAIR_CALLS: u32 = 1 + 1 + REPAIR_BACKUPS + REPAIR_PACKS + 1 + 3;

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Writes the archive `key` of `session` back from a verified copy with the SHA-256
    /// `sha256`, unless an erasure covers it; says where the copy came from, or `None` when
    /// there is none (or the key now holds another intact archive). Costs up to
    /// [`REPAIR_CALLS`].
    pub(super) async fn repair_archive(
        &self,
        log: &OpLog<'_>,
        job: &mut Verification,
        key: &str,
        session: &SessionId,
        sha256: &str,
    ) -> Result<Option<String>> {
        if let Some(copy) = self.verified_replica_copy(log, key, sha256).await {
            let parsed = parse_archive_object_key(key)
                .ok_or_else(|| crate::PersistenceError::corrupt(key, "not an archive key"))?;
            if self.erased_object(log, job, &parsed, &copy.meta).await? {
                return Ok(None);
            }
            return self.restore_from_replica(log, &copy).await.map(Some);
        }
        let Some((backup_id, copy)) = self.backed_up_copy(log, key, session, sha256).await? else {
            log.event(
                "warn",
                "no verified copy to repair an archive from",
                json!({ "key": key }),
            );
            return Ok(None);
        };
        let metadata = copy.metadata();
        if self
            .is_erased_archive(
                log,
                &mut job.erasures,
                &metadata.session_id,
                metadata.user_id.as_deref(),
                metadata.archived_at,
            )
            .await?
        {
            return Ok(None);
        }
        match self.restore_archive_object(log, &copy).await? {
            RestoredObject::Written(_) | RestoredObject::Present(_) => {
                let from = format!("backup {backup_id}");
                log.event(
                    "warn",
                    "repaired an archive from its verified copy",
                    json!({ "key": key, "from": from }),
                );
                Ok(Some(from))
            }
            RestoredObject::Different => Ok(None),
        }
    }

    /// The archive `key` of `session` as backed up with the SHA-256 `sha256`, from the newest
    /// of the [`REPAIR_BACKUPS`] newest backups that holds it, its pack verified against its
    /// manifest. Only packs of format 3 hold archives as stored (byte for byte what was
    /// written); a damaged or unreadable backup is skipped (and logged).
    async fn backed_up_copy(
        &self,
        log: &OpLog<'_>,
        key: &str,
        session: &SessionId,
        sha256: &str,
    ) -> Result<Option<(BackupId, RestorableArchive)>> {
        let newest = KvListOptions {
            prefix: Some(BACKUP_INDEX_PREFIX.to_owned()),
            cursor: None,
            limit: Some(REPAIR_BACKUPS),
        };
        let page = self.kv_list(log, newest).await?;
        let holds = |entry: &crate::codec::backup::BackupSessionEntry| {
            entry.session_id == *session && entry.sha256.eq_ignore_ascii_case(sha256)
        };
        let mut packs_read = 0;
        for entry in &page.keys {
            if packs_read == REPAIR_PACKS {
                break;
            }
            let Some((backup_id, _)) = parse_backup_index_key(&entry.name) else {
                continue;
            };
            let manifest_key = backup_manifest_object_key(&backup_id);
            let Some(manifest) = self.r2_get(log, &manifest_key).await? else {
                continue;
            };
            if manifest_shape(&manifest.body) != ManifestShape::Packed {
                continue;
            }
            let Ok(manifest) = decode_packed_manifest(&manifest_key, &manifest.body) else {
                continue;
            };
            let Some(index) = manifest
                .packs
                .iter()
                .position(|pack| pack.sessions.iter().any(holds))
            else {
                continue;
            };
            let pack_key = &manifest.packs[index].key;
            packs_read += 1;
            let Some(pack) = self.r2_get(log, pack_key).await? else {
                continue;
            };
            // Fewer than 2^32 packs: the manifest lists them.
            let entries = match verify_pack(&manifest, index as u32, &pack.body) {
                Ok(entries) => entries,
                Err(err) => {
                    log.event(
                        "warn",
                        "a backup holding the archive is damaged too",
                        json!({ "key": key, "pack": pack_key, "error": err.to_string() }),
                    );
                    continue;
                }
            };
            for entry in entries {
                let PackEntry::Stored(stored) = entry else {
                    continue;
                };
                if stored.key == key && stored.metadata.sha256.eq_ignore_ascii_case(sha256) {
                    let what = format!("backup {backup_id} session {session}");
                    let copy = prepare_stored(&self.options.hasher, &what, *stored)?;
                    return Ok(Some((backup_id, copy)));
                }
            }
        }
        Ok(None)
    }

    /// Writes the index entries `missing` of the archive stored under `key` as `stored`, whose
    /// decoded metadata is `metadata`: the entries archiving writes, with an encrypted
    /// archive's summary sealed under its data key. Costs 1 KV put per entry (and, for an
    /// encrypted archive, its data key once per run).
    pub(super) async fn rebuild_index_entries(
        &self,
        log: &OpLog<'_>,
        key: &str,
        stored: &[u8],
        mut metadata: ArchiveMetadata,
        missing: &[String],
    ) -> Result<()> {
        if envelope::is_encrypted(stored) {
            let sealed = envelope::parse(key, stored)?;
            let dek = self
                .data_key_for_read(log, key, sealed.key_ref, &sealed.dek_id)
                .await?;
            let session = parse_archive_object_key(key)
                .map(|parsed| parsed.session_id)
                .ok_or_else(|| crate::PersistenceError::corrupt(key, "not an archive key"))?;
            let summary = std::mem::take(&mut metadata.summary);
            let sealed_summary = self
                .seal_summary(&dek, sealed.key_ref, key, &session, &summary)
                .await?;
            metadata.encrypted_summary = Some(sealed_summary);
        }
        let entries = ArchiveEntries::new(&self.options.hasher, key, &metadata)?;
        for index_key in missing {
            self.put_index_entry(log, &entries, index_key).await?;
        }
        log.event(
            "warn",
            "rebuilt missing index entries",
            json!({ "key": key, "entries": missing }),
        );
        Ok(())
    }
}
