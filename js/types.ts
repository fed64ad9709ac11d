// The spec's data shapes (camelCase JSON, as the earlier TypeScript implementation named them).
// Unknown extra fields of messages, context and session state are kept through a round trip.

/** One chat message. */
export interface ChatMessage {
  id: string;
  sessionId: string;
  role: "user" | "assistant" | "system";
  content: string;
  /** Epoch milliseconds. */
  timestamp: number;
  metadata?: Record<string, unknown>;
}

/** What the bot knows about the conversation besides its messages (kept verbatim). */
export type ConversationContext = Record<string, unknown>;

/** A session's conversation, as archived. */
export interface ConversationMemory {
  sessionId: string;
  messages: ChatMessage[];
  summary?: string;
  context?: ConversationContext;
  [extra: string]: unknown;
}

/** A session's lifecycle state. */
export interface SessionState {
  id: string;
  userId?: string;
  status: string;
  /** Epoch milliseconds. */
  createdAt: number;
  /** Epoch milliseconds. */
  lastActivity: number;
  metadata?: Record<string, unknown>;
  [extra: string]: unknown;
}

/** An archived conversation as retrieved: the memory plus the session state archived with it. */
export interface ArchivedConversation extends ConversationMemory {
  sessionState?: SessionState;
}

/**
 * One part of a {@link UIMessage}: an object with a `type` (`"text"`, `"reasoning"`,
 * `"tool-<name>"`, `"dynamic-tool"`, `"file"`, `"source-url"`, `"source-document"`,
 * `"data-<name>"`, `"step-start"`, or one a later AI SDK adds). Archives keep every part as
 * given; only `text` and `reasoning` parts are read (their `text` must be a string).
 */
export interface UIMessagePart {
  type: string;
  [field: string]: unknown;
}

/**
 * An AI SDK (v5 and later) `UIMessage`, structurally: the AI SDK's own `UIMessage` types, with
 * their metadata, data parts and tools, are assignable to it (this package does not depend on
 * `ai`). Unknown members are archived and retrieved as given.
 */
export interface UIMessage<Metadata = unknown, Part extends { type: string } = UIMessagePart> {
  id: string;
  role: "system" | "user" | "assistant";
  metadata?: Metadata;
  parts: Part[];
}

/** Options of `archiveUIMessages`. */
export interface ArchiveUIMessagesOptions {
  /** The conversation's user: the archive is listed under it (`listArchivedConversations(userId)`). */
  userId?: string;
  /** The archive's summary, as `ConversationMemory.summary` (`""` when omitted). */
  summary?: string;
}

/**
 * The fields of one archive's listing entry (from KV list metadata; no storage read per entry).
 * Without an index signature, so Durable Object RPC can carry it ({@link ArchivePage}).
 */
export interface ArchiveFields {
  sessionId: string;
  userId?: string;
  /** Epoch milliseconds. */
  archivedAt: number;
  /** The archive's R2 key. */
  key: string;
  // The fields below are absent only from a listing entry whose KV metadata is missing (an
  // index key written without it): its key still gives `key`, `sessionId` and `archivedAt`.
  messageCount?: number;
  summary?: string;
  /** True when `summary` was cut to fit KV's 1024-byte list metadata. */
  summaryTruncated?: boolean;
  topics?: string[];
  /** Session duration in milliseconds. */
  duration?: number;
  /** Size of the archive's JSON document, in bytes. */
  rawSize?: number;
  /** Size of the stored (gzip'd) object, in bytes. */
  storedSize?: number;
  /** SHA-256 (hex) of the stored object. */
  sha256?: string;
  formatVersion?: number;
}

/** Summary of one archive, as listed: its {@link ArchiveFields}, and any a later version adds. */
export interface ArchiveMetadata extends ArchiveFields {
  [extra: string]: unknown;
}

/** One page of archives, newest first (as SessionMemoryDO returns it across RPC). */
export interface ArchivePage<Entry extends ArchiveFields = ArchiveFields> {
  archives: Entry[];
  /** Pass to the next call to get the following page; absent on the last page. */
  cursor?: string;
  /** True when no page follows. */
  listComplete: boolean;
}

/** The same page as DataPersistenceService returns it: an array, as the spec has it, with the page's cursor. */
export type ArchiveList = ArchiveMetadata[] & Omit<ArchivePage, "archives">;

