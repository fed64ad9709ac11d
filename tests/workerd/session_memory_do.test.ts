// SessionMemoryDO inside workerd, on SQLite-backed storage, archiving through the built package
// into the local KV and R2 of wrangler.toml.
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, policyFromEnv, type SessionMemoryDO } from "supportbot-persistence";

type Message = Parameters<SessionMemoryDO["addMessage"]>[0];

const service = new DataPersistenceService(env, policyFromEnv({ ...env }));
const policy = policyFromEnv({ ...env });

function stubFor(sessionId: string) {
  return env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName(sessionId));
}

function message(sessionId: string, n: number, role: Message["role"] = n % 2 ? "assistant" : "user"): Message {
  return { id: `${sessionId}-m${n}`, sessionId, role, content: `message ${n} about my invoice`, timestamp: 1_736_157_600_000 + n, metadata: { n } };
}

async function seed(sessionId: string, userId: string, count: number) {
  const stub = stubFor(sessionId);
  for (let n = 0; n < count; n++) await stub.addMessage(message(sessionId, n), { userId, summary: `summary of ${sessionId}` });
  return stub;
}

/** The code a SessionMemoryDO error carries across RPC ("CODE: message"). */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return /^([A-Z_]+): /.exec((error as Error).message)?.[1] ?? `uncoded: ${(error as Error).message}`;
  }
  return "resolved";
}

/** Makes `persistence()` of the object behind `stub` return `replacement(real)` until the object is evicted. */
async function patchPersistence(stub: DurableObjectStub<SessionMemoryDO>, replacement: (real: DataPersistenceService) => DataPersistenceService) {
  await runInDurableObject(stub, (instance: SessionMemoryDO) => {
    const target = instance as unknown as { persistence: () => DataPersistenceService };
    const real = target.persistence();
    target.persistence = () => replacement(real);
  });
}

