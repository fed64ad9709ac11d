// The example Worker (js/worker.ts) inside workerd: configuration, tokens, routing, validation,
// per-user access control and the cron handler, against the local bindings of wrangler.toml.
import { env } from "cloudflare:workers";
import { createScheduledController } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import worker from "../../js/worker.js";
import { importAuthKey, signToken } from "../../js/example/auth.js";
import type { ExampleEnv } from "../../js/example/config.js";
import { MAX_BODY_BYTES } from "../../js/example/http.js";
import { LAST_RUN_KEY } from "../../js/example/retention.js";

const SECRET = "test-auth-secret-0123456789abcdef-0123456789";
const testEnv: ExampleEnv = { ...env, AUTH_SECRET: SECRET };
const key = await importAuthKey(SECRET);
const alice = await signToken(key, "alice");
const bob = await signToken(key, "bob");

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
});

describe("tokens", () => {
  it("/health is public; everything else needs a valid token", async () => {
    const health = await call("GET", "/health");
    expect(health.status).toBe(200);
    expect(health.body.status).toBe("healthy");
    expect((await call("GET", "/metrics")).status).toBe(401);
    const metrics = await call("GET", "/metrics", alice);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toHaveProperty("storage");
  });

  it("rejects forged, tampered, expired and malformed tokens with 401", async () => {
    const forged = await signToken(await importAuthKey("another-secret-of-sufficient-length-000"), "alice");
    const [, aliceSignature] = alice.split(".");
    const [malloryPayload] = (await signToken(key, "mallory")).split(".");
    const tampered = `${malloryPayload}.${aliceSignature}`;
    const expired = await signToken(key, "alice", 60, Date.now() - 3600_000);
    for (const token of [forged, tampered, expired, "not-a-token", `${alice}x`, ""]) {
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
      const response = await call(method, path, alice, body);
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
    const backup = await call("POST", "/backups", alice, { sessionIds: ["w-s1"] });
    expect(backup.status).toBe(201);
    const backupId = backup.body.backupId as string;
    expect((await call("POST", `/backups/${backupId}/restore`, bob)).status).toBe(403);
    expect((await call("POST", "/backups/backup_missing/restore", alice)).status).toBe(404);
    const restoredBackup = await call("POST", `/backups/${backupId}/restore`, alice);
    expect(restoredBackup.status).toBe(200);
    expect(restoredBackup.body.restoredSessions).toEqual(["w-s1"]);

    const restored = await call("POST", "/sessions/w-s1/restore", alice);
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ status: "active", messageCount: 2 });
    expect((await call("POST", "/sessions/w-s1/restore", alice)).body.error?.code).toBe("CONFLICT");
  });

  it("caches embeddings and query results for any signed-in user", async () => {
    expect((await call("POST", "/cache/embeddings", alice, { text: "reset password", embedding: [0.25, -1, 3], model: "m1" })).status).toBe(201);
    const hit = await call("GET", "/cache/embeddings?text=reset%20password&model=m1", bob);
    expect(hit.body.embedding).toEqual([0.25, -1, 3]);
    expect((await call("GET", "/cache/embeddings?text=unknown", alice)).status).toBe(404);
    expect((await call("POST", "/cache/queries", alice, { query: "how do I reset?", result: { answer: "Settings" } })).status).toBe(201);
    expect((await call("GET", `/cache/queries?query=${encodeURIComponent("how do I reset?")}`, alice)).body.result).toEqual({ answer: "Settings" });
  });
});

describe("the cron handler", () => {
  it("runs retention once per cleanupInterval and logs one JSON line", async () => {
    await env.CHAT_KV.delete(LAST_RUN_KEY);
    const logged = vi.spyOn(console, "log");
    try {
      const controller = createScheduledController({ cron: "0 */6 * * *" });
      await worker.scheduled(controller, testEnv);
      const first = JSON.parse(String(logged.mock.calls.at(-1)?.[0]));
      expect(first).toMatchObject({ event: "retention_run", cron: "0 */6 * * *", complete: true });
      expect(first.storageCalls).toBeLessThanOrEqual(45);
      expect(first).not.toHaveProperty("keys");
      expect(Number(await env.CHAT_KV.get(LAST_RUN_KEY))).toBeGreaterThan(Date.now() - 60_000);

      await worker.scheduled(controller, testEnv);
      const second = JSON.parse(String(logged.mock.calls.at(-1)?.[0]));
      expect(second).toMatchObject({ event: "retention_skipped", cleanupIntervalMs: 3_600_000 });
    } finally {
      logged.mockRestore();
    }
  });
});