/** Retention and size limits (spec defaults in parentheses). All times in milliseconds. */
export interface DataRetentionPolicy {
  /** How long a live session is kept before it is archived (7 days). */
  conversationTTL: number;
  /** How long cache entries live (24 hours). */
  cacheTTL: number;
  /** How long archives and backups are kept (90 days). */
  archiveRetention: number;
  /** How often the retention sweep should run (1 hour). */
  cleanupInterval: number;
  /** Largest archive, in bytes of JSON (50 MiB). */
  maxArchiveSize: number;
  /**
   * Backup rotation, with restic `forget` semantics: the newest `backupKeepLast` backups, and the
   * newest backup of each of the last `backupKeepDaily` days, `backupKeepWeekly` ISO weeks and
   * `backupKeepMonthly` months (defaults 0, 7, 4, 12; whole numbers, 0 turns a rule off). Backups
   * made with `keep: true`, those a kept incremental backup depends on and the newest automated
   * one are always kept. All four 0: backups are kept for `archiveRetention` instead.
   */
  backupKeepLast: number;
  backupKeepDaily: number;
  backupKeepWeekly: number;
  backupKeepMonthly: number;
}

/** Behaviour beyond the retention policy. */
export interface PersistenceOptions {
  /** Secret (>= 16 bytes) for HMAC-SHA256 cache and user keys; keep it in a Worker secret. */
  hashSecret?: string;
  /** gzip level of archives and backups, 0-9 (6). */
  compressionLevel?: number;
  /** Whether trivially different spellings of a query share a cache entry (true). */
  normalizeQueries?: boolean;
  /** Embedding model of this service: namespaces embedding keys, is recorded in entries cached without a model, and reads return only vectors cached for it unless a call names another. */
  embeddingModel?: string;
  /** Log every storage attempt with sizes. */
  debug?: boolean;
  /** Retries of transient storage failures (4 attempts, 50 ms doubling to 2 s, full jitter). */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Per-binding circuit breaker (opens after 5 consecutive failures, for 30 s). */
  circuitBreaker?: { failureThreshold?: number; openMs?: number };
  /** Bounds of one backup pack, which is written and restored in one piece: archive JSON bytes (8 MiB, at most 32 MiB) and archives (250). */
  backupPack?: { maxBytes?: number; maxSessions?: number };
  /**
   * Key-encryption keys, newest first: `key` is base64 of 32 random bytes. With them, every
   * archive, backup and summary is encrypted at rest (README "Encryption"); keep them in a Worker
   * secret (`PERSISTENCE_ENCRYPTION_KEYS`, read by optionsFromEnv). Never logged or echoed.
   */
  encryptionKeys?: EncryptionKey[];
  /** healthCheck reports `degraded` when no verification pass completed within this many hours (48; `VERIFY_MAX_AGE_HOURS`). */
  verificationMaxAgeHours?: number;
}

/** A key-encryption key: its id (recorded beside every data key it wraps) and base64 of 32 bytes. */
export interface EncryptionKey {
  id: string;
  key: string;
}

/** The bindings the service uses (wrangler.toml). */
export interface PersistenceBindings {
  CHAT_KV: KVNamespace;
  ARCHIVE_R2: R2Bucket;
  /** Optional replica bucket: archives, data keys, tombstones and committed backups are copied there as stored; reads fall back to it (README "Replicas"). */
  ARCHIVE_R2_REPLICA?: R2Bucket;
  /** Optional Workers Analytics Engine dataset: one data point per call (README "Analytics Engine"; schema: `ANALYTICS_SCHEMA`). */
  PERSISTENCE_ANALYTICS?: AnalyticsEngineDataset;
}

/** Limits of one retention run, so a cron invocation stays within Worker limits. */
export interface RetentionRunOptions {
  /**
   * Stop after about this many storage calls. A retried call counts once here but each attempt
   * is a subrequest (Workers allow 50 per invocation on free, 1000 on paid): to stay within a
   * subrequest budget, pass that budget divided by `retry.maxAttempts`, as the example Worker does.
   */
  maxStorageCalls?: number;
  /** Stop after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
  /**
   * Delete nothing: report what a whole sweep from the start would delete, and `backups`, each
   * committed backup kept or deleted with its reasons. Reads only; the sweep's resume point is
   * neither read nor moved.
   */
  dryRun?: boolean;
}

