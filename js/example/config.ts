// The example Worker's configuration: the spec's [vars] (policyFromEnv), the library's secrets
// (optionsFromEnv, exactly as SessionMemoryDO reads them), the AUTH_SECRET secret and the
// retention budget. Checked on every request and cron run; a bad value fails loudly, naming the
// variable (INVALID_CONFIG).
import {
  DataPersistenceIntegration,
  DataPersistenceService,
  isPersistenceError,
  optionsFromEnv,
  policyFromEnv,
  type BackupRequest,
  type DataRetentionPolicy,
  type PersistenceEnv,
  type PersistenceOptions,
} from "supportbot-persistence";
import { importAuthKey } from "./auth.js";
import { HttpError } from "./http.js";
import { RUN_REPORT_JOBS } from "./run_reports.js";

/** The example Worker's environment: the library's bindings and vars plus its own. */
export interface ExampleEnv extends PersistenceEnv {
  /** HMAC-SHA256 key of the bearer tokens (a Worker secret: `wrangler secret put AUTH_SECRET`). */
  AUTH_SECRET?: string;
  /**
   * Key of the library's HMAC user and cache keys (a Worker secret: `wrangler secret put
   * PERSISTENCE_HASH_SECRET`); optionsFromEnv reads it here and in SessionMemoryDO alike.
   */
  PERSISTENCE_HASH_SECRET?: string;
  /**
   * Most subrequests one cron run may spend on storage (default 45: under the free plan's 50),
   * retries included; see retentionCallBudget.
   */
  RETENTION_STORAGE_CALLS?: string;
  /** The automated backups (wrangler.toml `[[workflows]]`), one started per BACKUP_INTERVAL_HOURS. */
  BACKUP_WORKFLOW: Workflow<BackupRequest>;
  /** Hours between automated backups (default 24). */
  BACKUP_INTERVAL_HOURS?: string;
  /** The part of the store each cron verification pass checks, `"1/n"` or `"all"` (default `"1/7"`). */
  VERIFY_SAMPLE?: string;
}

/** Shortest AUTH_SECRET accepted. */
export const MIN_AUTH_SECRET_BYTES = 32;
const DEFAULT_RETENTION_STORAGE_CALLS = 45;
/**
 * Storage calls the cron handler makes itself: the get and put of the last sweep's time, and a
 * put of each job's run report (run_reports.ts: retention, verification, backup).
 */
export const OWN_RETENTION_CALLS = 2 + RUN_REPORT_JOBS.length;
/** The service's MIN_STORAGE_CALLS: a smaller maxStorageCalls is refused (INVALID_CONFIG). */
const MIN_RETENTION_CALLS = 5;
/** What a replica bucket (ARCHIVE_R2_REPLICA) adds to it: each delete batch is sent there too. */
const REPLICA_RETENTION_CALLS = 4;
/**
 * Attempts per storage call of the cron's sweep (the library's default is 4): a sweep cut short
 * resumes on the next run, so it need not retry hard, and each attempt costs a subrequest.
 */
export const RETENTION_RETRY_ATTEMPTS = 2;
const MAX_RETENTION_STORAGE_CALLS = 100_000;
/** Wall time one retention run may take; a cron run may take minutes, the CPU budget is the limit. */
export const RETENTION_TIME_BUDGET_MS = 20_000;

/** Everything built from one env, once per isolate. */
export interface Runtime {
  policy: DataRetentionPolicy;
  service: DataPersistenceService;
  integration: DataPersistenceIntegration;
  authKey: Promise<CryptoKey>;
  /** The cron's sweep: the same options but RETENTION_RETRY_ATTEMPTS, and its maxStorageCalls. */
  retention: { service: DataPersistenceService; maxStorageCalls: number };
  /** /metrics: counted like the sweep, with the same retries and call budget. */
  metrics: { integration: DataPersistenceIntegration; maxStorageCalls: number };
  /**
   * The operators' views of the whole store (routes /ops/*): the sweep's options without the
   * encryption keys, so that a global archive listing reads no data key (with them, each page
   * costs 1 R2 get per owner on it for summaries these views do not show).
   */
  ops: { service: DataPersistenceService };
}

