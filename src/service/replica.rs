//! The replica bucket (`ARCHIVE_R2_REPLICA`, issue 18): a second R2 bucket holding the same
//! objects under the same keys, as stored (an encrypted archive stays encrypted under its
//! owner's key, so destroying the key erases both copies).
//!
//! Writes: the primary write is what acknowledges. Right after it, the object is copied
//! ([`DataPersistenceService::replicate_put`]); a deletion is made in the replica first
//! ([`DataPersistenceService::replicate_delete`]), so that a crash before the primary's leaves
//! the object for the deleting job to find again. A data key (made, or rewrapped by a
//! rotation) is queued before its primary write ([`DataPersistenceService::queue_replica_sync`])
//! and copied after it, since nothing would write it again after a crash in between. A copy
//! or deletion that fails is queued in
//! KV (`replica_pending:<key>`, metadata `{queuedAt}`) and never fails the operation. A queued
//! key means "make the replica equal the primary for this key": `syncReplica` reads the
//! primary and copies what is there or deletes what is not, then drops the entry, so a retry
//! is idempotent and a queued deletion is one too. A committed backup is queued whole (one
//! entry listing its packs, then its manifest: the replica's own commit point) and copied by
//! `syncReplica`, which keeps a backup Workflow's commit step at one more call. Should even
//! the queue write fail, an error is logged: verification's comparison of both buckets is the
//! last safety net.
//!
//! Reads fall back to the replica when the primary object is missing or fails its checks
//! (`retrieve*`, restore), verified by the same code against the same checksum, with erasure
//! tombstones honoured, and logged. Nothing is written back from a read: repair is
//! verification's job (the helpers here are `pub(super)` for it). A replica that fails never
//! fails a read that the primary alone would have answered.
//!
//! Costs: 1 call to the replica per replicated write or deletion batch, 1 KV put more when it
//! fails. `syncReplica`: 1 KV list per 1000 entries, per key 1 R2 get and 1 replica put or
//! delete, per entry 1 KV delete (and 1 KV get for an entry listing several keys).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::log::OpLog;
use super::run::{stop_reason, RunBudget, RunReport, RunStatus, StopReason};
use super::walk::{KvWalk, WalkJob};
use super::DataPersistenceService;
use crate::error::{PersistenceError, Result};
use crate::keys::{
    encrypted_archive_object_key, parse_archive_object_key, parse_replica_pending_key,
    replica_pending_key, BACKUP_PREFIX, DATA_KEY_PREFIX, ERASURE_PREFIX, REPLICA_PENDING_PREFIX,
    REPLICA_SYNC_CURSOR_KEY,
};
use crate::platform::{Binding, MAX_LIST_LIMIT};
use crate::store::{
    Clock, KvListOptions, KvPutOptions, KvStore, ListedKvKey, ObjectListOptions, ObjectListPage,
    ObjectMeta, ObjectPutOptions, ObjectStore, PutOutcome, Rng, StoreResult, StoredObject,
};

/// Smallest call budget that lets a `syncReplica` run make progress: reading the resume
/// point, one list page, one key (primary get, replica put), the queue entry's deletion and
/// saving the resume point.
pub const MIN_REPLICA_SYNC_CALLS: u32 = 6;

/// Age of the oldest queued copy past which `healthCheck` reports `degraded` (1 hour: the
/// cron retries every few minutes, so an entry this old is one the retries cannot settle).
pub const REPLICA_LAG_DEGRADED_MS: i64 = 60 * 60 * 1000;

/// Most calls one replicated write or deletion batch makes: the replica call, and the queue
/// entry when it fails.
pub(super) const CALLS_PER_REPLICATED_WRITE: u32 = 2;

/// Calls one single-key queue entry needs: the primary get, the replica write, the entry's
/// deletion.
const CALLS_PER_ENTRY: u32 = 3;

/// Queue entry metadata field: when the entry was queued (epoch ms).
const QUEUED_AT_FIELD: &str = "queuedAt";
/// Queue entry metadata field of an entry listing several keys in its value: how many.
const KEY_COUNT_FIELD: &str = "keys";

/// The walk over the replica queue.
const SYNC_WALK: WalkJob = WalkJob {
    operation: "syncReplica",
    name: "replica sync",
    resume_key: REPLICA_SYNC_CURSOR_KEY,
    prefix: REPLICA_PENDING_PREFIX,
    done: "replica synced",
    min_budget: MIN_REPLICA_SYNC_CALLS,
    calls_per_key: CALLS_PER_ENTRY,
};

