// The code examples of the spec (../shared/spec/data-persistence-system.md), run as written
// there through the built package inside workerd, against the local KV, R2 and Durable Object
// of wrangler.toml: one `describe` per example of "Usage Examples", "Integration with Durable
// Objects", "Health Check Endpoint" and "Storage Metrics". Each example's code is kept verbatim
// (its own quotes and comments); only the imports are adapted, and the spec's `bindings` is the
// Worker's `env`. The variables the spec leaves undefined (memory, session, sessionId, userId,
// text, embedding, query, result, memoryDO) get realistic values, and each result is checked
// against the shape the spec shows.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  DataPersistenceIntegration,
  DataPersistenceService,
  hashText,
  type ConversationMemory,
  type RetentionReport,
  type SessionMessage,
  type SessionState,
} from "supportbot-persistence";

const bindings = env;
/** `service` and `integration` as the spec's first and health examples create them; later examples use them. */
const service = new DataPersistenceService(bindings);
const integration = new DataPersistenceIntegration(bindings);

/**
 * What the examples above the metrics one wrote, counted once each write succeeded. Other test
 * files share the local KV and R2, so the metrics can only be checked to be at least this.
 */
const written = { embeddings: 0, queries: 0, archives_metadata: 0, archived_conversations: 0, backups: 0 };

afterEach(() => {
  vi.restoreAllMocks();
});

