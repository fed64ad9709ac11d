// The Rust → wasm → TypeScript path inside workerd, through the built package, with the real
// local bindings of wrangler.toml.
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, errorCodes, hashText, isPersistenceError, livenessReport, optionsFromEnv } from "supportbot-persistence";

describe("hashText in workerd", () => {
  // FIPS 180-2 examples.
  it("matches the published SHA-256 vectors", () => {
    expect(hashText("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(hashText("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hashText("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).toBe(
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
  });

  it("agrees with crypto.subtle on non-ASCII text", async () => {
    const text = "Grüße, 世界 🌍";
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(hashText(text)).toBe(hex);
  });
});

describe("errors crossing from Rust", () => {
  it("carry a stable code and are recognised by the guard", () => {
    let caught: unknown;
    try {
      livenessReport(Number.NaN);
    } catch (error) {
      caught = error;
    }
    expect(isPersistenceError(caught)).toBe(true);
    expect((caught as { code: string }).code).toBe("INVALID_INPUT");
    expect((caught as Error).message).toContain("nowMs");
    expect(isPersistenceError(new Error("plain"))).toBe(false);
  });

  it("configuration errors found in TypeScript are worded by the core, secrets withheld", () => {
    const messageOf = (vars: object) => {
      try {
        optionsFromEnv(vars);
      } catch (error) {
        expect(isPersistenceError(error) && error.code).toBe("INVALID_CONFIG");
        return (error as Error).message;
      }
      return "accepted";
    };
    expect(messageOf({ PERSISTENCE_DEBUG: "yes" })).toBe('Configuration failed: invalid configuration PERSISTENCE_DEBUG="yes": is not "true" or "false"');
    expect(messageOf({ PERSISTENCE_HASH_SECRET: 12345 })).toBe("Configuration failed: invalid configuration PERSISTENCE_HASH_SECRET: must be a string (a Worker secret)");
  });

  it("the TypeScript code list equals the Rust one", () => {
    expect(errorCodes()).toEqual([...ERROR_CODES]);
  });
});

describe("the example Worker", () => {
  // The vitest env has no AUTH_SECRET: the Worker must refuse rather than accept any token
  // (tests/workerd/worker.test.ts covers the routes with a secret).
  it("refuses every request with a coded 500 when AUTH_SECRET is not set", async () => {
    const response = await exports.default.fetch(new Request("http://example.com/health"));
    expect(response.status).toBe(500);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("INVALID_CONFIG");
    expect(body.error.message).toContain("AUTH_SECRET");
  });
});

describe("local bindings from wrangler.toml", () => {
  it("KV stores and lists with metadata", async () => {
    await env.CHAT_KV.put("foundation:probe", "v", { metadata: { n: 1 }, expirationTtl: 60 });
    expect(await env.CHAT_KV.get("foundation:probe")).toBe("v");
    const listed = await env.CHAT_KV.list({ prefix: "foundation:" });
    expect(listed.keys.map((k) => [k.name, k.metadata])).toEqual([["foundation:probe", { n: 1 }]]);
  });

  it("R2 rejects a body whose sha256 differs from the one declared", async () => {
    const body = new TextEncoder().encode("archive bytes");
    const sha256 = hashText("archive bytes");
    const stored = await env.ARCHIVE_R2.put("foundation/probe", body, { sha256 });
    expect(stored?.checksums.sha256 && [...new Uint8Array(stored.checksums.sha256)].length).toBe(32);
    await expect(env.ARCHIVE_R2.put("foundation/bad", body, { sha256: hashText("other") })).rejects.toThrow();
    expect(await env.ARCHIVE_R2.head("foundation/bad")).toBeNull();
  });

  it("the SessionMemoryDO keeps messages in SQLite storage, ignoring a retried id", async () => {
    const stub = env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName("session-1"));
    const message = { id: "m1", sessionId: "session-1", role: "user" as const, content: "hi", timestamp: 1 };
    expect(await stub.addMessage(message)).toBe(1);
    expect(await stub.addMessage(message)).toBe(1);
    expect(await stub.addMessage({ ...message, id: "m2", content: "again", timestamp: 2 })).toBe(2);
    const context = await stub.getContext({ limit: 1 });
    expect(context.messageCount).toBe(2);
    expect(context.recentMessages.map((m) => m.content)).toEqual(["again"]);
    const rejected = await stub.addMessage({ ...message, id: "m3", role: "robot" as never }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(String(rejected)).toMatch(/INVALID_INPUT: message.role: role robot/);
  });
});
