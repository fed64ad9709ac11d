// The JSON the operators' dashboard reads besides /metrics and /health (README "Operating it"):
// archives per day, every user's backups, and what the cron's last runs did. Service tokens only
// (routes.ts wraps each in serviceOnly); each handler's storage calls are stated on it.
import { archivesPerDay, MAX_WINDOW_DAYS } from "./archives_per_day.js";
import { json } from "./http.js";
import { LAST_RUN_KEY } from "./retention.js";
import type { RouteContext } from "./routes.js";
import { readRunReports } from "./run_reports.js";
import * as check from "./validate.js";

/** The window of GET /ops/archives-per-day when `days` is not given. */
export const DEFAULT_WINDOW_DAYS = 30;

/**
 * GET /ops/archives-per-day?days=30 (1-90): per UTC day, oldest first, from the global index.
 * At most ARCHIVES_PER_DAY_MAX_PAGES pages (10 KV lists of 1000 entries, each with its erasure
 * check); `complete: false` when they ran out first.
 */
export async function getArchivesPerDay({ url, rt }: RouteContext): Promise<Response> {
  const days = check.intParam("days", url.searchParams.get("days"), 1, MAX_WINDOW_DAYS, DEFAULT_WINDOW_DAYS);
  return json(await archivesPerDay(rt.ops.service, { days, now: Date.now() }));
}

/**
 * GET /ops/backups?limit=20&cursor=: every user's backups, newest first, each with its kind and
 * whether (and why: the GFS rules that hold it) the rotation keeps it. 1 KV list.
 */
export async function getBackups({ url, rt }: RouteContext): Promise<Response> {
  const limit = check.intParam("limit", url.searchParams.get("limit"), 1, 100, 20);
  const cursorParam = url.searchParams.get("cursor");
  const cursor = cursorParam === null ? undefined : check.text("cursor", cursorParam, 8192);
  const page = await rt.service.listBackups({ limit, ...(cursor !== undefined && { cursor }) });
  return json({ backups: Array.from(page), cursor: page.cursor ?? null, listComplete: page.listComplete });
}

/**
 * GET /ops/runs: the reports of the cron's last retention, verification and backup runs (null
 * before the first), when the last complete sweep ended, and the newest backup (what the last
 * backup run wrote once its Workflow committed). 1 KV get (of 4 keys) and 1 KV list.
 */
export async function getRuns({ env, rt }: RouteContext): Promise<Response> {
  const [{ reports, extra }, newest] = await Promise.all([readRunReports(env.CHAT_KV, [LAST_RUN_KEY]), rt.service.listBackups({ limit: 1 })]);
  const lastComplete = Number(extra.get(LAST_RUN_KEY) ?? Number.NaN);
  return json({
    ...reports,
    lastCompleteSweepAt: Number.isFinite(lastComplete) ? lastComplete : null,
    newestBackup: newest[0] ?? null,
  });
}
