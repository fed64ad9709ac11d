// The operators' dashboard of the example Worker inside workerd: the static page and its headers,
// the /ops/* JSON (service tokens only) against the library's own answers, the per-day walk under
// a tiny budget, and the run reports the cron handler leaves (and /metrics exposes).
import { env } from "cloudflare:workers";
import { createScheduledController } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { DataPersistenceService } from "supportbot-persistence";
import worker from "../../js/example/worker.js";
import { archivesPerDay, utcDate } from "../../js/example/archives_per_day.js";
import { importAuthKey, signToken } from "../../js/example/auth.js";
import type { ExampleEnv } from "../../js/example/config.js";
import { DASHBOARD_CSP } from "../../js/example/dashboard.js";
import { LAST_RUN_KEY } from "../../js/example/retention.js";
import { MAX_REPORTED_PROBLEMS, readRunReports, recordRun, runReportKey, RUN_REPORT_JOBS } from "../../js/example/run_reports.js";

const SECRET = "test-auth-secret-0123456789abcdef-0123456789";
const testEnv: ExampleEnv = { ...env, AUTH_SECRET: SECRET };
const key = await importAuthKey(SECRET);
const operator = await signToken(key, "ops", 3600, Date.now(), "service");
const user = await signToken(key, "alice");
const DAY_MS = 86_400_000;

async function get(path: string, token?: string): Promise<Response> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  return worker.fetch(new Request(`http://example.com${path}`, { headers }), testEnv);
}

async function archiveAt(service: DataPersistenceService, sessionId: string, at: number): Promise<void> {
  await service.archiveConversation(
    { sessionId, messages: [{ id: "m1", sessionId, role: "user", content: "hello", timestamp: at }], summary: "hi" },
    { id: sessionId, userId: "dash-user", status: "closed", createdAt: at, lastActivity: at },
  );
}

interface PerDay {
  days: { date: string; archives: number }[];
  complete: boolean;
  scannedEntries: number;
  listCalls: number;
}

describe("GET /dashboard", () => {
  it("serves the page, its stylesheet and script without a token, under a strict Content-Security-Policy", async () => {
    const expected: [string, string, RegExp][] = [
      ["/dashboard", "text/html; charset=utf-8", /<label for="token">Service token<\/label>/],
      ["/dashboard/app.css", "text/css; charset=utf-8", /\.table-scroll/],
      ["/dashboard/app.js", "text/javascript; charset=utf-8", /sessionStorage/],
    ];
    for (const [path, contentType, body] of expected) {
      const response = await get(path);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type")).toBe(contentType);
      expect(response.headers.get("content-security-policy")).toBe(DASHBOARD_CSP);
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("cache-control")).toBe("no-cache");
      const text = await response.text();
      expect(text).toMatch(body);
      // Works offline: nothing from another origin.
      expect(text).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
    expect(DASHBOARD_CSP).toContain("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:");
    const page = await (await get("/dashboard")).text();
    // No inline script or style for the CSP to refuse.
    expect(page).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(page).not.toMatch(/<style|\sstyle=/);
    expect((await get("/dashboard/other.js")).status).toBe(404);
    const post = await worker.fetch(new Request("http://example.com/dashboard", { method: "POST" }), testEnv);
    expect(post.status).toBe(405);
  });
});

