//! Backups are decided as a whole: all objects of `backups/<id>/` are gathered first, because
//! whether data is an orphan depends on a manifest that sorts after it and may arrive on the
//! next listing page.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::decision::{DeletionReason, PlannedDeletion};
use super::gfs::KeepReason;
use super::listed::ListedR2Object;
use super::{has_aged, Limits, BACKUP_CREATED_AT_FIELD};
use crate::keys::{
    parse_backup_manifest_kv_key, parse_backup_object_key, BackupId, BackupObjectKind,
};
use crate::platform::Binding;

/// The objects listed so far under one `backups/<id>/`.
#[derive(Debug)]
struct BackupGroup {
    id: BackupId,
    /// `data.json.gz`, `pack-<n>.json.gz` and legacy `data.json`.
    data: Vec<ListedR2Object>,
    /// `manifest.json`, the commit point.
    manifest: Option<ListedR2Object>,
}

/// What was decided before the sweep: every indexed backup's reasons to stay under the
/// rotation (`super::gfs`; none: the policy deletes it), and for backups outside the index
/// (made before it, or whose index entry failed to write) those pinned by their KV manifest
/// copy and those a backup depends on. Any other backup (or one not yet visible in KV) is
/// decided by age.
#[derive(Debug, Clone, Default)]
pub struct BackupDecisions {
    /// Indexed backups, and pinned ones outside the index, and why they are kept (empty:
    /// deleted).
    pub decided: BTreeMap<BackupId, Vec<KeepReason>>,
    /// Backups outside the index that a kept one depends on.
    pub protected: BTreeSet<BackupId>,
}

impl BackupDecisions {
    /// Why backup `id`, made at `created_at_ms`, stays (empty: it goes).
    pub(super) fn reasons(
        &self,
        id: &BackupId,
        created_at_ms: i64,
        limits: &Limits,
    ) -> Vec<KeepReason> {
        if let Some(reasons) = self.decided.get(id) {
            return reasons.clone();
        }
        if self.protected.contains(id) {
            vec![KeepReason::Parent]
        } else if !has_aged(created_at_ms, limits.now_ms, limits.archive_retention_ms) {
            vec![KeepReason::WithinRetention]
        } else {
            Vec::new()
        }
    }
}

/// The fate of one committed backup in a sweep, as a dry run reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupFateReport {
    /// The backup.
    pub backup_id: BackupId,
    /// When it was made (epoch ms).
    pub created_at: i64,
    /// Whether it stays.
    pub kept: bool,
    /// Why it stays; empty when it goes.
    pub reasons: Vec<KeepReason>,
}

/// Gathers the objects of one backup at a time and decides each backup once it is complete.
#[derive(Debug, Default)]
pub(super) struct BackupSweep {
    pending: Option<BackupGroup>,
    /// Backups whose R2 objects this sweep deleted, so their KV entries go with them: committed
    /// ones once the delete of their manifest succeeded ([`BackupSweep::confirm_deleted`]).
    deleted: BTreeMap<BackupId, DeletionReason>,
    /// Committed backups this sweep listed in R2: while one's deletion is not confirmed, its
    /// KV entries stay, or the next run would no longer find it in the index.
    listed: BTreeSet<BackupId>,
    /// Backups whose KV manifest copy failed to delete: their index entry stays, so the next
    /// run finds the backup again and deletes both.
    entry_failed: BTreeSet<BackupId>,
    /// What the backup index decided.
    pub(super) decisions: BackupDecisions,
    /// The first [`MAX_REPORTED_FATES`] committed backups decided, in key order.
    pub(super) fates: Vec<BackupFateReport>,
    /// Whether more backups were decided than `fates` holds.
    pub(super) fates_truncated: bool,
}

/// Most backup fates a sweep keeps for its report.
const MAX_REPORTED_FATES: usize = 1000;

impl BackupSweep {
    /// Whether some backup's objects are gathered but not yet decided.
    pub(super) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The id of the backup being gathered.
    pub(super) fn pending_id(&self) -> Option<&BackupId> {
        self.pending.as_ref().map(|group| &group.id)
    }

    /// Adds an object of backup `id`; the caller first closes a pending backup of another id.
    pub(super) fn add(&mut self, id: BackupId, kind: BackupObjectKind, object: &ListedR2Object) {
        let group = self.pending.get_or_insert_with(|| BackupGroup {
            id,
            data: Vec::new(),
            manifest: None,
        });
        match kind {
            BackupObjectKind::Data | BackupObjectKind::Pack(_) | BackupObjectKind::LegacyData => {
                group.data.push(object.clone())
            }
            BackupObjectKind::Manifest => group.manifest = Some(object.clone()),
        }
    }

