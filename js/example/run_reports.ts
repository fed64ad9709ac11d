// What the cron's last retention, verification and backup runs did, for operators (GET /ops/runs,
// the dashboard, /metrics): one small JSON value per job under an example-owned KV key
// (docs/FORMAT.md, "The example Worker's run reports"). A job's report is written when the job
// ran, not when it was skipped (the log says why), so it keeps saying what the last real run did.
// Each write is 1 KV put, counted in OWN_RETENTION_CALLS; the cron writes a key at most once per
// invocation, far under KV's 1 write per second per key. KV is eventually consistent: another
// location may read the previous report for up to ~60 s.
import type { BackupStart } from "./backup.js";
import type { RetentionOutcome } from "./retention.js";
import type { VerificationOutcome } from "./verification.js";

/** The jobs that leave a report, each under its own key. */
export const RUN_REPORT_JOBS = ["retention", "verification", "backup"] as const;
export type RunReportJob = (typeof RUN_REPORT_JOBS)[number];

/** Problems a verification report keeps (its `problemsFound` counts them all; the log has up to 100). */
export const MAX_REPORTED_PROBLEMS = 10;

/** The outcome each job's report holds: only the events of a run that did something. */
export interface RunOutcomes {
  retention: Extract<RetentionOutcome, { event: "retention_run" }>;
  verification: Extract<VerificationOutcome, { event: "verification_run" }>;
  backup: Extract<BackupStart, { event: "backup_started" }>;
}

/** One stored report: when the run ended (epoch ms) and what it did, as logged. */
export interface RunReport<Job extends RunReportJob = RunReportJob> {
  at: number;
  outcome: RunOutcomes[Job];
}

export type RunReports = { [Job in RunReportJob]: RunReport<Job> | null };

/** The KV key of a job's report. */
export function runReportKey(job: RunReportJob): string {
  return `example:last_run:${job}`;
}

/** The report as stored: a verification report keeps its first MAX_REPORTED_PROBLEMS problems. */
function storedOutcome<Job extends RunReportJob>(job: Job, outcome: RunOutcomes[Job]): RunOutcomes[Job] {
  if (job !== "verification") return outcome;
  const verification = outcome as RunOutcomes["verification"];
  return { ...verification, problems: verification.problems.slice(0, MAX_REPORTED_PROBLEMS) } as RunOutcomes[Job];
}

/**
 * Records what a job's run did (1 KV put). A failed write is logged and swallowed: the report is
 * for people, and the jobs after it must still run.
 */
export async function recordRun<Job extends RunReportJob>(kv: KVNamespace, job: Job, outcome: RunOutcomes[Job], at = Date.now()): Promise<void> {
  const report: RunReport<Job> = { at, outcome: storedOutcome(job, outcome) };
  try {
    await kv.put(runReportKey(job), JSON.stringify(report));
  } catch (error) {
    console.error(JSON.stringify({ event: "run_report_failed", job, message: String((error as Error)?.message ?? error).slice(0, 300) }));
  }
}

/** Parses a stored report; anything unreadable counts as no report (it is rewritten on the next run). */
function parseReport(text: string | null | undefined): RunReport | null {
  if (typeof text !== "string") return null;
  try {
    const value = JSON.parse(text) as Partial<RunReport>;
    return typeof value.at === "number" && typeof value.outcome === "object" && value.outcome !== null ? (value as RunReport) : null;
  } catch {
    return null;
  }
}

/**
 * Every job's report, and the values of `extraKeys`, in 1 KV get (KV reads up to 100 keys in
 * one operation).
 */
export async function readRunReports(kv: KVNamespace, extraKeys: string[] = []): Promise<{ reports: RunReports; extra: Map<string, string | null> }> {
  const values = await kv.get([...RUN_REPORT_JOBS.map(runReportKey), ...extraKeys], "text");
  const report = <Job extends RunReportJob>(job: Job) => parseReport(values.get(runReportKey(job))) as RunReport<Job> | null;
  const reports: RunReports = { retention: report("retention"), verification: report("verification"), backup: report("backup") };
  return { reports, extra: new Map(extraKeys.map((key) => [key, values.get(key) ?? null])) };
}
