// The replica bucket (ARCHIVE_R2_REPLICA) inside workerd, through the built package, with a
// real second local R2 bucket: writes land in both, a primary object deleted by hand is served
// from the replica, and a copy that was queued is completed by syncReplica.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, REPLICATE_STEP_CALLS, replicateCommitted, type ConversationMemory, type SessionState } from "supportbot-persistence";
import { retentionCallBudget, type ExampleEnv } from "../../js/example/config.js";
import { runScheduledReplicaSync } from "../../js/example/replica.js";

const T0 = 1_736_157_600_000;

/** The service over the local KV and R2, with the test's second bucket as its replica. */
function replicated(): DataPersistenceService {
  return new DataPersistenceService({ CHAT_KV: env.CHAT_KV, ARCHIVE_R2: env.ARCHIVE_R2, ARCHIVE_R2_REPLICA: env.ARCHIVE_R2_REPLICA_TEST });
}

function conversation(sessionId: string): [ConversationMemory, SessionState] {
  return [
    {
      sessionId,
      messages: [
        { id: "m1", sessionId, role: "user", content: "Where is my parcel?", timestamp: T0 },
        { id: "m2", sessionId, role: "assistant", content: "It ships tomorrow.", timestamp: T0 + 1_000 },
      ],
      summary: "Parcel question",
      context: {},
    },
    { id: sessionId, userId: "replica-user", status: "closed", createdAt: T0, lastActivity: T0 + 1_000 },
  ];
}

async function bytes(object: R2ObjectBody | null): Promise<Uint8Array | null> {
  return object === null ? null : new Uint8Array(await object.arrayBuffer());
}

