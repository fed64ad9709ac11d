//! `rotateEncryptionKeys`: rewraps every data key under the newest key-encryption key, on the
//! run driver (`super::run`), without touching a single archive.
//!
//! A run lists the data key objects (`keys/`, with their custom metadata, which names the KEK
//! wrapping each), skips those already wrapped by the newest KEK, and for each other one reads
//! it, unwraps it with the KEK it names and writes it back wrapped by the newest, on condition
//! that it is still the version read (`onlyIf: { etagMatches }`): a key destroyed or replaced
//! meanwhile (by an erasure, or by another rotation) is never brought back. The data key itself
//! does not change, so every archive and summary stays readable, and after a complete run
//! that found no key it could not unwrap, the older KEKs can be removed from the secret.
//!
//! The position is the last data key object handled (R2 lists in key order, `startAfter` it),
//! with the KEK the run rewraps to: when the newest KEK changes between runs, a rotation
//! starts over. A complete run records that KEK under [`KEY_ROTATION_STATE_KEY`], so that the
//! next runs (the example's cron runs one after retention) answer at once while it is still
//! the newest (2 KV gets: the resume point and the record) — for [`ROTATION_RECHECK_MS`]
//! only: an isolate still running the previous secret during a gradual deployment makes new
//! data keys wrapped by the previous KEK, so after a day the run lists every key again
//! (rewrapping what it finds; keys already current cost nothing but the list).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::encryption::{data_key_put_options, KEK_ID_FIELD};
use super::log::OpLog;
use super::run::{stop_reason, Run, RunBudget, RunReport, RunStatus, StopReason};
use super::DataPersistenceService;
use crate::crypto::aead::NONCE_LEN;
use crate::crypto::data_key::{unwrap, wrap, WrappedKey};
use crate::crypto::keyring::KeyRing;
use crate::error::{PersistenceError, Result};
use crate::keys::{DATA_KEY_PREFIX, KEY_ROTATION_CURSOR_KEY, KEY_ROTATION_STATE_KEY};
use crate::store::{
    Clock, KvPutOptions, KvStore, ListedR2Object, ObjectPutOptions, ObjectStore, PutOutcome, Rng,
};

/// How long a recorded complete rotation is trusted before a run checks every key again.
pub const ROTATION_RECHECK_MS: i64 = 24 * 60 * 60 * 1000;

/// Smallest call budget that lets a run make progress: reading the state and the resume
/// point, one list page, one data key read and written, and saving the resume point; with a
/// replica bucket, 2 more (the rewrapped key's copy, queued when it fails).
pub const MIN_ROTATION_CALLS: u32 = 6;

/// Where a rotation continues: the KEK it rewraps to and the last data key object handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotationPosition {
    kek_id: String,
    after: Option<String>,
}

/// What a complete rotation records: every data key was wrapped by `kekId` at `completedAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotationState {
    kek_id: String,
    completed_at: i64,
}

/// What one run of `rotateEncryptionKeys` did, as JSON for JavaScript: `{"newestKeyId":
/// "k2", "scanned": n, "rewrapped": n, "alreadyCurrent": n, "keyUnavailable": n, "damaged":
/// n, "changed": n, "upToDate": false, "complete": true, "stoppedBy": null, "resumed": false,
/// "storageCalls": n}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    /// The id of the KEK every data key is rewrapped to.
    pub newest_key_id: String,
    /// Data key objects listed by this run.
    pub scanned: u64,
    /// Data keys rewrapped under the newest KEK.
    pub rewrapped: u64,
    /// Data keys already wrapped by it.
    pub already_current: u64,
    /// Data keys wrapped by a KEK that is not configured (logged with the key and the KEK id):
    /// they stay as they are, and the KEK they name must not be removed.
    pub key_unavailable: u64,
    /// Data key objects that cannot be read or unwrapped (logged with the key).
    pub damaged: u64,
    /// Data keys destroyed or rewritten between their read and their rewrap; left as they are.
    pub changed: u64,
    /// True when a complete rotation to the newest KEK was recorded earlier, so this run did
    /// nothing but read that record.
    pub up_to_date: bool,
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for RotationReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

impl RotationReport {
    /// True when every data key is wrapped by the newest KEK, so the older ones can go.
    fn all_current(&self) -> bool {
        self.status.complete && self.key_unavailable == 0 && self.damaged == 0
    }
}

