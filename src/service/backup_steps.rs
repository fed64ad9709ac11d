//! The steps of an automated backup, each one invocation (a Cloudflare Workflow step, retried by
//! the platform): [`plan`](DataPersistenceService::plan_backup) once, then one
//! [pack](DataPersistenceService::backup_pack) per step until the source is exhausted, then
//! [commit](DataPersistenceService::commit_backup). No step holds more than one pack, and each
//! is idempotent: a retried step lists from the same position and writes its pack again under
//! the same key (the same bytes while the archives are unchanged); the commit writes the
//! manifest only if absent. A backup whose commit never ran is invisible, and retention sweeps
//! its packs after the orphan grace period.
//!
//! Sources: the given sessions' newest archives; or an archive index, newest first — one
//! user's, or every archive's — down to the archives made after `since`. An automated backup of
//! the whole store without `since` is incremental to the newest earlier automated backup: it
//! holds the archives made after that one's high-water mark. The high-water mark is set
//! [`INDEX_LAG_MS`] before the backup's own time, because KV's index may show an archive up to
//! ~60 s after it was made; an archive near the mark may so be in two backups, which restores
//! harmlessly (restores never write anything twice).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::archive::FetchedArchive;
use super::backup::{record_metadata, BackupArchive};
use super::index_entries::{read_archive_location, recorded_sha256};
use super::log::OpLog;
use super::walk::KvPosition;
use super::DataPersistenceService;
use crate::codec::archive::{ArchiveMetadata, ENCRYPTED_SUMMARY_FIELD};
use crate::codec::backup::{
    decode_packed_manifest, manifest_shape, pack_key, BackupKind, ManifestShape, PackEntry,
    PackRecord, PackedManifest, StoredArchive, GZIP_PACKED_FORMAT_VERSION,
};
use crate::error::{PersistenceError, Result};
use crate::hash::verify_sha256;
use crate::keys::{
    archive_meta_key, archive_object_key, backup_manifest_object_key, new_backup_id,
    parse_archive_index_key, parse_user_index_key, user_index_prefix, BackupId, SessionId, UserId,
    ARCHIVE_INDEX_PREFIX,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::retention::INDEX_ARCHIVE_KEY_FIELD;
use crate::store::{Clock, KvListOptions, KvStore, ListedKvKey, ObjectStore, Rng};

/// How long before its own time an incremental backup's high-water mark is set: longer than KV
/// takes to show a new index entry (~60 s).
pub const INDEX_LAG_MS: i64 = 5 * 60_000;

/// How long before the orphan grace ends a backup's steps stop: room for clock skew between
/// invocations and for a retention sweep that listed the packs before the commit.
pub const COMMIT_MARGIN_MS: i64 = 60 * 60 * 1000;

/// How long a chain of incremental backups grows before the next backup is a full one.
pub const FULL_BACKUP_EVERY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What an automated backup is asked to do (the Workflow's parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRequest {
    /// Back up the archives made after this time (epoch ms) instead of after the last automated
    /// backup's high-water mark.
    pub since: Option<i64>,
    /// Back up these sessions' newest archives instead of an index.
    pub session_ids: Option<Vec<String>>,
    /// Back up this user's archives (their index), for them only.
    pub user_id: Option<String>,
    /// Keep the backup whatever the backup retention policy says.
    #[serde(default)]
    pub keep: bool,
}

/// What the plan step decided; every later step is given it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPlan {
    /// The backup's id.
    pub backup_id: String,
    /// Its time (epoch ms).
    pub created_at: i64,
    /// Archives made after this time are backed up; `None`: all.
    pub since: Option<i64>,
    /// The automated backup this one is incremental to.
    pub parent_backup_id: Option<String>,
    /// When that backup was made: archives of the index made after `since` but before this may
    /// be in it already (see [`INDEX_LAG_MS`]), and are skipped when it holds them.
    pub parent_created_at: Option<i64>,
    /// The archive time up to which this backup is complete.
    pub high_water_mark: Option<i64>,
    /// The owner, for a backup of one user's archives.
    pub user_id: Option<String>,
    /// The sessions, for a backup of given sessions.
    pub session_ids: Option<Vec<String>>,
    /// Kept whatever the backup retention policy says.
    pub keep: bool,
    /// Most archives a pack step reads (each one storage call).
    pub max_sessions: u32,
    /// A backup of the whole store made without `since`: the next such backup is incremental
    /// to it. Backups of a user, of given sessions or from a given time never are.
    #[serde(default)]
    pub chained: bool,
    /// When the chain this backup continues (or starts) began.
    #[serde(default)]
    pub chain_start: i64,
}

