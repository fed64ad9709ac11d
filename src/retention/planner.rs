//! The incremental retention planner: fed listing pages one at a time, it returns the deletions
//! each page settles.

use std::collections::BTreeSet;

use serde_json::Value;

use super::archive_catalog::ArchiveCatalog;
use super::backup_sweep::{BackupDecisions, BackupFateReport, BackupSweep};
use super::decision::{DeletionReason, PlannedDeletion};
use super::listed::{ListedKvKey, ListedR2Object};
use super::{has_aged, Limits, BACKUP_CREATED_AT_FIELD, INDEX_ARCHIVE_KEY_FIELD};
use crate::codec::cache::parse_cache_list_metadata;
use crate::error::{PersistenceError, Result};
use crate::keys::{
    parse_archive_index_key, parse_archive_meta_key, parse_archive_object_key,
    parse_backup_index_key, parse_backup_manifest_kv_key, parse_backup_object_key,
    parse_user_index_key, BackupId, ARCHIVE_PREFIX, BACKUP_PREFIX, EMBEDDING_PREFIX, QUERY_PREFIX,
};
use crate::platform::Binding;
use crate::policy::DataRetentionPolicy;

/// Knobs of a sweep that the policy does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Backup data without a manifest is left alone until all of it is this old (ms): its
    /// backup may still be running. Default 24 hours.
    pub orphan_backup_grace_ms: u64,
    /// An index entry whose archive is missing from the listing is left alone until the
    /// archive time it names is this old (ms), so an archive written after the listing went
    /// past its key is never mistaken for a missing one. Default 1 hour.
    pub missing_archive_grace_ms: u64,
    /// Most archive keys remembered to detect missing archives (about 100 bytes each); with
    /// more archives than this, missing archives are not detected in that sweep.
    /// Default 50 000.
    pub max_tracked_archive_keys: usize,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        const HOUR_MS: u64 = 60 * 60 * 1000;
        Self {
            // A backup Workflow instance stalled this long (retries, an outage) is given up.
            orphan_backup_grace_ms: 24 * HOUR_MS,
            missing_archive_grace_ms: HOUR_MS,
            max_tracked_archive_keys: 50_000,
        }
    }
}

/// Plans the deletions of one retention sweep from listing pages, with bounded memory.
///
/// Feed the R2 listing in key order (`backups/` then `conversations/`, or the whole bucket) with
/// [`plan_r2_page`](Self::plan_r2_page), then call [`finish_r2_listing`](Self::finish_r2_listing)
/// once it is complete, then feed KV pages, in any order, with
/// [`plan_kv_page`](Self::plan_kv_page). Each call returns the deletions it settles; nothing is
/// returned twice. A sweep cut short (CPU or subrequest budget) resumes in the next run from
/// [`r2_resume_after`](Self::r2_resume_after) with [`resuming_r2_after`](Self::resuming_r2_after)
/// and from the KV cursor. KV entries whose archive is missing are only detected after a
/// complete R2 listing seen by this planner, from its first page.
#[derive(Debug)]
pub struct RetentionPlanner {
    limits: Limits,
    max_tracked_archive_keys: usize,
    backups: BackupSweep,
    archives: ArchiveCatalog,
    /// The last R2 key fed, which the next one must sort after.
    last_r2_key: Option<String>,
    /// Every R2 key up to and including this one is decided.
    settled_r2_key: Option<String>,
    r2_finished: bool,
}

impl RetentionPlanner {
    /// A planner for a sweep at `now_ms` that lists R2 from its first key.
    pub fn new(policy: &DataRetentionPolicy, now_ms: i64, options: RetentionOptions) -> Self {
        Self {
            limits: Limits {
                now_ms,
                archive_retention_ms: policy.archive_retention_ms,
                orphan_backup_grace_ms: options.orphan_backup_grace_ms,
                missing_archive_grace_ms: options.missing_archive_grace_ms,
            },
            max_tracked_archive_keys: options.max_tracked_archive_keys,
            backups: BackupSweep::default(),
            archives: ArchiveCatalog::Collecting(BTreeSet::new()),
            last_r2_key: None,
            settled_r2_key: None,
            r2_finished: false,
        }
    }

