// The example Worker: a small JSON API over the library, served by `npm start` (see
// the README walkthrough). Imported by package name, exactly as a user's Worker would (resolves to
// the built dist/). Routes live in routes.ts, token checks in auth.ts.
import { runtime, type ExampleEnv } from "./config.js";
import { errorResponse, toHttpError } from "./http.js";
import { startScheduledBackup } from "./backup.js";
import { runScheduledErasures } from "./erasure.js";
import { runScheduledKeyRotation } from "./key_rotation.js";
import { runScheduledReplicaSync } from "./replica.js";
import { runScheduledRetention } from "./retention.js";
import { runScheduledVerification } from "./verification.js";
import { route } from "./routes.js";

export { BackupWorkflow, RestoreWorkflow, SessionMemoryDO } from "supportbot-persistence";

export default {
  async fetch(request: Request, env: ExampleEnv): Promise<Response> {
    try {
      return await route(request, env, runtime(env));
    } catch (error) {
      return errorResponse(toHttpError(error));
    }
  },

  async scheduled(controller: ScheduledController, env: ExampleEnv): Promise<void> {
    // Independent: a failed sweep does not stop the backup, nor the other way round. The key
    // rotation follows the sweep, then unfinished erasures, then the replica sync, then
    // verification, each with the storage calls left.
    const maintenance = async () => {
      const retention = await runScheduledRetention(controller.cron, env);
      let callsLeft = runtime(env).retention.maxStorageCalls - (retention.event === "retention_run" ? retention.storageCalls : 0);
      const rotation = await runScheduledKeyRotation(controller.cron, env, callsLeft);
      callsLeft -= rotation.event === "key_rotation_run" ? rotation.storageCalls : 0;
      const erasures = await runScheduledErasures(controller.cron, env, callsLeft);
      // Their tombstone listing (1 call per 1000) is in no receipt.
      if (erasures.event === "erasures_run") callsLeft -= 1 + erasures.receipts.reduce((calls, receipt) => calls + receipt.storageCalls, 0);
      // Copies that failed and committed backups, to the replica bucket when one is bound.
      const sync = await runScheduledReplicaSync(controller.cron, env, callsLeft);
      if (sync.event === "replica_sync_run") callsLeft -= sync.storageCalls;
      await runScheduledVerification(controller.cron, env, callsLeft);
    };
    const [retention, backup] = await Promise.allSettled([
      maintenance(),
      startScheduledBackup(env, controller.scheduledTime),
    ]);
    for (const outcome of [retention, backup]) if (outcome.status === "rejected") throw outcome.reason;
  },
} satisfies ExportedHandler<ExampleEnv>;
