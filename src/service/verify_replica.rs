//! Verification with a replica bucket (`ARCHIVE_R2_REPLICA`, `super::replica`): each object
//! the primary holds sound is compared with the replica's copy (`replica_missing`,
//! `replica_mismatch`), which a repair writes from the primary; a damaged or missing primary
//! object is written back from the replica's copy when that copy is proven to be it (the
//! checksum recorded for it). So either bucket is repaired from the other.

use serde_json::json;

use super::log::OpLog;
use super::replica::{copy_options, REPLICA_LAG_DEGRADED_MS};
use super::run::{stop_reason, Run, StopReason};
use super::verify::{Problem, ProblemKind, Verification, VerifyPosition};
use super::DataPersistenceService;
use crate::error::Result;
use crate::hash::sha256_hex;
use crate::store::{Clock, KvStore, ObjectStore, Rng, StoredObject};

/// Where a repair from the replica says its copy came from.
pub(super) const FROM_REPLICA: &str = "replica";
/// Where a repair of the replica says its copy came from.
const FROM_PRIMARY: &str = "primary";

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Compares the replica's copy of `primary` (sound, with the SHA-256 `sha256`) with it,
    /// unless no replica is bound or the object is younger than the replica's allowed lag (its
    /// copy may still be queued). With `repair`, a missing or different copy is written from
    /// the primary. Costs 1 replica get (and 1 put).
    pub(super) async fn compare_replica(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<VerifyPosition>,
        job: &mut Verification,
        primary: &StoredObject,
        sha256: &str,
    ) -> Result<(), StopReason> {
        let key = primary.meta.key.as_str();
        let recent = job.now_ms.saturating_sub(primary.meta.uploaded_ms) < REPLICA_LAG_DEGRADED_MS;
        if !self.has_replica() || recent {
            return Ok(());
        }
        let stop = |err: crate::PersistenceError| stop_reason(&err);
        let copy = self.replica_get(log, key).await.map_err(stop)?;
        let (problem, detail) = match copy {
            None => (
                ProblemKind::ReplicaMissing,
                "the replica has no copy".to_owned(),
            ),
            Some(copy) => {
                let actual = sha256_hex(&copy.body);
                if actual.eq_ignore_ascii_case(sha256) {
                    job.sound_replica(key);
                    return Ok(());
                }
                let detail = format!("the replica's copy hashes to {actual}, not {sha256}");
                (ProblemKind::ReplicaMismatch, detail)
            }
        };
        let mut found = Problem {
            key: key.to_owned(),
            problem,
            detail,
            repaired: false,
            repaired_from: None,
        };
        if job.options.repair {
            self.afford_check(log, run, 1)?;
            self.replica_put(log, key, &primary.body, copy_options(primary))
                .await
                .map_err(stop)?;
            log.event(
                "warn",
                "repaired the replica's copy from the primary",
                json!({ "key": key }),
            );
            found.repaired = true;
            found.repaired_from = Some(FROM_PRIMARY.to_owned());
        }
        job.record(found);
        Ok(())
    }

    /// The replica's copy of `key` if it hashes to `sha256` (what the primary recorded for
    /// it); `None` without a replica, without a copy, with another one, or when the replica
    /// fails (logged: an unavailable replica does not stop verifying the primary). Costs 1
    /// replica get.
    pub(super) async fn verified_replica_copy(
        &self,
        log: &OpLog<'_>,
        key: &str,
        sha256: &str,
    ) -> Option<StoredObject> {
        if !self.has_replica() {
            return None;
        }
        match self.replica_get(log, key).await {
            Ok(copy) => copy.filter(|copy| sha256_hex(&copy.body).eq_ignore_ascii_case(sha256)),
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the replica's copy to repair from",
                    json!({ "key": key, "code": err.code(), "error": err.to_string() }),
                );
                None
            }
        }
    }

    /// Writes the replica's verified `copy` back to the primary under its key (replacing a
    /// damaged object). Costs 1 R2 put.
    pub(super) async fn restore_from_replica(
        &self,
        log: &OpLog<'_>,
        copy: &StoredObject,
    ) -> Result<String> {
        let key = &copy.meta.key;
        self.r2_put(log, key, &copy.body, copy_options(copy))
            .await?;
        log.event(
            "warn",
            "repaired an object from the replica's copy",
            json!({ "key": key }),
        );
        Ok(FROM_REPLICA.to_owned())
    }
}