    /// Decides backups by what the backup index decided (see [`BackupDecisions`]); without
    /// this, every backup is decided by age.
    pub fn decide_backups(&mut self, decisions: BackupDecisions) {
        self.backups.decisions = decisions;
    }

    /// The committed backups this planner has decided so far (at most 1000, in key order), and
    /// whether there were more.
    pub fn backup_fates(&self) -> (&[BackupFateReport], bool) {
        (&self.backups.fates, self.backups.fates_truncated)
    }

    /// A planner that continues an earlier sweep whose R2 listing was decided up to and
    /// including `start_after` (list R2 with `startAfter: start_after`). Missing archives are
    /// not detected: this planner never sees the whole listing.
    pub fn resuming_r2_after(
        policy: &DataRetentionPolicy,
        now_ms: i64,
        options: RetentionOptions,
        start_after: String,
    ) -> Self {
        Self {
            archives: ArchiveCatalog::Unavailable,
            settled_r2_key: Some(start_after.clone()),
            last_r2_key: Some(start_after),
            ..Self::new(policy, now_ms, options)
        }
    }

    /// The last R2 key whose fate is decided: a sweep stopped now resumes by listing R2 with
    /// `startAfter` set to it (`None`: from the start). Keys of a backup that is still being
    /// gathered come after it and are listed again.
    pub fn r2_resume_after(&self) -> Option<&str> {
        self.settled_r2_key.as_deref()
    }

    /// Plans one page of the R2 listing.
    ///
    /// Errors: `INVALID_INPUT` naming `r2Page[i].key` if keys do not come in strictly
    /// increasing order (backups could not be decided safely), or `r2Page` after
    /// [`finish_r2_listing`](Self::finish_r2_listing). Nothing is planned from a rejected page.
    pub fn plan_r2_page(&mut self, page: &[ListedR2Object]) -> Result<Vec<PlannedDeletion>> {
        self.check_r2_page(page)?;
        let mut planned = Vec::new();
        for object in page {
            let backup = parse_backup_object_key(&object.key);
            let closes_pending = match (self.backups.pending_id(), &backup) {
                (Some(pending), Some((id, _))) => pending != id,
                (Some(_), None) => !object.key.starts_with(BACKUP_PREFIX),
                (None, _) => false,
            };
            if closes_pending {
                planned.extend(self.backups.close(&self.limits));
                self.settled_r2_key = self.last_r2_key.clone();
            }
            match backup {
                Some((id, kind)) => self.backups.add(id, kind, object),
                None => planned.extend(self.plan_archive(object)),
            }
            if !self.backups.has_pending() {
                self.settled_r2_key = Some(object.key.clone());
            }
            self.last_r2_key = Some(object.key.clone());
        }
        Ok(planned)
    }

    /// The R2 listing is complete: decides the last backup and, if this planner saw the
    /// listing from its start, enables detection of index entries whose archive is missing.
    pub fn finish_r2_listing(&mut self) -> Vec<PlannedDeletion> {
        self.r2_finished = true;
        self.archives.complete();
        let planned = self.backups.close(&self.limits);
        self.settled_r2_key = self.last_r2_key.clone();
        planned
    }

    /// Plans one page of the KV listing.
    pub fn plan_kv_page(&self, page: &[ListedKvKey]) -> Vec<PlannedDeletion> {
        page.iter()
            .filter_map(|entry| {
                self.kv_reason(entry).map(|reason| PlannedDeletion {
                    store: Binding::Kv,
                    key: entry.name.clone(),
                    reason,
                    size_bytes: None,
                })
            })
            .collect()
    }