/// One pack step: pack `pack` of the plan's backup, from where the previous step stopped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackStep {
    /// The plan.
    pub plan: BackupPlan,
    /// The number of packs written by the steps before (the index this step's pack gets).
    pub pack: u32,
    /// Where the previous step stopped (`None` for the first step).
    pub from: Option<PackSource>,
}

/// Where a pack step continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PackSource {
    /// The sessions not backed up yet.
    Sessions(Vec<String>),
    /// The index position not handled yet.
    Index(KvPosition),
}

/// What one pack step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackStepReport {
    /// The pack written, for the manifest; `None` when there was nothing (left) to back up.
    pub record: Option<PackRecord>,
    /// Sessions asked for that had no archive.
    pub missing_session_ids: Vec<String>,
    /// Where the next step continues; `None` once the source is exhausted.
    pub next: Option<PackSource>,
    /// Archives of the index that could not be read (damaged, or larger than they may be):
    /// left out of the backup and logged, so that they do not stop it.
    pub unreadable_archives: Vec<String>,
}

/// The commit step: the plan and every pack step's report, in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitStep {
    /// The plan.
    pub plan: BackupPlan,
    /// The packs written, in order.
    pub packs: Vec<PackRecord>,
    /// Sessions asked for that had no archive.
    #[serde(default)]
    pub missing_session_ids: Vec<String>,
}

/// The archives of the pack a step is filling, within its bounds.
struct Pack {
    entries: Vec<PackEntry>,
    bytes: u64,
    max_bytes: u64,
    max_sessions: usize,
}

impl Pack {
    /// Adds an archive if the pack has room for it (an empty pack always has) and does not
    /// hold the session already; whether it did.
    fn take(&mut self, entry: PackEntry) -> bool {
        let size = entry.size();
        let fits = self.entries.is_empty()
            || (self.entries.len() < self.max_sessions
                && self.bytes.saturating_add(size) <= self.max_bytes
                && !self
                    .entries
                    .iter()
                    .any(|known| known.session_id() == entry.session_id()));
        if fits {
            self.bytes = self.bytes.saturating_add(size);
            self.entries.push(entry);
        }
        fits
    }
}

/// How an index entry's archive is described before its object is read.
enum Described {
    /// A current archive, by its metadata (and whether its summary was cut to fit a listing).
    Stored(ArchiveMetadata, bool),
    /// An archive of the earlier implementation, or one nothing describes: read as its
    /// document.
    Document,
}

/// The metadata an index entry's list metadata (the listing summary) gives of the archive
/// under `key`, and whether its summary was cut (or its topics emptied) to fit; `None` when
/// it has none for that key. Uncut, it is the whole [`ArchiveMetadata`]. An encrypted
/// archive's entry has no `summary` but `encryptedSummary`, as its record has `summary: ""`
/// beside the whole one encrypted.
fn listed_metadata(entry: &ListedKvKey, key: &str) -> Option<(ArchiveMetadata, bool)> {
    let listed = entry.metadata.as_ref()?;
    if listed.get(INDEX_ARCHIVE_KEY_FIELD).and_then(Value::as_str) != Some(key) {
        return None;
    }
    let truncated = listed.get("summaryTruncated").and_then(Value::as_bool) != Some(false);
    let mut listed = listed.clone();
    if let Some(fields) = listed.as_object_mut() {
        if !fields.contains_key("summary") && fields.contains_key(ENCRYPTED_SUMMARY_FIELD) {
            fields.insert("summary".to_owned(), Value::String(String::new()));
        }
    }
    let metadata = serde_json::from_value::<ArchiveMetadata>(listed).ok()?;
    Some((metadata, truncated))
}

/// An archive found in an index page, to put in a pack.
pub(super) struct Found {
    /// Its session.
    pub session_id: SessionId,
    /// Its R2 key.
    pub archive_key: String,
}

