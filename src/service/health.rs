//! `healthCheck` and `getStorageMetrics`.
//!
//! The health check probes each binding with one read (KV `get`, R2 `head` of a key that is
//! never written), so it never writes (KV allows one write a second per key), and reads what
//! verification keeps (one KV get): three storage calls; with a replica bucket, five (its
//! probe, and one KV list of its queue for the lag, `super::replica`). Probes go through the
//! circuit breaker: an open breaker reports its binding
//! unhealthy without calling it. Metrics count every page of every listing; they cost one list
//! call per 1000 keys and read no values. A Worker allows 50 subrequests per invocation on the
//! free plan (1000 on paid), so past ~45 000 keys an unbounded count fails: a budget stops it
//! early with the counts so far (`complete: false`), the five listings having taken turns a
//! page at a time.

use serde::Serialize;
use serde_json::json;

use super::log::OpLog;
use super::replica::{ReplicaHealth, REPLICA_LAG_DEGRADED_MS};
use super::run::{Run, RunBudget};
use super::verify::VerificationSummary;
use super::DataPersistenceService;
use crate::error::Result;
use crate::keys::{
    parse_archive_object_key, parse_backup_object_key, BackupObjectKind, ARCHIVE_META_PREFIX,
    ARCHIVE_PREFIX, BACKUP_PREFIX, EMBEDDING_PREFIX, HEALTH_PROBE_KEY, QUERY_PREFIX,
};
use crate::platform::MAX_LIST_LIMIT;
use crate::store::{Binding, Clock, KvListOptions, KvStore, ObjectListOptions, ObjectStore, Rng};
use crate::time::iso8601;

/// Overall health: both bindings answer, one does, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Both probes succeeded.
    Healthy,
    /// One probe failed.
    Degraded,
    /// Both probes failed.
    Unhealthy,
}

/// Probe latencies in milliseconds (0 inside production Workers, whose timers do not advance
/// during a request's I/O-free CPU work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthLatencies {
    /// The R2 `head` probe.
    pub r2_ms: i64,
    /// The KV `get` probe.
    pub kv_ms: i64,
}

/// Circuit breaker states by binding name: `closed`, `open` or `half_open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerStates {
    /// The R2 binding's breaker.
    #[serde(rename = "ARCHIVE_R2")]
    pub archive_r2: &'static str,
    /// The KV binding's breaker.
    #[serde(rename = "CHAT_KV")]
    pub chat_kv: &'static str,
    /// The replica bucket's breaker, when one is bound.
    #[serde(rename = "ARCHIVE_R2_REPLICA", skip_serializing_if = "Option::is_none")]
    pub archive_r2_replica: Option<&'static str>,
}

/// The details of a health report, with the spec's snake_case names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthDetails {
    /// `healthy` or `unhealthy: <error code>`.
    pub r2_storage: String,
    /// `healthy` or `unhealthy: <error code>`.
    pub kv_cache: String,
    /// When the check ran, ISO 8601 UTC with milliseconds.
    pub timestamp: String,
    /// How long each probe took.
    pub latencies: HealthLatencies,
    /// Breaker states after the probes.
    pub breakers: BreakerStates,
}

/// What `healthCheck` returns:
/// `{"status": "healthy" | "degraded" | "unhealthy", "details": {"r2_storage": "healthy",
/// "kv_cache": "unhealthy: STORAGE_UNAVAILABLE", "timestamp": "2025-01-06T10:00:00.000Z",
/// "latencies": {"r2_ms": 3, "kv_ms": 2}, "breakers": {"ARCHIVE_R2": "closed", "CHAT_KV":
/// "open"}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Overall status.
    pub status: HealthStatus,
    /// Per-binding results.
    pub details: HealthDetails,
    /// What the last verification runs found; `null` when `verifyStorage` never ran.
    pub verification: Option<VerificationHealth>,
    /// The replica bucket's probe and lag, when one is bound (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaHealth>,
}

/// `healthCheck`'s view of verification: `{"lastCompleteAt": "2025-01-06T10:00:00.000Z" |
/// null, "lastRunAt": ..., "objectsChecked": n, "problems": n, "stale": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationHealth {
    /// When a verification pass last completed (ISO 8601 UTC), `null` before the first.
    pub last_complete_at: Option<String>,
    /// When a verification run last ended (ISO 8601 UTC).
    pub last_run_at: Option<String>,
    /// Objects and entries the last complete pass checked.
    pub objects_checked: u64,
    /// Problems found and not repaired, until their object is checked again and found sound.
    pub problems: u64,
    /// No pass completed within `verificationMaxAgeHours`.
    pub stale: bool,
}

impl VerificationHealth {
    /// The view of `summary` at `now_ms`, stale past `max_age_ms`.
    fn of(summary: &VerificationSummary, now_ms: i64, max_age_ms: i64) -> Self {
        let time = |ms: Option<i64>| ms.and_then(|ms| iso8601("verification", ms).ok());
        VerificationHealth {
            last_complete_at: time(summary.last_complete_at),
            last_run_at: time(summary.last_run_at),
            objects_checked: summary.objects_checked,
            problems: summary.problems(),
            stale: summary.is_stale(now_ms, max_age_ms),
        }
    }

