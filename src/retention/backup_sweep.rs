//! Backups are decided as a whole: all objects of `backups/<id>/` are gathered first, because
//! whether data is an orphan depends on a manifest that sorts after it and may arrive on the
//! next listing page.

use std::collections::{BTreeMap, BTreeSet};

use super::decision::{DeletionReason, PlannedDeletion};
use super::listed::ListedR2Object;
use super::{has_aged, Limits, BACKUP_CREATED_AT_FIELD};
use crate::keys::{BackupId, BackupObjectKind};
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

/// Gathers the objects of one backup at a time and decides each backup once it is complete.
#[derive(Debug, Default)]
pub(super) struct BackupSweep {
    pending: Option<BackupGroup>,
    /// Backups whose R2 objects this sweep deleted, so their KV manifest copies go with them.
    deleted: BTreeMap<BackupId, DeletionReason>,
    /// Backups kept whatever their age: a newer backup is incremental to them (restoring it
    /// needs them), or they were made with `keep: true`.
    pub(super) protected: BTreeSet<BackupId>,
}

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
        if self.protected.contains(&group.id)
            || !has_aged(
                backup_time(&group.data, manifest),
                limits.now_ms,
                limits.archive_retention_ms,
            )
        {
            return Vec::new();
        }
        let reason = DeletionReason::BackupPastRetention;
        // The manifest (the commit point) goes first: a sweep cut short between the two then
        // leaves data without a manifest, which is invisible and swept as an orphan, rather
        // than a visible backup whose data is gone.
        let mut doomed = vec![manifest.clone()];
        doomed.extend(group.data);
        self.deleted.insert(group.id, reason);
        r2_deletions(doomed, reason)
    }

    /// Deletes the data of a backup that never got its manifest, once it is past the grace
    /// period: younger data may belong to a backup still being written.
    fn sweep_orphan(&mut self, group: BackupGroup, limits: &Limits) -> Vec<PlannedDeletion> {
        let data_count = group.data.len();
        let old_enough: Vec<ListedR2Object> = group
            .data
            .into_iter()
            .filter(|data| {
                has_aged(
                    data.uploaded_ms,
                    limits.now_ms,
                    limits.orphan_backup_grace_ms,
                )
            })
            .collect();
        // Its KV manifest copy goes only when nothing of the backup is left that may be in
        // progress.
        if !old_enough.is_empty() && old_enough.len() == data_count {
            self.deleted
                .insert(group.id, DeletionReason::OrphanBackupData);
        }
        r2_deletions(old_enough, DeletionReason::OrphanBackupData)
    }

    /// Why this sweep deleted the R2 objects of backup `id`, if it did.
    pub(super) fn deleted_reason(&self, id: &BackupId) -> Option<DeletionReason> {
        self.deleted.get(id).copied()
    }
}

/// When a committed backup counts as made: the newest of its objects' upload times and the
/// `createdAt` (decimal epoch ms) in its manifest's custom metadata, so that no object of a
/// deleted backup is younger than the retention.
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
