// BackupWorkflow inside workerd: the real local Workflow engine, R2 and KV of wrangler.toml.
// Each pack is a step the engine persists and retries; the manifest, written by the last step,
// is the commit point.
import { createScheduledController, introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { DataPersistenceService, type ArchivedConversation, type ConversationMemory, type SessionState } from "supportbot-persistence";
import { backupInstanceId } from "../../js/example/backup.js";
import type { ExampleEnv } from "../../js/example/config.js";
import worker from "../../js/example/worker.js";

const service = new DataPersistenceService(env);
const STEP_ARCHIVES = Number(env.BACKUP_STEP_ARCHIVES ?? 40);

function conversation(sessionId: string): { memory: ConversationMemory; session: SessionState } {
  const now = Date.now();
  return {
    memory: {
      sessionId,
      messages: [
        { id: "m1", sessionId, role: "user", content: `my order ${sessionId} never arrived`, timestamp: now - 2000 },
        { id: "m2", sessionId, role: "assistant", content: "A replacement is on its way.", timestamp: now - 1000 },
      ],
      summary: `order ${sessionId}`,
    },
    session: { id: sessionId, status: "closed", createdAt: now - 2000, lastActivity: now - 1000 },
  };
}

/** Archives `ids`, 50 at a time; what retrieving each returns. */
async function archiveAll(ids: string[]): Promise<Map<string, ArchivedConversation>> {
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map((id) => service.archiveConversation(conversation(id).memory, conversation(id).session)));
  }
  const originals = new Map<string, ArchivedConversation>();
  for (let i = 0; i < ids.length; i += 50) {
    const batch = await Promise.all(ids.slice(i, i + 50).map((id) => service.retrieveArchivedConversation(id)));
    batch.forEach((archived, n) => originals.set(ids[i + n]!, archived!));
  }
  return originals;
}

/** Runs one instance to completion; its output and the manifest it committed. */
async function runBackup(id: string, params = {}, modify?: Parameters<Awaited<ReturnType<typeof introspectWorkflowInstance>>["modify"]>[0]) {
  await using instance = await introspectWorkflowInstance(env.BACKUP_WORKFLOW, id);
  if (modify) await instance.modify(modify);
  await env.BACKUP_WORKFLOW.create({ id, params });
  await instance.waitForStatus("complete");
  const output = (await instance.getOutput()) as { backupId: string; packs: number; archives: number; parentBackupId: string | null };
  const manifest = await (await env.ARCHIVE_R2.get(`backups/${output.backupId}/manifest.json`))!.json<{
    kind: string;
    parentBackupId?: string;
    sessionIds: string[];
    packs: { key: string; sha256: string; storedSize: number; sessions: { sessionId: string }[] }[];
  }>();
  return { output, manifest };
}

/** Deletes every archive object and archive KV entry. */
async function loseEverything(): Promise<void> {
  for (const prefix of ["conversations/"]) {
    let listed = await env.ARCHIVE_R2.list({ prefix });
    for (;;) {
      if (listed.objects.length > 0) await env.ARCHIVE_R2.delete(listed.objects.map((o) => o.key));
      if (!listed.truncated) break;
      listed = await env.ARCHIVE_R2.list({ prefix, cursor: listed.cursor });
    }
  }
  for (const prefix of ["archive_meta:", "archive_index:", "user_archives:"]) {
    let page = await env.CHAT_KV.list({ prefix });
    for (;;) {
      await Promise.all(page.keys.map((k) => env.CHAT_KV.delete(k.name)));
      if (page.list_complete) break;
      page = await env.CHAT_KV.list({ prefix, cursor: page.cursor });
    }
  }
}