    /// Whether it makes the store `degraded`.
    fn degrades(&self) -> bool {
        self.problems > 0 || self.stale
    }
}

/// Cache entry counts (KV).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheMetrics {
    /// `embedding:` keys.
    pub embeddings: u64,
    /// `query:` keys.
    pub queries: u64,
    /// `archive_meta:` keys (sessions with an archive).
    pub archives_metadata: u64,
}

/// Object counts and sizes (R2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StorageTotals {
    /// Archive objects under `conversations/` (current and legacy keys).
    pub archived_conversations: u64,
    /// Backups with a manifest (committed backups).
    pub backups: u64,
    /// Bytes of every object under `conversations/` and `backups/`.
    pub bytes: u64,
}

/// What `getStorageMetrics` returns: `{"cache": {"embeddings": n, "queries": n,
/// "archives_metadata": n}, "storage": {"archived_conversations": n, "backups": n,
/// "bytes": n}, "complete": true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StorageMetrics {
    /// KV cache counts.
    pub cache: CacheMetrics,
    /// R2 counts.
    pub storage: StorageTotals,
    /// False when the budget ran out first: every count is then a lower bound. The listings
    /// take turns a page at a time, so with a budget of at least 5 each has had its first page.
    pub complete: bool,
}

/// What one listing of `getStorageMetrics` counts.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Embeddings,
    Queries,
    ArchivesMetadata,
    Backups,
    Archives,
}

impl Counted {
    const ALL: [Counted; 5] = [
        Counted::Embeddings,
        Counted::Queries,
        Counted::ArchivesMetadata,
        Counted::Backups,
        Counted::Archives,
    ];
}

/// One listing of `getStorageMetrics` and how far it got.
struct Listing {
    counted: Counted,
    /// Where its next page starts (`None`: at its first key).
    cursor: Option<String>,
    done: bool,
}