describe("GET /ops/*", () => {
  it("needs a service token: 401 without or with a bad one, 403 for a user's", async () => {
    const forged = await signToken(await importAuthKey("another-secret-of-sufficient-length-000"), "ops", 3600, Date.now(), "service");
    for (const path of ["/ops/archives-per-day", "/ops/backups", "/ops/runs"]) {
      expect((await get(path)).status, path).toBe(401);
      expect((await get(path, forged)).status, path).toBe(401);
      const refused = await get(path, user);
      expect(refused.status, path).toBe(403);
      expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "FORBIDDEN", message: expect.stringContaining("service token") });
      expect((await get(path, operator)).status, path).toBe(200);
    }
    expect((await get("/ops/archives-per-day?days=0", operator)).status).toBe(400);
    expect((await get("/ops/archives-per-day?days=91", operator)).status).toBe(400);
  });

  it("counts today's archives from the global index, as the library lists them", async () => {
    const service = new DataPersistenceService(env);
    const now = Date.now();
    await archiveAt(service, "dash-today-1", now);
    await archiveAt(service, "dash-today-2", now);
    const response = await get("/ops/archives-per-day?days=30", operator);
    expect(response.status).toBe(200);
    const perDay = (await response.json()) as PerDay;
    expect(perDay.complete).toBe(true);
    expect(perDay.listCalls).toBe(1);
    expect(perDay.days).toHaveLength(30);
    expect(perDay.days.at(-1)?.date).toBe(utcDate(Date.now()));
    expect(perDay.days[0]?.date).toBe(utcDate(Date.now() - 29 * DAY_MS));

    // The library's own answer: every listed archive of the window, by its UTC day.
    const expected = new Map<string, number>();
    const windowStart = Date.parse(`${perDay.days[0]!.date}T00:00:00Z`);
    for (let cursor: string | undefined, done = false; !done; ) {
      const page = await service.listArchivedConversations(undefined, 1000, cursor);
      for (const entry of page) if (entry.archivedAt >= windowStart) expected.set(utcDate(entry.archivedAt), (expected.get(utcDate(entry.archivedAt)) ?? 0) + 1);
      done = page.listComplete;
      cursor = page.cursor;
    }
    for (const day of perDay.days) expect(day.archives, day.date).toBe(expected.get(day.date) ?? 0);
    expect(perDay.days.at(-1)!.archives).toBeGreaterThanOrEqual(2);
    expect(perDay.days.reduce((sum, day) => sum + day.archives, 0)).toBe(perDay.scannedEntries);
  });

  it("buckets by UTC day and stops at the first archive older than the window", async () => {
    // A lister with archives on three days, 1 hour before midnight and after it, and 40 days ago.
    const now = Date.parse("2026-03-10T12:00:00Z");
    const times = ["2026-03-10T00:30:00Z", "2026-03-09T23:30:00Z", "2026-03-09T01:00:00Z", "2026-02-09T00:00:00Z", "2026-02-08T23:59:59Z", "2026-01-01T00:00:00Z"].map(Date.parse);
    let calls = 0;
    const lister = {
      async listArchivedConversations(_userId?: string, limit = 20, cursor?: string) {
        calls++;
        const from = Number(cursor ?? 0);
        const entries = times.slice(from, from + limit).map((archivedAt, i) => ({ sessionId: `s${from + i}`, archivedAt, key: `k${from + i}` }));
        const next = from + limit;
        return Object.assign(entries, next < times.length ? { cursor: String(next), listComplete: false } : { listComplete: true });
      },
    };
    const perDay = await archivesPerDay(lister as never, { days: 30, now, pageSize: 2 });
    const withData = perDay.days.filter((day) => day.archives > 0);
    expect(withData).toEqual([
      { date: "2026-02-09", archives: 1 },
      { date: "2026-03-09", archives: 2 },
      { date: "2026-03-10", archives: 1 },
    ]);
    // Read up to 2026-02-08T23:59:59Z, the first entry before 2026-02-09 (the window's first day), and no further.
    expect(perDay).toMatchObject({ complete: true, scannedEntries: 5, listCalls: 3 });
    expect(calls).toBe(3);
  });

  it("says when its page budget ran out before the window's first day", async () => {
    const service = new DataPersistenceService(env);
    const now = Date.now();
    for (let i = 0; i < 5; i++) await archiveAt(service, `dash-budget-${i}`, now - i * 1000);
    const tiny = await archivesPerDay(service, { days: 30, now, maxPages: 2, pageSize: 2 });
    expect(tiny).toMatchObject({ complete: false, scannedEntries: 4, listCalls: 2 });
    expect(tiny.days.reduce((sum, day) => sum + day.archives, 0)).toBe(4);
    // The same walk with room for every page completes, and counts at least as many.
    const whole = await archivesPerDay(service, { days: 30, now, pageSize: 2, maxPages: 1000 });
    expect(whole.complete).toBe(true);
    expect(whole.listCalls).toBeGreaterThan(2);
    expect(whole.days.reduce((sum, day) => sum + day.archives, 0)).toBeGreaterThanOrEqual(5);
    // One day's window after a day with no archives: an empty, complete answer.
    const none = await archivesPerDay(service, { days: 1, now: now + 10 * DAY_MS });
    expect(none).toMatchObject({ complete: true, days: [{ date: utcDate(now + 10 * DAY_MS), archives: 0 }] });
  });

  it("lists every user's backups with kind and the rotation's reasons, as listBackups does", async () => {
    const service = new DataPersistenceService(env);
    await archiveAt(service, "dash-backup", Date.now());
    await service.createBackup(["dash-backup"]);
    const response = await get("/ops/backups?limit=100", operator);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { backups: unknown[]; listComplete: boolean; cursor: string | null };
    const library = await service.listBackups({ limit: 100 });
    expect(body.backups).toEqual(Array.from(library));
    expect(body.listComplete).toBe(library.listComplete);
    expect(body.backups.length).toBeGreaterThanOrEqual(1);
    expect(body.backups[0]).toMatchObject({ kind: "manual", kept: expect.any(Boolean), reasons: expect.any(Array) });
    expect((await get("/ops/backups?limit=0", operator)).status).toBe(400);
  });
});

