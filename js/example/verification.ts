// The cron's verification: after the retention sweep, key rotation and erasures, with the
// storage calls they left, verifyStorage checks (and repairs) the VERIFY_SAMPLE part of the store
// (default "1/7": seven complete passes check everything), resuming where the last run stopped.
import type { VerificationReport } from "supportbot-persistence";
import { RETENTION_TIME_BUDGET_MS, runtime, type ExampleEnv } from "./config.js";
import { recordRun } from "./run_reports.js";

/** The service's MIN_VERIFY_CALLS: with fewer calls left, verification waits for the next run. */
export const MIN_VERIFY_CALLS = 12;
/** The sample when VERIFY_SAMPLE is not set. */
export const DEFAULT_VERIFY_SAMPLE = "1/7";

/** What the cron's verification did, as logged (the report's problems trimmed to their count). */
export type VerificationOutcome =
  | { event: "verification_skipped"; cron: string; reason: "no calls left"; callsLeft: number }
  | ({ event: "verification_run"; cron: string } & VerificationReport);

/** Verifies with `callsLeft` storage calls, repairing what it can; logs, records (a run) and returns what it did. */
export async function runScheduledVerification(cron: string, env: ExampleEnv, callsLeft: number): Promise<VerificationOutcome> {
  let outcome: VerificationOutcome;
  if (callsLeft < MIN_VERIFY_CALLS) {
    outcome = { event: "verification_skipped", cron, reason: "no calls left", callsLeft };
  } else {
    const report = await runtime(env).retention.service.verifyStorage({
      sample: env.VERIFY_SAMPLE ?? DEFAULT_VERIFY_SAMPLE,
      repair: true,
      maxStorageCalls: callsLeft,
      timeBudgetMs: RETENTION_TIME_BUDGET_MS,
    });
    outcome = { event: "verification_run", cron, ...report };
  }
  console.log(JSON.stringify(outcome));
  if (outcome.event === "verification_run") await recordRun(env.CHAT_KV, "verification", outcome);
  return outcome;
}