    fn check_r2_page(&self, page: &[ListedR2Object]) -> Result<()> {
        if self.r2_finished {
            return Err(PersistenceError::invalid_input(
                "r2Page",
                "the R2 listing was already finished",
            ));
        }
        let mut previous = self.last_r2_key.as_deref();
        for (index, object) in page.iter().enumerate() {
            if let Some(previous) = previous {
                if object.key.as_str() <= previous {
                    return Err(PersistenceError::invalid_input(
                        format!("r2Page[{index}].key"),
                        format!("{:?} does not sort after {previous:?}", object.key),
                    ));
                }
            }
            previous = Some(&object.key);
        }
        Ok(())
    }

    /// Deletes an archive past retention; remembers the ones that stay.
    fn plan_archive(&mut self, object: &ListedR2Object) -> Option<PlannedDeletion> {
        if !object.key.starts_with(ARCHIVE_PREFIX) {
            return None;
        }
        // Objects under conversations/ that are not archive keys are not ours to judge.
        let archive = parse_archive_object_key(&object.key)?;
        if has_aged(
            archive.archived_at_ms,
            self.limits.now_ms,
            self.limits.archive_retention_ms,
        ) {
            Some(PlannedDeletion {
                store: Binding::R2,
                key: object.key.clone(),
                reason: DeletionReason::ArchivePastRetention,
                size_bytes: Some(object.size),
            })
        } else {
            self.archives
                .add(&object.key, self.max_tracked_archive_keys);
            None
        }
    }

    fn kv_reason(&self, entry: &ListedKvKey) -> Option<DeletionReason> {
        let name = entry.name.as_str();
        let metadata = entry.metadata.as_ref();
        if name.starts_with(EMBEDDING_PREFIX) || name.starts_with(QUERY_PREFIX) {
            // Without readable metadata the expiry is unknown; KV's own TTL removes the entry.
            let times = parse_cache_list_metadata(name, metadata?).ok()?;
            times
                .is_expired(self.limits.now_ms)
                .then_some(DeletionReason::ExpiredCacheEntry)
        } else if parse_archive_meta_key(name).is_some() {
            self.index_entry_reason(metadata, None)
        } else if let Some(index_key) = parse_user_index_key(name) {
            self.index_entry_reason(metadata, Some(index_key.archived_at_ms))
        } else if let Some(index_key) = parse_archive_index_key(name) {
            self.index_entry_reason(metadata, Some(index_key.archived_at_ms))
        } else if let Some(backup_id) = parse_backup_manifest_kv_key(name) {
            let created_at = metadata
                .and_then(|metadata| metadata.get(BACKUP_CREATED_AT_FIELD))
                .and_then(Value::as_i64);
            self.backup_entry_reason(&backup_id, created_at)
        } else if let Some((backup_id, created_at)) = parse_backup_index_key(name) {
            if self.backups.entry_failed(&backup_id) {
                return None;
            }
            self.backup_entry_reason(&backup_id, Some(created_at))
        } else {
            None
        }
    }

    /// For a KV entry of a backup planned because the policy no longer keeps the backup, when
    /// this sweep did not delete the backup's R2 objects (a run resumed past `backups/`, or one
    /// that did not find them): that backup. Its manifest must be absent from R2 before the
    /// entry goes, since a delete that failed in an earlier run leaves it there, and a backup
    /// in R2 without its index entry would no longer be decided by the policy.
    pub fn unconfirmed_backup(&self, deletion: &PlannedDeletion) -> Option<BackupId> {
        if deletion.store != Binding::Kv || deletion.reason != DeletionReason::BackupPastRetention {
            return None;
        }
        let id = parse_backup_manifest_kv_key(&deletion.key)
            .or_else(|| parse_backup_index_key(&deletion.key).map(|(id, _)| id))?;
        self.backups.deleted_reason(&id).is_none().then_some(id)
    }

