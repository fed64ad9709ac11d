//! `createBackup` and `restoreFromBackup`.
//!
//! A backup holds the newest archive of each session as stored, with its key and metadata
//! record, never decoded (docs/FORMAT.md, "Backups"). Writes, in this order, each only after
//! the previous succeeded:
//! 1. R2 `backups/<id>/pack-<n>.json`, n = 0, 1, ..., each with its SHA-256: the archives in
//!    packs (format 3) of at most `backupPack.maxSessions` archives and `backupPack.maxBytes`
//!    bytes of stored archives (a larger archive gets a pack of its own);
//! 2. R2 `backups/<id>/manifest.json`, only if absent, with custom metadata `createdAt`: the
//!    commit point. Before it exists the backup is invisible (restore says NOT_FOUND) and the
//!    retention sweep removes the packs after its grace period;
//! 3. KV `backup_manifest:<id>`, a copy of the manifest, and `backup_index:<inverted time>:<id>`,
//!    the newest-first index `listBackups` and the backup rotation read; the list metadata of
//!    both is the backup's summary (`codec::backup::BackupSummary`). They are derived: R2,
//!    strongly consistent, holds the authoritative manifest, so a failure here is logged and
//!    the committed backup is still returned (a backup missing from the index is kept by age).
//!
//! Memory: archives are read one session at a time and held until their pack is written, so a
//! backup of any size needs about 2.5 times one pack (the stored archives, and the pack's JSON
//! with their base64) plus the manifest; restore about three times one pack.
//!
//! Backups of format 2 (archive documents in gzip'd packs), format 1 (one `data.json.gz`
//! bundle) and of the earlier TypeScript implementation stay restorable; format 1 and legacy
//! ones are verified whole, as they were written.
//!
//! Restore verifies the manifest first, then each pack (every checksum) and prepares its
//! archives before the first write of that pack; an incremental backup restores the backups it
//! depends on first, oldest first. An archive backed up as stored goes back byte for byte under
//! the key it was backed up from, with the customMetadata archiving gives it; one backed up as
//! its document (format 1 and 2, legacy archives) is gzip'd again under its original key,
//! derived from the archive's own `sessionId` and `archivedAt` (for the earlier TypeScript
//! implementation's backups, `archivedAt` is the legacy manifest's `timestamp`). Either is
//! written only if absent, so restoring twice stores nothing twice. Then its KV entries, in
//! archiving's order so that a listed archive is always retrievable: `archive_meta:<sid>`
//! (unless that already points at a newer archive of the session), then the global and
//! per-user index entries. Finding `archive_meta` already pointing at the restored key means an
//! earlier restore got that far; then only missing index entries are written.

use std::collections::BTreeMap;

use serde_json::json;

use super::archive::{check_archive_session, FetchedArchive, ARCHIVE_CONTENT_TYPE};
use super::encryption::ENCRYPTED_CONTENT_TYPE;
use super::index_entries::{
    archive_custom_metadata, read_archive_location, recorded_sha256, ArchiveEntries,
};
use super::log::OpLog;
use super::replica::{is_damage, served_from_replica};
use super::tombstone::{ErasureCheck, RESTORE_HEADS_BEFORE_LISTING};
use super::DataPersistenceService;
use crate::codec::archive::{decode_archive, listing_summary, ArchiveMetadata};
use crate::codec::backup::{
    decode_legacy_manifest, decode_manifest, decode_packed_manifest, encode_pack,
    legacy_backup_document, manifest_shape, verify_backup, verify_legacy_backup, verify_pack,
    BackupKind, BackupSummary, LegacyBackupManifest, ManifestShape, PackRecord, PackedManifest,
};
use crate::codec::backup::{PackEntry, StoredArchive};
use crate::codec::gzip;
use crate::error::{PersistenceError, Result};
use crate::hash::{sha256_hex, verify_sha256, KeyHasher};
use crate::keys::{
    archive_meta_key, archive_object_key, backup_data_key, backup_index_key,
    backup_manifest_kv_key, backup_manifest_object_key, legacy_backup_data_key, new_backup_id,
    parse_archive_object_key, BackupId, SessionId, UserId,
};
use crate::retention::BACKUP_CREATED_AT_FIELD;
use crate::store::{
    Clock, KvPutOptions, KvStore, ObjectPutOptions, ObjectStore, PutOutcome, Rng, StoredObject,
};

/// Content type of backup data and restored archives: gzip bytes, served as they are stored.
const GZIP_CONTENT_TYPE: &str = ARCHIVE_CONTENT_TYPE;
/// Content type of manifests and (format 3) packs.
const MANIFEST_CONTENT_TYPE: &str = "application/json";

/// Whether a restore reads the replica after the primary failed with `err`: the object is
/// missing (`NOT_FOUND`; for a user's restore, also what an unreadable manifest reads as) or
/// fails its checks.
fn falls_back(err: &PersistenceError) -> bool {
    is_damage(err) || matches!(err, PersistenceError::NotFound { .. })
}

/// What a restore for one user gets for a backup made for someone else, for nobody, or not
/// at all: the same answer, so that another user's backup ids cannot be probed.
fn not_the_owners(backup_id: &BackupId) -> PersistenceError {
    PersistenceError::NotFound {
        key: format!("backup {backup_id} of this user"),
    }
}

/// Checks that the manifest read from `what` is the one of `backup_id`.
fn check_manifest_id(what: &str, found: &BackupId, backup_id: &BackupId) -> Result<()> {
    if found == backup_id {
        Ok(())
    } else {
        Err(PersistenceError::corrupt(
            what,
            format!("belongs to backup {found}"),
        ))
    }
}

/// The archive document of `fetched`, an archive of `session`, as JSON text, checked against its
/// recorded SHA-256 and decoded (a document that does not decode could never be restored, so it
/// is never backed up), with the user ids it names (its metadata's and its session state's,
/// which only a legacy archive may leave out or let disagree).
pub(super) fn archive_document(
    fetched: FetchedArchive,
    session: &SessionId,
) -> Result<(String, Vec<String>)> {
    if let Some(expected) = &fetched.expected_sha256 {
        verify_sha256(&fetched.key, &fetched.body, expected)?;
    }
    let document = if gzip::is_gzip(&fetched.body) {
        gzip::decompress(&fetched.key, &fetched.body, fetched.read_limit)?
    } else {
        fetched.body
    };
    let limit = fetched.read_limit.max(document.len() as u64);
    let decoded = decode_archive(&document, None, limit)?;
    check_archive_session(&fetched.key, &decoded.metadata.session_id, session)?;
    let user_ids = [
        decoded.metadata.user_id,
        decoded
            .conversation
            .session_state
            .and_then(|state| state.user_id),
    ]
    .into_iter()
    .flatten()
    .collect();
    String::from_utf8(document)
        .map(|document| (document, user_ids))
        .map_err(|err| PersistenceError::corrupt(fetched.key, err.to_string()))
}