describe("replica bucket", () => {
  it("copies an archive as stored and serves it from the replica once the primary's is gone", async () => {
    const service = replicated();
    const [memory, session] = conversation("replica-read");
    const key = await service.archiveConversation(memory, session);
    const primary = await bytes(await env.ARCHIVE_R2.get(key));
    const copy = await env.ARCHIVE_R2_REPLICA_TEST.get(key);
    expect(await bytes(copy)).toEqual(primary);
    expect(copy?.customMetadata?.sha256).toBe((await env.ARCHIVE_R2.head(key))?.customMetadata?.sha256);

    const health = await service.healthCheck();
    expect(health.status).toBe("healthy");
    expect(health.replica).toEqual({ storage: "healthy", pending: 0, pendingComplete: true, oldestPendingMs: null });
    expect(health.details.breakers.ARCHIVE_R2_REPLICA).toBe("closed");

    await env.ARCHIVE_R2.delete(key);
    const viaSession = await service.retrieveArchivedConversation("replica-read");
    expect(viaSession?.messages).toEqual(memory.messages);
    const viaKey = await service.retrieveArchive(key);
    expect(viaKey?.messages).toEqual(memory.messages);
    // A read never writes back: repair is verification's job.
    expect(await env.ARCHIVE_R2.head(key)).toBeNull();

    // The next verification finds it missing (its KV entries point at it) and writes the
    // replica's copy back, byte for byte; the one after finds nothing.
    let report;
    do report = await service.verifyStorage({ repair: true });
    while (!report.complete);
    const repaired = report.problems.find((problem) => problem.key === key);
    expect(repaired).toMatchObject({ problem: "missing", repaired: true, repairedFrom: "replica" });
    expect(await bytes(await env.ARCHIVE_R2.get(key))).toEqual(primary);
    do report = await service.verifyStorage();
    while (!report.complete);
    expect(report.problems.filter((problem) => problem.key === key)).toEqual([]);
  });

  it("completes a queued copy with syncReplica", async () => {
    const service = replicated();
    const [memory, session] = conversation("replica-sync");
    const key = await service.archiveConversation(memory, session);
    // As if the copy had failed: the replica lacks it, the queue names it.
    await env.ARCHIVE_R2_REPLICA_TEST.delete(key);
    await env.CHAT_KV.put(`replica_pending:${key}`, "", { metadata: { queuedAt: Date.now() } });
    expect((await service.healthCheck()).replica?.pending).toBe(1);

    const report = await service.syncReplica({ maxStorageCalls: 40 });
    expect(report).toMatchObject({ entries: 1, copied: 1, deleted: 0, failed: 0, complete: true });
    expect(await bytes(await env.ARCHIVE_R2_REPLICA_TEST.get(key))).toEqual(await bytes(await env.ARCHIVE_R2.get(key)));
    expect((await service.healthCheck()).replica?.pending).toBe(0);
  });

  it("works as before without the binding", async () => {
    const service = new DataPersistenceService({ CHAT_KV: env.CHAT_KV, ARCHIVE_R2: env.ARCHIVE_R2 });
    const health = await service.healthCheck();
    expect(health.replica).toBeUndefined();
    await expect(service.syncReplica()).rejects.toMatchObject({ code: "INVALID_CONFIG" });
  });

  it("is synced by the example Worker's cron with the calls left, and only when bound", async () => {
    const AUTH_SECRET = "replica-test-secret-of-at-least-32-bytes";
    const plainEnv: ExampleEnv = { ...env, AUTH_SECRET };
    const replicaEnv: ExampleEnv = { ...plainEnv, ARCHIVE_R2_REPLICA: env.ARCHIVE_R2_REPLICA_TEST };
    const [memory, session] = conversation("replica-cron");
    const key = await replicated().archiveConversation(memory, session);
    await env.ARCHIVE_R2_REPLICA_TEST.delete(key);
    await env.CHAT_KV.put(`replica_pending:${key}`, "", { metadata: { queuedAt: Date.now() } });

    expect(await runScheduledReplicaSync("*/5 * * * *", plainEnv, 40)).toMatchObject({ event: "replica_sync_skipped", reason: "no replica" });
    expect(await runScheduledReplicaSync("*/5 * * * *", replicaEnv, 5)).toMatchObject({ event: "replica_sync_skipped", reason: "no calls left" });
    const outcome = await runScheduledReplicaSync("*/5 * * * *", replicaEnv, 40);
    expect(outcome).toMatchObject({ event: "replica_sync_run", copied: 1, complete: true });
    expect(await env.ARCHIVE_R2_REPLICA_TEST.head(key)).not.toBeNull();
  });

  it("raises the cron's smallest retention budget with a replica (its deletions are budgeted too)", () => {
    expect(retentionCallBudget("15", 2)).toBe(5);
    expect(retentionCallBudget("23", 2, true)).toBe(9);
    expect(() => retentionCallBudget("22", 2, true)).toThrow(/RETENTION_STORAGE_CALLS/);
  });

  it("copies a committed backup right after its commit, in bounded steps (as the BackupWorkflow does)", async () => {
    const service = replicated();
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [memory, session] = conversation(`replica-backup-${i}`);
      await service.archiveConversation(memory, session);
      sessions.push(`replica-backup-${i}`);
    }
    const backupId = await service.createBackup(sessions);
    const names: string[] = [];
    const calls: number[] = [];
    const step = {
      do: async <T>(name: string, work: () => Promise<T>): Promise<T> => {
        names.push(name);
        const report = (await work()) as { storageCalls?: number };
        calls.push(report.storageCalls ?? 0);
        return report as T;
      },
    };
    expect(await replicateCommitted(service, step as never, 1)).toBe(true);
    expect(names[0]).toBe("replicate 0");
    expect(Math.max(...calls)).toBeLessThanOrEqual(REPLICATE_STEP_CALLS);
    const manifest = `backups/${backupId}/manifest.json`;
    expect(await bytes(await env.ARCHIVE_R2_REPLICA_TEST.get(manifest))).toEqual(await bytes(await env.ARCHIVE_R2.get(manifest)));
    // The primary's manifest lost: the restore reads the replica's.
    await env.ARCHIVE_R2.delete(manifest);
    expect([...(await service.restoreFromBackup(backupId))].sort()).toEqual(sessions);
  });
});
