// The bindings and variables this library works with, as declared in wrangler.toml.
import type { SessionMemoryDO } from "./session_memory_do.js";

/** The Worker environment the library and the example Worker expect. */
export interface PersistenceEnv {
  /** Workers KV: caches, archive metadata, per-user archive index, backup manifests. */
  CHAT_KV: KVNamespace;
  /** R2: gzip'd conversation archives and backups. */
  ARCHIVE_R2: R2Bucket;
  /** Optional R2 replica bucket (e.g. another jurisdiction): copies of everything in ARCHIVE_R2 as stored; synced by `syncReplica`. */
  ARCHIVE_R2_REPLICA?: R2Bucket;
  /** Optional Workers Analytics Engine dataset: one data point per library call (README "Analytics Engine"). */
  PERSISTENCE_ANALYTICS?: AnalyticsEngineDataset;
  /** One SessionMemoryDO per chat session. */
  SESSION_MEMORY: DurableObjectNamespace<SessionMemoryDO>;
  /** The spec's `[vars]`, read by policyFromEnv; an absent one keeps its default. */
  SESSION_TTL_HOURS?: string;
  CACHE_TTL_HOURS?: string;
  ARCHIVE_RETENTION_DAYS?: string;
  CLEANUP_INTERVAL_HOURS?: string;
  MAX_ARCHIVE_SIZE_MB?: string;
  /** Read by optionsFromEnv: the `hashSecret` (a Worker secret, at least 16 bytes). */
  PERSISTENCE_HASH_SECRET?: string;
  /** Read by optionsFromEnv: the `encryptionKeys` (a Worker secret: JSON `[{"id","key"}]`, newest first). */
  PERSISTENCE_ENCRYPTION_KEYS?: string;
  /** Read by optionsFromEnv: `verificationMaxAgeHours` (healthCheck is `degraded` past it without a complete verification pass). */
  VERIFY_MAX_AGE_HOURS?: string;
  /** Read by optionsFromEnv: `"true"` turns on `debug` logging. */
  PERSISTENCE_DEBUG?: string;
  /** Archives one BackupWorkflow pack step reads (default 40: one storage call each). */
  BACKUP_STEP_ARCHIVES?: string;
  /** Archives one RestoreWorkflow step restores (default 9, 6 with ARCHIVE_R2_REPLICA: up to 48 subrequests). */
  RESTORE_STEP_SESSIONS?: string;
}