    /// A KV entry of a backup (its manifest copy or index entry) goes with the backup: when
    /// this sweep deleted it, or, for a backup this sweep did not find in R2 (deleted by an
    /// earlier run that stopped before its KV phase), when the policy does not keep it. It
    /// stays while the backup's R2 objects do (a failed delete: the next run decides it again
    /// from the index), and when its time is unknown.
    fn backup_entry_reason(
        &self,
        id: &BackupId,
        created_at_ms: Option<i64>,
    ) -> Option<DeletionReason> {
        if let Some(reason) = self.backups.deleted_reason(id) {
            return Some(reason);
        }
        if self.backups.still_listed(id) {
            return None;
        }
        let reasons = self
            .backups
            .decisions
            .reasons(id, created_at_ms?, &self.limits);
        reasons
            .is_empty()
            .then_some(DeletionReason::BackupPastRetention)
    }

    /// Records that `deletion`, planned by this planner, succeeded: a backup's KV entries are
    /// planned for deletion only once its manifest is gone.
    pub fn confirm_deleted(&mut self, deletion: &PlannedDeletion) {
        self.backups.confirm_deleted(deletion);
    }

    /// Records that deleting the KV key `key`, planned by this planner, failed (the index
    /// entry of a backup whose manifest copy stays is kept with it).
    pub fn kv_delete_failed(&mut self, key: &str) {
        self.backups.kv_delete_failed(key);
    }

    /// [`confirm_deleted`](Self::confirm_deleted) for each of `deletions`.
    pub fn confirm_all(&mut self, deletions: &[PlannedDeletion]) {
        deletions
            .iter()
            .for_each(|deletion| self.confirm_deleted(deletion));
    }