/// The replica's lag, as `healthCheck` reports it: `{"storage": "healthy", "pending": n,
/// "oldestPendingMs": n | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    /// `healthy` or `unhealthy: <error code>` (a `head` probe of the replica bucket).
    pub storage: String,
    /// Queued keys on the first page of the queue (one KV list: at most 1000, a lower bound
    /// when `pendingComplete` is false); `null` when the queue could not be listed.
    pub pending: Option<u64>,
    /// False when the queue has more than one page.
    pub pending_complete: bool,
    /// Age in ms of the oldest entry of that page; `null` when none is queued.
    pub oldest_pending_ms: Option<i64>,
}

/// What one run of `syncReplica` did, as JSON for JavaScript: `{"entries": n, "copied": n,
/// "deleted": n, "failed": n, "complete": true, "stoppedBy": null, "resumed": false,
/// "storageCalls": n}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSyncReport {
    /// Queue entries settled and removed.
    pub entries: u64,
    /// Keys copied from the primary to the replica.
    pub copied: u64,
    /// Keys deleted in the replica (gone from the primary).
    pub deleted: u64,
    /// Keys whose sync failed (logged; their entry stays queued for the next run).
    pub failed: u64,
    /// Whether the run completed, why it stopped, whether it resumed, its storage calls.
    #[serde(flatten)]
    pub status: RunStatus,
}

impl RunReport for ReplicaSyncReport {
    fn status_mut(&mut self) -> &mut RunStatus {
        &mut self.status
    }
}

/// The body of a queue entry listing several keys: `{"keys": ["backups/x/pack-0.json", ...]}`,
/// synced in that order.
#[derive(Debug, Serialize, Deserialize)]
struct QueuedKeys {
    keys: Vec<String>,
}

/// `INVALID_CONFIG` naming `ARCHIVE_R2_REPLICA`: no replica bucket is bound.
fn no_replica() -> PersistenceError {
    PersistenceError::InvalidConfig {
        variable: Binding::R2Replica.name().to_owned(),
        value: String::new(),
        reason: "no replica bucket is bound".to_owned(),
    }
}

/// A replica call's error under the replica's binding name (its adapter is an R2 one).
fn as_replica<T>(result: StoreResult<T>) -> StoreResult<T> {
    result.map_err(|mut err| {
        err.binding = Binding::R2Replica;
        err
    })
}

/// Whether a read error means the primary object fails its checks, so the replica's copy is
/// worth reading.
pub(super) fn is_damage(err: &PersistenceError) -> bool {
    matches!(
        err,
        PersistenceError::ChecksumMismatch { .. } | PersistenceError::CorruptData { .. }
    )
}

/// Logs that an archive was read from the replica because its primary object was missing
/// (`NOT_FOUND`) or failed its checks (the error's code).
pub(super) fn served_from_replica(log: &OpLog<'_>, key: &str, primary: &str) {
    log.event(
        "warn",
        "archive served from the replica",
        json!({ "key": key, "primary": primary }),
    );
}

/// The content type every writer gives an object under `key` (each kind of object has one),
/// for a copy made from a read, which carries no HTTP metadata.
fn content_type_of(key: &str) -> Option<&'static str> {
    if let Some(archive) = parse_archive_object_key(key) {
        return Some(if archive.encrypted {
            super::encryption::ENCRYPTED_CONTENT_TYPE
        } else if archive.legacy {
            "application/json"
        } else {
            super::archive::ARCHIVE_CONTENT_TYPE
        });
    }
    if key.starts_with(BACKUP_PREFIX) {
        return Some(if key.ends_with(".gz") {
            super::archive::ARCHIVE_CONTENT_TYPE
        } else {
            "application/json"
        });
    }
    (key.starts_with(DATA_KEY_PREFIX) || key.starts_with(ERASURE_PREFIX))
        .then_some("application/json")
}