const runtimes = new WeakMap<ExampleEnv, Runtime>();

function configError(message: string): HttpError {
  return new HttpError(500, "INVALID_CONFIG", message);
}

/**
 * The maxStorageCalls of one cron run, from RETENTION_STORAGE_CALLS (subrequests). The service
 * counts a retried call once, but every attempt is a subrequest, so the budget is what is left
 * after the handler's own calls divided by the attempts a call may take: 45 subrequests with 2
 * attempts give 21 calls, and a run never passes 45 subrequests even if every call is retried.
 */
export function retentionCallBudget(value: string | undefined, retryAttempts: number, replica = false): number {
  const minRetentionCalls = MIN_RETENTION_CALLS + (replica ? REPLICA_RETENTION_CALLS : 0);
  const minimum = OWN_RETENTION_CALLS + minRetentionCalls * retryAttempts;
  const subrequests = value === undefined ? DEFAULT_RETENTION_STORAGE_CALLS : /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(subrequests) || subrequests < minimum || subrequests > MAX_RETENTION_STORAGE_CALLS) {
    throw configError(
      `invalid configuration variable RETENTION_STORAGE_CALLS = ${JSON.stringify(value)}: must be an integer in ` +
        `${minimum}..=${MAX_RETENTION_STORAGE_CALLS} (the handler's ${OWN_RETENTION_CALLS} own calls plus at least ` +
        `${minRetentionCalls} retention calls of up to ${retryAttempts} attempts each)`,
    );
  }
  return Math.floor((subrequests - OWN_RETENTION_CALLS) / retryAttempts);
}

/** The library's services built from env (secrets included), or INVALID_CONFIG naming the variable. */
function libraryConfig(env: ExampleEnv): {
  policy: DataRetentionPolicy;
  integration: DataPersistenceIntegration;
  maintenance: DataPersistenceIntegration;
  ops: DataPersistenceService;
} {
  try {
    // The same two calls as SessionMemoryDO's, so both hash user ids and texts with one key.
    const policy = policyFromEnv(env);
    const options = optionsFromEnv(env);
    const sweepOptions: PersistenceOptions = { ...options, retry: { ...options.retry, maxAttempts: RETENTION_RETRY_ATTEMPTS } };
    const { encryptionKeys: _notForListings, ...opsOptions } = sweepOptions;
    return {
      policy,
      integration: new DataPersistenceIntegration(env, policy, options),
      maintenance: new DataPersistenceIntegration(env, policy, sweepOptions),
      ops: new DataPersistenceService(env, policy, opsOptions),
    };
  } catch (error) {
    if (isPersistenceError(error)) throw configError(error.message);
    throw error;
  }
}

/** The runtime of `env`, or an INVALID_CONFIG HttpError naming the bad variable. */
export function runtime(env: ExampleEnv): Runtime {
  const cached = runtimes.get(env);
  if (cached) return cached;
  const { policy, integration, maintenance, ops } = libraryConfig(env);
  const secret = env.AUTH_SECRET;
  if (typeof secret !== "string" || secret.length === 0) {
    throw configError("AUTH_SECRET is not set: set it with `wrangler secret put AUTH_SECRET` (npm start passes a dev value)");
  }
  if (new TextEncoder().encode(secret).byteLength < MIN_AUTH_SECRET_BYTES) {
    throw configError(`AUTH_SECRET is shorter than ${MIN_AUTH_SECRET_BYTES} bytes`);
  }
  const maxStorageCalls = retentionCallBudget(env.RETENTION_STORAGE_CALLS, RETENTION_RETRY_ATTEMPTS, env.ARCHIVE_R2_REPLICA !== undefined);
  const built: Runtime = {
    policy,
    service: integration.service,
    integration,
    authKey: importAuthKey(secret),
    retention: { service: maintenance.service, maxStorageCalls },
    metrics: { integration: maintenance, maxStorageCalls },
    ops: { service: ops },
  };
  runtimes.set(env, built);
  return built;
}