/// An archive read for a backup: what goes into its pack, and the user ids it names.
pub(super) struct BackupArchive {
    /// As stored (current archives), or as its document (the earlier implementation's).
    pub entry: PackEntry,
    /// The user ids the archive names: its metadata's; for a document, its session state's too.
    user_ids: Vec<String>,
}

impl BackupArchive {
    /// A stored archive, its metadata checked against its bytes: what restore will check.
    /// Errors: `CORRUPT_DATA` naming `what`.
    pub fn stored(what: &str, archive: StoredArchive) -> Result<Self> {
        archive
            .check()
            .map_err(|reason| PersistenceError::corrupt(what, reason))?;
        let user_ids = archive.metadata.user_id.iter().cloned().collect();
        Ok(BackupArchive {
            entry: PackEntry::Stored(Box::new(archive)),
            user_ids,
        })
    }

    /// An archive of the earlier implementation (no recorded checksum), as its document
    /// ([`archive_document`]), which packs and restores as format 2 did.
    pub fn document(fetched: FetchedArchive, session: &SessionId) -> Result<Self> {
        let (archive_json, user_ids) = archive_document(fetched, session)?;
        Ok(BackupArchive {
            entry: PackEntry::Document(crate::codec::backup::BackupSession {
                session_id: session.clone(),
                archive_json,
            }),
            user_ids,
        })
    }

    /// The user ids it names (none for an archive without a user).
    pub fn user_ids(&self) -> &[String] {
        &self.user_ids
    }

    /// Whether it names a user and every user it names is `owner`.
    pub fn is_owned_by(&self, owner: &UserId) -> bool {
        !self.user_ids.is_empty() && self.user_ids.iter().all(|id| id == owner.as_str())
    }

    /// The SHA-256 a manifest lists for it (of the stored bytes, or of the document text).
    pub fn sha256(&self) -> String {
        match &self.entry {
            PackEntry::Stored(stored) => stored.metadata.sha256.to_ascii_lowercase(),
            PackEntry::Document(document) => sha256_hex(document.archive_json.as_bytes()),
        }
    }
}

/// The metadata an `archive_meta:<sid>` record of this library holds (its `key` aside).
/// Errors: `CORRUPT_DATA` naming `meta_key`.
pub(super) fn record_metadata(meta_key: &str, value: &[u8]) -> Result<ArchiveMetadata> {
    serde_json::from_slice(value)
        .map_err(|err| PersistenceError::corrupt(meta_key, err.to_string()))
}

/// A backup whose manifest was read: a multi-pack one (read and verified a pack at a time), or
/// the archives of a single-bundle one, all verified.
pub(super) enum ReadBackup {
    Packed(PackedManifest),
    Verified(Vec<RestorableArchive>),
}

/// One archive of a verified backup (or of an import), ready to write back.
pub(super) struct RestorableArchive {
    object_key: String,
    /// The archive JSON text exactly as backed up; `None` for an archive backed up as stored.
    document: Option<String>,
    /// The object body: the stored bytes as backed up, or the gzip'd document.
    bytes: Vec<u8>,
    metadata: ArchiveMetadata,
    /// The metadata's summary was cut to fit a listing (see [`StoredArchive`]).
    summary_truncated: bool,
    custom_metadata: BTreeMap<String, String>,
}

/// Everything the restore of an archive backed up as stored writes, computed before the first
/// write without decoding it: its bytes go back as they are, under their own key, with the
/// customMetadata archiving gives them; its KV entries come from its metadata. The pack was
/// verified (each archive's bytes against their SHA-256, its metadata against them).
fn prepare_stored_restore(
    hasher: &KeyHasher,
    backup_id: &BackupId,
    stored: StoredArchive,
) -> Result<RestorableArchive> {
    let what = format!("backup {backup_id} session {}", stored.session_id);
    prepare_stored(hasher, &what, stored)
}

/// [`prepare_stored_restore`] of an archive that `what` names in errors.
pub(super) fn prepare_stored(
    hasher: &KeyHasher,
    what: &str,
    stored: StoredArchive,
) -> Result<RestorableArchive> {
    let metadata = ArchiveMetadata {
        sha256: stored.metadata.sha256.to_ascii_lowercase(),
        ..stored.metadata
    };
    if let Some(user_id) = &metadata.user_id {
        UserId::parse(user_id).map_err(|err| PersistenceError::corrupt(what, err.to_string()))?;
    }
    let custom_metadata = archive_custom_metadata(hasher, &metadata)?;
    listing_summary(&metadata, &stored.key)?;
    Ok(RestorableArchive {
        object_key: stored.key,
        document: None,
        bytes: stored.bytes,
        metadata,
        summary_truncated: stored.summary_truncated,
        custom_metadata,
    })
}

/// What a restore did: the sessions it restored (one per archive written back) and those it
/// skipped because an erasure of their user covers them.
#[derive(Debug, Default)]
pub struct RestoreTally {
    /// Restored sessions, in restore order.
    pub restored: Vec<String>,
    /// Sessions of erased users, not restored.
    pub skipped: Vec<String>,
    erasures: ErasureCheck,
}

impl RestoreTally {
    /// Keeps each session once in each list.
    fn dedup(&mut self) {
        for sessions in [&mut self.restored, &mut self.skipped] {
            let mut seen = std::collections::HashSet::new();
            sessions.retain(|session| seen.insert(session.clone()));
        }
    }
}

impl RestorableArchive {
    /// The R2 key it goes back under.
    pub fn object_key(&self) -> &str {
        &self.object_key
    }

    /// Its metadata (describing the bytes written).
    pub fn metadata(&self) -> &ArchiveMetadata {
        &self.metadata
    }

    /// Whether its listing entries say their summary was cut.
    pub fn summary_truncated(&self) -> bool {
        self.summary_truncated
    }
}

