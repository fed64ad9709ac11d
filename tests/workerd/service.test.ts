// DataPersistenceService and DataPersistenceIntegration through the built package, inside
// workerd, against the real local KV and R2 of wrangler.toml.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  DataPersistenceIntegration,
  DataPersistenceService,
  hashText,
  isPersistenceError,
  policyFromEnv,
  type ConversationMemory,
  type SessionState,
} from "supportbot-persistence";

const DAY = 24 * 60 * 60 * 1000;

function conversation(sessionId: string, userId: string, words = 3): { memory: ConversationMemory; session: SessionState } {
  const messages = Array.from({ length: words }, (_, i) => ({
    id: `${sessionId}-m${i}`,
    sessionId,
    role: (i % 2 === 0 ? "user" : "assistant") as "user" | "assistant",
    content: i === 0 ? "I forgot my password and cannot log in" : `reply number ${i} about the invoice`,
    timestamp: 1_736_157_600_000 + i * 1000,
    metadata: { lang: "en", tokens: i },
  }));
  return {
    memory: { sessionId, messages, summary: `summary of ${sessionId}`, context: { plan: "pro", nested: { a: [1, 2] } }, customField: 7 },
    session: { id: sessionId, userId, status: "closed", createdAt: 1_736_157_600_000, lastActivity: 1_736_157_660_000, metadata: { channel: "web" } },
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    expect(isPersistenceError(error)).toBe(true);
    return (error as { code: string }).code;
  }
  return undefined;
}

