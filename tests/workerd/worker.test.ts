// The example Worker (js/example/worker.ts) inside workerd: configuration, tokens, routing, validation,
// per-user access control and the cron handler, against the local bindings of wrangler.toml.
import { env } from "cloudflare:workers";
import { createScheduledController, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { DataPersistenceService, SessionMemoryDO } from "supportbot-persistence";
import worker from "../../js/example/worker.js";
import { importAuthKey, signToken } from "../../js/example/auth.js";
import { OWN_RETENTION_CALLS, RETENTION_RETRY_ATTEMPTS, retentionCallBudget, type ExampleEnv } from "../../js/example/config.js";
import { HttpError, MAX_BODY_BYTES } from "../../js/example/http.js";
import { LAST_RUN_KEY } from "../../js/example/retention.js";
import { legacyBackupOwnerKey } from "../../js/example/routes.js";

const SECRET = "test-auth-secret-0123456789abcdef-0123456789";
const testEnv: ExampleEnv = { ...env, AUTH_SECRET: SECRET };
const key = await importAuthKey(SECRET);
const alice = await signToken(key, "alice");
const bob = await signToken(key, "bob");
const indexer = await signToken(key, "faq-indexer", 3600, Date.now(), "service");

interface Body {
  error?: { code: string; message: string };
  [field: string]: unknown;
}

async function call(method: string, path: string, token?: string, body?: unknown, useEnv: ExampleEnv = testEnv) {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  const response = await worker.fetch(new Request(`http://example.com${path}`, init), useEnv);
  return { status: response.status, headers: response.headers, body: (await response.json()) as Body };
}

describe("configuration", () => {
  it("answers every request 500 INVALID_CONFIG without AUTH_SECRET, never accepting a token", async () => {
    const unset: ExampleEnv = { ...env };
    for (const path of ["/health", "/metrics", "/sessions/s1/context"]) {
      const response = await call("GET", path, alice, undefined, unset);
      expect(response.status).toBe(500);
      expect(response.body.error?.code).toBe("INVALID_CONFIG");
      expect(response.body.error?.message).toContain("AUTH_SECRET");
    }
    const short = await call("GET", "/health", undefined, undefined, { ...env, AUTH_SECRET: "short" });
    expect([short.status, short.body.error?.code]).toEqual([500, "INVALID_CONFIG"]);
  });

  it("names a bad [vars] value on every request and in the cron handler", async () => {
    const bad: ExampleEnv = { ...testEnv, SESSION_TTL_HOURS: "a day" };
    const response = await call("GET", "/health", undefined, undefined, bad);
    expect(response.status).toBe(500);
    expect(response.body.error?.code).toBe("INVALID_CONFIG");
    expect(response.body.error?.message).toContain("SESSION_TTL_HOURS");
    await expect(worker.scheduled(createScheduledController({ cron: "0 */6 * * *" }), bad)).rejects.toThrow(/SESSION_TTL_HOURS/);
    const budget = await call("GET", "/health", undefined, undefined, { ...testEnv, RETENTION_STORAGE_CALLS: "lots" });
    expect(budget.body.error?.message).toContain("RETENTION_STORAGE_CALLS");
  });

  it("leaves every retried attempt room in RETENTION_STORAGE_CALLS, and refuses a budget too small to run", async () => {
    // (subrequests - 5 own calls) / attempts per call (the cron's service makes 2). The own
    // calls: the last sweep's time (get, put) and the three run reports (a put each).
    expect(OWN_RETENTION_CALLS).toBe(5);
    expect(RETENTION_RETRY_ATTEMPTS).toBe(2);
    expect(retentionCallBudget(undefined, 2)).toBe(20);
    expect(retentionCallBudget("1000", 2)).toBe(497);
    expect(retentionCallBudget("15", 2)).toBe(5);
    expect(retentionCallBudget("25", 4)).toBe(5);
    for (const value of ["5", "6", "14", "0", "-45", "4.5", "100001"]) {
      let thrown: unknown;
      try {
        retentionCallBudget(value, 2);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, value).toBeInstanceOf(HttpError);
      expect((thrown as HttpError).code).toBe("INVALID_CONFIG");
      expect((thrown as HttpError).message).toContain(`RETENTION_STORAGE_CALLS = "${value}": must be an integer in 15..=100000`);
    }
    const tooSmall: ExampleEnv = { ...testEnv, RETENTION_STORAGE_CALLS: "6" };
    const response = await call("GET", "/health", undefined, undefined, tooSmall);
    expect([response.status, response.body.error?.code]).toEqual([500, "INVALID_CONFIG"]);
    await expect(worker.scheduled(createScheduledController({ cron: "0 */6 * * *" }), tooSmall)).rejects.toThrow(/RETENTION_STORAGE_CALLS/);
  });
});

describe("tokens", () => {
  it("/health is public; everything else needs a valid token", async () => {
    const health = await call("GET", "/health");
    expect(health.status).toBe(200);
    expect(health.body.status).toBe("healthy");
    expect((await call("GET", "/metrics")).status).toBe(401);
    // Counts over every user's data, and a page of storage calls per 1000 keys: operators only.
    const refused = await call("GET", "/metrics", alice);
    expect([refused.status, refused.body.error?.code]).toEqual([403, "FORBIDDEN"]);
    const metrics = await call("GET", "/metrics", indexer);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toHaveProperty("storage");
    expect(metrics.body.complete).toBe(true);
  });

  it("rejects forged, tampered, expired and malformed tokens with 401", async () => {
    const forged = await signToken(await importAuthKey("another-secret-of-sufficient-length-000"), "alice");
    const [, aliceSignature] = alice.split(".");
    const [malloryPayload] = (await signToken(key, "mallory")).split(".");
    const tampered = `${malloryPayload}.${aliceSignature}`;
    const expired = await signToken(key, "alice", 60, Date.now() - 3600_000);
    const admin = await signToken(key, "alice", 3600, Date.now(), "admin" as never);
    for (const token of [forged, tampered, expired, admin, "not-a-token", `${alice}x`, ""]) {
      const response = await call("GET", "/users/alice/archives", token);
      expect(response.status, token).toBe(401);
      expect(response.body.error?.code).toBe("UNAUTHORIZED");
      expect(response.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
  });
});

describe("routing and validation", () => {
  it("404 for unknown routes, 405 with Allow for wrong methods", async () => {
    expect((await call("GET", "/nope", alice)).status).toBe(404);
    expect((await call("GET", "/sessions/s1", alice)).status).toBe(404);
    const wrong = await call("DELETE", "/sessions/s1/archive", alice);
    expect([wrong.status, wrong.body.error?.code, wrong.headers.get("allow")]).toEqual([405, "METHOD_NOT_ALLOWED", "POST, GET"]);
  });

  it("400 with a code naming the field; 413 past the size limit", async () => {
    const cases: [string, string, unknown, string, string][] = [
      ["POST", "/sessions/v1/messages", { role: "robot", content: "hi" }, "INVALID_INPUT", "body.role"],
      ["POST", "/sessions/v1/messages", { role: "user", content: "" }, "INVALID_INPUT", "body.content"],
      ["POST", "/sessions/v1/messages", { role: "user", content: "hi", colour: "red" }, "INVALID_INPUT", "body.colour"],
      ["POST", "/sessions/v1/messages", { role: "user", content: "hi", metadata: { deep: { a: 1 } } }, "INVALID_INPUT", "body.metadata.deep"],
      ["POST", "/sessions/v1/messages", "{not json", "INVALID_INPUT", "body"],
      ["POST", "/sessions/v1/messages", [1, 2], "INVALID_INPUT", "body"],
      ["POST", "/sessions/bad..id/messages", { role: "user", content: "hi" }, "INVALID_ID", "sessionId"],
      ["POST", "/sessions/a%2Fb/messages", { role: "user", content: "hi" }, "INVALID_ID", "sessionId"],
      ["POST", "/cache/embeddings", { text: "t", embedding: [1, "x"] }, "INVALID_INPUT", "body.embedding[1]"],
      ["POST", "/cache/queries", { query: "q" }, "INVALID_INPUT", "body.result"],
      ["POST", "/backups", { sessionIds: [] }, "INVALID_INPUT", "body.sessionIds"],
      ["GET", "/users/alice/archives?limit=0", undefined, "INVALID_INPUT", "limit"],
      ["GET", "/cache/queries", undefined, "INVALID_INPUT", "query"],
    ];
    for (const [method, path, body, code, field] of cases) {
      const token = method === "POST" && path.startsWith("/cache/") ? indexer : alice;
      const response = await call(method, path, token, body);
      expect(response.status, `${method} ${path}`).toBe(400);
      expect(response.body.error?.code, `${method} ${path}`).toBe(code);
      expect(response.body.error?.message, `${method} ${path}`).toContain(field);
    }
    const huge = await call("POST", "/sessions/v1/messages", alice, { role: "user", content: "x".repeat(MAX_BODY_BYTES) });
    expect([huge.status, huge.body.error?.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
  });
});

describe("sessions belong to their creator", () => {
  it("walks a session through messages, archive, listing, backup and restore; bob gets 403 throughout", async () => {
    const added = await call("POST", "/sessions/w-s1/messages", alice, { role: "user", content: "I cannot log in", summary: "login help" });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ sessionId: "w-s1", messageCount: 1 });
    await call("POST", "/sessions/w-s1/messages", alice, { role: "assistant", content: "Reset your password", metadata: { model: "m1" } });

    const context = await call("GET", "/sessions/w-s1/context?limit=5", alice);
    expect(context.status).toBe(200);
    expect(context.body).toMatchObject({ userId: "alice", summary: "login help", messageCount: 2, status: "active" });

    expect((await call("GET", "/sessions/w-s1/context", bob)).status).toBe(403);
    expect((await call("POST", "/sessions/w-s1/messages", bob, { role: "user", content: "mine now" })).status).toBe(403);
    expect((await call("POST", "/sessions/w-s1/archive", bob)).status).toBe(403);

    const archived = await call("POST", "/sessions/w-s1/archive", alice);
    expect(archived.status).toBe(200);
    expect(archived.body.archiveKey).toMatch(/archive_w-s1_/);

    const retrieved = await call("GET", "/sessions/w-s1/archive", alice);
    expect(retrieved.status).toBe(200);
    expect((retrieved.body.messages as unknown[]).length).toBe(2);
    expect((await call("GET", "/sessions/w-s1/archive", bob)).status).toBe(403);
    expect((await call("GET", "/sessions/w-nothing/archive", alice)).status).toBe(404);
    expect((await call("POST", "/sessions/w-s1/restore", bob)).status).toBe(403);

    const listed = await call("GET", "/users/alice/archives?limit=10", alice);
    expect(listed.status).toBe(200);
    expect((listed.body.archives as { sessionId: string }[]).map((a) => a.sessionId)).toContain("w-s1");
    expect((await call("GET", "/users/alice/archives", bob)).status).toBe(403);

    expect((await call("POST", "/backups", bob, { sessionIds: ["w-s1"] })).status).toBe(403);
    const partial = await call("POST", "/backups", alice, { sessionIds: ["w-s1", "w-never-archived"] });
    expect([partial.status, partial.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    const backup = await call("POST", "/backups", alice, { sessionIds: ["w-s1"] });
    expect(backup.status).toBe(201);
    const backupId = backup.body.backupId as string;
    // Made for alice: bob gets the answer for a backup that does not exist.
    const notBobs = await call("POST", `/backups/${backupId}/restore`, bob);
    expect([notBobs.status, notBobs.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    expect((await call("POST", "/backups/backup_missing/restore", alice)).status).toBe(404);
    const restoredBackup = await call("POST", `/backups/${backupId}/restore`, alice);
    expect(restoredBackup.status).toBe(200);
    expect(restoredBackup.body.restoredSessions).toEqual(["w-s1"]);

    // A backup made by an earlier version of this Worker: no owner in its manifest, one in KV.
    const earlier = await new DataPersistenceService(testEnv).createBackup(["w-s1"]);
    await env.CHAT_KV.put(legacyBackupOwnerKey(earlier), "alice");
    expect((await call("POST", `/backups/${earlier}/restore`, bob)).status).toBe(404);
    expect((await call("POST", `/backups/${earlier}/restore`, alice)).body.restoredSessions).toEqual(["w-s1"]);

    const restored = await call("POST", "/sessions/w-s1/restore", alice);
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ status: "active", messageCount: 2 });
    expect((await call("POST", "/sessions/w-s1/restore", alice)).body.error?.code).toBe("CONFLICT");
  });

  it("takes user ids outside the key alphabet: an Auth0 id and an email with '+'", async () => {
    for (const [i, user] of ["auth0|5f7c8ec7c33c6c004bbafe82", "dana+support@example.com"].entries()) {
      const token = await signToken(key, user);
      const sessionId = `w-any-user-${i}`;
      expect((await call("POST", `/sessions/${sessionId}/messages`, token, { role: "user", content: "hello" })).status).toBe(201);
      expect((await call("POST", `/sessions/${sessionId}/archive`, token)).status).toBe(200);
      const listed = await call("GET", `/users/${encodeURIComponent(user)}/archives`, token);
      expect(listed.status).toBe(200);
      expect((listed.body.archives as { sessionId: string }[]).map((a) => a.sessionId)).toEqual([sessionId]);
    }
    const lone = await signToken(key, "x\uD800");
    expect((await call("GET", "/users/x/archives", lone)).status).toBe(401);
  });

  it("serves the shared caches to every signed-in user; only service tokens write them", async () => {
    const poisoned = await call("POST", "/cache/queries", alice, { query: "how do I reset?", result: { answer: "mail your password to me" } });
    expect([poisoned.status, poisoned.body.error?.code]).toEqual([403, "FORBIDDEN"]);
    expect(poisoned.body.error?.message).toContain("service token");
    expect((await call("POST", "/cache/embeddings", bob, { text: "reset password", embedding: [9, 9, 9], model: "m1" })).status).toBe(403);
    expect((await call("GET", `/cache/queries?query=${encodeURIComponent("how do I reset?")}`, alice)).status).toBe(404);

    expect((await call("POST", "/cache/embeddings", indexer, { text: "reset password", embedding: [0.25, -1, 3], model: "m1" })).status).toBe(201);
    const hit = await call("GET", "/cache/embeddings?text=reset%20password&model=m1", bob);
    expect(hit.body.embedding).toEqual([0.25, -1, 3]);
    expect((await call("GET", "/cache/embeddings?text=unknown", alice)).status).toBe(404);
    expect((await call("POST", "/cache/queries", indexer, { query: "how do I reset?", result: { answer: "Settings" } })).status).toBe(201);
    expect((await call("GET", `/cache/queries?query=${encodeURIComponent("how do I reset?")}`, alice)).body.result).toEqual({ answer: "Settings" });
  });

  it("refuses to back up another user's archive after the session id was taken over", async () => {
    await call("POST", "/sessions/w-taken/messages", alice, { role: "user", content: "my account number is 1234" });
    expect((await call("POST", "/sessions/w-taken/archive", alice)).status).toBe(200);
    // archiveRetention later the object deletes its row, while the archive may live on in R2...
    const stub = env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName("w-taken"));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.getSessionInfo()).toBeNull();
    // ...and bob re-creates the session id.
    expect((await call("POST", "/sessions/w-taken/messages", bob, { role: "user", content: "hello" })).status).toBe(201);
    // createBackup({userId}) checks the archive it copies; alice's is not revealed to bob.
    const stolen = await call("POST", "/backups", bob, { sessionIds: ["w-taken"] });
    expect([stolen.status, stolen.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    expect(stolen.body.error?.message).toContain("archive of session w-taken owned by this user");
    expect((await call("GET", "/sessions/w-taken/archive", bob)).status).toBe(403);
  });

});

describe("one hash secret for the Worker and its SessionMemoryDO", () => {
  it("lists a session its SessionMemoryDO archived under PERSISTENCE_HASH_SECRET", async () => {
    const carol = await signToken(key, "carol");
    const secretEnv: ExampleEnv = { ...testEnv, PERSISTENCE_HASH_SECRET: "test-hash-secret-0123456789abcdef" };
    // The object as wrangler builds it, with the secret in its env (the test's binding has none).
    const stub = env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName("w-hashed"));
    await runInDurableObject(stub, async (_instance: SessionMemoryDO, state) => {
      const object = new SessionMemoryDO(state, secretEnv);
      await object.addMessage({ id: "w-hashed-m1", sessionId: "w-hashed", role: "user", content: "hi", timestamp: Date.now() }, { userId: "carol" });
      await object.archiveSession({ userId: "carol" });
    });
    const listed = await call("GET", "/users/carol/archives", carol, undefined, secretEnv);
    expect(listed.status).toBe(200);
    expect((listed.body.archives as { sessionId: string }[]).map((a) => a.sessionId)).toEqual(["w-hashed"]);
    // Keyed by HMAC, not by the plain SHA-256 a service without the secret uses.
    const plain = await call("GET", "/users/carol/archives", carol);
    expect(plain.body.archives).toEqual([]);
  });
});

describe("the cron handler", () => {
  it("runs retention once per cleanupInterval and logs one JSON line", async () => {
    await env.CHAT_KV.delete(LAST_RUN_KEY);
    const logged = vi.spyOn(console, "log");
    try {
      const controller = createScheduledController({ cron: "0 */6 * * *" });
      // The cron also starts this interval's backup (tests/workerd/backup_workflow.test.ts): one line each.
      const lastOf = (prefix: string) =>
        logged.mock.calls
          .map((call) => JSON.parse(String(call[0])) as { event?: string; storageCalls?: number })
          .filter((line) => line.event?.startsWith(prefix))
          .at(-1);
      await worker.scheduled(controller, testEnv);
      const first = lastOf("retention_")!;
      expect(first).toMatchObject({ event: "retention_run", cron: "0 */6 * * *", complete: true });
      expect(lastOf("backup_")).toMatchObject({ event: expect.stringMatching(/^backup_(started|skipped)$/) });
      // RETENTION_STORAGE_CALLS 45 = 5 own calls + 20 calls of up to 2 attempts each.
      expect(first.storageCalls).toBeLessThanOrEqual(20);
      expect(first).not.toHaveProperty("keys");
      expect(Number(await env.CHAT_KV.get(LAST_RUN_KEY))).toBeGreaterThan(Date.now() - 60_000);

      await worker.scheduled(controller, testEnv);
      const second = lastOf("retention_")!;
      expect(second).toMatchObject({ event: "retention_skipped", cleanupIntervalMs: 3_600_000 });
    } finally {
      logged.mockRestore();
    }
  });
});

describe("DELETE /users/:userId", () => {
  it("erases the caller's data and clears their sessions' Durable Objects; others get 403, bad ids 400", async () => {
    const erin = await signToken(key, "erin@example.com");
    const frank = await signToken(key, "frank");
    for (const sid of ["erase-live", "erase-archived"]) {
      expect((await call("POST", `/sessions/${sid}/messages`, erin, { role: "user", content: `secret of ${sid}` })).status).toBe(201);
    }
    expect((await call("POST", "/sessions/erase-archived/archive", erin)).status).toBe(200);
    expect((await call("POST", "/sessions/frank-1/messages", frank, { role: "user", content: "frank's" })).status).toBe(201);

    const refused = await call("DELETE", `/users/${encodeURIComponent("erin@example.com")}`, frank);
    expect([refused.status, refused.body.error?.code]).toEqual([403, "FORBIDDEN"]);
    const bad = await call("DELETE", "/users/%00", erin);
    expect([bad.status, bad.body.error?.code]).toEqual([400, "INVALID_ID"]);

    const erased = await call("DELETE", `/users/${encodeURIComponent("erin@example.com")}`, erin);
    expect(erased.status).toBe(200);
    expect(erased.body).toMatchObject({ complete: true, archivesDeleted: 1, sessionsCleared: 2 });
    expect(JSON.stringify(erased.body)).not.toContain("erin");
    // The Durable Objects no longer hold the sessions: a new first message starts afresh.
    for (const sid of ["erase-live", "erase-archived"]) {
      const context = await call("GET", `/sessions/${sid}/context`, erin);
      expect([context.status, context.body.error?.code]).toEqual([404, "NOT_FOUND"]);
    }
    const listed = await call("GET", `/users/${encodeURIComponent("erin@example.com")}/archives`, erin);
    expect(listed.body.archives).toEqual([]);
    expect((await call("GET", "/sessions/frank-1/context", frank)).status).toBe(200);
    // A service token may erase anyone; a second erasure is harmless.
    const again = await call("DELETE", `/users/${encodeURIComponent("erin@example.com")}`, indexer);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ complete: true, archivesDeleted: 0, sessionsCleared: 0 });
  });

  it("answers 202 with the receipt so far when the budget runs out, and the cron finishes it", async () => {
    const gina = await signToken(key, "gina");
    for (let i = 0; i < 4; i++) {
      await call("POST", `/sessions/gina-${i}/messages`, gina, { role: "user", content: `note ${i}` });
      expect((await call("POST", `/sessions/gina-${i}/archive`, gina)).status).toBe(200);
    }
    // 5 own calls + 10 calls of up to 2 attempts: the smallest budget an erasure accepts.
    const tight: ExampleEnv = { ...testEnv, RETENTION_STORAGE_CALLS: "25" };
    const partial = await call("DELETE", "/users/gina", gina, undefined, tight);
    expect(partial.status).toBe(202);
    expect(partial.body).toMatchObject({ complete: false, stoppedBy: "call_budget" });
    expect((await call("GET", "/users/gina/archives", gina)).body.archives).toEqual([]);
    await env.CHAT_KV.delete(LAST_RUN_KEY);
    const logged = vi.spyOn(console, "log");
    try {
      for (let run = 0; run < 5; run++) await worker.scheduled(createScheduledController({ cron: "0 */6 * * *" }), testEnv);
      const erasures = logged.mock.calls
        .map((line) => JSON.parse(String(line[0])) as { event?: string; receipts?: { complete: boolean; archivesDeleted: number }[] })
        .filter((line) => line.event === "erasures_run");
      expect(erasures.flatMap((line) => line.receipts ?? []).some((receipt) => receipt.complete)).toBe(true);
    } finally {
      logged.mockRestore();
    }
    const service = new DataPersistenceService(env);
    for (let i = 0; i < 4; i++) expect(await service.retrieveArchivedConversation(`gina-${i}`)).toBeNull();
  });
});