/// What writing a restored archive's object found.
pub(super) enum RestoredObject {
    /// It was written (or replaced a damaged one): the metadata of what is stored now.
    Written(ArchiveMetadata),
    /// The same archive was there already: the metadata of what is stored.
    Present(ArchiveMetadata),
    /// Another intact archive is under its key; nothing was written.
    Different,
}

impl RestoredObject {
    /// The metadata of what is stored, or, for [`RestoredObject::Different`], the error a
    /// restore reports: an intact archive is never overwritten.
    fn stored(self, key: &str) -> Result<ArchiveMetadata> {
        match self {
            RestoredObject::Written(metadata) | RestoredObject::Present(metadata) => Ok(metadata),
            RestoredObject::Different => Err(PersistenceError::corrupt(
                key,
                "holds a different archive than the backup; it was not overwritten",
            )),
        }
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Backs up the newest archive of each listed session; returns the new backup id.
    ///
    /// Duplicate ids are backed up once. Without `owner`, sessions without an archive are
    /// recorded in the manifest's `missingSessionIds`; if none of them has one, the backup is
    /// made all the same, empty, as the earlier implementation made it (a nightly job backing
    /// up whatever ids it has relies on getting an id): restoring it restores nothing. With
    /// `owner` (a user id), every session must
    /// have an archive that names `owner` as its user (in its metadata record; a legacy
    /// archive, read as its document, in its metadata or its session state, never another
    /// user), or nothing is
    /// written and the call fails with NOT_FOUND naming the first that has none: the check is
    /// made on the very archive backed up, and an archive of another user is reported as
    /// missing, not revealed. An archive that fails
    /// verification is reported as such
    /// (`CHECKSUM_MISMATCH` / `CORRUPT_DATA`) before its owner can be known. Costs 1 KV get
    /// and 1 R2 get per session, then 1 R2 put per pack, 1 R2 put (the manifest) and 2 KV puts.
    /// Errors: `INVALID_INPUT` (empty list), `INVALID_ID`, `NOT_FOUND`, `CHECKSUM_MISMATCH` /
    /// `CORRUPT_DATA` (a damaged archive is never backed up), `STORAGE_UNAVAILABLE` /
    /// `CIRCUIT_OPEN`; a failure leaves no visible backup (orphan packs are swept by retention).
    /// With `keep`, the backup policy never deletes it (it follows the policy otherwise).
    pub async fn create_backup(
        &self,
        session_ids: &[String],
        owner: Option<&str>,
        keep: bool,
    ) -> Result<String> {
        let log = self.begin("createBackup");
        if session_ids.is_empty() {
            return Err(PersistenceError::invalid_input(
                "sessionIds",
                "must name at least one session",
            ));
        }
        let owner = owner.map(UserId::parse).transpose()?;
        let mut sessions: Vec<SessionId> = Vec::with_capacity(session_ids.len());
        for id in session_ids {
            let id = SessionId::parse(id)?;
            if !sessions.contains(&id) {
                sessions.push(id);
            }
        }
        let created_at_ms = self.clock.now_ms();
        let backup_id = new_backup_id(created_at_ms, &self.clock.random_u64().to_be_bytes())?;
        let bounds = self.options.backup_pack;
        let mut packs: Vec<PackRecord> = Vec::new();
        let mut pending: Vec<PackEntry> = Vec::new();
        let mut pending_bytes: u64 = 0;
        let mut missing = Vec::new();
        for session in &sessions {
            let found = self.newest_archive_for_backup(&log, session).await?;
            let archive = match (found, &owner) {
                (Some(archive), None) => archive,
                (None, None) => {
                    missing.push(session.clone());
                    continue;
                }
                // Every user id it names is the owner's, and it names one.
                (Some(archive), Some(owner)) if archive.is_owned_by(owner) => archive,
                (found, Some(_)) => {
                    if found.is_some() {
                        log.event(
                            "warn",
                            "refused to back up an archive of another user",
                            json!({ "sessionId": session.as_str() }),
                        );
                    }
                    return Err(PersistenceError::NotFound {
                        key: format!("an archive of session {session} owned by this user"),
                    });
                }
            };
            let size = archive.entry.size();
            let full = pending.len() as u64 >= u64::from(bounds.max_sessions)
                || pending_bytes.saturating_add(size) > bounds.max_bytes;
            if full && !pending.is_empty() {
                let record = self
                    .put_pack(&log, &backup_id, created_at_ms, packs.len(), &pending)
                    .await?;
                packs.push(record);
                pending.clear();
                pending_bytes = 0;
            }
            pending.push(archive.entry);
            pending_bytes = pending_bytes.saturating_add(size);
        }
        if !pending.is_empty() {
            let record = self
                .put_pack(&log, &backup_id, created_at_ms, packs.len(), &pending)
                .await?;
            packs.push(record);
        }
        let mut manifest =
            PackedManifest::new(backup_id, created_at_ms, BackupKind::Manual, packs, missing);
        // Every archive in it is the owner's (checked above): only the owner's restore reads it.
        manifest.user_id = owner;
        manifest.keep = keep;
        self.commit_manifest(&log, &manifest, None).await?;
        log.event(
            "info",
            "backup created",
            json!({
                "backupId": manifest.backup_id.as_str(),
                "sessions": manifest.session_ids.len(),
                "missing": manifest.missing_session_ids.len(),
                "packs": manifest.packs.len(),
                "totalSize": manifest.total_size,
            }),
        );
        Ok(manifest.backup_id.to_string())
    }

    /// Writes pack `index` of a backup (format 3), holding `entries`: its record for the
    /// manifest. Costs 1 R2 put.
    pub(super) async fn put_pack(
        &self,
        log: &OpLog<'_>,
        backup_id: &BackupId,
        created_at_ms: i64,
        index: usize,
        entries: &[PackEntry],
    ) -> Result<PackRecord> {
        let index = u32::try_from(index)
            .map_err(|_| PersistenceError::invalid_input("pack", "more than 2^32 packs"))?;
        let (stored, record) = encode_pack(backup_id, created_at_ms, index, entries)?;
        let options = ObjectPutOptions {
            content_type: Some(MANIFEST_CONTENT_TYPE.to_owned()),
            sha256: Some(record.sha256.clone()),
            ..ObjectPutOptions::default()
        };
        self.r2_put(log, &record.key, &stored, options).await?;
        Ok(record)
    }

    /// Commits a backup whose packs are written: with a replica bucket, one replica queue entry
    /// for its packs and manifest first (1 KV put: `syncReplica` copies them, manifest last),
    /// then its manifest in R2, only if absent (the commit point), then a copy in KV whose list
    /// metadata describes the backup (a failure there is
    /// logged: R2 holds the authoritative manifest), and its entry in the backup index. Costs
    /// 1 R2 put (and 1 R2 get if the manifest exists already) and 2 KV puts (3 with a replica). Errors: `CORRUPT_DATA` when another manifest
    /// already exists under the id.
    pub(super) async fn commit_manifest(
        &self,
        log: &OpLog<'_>,
        manifest: &PackedManifest,
        chain_start: Option<i64>,
    ) -> Result<()> {
        let bytes = manifest.encode()?;
        let key = backup_manifest_object_key(&manifest.backup_id);
        let created_at = manifest.created_at_ms;
        let index_key = backup_index_key(&manifest.backup_id, created_at)?;
        let options = ObjectPutOptions {
            custom_metadata: BTreeMap::from([(
                BACKUP_CREATED_AT_FIELD.to_owned(),
                created_at.to_string(),
            )]),
            content_type: Some(MANIFEST_CONTENT_TYPE.to_owned()),
            sha256: Some(sha256_hex(&bytes)),
            only_if_absent: true,
            ..ObjectPutOptions::default()
        };
        // Queued before the commit (a crash after it must not leave a backup the replica never
        // gets): `syncReplica` copies the packs first, the manifest last, the replica's own
        // commit point; should the commit fail, it finds no manifest and copies none.
        let mut replicated: Vec<String> =
            manifest.packs.iter().map(|pack| pack.key.clone()).collect();
        replicated.push(key.clone());
        self.queue_replica_sync(log, &replicated).await;
        if self.r2_put(log, &key, &bytes, options).await? == PutOutcome::AlreadyExists {
            // Only an earlier attempt of this very call (its response lost) may have written it.
            let existing = self.r2_get(log, &key).await?;
            if existing.is_none_or(|object| object.body != bytes) {
                return Err(PersistenceError::corrupt(
                    key,
                    "another manifest already exists under this backup id; nothing was overwritten",
                ));
            }
        }
        let user_key = manifest
            .user_id
            .as_ref()
            .map(|user| self.options.hasher.user_key(user));
        let summary = BackupSummary::of_manifest(manifest, chain_start, user_key);
        // Both entries are read from listings only; the manifest copy also holds the manifest
        // (for backups of the earlier implementation whose R2 manifest is gone).
        let entries = [
            (backup_manifest_kv_key(&manifest.backup_id), &bytes[..]),
            (index_key, &b""[..]),
        ];
        for (kv_key, value) in entries {
            let kv_options = KvPutOptions {
                expiration_ttl_secs: None,
                metadata: Some(json!(summary)),
            };
            if let Err(err) = self.kv_put(log, &kv_key, value, kv_options).await {
                log.event(
                    "warn",
                    "backup committed, but a KV entry of it was not written",
                    json!({ "key": kv_key, "error": err.to_string() }),
                );
            }
        }
        Ok(())
    }

    /// Restores every session of a backup so it is retrievable again; returns their ids in
    /// manifest order, including sessions whose archive was still (or already) in place. With
    /// `owner` (a user id), only a backup that `create_backup` made for that user: any other,
    /// or none, is `NOT_FOUND` naming `backup <id> of this user`, so whether it exists is not
    /// revealed.
    ///
    /// Reads the R2 manifest (authoritative; the earlier TypeScript implementation's shape too),
    /// or, for a backup of that implementation whose R2 manifest is gone, the KV
    /// `backup_manifest:<id>`. A multi-pack backup is restored a pack at a time, each verified
    /// before any of its archives is written (a damaged later pack therefore leaves the earlier
    /// packs restored; restoring again after a repair completes it), after the backups it is
    /// incremental to; a single-bundle one (format 1, or the earlier implementation's
    /// `data.json`, checked against the manifest's `checksum`) is verified whole first. Costs
    /// 1 R2 get for the manifest (plus 1 KV get for a legacy backup without an R2 manifest),
    /// 1 R2 get per pack (or bundle) and per parent manifest, then per session 1 R2 put, 1 KV
    /// get and up to 3 KV puts (1 R2 get more if the archive key is taken). Errors:
    /// `INVALID_ID`; `NOT_FOUND` naming the manifest key when there is no committed backup
    /// (or a parent's), or the pack or data key when it is missing; `CHECKSUM_MISMATCH` naming
    /// the pack or data object or `backup <id> session <sid>`; `CORRUPT_DATA` (malformed
    /// backup, or an intact different archive already under a session's key, which is never
    /// overwritten); `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub async fn restore_from_backup(
        &self,
        backup_id: &str,
        owner: Option<&str>,
    ) -> Result<Vec<String>> {
        Ok(self.restore_backup(backup_id, owner).await?.restored)
    }