describe("archives", () => {
  const service = new DataPersistenceService(env);

  it("round-trips a conversation with its extra fields, verified", async () => {
    const { memory, session } = conversation("round-trip", "user-a");
    const key = await service.archiveConversation(memory, session);
    expect(key).toMatch(/^conversations\/\d{4}\/\d{2}\/archive_round-trip_\d{13}\.json\.gz$/);
    const stored = await env.ARCHIVE_R2.head(key);
    expect(stored?.customMetadata?.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Identity, size, checksum and the owner's hashed key only: the summary and topics live in
    // the document and KV.
    expect(Object.keys(stored?.customMetadata ?? {}).sort()).toEqual(
      ["archivedAt", "duration", "formatVersion", "messageCount", "rawSize", "sessionId", "sha256", "userKey"],
    );
    expect(stored?.customMetadata?.messageCount).toBe(String(memory.messages.length));
    const back = await service.retrieveArchivedConversation("round-trip");
    expect(back?.messages).toEqual(memory.messages);
    expect(back?.context).toEqual(memory.context);
    expect(back?.customField).toBe(7);
    expect(back?.sessionState?.userId).toBe("user-a");
  });

  it("round-trips a conversation handed to wasm in several pieces", async () => {
    const { memory, session } = conversation("pieces", "user-a");
    // ~2000 messages of ~150 characters, non-Latin-1 included: well over one 64 K piece.
    memory.messages = Array.from({ length: 2000 }, (_, i) => ({
      id: `pieces-m${i}`,
      sessionId: "pieces",
      role: i % 2 === 0 ? "user" : "assistant",
      content: `message ${i}: my invoice #${i * 7} is wrong — ¿por qué? 請幫忙 ${"x".repeat(i % 97)}`,
      timestamp: 1_736_157_600_000 + i,
      metadata: { n: i, note: undefined },
    }));
    await service.archiveConversation(memory, session);
    const back = await service.retrieveArchivedConversation("pieces");
    expect(back?.messages).toEqual(JSON.parse(JSON.stringify(memory.messages)));
    expect(back?.summary).toBe(memory.summary);
    expect(back?.customField).toBe(7);
  });

  it("round-trips text of several UTF-8 bytes per character across piece and view boundaries", async () => {
    const { memory, session } = conversation("wide-text", "user-a");
    // Each piece is encoded into views of one byte per UTF-16 unit: CJK (3 bytes) and emoji
    // (4 bytes per surrogate pair) overflow every view, and the pairs land on its edges.
    memory.messages = Array.from({ length: 60 }, (_, i) => ({
      id: `wide-m${i}`,
      sessionId: "wide-text",
      role: "user",
      content: `${"請".repeat(i)}${"😀請幫忙".repeat(700)}${"é".repeat(i % 5)}`,
      timestamp: 1_736_157_600_000 + i,
    }));
    await service.archiveConversation(memory, session);
    const back = await service.retrieveArchivedConversation("wide-text");
    expect(back?.messages).toEqual(memory.messages);
  });

  it("keeps what was encoded when a message's toJSON grows wasm memory mid-conversation", async () => {
    const { memory, session } = conversation("grows-memory", "user-a");
    const messages = Array.from({ length: 40 }, (_, i) => ({
      id: `grows-memory-m${i}`,
      sessionId: "grows-memory",
      role: "user" as const,
      content: `message ${i} 請 ${"x".repeat(i * 50)}`,
      timestamp: 1_736_157_600_000 + i,
    }));
    // Hashing 24 MB in wasm grows its linear memory (more than this isolate has used) while a view of it is open for the
    // messages already encoded: the view is detached, and the writer must take a new one.
    const grower = { ...messages[20]!, toJSON: () => (hashText("y".repeat(24_000_000)), { ...messages[20] }) };
    memory.messages = [...messages.slice(0, 20), grower as (typeof messages)[number], ...messages.slice(21)];
    await service.archiveConversation(memory, session);
    const back = await service.retrieveArchivedConversation("grows-memory");
    expect(back?.messages).toEqual(messages);
  });

  it("serves 100 concurrent archive calls, each retrievable", async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `concurrent-${i}`);
    const keys = await Promise.all(ids.map((id) => service.archiveConversation(conversation(id, "user-c").memory, conversation(id, "user-c").session)));
    expect(new Set(keys).size).toBe(100);
    const back = await Promise.all(ids.map((id) => service.retrieveArchivedConversation(id)));
    expect(back.map((c) => c?.sessionId)).toEqual(ids);
  });

  it("lists one user's archives newest first across pages", async () => {
    for (let i = 0; i < 7; i++) {
      const { memory, session } = conversation(`paged-${i}`, "user-p");
      await service.archiveConversation(memory, session);
    }
    const seen: string[] = [];
    const times: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await service.listArchivedConversations("user-p", 3, cursor);
      seen.push(...page.map((a) => a.sessionId));
      times.push(...page.map((a) => a.archivedAt));
      cursor = page.cursor;
      pages++;
      if (page.listComplete) break;
    } while (cursor);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect([...seen].sort()).toEqual(Array.from({ length: 7 }, (_, i) => `paged-${i}`));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    const other = await service.listArchivedConversations("user-nobody", 20);
    expect(other.length).toBe(0);
  });

  it("takes any user id without control characters: emails, Auth0 ids, non-ASCII names", async () => {
    const users = ["alice+support@example.com", "auth0|5f7c8ec7c33c6c004bbafe82", "José Núñez", "a/b..c", 'q"\\'];
    for (const [i, userId] of users.entries()) {
      const { memory, session } = conversation(`any-user-${i}`, userId);
      const key = await service.archiveConversation(memory, session);
      // Personal data stays out of R2 metadata (and so out of listings and S3 headers).
      expect(Object.values((await env.ARCHIVE_R2.head(key))?.customMetadata ?? {})).not.toContain(userId);
      const listed = await service.listArchivedConversations(userId);
      expect(listed.map((a) => [a.sessionId, a.userId])).toEqual([[`any-user-${i}`, userId]]);
      expect((await service.retrieveArchivedConversation(`any-user-${i}`))?.sessionState?.userId).toBe(userId);
    }
    const { memory, session } = conversation("bad-user", "line\nbreak");
    expect(await codeOf(service.archiveConversation(memory, session))).toBe("INVALID_ID");
    // A lone surrogate would reach wasm as U+FFFD and alias another user: refused, not echoed.
    const error = await service.listArchivedConversations("secret-user\uD800").catch((e: Error) => e);
    expect((error as { code?: string }).code).toBe("INVALID_ID");
    expect((error as Error).message).not.toContain("secret-user");
  });

  it("reports a flipped byte in a stored archive as CHECKSUM_MISMATCH, never wrong data", async () => {
    const { memory, session } = conversation("flipped", "user-f");
    const key = await service.archiveConversation(memory, session);
    const object = await env.ARCHIVE_R2.get(key);
    const bytes = new Uint8Array(await object!.arrayBuffer());
    bytes[bytes.length >> 1]! ^= 0x01;
    await env.ARCHIVE_R2.put(key, bytes, { customMetadata: object!.customMetadata });
    expect(await codeOf(service.retrieveArchivedConversation("flipped"))).toBe("CHECKSUM_MISMATCH");
  });

  it("reads archives written by the earlier TypeScript implementation", async () => {
    const archivedAt = 1_736_157_600_123;
    const legacy = {
      metadata: { sessionId: "legacy-1", archivedAt, messageCount: 1, summary: "old", topics: [], duration: 10, userId: "u" },
      conversation: { sessionId: "legacy-1", messages: [{ id: "m", sessionId: "legacy-1", role: "user", content: "hi", timestamp: 1 }], summary: "old", context: {}, sessionState: { id: "legacy-1", status: "closed", createdAt: 0, lastActivity: 10 } },
    };
    await env.ARCHIVE_R2.put(`conversations/2025/1/archive_legacy-1_${archivedAt}.json`, JSON.stringify(legacy));
    await env.CHAT_KV.put("archive_meta:legacy-1", JSON.stringify(legacy.metadata));
    const back = await service.retrieveArchivedConversation("legacy-1");
    expect(back?.messages[0]?.content).toBe("hi");
  });

  it("rejects bad input with coded errors and stores nothing", async () => {
    const before = (await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.length;
    const { memory, session } = conversation("bad-input", "user-b");
    expect(await codeOf(service.archiveConversation(42 as never, session))).toBe("INVALID_INPUT");
    expect(await codeOf(service.archiveConversation({ ...memory, messages: "no" } as never, session))).toBe("INVALID_INPUT");
    expect(await codeOf(service.archiveConversation({ ...memory, sessionId: "../etc" }, { ...session, id: "../etc" }))).toBe("INVALID_ID");
    expect(await codeOf(service.archiveConversation({ ...memory, sessionId: "a/b" }, { ...session, id: "a/b" }))).toBe("INVALID_ID");
    expect(await codeOf(service.retrieveArchivedConversation("x/../y"))).toBe("INVALID_ID");
    const tiny = new DataPersistenceService(env, { maxArchiveSize: 100 });
    expect(await codeOf(tiny.archiveConversation(memory, session))).toBe("ARCHIVE_TOO_LARGE");
    expect((await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.length).toBe(before);
  });

  it("keeps the earlier implementation's error message prefixes", async () => {
    await service.archiveConversation(42 as never, conversation("p", "u").session).catch((error: Error) => {
      expect(error.message).toMatch(/^Archive operation failed: /);
    });
  });
});

