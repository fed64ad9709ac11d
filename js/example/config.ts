// The example Worker's configuration: the spec's [vars] (policyFromEnv), the AUTH_SECRET secret
// and the retention budget. Checked on every request and cron run; a bad value fails loudly,
// naming the variable (INVALID_CONFIG).
import {
  DataPersistenceIntegration,
  isPersistenceError,
  policyFromEnv,
  type DataPersistenceService,
  type DataRetentionPolicy,
  type PersistenceEnv,
} from "supportbot-persistence";
import { importAuthKey } from "./auth.js";
import { HttpError } from "./http.js";

/** The example Worker's environment: the library's bindings and vars plus its own. */
export interface ExampleEnv extends PersistenceEnv {
  /** HMAC-SHA256 key of the bearer tokens (a Worker secret: `wrangler secret put AUTH_SECRET`). */
  AUTH_SECRET?: string;
  /** Most storage calls one retention run may make (default 45: under the free plan's 50 subrequests). */
  RETENTION_STORAGE_CALLS?: string;
}

/** Shortest AUTH_SECRET accepted. */
export const MIN_AUTH_SECRET_BYTES = 32;
const DEFAULT_RETENTION_STORAGE_CALLS = 45;
/** Wall time one retention run may take; a cron run may take minutes, the CPU budget is the limit. */
export const RETENTION_TIME_BUDGET_MS = 20_000;

/** Everything built from one env, once per isolate. */
export interface Runtime {
  policy: DataRetentionPolicy;
  service: DataPersistenceService;
  integration: DataPersistenceIntegration;
  authKey: Promise<CryptoKey>;
  retentionStorageCalls: number;
}

const runtimes = new WeakMap<ExampleEnv, Runtime>();

function configError(message: string): HttpError {
  return new HttpError(500, "INVALID_CONFIG", message);
}

function retentionStorageCalls(value: string | undefined): number {
  if (value === undefined) return DEFAULT_RETENTION_STORAGE_CALLS;
  const calls = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(calls) || calls < 5 || calls > 100_000) {
    throw configError(`invalid configuration variable RETENTION_STORAGE_CALLS = ${JSON.stringify(value)}: must be an integer in 5..=100000`);
  }
  return calls;
}

/** The runtime of `env`, or an INVALID_CONFIG HttpError naming the bad variable. */
export function runtime(env: ExampleEnv): Runtime {
  const cached = runtimes.get(env);
  if (cached) return cached;
  let policy: DataRetentionPolicy;
  try {
    policy = policyFromEnv(env);
  } catch (error) {
    if (isPersistenceError(error)) throw configError(error.message);
    throw error;
  }
  const secret = env.AUTH_SECRET;
  if (typeof secret !== "string" || secret.length === 0) {
    throw configError("AUTH_SECRET is not set: set it with `wrangler secret put AUTH_SECRET` (npm start passes a dev value)");
  }
  if (new TextEncoder().encode(secret).byteLength < MIN_AUTH_SECRET_BYTES) {
    throw configError(`AUTH_SECRET is shorter than ${MIN_AUTH_SECRET_BYTES} bytes`);
  }
  const integration = new DataPersistenceIntegration(env, policy);
  const built: Runtime = {
    policy,
    service: integration.service,
    integration,
    authKey: importAuthKey(secret),
    retentionStorageCalls: retentionStorageCalls(env.RETENTION_STORAGE_CALLS),
  };
  runtimes.set(env, built);
  return built;
}
