//! The persistence service: the spec's operations orchestrated over the storage ports.
//!
//! Generic over [`KvStore`], [`ObjectStore`] and [`Clock`], so the same code runs natively
//! against `store::memory` (with fault injection) and in wasm against the real bindings. Every
//! storage call goes through [`StorageGuard`] (breaker, retries, one log line per attempt).
//! Each public operation lives in its own module and gets a fresh request id for its logs.

mod archive;
mod archive_by_key;
mod backup;
mod backup_index;
mod backup_steps;
mod cache;
mod encrypt_existing;
mod encryption;
mod erasure;
mod export_store;
mod export_user;
mod guard;
mod health;
mod import;
mod index_entries;
mod legacy;
#[cfg(any(test, feature = "conformance"))]
pub mod legacy_suite;
mod log;
mod migrate;
mod op_stats;
mod options;
mod reindex;
mod replica;
mod retention;
mod rotation;
mod run;
mod segments;
pub(crate) mod tombstone;
mod ui_messages;
mod verify;
mod verify_archives;
mod verify_backups;
mod verify_keys;
mod verify_repair;
mod verify_replica;
mod walk;

pub use archive::{ArchiveListing, ARCHIVE_CONTENT_TYPE, DEFAULT_LIST_LIMIT};
pub use backup::RestoreTally;
pub use backup_index::{BackupListing, ListedBackup};
pub use backup_steps::{
    BackupPlan, BackupRequest, CommitStep, PackSource, PackStep, PackStepReport, INDEX_LAG_MS,
};
pub use cache::MAX_CACHE_TEXT_BYTES;
pub use encrypt_existing::{EncryptExistingReport, MIN_ENCRYPT_EXISTING_CALLS};
pub use erasure::{ErasureReceipt, RetainedBackup, MIN_ERASURE_CALLS};
pub use export_store::{StoreExport, MIN_EXPORT_STORE_CALLS};
pub use export_user::{UserExport, EXPORT_CHUNK_BYTES};
pub use guard::{BreakerState, StorageGuard};
pub use health::{
    BreakerStates, CacheMetrics, HealthDetails, HealthLatencies, HealthReport, HealthStatus,
    StorageMetrics, StorageTotals, VerificationHealth,
};
pub use import::{ImportOptions, ImportReport, StoreImport, MIN_IMPORT_CALLS};
pub use log::{CallRecord, OpLog, Outcome};
pub use migrate::{MigrationReport, MIN_MIGRATION_CALLS};
pub use op_stats::{instrument, instrument_into, Instrumented, OpStats};
pub use options::{
    BreakerPolicy, PackBounds, RetryPolicy, ServiceOptions, DEFAULT_VERIFICATION_MAX_AGE_MS,
};
pub use reindex::{ReindexReport, MIN_REINDEX_CALLS};
pub use replica::{
    ReplicaHealth, ReplicaSyncReport, MIN_REPLICA_SYNC_CALLS, REPLICA_LAG_DEGRADED_MS,
};
pub use retention::{RetentionRun, MAX_REPORTED_KEYS, MIN_STORAGE_CALLS};
pub use rotation::{RotationReport, MIN_ROTATION_CALLS};
pub use run::{RunBudget, RunStatus, StopReason};
pub use verify::{
    OpenProblem, Problem, ProblemKind, Sample, VerificationReport, VerificationSummary,
    VerifyOptions, MAX_REPORTED_PROBLEMS, MIN_VERIFY_CALLS,
};

use std::rc::Rc;

use crate::codec::json_text;
use crate::error::Result;
use crate::policy::DataRetentionPolicy;
use crate::store::{
    Binding, Clock, KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue, LogSink,
    ObjectListOptions, ObjectListPage, ObjectMeta, ObjectPutOptions, ObjectStore, PutOutcome, Rng,
    StoredObject,
};

/// The spec's `DataPersistenceService`, over any KV, object store and clock.
pub struct DataPersistenceService<K, R, C> {
    kv: K,
    r2: R,
    /// The replica bucket (`ARCHIVE_R2_REPLICA`), when one is bound (`super::replica`).
    replica: Option<R>,
    clock: C,
    log_sink: Rc<dyn LogSink>,
    policy: DataRetentionPolicy,
    options: ServiceOptions,
    guard: StorageGuard,
    data_keys: encryption::DataKeyCache,
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// A service over the given stores. Errors: `INVALID_CONFIG` for an invalid policy.
    pub fn new(
        kv: K,
        r2: R,
        clock: C,
        log_sink: Rc<dyn LogSink>,
        policy: DataRetentionPolicy,
        options: ServiceOptions,
    ) -> Result<Self> {
        policy.validate()?;
        let guard = StorageGuard::new(options.retry, options.breaker);
        Ok(DataPersistenceService {
            kv,
            r2,
            replica: None,
            clock,
            log_sink,
            policy,
            options,
            guard,
            data_keys: encryption::DataKeyCache::default(),
        })
    }