/// What became of one data key.
enum Rewrap {
    Rewrapped,
    AlreadyCurrent,
    Changed,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Rewraps every data key under the newest KEK (or continues an unfinished run) within
    /// `budget`; reports what it did. After a complete run with no `keyUnavailable` and no
    /// `damaged` key, the older KEKs can be removed from `encryptionKeys`.
    ///
    /// Costs 1 KV get (the resume point), 1 KV get (the state; a run that finds a complete
    /// rotation to the newest KEK recorded within [`ROTATION_RECHECK_MS`] stops there), 1 R2 list per 1000 data keys, and per key not yet current 1 R2
    /// get and 1 R2 put; plus 1 KV put or delete for the resume point, and 1 KV put for the
    /// state when a run completes with every key current (within the budget). Storage failures stop the run
    /// (`stoppedBy`). Errors: `INVALID_CONFIG` naming `encryptionKeys` when none are
    /// configured; `INVALID_INPUT` naming `maxStorageCalls` below [`MIN_ROTATION_CALLS`].
    pub async fn rotate_encryption_keys(&self, budget: RunBudget) -> Result<RotationReport> {
        let log = &self.begin("rotateEncryptionKeys");
        let ring = self
            .key_ring()
            .ok_or_else(|| PersistenceError::InvalidConfig {
                variable: "encryptionKeys".to_owned(),
                value: String::new(),
                reason: "no keys are configured, so there is nothing to rotate".to_owned(),
            })?;
        let newest = ring.newest().id.clone();
        let mut report = RotationReport {
            newest_key_id: newest.clone(),
            ..RotationReport::default()
        };
        let mut run: Run<RotationPosition> = self
            .start_run(
                log,
                budget,
                MIN_ROTATION_CALLS + self.replica_calls(super::replica::CALLS_PER_REPLICATED_WRITE),
                Some(KEY_ROTATION_CURSOR_KEY),
                "key rotation",
            )
            .await?;
        if !run.status.resumed && self.rotation_recorded(log, &mut run, &newest).await {
            report.up_to_date = true;
            report.status = RunStatus {
                complete: true,
                ..run.status
            };
            return Ok(report);
        }
        if run.position.kek_id != newest {
            // A fresh run, or one begun for a KEK that is no longer the newest.
            run.position = RotationPosition {
                kek_id: newest.clone(),
                after: None,
            };
        }
        let outcome = self.rotate_pages(log, ring, &mut run, &mut report).await;
        self.finish_run(log, &mut run, outcome).await;
        report.status = run.status;
        let call_left = budget
            .max_storage_calls
            .is_none_or(|max| report.status.storage_calls < max);
        if report.all_current() && call_left {
            self.record_rotation(log, &mut report, &newest).await;
        }
        log.event("info", "data keys rotated", json!(report));
        Ok(report)
    }

    /// Whether a complete rotation to `newest` was recorded less than [`ROTATION_RECHECK_MS`]
    /// ago. Costs 1 KV get; a failure reads as "not recorded" (the run then checks every key,
    /// which is harmless).
    async fn rotation_recorded(
        &self,
        log: &OpLog<'_>,
        run: &mut Run<RotationPosition>,
        newest: &str,
    ) -> bool {
        run.spend(1);
        match self.kv_get(log, KEY_ROTATION_STATE_KEY).await {
            Ok(Some(stored)) => {
                serde_json::from_slice::<RotationState>(&stored.value).is_ok_and(|state| {
                    let age = self.clock.now_ms().saturating_sub(state.completed_at);
                    state.kek_id == newest && (0..ROTATION_RECHECK_MS).contains(&age)
                })
            }
            Ok(None) => false,
            Err(err) => {
                log.event(
                    "warn",
                    "could not read the key rotation state; checking every data key",
                    json!({ "error": err.to_string() }),
                );
                false
            }
        }
    }

    /// Records that every data key is wrapped by `newest` (1 KV put; a failure is logged and
    /// only means the next run checks every key again).
    async fn record_rotation(&self, log: &OpLog<'_>, report: &mut RotationReport, newest: &str) {
        let state = RotationState {
            kek_id: newest.to_owned(),
            completed_at: self.clock.now_ms(),
        };
        report.status.storage_calls += 1;
        let value = serde_json::to_vec(&state).unwrap_or_default();
        if let Err(err) = self
            .kv_put(log, KEY_ROTATION_STATE_KEY, &value, KvPutOptions::default())
            .await
        {
            log.event(
                "warn",
                "could not record the completed key rotation",
                json!({ "error": err.to_string() }),
            );
        }
    }

