// The backup policy inside workerd (local R2 and KV of wrangler.toml): listBackups pages
// newest first with the rotation's decisions, a dry run deletes nothing and says why each
// backup stays or goes, retention then deletes exactly those, and bad rotation values are named.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, isPersistenceError, policyFromEnv, type BackupSummary } from "supportbot-persistence";

const service = new DataPersistenceService(env);

async function archive(sessionId: string, userId?: string): Promise<void> {
  const now = Date.now();
  await service.archiveConversation(
    {
      sessionId,
      messages: [{ id: "m1", sessionId, role: "user", content: "my parcel is late", timestamp: now - 1000 }],
      summary: "late parcel",
    },
    { id: sessionId, status: "closed", createdAt: now - 1000, lastActivity: now - 1000, ...(userId && { userId }) },
  );
}

/** Every backup, following the cursor at `limit` a page. */
async function listAll(limit: number, userId?: string): Promise<BackupSummary[]> {
  const backups: BackupSummary[] = [];
  let cursor: string | undefined;
  do {
    const page = await service.listBackups({ limit, ...(cursor && { cursor }), ...(userId && { userId }) });
    expect(page.length).toBeLessThanOrEqual(limit);
    backups.push(...page);
    cursor = page.cursor;
    expect(page.listComplete).toBe(cursor === undefined);
  } while (cursor);
  return backups;
}

async function codeOf(action: () => unknown): Promise<string | undefined> {
  try {
    await action();
  } catch (error) {
    expect(isPersistenceError(error)).toBe(true);
    return (error as { code: string }).code;
  }
  return undefined;
}

describe("the backup policy", () => {
  it("lists backups newest first, and a dry run then retention delete only what the rotation does not keep", async () => {
    await archive("policy-a", "policy-user");
    await archive("policy-b");
    // Three backups within a second of each other (one UTC day, barring midnight): the oldest
    // is pinned, the newest is the day's, the middle one is kept by no rule.
    const pinned = await service.createBackup(["policy-a", "policy-b"], { keep: true });
    const middle = await service.createBackup(["policy-b"]);
    const newest = await service.createBackup(["policy-a"], { userId: "policy-user" });

    const listed = await listAll(1000);
    const ids = listed.map((backup) => backup.backupId);
    expect(ids.indexOf(newest)).toBeLessThan(ids.indexOf(middle));
    expect(ids.indexOf(middle)).toBeLessThan(ids.indexOf(pinned));
    const created = listed.map((backup) => backup.createdAt);
    expect(created).toEqual([...created].sort((a, b) => b - a));
    const byId = new Map(listed.map((backup) => [backup.backupId, backup]));
    expect(byId.get(newest)).toMatchObject({ kind: "manual", incremental: false, sessionCount: 1, forUser: true, keep: false, kept: true });
    expect(byId.get(newest)!.reasons).toContain("daily");
    expect(byId.get(middle)).toMatchObject({ sessionCount: 1, kept: false, reasons: [] });
    expect(byId.get(pinned)).toMatchObject({ sessionCount: 2, keep: true, kept: true });
    expect(byId.get(pinned)!.reasons).toContain("pinned");
    expect(byId.get(pinned)!.storedSize).toBeGreaterThan(100);
    // Any page size lists the same backups with the same decisions.
    expect(await listAll(1)).toEqual(listed);
    expect((await listAll(2, "policy-user")).map((backup) => backup.backupId)).toEqual([newest]);

    const preview = await service.enforceRetentionPolicy({ dryRun: true });
    expect(preview.dryRun).toBe(true);
    const fates = new Map(preview.backups!.map((fate) => [fate.backupId, fate]));
    expect(fates.get(middle)).toMatchObject({ kept: false, reasons: [] });
    expect(fates.get(newest)).toMatchObject({ kept: true });
    expect(fates.get(pinned)!.reasons).toContain("pinned");
    expect(preview.keys.map((key) => key.key)).toContain(`backups/${middle}/manifest.json`);
    expect(await env.ARCHIVE_R2.head(`backups/${middle}/manifest.json`)).not.toBeNull();

    const run = await service.enforceRetentionPolicy();
    expect(run.dryRun).toBeUndefined();
    expect(run.backups).toBeUndefined();
    expect(await env.ARCHIVE_R2.head(`backups/${middle}/manifest.json`)).toBeNull();
    expect(await env.ARCHIVE_R2.head(`backups/${middle}/pack-0.json`)).toBeNull();
    expect(await env.CHAT_KV.get(`backup_manifest:${middle}`)).toBeNull();
    expect(await env.ARCHIVE_R2.head(`backups/${pinned}/manifest.json`)).not.toBeNull();
    expect(await env.ARCHIVE_R2.head(`backups/${newest}/manifest.json`)).not.toBeNull();
    const after = (await listAll(1000)).map((backup) => backup.backupId);
    expect(after).toContain(newest);
    expect(after).toContain(pinned);
    expect(after).not.toContain(middle);
  });

  it("names a bad rotation value, from [vars] or from the policy", async () => {
    for (const [name, value] of [["BACKUP_KEEP_DAILY", "-1"], ["BACKUP_KEEP_WEEKLY", "1.5"], ["BACKUP_KEEP_MONTHLY", "twelve"], ["BACKUP_KEEP_LAST", ""]]) {
      let caught: unknown;
      try {
        policyFromEnv({ [name!]: value });
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: "INVALID_CONFIG" });
      expect(String((caught as Error).message)).toContain(name!);
    }
    expect(policyFromEnv({ BACKUP_KEEP_DAILY: "0", BACKUP_KEEP_LAST: "3" })).toMatchObject({ backupKeepDaily: 0, backupKeepLast: 3 });
    for (const bad of [-1, 2.5]) {
      expect(await codeOf(() => new DataPersistenceService(env, { backupKeepWeekly: bad }))).toBe("INVALID_CONFIG");
    }
    expect(await codeOf(() => service.createBackup(["policy-b"], { keep: "yes" as unknown as boolean }))).toBe("INVALID_INPUT");
    expect(await codeOf(() => service.listBackups({ limit: 0 }))).toBe("INVALID_INPUT");
    expect(await codeOf(() => service.listBackups({ cursor: "not a cursor" }))).toBe("INVALID_INPUT");
    expect(await codeOf(() => service.enforceRetentionPolicy({ dryRun: "yes" as unknown as boolean }))).toBe("INVALID_INPUT");
  });
});