    /// The same service with a replica bucket (`ARCHIVE_R2_REPLICA`): every archive, data key,
    /// tombstone and committed backup is copied there after its primary write, reads fall
    /// back to it, and deletions delete in both (`service::replica`, docs/FORMAT.md
    /// "Replica bucket").
    pub fn with_replica(mut self, replica: R) -> Self {
        self.replica = Some(replica);
        self
    }

    /// Whether a replica bucket is bound.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The retention policy in force.
    pub fn policy(&self) -> &DataRetentionPolicy {
        &self.policy
    }

    /// The options in force.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The clock the service reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Whether an archive made at `archived_at_ms` is past `archiveRetention` (the next
    /// retention sweep deletes it).
    fn past_retention(&self, archived_at_ms: i64) -> bool {
        let age = i128::from(self.clock.now_ms()) - i128::from(archived_at_ms);
        age >= i128::from(self.policy.archive_retention_ms)
    }

    /// The state of a binding's circuit breaker.
    pub fn breaker_state(&self, binding: Binding) -> BreakerState {
        self.guard.breaker_state(binding)
    }

    /// Starts the log of one public operation under a fresh request id.
    fn begin(&self, operation: &'static str) -> OpLog<'_> {
        self.continue_op(operation, &self.new_request_id())
    }

    /// A fresh request id.
    fn new_request_id(&self) -> String {
        format!("{:016x}", self.clock.random_u64())
    }

    /// The log of one more call of an operation that spans calls (the reads of an export
    /// stream, the chunks of an import), under the request id its first call drew.
    fn continue_op(&self, operation: &'static str, request_id: &str) -> OpLog<'_> {
        OpLog::new(
            self.log_sink.as_ref(),
            request_id.to_owned(),
            operation,
            self.options.debug,
        )
    }

    async fn kv_get(&self, log: &OpLog<'_>, key: &str) -> Result<Option<KvValue>> {
        let kv = &self.kv;
        let found = self
            .guard
            .call(&self.clock, log, Binding::Kv, "get", key, async || {
                kv.get(key).await
            })
            .await?;
        log.read_bytes(found.as_ref().map_or(0, |found| found.value.len()));
        Ok(found)
    }

    async fn kv_put(
        &self,
        log: &OpLog<'_>,
        key: &str,
        value: &[u8],
        options: KvPutOptions,
    ) -> Result<()> {
        let kv = &self.kv;
        self.guard
            .call(&self.clock, log, Binding::Kv, "put", key, async || {
                kv.put(key, value, options.clone()).await
            })
            .await?;
        log.wrote_bytes(value.len());
        Ok(())
    }

    async fn kv_delete(&self, log: &OpLog<'_>, key: &str) -> Result<()> {
        let kv = &self.kv;
        self.guard
            .call(&self.clock, log, Binding::Kv, "delete", key, async || {
                kv.delete(key).await
            })
            .await
    }

    async fn kv_list(&self, log: &OpLog<'_>, options: KvListOptions) -> Result<KvListPage> {
        let kv = &self.kv;
        let prefix = options.prefix.clone().unwrap_or_default();
        self.guard
            .call(&self.clock, log, Binding::Kv, "list", &prefix, async || {
                kv.list(options.clone()).await
            })
            .await
    }

    async fn r2_get(&self, log: &OpLog<'_>, key: &str) -> Result<Option<StoredObject>> {
        let r2 = &self.r2;
        let found = self
            .guard
            .call(&self.clock, log, Binding::R2, "get", key, async || {
                r2.get(key).await
            })
            .await?;
        log.read_bytes(found.as_ref().map_or(0, |found| found.body.len()));
        Ok(found)
    }

    async fn r2_head(&self, log: &OpLog<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let r2 = &self.r2;
        self.guard
            .call(&self.clock, log, Binding::R2, "head", key, async || {
                r2.head(key).await
            })
            .await
    }

    async fn r2_put(
        &self,
        log: &OpLog<'_>,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> Result<PutOutcome> {
        let r2 = &self.r2;
        let outcome = self
            .guard
            .call(&self.clock, log, Binding::R2, "put", key, async || {
                r2.put(key, body, options.clone()).await
            })
            .await?;
        if matches!(outcome, PutOutcome::Stored(_)) {
            log.wrote_bytes(body.len());
        }
        Ok(outcome)
    }

    async fn r2_delete(&self, log: &OpLog<'_>, keys: &[String]) -> Result<()> {
        let r2 = &self.r2;
        let first = keys.first().map(String::as_str).unwrap_or_default();
        self.guard
            .call(&self.clock, log, Binding::R2, "delete", first, async || {
                r2.delete(keys).await
            })
            .await
    }

    async fn r2_list(&self, log: &OpLog<'_>, options: ObjectListOptions) -> Result<ObjectListPage> {
        let r2 = &self.r2;
        let prefix = options.prefix.clone().unwrap_or_default();
        self.guard
            .call(&self.clock, log, Binding::R2, "list", &prefix, async || {
                r2.list(options.clone()).await
            })
            .await
    }
}