    /// [`Self::restore_from_backup`], also telling the sessions it skipped because their
    /// user's erasure covers them (`skipped`, each once).
    pub async fn restore_backup(
        &self,
        backup_id: &str,
        owner: Option<&str>,
    ) -> Result<RestoreTally> {
        let log = self.begin("restoreFromBackup");
        let backup_id = BackupId::parse(backup_id)?;
        let owner = owner.map(UserId::parse).transpose()?;
        let mut tally = RestoreTally::default();
        match self
            .read_verified_backup(&log, &backup_id, owner.as_ref())
            .await?
        {
            ReadBackup::Verified(archives) => {
                self.write_restored(&log, &archives, &mut tally).await?
            }
            ReadBackup::Packed(manifest) => {
                for manifest in self.with_parents(&log, manifest, owner.as_ref()).await? {
                    for index in 0..manifest.packs.len() {
                        let archives = self.read_verified_pack(&log, &manifest, index).await?;
                        self.write_restored(&log, &archives, &mut tally).await?;
                    }
                }
            }
        }
        // A session in several packs of an incremental chain is restored once per archive.
        tally.dedup();
        log.event(
            "info",
            "backup restored",
            json!({ "backupId": backup_id.as_str(), "sessions": tally.restored.len(),
                    "skippedErased": tally.skipped.len() }),
        );
        Ok(tally)
    }