/** A new id on every run, so a rerun against kept storage starts clean. */
function uniqueId(name: string): string {
  return `${name}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A finished support chat, as the bot holds it when the session ends. */
function supportChat(sessionId: string, userId: string): { memory: ConversationMemory & { messages: SessionMessage[] }; session: SessionState } {
  const start = Date.now() - 10 * 60_000;
  const turns: [SessionMessage["role"], string][] = [
    ["user", "Hi, I can't log in. It says my password is wrong but I'm sure it's right."],
    ["assistant", "Sorry about that! On the sign-in page, choose “Forgot password?” and we'll email you a reset link."],
    ["user", "Got the email and the link worked. Thanks!"],
    ["assistant", "Glad that's sorted. Is there anything else I can help with?"],
  ];
  const messages = turns.map(([role, content], i): SessionMessage => ({
    id: `${sessionId}-m${i + 1}`,
    sessionId,
    role,
    content,
    timestamp: start + i * 45_000,
    metadata: { channel: "web", locale: "en-US" },
  }));
  return {
    memory: { sessionId, messages, summary: "Password reset: the user reset it with the emailed link.", context: { topic: "account_access", plan: "pro" } },
    session: { id: sessionId, userId, status: "closed", createdAt: start, lastActivity: start + 3 * 45_000, metadata: { channel: "web" } },
  };
}

async function backupManifest(backupId: string): Promise<{ sessionIds: string[]; missingSessionIds: string[] }> {
  const object = await env.ARCHIVE_R2.get(`backups/${backupId}/manifest.json`);
  expect(object, `backups/${backupId}/manifest.json`).not.toBeNull();
  return object!.json();
}

describe("Basic Conversation Archiving", () => {
  it("archives a conversation to R2, retrieves it, and lists it among the user's archives", async () => {
    const sessionId = uniqueId("spec-basic");
    const userId = uniqueId("customer");
    const { memory, session } = supportChat(sessionId, userId);

    const service = new DataPersistenceService(bindings);

    // Archive a conversation
    const archiveKey = await service.archiveConversation(memory, session);

    // Retrieve archived conversation
    const archived = await service.retrieveArchivedConversation(sessionId);

    // List user's archived conversations
    const archives = await service.listArchivedConversations(userId, 20);

    written.archives_metadata++;
    written.archived_conversations++;
    expect(archiveKey).toMatch(new RegExp(`^conversations/\\d{4}/\\d{2}/archive_${sessionId}_\\d{13}\\.json\\.gz$`));
    expect(await env.ARCHIVE_R2.head(archiveKey)).not.toBeNull();
    expect(archived).toMatchObject({ sessionId, summary: memory.summary, context: memory.context });
    expect(archived?.messages).toEqual(memory.messages);
    expect(archived?.sessionState).toMatchObject({ id: sessionId, userId });
    expect(Array.isArray(archives)).toBe(true);
    expect(archives).toHaveLength(1);
    expect(archives[0]).toMatchObject({ sessionId, userId, key: archiveKey, messageCount: memory.messages.length, summary: memory.summary });
  });
});

describe("Embedding Caching", () => {
  const text = "To reset your password, choose “Forgot password?” on the sign-in page and follow the link we email you.";
  // An ada-002 embedding has 1536 dimensions.
  const embedding = Array.from({ length: 1536 }, (_, i) => Math.sin(i * 0.37 + 1) / 25);

  /** The spec's example, verbatim: the start of a lookup that goes on to compute the embedding on a miss. */
  async function embeddingCaching(): Promise<number[] | undefined> {
    // Cache an embedding
    await service.cacheEmbedding(text, embedding, {
      source: 'knowledge_base',
      model: 'text-embedding-ada-002'
    });

    // Retrieve cached embedding
    const cached = await service.getCachedEmbedding(text);
    if (cached) {
      console.log('Cache hit!');
      return cached;
    }
  }

  it("hits on a read that names no model, and never gives the vector to a read for another model", async () => {
    const log = vi.spyOn(console, "log");
    const cached = await embeddingCaching();
    written.embeddings++;
    expect(log).toHaveBeenCalledWith("Cache hit!");
    expect(cached).toEqual(embedding);

    expect(await service.getCachedEmbedding(text, 'text-embedding-ada-002')).toEqual(embedding);
    expect(await service.getCachedEmbedding(text, 'some-other-model')).toBeNull();
    const small = new DataPersistenceService(bindings, {}, { embeddingModel: 'text-embedding-3-small' });
    expect(await small.getCachedEmbedding(text)).toBeNull();
  });
});

describe("Query Result Caching", () => {
  it("answers the query from the cache with the result that was cached", async () => {
    const query = "How can I change the email address on my account?";
    const result = {
      answer: "Open Settings → Account, choose “Change email”, and confirm the new address from the email we send you.",
      sources: [{ id: "kb-142", title: "Change your account email" }],
      confidence: 0.95,
    };

    /** The spec's example, verbatim: the start of a handler that runs the expensive operation on a miss. */
    async function queryResultCaching(): Promise<unknown> {
      // Cache frequent query results
      await service.cacheFrequentQuery(query, result, {
        confidence: 0.95,
        source: 'support_bot'
      });

      // Check cache before expensive operations
      const cachedResult = await service.getCachedQueryResult(query);
      if (cachedResult) {
        return cachedResult;
      }
    }

    const answer = await queryResultCaching();
    written.queries++;
    expect(answer).toEqual(result);
  });
});

describe("Backup and Recovery", () => {
  it("backs up sessions none of which was archived: a backup id, restored as no session", async () => {
    const log = vi.spyOn(console, "log");

    // Create backup of multiple sessions
    const sessionIds = ['session1', 'session2', 'session3'];
    const backupId = await service.createBackup(sessionIds);

    // Restore from backup
    const restoredSessions = await service.restoreFromBackup(backupId);
    console.log(`Restored ${restoredSessions.length} sessions`);

    written.backups++;
    expect(backupId).toEqual(expect.any(String));
    const manifest = await backupManifest(backupId);
    expect(manifest.sessionIds).toEqual([]);
    expect([...manifest.missingSessionIds].sort()).toEqual(sessionIds);
    expect(restoredSessions).toEqual([]);
    expect(log).toHaveBeenCalledWith("Restored 0 sessions");
  });

  it("backs up and restores the two of three sessions that were archived", async () => {
    const [session1, session2, session3] = [uniqueId("session1"), uniqueId("session2"), uniqueId("session3")];
    const chats = [session1, session2].map((id) => supportChat(id, "customer-backups"));
    for (const { memory, session } of chats) {
      await service.archiveConversation(memory, session);
      written.archives_metadata++;
      written.archived_conversations++;
    }
    const log = vi.spyOn(console, "log");

    // Create backup of multiple sessions
    const sessionIds = [session1, session2, session3];
    const backupId = await service.createBackup(sessionIds);

    // Restore from backup
    const restoredSessions = await service.restoreFromBackup(backupId);
    console.log(`Restored ${restoredSessions.length} sessions`);

    written.backups++;
    expect(restoredSessions.length).toBe(2);
    expect([...restoredSessions].sort()).toEqual([session1, session2].sort());
    expect(log).toHaveBeenCalledWith("Restored 2 sessions");
    const manifest = await backupManifest(backupId);
    expect([...manifest.sessionIds].sort()).toEqual([session1, session2].sort());
    expect(manifest.missingSessionIds).toEqual([session3]);
    expect((await service.retrieveArchivedConversation(session2))?.messages).toEqual(chats[1]?.memory.messages);
  });
});

describe("Data Retention Management", () => {
  it("cleans up expired cache entries, archives past retention and old backups, and reports it", async () => {
    const DAY = 24 * 60 * 60 * 1000;
    const now = Date.now();
    const longAgo = Date.UTC(2020, 0, 15);
    // One of each kind the spec names, past its default policy (cache 24 h, archives and backups
    // 90 days). R2 records an object's upload time itself, so an old backup can only be its KV
    // manifest copy.
    const expiredQuery = `query:${hashText(uniqueId("expired query"))}`;
    await env.CHAT_KV.put(expiredQuery, "{}", { metadata: { createdAt: now - 2 * DAY, expiresAt: now - DAY } });
    const oldArchive = `conversations/2020/01/archive_${uniqueId("spec-old")}_${longAgo}.json.gz`;
    await env.ARCHIVE_R2.put(oldArchive, "x");
    const oldBackup = `backup_manifest:${uniqueId(`backup_${longAgo}`)}`;
    await env.CHAT_KV.put(oldBackup, "{}", { metadata: { createdAt: longAgo } });
    const sweep = vi.spyOn(service, "enforceRetentionPolicy");

    // Enforce retention policies (run periodically)
    await service.enforceRetentionPolicy();

    // This will:
    // - Clean up expired cache entries
    // - Remove old archives beyond retention period
    // - Clean up old backups

    const report = (await sweep.mock.results[0]?.value) as RetentionReport;
    expect(report).toMatchObject({ complete: true, stoppedBy: null, failedDeletions: 0, bytesFreed: expect.any(Number) });
    expect(report.deleted.expiredCacheEntry).toBeGreaterThanOrEqual(1);
    expect(report.deleted.archivePastRetention).toBeGreaterThanOrEqual(1);
    expect(report.deleted.backupPastRetention).toBeGreaterThanOrEqual(1);
    expect(Array.isArray(report.keys)).toBe(true);
    expect(await env.CHAT_KV.get(expiredQuery)).toBeNull();
    expect(await env.ARCHIVE_R2.head(oldArchive)).toBeNull();
    expect(await env.CHAT_KV.get(oldBackup)).toBeNull();
  });
});

describe("Integration with Durable Objects", () => {
  it("archives the session when it ends, restores it, and lists the user's archives", async () => {
    const sessionId = uniqueId("spec-do");
    const userId = uniqueId("customer");
    const { memory } = supportChat(sessionId, userId);
    const memoryDO = env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName(sessionId));
    // The chat as it happened: the first message makes `userId` the session's owner.
    for (const message of memory.messages) await memoryDO.addMessage(message, { userId, summary: memory.summary });

    // Archive session when it ends
    const archiveKey = await memoryDO.archiveSession();

    // Restore session from archive
    const restored = await memoryDO.restoreSession(sessionId);

    // List archived conversations
    const archives = await memoryDO.listArchivedConversations(userId);

    written.archives_metadata++;
    written.archived_conversations++;
    const ids = memory.messages.map((message) => message.id);
    expect(archiveKey).toMatch(new RegExp(`^conversations/\\d{4}/\\d{2}/archive_${sessionId}_\\d{13}\\.json\\.gz$`));
    const archived = await service.retrieveArchive(archiveKey);
    expect(archived?.messages.map((message) => message.id)).toEqual(ids);
    expect(archived?.sessionState?.userId).toBe(userId);
    expect(restored).toMatchObject({ sessionId, userId, status: "active", messageCount: ids.length, summary: memory.summary });
    expect(restored.recentMessages.map((message) => message.id)).toEqual(ids);
    expect(archives).toMatchObject({ listComplete: true });
    expect(archives.archives).toHaveLength(1);
    expect(archives.archives[0]).toMatchObject({ sessionId, userId, key: archiveKey, messageCount: ids.length, summary: memory.summary });
  });
});

describe("Health Check Endpoint", () => {
  it("reports both bindings healthy, with the time of the check", async () => {
    const log = vi.spyOn(console, "log");
    const before = Date.now();

    const integration = new DataPersistenceIntegration(bindings);

    // Health check
    const health = await integration.healthCheck();
    console.log(health);
    // {
    //   status: 'healthy',
    //   details: {
    //     r2_storage: 'healthy',
    //     kv_cache: 'healthy',
    //     timestamp: '2025-01-06T...'
    //   }
    // }

    expect(log).toHaveBeenCalledWith(health);
    expect(health).toMatchObject({
      status: 'healthy',
      details: {
        r2_storage: 'healthy',
        kv_cache: 'healthy',
        timestamp: expect.any(String),
      },
    });
    expect(new Date(health.details.timestamp).toISOString()).toBe(health.details.timestamp);
    expect(Date.parse(health.details.timestamp)).toBeGreaterThanOrEqual(before);
  });
});

describe("Storage Metrics", () => {
  it("counts cache entries, archives and backups, at least what these examples stored", async () => {
    // Get storage metrics
    const metrics = await integration.getStorageMetrics();
    console.log(metrics);
    // {
    //   cache: {
    //     embeddings: 150,
    //     queries: 75,
    //     archives_metadata: 25
    //   },
    //   storage: {
    //     archived_conversations: 100,
    //     backups: 5
    //   }
    // }

    expect(metrics).toMatchObject({
      cache: {
        embeddings: expect.any(Number),
        queries: expect.any(Number),
        archives_metadata: expect.any(Number),
      },
      storage: {
        archived_conversations: expect.any(Number),
        backups: expect.any(Number),
      },
      complete: true,
    });
    const counts = { ...metrics.cache, ...metrics.storage };
    for (const count of Object.values(counts)) expect(Number.isInteger(count) && count >= 0).toBe(true);
    for (const [name, stored] of Object.entries(written)) expect(counts[name as keyof typeof counts], name).toBeGreaterThanOrEqual(stored);
  });
});