    /// Handles the data keys after the run's position, page by page, until the last or until
    /// the run must stop.
    async fn rotate_pages(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        run: &mut Run<RotationPosition>,
        report: &mut RotationReport,
    ) -> Result<(), StopReason> {
        loop {
            let after = run.position.after.clone();
            let page = self
                .next_r2_page(log, run, DATA_KEY_PREFIX, after, true)
                .await?;
            for object in &page.objects {
                let listed_kek = object
                    .custom_metadata
                    .as_ref()
                    .and_then(|metadata| metadata.get(KEK_ID_FIELD));
                if listed_kek != Some(&run.position.kek_id) {
                    let replicated = super::replica::CALLS_PER_REPLICATED_WRITE;
                    run.afford(2 + self.replica_calls(replicated), self.clock.now_ms())?;
                }
                report.scanned += 1;
                match self.rewrap_listed(log, ring, run, object, listed_kek).await {
                    Ok(Rewrap::Rewrapped) => report.rewrapped += 1,
                    Ok(Rewrap::AlreadyCurrent) => report.already_current += 1,
                    Ok(Rewrap::Changed) => report.changed += 1,
                    Err(
                        err @ (PersistenceError::StorageUnavailable { .. }
                        | PersistenceError::CircuitOpen { .. }),
                    ) => {
                        // Not handled: the next run starts at this key again.
                        report.scanned -= 1;
                        return Err(stop_reason(&err));
                    }
                    Err(err) => {
                        match err {
                            PersistenceError::KeyUnavailable { .. } => report.key_unavailable += 1,
                            _ => report.damaged += 1,
                        }
                        log.event(
                            "warn",
                            "a data key could not be rewrapped; it is left as it is",
                            json!({ "key": object.key, "code": err.code(), "error": err.to_string() }),
                        );
                    }
                }
                run.position.after = Some(object.key.clone());
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }

    /// Rewraps the listed data key `object` under the newest KEK unless the KEK its listing
    /// names (`listed_kek`) or its body already is the newest. Costs 1 R2 get and 1 R2 put
    /// unless the listing tells it is current.
    async fn rewrap_listed(
        &self,
        log: &OpLog<'_>,
        ring: &KeyRing,
        run: &mut Run<RotationPosition>,
        object: &ListedR2Object,
        listed_kek: Option<&String>,
    ) -> Result<Rewrap> {
        let newest = ring.newest();
        if listed_kek == Some(&newest.id) {
            return Ok(Rewrap::AlreadyCurrent);
        }
        run.spend(1);
        let Some(stored) = self.r2_get(log, &object.key).await? else {
            return Ok(Rewrap::Changed);
        };
        let wrapped = WrappedKey::decode(&object.key, &stored.body)?;
        if wrapped.kek_id == newest.id {
            return Ok(Rewrap::AlreadyCurrent);
        }
        let dek = unwrap(ring, &object.key, &wrapped).await?;
        let nonce = self.secure_random::<NONCE_LEN>()?;
        let rewrapped = wrap(&object.key, &dek, newest, nonce, wrapped.created_at).await?;
        let options = ObjectPutOptions {
            if_etag_matches: Some(stored.meta.etag.clone().unwrap_or_default()),
            ..data_key_put_options(&rewrapped)
        };
        let body = rewrapped.encode();
        // Queued first: a crash after the primary's write would leave the replica's key wrapped
        // by a KEK that is retired once the rotation completes, and nothing would rewrap it.
        let queued = std::slice::from_ref(&object.key);
        run.spend(self.queue_replica_sync(log, queued).await);
        run.spend(1);
        match self
            .r2_put(log, &object.key, &body, options.clone())
            .await?
        {
            PutOutcome::Stored(_) => {
                run.spend(self.copy_queued(log, &object.key, &body, &options).await);
                Ok(Rewrap::Rewrapped)
            }
            PutOutcome::Changed | PutOutcome::AlreadyExists => {
                log.event(
                    "warn",
                    "a data key changed while it was rewrapped; it is left as it is",
                    json!({ "key": object.key }),
                );
                Ok(Rewrap::Changed)
            }
        }
    }
}