describe("the cron's run reports", () => {
  it("records what the retention, verification and backup runs did, for GET /ops/runs and /metrics", async () => {
    await env.CHAT_KV.delete(LAST_RUN_KEY);
    for (const job of RUN_REPORT_JOBS) await env.CHAT_KV.delete(runReportKey(job));
    const empty = (await (await get("/ops/runs", operator)).json()) as Record<string, unknown>;
    expect(empty).toMatchObject({ retention: null, verification: null, backup: null, lastCompleteSweepAt: null });

    const before = Date.now();
    // Far from any interval the other tests start a backup in, so this run starts one.
    const controller = createScheduledController({ cron: "0 */6 * * *", scheduledTime: Date.now() + 1000 * DAY_MS });
    // Room for verification after a sweep of everything the other tests stored.
    const roomy: ExampleEnv = { ...testEnv, RETENTION_STORAGE_CALLS: "200" };
    await worker.scheduled(controller, roomy);
    const runs = (await (await get("/ops/runs", operator)).json()) as {
      retention: { at: number; outcome: { event: string; complete: boolean; deleted: Record<string, number>; storageCalls: number } } | null;
      verification: { at: number; outcome: { event: string; objectsChecked: number } } | null;
      backup: { at: number; outcome: { event: string; instanceId: string } } | null;
      lastCompleteSweepAt: number | null;
      newestBackup: { backupId: string } | null;
    };
    expect(runs.retention?.outcome).toMatchObject({ event: "retention_run", complete: true });
    expect(runs.retention?.outcome).not.toHaveProperty("keys");
    expect(runs.retention!.at).toBeGreaterThanOrEqual(before);
    expect(runs.lastCompleteSweepAt).toBeGreaterThanOrEqual(before);
    expect(runs.verification?.outcome.event).toBe("verification_run");
    expect(runs.backup?.outcome).toMatchObject({ event: "backup_started", instanceId: expect.stringMatching(/^backup-\d+$/) });
    const [newest] = await new DataPersistenceService(env).listBackups({ limit: 1 });
    expect(runs.newestBackup?.backupId).toBe(newest?.backupId);

    // A skipped sweep leaves the last run's report.
    await worker.scheduled(controller, roomy);
    const again = (await (await get("/ops/runs", operator)).json()) as typeof runs;
    expect(again.retention).toEqual(runs.retention);

    // /metrics exposes what that run deleted, by reason.
    const text = await (await get("/metrics?format=prometheus", operator)).text();
    const family = (parsePrometheusTextFormat(text) as { name: string; type: string; metrics: { value: string; labels: Record<string, string> }[] }[]).find(
      (candidate) => candidate.name === "supportbot_retention_deleted",
    );
    expect(family?.type).toBe("GAUGE");
    const byReason = Object.fromEntries(family!.metrics.map((metric) => [metric.labels.reason, Number(metric.value)]));
    expect(byReason).toEqual({
      expired_cache_entry: runs.retention!.outcome.deleted.expiredCacheEntry,
      archive_past_retention: runs.retention!.outcome.deleted.archivePastRetention,
      backup_past_retention: runs.retention!.outcome.deleted.backupPastRetention,
      orphan_backup_data: runs.retention!.outcome.deleted.orphanBackupData,
      dangling_index_entry: runs.retention!.outcome.deleted.danglingIndexEntry,
    });
  });

  it("keeps a verification report small, and reads every report in one KV get", async () => {
    const problems = Array.from({ length: 40 }, (_, i) => ({ key: `conversations/x/${i}`, problem: "missing" as const, detail: "gone", repaired: false }));
    const outcome = {
      event: "verification_run" as const,
      cron: "test",
      sample: "1/7",
      slot: 0,
      objectsChecked: 40,
      bytesChecked: 0,
      entriesChecked: 0,
      backupsChecked: 0,
      notDecrypted: 0,
      problems,
      problemsFound: 40,
      repaired: 0,
      complete: true,
      stoppedBy: null,
      resumed: false,
      storageCalls: 12,
    };
    await recordRun(env.CHAT_KV, "verification", outcome, 1234);
    let gets = 0;
    const counting = new Proxy(env.CHAT_KV, {
      get(target, property) {
        if (property === "get") gets++;
        const value = Reflect.get(target, property) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { reports, extra } = await readRunReports(counting, [LAST_RUN_KEY]);
    expect(gets).toBe(1);
    expect(reports.verification).toMatchObject({ at: 1234, outcome: { problemsFound: 40 } });
    expect(reports.verification!.outcome.problems).toHaveLength(MAX_REPORTED_PROBLEMS);
    expect(extra.has(LAST_RUN_KEY)).toBe(true);
    // An unreadable value is no report (the next run rewrites it).
    await env.CHAT_KV.put(runReportKey("backup"), "{not json");
    expect((await readRunReports(env.CHAT_KV)).reports.backup).toBeNull();
  });
});