describe("caches", () => {
  const service = new DataPersistenceService(env, {}, { embeddingModel: "test-model" });

  it("stores embeddings in binary and returns exactly what was cached", async () => {
    const embedding = Array.from({ length: 768 }, (_, i) => Math.fround(Math.sin(i)));
    await service.cacheEmbedding("reset password", embedding, { source: "knowledge_base" });
    expect(await service.getCachedEmbedding("reset password")).toEqual(embedding);
    expect(await service.getCachedEmbedding("reset password", "other-model")).toBeNull();
    const stored = await env.CHAT_KV.list({ prefix: "embedding:" });
    expect(stored.keys.some((k) => k.name.includes("reset"))).toBe(false);
  });

  it("rejects NaN and non-numbers by index", async () => {
    expect(await codeOf(service.cacheEmbedding("t", [1, Number.NaN]))).toBe("INVALID_INPUT");
    expect(await codeOf(service.cacheEmbedding("t", [1, "2" as never]))).toBe("INVALID_INPUT");
  });

  it("answers a normalized query from the cache", async () => {
    await service.cacheFrequentQuery("  How do I RESET my password? ", { answer: "Use the link", score: 0.95 }, { source: "support_bot" });
    expect(await service.getCachedQueryResult("how do i reset my password?")).toEqual({ answer: "Use the link", score: 0.95 });
    expect(await service.getCachedQueryResult("something else")).toBeNull();
  });

  it("hashes cache keys with HMAC when a secret is configured", async () => {
    const keyed = new DataPersistenceService(env, {}, { hashSecret: "a-secret-of-32-characters-length" });
    await keyed.cacheFrequentQuery("secret query", 1);
    const keys = (await env.CHAT_KV.list({ prefix: "query:" })).keys.map((k) => k.name);
    expect(keys).not.toContain(`query:${hashText("secret query")}`);
    expect(await keyed.getCachedQueryResult("secret query")).toBe(1);
  });
});

