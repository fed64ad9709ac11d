// `GET /metrics` in Prometheus text exposition format (0.0.4), for a scrape job: the storage
// counts of getStorageMetrics, the health probes and breakers, what verification and the replica
// report, the newest backup, the last complete retention sweep and what the last retention run
// deleted (its run report, run_reports.ts). Asked for with
// `Accept: text/plain` or `?format=prometheus`; JSON stays the default.
import type { BackupSummary, DeletionReason, HealthReport, RetentionReport, StorageMetrics } from "supportbot-persistence";

/** The content type of the exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Whether the request asks for the exposition format rather than JSON. */
export function wantsPrometheus(request: Request): boolean {
  const url = new URL(request.url);
  if (url.searchParams.get("format") === "prometheus") return true;
  const accept = request.headers.get("accept") ?? "";
  // A scraper sends text/plain (or openmetrics with text/plain as fallback); browsers and JSON
  // clients send application/json or */* first.
  return /^\s*text\/plain\b/.test(accept) || /application\/openmetrics-text/.test(accept);
}

/** What the exposition is made of. */
export interface PrometheusInputs {
  metrics: StorageMetrics;
  health: HealthReport;
  /** The newest backup, when there is one. */
  newestBackup?: BackupSummary;
  /** When the last complete retention sweep ran (epoch ms). */
  lastRetentionMs?: number;
  /** What the last retention run deleted, per reason (its run report). */
  lastRetentionDeleted?: RetentionReport["deleted"];
}

/** The `reason` label of each count of RetentionReport.deleted: the library's DeletionReason names. */
export const DELETION_REASON_LABELS: Record<keyof RetentionReport["deleted"], DeletionReason> = {
  expiredCacheEntry: "expired_cache_entry",
  archivePastRetention: "archive_past_retention",
  backupPastRetention: "backup_past_retention",
  orphanBackupData: "orphan_backup_data",
  danglingIndexEntry: "dangling_index_entry",
};

type Labels = Record<string, string>;
interface Sample {
  labels?: Labels;
  value: number;
}

/** One metric family: its HELP and TYPE lines, then its samples. */
function family(name: string, type: "gauge" | "counter", help: string, samples: Sample[]): string {
  const lines = [`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`];
  for (const { labels, value } of samples) {
    const pairs = Object.entries(labels ?? {}).map(([key, label]) => `${key}="${escapeLabel(label)}"`);
    lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(",")}}` : ""} ${formatValue(value)}`);
  }
  return lines.join("\n");
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

const seconds = (ms: number) => ms / 1000;

/** The exposition text (ends with a newline, as the format requires). */
export function prometheusText({ metrics, health, newestBackup, lastRetentionMs, lastRetentionDeleted }: PrometheusInputs): string {
  const families = [
    family("supportbot_cache_entries", "gauge", "KV cache and metadata entries by kind.", [
      { labels: { kind: "embedding" }, value: metrics.cache.embeddings },
      { labels: { kind: "query" }, value: metrics.cache.queries },
      { labels: { kind: "archive_meta" }, value: metrics.cache.archives_metadata },
    ]),
    family("supportbot_archives", "gauge", "Archived conversations in R2 (objects under conversations/).", [
      { value: metrics.storage.archived_conversations },
    ]),
    family("supportbot_backups", "gauge", "Committed backups in R2.", [{ value: metrics.storage.backups }]),
    family("supportbot_stored_bytes", "gauge", "Bytes stored in R2 under conversations/ and backups/.", [{ value: metrics.storage.bytes }]),
    family("supportbot_metrics_complete", "gauge", "1 when the counts covered every page, 0 when the call budget ran out first (lower bounds).", [
      { value: metrics.complete ? 1 : 0 },
    ]),
    family("supportbot_up", "gauge", "1 when the binding's health probe answered.", [
      { labels: { binding: "ARCHIVE_R2" }, value: health.details.r2_storage === "healthy" ? 1 : 0 },
      { labels: { binding: "CHAT_KV" }, value: health.details.kv_cache === "healthy" ? 1 : 0 },
      ...(health.replica ? [{ labels: { binding: "ARCHIVE_R2_REPLICA" }, value: health.replica.storage === "healthy" ? 1 : 0 }] : []),
    ]),
    family(
      "supportbot_circuit_breaker_state",
      "gauge",
      "1 for the state each binding's circuit breaker is in (closed, open, half_open).",
      Object.entries(health.details.breakers).flatMap(([binding, state]) =>
        ["closed", "open", "half_open"].map((candidate) => ({ labels: { binding, state: candidate }, value: state === candidate ? 1 : 0 })),
      ),
    ),
  ];
  const verification = health.verification;
  if (verification) {
    families.push(
      family("supportbot_verification_problems", "gauge", "Problems verification found and did not repair, still open.", [{ value: verification.problems }]),
      family("supportbot_verification_objects_checked", "gauge", "Objects and index entries the last complete verification pass checked.", [
        { value: verification.objectsChecked },
      ]),
      family("supportbot_verification_stale", "gauge", "1 when no verification pass completed within verificationMaxAgeHours.", [
        { value: verification.stale ? 1 : 0 },
      ]),
    );
    if (verification.lastCompleteAt !== null) {
      families.push(
        family("supportbot_verification_last_complete_timestamp_seconds", "gauge", "When a verification pass last completed (Unix time).", [
          { value: seconds(Date.parse(verification.lastCompleteAt)) },
        ]),
      );
    }
  }
  if (health.replica) {
    families.push(
      family("supportbot_replica_pending", "gauge", "Copies queued for the replica bucket (first queue page: a lower bound past 1000).", [
        { value: health.replica.pending ?? Number.NaN },
      ]),
      family("supportbot_replica_oldest_pending_seconds", "gauge", "Age of the oldest queued copy (0 when none).", [
        { value: seconds(health.replica.oldestPendingMs ?? 0) },
      ]),
    );
  }
  if (newestBackup) {
    families.push(
      family("supportbot_backup_last_timestamp_seconds", "gauge", "When the newest backup was made (Unix time), by kind.", [
        { labels: { kind: newestBackup.kind }, value: seconds(newestBackup.createdAt) },
      ]),
      family("supportbot_backup_last_stored_bytes", "gauge", "Stored bytes of the newest backup.", [{ value: newestBackup.storedSize }]),
    );
  }
  if (lastRetentionMs !== undefined) {
    families.push(
      family("supportbot_retention_last_complete_timestamp_seconds", "gauge", "When the last complete retention sweep ran (Unix time).", [
        { value: seconds(lastRetentionMs) },
      ]),
    );
  }
  if (lastRetentionDeleted) {
    families.push(
      family(
        "supportbot_retention_deleted",
        "gauge",
        "Keys the last retention run deleted, by reason (a run cut short by its budget counts only its own part of the sweep).",
        Object.entries(DELETION_REASON_LABELS).map(([field, reason]) => ({
          labels: { reason },
          value: lastRetentionDeleted[field as keyof RetentionReport["deleted"]] ?? 0,
        })),
      ),
    );
  }
  return `${families.join("\n")}\n`;
}