/** Why the backup policy keeps a backup. */
export type BackupKeepReason = "last" | "daily" | "weekly" | "monthly" | "pinned" | "parent" | "chainHead" | "withinRetention";

/** Why the retention sweep deleted something. */
export type DeletionReason =
  | "expired_cache_entry"
  | "archive_past_retention"
  | "backup_past_retention"
  | "orphan_backup_data"
  | "dangling_index_entry";

/** What one retention run deleted and why; `complete` is false when it stopped early and the next run resumes. */
export interface RetentionReport {
  /** Deleted keys per reason. */
  deleted: {
    expiredCacheEntry: number;
    archivePastRetention: number;
    backupPastRetention: number;
    orphanBackupData: number;
    danglingIndexEntry: number;
  };
  bytesFreed: number;
  /** The first deleted keys (see keysTruncated). */
  keys: { store: "kv" | "r2"; key: string; reason: DeletionReason; sizeBytes?: number }[];
  keysTruncated: boolean;
  /** Deletions that failed; their keys stay for a later run. */
  failedDeletions: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished one. */
  resumed: boolean;
  storageCalls: number;
  /** Present (true) on a dry run: the counts and keys are what a sweep would delete. */
  dryRun?: true;
  /** Dry run only: every committed backup listed (at most 1000), kept (with its reasons) or not. */
  backups?: { backupId: string; createdAt: number; kept: boolean; reasons: BackupKeepReason[] }[];
  /** Dry run only: present (true) when more backups were decided than `backups` lists. */
  backupsTruncated?: true;
}

/** One backup of `listBackups`. */
export interface BackupSummary {
  backupId: string;
  /** When it was made (epoch ms). */
  createdAt: number;
  /** `manual` (createBackup) or `automated` (BackupWorkflow). */
  kind: "manual" | "automated";
  /** Holds only what changed since `parentBackupId`, and restores with it. */
  incremental: boolean;
  parentBackupId?: string;
  sessionCount: number;
  /** Bytes of its packs in R2. */
  storedSize: number;
  /** Made for one user (createBackup with `userId`). */
  forUser: boolean;
  /** Made with `keep: true`. */
  keep: boolean;
  /** Whether the backup policy keeps it; false: the next retention run deletes it. */
  kept: boolean;
  reasons: BackupKeepReason[];
}

/** A page of `listBackups`: the backups, newest first, with the paging of `ArchiveList`. */
export type BackupList = BackupSummary[] & {
  /** Pass to the next call; absent on the last page. */
  cursor?: string;
  /** True when no page follows (a page may hold fewer than `limit` backups while this is false). */
  listComplete: boolean;
};

/** Options of `restorePack`: its owner, and which of the pack's archives (by position). */
export interface RestorePackOptions extends BackupOptions {
  /** Position in the pack of the first archive to restore (default 0). */
  first?: number;
  /** How many archives to restore (default: to the pack's end). */
  count?: number;
}

/** Options of `listBackups`. */
export interface ListBackupsOptions {
  /** Backups a page (1 to 1000, default 20). */
  limit?: number;
  /** The previous page's cursor. */
  cursor?: string;
  /** Only backups made for this user (createBackup with `userId`). */
  userId?: string;
}

/** The spec's health report, from real probes of both bindings. */
export interface HealthReport {
  status: "healthy" | "degraded" | "unhealthy";
  details: {
    r2_storage: string;
    kv_cache: string;
    timestamp: string;
    latencies: { r2_ms: number; kv_ms: number };
    breakers: Record<"ARCHIVE_R2" | "CHAT_KV", "closed" | "open" | "half_open"> & { ARCHIVE_R2_REPLICA?: "closed" | "open" | "half_open" };
    [extra: string]: unknown;
  };
  /** With a replica bucket bound: its probe and lag (absent otherwise). */
  replica?: ReplicaHealth;
  /**
   * What verification found (`verifyStorage`); `null` when it never ran. Open `problems` or no
   * pass completed within `verificationMaxAgeHours` (`stale`) make the status `degraded`.
   */
  verification: VerificationHealth | null;
}