    /// Decides the pending backup: every object it has listed is final.
    pub(super) fn close(&mut self, limits: &Limits) -> Vec<PlannedDeletion> {
        let Some(group) = self.pending.take() else {
            return Vec::new();
        };
        let Some(manifest) = &group.manifest else {
            return self.sweep_orphan(group, limits);
        };
        let created_at = backup_time(&group.data, manifest);
        let reasons = self.decisions.reasons(&group.id, created_at, limits);
        let kept = !reasons.is_empty();
        self.listed.insert(group.id.clone());
        if self.fates.len() < MAX_REPORTED_FATES {
            self.fates.push(BackupFateReport {
                backup_id: group.id.clone(),
                created_at,
                kept,
                reasons,
            });
        } else {
            self.fates_truncated = true;
        }
        if kept {
            return Vec::new();
        }
        let reason = DeletionReason::BackupPastRetention;
        // The manifest (the commit point) goes first: a sweep cut short between the two then
        // leaves data without a manifest, which is invisible and swept as an orphan, rather
        // than a visible backup whose data is gone.
        let mut doomed = vec![manifest.clone()];
        doomed.extend(group.data);
        r2_deletions(doomed, reason)
    }

    /// Deletes the data of a backup that never got its manifest once all of it is past the
    /// grace period: a backup still being written (a Workflow writes a pack a step, for as long
    /// as it runs) has a younger pack, and must not lose its first packs before its commit.
    fn sweep_orphan(&mut self, group: BackupGroup, limits: &Limits) -> Vec<PlannedDeletion> {
        let stalled = group.data.iter().all(|data| {
            has_aged(
                data.uploaded_ms,
                limits.now_ms,
                limits.orphan_backup_grace_ms,
            )
        });
        if !stalled || group.data.is_empty() {
            return Vec::new();
        }
        self.deleted
            .insert(group.id, DeletionReason::OrphanBackupData);
        r2_deletions(group.data, DeletionReason::OrphanBackupData)
    }

    /// Records that `deletion` succeeded: a committed backup's manifest gone means its KV
    /// entries can go.
    pub(super) fn confirm_deleted(&mut self, deletion: &PlannedDeletion) {
        if let Some((id, BackupObjectKind::Manifest)) = parse_backup_object_key(&deletion.key) {
            self.deleted.insert(id, deletion.reason);
        }
    }

    /// Why this sweep deleted the R2 objects of backup `id`, if it did.
    pub(super) fn deleted_reason(&self, id: &BackupId) -> Option<DeletionReason> {
        self.deleted.get(id).copied()
    }

    /// Records that deleting the KV entry `key` failed.
    pub(super) fn kv_delete_failed(&mut self, key: &str) {
        if let Some(id) = parse_backup_manifest_kv_key(key) {
            self.entry_failed.insert(id);
        }
    }

    /// Whether deleting backup `id`'s KV manifest copy failed in this sweep.
    pub(super) fn entry_failed(&self, id: &BackupId) -> bool {
        self.entry_failed.contains(id)
    }

    /// Whether this sweep listed committed backup `id` in R2 (and has not deleted it).
    pub(super) fn still_listed(&self, id: &BackupId) -> bool {
        self.listed.contains(id) && !self.deleted.contains_key(id)
    }
}

/// When a committed backup counts as made: the newest of its objects' upload times and the
/// `createdAt` (decimal epoch ms) in its manifest's custom metadata, so that under the age rule
/// no object of a deleted backup is younger than the retention.
fn backup_time(data: &[ListedR2Object], manifest: &ListedR2Object) -> i64 {
    let created_at = manifest
        .custom_metadata
        .as_ref()
        .and_then(|metadata| metadata.get(BACKUP_CREATED_AT_FIELD))
        .and_then(|text| text.parse::<i64>().ok());
    data.iter()
        .map(|object| object.uploaded_ms)
        .chain(created_at)
        .fold(manifest.uploaded_ms, i64::max)
}

fn r2_deletions(objects: Vec<ListedR2Object>, reason: DeletionReason) -> Vec<PlannedDeletion> {
    objects
        .into_iter()
        .map(|object| PlannedDeletion {
            store: Binding::R2,
            key: object.key,
            reason,
            size_bytes: Some(object.size),
        })
        .collect()
}