describe("backups", () => {
  const service = new DataPersistenceService(env);

  it("backs up and restores sessions, idempotently", async () => {
    for (const id of ["bk-1", "bk-2"]) await service.archiveConversation(conversation(id, "user-k").memory, conversation(id, "user-k").session);
    const backupId = await service.createBackup(["bk-1", "bk-2", "bk-missing"]);
    expect(await env.ARCHIVE_R2.head(`backups/${backupId}/manifest.json`)).not.toBeNull();
    const countObjects = async () => (await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.length;
    const before = await countObjects();
    expect((await service.restoreFromBackup(backupId)).sort()).toEqual(["bk-1", "bk-2"]);
    expect((await service.restoreFromBackup(backupId)).sort()).toEqual(["bk-1", "bk-2"]);
    expect(await countObjects()).toBe(before);
    expect((await service.retrieveArchivedConversation("bk-2"))?.sessionId).toBe("bk-2");
    // For one user: all of that user's, or nothing.
    expect(await codeOf(service.createBackup(["bk-1", "bk-missing"], { userId: "user-k" }))).toBe("NOT_FOUND");
    expect(await codeOf(service.createBackup(["bk-1"], { userId: "user-other" }))).toBe("NOT_FOUND");
    const owned = await service.createBackup(["bk-1", "bk-2"], { userId: "user-k" });
    const manifest = await (await env.ARCHIVE_R2.get(`backups/${owned}/manifest.json`))!.json<{ userId?: string }>();
    expect(manifest.userId).toBe("user-k");
    // Restored only for the user it was made for; one made for nobody is not anyone's.
    expect(await codeOf(service.restoreFromBackup(owned, { userId: "user-other" }))).toBe("NOT_FOUND");
    expect(await codeOf(service.restoreFromBackup(backupId, { userId: "user-k" }))).toBe("NOT_FOUND");
    expect((await service.restoreFromBackup(owned, { userId: "user-k" })).sort()).toEqual(["bk-1", "bk-2"]);
    // A userId named but missing (a token without its claim) is an error, never "anyone".
    expect(await codeOf(service.restoreFromBackup(owned, { userId: undefined }))).toBe("INVALID_INPUT");
    expect(await codeOf(service.createBackup(["bk-1"], { userId: null as unknown as string }))).toBe("INVALID_INPUT");
    expect(await codeOf(service.createBackup(["bk-1"], { userId: "" }))).toBe("INVALID_ID");
  });

  it("refuses unknown backups and corrupted data with coded errors", async () => {
    expect(await codeOf(service.restoreFromBackup("backup_nope"))).toBe("NOT_FOUND");
    await service.archiveConversation(conversation("bk-c", "u").memory, conversation("bk-c", "u").session);
    const backupId = await service.createBackup(["bk-c"]);
    const dataKey = `backups/${backupId}/pack-0.json`;
    const data = new Uint8Array(await (await env.ARCHIVE_R2.get(dataKey))!.arrayBuffer());
    data[20]! ^= 0x01;
    await env.ARCHIVE_R2.put(dataKey, data);
    const error = await service.restoreFromBackup(backupId).catch((e: Error & { code: string }) => e);
    expect((error as { code: string }).code).toBe("CHECKSUM_MISMATCH");
    expect((error as Error).message).toMatch(/^Restore operation failed: Backup data integrity check failed/);
    await env.ARCHIVE_R2.delete(dataKey);
    expect(await codeOf(service.restoreFromBackup(backupId))).toMatch(/NOT_FOUND|CORRUPT_DATA/);
  });
});

describe("retention", () => {
  it("deletes more than 1000 archives past retention, keeping young ones", async () => {
    const old = Date.UTC(2020, 0, 15);
    const keys = Array.from({ length: 1100 }, (_, i) => `conversations/2020/01/archive_old-${String(i).padStart(4, "0")}_${old + i}.json.gz`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => env.ARCHIVE_R2.put(key, "x")));
    const service = new DataPersistenceService(env, { archiveRetention: 30 * DAY });
    const { memory, session } = conversation("young", "user-y");
    await service.archiveConversation(memory, session);
    let report = await service.enforceRetentionPolicy();
    for (let runs = 0; !report.complete && runs < 10; runs++) report = await service.enforceRetentionPolicy();
    expect(report.complete).toBe(true);
    const left = await env.ARCHIVE_R2.list({ prefix: "conversations/2020/" });
    expect(left.objects.length).toBe(0);
    expect((await service.retrieveArchivedConversation("young"))?.sessionId).toBe("young");
  }, 60_000);

  it("resumes a budgeted sweep part-way through a KV page with the real list cursor", async () => {
    const now = Date.now();
    const keys = Array.from({ length: 200 }, (_, i) => `query:${i.toString(16).padStart(64, "0")}`);
    // The first 150 in key order expired a day ago; the last 50 expire tomorrow.
    const expiresAt = (i: number) => (i < 150 ? now - DAY : now + DAY);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key, j) =>
        env.CHAT_KV.put(key, "v", { metadata: { createdAt: expiresAt(i + j) - DAY, expiresAt: expiresAt(i + j) } })));
    }
    const service = new DataPersistenceService(env);
    const resumedAt: string[] = [];
    let report = await service.enforceRetentionPolicy({ maxStorageCalls: 50 });
    for (let runs = 0; !report.complete && runs < 20; runs++) {
      expect(report.stoppedBy).toBe("call_budget");
      const position = await env.CHAT_KV.get<{ kvPrefix?: string; kvResumeAt?: string }>("retention:cursor", "json");
      if (position?.kvPrefix === "query:" && position.kvResumeAt) resumedAt.push(position.kvResumeAt);
      report = await service.enforceRetentionPolicy({ maxStorageCalls: 50 });
    }
    expect(report.complete).toBe(true);
    // At least two runs stopped inside the one page of query: keys, each further along.
    expect(resumedAt.length).toBeGreaterThanOrEqual(2);
    expect([...resumedAt].sort()).toEqual(resumedAt);
    const left = (await env.CHAT_KV.list({ prefix: "query:" })).keys.map((key) => key.name);
    expect(left.filter((name) => keys.includes(name))).toEqual(keys.slice(150));
    expect(await env.CHAT_KV.get("retention:cursor")).toBeNull();
  }, 60_000);
});

