//! `verifyStorage`'s third phase (`super::verify`): every committed backup's manifest, then
//! each pack against it; and backups whose manifest is gone although they were committed.

use super::log::OpLog;
use super::run::{stop_reason, Run, StopReason};
use super::verify::{slot_of, storage_failure, Problem, ProblemKind, Verification, VerifyPosition};
use super::DataPersistenceService;
use crate::codec::backup::{decode_packed_manifest, manifest_shape, verify_pack, ManifestShape};
use crate::error::PersistenceError;
use crate::keys::{
    backup_manifest_kv_key, backup_manifest_object_key, parse_backup_object_key, BackupId,
    BackupObjectKind, BACKUP_PREFIX,
};
use crate::store::{Clock, KvStore, ObjectStore, Rng};

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Phase 3: every committed backup in the sample, its manifest and each pack.
    pub(super) async fn verify_backups(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
    ) -> Result<(), StopReason> {
        loop {
            let page = self
                .next_verify_page(log, run, BACKUP_PREFIX, false)
                .await?;
            for listed in &page.objects {
                let Some((backup_id, kind)) = parse_backup_object_key(&listed.key) else {
                    run.position.after = Some(listed.key.clone());
                    continue;
                };
                if slot_of(backup_id.as_str(), run.position.pass.of) != run.position.pass.slot {
                    run.position.after = Some(listed.key.clone());
                    continue;
                }
                // `manifest.json` sorts before `pack-<n>.json`: packs listed first in their
                // folder have no manifest.
                let folder = format!("{BACKUP_PREFIX}{backup_id}/");
                let first_in_folder = !run
                    .position
                    .after
                    .as_deref()
                    .is_some_and(|after| after.starts_with(&folder));
                if matches!(kind, BackupObjectKind::Pack(_)) && first_in_folder {
                    self.afford_check(log, run, 1)?;
                    self.verify_committed(log, job, &backup_id).await?;
                }
                if kind == BackupObjectKind::Manifest {
                    if run.position.backup.as_deref() != Some(listed.key.as_str()) {
                        run.position.backup = Some(listed.key.clone());
                        run.position.next_pack = 0;
                    }
                    self.verify_backup(log, run, job, &backup_id, &listed.key)
                        .await?;
                    run.position.pass.checked += 1;
                }
                run.position.after = Some(listed.key.clone());
                run.position.backup = None;
                run.position.next_pack = 0;
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// For packs listed without a manifest: an uncommitted backup (being written, or failed;
    /// retention sweeps it) unless KV holds its manifest's copy, which is written only after
    /// the commit: then its manifest was lost. Costs 1 KV get.
    async fn verify_committed(
        &self,
        log: &OpLog<'_>,
        job: &mut Verification,
        backup_id: &BackupId,
    ) -> Result<(), StopReason> {
        let copy = self
            .kv_get(log, &backup_manifest_kv_key(backup_id))
            .await
            .map_err(|err| stop_reason(&err))?;
        if copy.is_some() {
            job.record(Problem {
                key: backup_manifest_object_key(backup_id),
                problem: ProblemKind::Missing,
                detail: "the backup was committed (KV holds its manifest's copy)".to_owned(),
                repaired: false,
                repaired_from: None,
            });
        }
        Ok(())
    }

    /// Checks one backup: its manifest, then each pack from `next_pack` (a run may stop between
    /// packs and the next one continues there, reading the manifest again).
    async fn verify_backup(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        backup_id: &BackupId,
        manifest_key: &str,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        self.afford_check(log, run, 2)?;
        let Some(manifest) = self.r2_get(log, manifest_key).await.map_err(stop)? else {
            return Ok(());
        };
        if run.position.next_pack == 0 {
            job.report.backups_checked += 1;
            job.report.objects_checked += 1;
            job.report.bytes_checked += manifest.body.len() as u64;
        }
        let problem = |key: &str, err: &PersistenceError| Problem {
            key: key.to_owned(),
            problem: ProblemKind::of(err).unwrap_or(ProblemKind::Corrupt),
            detail: err.to_string(),
            repaired: false,
            repaired_from: None,
        };
        if manifest_shape(&manifest.body) != ManifestShape::Packed {
            // Format 1 and the earlier implementation's: one data object, verified whole.
            match self.read_verified_backup(log, backup_id, None).await {
                Ok(_) => job.sound(manifest_key),
                Err(err) if storage_failure(&err) => return Err(stop_reason(&err)),
                Err(err) => job.record(problem(manifest_key, &err)),
            }
            return Ok(());
        }
        let manifest = match decode_packed_manifest(manifest_key, &manifest.body) {
            Ok(manifest) => manifest,
            Err(err) => {
                job.record(problem(manifest_key, &err));
                return Ok(());
            }
        };
        job.sound(manifest_key);
        while let Some(pack) = manifest.packs.get(run.position.next_pack as usize) {
            self.afford_check(log, run, 1)?;
            let stored = self.r2_get(log, &pack.key).await.map_err(stop)?;
            job.report.objects_checked += 1;
            run.position.pass.checked += 1;
            let checked = match stored {
                None => Err(PersistenceError::NotFound {
                    key: pack.key.clone(),
                }),
                Some(stored) => {
                    job.report.bytes_checked += stored.body.len() as u64;
                    verify_pack(&manifest, run.position.next_pack, &stored.body).map(drop)
                }
            };
            match checked {
                Ok(()) => job.sound(&pack.key),
                Err(err) => job.record(problem(&pack.key, &err)),
            }
            run.position.next_pack += 1;
        }
        Ok(())
    }
}