    /// An index entry dangles when the archive it names is past retention (so it is deleted,
    /// now or earlier) or, after a complete listing, missing. `key_archived_at_ms` is the
    /// archive time spelled in the entry's own key, used when its metadata names no archive.
    fn index_entry_reason(
        &self,
        metadata: Option<&Value>,
        key_archived_at_ms: Option<i64>,
    ) -> Option<DeletionReason> {
        let archive_key = metadata
            .and_then(|metadata| metadata.get(INDEX_ARCHIVE_KEY_FIELD))
            .and_then(Value::as_str);
        let archive = archive_key.and_then(parse_archive_object_key);
        let archived_at_ms = archive
            .as_ref()
            .map(|archive| archive.archived_at_ms)
            .or(key_archived_at_ms)?;
        let limits = &self.limits;
        let past_retention = has_aged(archived_at_ms, limits.now_ms, limits.archive_retention_ms);
        let missing = archive_key.is_some_and(|key| {
            archive.is_some()
                && self.archives.is_known_missing(key)
                && has_aged(
                    archived_at_ms,
                    limits.now_ms,
                    limits.missing_archive_grace_ms,
                )
        });
        (past_retention || missing).then_some(DeletionReason::DanglingIndexEntry)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::keys::{
        archive_index_key, archive_meta_key, archive_object_key, backup_data_key,
        backup_manifest_kv_key, backup_manifest_object_key, backup_pack_key,
        legacy_archive_object_key, legacy_backup_data_key, user_index_key, BackupId, SessionId,
    };

    const HOUR: i64 = 60 * 60 * 1000;
    const DAY: i64 = 24 * HOUR;
    /// 2025-06-01T00:00:00Z
    const NOW: i64 = 1_748_736_000_000;
    const RETENTION: i64 = 90 * DAY;
    const USER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn policy() -> DataRetentionPolicy {
        DataRetentionPolicy::default()
    }

    fn planner() -> RetentionPlanner {
        RetentionPlanner::new(&policy(), NOW, RetentionOptions::default())
    }

    fn session(id: &str) -> SessionId {
        SessionId::parse(id).unwrap()
    }

    fn backup(id: &str) -> BackupId {
        BackupId::parse(id).unwrap()
    }

    fn object(key: String, uploaded_ms: i64) -> ListedR2Object {
        ListedR2Object {
            key,
            uploaded_ms,
            size: 100,
            custom_metadata: None,
        }
    }

    fn archive(id: &str, archived_at_ms: i64) -> ListedR2Object {
        object(
            archive_object_key(&session(id), archived_at_ms).unwrap(),
            archived_at_ms,
        )
    }

    fn kv(name: String, metadata: Option<Value>) -> ListedKvKey {
        ListedKvKey {
            name,
            expiration_s: None,
            metadata,
        }
    }

    fn keys_and_reasons(planned: &[PlannedDeletion]) -> Vec<(Binding, &str, DeletionReason)> {
        planned
            .iter()
            .map(|deletion| (deletion.store, deletion.key.as_str(), deletion.reason))
            .collect()
    }

    #[test]
    fn cache_entries_go_by_their_own_expiry_and_never_on_a_guess() {
        let times =
            |expires_at: i64| Some(json!({"createdAt": NOW - DAY, "expiresAt": expires_at}));
        let page = [
            kv("embedding:aa".into(), times(NOW)),
            kv("query:bb".into(), times(NOW + 1)),
            kv("query:cc".into(), times(NOW - 1)),
            kv("query:no-metadata".into(), None),
            kv(
                "query:no-created".into(),
                Some(json!({"expiresAt": NOW - DAY})),
            ),
            kv(
                "embedding:text".into(),
                Some(json!({"expiresAt": "yesterday"})),
            ),
            kv("other:dd".into(), times(NOW - DAY)),
        ];
        assert_eq!(
            keys_and_reasons(&planner().plan_kv_page(&page)),
            [
                (
                    Binding::Kv,
                    "embedding:aa",
                    DeletionReason::ExpiredCacheEntry
                ),
                (Binding::Kv, "query:cc", DeletionReason::ExpiredCacheEntry),
            ]
        );
    }

    #[test]
    fn archives_go_by_the_time_in_their_key() {
        let mut old_upload_young_key = archive("young", NOW - RETENTION + 1);
        old_upload_young_key.uploaded_ms = NOW - 2 * RETENTION;
        let legacy_key = legacy_archive_object_key(&session("legacy"), NOW - RETENTION).unwrap();
        let mut page = vec![
            archive("exact", NOW - RETENTION),
            old_upload_young_key,
            object(legacy_key.clone(), NOW),
            object("conversations/notes.txt".into(), 0),
        ];
        page.sort_by(|a, b| a.key.cmp(&b.key));
        let mut planner = planner();
        let planned = planner.plan_r2_page(&page).unwrap();
        let exact_key = archive_object_key(&session("exact"), NOW - RETENTION).unwrap();
        let mut expected = vec![
            (
                Binding::R2,
                exact_key.as_str(),
                DeletionReason::ArchivePastRetention,
            ),
            (
                Binding::R2,
                legacy_key.as_str(),
                DeletionReason::ArchivePastRetention,
            ),
        ];
        expected.sort();
        let mut got = keys_and_reasons(&planned);
        got.sort();
        assert_eq!(got, expected);
        assert!(planned
            .iter()
            .all(|deletion| deletion.size_bytes == Some(100)));
        assert!(planner.finish_r2_listing().is_empty());
    }

    #[test]
    fn a_committed_backup_past_retention_goes_whole_with_its_kv_manifest() {
        let old = backup("backup_old");
        let young = backup("backup_young");
        let mut fresh_created_at = object(
            backup_manifest_object_key(&backup("backup_zz")),
            NOW - RETENTION,
        );
        fresh_created_at.custom_metadata = Some(BTreeMap::from([(
            BACKUP_CREATED_AT_FIELD.to_owned(),
            (NOW - RETENTION + 1).to_string(),
        )]));
        let page = [
            object(legacy_backup_data_key(&old), NOW - RETENTION - 10),
            object(backup_data_key(&old), NOW - RETENTION - 10),
            object(backup_manifest_object_key(&old), NOW - RETENTION),
            object(backup_data_key(&young), NOW - RETENTION - 10),
            object(backup_manifest_object_key(&young), NOW - RETENTION + 1),
            fresh_created_at,
        ];
        let mut planner = planner();
        let mut planned = planner.plan_r2_page(&page).unwrap();
        planned.extend(planner.finish_r2_listing());
        planner.confirm_all(&planned);
        planned.extend(planner.plan_kv_page(&[
            kv(backup_manifest_kv_key(&old), None),
            kv(backup_manifest_kv_key(&young), None),
            kv(
                backup_manifest_kv_key(&backup("backup_gone")),
                Some(json!({"createdAt": NOW - RETENTION})),
            ),
            kv(
                backup_manifest_kv_key(&backup("backup_new")),
                Some(json!({"createdAt": NOW - RETENTION + 1})),
            ),
        ]));
        let reason = DeletionReason::BackupPastRetention;
        assert_eq!(
            keys_and_reasons(&planned),
            [
                (
                    Binding::R2,
                    backup_manifest_object_key(&old).as_str(),
                    reason
                ),
                (Binding::R2, legacy_backup_data_key(&old).as_str(), reason),
                (Binding::R2, backup_data_key(&old).as_str(), reason),
                (Binding::Kv, backup_manifest_kv_key(&old).as_str(), reason),
                (Binding::Kv, "backup_manifest:backup_gone", reason),
            ]
        );
    }

    #[test]
    fn backup_data_without_manifest_goes_after_the_grace_period() {
        let grace = RetentionOptions::default().orphan_backup_grace_ms as i64;
        let stale = backup("backup_stale");
        let running = backup("backup_running");
        let page = [
            object(backup_data_key(&running), NOW - grace + 1),
            object(backup_data_key(&stale), NOW - grace),
        ];
        let mut planner = planner();
        let mut planned = planner.plan_r2_page(&page).unwrap();
        planned.extend(planner.finish_r2_listing());
        planner.confirm_all(&planned);
        planned.extend(planner.plan_kv_page(&[
            kv(backup_manifest_kv_key(&stale), None),
            kv(backup_manifest_kv_key(&running), None),
        ]));
        let reason = DeletionReason::OrphanBackupData;
        assert_eq!(
            keys_and_reasons(&planned),
            [
                (Binding::R2, backup_data_key(&stale).as_str(), reason),
                (Binding::Kv, backup_manifest_kv_key(&stale).as_str(), reason),
            ]
        );
    }

    #[test]
    fn packs_go_with_their_backup_or_as_orphans_after_the_grace_period() {
        let grace = RetentionOptions::default().orphan_backup_grace_ms as i64;
        let (old, orphan) = (backup("backup_old"), backup("backup_orphan"));
        // Key order: `manifest.json` sorts before `pack-<n>.json.gz`.
        let page = [
            object(backup_manifest_object_key(&old), NOW - RETENTION),
            object(backup_pack_key(&old, 0), NOW - RETENTION - 10),
            object(backup_pack_key(&old, 1), NOW - RETENTION - 5),
            object(backup_pack_key(&orphan, 0), NOW - grace),
            object(backup_pack_key(&orphan, 1), NOW - grace),
        ];
        let mut planner = planner();
        let mut planned = planner.plan_r2_page(&page).unwrap();
        planned.extend(planner.finish_r2_listing());
        let (past, orphaned) = (
            DeletionReason::BackupPastRetention,
            DeletionReason::OrphanBackupData,
        );
        assert_eq!(
            keys_and_reasons(&planned),
            [
                (Binding::R2, backup_manifest_object_key(&old).as_str(), past),
                (Binding::R2, backup_pack_key(&old, 0).as_str(), past),
                (Binding::R2, backup_pack_key(&old, 1).as_str(), past),
                (Binding::R2, backup_pack_key(&orphan, 0).as_str(), orphaned),
                (Binding::R2, backup_pack_key(&orphan, 1).as_str(), orphaned),
            ]
        );
    }

    #[test]
    fn a_manifest_on_the_next_page_keeps_its_data() {
        let id = backup("backup_split");
        let mut planner = planner();
        let first = planner
            .plan_r2_page(&[object(backup_data_key(&id), NOW - 30 * DAY)])
            .unwrap();
        assert!(first.is_empty());
        assert_eq!(planner.r2_resume_after(), None);
        let second = planner
            .plan_r2_page(&[object(backup_manifest_object_key(&id), NOW - 30 * DAY)])
            .unwrap();
        assert!(second.is_empty());
        assert!(planner.finish_r2_listing().is_empty());
        assert_eq!(
            planner.r2_resume_after(),
            Some(backup_manifest_object_key(&id).as_str())
        );
    }

    #[test]
    fn the_last_backup_is_decided_when_the_listing_ends() {
        let id = backup("backup_last");
        let mut planner = planner();
        let data = [object(backup_data_key(&id), NOW - DAY)];
        assert!(planner.plan_r2_page(&data).unwrap().is_empty());
        assert_eq!(
            keys_and_reasons(&planner.finish_r2_listing()),
            [(
                Binding::R2,
                backup_data_key(&id).as_str(),
                DeletionReason::OrphanBackupData
            )]
        );
    }

    #[test]
    fn a_resumed_sweep_relists_the_backup_it_had_not_decided() {
        let (done, open) = (backup("backup_a"), backup("backup_b"));
        let mut first_run = planner();
        let page = [
            object(backup_data_key(&done), NOW - DAY),
            object(backup_manifest_object_key(&done), NOW - DAY),
            object(backup_data_key(&open), NOW - DAY),
        ];
        assert!(first_run.plan_r2_page(&page).unwrap().is_empty());
        let resume_after = first_run.r2_resume_after().unwrap().to_owned();
        assert_eq!(resume_after, backup_manifest_object_key(&done));

        let mut second_run = RetentionPlanner::resuming_r2_after(
            &policy(),
            NOW,
            RetentionOptions::default(),
            resume_after,
        );
        let relisted = [
            object(backup_data_key(&open), NOW - DAY),
            object(backup_manifest_object_key(&open), NOW - DAY),
        ];
        assert!(second_run.plan_r2_page(&relisted).unwrap().is_empty());
        assert!(second_run.finish_r2_listing().is_empty());
        let err = RetentionPlanner::resuming_r2_after(
            &policy(),
            NOW,
            RetentionOptions::default(),
            backup_data_key(&open),
        )
        .plan_r2_page(&page[..1])
        .unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
    }

    #[test]
    fn index_entries_of_archives_past_retention_dangle() {
        let old_archive = archive_object_key(&session("s1"), NOW - RETENTION).unwrap();
        let page = [
            kv(
                archive_meta_key(&session("s1")),
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: old_archive })),
            ),
            kv(
                user_index_key(USER_KEY, NOW - RETENTION, &session("s1")).unwrap(),
                None,
            ),
            kv(
                user_index_key(USER_KEY, NOW - RETENTION + 1, &session("s2")).unwrap(),
                None,
            ),
            kv(archive_meta_key(&session("s3")), None),
            kv(
                archive_meta_key(&session("s4")),
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: "conversations/not-an-archive" })),
            ),
        ];
        // No R2 listing at all: the time alone decides.
        let planned = planner().plan_kv_page(&page);
        let user_key = user_index_key(USER_KEY, NOW - RETENTION, &session("s1")).unwrap();
        assert_eq!(
            keys_and_reasons(&planned),
            [
                (
                    Binding::Kv,
                    "archive_meta:s1",
                    DeletionReason::DanglingIndexEntry
                ),
                (
                    Binding::Kv,
                    user_key.as_str(),
                    DeletionReason::DanglingIndexEntry
                ),
            ]
        );
    }

    #[test]
    fn global_index_entries_dangle_like_user_index_entries() {
        let lost = archive_object_key(&session("lost"), NOW - DAY).unwrap();
        let kept = archive("kept", NOW - DAY);
        let page = [
            kv(
                archive_index_key(NOW - RETENTION, &session("old")).unwrap(),
                None,
            ),
            kv(
                archive_index_key(NOW - RETENTION + 1, &session("young")).unwrap(),
                None,
            ),
            kv(
                archive_index_key(NOW - DAY, &session("kept")).unwrap(),
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: kept.key })),
            ),
            kv(
                archive_index_key(NOW - DAY, &session("lost")).unwrap(),
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: lost })),
            ),
            kv("archive_index:not-a-time:s1".into(), None),
        ];
        let mut planner = planner();
        planner.plan_r2_page(std::slice::from_ref(&kept)).unwrap();
        planner.finish_r2_listing();
        let old_key = archive_index_key(NOW - RETENTION, &session("old")).unwrap();
        let lost_key = archive_index_key(NOW - DAY, &session("lost")).unwrap();
        assert_eq!(
            keys_and_reasons(&planner.plan_kv_page(&page)),
            [
                (
                    Binding::Kv,
                    old_key.as_str(),
                    DeletionReason::DanglingIndexEntry
                ),
                (
                    Binding::Kv,
                    lost_key.as_str(),
                    DeletionReason::DanglingIndexEntry
                ),
            ]
        );
    }

    #[test]
    fn index_entries_of_missing_archives_dangle_only_after_a_complete_listing() {
        let grace = RetentionOptions::default().missing_archive_grace_ms as i64;
        let pointing_at = |sid: &str, archived_at_ms: i64| {
            let archive_key = archive_object_key(&session(sid), archived_at_ms).unwrap();
            kv(
                archive_meta_key(&session(sid)),
                Some(json!({ INDEX_ARCHIVE_KEY_FIELD: archive_key })),
            )
        };
        let stored = archive("kept", NOW - 2 * DAY);
        let index = [
            pointing_at("kept", NOW - 2 * DAY),
            pointing_at("lost", NOW - grace),
            pointing_at("recent", NOW - grace + 1),
        ];

        let mut complete = planner();
        complete
            .plan_r2_page(std::slice::from_ref(&stored))
            .unwrap();
        assert!(
            complete.plan_kv_page(&index).is_empty(),
            "listing not finished"
        );
        complete.finish_r2_listing();
        assert_eq!(
            keys_and_reasons(&complete.plan_kv_page(&index)),
            [(
                Binding::Kv,
                "archive_meta:lost",
                DeletionReason::DanglingIndexEntry
            )]
        );

        let mut resumed = RetentionPlanner::resuming_r2_after(
            &policy(),
            NOW,
            RetentionOptions::default(),
            "backups/".into(),
        );
        resumed.plan_r2_page(std::slice::from_ref(&stored)).unwrap();
        resumed.finish_r2_listing();
        assert!(resumed.plan_kv_page(&index).is_empty(), "listing partial");

        let options = RetentionOptions {
            max_tracked_archive_keys: 1,
            ..RetentionOptions::default()
        };
        let mut overflowed = RetentionPlanner::new(&policy(), NOW, options);
        overflowed
            .plan_r2_page(&[stored.clone(), archive("more", NOW - DAY)])
            .unwrap();
        overflowed.finish_r2_listing();
        assert!(
            overflowed.plan_kv_page(&index).is_empty(),
            "too many to track"
        );
    }

    #[test]
    fn rejects_r2_pages_out_of_order_or_after_the_end() {
        // Keys sort by month: the March archive comes before the June one.
        let (june, march) = (archive("a", NOW), archive("b", NOW - RETENTION));
        let mut planner = planner();
        let err = planner
            .plan_r2_page(&[june.clone(), march.clone()])
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("r2Page[1].key"), "{err}");

        assert!(planner
            .plan_r2_page(std::slice::from_ref(&june))
            .unwrap()
            .is_empty());
        let err = planner
            .plan_r2_page(std::slice::from_ref(&june))
            .unwrap_err();
        assert!(err.to_string().contains("r2Page[0].key"), "{err}");

        planner.finish_r2_listing();
        let err = planner.plan_r2_page(&[march]).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("already finished"), "{err}");
    }
}