describe("integration", () => {
  it("reports health from real probes and metrics over every page", async () => {
    const integration = new DataPersistenceIntegration(env);
    const health = await integration.healthCheck();
    expect(health.status).toBe("healthy");
    expect(health.details.r2_storage).toBe("healthy");
    expect(health.details.kv_cache).toBe("healthy");
    expect(health.details.breakers.CHAT_KV).toBe("closed");
    await integration.service.archiveConversation(conversation("metrics-1", "u").memory, conversation("metrics-1", "u").session);
    const metrics = await integration.getStorageMetrics();
    expect(metrics.complete).toBe(true);
    expect(metrics.storage.archived_conversations).toBeGreaterThanOrEqual(1);
    expect(metrics.cache.archives_metadata).toBeGreaterThanOrEqual(1);
    // One list call: the embeddings are counted, nothing after them.
    const partial = await integration.getStorageMetrics({ maxStorageCalls: 1 });
    expect(partial.complete).toBe(false);
    expect(partial.cache.embeddings).toBe(metrics.cache.embeddings);
    expect([partial.cache.queries, partial.cache.archives_metadata, partial.storage.bytes]).toEqual([0, 0, 0]);
    expect(await codeOf(integration.getStorageMetrics({ maxStorageCalls: 0 }))).toBe("INVALID_INPUT");
  });

  it("reads the policy from wrangler.toml vars and names a bad one", () => {
    expect(policyFromEnv(env as never)).toEqual({
      conversationTTL: DAY,
      cacheTTL: DAY,
      archiveRetention: 90 * DAY,
      cleanupInterval: 60 * 60 * 1000,
      maxArchiveSize: 30 * 1024 * 1024,
      backupKeepLast: 0,
      backupKeepDaily: 7,
      backupKeepWeekly: 4,
      backupKeepMonthly: 12,
    });
    expect(() => policyFromEnv({ CACHE_TTL_HOURS: "-3" })).toThrow(/CACHE_TTL_HOURS/);
  });
});

describe("a changed hash secret", () => {
  it("lists a user's archives again once reindexUserArchives completes", async () => {
    const before = new DataPersistenceService(env, {}, { hashSecret: "the-old-secret-0123456789" });
    const { memory, session } = conversation("rotated-1", "user-rotated");
    await before.archiveConversation(memory, session);
    expect((await before.listArchivedConversations("user-rotated")).map((a) => a.sessionId)).toEqual(["rotated-1"]);

    const after = new DataPersistenceService(env, {}, { hashSecret: "the-new-secret-0123456789" });
    expect(await after.listArchivedConversations("user-rotated")).toHaveLength(0);
    // Time-boxed as a cron run on the free plan would be (other tests' archives are walked too).
    const runs = [await after.reindexUserArchives({ maxStorageCalls: 20 })];
    while (!runs.at(-1)!.complete && runs.length < 100) runs.push(await after.reindexUserArchives({ maxStorageCalls: 20 }));
    expect(runs.at(-1)!.complete).toBe(true);
    expect(Math.max(...runs.map((run) => run.storageCalls))).toBeLessThanOrEqual(20);
    expect(runs.slice(1).every((run) => run.resumed)).toBe(true);
    expect((await after.listArchivedConversations("user-rotated")).map((a) => a.sessionId)).toEqual(["rotated-1"]);
    expect(await env.CHAT_KV.get("migration:user_archives:cursor")).toBeNull();
  }, 60_000);
});

