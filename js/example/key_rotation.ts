// The cron's key rotation: after the retention sweep, within the storage calls the sweep left,
// rotateEncryptionKeys rewraps data keys until the newest of PERSISTENCE_ENCRYPTION_KEYS wraps
// them all. Once a complete rotation is recorded, a run costs 2 KV reads until a newer key is
// added, so it runs on every cron invocation.
import type { RotationReport } from "supportbot-persistence";
import { RETENTION_TIME_BUDGET_MS, runtime, type ExampleEnv } from "./config.js";

/** The service's MIN_ROTATION_CALLS: with fewer calls left, the rotation waits for the next run. */
export const MIN_ROTATION_CALLS = 6;

/** What the cron's key rotation did, as logged. */
export type RotationOutcome =
  | { event: "key_rotation_skipped"; cron: string; reason: "encryption off" | "no calls left"; callsLeft: number }
  | ({ event: "key_rotation_run"; cron: string } & RotationReport);

/** Rotates the data keys with `callsLeft` storage calls, when encryption is on; logs and returns what it did. */
export async function runScheduledKeyRotation(cron: string, env: ExampleEnv, callsLeft: number): Promise<RotationOutcome> {
  let outcome: RotationOutcome;
  if (env.PERSISTENCE_ENCRYPTION_KEYS === undefined) {
    outcome = { event: "key_rotation_skipped", cron, reason: "encryption off", callsLeft };
  } else if (callsLeft < MIN_ROTATION_CALLS + (env.ARCHIVE_R2_REPLICA ? 2 : 0)) {
    // (With a replica bucket, a rewrapped key is queued and copied there: 2 calls more.)
    outcome = { event: "key_rotation_skipped", cron, reason: "no calls left", callsLeft };
  } else {
    const report = await runtime(env).retention.service.rotateEncryptionKeys({
      maxStorageCalls: callsLeft,
      timeBudgetMs: RETENTION_TIME_BUDGET_MS,
    });
    outcome = { event: "key_rotation_run", cron, ...report };
  }
  console.log(JSON.stringify(outcome));
  return outcome;
}