/** `HealthReport.verification`. */
export interface VerificationHealth {
  /** When a verification pass last completed (ISO 8601 UTC); `null` before the first. */
  lastCompleteAt: string | null;
  /** When a verification run last ended (ISO 8601 UTC). */
  lastRunAt: string | null;
  /** Objects and index entries the last complete pass checked. */
  objectsChecked: number;
  /** Problems found and not repaired, open until their object is found sound again. */
  problems: number;
  /** No pass completed within `verificationMaxAgeHours` (48 by default). */
  stale: boolean;
}

/** Options of `verifyStorage`. */
export interface VerifyStorageOptions {
  /**
   * `"1/n"`: each pass checks the n-th of the store whose keys hash to its slot, the next pass
   * the next slot, so n passes check everything ("1/7" on a daily cron: a week). `"all"` (the
   * default) checks everything every pass.
   */
  sample?: string;
  /** Write damaged or missing archives (and, with a replica, packs, manifests and replica copies) back from a verified copy (the replica's, else a backup's) and rebuild missing index entries; never deletes (false). */
  repair?: boolean;
  /** Stop after about this many storage calls (at least 12; a retried call counts once). The next run resumes there. */
  maxStorageCalls?: number;
  /** Stop after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
}

/** What is wrong with a stored object (stable names). */
export type VerificationProblemKind =
  | "checksum_mismatch"
  | "corrupt"
  | "undecryptable"
  | "unsupported_format"
  | "missing"
  | "not_indexed"
  | "replica_missing"
  | "replica_mismatch";

/** One problem a verification run found. */
export interface VerificationProblem {
  /** The R2 key of the object (for an index entry pointing at nothing, the archive's key). */
  key: string;
  problem: VerificationProblemKind;
  /** For a person: which entry, which error. */
  detail: string;
  repaired: boolean;
  /** Where the copy a repair wrote came from: `"backup <id>"`, `"replica"`, or `"primary"` (a repaired replica copy). */
  repairedFrom?: string;
}

/** What `verifyStorage` returns; `complete` means the pass (of this slot of the sample) is. */
export interface VerificationReport {
  /** The pass's sample, `"1/n"`. */
  sample: string;
  /** The slot of the sample this pass checks (0 to n-1). */
  slot: number;
  /** Objects read and checked by this run: archives, backup manifests and packs. */
  objectsChecked: number;
  bytesChecked: number;
  /** KV index entries checked. */
  entriesChecked: number;
  backupsChecked: number;
  /** Encrypted archives checked by their checksum alone: the service has no `encryptionKeys` to open them. */
  notDecrypted: number;
  /** Problems this run found (at most 100; `problemsFound` counts all), each key once. */
  problems: VerificationProblem[];
  problemsFound: number;
  repaired: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued the pass an earlier run left unfinished. */
  resumed: boolean;
  storageCalls: number;
}

/**
 * The replica bucket in `healthCheck().replica`: `storage` is its probe; `pending` the
 * keys queued for `syncReplica` on the queue's first KV page (a lower bound when
 * `pendingComplete` is false; null when the queue could not be listed); `oldestPendingMs` the
 * age of the oldest of them. A failing probe or a copy queued for over an hour makes a healthy
 * report `degraded`.
 */
export interface ReplicaHealth {
  storage: string;
  pending: number | null;
  pendingComplete: boolean;
  oldestPendingMs: number | null;
}

/** What one `syncReplica` run did; `complete` is false when it stopped early and the next run resumes. */
export interface ReplicaSyncReport {
  /** Queue entries settled and removed. */
  entries: number;
  /** Keys copied from the primary to the replica. */
  copied: number;
  /** Keys deleted in the replica (gone from the primary). */
  deleted: number;
  /** Keys whose sync failed (logged; their entry stays queued). */
  failed: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  resumed: boolean;
  storageCalls: number;
}

/** The spec's storage metrics, counted over every page (or as many as the budget allowed). */
export interface StorageMetrics {
  cache: { embeddings: number; queries: number; archives_metadata: number };
  storage: { archived_conversations: number; backups: number; bytes: number };
  /**
   * False when `maxStorageCalls` or `timeBudgetMs` ran out first: every count is then a lower
   * bound. The five listings take turns a page at a time, so with `maxStorageCalls` of at least
   * 5 each has had its first page (a 0 is a real 0).
   */
  complete: boolean;
}

/** Limits of one `getStorageMetrics` call: without them it lists every page, whatever it costs. */
export interface StorageMetricsOptions {
  /**
   * List at most this many pages of 1000 keys (at least 1; a retried call counts once, see
   * RetentionRunOptions). A Worker invocation allows 50 subrequests on the free plan.
   */
  maxStorageCalls?: number;
  /** Start no new page after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
}

/** Options of `createBackup` and `restoreFromBackup`. */
export interface BackupOptions {
  /**
   * createBackup: back up only archives of this user (as `SessionState.userId` named it); every
   * session must have one, or the call fails with NOT_FOUND and writes nothing. The manifest
   * records the user. restoreFromBackup: restore only a backup made for this user (NOT_FOUND
   * otherwise). Present but not a string (`undefined` included) is INVALID_INPUT, so a missing
   * claim never turns the check off.
   */
  userId?: string;
  /** createBackup: the backup policy never deletes this backup (it follows the policy otherwise). */
  keep?: boolean;
}

/**
 * Limits of one maintenance run (`indexLegacyArchives`, `reindexUserArchives`,
 * `rotateEncryptionKeys`, `encryptExistingArchives`), as for retention runs.
 */
export interface MigrationRunOptions {
  /**
   * Stop after about this many storage calls (at least 8 for indexLegacyArchives, 4 for
   * reindexUserArchives, 6 for rotateEncryptionKeys, 16 for encryptExistingArchives, 6 for
   * syncReplica; with a replica bucket, rotation and encryptExistingArchives need 2 and 4
   * more; a retried call counts once, see RetentionRunOptions).
   */
  maxStorageCalls?: number;
  /** Stop after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
}

/** What one `indexLegacyArchives` run did; `complete` is false when it stopped early and the next run resumes. */
export interface MigrationReport {
  /** `archive_meta:` entries listed. */
  scanned: number;
  /** Legacy archives indexed by this run (now listed and swept by retention). */
  indexed: number;
  /** Entries left alone because their archive object is gone. */
  missingObjects: number;
  /** Entries left alone because they cannot be read (logged with their key). */
  unreadable: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished one. */
  resumed: boolean;
  storageCalls: number;
}

/** What one `reindexUserArchives` run did; `complete` is false when it stopped early and the next run resumes. */
export interface ReindexReport {
  /** `archive_index:` entries listed. */
  scanned: number;
  /** User index entries written under the current hash secret. */
  written: number;
  /** Archives without a user (nothing to index). */
  anonymous: number;
  /** Entries whose listing summary could not be read (logged with the key). */
  unreadable: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished one. */
  resumed: boolean;
  storageCalls: number;
}

/** What one `rotateEncryptionKeys` run did; `complete` is false when it stopped early and the next run resumes. */
export interface RotationReport {
  /** The id of the key-encryption key every data key is rewrapped to (the newest). */
  newestKeyId: string;
  /** Data key objects listed. */
  scanned: number;
  /** Data keys rewrapped under the newest key. */
  rewrapped: number;
  /** Data keys it already wrapped. */
  alreadyCurrent: number;
  /** Data keys wrapped by a key that is not configured (logged with its id): that key must stay. */
  keyUnavailable: number;
  /** Data key objects that cannot be read or unwrapped (logged with their R2 key). */
  damaged: number;
  /** Data keys destroyed or rewritten while this run rewrapped them, left as they are. */
  changed: number;
  /** True when a complete rotation to the newest key was recorded before: nothing else was read. */
  upToDate: boolean;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished one. */
  resumed: boolean;
  storageCalls: number;
}

/** A backup that still holds sessions of an erased user, and why (`ErasureReceipt.backupsRetained`). */
export interface RetainedBackup {
  backupId: string;
  /** How many of the user's sessions it holds. */
  sessions: number;
  /** `"shared"`: a backup of several users, not rewritten, where their conversations stay readable; `"shared, encrypted"`: the same, but they no longer decrypt. Restores skip the user's sessions while the tombstone stands; backup retention deletes it in time. */
  reason: string;
}

/**
 * What `eraseUserData` has done for one user, over all its runs so far; `complete` is false when
 * it stopped early (the next call, or `resumeErasures`, continues it).
 */
export interface ErasureReceipt {
  /** The user's hashed key (never the raw id): names their tombstone, `erasures/<userKey>.json`. */
  userKey: string;
  /** When the erasure began (epoch ms): everything of the user archived up to then is erased; null if no run got to write the tombstone. */
  erasedAt: number | null;
  /** Archive objects deleted (segments of the user's conversations included). */
  archivesDeleted: number;
  /** KV records and index entries of those archives deleted. */
  indexEntriesDeleted: number;
  /** Backups made for the user, deleted. */
  backupsDeleted: number;
  /** Data keys destroyed (with encryption): the user's, and their conversations' segment keys. */
  keysDestroyed: number;
  /** Backups of several users that still hold some of this user's sessions, and why. */
  backupsRetained: RetainedBackup[];
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished erasure. */
  resumed: boolean;
  storageCalls: number;
}

/** Options of `eraseUserData` and `resumeErasures`: the run's budget (at least 10 storage calls; 14 with a replica bucket). */
export interface ErasureRunOptions {
  /** Stop after about this many storage calls (at least 10, 14 with a replica bucket; a retried call counts once). */
  maxStorageCalls?: number;
  /** Stop after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
}

/**
 * Session ids a restore wrote back; `skippedSessionIds` (not enumerable, so the array compares
 * as a plain array) lists those it did not restore because their user's erasure covers them.
 */
export type RestoredSessions = string[] & { readonly skippedSessionIds: string[] };

/** What one `encryptExistingArchives` run did; `complete` is false when it stopped early and the next run resumes. */
export interface EncryptExistingReport {
  /** Archive objects listed. */
  scanned: number;
  /** Plaintext archives rewritten encrypted (their plaintext deleted). */
  encrypted: number;
  /** Archives that were encrypted already. */
  alreadyEncrypted: number;
  /** Archives of the earlier TypeScript implementation, left as they are. */
  legacy: number;
  /** Plaintext archives past archiveRetention, left for the retention sweep to delete. */
  expired: number;
  /** Archives that fail verification, left as they are (logged with their key). */
  damaged: number;
  /** Archives whose encrypted key holds another archive, left as they are (logged). */
  conflicts: number;
  complete: boolean;
  stoppedBy: "call_budget" | "deadline" | "circuit_open" | "storage_error" | null;
  /** True when this run continued an unfinished one. */
  resumed: boolean;
  storageCalls: number;
}

/** What an automated backup backs up (the `BackupWorkflow`'s parameters). */
export interface BackupRequest {
  /** The archives made after this time (epoch ms); default: after the last automated backup's high-water mark (all, for the first). */
  since?: number;
  /** These sessions' newest archives instead of an index (not with `since` or `userId`). */
  sessionIds?: string[];
  /** This user's archives, in a backup only they may restore. */
  userId?: string;
  /** Keep the backup whatever the backup retention policy says. */
  keep?: boolean;
}

/** One pack of a backup as its manifest records it (docs/FORMAT.md, "Manifest (format 2)"). */
export interface PackRecord {
  key: string;
  sha256: string;
  storedSize: number;
  totalSize: number;
  sessions: { sessionId: string; sha256: string; size: number }[];
}

/** The plan step's result: what every later step of one automated backup is given. */
export interface BackupPlan {
  backupId: string;
  createdAt: number;
  since: number | null;
  parentBackupId: string | null;
  parentCreatedAt: number | null;
  highWaterMark: number | null;
  userId: string | null;
  sessionIds: string[] | null;
  keep: boolean;
  maxSessions: number;
  /** A backup of the whole store without `since`: the next such backup is incremental to it. */
  chained: boolean;
  /** When its chain's full backup was made (a chain grows for a week, then a full backup starts the next). */
  chainStart: number;
}

/** Where the next pack step of a backup continues. */
export type PackSource = { sessions: string[] } | { index: { kvCursor: string | null; kvResumeAt?: string } };

/** What one pack step did. */
export interface PackStepReport {
  /** The pack written; null when nothing was (left) to back up. */
  record: PackRecord | null;
  missingSessionIds: string[];
  /** Where the next step continues; null once everything is backed up. */
  next: PackSource | null;
  /** Archives that could not be read (damaged): left out and logged, so they do not stop the backup. */
  unreadableArchives: string[];
}

/** What the `RestoreWorkflow` restores. */
export interface RestoreRequest {
  backupId: string;
  /** Only a backup made for this user (as `restoreFromBackup(id, {userId})`). */
  userId?: string;
}

/** Why a run stopped before its job was complete. */
export type StopReason = "call_budget" | "deadline" | "circuit_open" | "storage_error";

/** The `metadata` of an archive document (docs/FORMAT.md, "The document"). */
export interface ArchiveDocumentMetadata {
  sessionId: string;
  userId?: string;
  /** Epoch ms. */
  archivedAt: number;
  messageCount: number;
  /** Decrypted, whatever is stored. */
  summary: string;
  topics: string[];
  duration: number;
}

/** A line of `exportUserData`: one archive of the person, verified and decrypted. */
export interface ConversationExportLine {
  type: "conversation";
  /** The archive's R2 key. */
  key: string;
  sessionId: string;
  /** Epoch ms. */
  archivedAt: number;
  metadata: ArchiveDocumentMetadata;
  /** The conversation as `retrieveArchive` returns it. */
  conversation: ArchivedConversation;
}

/**
 * The last line of every export: how many lines came before it and the SHA-256 (lowercase hex)
 * of their bytes, newlines included (`head -n -1 export.ndjson | sha256sum`). A store export's
 * also says whether it reached the end of the store, and where the next export continues.
 */
export interface ExportEndLine {
  type: "end";
  count: number;
  sha256: string;
  /** exportStore only: the export reached the end of the store. */
  complete?: boolean;
  /** exportStore only: pass it as `cursor` to continue; null when complete. */
  cursor?: string | null;
  /** exportStore only, when it stopped early: why. */
  stoppedBy?: StopReason;
  /** exportStore only: archives and objects left out because they cannot be read (damaged). */
  unreadable?: string[];
}

/** Options of `exportStore`: a run's budget, and where to continue. */
export interface ExportStoreOptions {
  /** Stop (after a whole line) before this many storage calls are exceeded; at least 4. */
  maxStorageCalls?: number;
  /** Stop (after a whole line) after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
  /** The `cursor` of an earlier export's end line: continue exactly where it stopped. */
  cursor?: string;
}

/** Options of `importStore`. */
export interface ImportStoreOptions {
  /** Write nothing: report what an import would write (heads and gets only). */
  dryRun?: boolean;
  /** Stop before a line that would exceed this many storage calls; at least 10 (12 with a replica bucket). */
  maxStorageCalls?: number;
  /** Stop before the next line after about this many milliseconds of wall time. */
  timeBudgetMs?: number;
  /**
   * The first line to import (1-based): an earlier, stopped import's `nextLine`, given the same
   * stream again. The lines before it are read and hashed (for the end line), not imported.
   */
  fromLine?: number;
}

/**
 * What `importStore` did (with `dryRun`: would do). `complete` is true when every line was
 * imported and the stream ended with an end line that verified.
 */
export interface ImportReport {
  /** Lines read, end lines and lines before `fromLine` included. */
  lines: number;
  /** Archives written (dry run: that would be). */
  archivesWritten: number;
  /** Archives already in the target, the same bytes (or the same document). */
  archivesAlreadyPresent: number;
  /** Archives whose key holds another intact archive: kept, never overwritten (see `conflicts`). */
  archivesConflicting: number;
  /** Tombstones and data keys written (dry run: that would be). */
  objectsWritten: number;
  /** Tombstones and data keys already in the target (the same erasure, the same data key). */
  objectsAlreadyPresent: number;
  /** Tombstones and data keys whose key holds another one: kept (see `conflicts`). */
  objectsConflicting: number;
  /** Archives (and data keys) a tombstone in the target covers: not written. */
  skippedErased: number;
  /** `archive_meta` records and user and global index entries written (dry run: that would be). */
  indexEntriesWritten: number;
  /** The first 100 keys counted as conflicting. */
  conflicts: string[];
  /** End lines verified (one per export the stream concatenates). */
  endLines: number;
  /** The stream's last line was an end line that verified; false: it was cut short. */
  ended: boolean;
  /** The last end line's `complete`: the export reached the end of the source store. */
  exportComplete: boolean;
  /** The last end line's `cursor`: pass it to `exportStore` on the source to export the rest. */
  exportCursor: string | null;
  /** What the end lines list as left out of the export (unreadable in the source). */
  exportUnreadable: string[];
  /** When the run stopped early: the first line not imported (pass it as `fromLine`). */
  nextLine: number | null;
  dryRun: boolean;
  complete: boolean;
  stoppedBy: StopReason | null;
  /** Always false: an import keeps no resume point (see `nextLine`). */
  resumed: boolean;
  storageCalls: number;
}