/// `healthy`, or `unhealthy: <code>`.
fn probe_status(result: &Result<()>) -> String {
    match result {
        Ok(()) => "healthy".to_owned(),
        Err(err) => format!("unhealthy: {}", err.code()),
    }
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Probes both bindings (1 KV get, 1 R2 head) and reports their health, with what
    /// verification found (1 KV get of its summary): `degraded` when a probe failed, or when
    /// verification has unrepaired problems or no pass completed within
    /// `verificationMaxAgeHours`. With a replica bucket, also probes it (1 R2 head) and lists
    /// the first page of its queue (1 KV list): `replica`; a failing replica probe, or a queued
    /// copy older than [`REPLICA_LAG_DEGRADED_MS`], makes a healthy status `degraded`. Never
    /// fails: a failing probe is part of the report.
    pub async fn health_check(&self) -> HealthReport {
        let log = self.begin("healthCheck");
        let started = self.clock.now_ms();
        let r2 = self.r2_head(&log, HEALTH_PROBE_KEY).await.map(drop);
        let r2_done = self.clock.now_ms();
        let kv = self.kv_get(&log, HEALTH_PROBE_KEY).await.map(drop);
        let kv_done = self.clock.now_ms();
        let replica = self.replica_health(&log, HEALTH_PROBE_KEY).await;

        let verification = match kv {
            Ok(()) => self.verification_health(&log, kv_done).await,
            Err(_) => None,
        };
        let mut status = match (r2.is_ok(), kv.is_ok()) {
            (true, true)
                if verification
                    .as_ref()
                    .is_some_and(VerificationHealth::degrades) =>
            {
                HealthStatus::Degraded
            }
            (true, true) => HealthStatus::Healthy,
            (false, false) => HealthStatus::Unhealthy,
            _ => HealthStatus::Degraded,
        };
        let replica_lags = replica.as_ref().is_some_and(|replica| {
            replica.storage != "healthy"
                || replica
                    .oldest_pending_ms
                    .is_some_and(|age| age > REPLICA_LAG_DEGRADED_MS)
        });
        if replica_lags && status == HealthStatus::Healthy {
            status = HealthStatus::Degraded;
        }
        let report = HealthReport {
            status,
            details: HealthDetails {
                r2_storage: probe_status(&r2),
                kv_cache: probe_status(&kv),
                timestamp: iso8601("timestamp", kv_done).unwrap_or_else(|_| kv_done.to_string()),
                latencies: HealthLatencies {
                    r2_ms: r2_done.saturating_sub(started),
                    kv_ms: kv_done.saturating_sub(r2_done),
                },
                breakers: BreakerStates {
                    archive_r2: self.breaker_state(Binding::R2).as_str(),
                    chat_kv: self.breaker_state(Binding::Kv).as_str(),
                    archive_r2_replica: self
                        .has_replica()
                        .then(|| self.breaker_state(Binding::R2Replica).as_str()),
                },
            },
            verification,
            replica,
        };
        let level = if status == HealthStatus::Healthy {
            "info"
        } else {
            "warn"
        };
        log.event(level, "health", json!({ "status": report.details }));
        report
    }

    /// The verification summary's view for a health report; `None` when verification never
    /// ran or its summary cannot be read (logged).
    async fn verification_health(
        &self,
        log: &OpLog<'_>,
        now_ms: i64,
    ) -> Option<VerificationHealth> {
        let summary = self.read_verification_summary(log).await?;
        summary.last_run_at?;
        let max_age = self.options.verification_max_age_ms;
        Some(VerificationHealth::of(&summary, now_ms, max_age))
    }

    /// Counts cache entries, archives and backups over every listing page, or as many pages
    /// as `budget` allows (a retried call counts once). The five listings take turns a page
    /// at a time, so a budget of at least 5 reads the first page of each: a count that is 0
    /// is then a real 0, even when `complete` is false.
    ///
    /// Costs one KV list per 1000 keys of each of `embedding:`, `query:` and `archive_meta:`,
    /// and one R2 list per 1000 objects under `backups/` and `conversations/`. Errors:
    /// `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` when a listing fails; `INVALID_INPUT` naming
    /// `maxStorageCalls` when it is 0.
    pub async fn get_storage_metrics(&self, budget: RunBudget) -> Result<StorageMetrics> {
        let log = self.begin("getStorageMetrics");
        // No resume point: a count starts over every time.
        let mut run: Run<()> = self.start_run(&log, budget, 1, None, "metrics").await?;
        let mut metrics = StorageMetrics::default();
        let mut listings = Counted::ALL.map(|counted| Listing {
            counted,
            cursor: None,
            done: false,
        });
        metrics.complete = 'count: loop {
            let mut listed_any = false;
            for listing in listings.iter_mut().filter(|listing| !listing.done) {
                if run.afford(1, self.clock.now_ms()).is_err() {
                    break 'count false;
                }
                run.spend(1);
                listed_any = true;
                self.count_page(&log, listing, &mut metrics).await?;
            }
            if !listed_any {
                break true;
            }
        };
        log.debug("metrics", json!(metrics));
        Ok(metrics)
    }

    /// Lists the next page of `listing` and adds it to `metrics`.
    async fn count_page(
        &self,
        log: &OpLog<'_>,
        listing: &mut Listing,
        metrics: &mut StorageMetrics,
    ) -> Result<()> {
        let cursor = listing.cursor.take();
        let cache = &mut metrics.cache;
        let storage = &mut metrics.storage;
        listing.cursor = match listing.counted {
            Counted::Embeddings => {
                self.count_kv_page(log, EMBEDDING_PREFIX, cursor, &mut cache.embeddings)
                    .await?
            }
            Counted::Queries => {
                self.count_kv_page(log, QUERY_PREFIX, cursor, &mut cache.queries)
                    .await?
            }
            Counted::ArchivesMetadata => {
                self.count_kv_page(
                    log,
                    ARCHIVE_META_PREFIX,
                    cursor,
                    &mut cache.archives_metadata,
                )
                .await?
            }
            Counted::Backups => {
                self.count_r2_page(log, BACKUP_PREFIX, cursor, storage)
                    .await?
            }
            Counted::Archives => {
                self.count_r2_page(log, ARCHIVE_PREFIX, cursor, storage)
                    .await?
            }
        };
        listing.done = listing.cursor.is_none();
        Ok(())
    }

    /// Adds the keys of one KV page of `prefix` to `count`; the cursor of the next page.
    async fn count_kv_page(
        &self,
        log: &OpLog<'_>,
        prefix: &str,
        cursor: Option<String>,
        count: &mut u64,
    ) -> Result<Option<String>> {
        let options = KvListOptions {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit: Some(MAX_LIST_LIMIT),
        };
        let page = self.kv_list(log, options).await?;
        *count += page.keys.len() as u64;
        Ok(page.cursor.filter(|_| !page.list_complete))
    }

    /// Adds the objects of one R2 page of `prefix` to `storage`; the cursor of the next page.
    async fn count_r2_page(
        &self,
        log: &OpLog<'_>,
        prefix: &str,
        cursor: Option<String>,
        storage: &mut StorageTotals,
    ) -> Result<Option<String>> {
        let options = ObjectListOptions {
            prefix: Some(prefix.to_owned()),
            cursor,
            limit: Some(MAX_LIST_LIMIT),
            ..ObjectListOptions::default()
        };
        let page = self.r2_list(log, options).await?;
        for object in &page.objects {
            storage.bytes = storage.bytes.saturating_add(object.size);
            if parse_archive_object_key(&object.key).is_some() {
                storage.archived_conversations += 1;
            }
            // Each backup has one manifest, so counting manifests counts committed backups.
            if let Some((_, BackupObjectKind::Manifest)) = parse_backup_object_key(&object.key) {
                storage.backups += 1;
            }
        }
        Ok(page.cursor.filter(|_| page.truncated))
    }
}