    /// The newest archive of `session` as a backup takes it; `None` when the session has no
    /// archive or its object is gone (logged). A current archive is taken as stored, with the
    /// metadata of its `archive_meta` record, its bytes checked against the record's SHA-256
    /// and never decoded; an archive of the earlier implementation (a record without `key`, no
    /// checksum) is found as retrieval finds it and taken as its document. Costs 1 KV get and
    /// 1 R2 get (for such a legacy archive not under the key of its `archivedAt`, the R2 lists
    /// of `find_legacy_archive` and 1 R2 get more). Errors: `CHECKSUM_MISMATCH` /
    /// `CORRUPT_DATA` for a damaged archive or record.
    pub(super) async fn newest_archive_for_backup(
        &self,
        log: &OpLog<'_>,
        session: &SessionId,
    ) -> Result<Option<BackupArchive>> {
        let meta_key = archive_meta_key(session);
        let Some(record) = self.kv_get(log, &meta_key).await? else {
            return Ok(None);
        };
        let location = read_archive_location(&meta_key, &record.value, session)?;
        let mut key = location.key;
        let mut stored = self.r2_get(log, &key).await?;
        if let (None, Some(archived_at)) = (&stored, location.legacy_archived_at) {
            if let Some(found) = self.find_legacy_archive(log, session, archived_at).await? {
                key = found.key;
                stored = self.r2_get(log, &key).await?;
            }
        }
        let Some(object) = stored else {
            log.event(
                "warn",
                "archive metadata points at a missing object",
                json!({ "metaKey": meta_key, "key": key }),
            );
            return Ok(None);
        };
        let Some(expected) = location.sha256 else {
            let fetched = FetchedArchive {
                expected_sha256: recorded_sha256(&object.meta).map(str::to_owned),
                read_limit: self.policy.max_archive_size_bytes.max(location.raw_size),
                key,
                body: object.body,
            };
            return BackupArchive::document(fetched, session).map(Some);
        };
        verify_sha256(&key, &object.body, &expected)?;
        let archive = StoredArchive {
            session_id: session.clone(),
            key,
            metadata: record_metadata(&meta_key, &record.value)?,
            summary_truncated: false,
            bytes: object.body,
        };
        BackupArchive::stored(&meta_key, archive).map(Some)
    }

    /// Reads and verifies a whole backup and prepares each of its archives for writing; with
    /// `owner`, only a backup made for that user (see [`not_the_owners`]).
    ///
    /// The manifest is read from R2 (authoritative); the earlier TypeScript implementation
    /// wrote one there too, in its own shape (no `formatVersion`), and also a KV copy, which is
    /// read when R2 has none. Its backups were made for nobody.
    ///
    /// With a replica bucket, a backup whose manifest (or bundle) is missing or fails its
    /// checks is read again from the replica (logged); its packs likewise, one by one
    /// (`read_verified_pack`).
    pub(super) async fn read_verified_backup(
        &self,
        log: &OpLog<'_>,
        backup_id: &BackupId,
        owner: Option<&UserId>,
    ) -> Result<ReadBackup> {
        let primary = self
            .read_verified_backup_from(log, backup_id, owner, false)
            .await;
        match primary {
            Err(err) if self.has_replica() && falls_back(&err) => {
                match self
                    .read_verified_backup_from(log, backup_id, owner, true)
                    .await
                {
                    Ok(read) => {
                        let what = backup_manifest_object_key(backup_id);
                        served_from_replica(log, &what, err.code());
                        Ok(read)
                    }
                    Err(_) => Err(err),
                }
            }
            read => read,
        }
    }