/// An index entry's archive as a backup (or a store export) takes it.
pub(super) enum IndexedArchive {
    /// Read and checked: as stored, or as its document.
    Read(BackupArchive),
    /// Its object is gone (logged).
    Missing,
    /// It cannot be read (damaged, larger than it may be): logged.
    Unreadable,
}

/// The archive an index entry names: its session and its R2 key (from the list metadata, else
/// from the key itself); `None` for an entry that is not an archive index entry.
pub(super) fn indexed_archive(entry: &ListedKvKey) -> Option<(Found, i64)> {
    let (session_id, archived_at) = match parse_archive_index_key(&entry.name) {
        Some(key) => (key.session_id, key.archived_at_ms),
        None => {
            let key = parse_user_index_key(&entry.name)?;
            (key.session_id, key.archived_at_ms)
        }
    };
    let named = entry
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get(INDEX_ARCHIVE_KEY_FIELD))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let archive_key = match named {
        Some(key) => key,
        None => archive_object_key(&session_id, archived_at).ok()?,
    };
    Some((
        Found {
            session_id,
            archive_key,
        },
        archived_at,
    ))
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Plans an automated backup: its id and time, and, for a backup of the whole store without
    /// `since`, the newest earlier automated backup it is incremental to. `max_sessions` bounds
    /// what one pack step reads (at most `backupPack.maxSessions`).
    ///
    /// Costs, for an incremental backup, 1 KV list per 1000 backups and 1 R2 get. Errors:
    /// `INVALID_INPUT` (`sessionIds` empty or given with `since`/`userId`, `maxSessions` 0),
    /// `INVALID_ID`, `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub async fn plan_backup(
        &self,
        request: BackupRequest,
        max_sessions: u32,
    ) -> Result<BackupPlan> {
        let log = self.begin("planBackup");
        if max_sessions == 0 {
            return Err(PersistenceError::invalid_input(
                "maxSessions",
                "must be at least 1",
            ));
        }
        if let Some(ids) = &request.session_ids {
            if ids.is_empty() || request.since.is_some() || request.user_id.is_some() {
                return Err(PersistenceError::invalid_input(
                    "sessionIds",
                    "must name at least one session, and not with since or userId",
                ));
            }
            for id in ids {
                SessionId::parse(id)?;
            }
        }
        // Each session once, in the order given.
        let mut seen = HashSet::new();
        let session_ids: Option<Vec<String>> = request.session_ids.map(|ids| {
            ids.into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect()
        });
        if let Some(user_id) = &request.user_id {
            UserId::parse(user_id)?;
        }
        let created_at = self.clock.now_ms();
        let backup_id = new_backup_id(created_at, &self.clock.random_u64().to_be_bytes())?;
        let whole_store = session_ids.is_none() && request.user_id.is_none();
        let chained = whole_store && request.since.is_none();
        // A chain that began a week ago ends: this backup is full and starts the next one, so
        // that a restore reads a bounded chain and retention can let old chains go.
        let last = match chained {
            true => self.last_automated_backup(&log).await?,
            false => None,
        };
        let (parent, chain_start) = match last {
            Some((parent, start)) if created_at.saturating_sub(start) < FULL_BACKUP_EVERY_MS => {
                (Some(parent), start)
            }
            _ => (None, created_at),
        };
        let since = request
            .since
            .or_else(|| parent.as_ref().and_then(|p| p.high_water_mark_ms));
        let high_water_mark = session_ids.is_none().then(|| {
            let mark = created_at.saturating_sub(INDEX_LAG_MS);
            since.map_or(mark, |since| mark.max(since)).min(created_at)
        });
        let plan = BackupPlan {
            backup_id: backup_id.to_string(),
            created_at,
            since,
            parent_created_at: parent.as_ref().map(|p| p.created_at_ms),
            parent_backup_id: parent.map(|p| p.backup_id.to_string()),
            high_water_mark,
            user_id: request.user_id,
            session_ids,
            keep: request.keep,
            max_sessions: max_sessions.min(self.options.backup_pack.max_sessions),
            chained,
            chain_start,
        };
        log.event(
            "info",
            "backup planned",
            json!({ "backupId": plan.backup_id,
            "since": plan.since, "parentBackupId": plan.parent_backup_id }),
        );
        Ok(plan)
    }

    /// The newest committed backup of the chain (from the backup index), read from its R2
    /// manifest, and when its chain started; `None` when there is none (or it cannot be read:
    /// logged, and the next backup is then a full one).
    async fn last_automated_backup(
        &self,
        log: &OpLog<'_>,
    ) -> Result<Option<(PackedManifest, i64)>> {
        let Some((id, chain_start)) = self.newest_chained_backup(log).await? else {
            return Ok(None);
        };
        let key = backup_manifest_object_key(&id);
        let manifest = match self.r2_get(log, &key).await? {
            Some(object) if manifest_shape(&object.body) == ManifestShape::Packed => {
                decode_packed_manifest(&key, &object.body)
            }
            _ => Err(PersistenceError::NotFound { key: key.clone() }),
        };
        match manifest {
            Ok(manifest) => Ok(Some((manifest, chain_start))),
            Err(err) => {
                log.event(
                    "warn",
                    "the last automated backup cannot be read; backing up everything",
                    json!({ "key": key, "error": err.to_string() }),
                );
                Ok(None)
            }
        }
    }

    /// Writes one pack of a planned backup from where the previous step stopped.
    ///
    /// Costs, for given sessions, 1 KV get and 1 R2 get per session; for an index, 1 KV list
    /// and 1 R2 get per archive; then 1 R2 put. At most `plan.maxSessions` archives and
    /// `backupPack.maxBytes` bytes of JSON (an archive larger than that alone). Errors:
    /// `CHECKSUM_MISMATCH` / `CORRUPT_DATA` for a damaged archive (never backed up),
    /// `NOT_FOUND` for an archive of another user in a user's backup, `INVALID_ID`,
    /// `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`.
    pub async fn backup_pack(&self, step: PackStep) -> Result<PackStepReport> {
        let log = self.begin("backupPack");
        let plan = &step.plan;
        self.check_within_orphan_grace(plan)?;
        let backup_id = BackupId::parse(&plan.backup_id)?;
        let owner = plan.user_id.as_deref().map(UserId::parse).transpose()?;
        let mut pack = Pack {
            entries: Vec::new(),
            bytes: 0,
            max_bytes: self.options.backup_pack.max_bytes,
            max_sessions: plan.max_sessions.max(1) as usize,
        };
        let mut missing = Vec::new();
        let mut unreadable_archives = Vec::new();
        let next = match (&plan.session_ids, step.from) {
            (Some(all), from) => {
                let left = match from {
                    Some(PackSource::Sessions(left)) => left,
                    _ => all.clone(),
                };
                self.pack_sessions(&log, left, &mut pack, &mut missing)
                    .await?
            }
            (None, from) => {
                let at = match from {
                    Some(PackSource::Index(at)) => at,
                    _ => KvPosition::default(),
                };
                let unreadable = &mut unreadable_archives;
                self.pack_index(&log, plan, owner.as_ref(), at, &mut pack, unreadable)
                    .await?
            }
        };
        let entries = pack.entries;
        let record = if entries.is_empty() {
            None
        } else {
            let created_at = plan.created_at;
            let index = step.pack as usize;
            Some(
                self.put_pack(&log, &backup_id, created_at, index, &entries)
                    .await?,
            )
        };
        log.event(
            "info",
            "backup pack written",
            json!({ "backupId": plan.backup_id,
            "pack": step.pack, "archives": entries.len(), "done": next.is_none() }),
        );
        Ok(PackStepReport {
            record,
            missing_session_ids: missing,
            next,
            unreadable_archives,
        })
    }

    /// Fills `pack` with the newest archives of the sessions `left`, in order (sessions without
    /// one go to `missing`); where the next step continues. A given session costs 2 calls (its
    /// KV record, then the archive): half as many a step as from an index.
    async fn pack_sessions(
        &self,
        log: &OpLog<'_>,
        left: Vec<String>,
        pack: &mut Pack,
        missing: &mut Vec<String>,
    ) -> Result<Option<PackSource>> {
        let budget = pack.max_sessions.div_ceil(2);
        let mut taken = 0;
        for id in &left {
            let session = SessionId::parse(id)?;
            if taken >= budget {
                break;
            }
            let Some(archive) = self.newest_archive_for_backup(log, &session).await? else {
                missing.push(id.clone());
                taken += 1;
                continue;
            };
            if !pack.take(archive.entry) {
                break;
            }
            taken += 1;
        }
        let rest: Vec<String> = left.into_iter().skip(taken).collect();
        Ok((!rest.is_empty()).then_some(PackSource::Sessions(rest)))
    }

    /// Fills `pack` from one page of the archive index (`owner`'s, or every archive's) at `at`,
    /// newest first, down to the plan's `since`; where the next step continues. Archives that
    /// cannot be read go to `unreadable` (logged); those a parent backup of the plan holds
    /// already are skipped.
    async fn pack_index(
        &self,
        log: &OpLog<'_>,
        plan: &BackupPlan,
        owner: Option<&UserId>,
        at: KvPosition,
        pack: &mut Pack,
        unreadable: &mut Vec<String>,
    ) -> Result<Option<PackSource>> {
        let prefix = match owner {
            Some(owner) => user_index_prefix(&self.options.hasher.user_key(owner)),
            None => ARCHIVE_INDEX_PREFIX.to_owned(),
        };
        let options = KvListOptions {
            prefix: Some(prefix),
            cursor: at.kv_cursor.clone(),
            limit: Some(pack.max_sessions.min(MAX_LIST_LIMIT as usize) as u32),
        };
        let page = self.kv_list(log, options).await?;
        // The parents' archives, read once a step meets one that may be in them.
        let mut parent_archives: Option<HashSet<(SessionId, String)>> = None;
        for entry in &page.keys {
            let resumed = at.kv_resume_at.as_ref();
            if resumed.is_some_and(|resume| entry.name < *resume) {
                continue;
            }
            let Some((found, archived_at)) = indexed_archive(entry) else {
                continue;
            };
            // Newest first: the first archive not after `since` ends the source.
            if plan.since.is_some_and(|since| archived_at <= since) {
                return Ok(None);
            }
            let archive = match self.read_indexed_archive(log, entry, &found).await? {
                IndexedArchive::Read(archive) => archive,
                IndexedArchive::Missing => continue,
                IndexedArchive::Unreadable => {
                    unreadable.push(found.archive_key);
                    continue;
                }
            };
            if plan
                .parent_created_at
                .is_some_and(|made| archived_at <= made)
            {
                let parent = match &parent_archives {
                    Some(parent) => parent,
                    None => parent_archives.insert(self.parent_archives(log, plan).await?),
                };
                if parent.contains(&(found.session_id.clone(), archive.sha256())) {
                    continue;
                }
            }
            if let Some(owner) = owner {
                if !archive.is_owned_by(owner) {
                    let session = &found.session_id;
                    return Err(PersistenceError::NotFound {
                        key: format!("an archive of session {session} owned by this user"),
                    });
                }
            }
            if !pack.take(archive.entry) {
                return Ok(Some(PackSource::Index(KvPosition {
                    kv_cursor: at.kv_cursor,
                    kv_resume_at: Some(entry.name.clone()),
                })));
            }
        }
        let next_page = page.cursor.filter(|_| !page.list_complete);
        Ok(next_page.map(|cursor| {
            PackSource::Index(KvPosition {
                kv_cursor: Some(cursor),
                kv_resume_at: None,
            })
        }))
    }

    /// Commits a planned backup whose packs are written: its manifest, written only if absent.
    /// Returns the backup id. Costs 1 R2 put (1 R2 get more when a retried commit finds its own
    /// manifest) and 1 KV put. Errors: `INVALID_INPUT` naming `packs` when the records are not
    /// this backup's packs in order, or `plan.createdAt` when the plan is too old to commit
    /// (see [`Self::check_within_orphan_grace`]), `CORRUPT_DATA` when another manifest has the
    /// id.
    pub async fn commit_backup(&self, step: CommitStep) -> Result<String> {
        let log = self.begin("commitBackup");
        let plan = step.plan;
        self.check_within_orphan_grace(&plan)?;
        let backup_id = BackupId::parse(&plan.backup_id)?;
        let missing = step
            .missing_session_ids
            .iter()
            .map(|id| SessionId::parse(id))
            .collect::<Result<Vec<_>>>()?;
        let mut manifest = PackedManifest::new(
            backup_id,
            plan.created_at,
            BackupKind::Automated,
            step.packs,
            missing,
        );
        manifest.user_id = plan.user_id.as_deref().map(UserId::parse).transpose()?;
        manifest.parent_backup_id = plan
            .parent_backup_id
            .as_deref()
            .map(BackupId::parse)
            .transpose()?;
        manifest.keep = plan.keep;
        manifest.high_water_mark_ms = plan.high_water_mark;
        // Packs written by a step of the version before (an instance that ran across the
        // update) are format 2's: the manifest says so. A mix of both fails the check below.
        let gzip_packs = !manifest.packs.is_empty()
            && manifest.packs.iter().enumerate().all(|(index, pack)| {
                pack.key
                    == pack_key(
                        GZIP_PACKED_FORMAT_VERSION,
                        &manifest.backup_id,
                        index as u32,
                    )
            });
        if gzip_packs {
            manifest.format_version = GZIP_PACKED_FORMAT_VERSION;
        }
        // The records came back through the Workflow's state: check them as a reader would.
        let bytes = manifest.encode()?;
        decode_packed_manifest("packs", &bytes)
            .map_err(|err| PersistenceError::invalid_input("packs", err.to_string()))?;
        let chain_start = plan.chained.then_some(plan.chain_start);
        self.commit_manifest(&log, &manifest, chain_start).await?;
        log.event(
            "info",
            "backup committed",
            json!({ "backupId": plan.backup_id,
            "packs": manifest.packs.len(), "sessions": manifest.session_ids.len() }),
        );
        Ok(plan.backup_id)
    }

    /// Refuses a step of a backup planned so long ago that retention may have swept its first
    /// packs as orphans (all of an uncommitted backup's objects older than the orphan grace):
    /// committing it would make visible a backup that cannot restore. Every pack is written
    /// after the plan, so a plan younger than the grace (less [`COMMIT_MARGIN_MS`] for clocks and
    /// a sweep in flight) has none swept. Such an instance (a Workflow paused or retrying for a
    /// day) fails; its packs are swept and the next backup starts afresh.
    fn check_within_orphan_grace(&self, plan: &BackupPlan) -> Result<()> {
        let grace =
            i64::try_from(self.options.retention.orphan_backup_grace_ms).unwrap_or(i64::MAX);
        let deadline = plan
            .created_at
            .saturating_add(grace)
            .saturating_sub(COMMIT_MARGIN_MS.min(grace / 2));
        let now = self.clock.now_ms();
        if now <= deadline {
            return Ok(());
        }
        Err(PersistenceError::invalid_input(
            "plan.createdAt",
            format!(
                "backup {} was planned {} min ago, past the {} min within which it must commit \
                 (its packs may already be swept as orphans); start a new backup",
                plan.backup_id,
                (now - plan.created_at) / 60_000,
                (deadline - plan.created_at) / 60_000,
            ),
        ))
    }

    /// Every archive (session and SHA-256 of its document) held by the backups `plan` is
    /// incremental to that may hold archives made after `plan.since`: the parent, and its own
    /// parents as long as they were made after `since` (backups made within [`INDEX_LAG_MS`] of
    /// each other). Costs 1 R2 get per backup read.
    async fn parent_archives(
        &self,
        log: &OpLog<'_>,
        plan: &BackupPlan,
    ) -> Result<HashSet<(SessionId, String)>> {
        let mut held = HashSet::new();
        let mut next = plan.parent_backup_id.clone();
        let mut seen = HashSet::new();
        while let Some(id) = next.take() {
            if !seen.insert(id.clone()) {
                break;
            }
            let key = backup_manifest_object_key(&BackupId::parse(&id)?);
            let Some(object) = self.r2_get(log, &key).await? else {
                return Err(PersistenceError::NotFound { key });
            };
            let manifest = decode_packed_manifest(&key, &object.body)?;
            if plan
                .since
                .is_none_or(|since| manifest.created_at_ms > since)
            {
                next = manifest.parent_backup_id.map(|id| id.to_string());
            }
            let entries = manifest.packs.into_iter().flat_map(|pack| pack.sessions);
            held.extend(entries.map(|entry| (entry.session_id, entry.sha256)));
        }
        Ok(held)
    }

    /// The archive of the index entry `entry` (which names `found`), as a backup packs it:
    /// as stored, with the metadata the entry's listing summary gives when it is whole, else
    /// the session's `archive_meta` record if it describes this very archive, else the cut
    /// listing summary (`summaryTruncated`); an archive of the earlier implementation (or one
    /// nothing describes) as its document. Its bytes are checked against that metadata. Costs
    /// 1 R2 get, and 1 KV get when the listing summary was cut or is missing. Errors: only
    /// `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN`; a damaged archive is [`IndexedArchive::Unreadable`].
    pub(super) async fn read_indexed_archive(
        &self,
        log: &OpLog<'_>,
        entry: &ListedKvKey,
        found: &Found,
    ) -> Result<IndexedArchive> {
        let described = match listed_metadata(entry, &found.archive_key) {
            Some((metadata, false)) if metadata.format_version > 0 => {
                Described::Stored(metadata, false)
            }
            Some((metadata, _)) if metadata.format_version == 0 => Described::Document,
            // Cut to fit the listing, or not there: the session's record has it whole if
            // it still describes this archive (1 KV get).
            listed => match self.record_of(log, found).await? {
                Some(metadata) => Described::Stored(metadata, false),
                None => match listed {
                    Some((metadata, truncated)) => Described::Stored(metadata, truncated),
                    None => Described::Document,
                },
            },
        };
        let Some(fetched) = self.fetch_archive_by_key(log, &found.archive_key).await? else {
            log.event(
                "warn",
                "index entry of a missing archive skipped",
                json!({ "key": entry.name }),
            );
            return Ok(IndexedArchive::Missing);
        };
        let archive = match described {
            Described::Stored(metadata, summary_truncated) => {
                let key = fetched.key;
                verify_sha256(&key, &fetched.body, &metadata.sha256).and_then(|()| {
                    let archive = StoredArchive {
                        session_id: found.session_id.clone(),
                        key: key.clone(),
                        metadata,
                        summary_truncated,
                        bytes: fetched.body,
                    };
                    BackupArchive::stored(&key, archive)
                })
            }
            Described::Document => BackupArchive::document(fetched, &found.session_id),
        };
        match archive {
            Ok(archive) => Ok(IndexedArchive::Read(archive)),
            Err(
                err @ (PersistenceError::StorageUnavailable { .. }
                | PersistenceError::CircuitOpen { .. }),
            ) => Err(err),
            // One damaged archive must not keep every later backup from committing: it is
            // left out, logged and reported.
            Err(err) => {
                let fields = json!({ "key": found.archive_key, "code": err.code(),
                    "error": err.to_string() });
                log.event("error", "archive skipped: it cannot be read", fields);
                Ok(IndexedArchive::Unreadable)
            }
        }
    }

    /// The metadata `archive_meta:<sid>` records for the archive `found`, when it is this
    /// library's record of that very archive (not of a newer one, not the earlier
    /// implementation's); `None` otherwise, an unreadable record included. Costs 1 KV get.
    async fn record_of(&self, log: &OpLog<'_>, found: &Found) -> Result<Option<ArchiveMetadata>> {
        let meta_key = archive_meta_key(&found.session_id);
        let Some(record) = self.kv_get(log, &meta_key).await? else {
            return Ok(None);
        };
        let describes_it = read_archive_location(&meta_key, &record.value, &found.session_id)
            .is_ok_and(|location| location.key == found.archive_key && location.sha256.is_some());
        Ok(describes_it
            .then(|| record_metadata(&meta_key, &record.value).ok())
            .flatten())
    }

    /// The archive object under `key`, as read for a backup; `None` when it is gone.
    async fn fetch_archive_by_key(
        &self,
        log: &OpLog<'_>,
        key: &str,
    ) -> Result<Option<FetchedArchive>> {
        let Some(object) = self.r2_get(log, key).await? else {
            return Ok(None);
        };
        let expected_sha256 = recorded_sha256(&object.meta).map(str::to_owned);
        // As retrieval reads it: a size recorded with the checksum is trusted, so an archive
        // stays readable after maxArchiveSize is lowered.
        let read_limit = self.read_limit(&object.meta, expected_sha256.is_some());
        Ok(Some(FetchedArchive {
            key: key.to_owned(),
            read_limit,
            expected_sha256,
            body: object.body,
        }))
    }
}
