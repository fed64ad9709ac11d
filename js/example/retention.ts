// The cron handler: one retention sweep per cleanupInterval, within a subrequest budget
// (RETENTION_STORAGE_CALLS, retries included: see retentionCallBudget in config.ts).
import type { RetentionReport } from "supportbot-persistence";
import { RETENTION_TIME_BUDGET_MS, runtime, type ExampleEnv } from "./config.js";
import { HttpError } from "./http.js";
import { recordRun } from "./run_reports.js";

/** KV key holding the epoch ms of the last completed sweep (its get and put are in OWN_RETENTION_CALLS). */
export const LAST_RUN_KEY = "retention:last_run";

/** What one cron invocation did, as logged. */
export type RetentionOutcome =
  | { event: "retention_skipped"; cron: string; lastRunAgeMs: number; cleanupIntervalMs: number }
  | ({ event: "retention_run"; cron: string; durationMs: number } & Omit<RetentionReport, "keys">);

/**
 * Runs enforceRetentionPolicy unless the last completed sweep is younger than cleanupInterval,
 * logs the outcome as one JSON line, records a run's report (run_reports.ts) and returns it. A
 * sweep that stopped at its budget does not set LAST_RUN_KEY, so the next invocation resumes it.
 * A bad configuration throws.
 */
export async function runScheduledRetention(cron: string, env: ExampleEnv, now = Date.now()): Promise<RetentionOutcome> {
  let rt;
  try {
    rt = runtime(env);
  } catch (error) {
    if (error instanceof HttpError) throw new Error(`${error.code}: ${error.message}`);
    throw error;
  }
  const lastRun = Number((await env.CHAT_KV.get(LAST_RUN_KEY)) ?? Number.NaN);
  let outcome: RetentionOutcome;
  if (Number.isFinite(lastRun) && now - lastRun < rt.policy.cleanupInterval) {
    outcome = { event: "retention_skipped", cron, lastRunAgeMs: now - lastRun, cleanupIntervalMs: rt.policy.cleanupInterval };
  } else {
    const { keys: _keys, ...report } = await rt.retention.service.enforceRetentionPolicy({
      maxStorageCalls: rt.retention.maxStorageCalls,
      timeBudgetMs: RETENTION_TIME_BUDGET_MS,
    });
    if (report.complete) await env.CHAT_KV.put(LAST_RUN_KEY, String(now));
    outcome = { event: "retention_run", cron, durationMs: Date.now() - now, ...report };
  }
  console.log(JSON.stringify(outcome));
  if (outcome.event === "retention_run") await recordRun(env.CHAT_KV, "retention", outcome);
  return outcome;
}
