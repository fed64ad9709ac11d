// verifyStorage inside workerd, over the local R2 and KV of wrangler.toml: damaged and deleted
// archives are found and repaired from a verified backup copy, what healthCheck shows, and the
// example's cron resuming a sampled verification across invocations with a small budget.
import { env } from "cloudflare:workers";
import { createScheduledController } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { DataPersistenceService, isPersistenceError, type VerificationReport } from "supportbot-persistence";
import worker from "../../js/example/worker.js";
import type { ExampleEnv } from "../../js/example/config.js";
import { LAST_RUN_KEY } from "../../js/example/retention.js";

const service = new DataPersistenceService(env);

async function archive(sessionId: string, userId?: string): Promise<string> {
  const now = Date.now();
  return service.archiveConversation(
    {
      sessionId,
      messages: [{ id: "m1", sessionId, role: "user", content: `where is parcel ${sessionId}?`, timestamp: now - 1000 }],
      summary: `parcel ${sessionId}`,
    },
    { id: sessionId, status: "closed", createdAt: now - 1000, lastActivity: now - 1000, ...(userId && { userId }) },
  );
}

/** Runs verification (everything, no budget) until its pass completes. */
async function verifyAll(repair: boolean): Promise<VerificationReport> {
  for (let run = 0; run < 10; run++) {
    const report = await service.verifyStorage({ repair });
    if (report.complete) return report;
  }
  throw new Error("verification never completed");
}

/** The slot of `key` in a sample of 1/`of`: the first 8 bytes of its SHA-256, big-endian, modulo `of`. */
async function slotOf(key: string, of: number): Promise<number> {
  const digest = new DataView(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  return Number(digest.getBigUint64(0) % BigInt(of));
}

async function allKeys(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.ARCHIVE_R2.list({ prefix, ...(cursor && { cursor }) });
    keys.push(...page.objects.map((object) => object.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys;
}

describe("verifyStorage", () => {
  it("finds a damaged and a deleted archive, repairs both from the backup, and healthCheck follows", async () => {
    const damagedKey = await archive("verify-damaged", "verify-user");
    const deletedKey = await archive("verify-deleted");
    await service.createBackup(["verify-damaged", "verify-deleted"]);
    const original = new Uint8Array(await (await env.ARCHIVE_R2.get(damagedKey))!.arrayBuffer());
    const damaged = original.slice();
    const middle = damaged.length >> 1;
    damaged[middle] = damaged[middle]! ^ 0xff;
    const head = await env.ARCHIVE_R2.head(damagedKey);
    await env.ARCHIVE_R2.put(damagedKey, damaged, { customMetadata: head!.customMetadata });
    await env.ARCHIVE_R2.delete(deletedKey);

    const found = await verifyAll(false);
    const byKey = Object.fromEntries(found.problems.map((problem) => [problem.key, problem]));
    expect(byKey[damagedKey]).toMatchObject({ problem: "checksum_mismatch", repaired: false });
    // The KV entries of the deleted archive point at it (KV may lag a new entry by ~60 s
    // in production; the local namespace shows it at once).
    expect(byKey[deletedKey]).toMatchObject({ problem: "missing", repaired: false });
    const degraded = await service.healthCheck();
    expect(degraded.status).toBe("degraded");
    expect(degraded.verification).toMatchObject({ problems: found.problemsFound, stale: false });

    const repaired = await verifyAll(true);
    const fixed = repaired.problems.filter((problem) => [damagedKey, deletedKey].includes(problem.key));
    expect(fixed).toHaveLength(2);
    for (const problem of fixed) expect(problem).toMatchObject({ repaired: true, repairedFrom: expect.stringMatching(/^backup /) });
    expect(new Uint8Array(await (await env.ARCHIVE_R2.get(damagedKey))!.arrayBuffer())).toEqual(original);
    expect((await service.retrieveArchive(deletedKey))?.summary).toBe("parcel verify-deleted");
    const clean = await verifyAll(false);
    expect(clean.problems).toEqual([]);
    const healthy = await service.healthCheck();
    expect(healthy.status).toBe("healthy");
    expect(healthy.verification).toMatchObject({ problems: 0, stale: false, lastCompleteAt: expect.any(String) });
  });

  it("refuses a bad sample or budget with INVALID_INPUT before any storage call", async () => {
    for (const options of [{ sample: "2/7" }, { sample: "1/0" }, { maxStorageCalls: 11 }]) {
      const refused = await service.verifyStorage(options).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(isPersistenceError(refused) && refused.code).toBe("INVALID_INPUT");
    }
  });
});

describe("the cron's verification", () => {
  it("resumes a sampled pass across invocations with a small budget and checks exactly its slot", async () => {
    for (let i = 0; i < 30; i++) await archive(`cron-verify-${i}`);
    // Retention already ran this interval: the cron's calls go to verification.
    await env.CHAT_KV.put(LAST_RUN_KEY, String(Date.now()));
    const small: ExampleEnv = { ...env, AUTH_SECRET: "test-auth-secret-0123456789abcdef-0123456789", RETENTION_STORAGE_CALLS: "35", VERIFY_SAMPLE: "1/2" };
    const logged = vi.spyOn(console, "log");
    const runs: (VerificationReport & { event: string })[] = [];
    try {
      for (let invocation = 0; invocation < 12 && !runs.some((run) => run.complete); invocation++) {
        await worker.scheduled(createScheduledController({ cron: "0 */6 * * *" }), small);
        const lines = logged.mock.calls.map((call) => JSON.parse(String(call[0])) as VerificationReport & { event?: string });
        const last = lines.filter((line) => line.event === "verification_run").at(-1);
        if (last && !runs.includes(last as VerificationReport & { event: string })) runs.push(last as VerificationReport & { event: string });
      }
    } finally {
      logged.mockRestore();
    }
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(runs.slice(0, -1).every((run) => !run.complete && run.stoppedBy === "call_budget")).toBe(true);
    expect(runs.at(-1)).toMatchObject({ complete: true, resumed: true, sample: "1/2" });
    for (const run of runs) expect(run.storageCalls).toBeLessThanOrEqual(14);
    const slot = runs[0]!.slot;
    expect(runs.every((run) => run.slot === slot)).toBe(true);
    // Exactly the archives, and the manifests and packs of the backups, in the pass's slot.
    let expected = 0;
    for (const key of await allKeys("conversations/")) if ((await slotOf(key, 2)) === slot) expected++;
    const backupKeys = await allKeys("backups/");
    for (const key of backupKeys.filter((key) => key.endsWith("/manifest.json"))) {
      const folder = key.slice(0, -"manifest.json".length);
      if ((await slotOf(folder.split("/")[1]!, 2)) !== slot) continue;
      expected += 1 + backupKeys.filter((other) => other.startsWith(`${folder}pack-`)).length;
    }
    expect(runs.reduce((sum, run) => sum + run.objectsChecked, 0)).toBe(expected);
    expect(runs.flatMap((run) => run.problems)).toEqual([]);
  });
});