/// How an object read from the primary is written to the replica: as stored, with its
/// custom metadata and checksum (recomputed when R2 recorded none).
pub(super) fn copy_options(object: &StoredObject) -> ObjectPutOptions {
    ObjectPutOptions {
        custom_metadata: object.meta.custom_metadata.clone(),
        content_type: content_type_of(&object.meta.key).map(str::to_owned),
        content_encoding: None,
        sha256: Some(
            object
                .meta
                .sha256
                .clone()
                .unwrap_or_else(|| crate::hash::sha256_hex(&object.body)),
        ),
        only_if_absent: false,
        if_etag_matches: None,
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// The replica's copy of the archive under `key`, or, as `get_archive_object` does, of
    /// its encrypted key when `key` is a plaintext archive's: 1 or 2 replica gets. `None`
    /// without a replica, when neither is there, or when the replica fails (logged): the
    /// replica never fails a read the primary alone would have answered.
    pub(super) async fn replica_archive_object(
        &self,
        log: &OpLog<'_>,
        key: &str,
    ) -> Option<(String, StoredObject)> {
        self.replica.as_ref()?;
        let mut candidates = vec![key.to_owned()];
        if let Some(parsed) = parse_archive_object_key(key).filter(|p| !p.encrypted && !p.legacy) {
            let encrypted = encrypted_archive_object_key(&parsed.session_id, parsed.archived_at_ms);
            candidates.extend(encrypted.ok());
        }
        for candidate in candidates {
            match self.replica_get(log, &candidate).await {
                Ok(Some(object)) => return Some((candidate, object)),
                Ok(None) => {}
                Err(err) => {
                    log.event(
                        "warn",
                        "could not read the replica's copy",
                        json!({ "key": candidate, "code": err.code(), "error": err.to_string() }),
                    );
                    return None;
                }
            }
        }
        None
    }

    /// `calls` with a replica bucket, else 0: what replication adds to a job's budget.
    pub(super) fn replica_calls(&self, calls: u32) -> u32 {
        if self.replica.is_some() {
            calls
        } else {
            0
        }
    }

    /// The replica bucket; `INVALID_CONFIG` when none is bound.
    fn replica_bucket(&self) -> Result<&R> {
        self.replica.as_ref().ok_or_else(no_replica)
    }

    /// `get` in the replica, guarded by its own breaker. Errors: `INVALID_CONFIG` without a
    /// replica; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` naming `ARCHIVE_R2_REPLICA`.
    pub(super) async fn replica_get(
        &self,
        log: &OpLog<'_>,
        key: &str,
    ) -> Result<Option<StoredObject>> {
        let replica = self.replica_bucket()?;
        let found = self
            .guard
            .call(
                &self.clock,
                log,
                Binding::R2Replica,
                "get",
                key,
                async || as_replica(replica.get(key).await),
            )
            .await?;
        log.read_bytes(found.as_ref().map_or(0, |found| found.body.len()));
        Ok(found)
    }

    /// `head` in the replica (errors as [`Self::replica_get`]).
    #[allow(dead_code)] // verification's comparison of both buckets reads heads
    pub(super) async fn replica_head(
        &self,
        log: &OpLog<'_>,
        key: &str,
    ) -> Result<Option<ObjectMeta>> {
        let replica = self.replica_bucket()?;
        self.guard
            .call(
                &self.clock,
                log,
                Binding::R2Replica,
                "head",
                key,
                async || as_replica(replica.head(key).await),
            )
            .await
    }

    /// `put` in the replica (errors as [`Self::replica_get`]).
    pub(super) async fn replica_put(
        &self,
        log: &OpLog<'_>,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> Result<PutOutcome> {
        let replica = self.replica_bucket()?;
        let outcome = self
            .guard
            .call(
                &self.clock,
                log,
                Binding::R2Replica,
                "put",
                key,
                async || as_replica(replica.put(key, body, options.clone()).await),
            )
            .await?;
        if matches!(outcome, PutOutcome::Stored(_)) {
            log.wrote_bytes(body.len());
        }
        Ok(outcome)
    }

    /// `delete` of up to 1000 keys in the replica (errors as [`Self::replica_get`]).
    pub(super) async fn replica_delete(&self, log: &OpLog<'_>, keys: &[String]) -> Result<()> {
        let replica = self.replica_bucket()?;
        let first = keys.first().map(String::as_str).unwrap_or_default();
        self.guard
            .call(
                &self.clock,
                log,
                Binding::R2Replica,
                "delete",
                first,
                async || as_replica(replica.delete(keys).await),
            )
            .await
    }

    /// One `list` page of the replica (errors as [`Self::replica_get`]).
    pub(super) async fn replica_list(
        &self,
        log: &OpLog<'_>,
        options: ObjectListOptions,
    ) -> Result<ObjectListPage> {
        let replica = self.replica_bucket()?;
        let prefix = options.prefix.clone().unwrap_or_default();
        self.guard
            .call(
                &self.clock,
                log,
                Binding::R2Replica,
                "list",
                &prefix,
                async || as_replica(replica.list(options.clone()).await),
            )
            .await
    }

    /// Copies what was just written to the primary under `key` (`options` as given to that
    /// put) to the replica, as stored; on failure queues the key. Never fails; returns the
    /// storage calls made (0 without a replica, 1, or 2 when queued).
    pub(super) async fn replicate_put(
        &self,
        log: &OpLog<'_>,
        key: &str,
        body: &[u8],
        options: &ObjectPutOptions,
    ) -> u32 {
        if self.replica.is_none() {
            return 0;
        }
        // The primary decided whether this write happens; the replica follows it.
        let options = ObjectPutOptions {
            only_if_absent: false,
            if_etag_matches: None,
            ..options.clone()
        };
        match self.replica_put(log, key, body, options).await {
            Ok(_) => 1,
            Err(err) => {
                log.event(
                    "warn",
                    "replica copy failed; queued for syncReplica",
                    json!({ "key": key, "code": err.code(), "error": err.to_string() }),
                );
                1 + self.queue_replica_sync(log, &[key.to_owned()]).await
            }
        }
    }

    /// Copies what was just written to the primary under `key`, already queued by
    /// [`Self::queue_replica_sync`] before that write, to the replica; a failure is logged
    /// (the entry stays for `syncReplica`). Returns the calls made (0 without a replica, 1).
    /// The queue entry is left for `syncReplica` to settle (its copy is then repeated): a
    /// deletion here would cost as much, and these writes are rare.
    pub(super) async fn copy_queued(
        &self,
        log: &OpLog<'_>,
        key: &str,
        body: &[u8],
        options: &ObjectPutOptions,
    ) -> u32 {
        if self.replica.is_none() {
            return 0;
        }
        let options = ObjectPutOptions {
            only_if_absent: false,
            if_etag_matches: None,
            ..options.clone()
        };
        if let Err(err) = self.replica_put(log, key, body, options).await {
            log.event(
                "warn",
                "replica copy failed; queued for syncReplica",
                json!({ "key": key, "code": err.code(), "error": err.to_string() }),
            );
        }
        1
    }

    /// Deletes `keys` (at most 1000) in the replica, on failure queues them; call it just
    /// before deleting them in the primary, so that a crash in between leaves the primary's
    /// objects for the deleting job to find again (deleted the other way round, the replica's
    /// would stay with nothing pointing at them). Never fails; returns the storage calls made
    /// (0 without a replica or keys, 1, or 2 when queued).
    pub(super) async fn replicate_delete(&self, log: &OpLog<'_>, keys: &[String]) -> u32 {
        if self.replica.is_none() || keys.is_empty() {
            return 0;
        }
        match self.replica_delete(log, keys).await {
            Ok(()) => 1,
            Err(err) => {
                log.event(
                    "warn",
                    "replica deletion failed; queued for syncReplica",
                    json!({ "first": keys.first(), "keys": keys.len(), "code": err.code(),
                            "error": err.to_string() }),
                );
                1 + self.queue_replica_sync(log, keys).await
            }
        }
    }

    /// Queues `keys` for `syncReplica`, in this order, in one KV entry (1 KV put): one key as
    /// `replica_pending:<key>` with an empty value; several as `replica_pending:<first>+<n>`
    /// with their list as value. A failure is logged as an error (verification's comparison
    /// is then the only thing that finds the difference). Returns the calls made (0 without a
    /// replica, else 1).
    pub(super) async fn queue_replica_sync(&self, log: &OpLog<'_>, keys: &[String]) -> u32 {
        let (Some(first), true) = (keys.first(), self.replica.is_some()) else {
            return 0;
        };
        let queued_at = self.clock.now_ms();
        let (name, value, metadata) = if keys.len() == 1 {
            let metadata = json!({ QUEUED_AT_FIELD: queued_at });
            (replica_pending_key(first), Vec::new(), metadata)
        } else {
            let list = QueuedKeys {
                keys: keys.to_vec(),
            };
            let metadata = json!({ QUEUED_AT_FIELD: queued_at, KEY_COUNT_FIELD: keys.len() });
            let name = replica_pending_key(&format!("{first}+{}", keys.len()));
            (name, crate::codec::json_text(&list).into_bytes(), metadata)
        };
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(metadata),
        };
        if let Err(err) = self.kv_put(log, &name, &value, options).await {
            log.event(
                "error",
                "replica out of sync and the queue entry was not written",
                json!({ "first": first, "keys": keys.len(), "code": err.code(),
                        "error": err.to_string() }),
            );
        }
        1
    }

    /// The replica's lag from one KV list of the queue, and a probe of the bucket (1 R2
    /// head); `None` without a replica.
    pub(super) async fn replica_health(
        &self,
        log: &OpLog<'_>,
        probe_key: &str,
    ) -> Option<ReplicaHealth> {
        self.replica.as_ref()?;
        let storage = match self.replica_head(log, probe_key).await {
            Ok(_) => "healthy".to_owned(),
            Err(err) => format!("unhealthy: {}", err.code()),
        };
        let listing = KvListOptions {
            prefix: Some(REPLICA_PENDING_PREFIX.to_owned()),
            cursor: None,
            limit: Some(MAX_LIST_LIMIT),
        };
        let now = self.clock.now_ms();
        let (pending, complete, oldest) = match self.kv_list(log, listing).await {
            Ok(page) => {
                let queued_at = page.keys.iter().filter_map(queued_at);
                let pending = page.keys.iter().map(entry_key_count).sum::<u64>();
                let oldest = queued_at.min().map(|at| now.saturating_sub(at).max(0));
                (Some(pending), page.list_complete, oldest)
            }
            Err(err) => {
                log.event(
                    "warn",
                    "could not list the replica queue",
                    json!({ "code": err.code(), "error": err.to_string() }),
                );
                (None, false, None)
            }
        };
        Some(ReplicaHealth {
            storage,
            pending,
            pending_complete: complete,
            oldest_pending_ms: oldest,
        })
    }

    /// Retries the replica queue within `budget` (see the module docs), resuming where the
    /// last run stopped. Errors: `INVALID_CONFIG` without a replica; `INVALID_INPUT` naming
    /// `maxStorageCalls` below [`MIN_REPLICA_SYNC_CALLS`].
    pub async fn sync_replica(&self, budget: RunBudget) -> Result<ReplicaSyncReport> {
        self.replica_bucket()?;
        self.walk(
            &SYNC_WALK,
            budget,
            async |log, walk, report: &mut ReplicaSyncReport, entry| {
                self.sync_entry(log, walk, report, entry).await
            },
        )
        .await
    }

    /// Settles one queue entry: syncs its keys in order, then deletes it. A key whose sync
    /// fails leaves the entry queued (and skips the rest of it); a run that stops part-way
    /// through an entry of several keys stores the keys left in it first.
    async fn sync_entry(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        report: &mut ReplicaSyncReport,
        entry: &ListedKvKey,
    ) -> Result<(), StopReason> {
        let now = || self.clock.now_ms();
        walk.claim(&entry.name, CALLS_PER_ENTRY, now())?;
        let keys = if entry_key_count(entry) > 1 {
            walk.run.spend(1);
            match self.queued_keys(log, &entry.name).await {
                Ok(Some(keys)) => keys,
                // Settled by another run meanwhile.
                Ok(None) => return Ok(()),
                Err(err) => return self.entry_failed(log, report, &entry.name, &err),
            }
        } else {
            match parse_replica_pending_key(&entry.name) {
                Some(key) => vec![key.to_owned()],
                None => return Ok(()),
            }
        };
        for (done, key) in keys.iter().enumerate() {
            // Room for this key and the entry's deletion or rewrite.
            if let Err(stopped) = walk.run.afford(CALLS_PER_ENTRY, now()) {
                if done > 0 {
                    walk.run.spend(1);
                    self.requeue_rest(log, &entry.name, &keys[done..], entry)
                        .await;
                }
                return Err(stopped);
            }
            if let Err(err) = self.sync_key(log, walk, report, key).await {
                if done > 0 {
                    walk.run.spend(1);
                    self.requeue_rest(log, &entry.name, &keys[done..], entry)
                        .await;
                }
                return self.entry_failed(log, report, key, &err);
            }
        }
        walk.run.spend(1);
        match self.kv_delete(log, &entry.name).await {
            Ok(()) => report.entries += 1,
            Err(err) => log.event(
                "warn",
                "replica synced but its queue entry was not deleted; the next run repeats it",
                json!({ "entry": entry.name, "error": err.to_string() }),
            ),
        }
        Ok(())
    }

    /// Makes the replica equal the primary for `key` (2 calls).
    async fn sync_key(
        &self,
        log: &OpLog<'_>,
        walk: &mut KvWalk,
        report: &mut ReplicaSyncReport,
        key: &str,
    ) -> Result<()> {
        walk.run.spend(1);
        let primary = self.r2_get(log, key).await?;
        walk.run.spend(1);
        match primary {
            Some(object) => {
                self.replica_put(log, key, &object.body, copy_options(&object))
                    .await?;
                report.copied += 1;
            }
            None => {
                self.replica_delete(log, std::slice::from_ref(&key.to_owned()))
                    .await?;
                report.deleted += 1;
            }
        }
        Ok(())
    }

    /// The keys a queue entry of several keys lists; `None` when the entry is gone.
    async fn queued_keys(&self, log: &OpLog<'_>, name: &str) -> Result<Option<Vec<String>>> {
        let Some(stored) = self.kv_get(log, name).await? else {
            return Ok(None);
        };
        let list: QueuedKeys = serde_json::from_slice(&stored.value)
            .map_err(|err| PersistenceError::corrupt(name, err.to_string()))?;
        Ok(Some(list.keys))
    }

    /// Rewrites the queue entry `name` with the keys still to sync (1 KV put), keeping when
    /// it was queued; logged when it fails (the whole entry is then synced again).
    async fn requeue_rest(
        &self,
        log: &OpLog<'_>,
        name: &str,
        rest: &[String],
        entry: &ListedKvKey,
    ) {
        let list = QueuedKeys {
            keys: rest.to_vec(),
        };
        let queued_at = queued_at(entry).unwrap_or_else(|| self.clock.now_ms());
        let options = KvPutOptions {
            expiration_ttl_secs: None,
            metadata: Some(
                json!({ QUEUED_AT_FIELD: queued_at, KEY_COUNT_FIELD: rest.len().max(2) }),
            ),
        };
        let value = crate::codec::json_text(&list);
        if let Err(err) = self.kv_put(log, name, value.as_bytes(), options).await {
            log.event(
                "warn",
                "could not shorten a replica queue entry; the next run syncs it whole",
                json!({ "entry": name, "error": err.to_string() }),
            );
        }
    }

    /// Counts and logs a failed sync; an open breaker stops the run, anything else leaves the
    /// entry for the next run and goes on.
    fn entry_failed(
        &self,
        log: &OpLog<'_>,
        report: &mut ReplicaSyncReport,
        what: &str,
        err: &PersistenceError,
    ) -> Result<(), StopReason> {
        report.failed += 1;
        log.event(
            "warn",
            "replica sync failed; the entry stays queued",
            json!({ "key": what, "code": err.code(), "error": err.to_string() }),
        );
        match err {
            PersistenceError::CircuitOpen { .. } => Err(stop_reason(err)),
            _ => Ok(()),
        }
    }
}

