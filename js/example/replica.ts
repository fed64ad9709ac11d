// The cron's replica sync: when ARCHIVE_R2_REPLICA is bound, settles the replica queue (copies
// that failed, committed backups) with the storage calls the other maintenance left.
import type { ReplicaSyncReport } from "supportbot-persistence";
import { RETENTION_TIME_BUDGET_MS, runtime, type ExampleEnv } from "./config.js";

/** The service's MIN_REPLICA_SYNC_CALLS: with fewer calls left, the sync waits for the next run. */
export const MIN_REPLICA_SYNC_CALLS = 6;

/** What one cron invocation did about the replica, as logged. */
export type ReplicaSyncOutcome =
  | { event: "replica_sync_skipped"; cron: string; reason: "no replica" | "no calls left"; callsLeft: number }
  | ({ event: "replica_sync_run"; cron: string } & ReplicaSyncReport);

/** Runs syncReplica within `callsLeft` storage calls, logs the outcome as one JSON line and returns it. */
export async function runScheduledReplicaSync(cron: string, env: ExampleEnv, callsLeft: number): Promise<ReplicaSyncOutcome> {
  let outcome: ReplicaSyncOutcome;
  if (!env.ARCHIVE_R2_REPLICA) {
    outcome = { event: "replica_sync_skipped", cron, reason: "no replica", callsLeft };
  } else if (callsLeft < MIN_REPLICA_SYNC_CALLS) {
    outcome = { event: "replica_sync_skipped", cron, reason: "no calls left", callsLeft };
  } else {
    const report = await runtime(env).retention.service.syncReplica({ maxStorageCalls: callsLeft, timeBudgetMs: RETENTION_TIME_BUDGET_MS });
    outcome = { event: "replica_sync_run", cron, ...report };
  }
  console.log(JSON.stringify(outcome));
  return outcome;
}