describe("BackupWorkflow", () => {
  const first = Array.from({ length: 2500 }, (_, i) => `wf-${String(i).padStart(4, "0")}`);
  let full = "";

  it("backs up 2 500 archived sessions a pack per step, and they restore into an emptied store", async () => {
    const originals = await archiveAll(first);
    const { output, manifest } = await runBackup("wf-full");
    full = output.backupId;
    expect(output.archives).toBe(2500);
    expect(manifest.kind).toBe("automated");
    expect(manifest.packs.length).toBe(Math.ceil(2500 / STEP_ARCHIVES));
    expect(manifest.sessionIds.slice().sort()).toEqual(first);
    for (const pack of manifest.packs) {
      expect(pack.sessions.length).toBeLessThanOrEqual(STEP_ARCHIVES);
      const stored = await env.ARCHIVE_R2.head(pack.key);
      expect(stored?.size).toBe(pack.storedSize);
    }
    await loseEverything();
    expect(await service.retrieveArchivedConversation(first[0]!)).toBeNull();
    const restored = await service.restoreFromBackup(full);
    expect(restored.slice().sort()).toEqual(first);
    for (let i = 0; i < first.length; i += 100) {
      const batch = await Promise.all(first.slice(i, i + 100).map((id) => service.retrieveArchivedConversation(id)));
      batch.forEach((archived, n) => expect(archived).toEqual(originals.get(first[i + n]!)));
    }
  }, 300_000);

  it("an incremental backup after 100 more archives holds exactly those 100, and the RestoreWorkflow restores it with its parent", async () => {
    const more = Array.from({ length: 100 }, (_, i) => `wf-more-${String(i).padStart(3, "0")}`);
    const originals = await archiveAll(more);
    const { output, manifest } = await runBackup("wf-incremental");
    expect(output.parentBackupId).toBe(full);
    expect(manifest.parentBackupId).toBe(full);
    expect(manifest.sessionIds.slice().sort()).toEqual(more);

    await loseEverything();
    await using restore = await introspectWorkflowInstance(env.RESTORE_WORKFLOW, "wf-restore");
    await env.RESTORE_WORKFLOW.create({ id: "wf-restore", params: { backupId: output.backupId } });
    await restore.waitForStatus("complete");
    const outcome = (await restore.getOutput()) as { backups: string[]; packs: number; restoredSessions: number };
    expect(outcome.backups).toEqual([full, output.backupId]);
    expect(outcome.restoredSessions).toBe(2600);
    expect(outcome.packs).toBe(Math.ceil(2500 / STEP_ARCHIVES) + manifest.packs.length);
    for (const id of [more[0]!, more[99]!]) expect(await service.retrieveArchivedConversation(id)).toEqual(originals.get(id));
    expect(await service.retrieveArchivedConversation(first[1234]!)).not.toBeNull();
  }, 300_000);

  it("a step that fails once is retried, and the backup is complete", async () => {
    const ids = ["wf-retry-1", "wf-retry-2", "wf-retry-3"];
    await archiveAll(ids);
    const { output, manifest } = await runBackup("wf-retry", { sessionIds: ids }, async (m) => {
      await m.disableRetryDelays();
      await m.mockStepError({ name: "pack 0" }, new Error("transient storage trouble"), 1);
    });
    expect(manifest.sessionIds).toEqual(ids);
    for (const pack of manifest.packs) {
      const bytes = new Uint8Array(await (await env.ARCHIVE_R2.get(pack.key))!.arrayBuffer());
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      expect([...digest].map((b) => b.toString(16).padStart(2, "0")).join("")).toBe(pack.sha256);
    }
    await loseEverything();
    expect((await service.restoreFromBackup(output.backupId)).sort()).toEqual(ids);
  }, 60_000);

  it("an instance terminated mid-way leaves no visible backup, and retention removes its packs a day later", async () => {
    const ids = ["wf-stop-1", "wf-stop-2", "wf-stop-3"];
    await archiveAll(ids);
    await using instance = await introspectWorkflowInstance(env.BACKUP_WORKFLOW, "wf-stopped");
    // The commit fails on every attempt: the instance waits in its retry delays.
    await instance.modify(async (m) => {
      await m.mockStepError({ name: "commit" }, new Error("down"));
    });
    await env.BACKUP_WORKFLOW.create({ id: "wf-stopped", params: { sessionIds: ids } });
    const plan = (await instance.waitForStepResult({ name: "plan" })) as { backupId: string };
    await instance.waitForStepResult({ name: "pack 0" });
    await (await env.BACKUP_WORKFLOW.get("wf-stopped")).terminate();
    await instance.waitForStatus("terminated");
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/pack-0.json`)).not.toBeNull();
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/manifest.json`)).toBeNull();
    await expect(service.restoreFromBackup(plan.backupId)).rejects.toMatchObject({ code: "NOT_FOUND" });
    // Within the grace (a running instance writes packs for as long as it runs) they stay.
    await service.enforceRetentionPolicy();
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/pack-0.json`)).not.toBeNull();
    // A day later (the clock the library reads; R2 keeps the packs' real upload time) they go.
    vi.useFakeTimers({ now: Date.now() + 25 * 3_600_000, toFake: ["Date"] });
    try {
      const report = await service.enforceRetentionPolicy();
      expect(report.keys).toContainEqual(expect.objectContaining({ key: `backups/${plan.backupId}/pack-0.json`, reason: "orphan_backup_data" }));
    } finally {
      vi.useRealTimers();
    }
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/pack-0.json`)).toBeNull();
  }, 60_000);

  it("a backup planned more than a day ago is refused at its first pack, and the instance fails without retrying", async () => {
    const ids = ["wf-stale-1"];
    await archiveAll(ids);
    // The plan step's result, as an instance stalled for a day would replay it.
    const plan = await service.planBackup({ sessionIds: ids }, STEP_ARCHIVES);
    const stale = { ...plan, createdAt: plan.createdAt - 24 * 3_600_000 };
    await using instance = await introspectWorkflowInstance(env.BACKUP_WORKFLOW, "wf-stale");
    await instance.modify(async (m) => {
      await m.mockStepResult({ name: "plan" }, stale);
    });
    await env.BACKUP_WORKFLOW.create({ id: "wf-stale", params: { sessionIds: ids } });
    // Retried, the step would wait out the platform's retry delays (minutes) first.
    await instance.waitForStatus("errored");
    const error = await instance.getError();
    expect(error.message).toContain("INVALID_INPUT");
    expect(error.message).toContain("plan.createdAt");
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/pack-0.json`)).toBeNull();
    expect(await env.ARCHIVE_R2.head(`backups/${plan.backupId}/manifest.json`)).toBeNull();
  }, 60_000);

  it("the cron starts one backup per interval, under an id naming the interval", async () => {
    const scheduledTime = Date.UTC(2026, 7, 1, 6);
    const id = backupInstanceId(scheduledTime, 24 * 3_600_000);
    await using instance = await introspectWorkflowInstance(env.BACKUP_WORKFLOW, id);
    const controller = createScheduledController({ scheduledTime, cron: "0 */6 * * *" });
    const cronEnv: ExampleEnv = { ...env, AUTH_SECRET: "test-auth-secret-0123456789abcdef-0123456789" };
    await worker.scheduled(controller, cronEnv);
    await instance.waitForStatus("complete");
    // A second run in the same interval starts nothing.
    await worker.scheduled(controller, cronEnv);
    expect((await (await env.BACKUP_WORKFLOW.get(id)).status()).status).toBe("complete");
  }, 300_000);
});