/// When a queue entry was queued, from its list metadata.
fn queued_at(entry: &ListedKvKey) -> Option<i64> {
    entry.metadata.as_ref()?.get(QUEUED_AT_FIELD)?.as_i64()
}

/// How many keys a queue entry stands for, from its list metadata.
fn entry_key_count(entry: &ListedKvKey) -> u64 {
    entry
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get(KEY_COUNT_FIELD))
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn copies_get_the_content_type_their_writer_gives_them() {
        let archive = "conversations/2025/01/archive_s1_1736157600000.json.gz";
        assert_eq!(content_type_of(archive), Some("application/gzip"));
        assert_eq!(
            content_type_of(&format!("{archive}.enc")),
            Some("application/octet-stream")
        );
        assert_eq!(
            content_type_of("backups/b1/manifest.json"),
            Some("application/json")
        );
        assert_eq!(
            content_type_of("backups/b1/data.json.gz"),
            Some("application/gzip")
        );
        assert_eq!(
            content_type_of("keys/users/ab.json"),
            Some("application/json")
        );
        assert_eq!(content_type_of("elsewhere"), None);
    }

    #[test]
    fn an_entry_stands_for_one_key_unless_its_metadata_counts_more() {
        let entry = |metadata| ListedKvKey {
            name: "replica_pending:k".into(),
            expiration_s: None,
            metadata,
        };
        assert_eq!(entry_key_count(&entry(None)), 1);
        assert_eq!(entry_key_count(&entry(Some(json!({"queuedAt": 5})))), 1);
        let several = entry(Some(json!({"queuedAt": 5, "keys": 3})));
        assert_eq!(
            (entry_key_count(&several), queued_at(&several)),
            (3, Some(5))
        );
        assert!(is_damage(&PersistenceError::corrupt("k", "x")));
        assert!(!is_damage(&PersistenceError::NotFound { key: "k".into() }));
    }
}
