// The cron's backup: starts one BackupWorkflow instance per BACKUP_INTERVAL_HOURS (default 24).
// The instance id names the interval, so a second cron run in the same interval starts nothing,
// and an instance of the previous interval that is still running makes this one wait.
import type { BackupRequest } from "supportbot-persistence";
import type { ExampleEnv } from "./config.js";
import { recordRun } from "./run_reports.js";

const HOUR_MS = 3_600_000;
/** Instance states in which a backup is still under way. */
const UNDER_WAY = new Set(["queued", "running", "waiting", "paused", "waitingForPause"]);

/** What the cron's backup did, as logged. */
export type BackupStart =
  | { event: "backup_started"; instanceId: string }
  | { event: "backup_skipped"; instanceId: string; reason: "already started" | "previous still running" };

/** BACKUP_INTERVAL_HOURS as milliseconds; a bad value throws INVALID_CONFIG naming it. */
export function backupIntervalMs(env: ExampleEnv): number {
  const text = env.BACKUP_INTERVAL_HOURS ?? "24";
  const hours = Number(text);
  if (!Number.isFinite(hours) || hours <= 0 || text.trim() === "") {
    throw new Error(`INVALID_CONFIG: BACKUP_INTERVAL_HOURS: ${JSON.stringify(text)} is not a positive number of hours`);
  }
  return hours * HOUR_MS;
}

/** The instance id of the interval holding `now`: `backup-<interval number>`. */
export function backupInstanceId(now: number, intervalMs: number): string {
  return `backup-${Math.floor(now / intervalMs)}`;
}

/**
 * Starts this interval's backup unless it was started already or the previous one still runs;
 * logs the outcome and records a start's report (run_reports.ts: what the instance then wrote is
 * the newest backup of listBackups, once it committed).
 */
export async function startScheduledBackup(env: ExampleEnv, now = Date.now()): Promise<BackupStart> {
  const intervalMs = backupIntervalMs(env);
  const instanceId = backupInstanceId(now, intervalMs);
  const previous = await env.BACKUP_WORKFLOW.get(backupInstanceId(now - intervalMs, intervalMs)).catch(() => null);
  const previousStatus = previous ? (await previous.status()).status : null;
  let outcome: BackupStart;
  if (previousStatus !== null && UNDER_WAY.has(previousStatus)) {
    outcome = { event: "backup_skipped", instanceId, reason: "previous still running" };
  } else {
    try {
      const params: BackupRequest = {};
      await env.BACKUP_WORKFLOW.create({ id: instanceId, params });
      outcome = { event: "backup_started", instanceId };
    } catch (error) {
      // The platform's words for an id that exists (in any state): this interval's backup is done or under way.
      if (!/instance\.already_exists/.test(String(error))) throw error;
      outcome = { event: "backup_skipped", instanceId, reason: "already started" };
    }
  }
  console.log(JSON.stringify(outcome));
  if (outcome.event === "backup_started") await recordRun(env.CHAT_KV, "backup", outcome);
  return outcome;
}