describe("SessionMemoryDO messages and context", () => {
  it("stores the owner and state, returns summary and recent messages, ignores a retried id", async () => {
    const before = Date.now();
    const stub = await seed("do-context", "alice", 3);
    expect(await stub.addMessage(message("do-context", 2), { userId: "alice" })).toBe(3);
    const context = await stub.getContext({ limit: 2, userId: "alice" });
    expect(context).toMatchObject({ sessionId: "do-context", userId: "alice", status: "active", summary: "summary of do-context", messageCount: 3 });
    expect(context.createdAt).toBeGreaterThanOrEqual(before);
    expect(context.lastActivity).toBeGreaterThanOrEqual(context.createdAt);
    expect(context.recentMessages.map((m) => m.id)).toEqual(["do-context-m1", "do-context-m2"]);
    expect(context.recentMessages[0]?.metadata).toEqual({ n: 1 });
    // The inactivity alarm follows the last message by conversationTTL.
    const alarm = await runInDurableObject(stub, (_instance: SessionMemoryDO, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(context.lastActivity + policy.conversationTTL);
  });

  it("refuses another user, a foreign sessionId, bad messages and a missing session, with codes", async () => {
    const stub = await seed("do-owner", "alice", 1);
    expect(await codeOf(stub.addMessage(message("do-owner", 5), { userId: "bob" }))).toBe("FORBIDDEN");
    expect(await codeOf(stub.getContext({ userId: "bob" }))).toBe("FORBIDDEN");
    expect(await codeOf(stub.archiveSession({ userId: "bob" }))).toBe("FORBIDDEN");
    expect(await codeOf(stub.restoreSession("do-owner", { userId: "bob" }))).toBe("FORBIDDEN");
    expect(await codeOf(stub.addMessage(message("other-session", 1), { userId: "alice" }))).toBe("INVALID_INPUT");
    expect(await codeOf(stub.addMessage({ ...message("do-owner", 6), role: "robot" as never }))).toBe("INVALID_INPUT");
    expect(await codeOf(stubFor("do-never-used").getContext())).toBe("NOT_FOUND");
    expect((await stub.getContext({ userId: "alice" })).messageCount).toBe(1);
  });

  it("refuses at once what archiving would refuse later, storing nothing", async () => {
    const stub = stubFor("do-checked");
    const cases: [Message, { userId?: string }, string][] = [
      [{ ...message("do-checked", 0), timestamp: 9e15 }, {}, "INVALID_INPUT"],
      [{ ...message("do-checked", 0), metadata: "note" as never }, {}, "INVALID_INPUT"],
      [message("do-checked", 0), { userId: "line\nbreak" }, "INVALID_ID"],
      [message("a/b", 0), {}, "INVALID_ID"],
    ];
    for (const [bad, options, code] of cases) {
      const target = bad.sessionId === "a/b" ? stubFor("a/b") : stub;
      expect(await codeOf(target.addMessage(bad, options))).toBe(code);
      expect(await target.getSessionInfo()).toBeNull();
    }
    // Any user id the library takes is taken here too.
    expect(await stub.addMessage(message("do-checked", 0), { userId: "auth0|5f7c8ec7c33c6c004bbafe82" })).toBe(1);
  });
});

describe("SessionMemoryDO archive and restore", () => {
  it("archives verified, clears the messages, keeps the owner, and restores them", async () => {
    const stub = await seed("do-archive", "alice", 4);
    const key = await stub.archiveSession({ userId: "alice" });
    expect(key).toMatch(/archive_do-archive_\d{13}\.json/);
    const archived = await service.retrieveArchivedConversation("do-archive");
    expect(archived?.messages.map((m) => m.id)).toEqual([0, 1, 2, 3].map((n) => `do-archive-m${n}`));
    expect(archived?.sessionState?.userId).toBe("alice");
    expect(archived?.summary).toBe("summary of do-archive");

    const after = await stub.getContext({ userId: "alice" });
    expect(after).toMatchObject({ status: "archived", messageCount: 0, archiveKey: key, userId: "alice" });
    expect(await stub.archiveSession()).toBe(key);
    expect(await codeOf(stub.addMessage(message("do-archive", 9), { userId: "alice" }))).toBe("CONFLICT");
    expect(await codeOf(stub.addMessage(message("do-archive", 9), { userId: "mallory" }))).toBe("FORBIDDEN");

    const restored = await stub.restoreSession("do-archive", { userId: "alice" });
    expect(restored).toMatchObject({ status: "active", messageCount: 4, userId: "alice", summary: "summary of do-archive" });
    expect(restored.recentMessages.map((m) => m.id)).toEqual([0, 1, 2, 3].map((n) => `do-archive-m${n}`));
    expect(await codeOf(stub.restoreSession("do-archive", { userId: "alice" }))).toBe("CONFLICT");
    expect(await stub.addMessage(message("do-archive", 4), { userId: "alice" })).toBe(5);
  });

  it("keeps every message when the archive does not read back the same ids", async () => {
    const stub = await seed("do-unverified", "alice", 3);
    await patchPersistence(stub, (real) =>
      Object.assign(Object.create(real) as DataPersistenceService, {
        archiveConversation: real.archiveConversation.bind(real),
        retrieveArchivedConversation: real.retrieveArchivedConversation.bind(real),
        retrieveArchive: async (archiveKey: string) => {
          const back = await real.retrieveArchive(archiveKey);
          return back && { ...back, messages: back.messages.slice(1) };
        },
      }),
    );
    expect(await codeOf(stub.archiveSession({ userId: "alice" }))).toBe("ARCHIVE_UNVERIFIED");
    expect(await stub.getContext({ userId: "alice" })).toMatchObject({ status: "active", messageCount: 3 });
  });

  it("verifies and restores by its own archive key while KV's archive_meta still names the previous archive", async () => {
    const stub = await seed("do-stale-meta", "alice", 2);
    const firstKey = await stub.archiveSession({ userId: "alice" });
    const first = await service.retrieveArchivedConversation("do-stale-meta");
    expect(first?.messages).toHaveLength(2);
    await stub.restoreSession("do-stale-meta", { userId: "alice" });
    await stub.addMessage(message("do-stale-meta", 2), { userId: "alice" });
    // KV is eventually consistent: for up to a minute, archive_meta may still name the first archive.
    let staleReads = 0;
    await patchPersistence(stub, (real) =>
      Object.assign(Object.create(real) as DataPersistenceService, {
        archiveConversation: real.archiveConversation.bind(real),
        retrieveArchive: real.retrieveArchive.bind(real),
        retrieveArchivedConversation: async () => {
          staleReads++;
          return first;
        },
      }),
    );
    const secondKey = await stub.archiveSession({ userId: "alice" });
    expect(secondKey).not.toBe(firstKey);
    expect(await stub.getContext({ userId: "alice" })).toMatchObject({ status: "archived", messageCount: 0, archiveKey: secondKey });
    const restored = await stub.restoreSession("do-stale-meta", { userId: "alice" });
    expect(restored.recentMessages.map((m) => m.id)).toEqual([0, 1, 2].map((n) => `do-stale-meta-m${n}`));
    expect(staleReads).toBe(0);
  });

  it("restores the session's newest archive once its own archive is gone", async () => {
    const stub = await seed("do-own-gone", "alice", 2);
    const key = await stub.archiveSession({ userId: "alice" });
    await env.ARCHIVE_R2.delete(key);
    // The newest archive per KV, written by another path (e.g. restored from a backup).
    await service.archiveConversation(
      { sessionId: "do-own-gone", messages: [message("do-own-gone", 7)], summary: "from elsewhere" },
      { id: "do-own-gone", userId: "alice", status: "archived", createdAt: 1, lastActivity: 2 },
    );
    const restored = await stub.restoreSession("do-own-gone", { userId: "alice" });
    expect(restored).toMatchObject({ status: "active", messageCount: 1, summary: "from elsewhere" });
  });

  it("restores NOT_FOUND without an archive and lists a user's archives", async () => {
    expect(await codeOf(stubFor("do-no-archive").restoreSession("do-no-archive"))).toBe("NOT_FOUND");
    await (await seed("do-list-1", "lister", 1)).archiveSession();
    await (await seed("do-list-2", "lister", 2)).archiveSession();
    const page = await stubFor("do-list-1").listArchivedConversations("lister", { limit: 10 });
    expect(page.archives.map((a) => a.sessionId).sort()).toEqual(["do-list-1", "do-list-2"]);
    expect(page.listComplete).toBe(true);
  });
});

describe("SessionMemoryDO alarm", () => {
  async function makeIdle(stub: DurableObjectStub<SessionMemoryDO>) {
    await runInDurableObject(stub, (_instance: SessionMemoryDO, state) => {
      state.storage.sql.exec("UPDATE session SET last_activity = ?", Date.now() - policy.conversationTTL - 1000);
    });
  }
  const alarmOf = (stub: DurableObjectStub<SessionMemoryDO>) =>
    runInDurableObject(stub, (_instance: SessionMemoryDO, state) => state.storage.getAlarm());

  it("does not archive an active session before conversationTTL, and reschedules", async () => {
    const stub = await seed("do-alarm-early", "alice", 2);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await stub.getContext()).status).toBe("active");
    expect(await alarmOf(stub)).toBeGreaterThan(Date.now() + policy.conversationTTL - 60_000);
  });

  it("archives after conversationTTL of inactivity; a failure keeps the data and retries with backoff", async () => {
    const stub = await seed("do-alarm", "alice", 3);
    await makeIdle(stub);
    let failing = true;
    await patchPersistence(stub, (real) =>
      Object.assign(Object.create(real) as DataPersistenceService, {
        archiveConversation: async (...args: Parameters<DataPersistenceService["archiveConversation"]>) => {
          if (failing) throw Object.assign(new Error("R2 is down"), { name: "PersistenceError", code: "STORAGE_UNAVAILABLE" });
          return real.archiveConversation(...args);
        },
        retrieveArchivedConversation: real.retrieveArchivedConversation.bind(real),
        retrieveArchive: real.retrieveArchive.bind(real),
      }),
    );
    const firstRun = Date.now();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.getContext()).toMatchObject({ status: "active", messageCount: 3 });
    const firstRetry = (await alarmOf(stub)) ?? 0;
    expect(firstRetry - firstRun).toBeGreaterThanOrEqual(60_000);
    expect(firstRetry - firstRun).toBeLessThan(70_000);

    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const secondRetry = (await alarmOf(stub)) ?? 0;
    expect(secondRetry - Date.now()).toBeGreaterThan(110_000);
    expect(await service.retrieveArchivedConversation("do-alarm")).toBeNull();

    failing = false;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.getContext()).toMatchObject({ status: "archived", messageCount: 0 });
    expect((await service.retrieveArchivedConversation("do-alarm"))?.messages).toHaveLength(3);
    // The remaining row expires after archiveRetention.
    expect(await alarmOf(stub)).toBeGreaterThan(Date.now() + policy.archiveRetention - 60_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.getSessionInfo()).toBeNull();
  });

  it("stops retrying an archive that is refused, keeping the session readable", async () => {
    const stub = await seed("do-alarm-refused", "alice", 2);
    // A message stored before addMessage checked it against the archive's rules.
    await runInDurableObject(stub, (_instance: SessionMemoryDO, state) => {
      const stale = { ...message("do-alarm-refused", 9), timestamp: 9e15 };
      state.storage.sql.exec("INSERT INTO messages (id, body) VALUES (?, ?)", stale.id, JSON.stringify(stale));
    });
    await makeIdle(stub);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBeNull();
    expect(await stub.getContext()).toMatchObject({ status: "active", messageCount: 3 });
    expect(await codeOf(stub.archiveSession())).toBe("INVALID_INPUT");
    expect(await service.retrieveArchivedConversation("do-alarm-refused")).toBeNull();
  });
});