    /// The object under `key` of a backup in the replica, after the primary's failed with
    /// `primary` (logged when found); `None` when the replica has none or fails (logged).
    async fn replica_backup_object(
        &self,
        log: &OpLog<'_>,
        key: &str,
        primary: &PersistenceError,
    ) -> Option<StoredObject> {
        match self.replica_get(log, key).await {
            Ok(Some(object)) => {
                served_from_replica(log, key, primary.code());
                Some(object)
            }
            Ok(None) => None,
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the replica's copy",
                    json!({ "key": key, "code": err.code(), "error": err.to_string() }),
                );
                None
            }
        }
    }

    /// [`Self::read_verified_backup`] from the primary bucket, or with `from_replica` from the
    /// replica (its manifest and bundle; the KV copy of a legacy manifest either way).
    pub(super) async fn read_verified_backup_from(
        &self,
        log: &OpLog<'_>,
        backup_id: &BackupId,
        owner: Option<&UserId>,
        from_replica: bool,
    ) -> Result<ReadBackup> {
        let manifest_key = backup_manifest_object_key(backup_id);
        let read = async |key: &str| match from_replica {
            true => self.replica_get(log, key).await,
            false => self.r2_get(log, key).await,
        };
        let (what, manifest_bytes, shape) = match read(&manifest_key).await? {
            Some(object) => {
                let shape = manifest_shape(&object.body);
                (manifest_key.clone(), object.body, shape)
            }
            // Only a legacy backup, made for nobody, can have its manifest in KV alone.
            None if owner.is_some() => return Err(not_the_owners(backup_id)),
            None => {
                let kv_key = backup_manifest_kv_key(backup_id);
                match self.kv_get(log, &kv_key).await? {
                    // A copy of a current manifest without its R2 original was never
                    // committed, or was swept: no backup.
                    Some(copy)
                        if !matches!(
                            manifest_shape(&copy.value),
                            ManifestShape::Current | ManifestShape::Packed
                        ) =>
                    {
                        (kv_key, copy.value, ManifestShape::Legacy)
                    }
                    _ => return Err(PersistenceError::NotFound { key: manifest_key }),
                }
            }
        };
        if shape == ManifestShape::Legacy {
            if owner.is_some() {
                return Err(not_the_owners(backup_id));
            }
            let manifest = decode_legacy_manifest(&what, &manifest_bytes)?;
            check_manifest_id(&what, &manifest.backup_id, backup_id)?;
            return self
                .read_legacy_backup(log, &manifest)
                .await
                .map(ReadBackup::Verified);
        }
        if shape == ManifestShape::Packed {
            let manifest = decode_packed_manifest(&what, &manifest_bytes).and_then(|manifest| {
                check_manifest_id(&what, &manifest.backup_id, backup_id).map(|()| manifest)
            });
            let owned_by = |manifest: &PackedManifest| manifest.user_id.clone();
            return self
                .owners_manifest(log, &what, manifest, owned_by, owner, backup_id)
                .map(ReadBackup::Packed);
        }
        let manifest = decode_manifest(&what, &manifest_bytes).and_then(|manifest| {
            check_manifest_id(&what, &manifest.backup_id, backup_id).map(|()| manifest)
        });
        let owned_by = |manifest: &crate::codec::backup::BackupManifest| manifest.user_id.clone();
        let manifest = self.owners_manifest(log, &what, manifest, owned_by, owner, backup_id)?;
        let data_key = backup_data_key(backup_id);
        let Some(data) = read(&data_key).await? else {
            return Err(PersistenceError::NotFound { key: data_key });
        };
        let verified = verify_backup(&manifest, &data.body)?;
        verified
            .sessions
            .into_iter()
            .map(|session| {
                self.prepare_restore(backup_id, &session.session_id, session.archive_json)
            })
            .collect::<Result<_>>()
            .map(ReadBackup::Verified)
    }

    /// The manifest read from `what` if `owner` may restore it (see [`not_the_owners`]): with an
    /// owner, only a readable manifest made for that user (an unreadable one is logged and
    /// answered as not theirs); without one, any manifest, its reading error as it is.
    fn owners_manifest<M>(
        &self,
        log: &OpLog<'_>,
        what: &str,
        manifest: Result<M>,
        owned_by: impl Fn(&M) -> Option<UserId>,
        owner: Option<&UserId>,
        backup_id: &BackupId,
    ) -> Result<M> {
        match (manifest, owner) {
            (Ok(manifest), Some(owner)) if owned_by(&manifest).as_ref() != Some(owner) => {
                Err(not_the_owners(backup_id))
            }
            (Ok(manifest), _) => Ok(manifest),
            // A manifest that cannot be read names no owner: to a user it is not theirs (so it
            // tells nothing of another user's backup); the log keeps the reason.
            (Err(err), Some(_)) => {
                log.event(
                    "warn",
                    "unreadable backup manifest",
                    json!({ "key": what, "code": err.code(), "error": err.to_string() }),
                );
                Err(not_the_owners(backup_id))
            }
            (Err(err), None) => Err(err),
        }
    }

    /// What a restore of `backup_id` restores, a step at a time (for the restore Workflow): the
    /// backups of its chain, oldest first, each with its number of packs (a single-bundle
    /// backup counts as one) and the number of archives in each pack, so that the Workflow
    /// knows every slice in advance. Reads and checks the manifests only; with `owner`, as
    /// [`Self::restore_from_backup`]. Costs 1 R2 get per backup of the chain (the bundle too for
    /// a single-bundle backup, which is verified whole here).
    pub async fn plan_restore(
        &self,
        backup_id: &str,
        owner: Option<&str>,
    ) -> Result<Vec<(String, usize, Vec<usize>)>> {
        let log = self.begin("planRestore");
        let backup_id = BackupId::parse(backup_id)?;
        let owner = owner.map(UserId::parse).transpose()?;
        match self
            .read_verified_backup(&log, &backup_id, owner.as_ref())
            .await?
        {
            ReadBackup::Verified(archives) => {
                Ok(vec![(backup_id.to_string(), 1, vec![archives.len()])])
            }
            ReadBackup::Packed(manifest) => Ok(self
                .with_parents(&log, manifest, owner.as_ref())
                .await?
                .into_iter()
                .map(|m| {
                    let sessions = m.packs.iter().map(|pack| pack.sessions.len()).collect();
                    (m.backup_id.to_string(), m.packs.len(), sessions)
                })
                .collect()),
        }
    }

    /// Restores archives `slice` (positions in the pack) of pack `index` of backup `backup_id`
    /// (of a single-bundle backup, index 0 is the bundle), the whole pack verified before the
    /// first write; returns their sessions, one per archive (fewer than the slice asks at the
    /// pack's end). Idempotent. Costs 1 R2 get for the manifest and 1 for the pack, then as a
    /// restore per archive (1 R2 put, 1 KV get, up to 3 KV puts): a slice bounds a step's
    /// subrequests. Errors: `INVALID_INPUT` naming `pack` for a pack the backup does not have,
    /// and as `restoreFromBackup`.
    pub async fn restore_pack(
        &self,
        backup_id: &str,
        index: usize,
        owner: Option<&str>,
        slice: std::ops::Range<usize>,
    ) -> Result<Vec<String>> {
        Ok(self
            .restore_pack_slice(backup_id, index, owner, slice)
            .await?
            .restored)
    }

    /// [`Self::restore_pack`], also telling the sessions it skipped because their user's
    /// erasure covers them.
    pub async fn restore_pack_slice(
        &self,
        backup_id: &str,
        index: usize,
        owner: Option<&str>,
        slice: std::ops::Range<usize>,
    ) -> Result<RestoreTally> {
        let log = self.begin("restorePack");
        let backup_id = BackupId::parse(backup_id)?;
        let owner = owner.map(UserId::parse).transpose()?;
        let archives = match self
            .read_verified_backup(&log, &backup_id, owner.as_ref())
            .await?
        {
            ReadBackup::Verified(archives) if index == 0 => archives,
            ReadBackup::Packed(manifest) if index < manifest.packs.len() => {
                self.read_verified_pack(&log, &manifest, index).await?
            }
            _ => {
                let reason = format!("backup {backup_id} has no pack {index}");
                return Err(PersistenceError::invalid_input("pack", reason));
            }
        };
        let end = slice.end.min(archives.len());
        let chosen = archives.get(slice.start.min(end)..end).unwrap_or_default();
        let mut tally = RestoreTally::default();
        self.write_restored(&log, chosen, &mut tally).await?;
        log.event(
            "info",
            "backup pack restored",
            json!({ "backupId": backup_id.as_str(), "pack": index,
            "from": slice.start, "sessions": tally.restored.len(),
            "skippedErased": tally.skipped.len() }),
        );
        Ok(tally)
    }

    /// `manifest` and the chain of backups it is incremental to, oldest first, each readable
    /// and `owner`'s (a chain that loops is `CORRUPT_DATA`). Costs 1 R2 get per parent.
    async fn with_parents(
        &self,
        log: &OpLog<'_>,
        manifest: PackedManifest,
        owner: Option<&UserId>,
    ) -> Result<Vec<PackedManifest>> {
        let mut chain = vec![manifest];
        while let Some(parent_id) = chain.last().and_then(|last| last.parent_backup_id.clone()) {
            if chain.iter().any(|seen| seen.backup_id == parent_id) {
                let what = backup_manifest_object_key(&parent_id);
                return Err(PersistenceError::corrupt(
                    what,
                    "the chain of parents loops",
                ));
            }
            match self.read_verified_backup(log, &parent_id, owner).await? {
                // A parent is older than its child: anything else is a damaged or forged chain.
                ReadBackup::Packed(parent)
                    if chain
                        .last()
                        .is_some_and(|child| parent.created_at_ms >= child.created_at_ms) =>
                {
                    let what = backup_manifest_object_key(&parent_id);
                    return Err(PersistenceError::corrupt(
                        what,
                        "is not older than its child",
                    ));
                }
                ReadBackup::Packed(parent) => chain.push(parent),
                ReadBackup::Verified(_) => {
                    let what = backup_manifest_object_key(&parent_id);
                    return Err(PersistenceError::corrupt(
                        what,
                        "a parent backup must have packs",
                    ));
                }
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// Reads pack `index` of a committed backup, verifies it against the manifest and prepares
    /// its archives. Costs 1 R2 get. Errors: `NOT_FOUND` naming the pack when it is missing,
    /// and as [`verify_pack`].
    async fn read_verified_pack(
        &self,
        log: &OpLog<'_>,
        manifest: &PackedManifest,
        index: usize,
    ) -> Result<Vec<RestorableArchive>> {
        let key = &manifest.packs[index].key;
        // Fewer than 2^32 packs: the manifest lists them.
        let verify = |pack: StoredObject| verify_pack(manifest, index as u32, &pack.body);
        let entries = match self.r2_get(log, key).await? {
            Some(pack) => verify(pack),
            None => Err(PersistenceError::NotFound { key: key.clone() }),
        };
        let entries = match entries {
            Err(err) if self.has_replica() && falls_back(&err) => {
                // Missing or damaged here: the replica's copy, verified the same way.
                match self.replica_backup_object(log, key, &err).await.map(verify) {
                    Some(Ok(entries)) => entries,
                    _ => return Err(err),
                }
            }
            entries => entries?,
        };
        let backup_id = &manifest.backup_id;
        entries
            .into_iter()
            .map(|entry| match entry {
                PackEntry::Stored(stored) => {
                    prepare_stored_restore(&self.options.hasher, backup_id, *stored)
                }
                PackEntry::Document(session) => {
                    self.prepare_restore(backup_id, &session.session_id, session.archive_json)
                }
            })
            .collect()
    }

    /// Writes verified archives back with their KV entries, noting each session restored;
    /// an archive its user's erasure covers is not written, and its session is noted as
    /// skipped (the users' tombstones: 1 R2 head for one user not met before, 1 R2 list per
    /// 1000 tombstones for more).
    async fn write_restored(
        &self,
        log: &OpLog<'_>,
        archives: &[RestorableArchive],
        tally: &mut RestoreTally,
    ) -> Result<()> {
        let users = archives
            .iter()
            .filter_map(|archive| archive.metadata.user_id.as_deref())
            .filter_map(|user_id| UserId::parse(user_id).ok())
            .map(|user| self.options.hasher.user_key(&user))
            .collect();
        self.preload_tombstones(
            log,
            &mut tally.erasures,
            users,
            RESTORE_HEADS_BEFORE_LISTING,
        )
        .await?;
        for archive in archives {
            let metadata = &archive.metadata;
            let user_id = metadata.user_id.as_deref();
            if self
                .is_erased_archive(
                    log,
                    &mut tally.erasures,
                    &metadata.session_id,
                    user_id,
                    metadata.archived_at,
                )
                .await?
            {
                tally.skipped.push(metadata.session_id.clone());
                continue;
            }
            let stored = self
                .restore_archive_object(log, archive)
                .await?
                .stored(&archive.object_key)?;
            let truncated = archive.summary_truncated;
            self.restore_archive_entries(log, &archive.object_key, &stored, truncated)
                .await?;
            tally.restored.push(stored.session_id);
        }
        Ok(())
    }

    /// Reads and verifies the data of a backup of the earlier TypeScript implementation
    /// (`backups/<id>/data.json`, checked against the manifest's `checksum`) and prepares its
    /// archives.
    async fn read_legacy_backup(
        &self,
        log: &OpLog<'_>,
        manifest: &LegacyBackupManifest,
    ) -> Result<Vec<RestorableArchive>> {
        let backup_id = &manifest.backup_id;
        let data_key = legacy_backup_data_key(backup_id);
        let Some(data) = self.r2_get(log, &data_key).await? else {
            return Err(PersistenceError::NotFound { key: data_key });
        };
        let sessions = verify_legacy_backup(manifest, &data.body)?;
        let archived_at_ms = manifest.timestamp_ms.unwrap_or(data.meta.uploaded_ms);
        sessions
            .into_iter()
            .map(|session| {
                let what = format!("{data_key} session {}", session.session_id);
                let document =
                    legacy_backup_document(&what, &session.conversation_json, archived_at_ms)?;
                self.prepare_restore(backup_id, &session.session_id, document)
            })
            .collect()
    }

    /// Decodes a backed-up archive document and computes everything its restore writes.
    fn prepare_restore(
        &self,
        backup_id: &BackupId,
        session_id: &SessionId,
        document: String,
    ) -> Result<RestorableArchive> {
        let what = format!("backup {backup_id} session {session_id}");
        self.prepare_document(&what, session_id, document)
    }

    /// [`Self::prepare_restore`] of a document that `what` names in errors.
    pub(super) fn prepare_document(
        &self,
        what: &str,
        session_id: &SessionId,
        document: String,
    ) -> Result<RestorableArchive> {
        // It was accepted when archived: a since lowered maxArchiveSize does not lose it.
        let limit = self
            .policy
            .max_archive_size_bytes
            .max(document.len() as u64);
        let decoded =
            decode_archive(document.as_bytes(), None, limit).map_err(|err| match err {
                PersistenceError::CorruptData { reason, .. } => {
                    PersistenceError::corrupt(what, reason)
                }
                other => other,
            })?;
        if decoded.metadata.session_id != session_id.as_str() {
            return Err(PersistenceError::corrupt(
                what,
                format!("holds session {:?}", decoded.metadata.session_id),
            ));
        }
        let bytes = gzip::compress(document.as_bytes(), self.options.compression_level)?;
        let mut metadata = decoded.metadata;
        metadata.stored_size = bytes.len() as u64;
        metadata.sha256 = sha256_hex(&bytes);
        let object_key = archive_object_key(session_id, metadata.archived_at)?;
        // Computed now so that no write happens for a session whose entries cannot be built.
        listing_summary(&metadata, &object_key)?;
        if let Some(user_id) = &metadata.user_id {
            UserId::parse(user_id)?;
        }
        let custom_metadata = archive_custom_metadata(&self.options.hasher, &metadata)?;
        Ok(RestorableArchive {
            object_key,
            document: Some(document),
            bytes,
            metadata,
            summary_truncated: false,
            custom_metadata,
        })
    }

    /// Stores a restored archive if its key is free (or holds a damaged one), and says what it
    /// found.
    pub(super) async fn restore_archive_object(
        &self,
        log: &OpLog<'_>,
        archive: &RestorableArchive,
    ) -> Result<RestoredObject> {
        let key = &archive.object_key;
        let encrypted = parse_archive_object_key(key).is_some_and(|parsed| parsed.encrypted);
        let content_type = if encrypted {
            ENCRYPTED_CONTENT_TYPE
        } else {
            GZIP_CONTENT_TYPE
        };
        let put = |only_if_absent| ObjectPutOptions {
            custom_metadata: archive.custom_metadata.clone(),
            content_type: Some(content_type.to_owned()),
            content_encoding: None,
            sha256: Some(archive.metadata.sha256.clone()),
            only_if_absent,
            if_etag_matches: None,
        };
        if let PutOutcome::Stored(_) = self.r2_put(log, key, &archive.bytes, put(true)).await? {
            self.replicate_put(log, key, &archive.bytes, &put(false))
                .await;
            return Ok(RestoredObject::Written(archive.metadata.clone()));
        }
        let existing = self.r2_get(log, key).await?;
        let Some(existing) = existing else {
            // Deleted between the two calls: it is ours to write.
            self.r2_put(log, key, &archive.bytes, put(false)).await?;
            self.replicate_put(log, key, &archive.bytes, &put(false))
                .await;
            return Ok(RestoredObject::Written(archive.metadata.clone()));
        };
        let actual = sha256_hex(&existing.body);
        if actual == archive.metadata.sha256 {
            // An earlier restore may have stopped before its copy.
            self.replicate_put(log, key, &archive.bytes, &put(false))
                .await;
            return Ok(RestoredObject::Present(archive.metadata.clone()));
        }
        let intact = recorded_sha256(&existing.meta)
            .is_some_and(|recorded| recorded.eq_ignore_ascii_case(&actual));
        if !intact {
            log.event(
                "warn",
                "replacing a damaged archive with its backed-up copy",
                json!({ "key": key }),
            );
            self.r2_put(log, key, &archive.bytes, put(false)).await?;
            self.replicate_put(log, key, &archive.bytes, &put(false))
                .await;
            return Ok(RestoredObject::Written(archive.metadata.clone()));
        }
        // Intact, compressed differently (another level, or by a restore of format 1 or 2): the
        // same document is already there. (An archive backed up as stored is only inflated
        // here, when its key holds other bytes; an encrypted one never matches.)
        let limit = self
            .policy
            .max_archive_size_bytes
            .max(archive.metadata.raw_size);
        let inflate = |bytes: &[u8]| gzip::decompress(key, bytes, limit).ok();
        let ours = match &archive.document {
            Some(document) => Some(document.as_bytes().to_vec()),
            None => inflate(&archive.bytes),
        };
        let same_document =
            ours.is_some_and(|ours| inflate(&existing.body).is_some_and(|theirs| theirs == ours));
        if !same_document {
            return Ok(RestoredObject::Different);
        }
        Ok(RestoredObject::Present(ArchiveMetadata {
            stored_size: existing.body.len() as u64,
            sha256: actual,
            ..archive.metadata.clone()
        }))
    }

    /// Writes `archive_meta:<sid>` and then the index entries of a restored archive, so that
    /// a listed archive is always retrievable, whatever call a crash stops at.
    ///
    /// `archive_meta` is left alone when it already points at a newer archive of the session
    /// (the restored one is still indexed: listed sessions stay retrievable, as their newest
    /// archive). When it already records the restored key and checksum, the archive is in
    /// place (never lost, or restored earlier), and only index entries that are missing are
    /// written: a second restore writes nothing, and one that crashed between the entries is
    /// completed.
    async fn restore_archive_entries(
        &self,
        log: &OpLog<'_>,
        object_key: &str,
        metadata: &ArchiveMetadata,
        summary_truncated: bool,
    ) -> Result<()> {
        let session_id = SessionId::parse(&metadata.session_id)?;
        let mut entries = ArchiveEntries::new(&self.options.hasher, object_key, metadata)?;
        if summary_truncated {
            // Rebuilt from a cut listing summary: the listing must still say it is cut.
            entries.summary["summaryTruncated"] = json!(true);
        }
        let current = match self.kv_get(log, &entries.meta_key).await? {
            Some(record) => {
                read_archive_location(&entries.meta_key, &record.value, &session_id).ok()
            }
            None => None,
        };
        // The key alone is not enough: a restore re-compresses the document, so the bytes now
        // under the key may hash differently from what `archive_meta` recorded (another
        // compression level or backend), and a stale record would fail every retrieve.
        let already_restored = current.as_ref().is_some_and(|location| {
            location.key == object_key
                && location
                    .sha256
                    .as_deref()
                    .is_some_and(|recorded| recorded.eq_ignore_ascii_case(&metadata.sha256))
        });
        let newer_exists = current
            .and_then(|location| parse_archive_object_key(&location.key))
            .is_some_and(|current| current.archived_at_ms > metadata.archived_at);
        if !already_restored && !newer_exists {
            self.put_archive_record(log, &entries).await?;
        }
        for index_key in &entries.index_keys {
            if already_restored && self.kv_get(log, index_key).await?.is_some() {
                continue;
            }
            self.put_index_entry(log, &entries, index_key).await?;
        }
        Ok(())
    }
}
