//! `verifyStorage`'s third phase (`super::verify`): every committed backup's manifest, then
//! each pack against it; and backups whose manifest is gone although they were committed.

use super::log::OpLog;
use super::run::{stop_reason, Run, StopReason};
use super::verify::{slot_of, storage_failure, Problem, ProblemKind, Verification, VerifyPosition};
use super::DataPersistenceService;
use crate::codec::backup::{decode_packed_manifest, manifest_shape, verify_pack, ManifestShape};
use crate::error::PersistenceError;
use crate::hash::sha256_hex;
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
                    self.verify_committed(log, run, job, &backup_id).await?;
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
    /// the commit: then its manifest was lost, and a repair takes the replica's if it names
    /// this backup. Costs 1 KV get (and 1 replica get, 1 R2 put).
    async fn verify_committed(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        backup_id: &BackupId,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        let copy = self
            .kv_get(log, &backup_manifest_kv_key(backup_id))
            .await
            .map_err(stop)?;
        if copy.is_none() {
            return Ok(());
        }
        let key = backup_manifest_object_key(backup_id);
        let mut found = Problem {
            key: key.clone(),
            problem: ProblemKind::Missing,
            detail: "the backup was committed (KV holds its manifest's copy)".to_owned(),
            repaired: false,
            repaired_from: None,
        };
        if job.options.repair && self.has_replica() {
            self.afford_check(log, run, 2)?;
            found.repaired_from = self.repair_manifest(log, &key, backup_id).await?;
            found.repaired = found.repaired_from.is_some();
        }
        job.record(found);
        Ok(())
    }

    /// Writes the replica's manifest of `backup_id` to the primary when it reads as that
    /// backup's; where it came from, or `None`. Costs 1 replica get and 1 R2 put.
    async fn repair_manifest(
        &self,
        log: &OpLog<'_>,
        key: &str,
        backup_id: &BackupId,
    ) -> Result<Option<String>, StopReason> {
        let copy = self
            .replica_get(log, key)
            .await
            .map_err(|err| stop_reason(&err))?;
        let Some(copy) = copy else {
            return Ok(None);
        };
        let readable = match manifest_shape(&copy.body) {
            ManifestShape::Packed => decode_packed_manifest(key, &copy.body)
                .is_ok_and(|manifest| manifest.backup_id == *backup_id),
            _ => false,
        };
        if !readable {
            return Ok(None);
        }
        self.restore_from_replica(log, &copy)
            .await
            .map(Some)
            .map_err(|err| stop_reason(&err))
    }

    /// Checks one backup: its manifest, then each pack from `next_pack` (a run may stop between
    /// packs and the next one continues there, reading the manifest again), then, with a
    /// replica, the replica's manifest (last, as it is written last). Either bucket's damaged
    /// pack or manifest is repaired from the other's verified copy.
    async fn verify_backup(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        backup_id: &BackupId,
        manifest_key: &str,
    ) -> Result<(), StopReason> {
        let stop = |err: PersistenceError| stop_reason(&err);
        self.afford_check(log, run, 2 + self.replica_calls(2))?;
        let Some(stored_manifest) = self.r2_get(log, manifest_key).await.map_err(stop)? else {
            return Ok(());
        };
        if run.position.next_pack == 0 {
            job.report.backups_checked += 1;
            job.report.objects_checked += 1;
            job.report.bytes_checked += stored_manifest.body.len() as u64;
        }
        let problem = |key: &str, err: &PersistenceError| Problem {
            key: key.to_owned(),
            problem: ProblemKind::of(err).unwrap_or(ProblemKind::Corrupt),
            detail: err.to_string(),
            repaired: false,
            repaired_from: None,
        };
        let manifest = if manifest_shape(&stored_manifest.body) == ManifestShape::Packed {
            decode_packed_manifest(manifest_key, &stored_manifest.body)
        } else {
            // Format 1 and the earlier implementation's: one data object, verified whole, in
            // the primary alone (a restore would fall back to the replica). A damaged packed
            // manifest may read as one of those too.
            let read = self.read_verified_backup_from(log, backup_id, None, false);
            match read.await {
                Ok(_) => {
                    job.sound(manifest_key);
                    return Ok(());
                }
                Err(err) if storage_failure(&err) => return Err(stop_reason(&err)),
                Err(err) => Err(err),
            }
        };
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(err) => {
                let mut found = problem(manifest_key, &err);
                if job.options.repair && self.has_replica() {
                    found.repaired_from =
                        self.repair_manifest(log, manifest_key, backup_id).await?;
                    found.repaired = found.repaired_from.is_some();
                }
                job.record(found);
                return Ok(());
            }
        };
        job.sound(manifest_key);
        while let Some(pack) = manifest.packs.get(run.position.next_pack as usize) {
            self.afford_check(log, run, 1 + self.replica_calls(3))?;
            let stored = self.r2_get(log, &pack.key).await.map_err(stop)?;
            job.report.objects_checked += 1;
            run.position.pass.checked += 1;
            let index = run.position.next_pack;
            let checked = match &stored {
                None => Err(PersistenceError::NotFound {
                    key: pack.key.clone(),
                }),
                Some(stored) => {
                    job.report.bytes_checked += stored.body.len() as u64;
                    verify_pack(&manifest, index, &stored.body).map(drop)
                }
            };
            match (checked, stored) {
                (Ok(()), Some(stored)) => {
                    job.sound(&pack.key);
                    self.compare_replica(log, run, job, &stored, &pack.sha256)
                        .await?;
                }
                (Ok(()), None) => job.sound(&pack.key),
                (Err(err), _) => {
                    let mut found = problem(&pack.key, &err);
                    if job.options.repair {
                        let copy = self
                            .verified_replica_copy(log, &pack.key, &pack.sha256)
                            .await;
                        if let Some(copy) = copy {
                            let from = self.restore_from_replica(log, &copy).await;
                            found.repaired_from = Some(from.map_err(stop)?);
                            found.repaired = true;
                        }
                    }
                    job.record(found);
                }
            }
            run.position.next_pack += 1;
        }
        self.afford_check(log, run, self.replica_calls(2))?;
        let sha256 = sha256_hex(&stored_manifest.body);
        self.compare_replica(log, run, job, &stored_manifest, &sha256)
            .await
    }
}