describe("legacy archive indexing and retrieval by key", () => {
  const service = new DataPersistenceService(env);

  it("lists the earlier implementation's archives once indexed, and retrieves them by key", async () => {
    const archivedAt = 1_733_011_200_000;
    const keys: string[] = [];
    for (const [i, sessionId] of ["migrated-1", "migrated-2"].entries()) {
      const at = archivedAt + i * 1000;
      const metadata = { sessionId, userId: "user-migrated", archivedAt: at, messageCount: 1, summary: "old", topics: ["billing"], duration: 10 };
      const conversation = { sessionId, messages: [{ id: "m", sessionId, role: "user", content: `hi ${i}`, timestamp: at }], summary: "old", context: {} };
      const key = `conversations/2024/12/archive_${sessionId}_${at}.json`;
      await env.ARCHIVE_R2.put(key, JSON.stringify({ metadata, conversation }));
      await env.CHAT_KV.put(`archive_meta:${sessionId}`, JSON.stringify(metadata));
      keys.push(key);
    }
    expect((await service.listArchivedConversations("user-migrated")).length).toBe(0);

    // Time-boxed as a cron run on the free plan would be (other tests' archives are listed too).
    let report = await service.indexLegacyArchives({ maxStorageCalls: 50 });
    let indexed = report.indexed;
    for (let runs = 0; !report.complete && runs < 50; runs++) {
      expect(report.storageCalls).toBeLessThanOrEqual(50);
      report = await service.indexLegacyArchives({ maxStorageCalls: 50 });
      indexed += report.indexed;
    }
    expect(report.complete).toBe(true);
    expect(indexed).toBeGreaterThanOrEqual(2);

    const listed = await service.listArchivedConversations("user-migrated");
    expect(listed.map((a) => a.sessionId)).toEqual(["migrated-2", "migrated-1"]);
    expect(listed.map((a) => a.key)).toEqual([keys[1], keys[0]]);
    expect(listed[0]?.formatVersion).toBe(0);
    const everyone = (await service.listArchivedConversations(undefined, 1000)).map((a) => a.sessionId);
    expect(everyone).toEqual(expect.arrayContaining(["migrated-1", "migrated-2"]));
    expect((await service.retrieveArchive(listed[0]!.key))?.messages[0]?.content).toBe("hi 1");
    expect((await service.retrieveArchivedConversation("migrated-1"))?.messages[0]?.content).toBe("hi 0");

    const again = await service.indexLegacyArchives();
    expect(again).toMatchObject({ indexed: 0, complete: true });
  });

  it("retrieves an archive by its R2 key from R2 alone, verified, and refuses other keys", async () => {
    const { memory, session } = conversation("by-key", "user-by-key");
    const key = await service.archiveConversation(memory, session);
    // As if KV had not caught up yet where this call runs.
    await env.CHAT_KV.delete("archive_meta:by-key");
    const back = await service.retrieveArchive(key);
    expect(back?.messages).toEqual(memory.messages);
    expect(back?.sessionState?.userId).toBe("user-by-key");
    expect(await service.retrieveArchive("conversations/2025/01/archive_nobody_1736157600000.json.gz")).toBeNull();

    const object = await env.ARCHIVE_R2.get(key);
    const bytes = new Uint8Array(await object!.arrayBuffer());
    bytes[bytes.length >> 1]! ^= 0x01;
    await env.ARCHIVE_R2.put(key, bytes, { customMetadata: object!.customMetadata });
    expect(await codeOf(service.retrieveArchive(key))).toBe("CHECKSUM_MISMATCH");

    for (const bad of ["backups/b1/manifest.json", "archive_meta:by-key", "conversations/2025/1/archive_x_1.json.gz"]) {
      const error = await service.retrieveArchive(bad).catch((e: Error) => e);
      expect((error as { code?: string }).code).toBe("INVALID_INPUT");
      expect((error as Error).message).toMatch(/^Archive operation failed: .*archiveKey/);
    }
  });
});
