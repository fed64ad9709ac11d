// Exports and imports inside workerd, through the built package, against real local KV and R2:
// a person's export streams with memory that does not grow with their number of archives, a
// store export imported into a second pair of bindings reproduces every archive byte for byte
// (listing and retrieval work there), continued exports add up to one, and the example Worker's
// GET /users/:userId/export streams a person's own export and nobody else's.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, isPersistenceError, type ConversationMemory, type ExportEndLine, type ImportReport, type SessionState } from "supportbot-persistence";
import { initSync } from "../../dist/wasm/supportbot_persistence.js";
import worker from "../../js/example/worker.js";
import { importAuthKey, signToken } from "../../js/example/auth.js";
import type { ExampleEnv } from "../../js/example/config.js";

const KEK = { id: "k-export", key: btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => (i * 29 + 3) % 256))) };
const T0 = 1_736_157_600_000;
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The library's wasm linear memory, in bytes (it grows to its peak and never shrinks). */
function wasmMemoryBytes(): number {
  // initSync returns the instance the package already made (the same module, by path).
  return initSync({ module: new Uint8Array(0) }).memory.buffer.byteLength;
}

/** Deterministic text that gzip cannot shrink much (so the export is as large as it looks). */
function noise(seed: number, length: number): string {
  let state = seed >>> 0 || 1;
  let out = "";
  while (out.length < length) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out += (state >>> 0).toString(36);
  }
  return out.slice(0, length);
}

function conversation(sessionId: string, userId: string | undefined, seed: number, bytes: number): { memory: ConversationMemory; session: SessionState } {
  return {
    memory: {
      sessionId,
      messages: [
        { id: "m1", sessionId, role: "user", content: `invoice question ${noise(seed, bytes)}`, timestamp: T0 + seed },
        { id: "m2", sessionId, role: "assistant", content: "Let me check that for you.", timestamp: T0 + seed + 1_000 },
      ],
      summary: `Summary of ${sessionId}`,
      context: { seed },
    },
    session: { id: sessionId, ...(userId === undefined ? {} : { userId }), status: "ended", createdAt: T0 + seed, lastActivity: T0 + seed + 1_000 },
  };
}

/** Archives `count` conversations of `userId` (`prefix-<i>`), `parallel` at a time. */
async function archiveMany(service: DataPersistenceService, prefix: string, userId: string | undefined, count: number, bytes: number, parallel = 50): Promise<void> {
  for (let start = 0; start < count; start += parallel) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + parallel); i++) {
      const { memory, session } = conversation(`${prefix}-${i}`, userId, i, bytes);
      batch.push(service.archiveConversation(memory, session));
    }
    await Promise.all(batch);
  }
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The lines of an NDJSON export (each must end with a newline) and its end line, checked. */
async function verified(bytes: Uint8Array): Promise<{ lines: Record<string, unknown>[]; end: ExportEndLine }> {
  expect(bytes[bytes.length - 1]).toBe(10);
  const endStart = bytes.lastIndexOf(10, bytes.length - 2) + 1;
  const end = JSON.parse(text.decode(bytes.subarray(endStart))) as ExportEndLine;
  const lines = text
    .decode(bytes.subarray(0, endStart))
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(end.type).toBe("end");
  expect(end.count).toBe(lines.length);
  expect(end.sha256).toBe(await sha256Hex(bytes.subarray(0, endStart)));
  return { lines, end };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    expect(isPersistenceError(error), String(error)).toBe(true);
    return (error as { code: string }).code;
  }
}

/** Every object under `prefix`, by key: its bytes (as text of base64-free hex) and custom metadata. */
async function objects(bucket: R2Bucket, prefix: string): Promise<Map<string, { bytes: string; custom: Record<string, string> | undefined }>> {
  const found = new Map<string, { bytes: string; custom: Record<string, string> | undefined }>();
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, cursor, include: ["customMetadata"] });
    for (const object of page.objects) {
      const body = await bucket.get(object.key);
      const bytes = new Uint8Array(await body!.arrayBuffer());
      found.set(object.key, { bytes: await sha256Hex(bytes) + `:${bytes.length}`, custom: object.customMetadata });
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  return found;
}

describe("exportUserData", () => {
  it("streams 2000 archives in the memory it streams 200 in", async () => {
    const service = new DataPersistenceService(env);
    await archiveMany(service, "mem-small", "mem-small-user", 200, 4_000);
    await archiveMany(service, "mem-large", "mem-large-user", 2_000, 4_000);
    /** Reads a whole export a chunk at a time, keeping none; wasm memory once 1100 lines are out (two index pages listed). */
    const exportOf = async (userId: string) => {
      const reader = service.exportUserData(userId).getReader();
      let bytes = 0;
      let largestChunk = 0;
      let lines = 0;
      let atLine1100: number | undefined;
      let last: Uint8Array = new Uint8Array(0);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.length;
        largestChunk = Math.max(largestChunk, value.length);
        for (const byte of value) if (byte === 10) lines++;
        if (lines >= 1_100) atLine1100 ??= wasmMemoryBytes();
        last = value;
      }
      const tail = text.decode(last).trimEnd().split("\n").pop()!;
      return { bytes, largestChunk, lines, atLine1100, end: JSON.parse(tail) as ExportEndLine };
    };
    // The first export grows memory to what one export needs (a page of index entries, an
    // archive, a chunk).
    const small = await exportOf("mem-small-user");
    const afterSmall = wasmMemoryBytes();
    const large = await exportOf("mem-large-user");
    const afterLarge = wasmMemoryBytes();
    expect([small.end.count, small.lines]).toEqual([200, 201]);
    expect([large.end.count, large.lines]).toEqual([2_000, 2_001]);
    // Ten times the archives, ten times the bytes...
    expect(large.bytes).toBeGreaterThan(9 * small.bytes);
    expect(large.bytes).toBeGreaterThan(8 * 2 ** 20);
    // ...handed over in chunks of about 64 KiB, in about the memory of 200: what grows is the
    // index page, full (1000 entries, ~1 MiB in wasm) for the larger export, not by its count.
    // Had the export held its lines (9+ MiB), linear memory (which never shrinks) would have
    // grown by most of that, beyond what the first export left.
    expect(large.largestChunk).toBeLessThan(80 * 1024);
    expect(afterSmall).toBeLessThan(large.bytes / 2);
    expect(afterLarge - afterSmall).toBeLessThanOrEqual(1.5 * 1024 * 1024);
    // Past the first thousand archives (the largest page already held), nothing grows.
    expect(afterLarge - large.atLine1100!).toBeLessThanOrEqual(128 * 1024);
  }, 120_000);

  it("verifies and decrypts every archive, and refuses a bad user id", async () => {
    const service = new DataPersistenceService(env, {}, { encryptionKeys: [KEK] });
    await archiveMany(service, "enc-person", "enc-person", 30, 500, 10);
    await archiveMany(service, "enc-other", "enc-other", 3, 500);
    const { lines, end } = await verified(await collect(service.exportUserData("enc-person")));
    expect(end.count).toBe(30);
    for (const line of lines) {
      expect(line.type).toBe("conversation");
      const retrieved = await service.retrieveArchive(line.key as string);
      expect(line.conversation).toEqual(retrieved);
      expect((line.metadata as { summary: string }).summary).toBe(`Summary of ${line.sessionId as string}`);
      expect((line.key as string).endsWith(".json.gz.enc")).toBe(true);
    }
    expect(() => service.exportUserData("")).toThrow(/invalid userId/);
    expect(() => service.exportUserData(undefined as unknown as string)).toThrow(/userId: must be a string/);
  });
});

describe("exportStore and importStore", () => {
  const source = () => new DataPersistenceService({ CHAT_KV: env.CHAT_KV_EXPORT, ARCHIVE_R2: env.ARCHIVE_R2_EXPORT }, {}, { encryptionKeys: [KEK] });
  const target = () => new DataPersistenceService({ CHAT_KV: env.CHAT_KV_IMPORT, ARCHIVE_R2: env.ARCHIVE_R2_IMPORT }, {}, { encryptionKeys: [KEK] });
  const USERS = ["mig-ann", "mig-ben", "mig-cy"];

  it("moves every archive byte for byte into a second pair of bindings, where listing works", async () => {
    const from = source();
    for (const [i, userId] of USERS.entries()) await archiveMany(from, `mig-${i}`, userId, 12, 800);
    await archiveMany(from, "mig-anon", undefined, 3, 800);

    // Streamed straight from one store into the other.
    const into = target();
    const report: ImportReport = await into.importStore(from.exportStore());
    expect(report.complete && report.ended && report.exportComplete).toBe(true);
    // Three users' data keys and one per session without a user.
    expect([report.archivesWritten, report.objectsWritten, report.skippedErased]).toEqual([39, 6, 0]);

    for (const prefix of ["conversations/", "keys/"]) {
      const before = await objects(env.ARCHIVE_R2_EXPORT, prefix);
      const after = await objects(env.ARCHIVE_R2_IMPORT, prefix);
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [key, object] of before) expect(after.get(key), key).toEqual(object);
    }
    for (const userId of USERS) {
      const listed = Array.from(await into.listArchivedConversations(userId, 100));
      expect(listed.length).toBe(12);
      expect(listed).toEqual(Array.from(await from.listArchivedConversations(userId, 100)));
      for (const entry of listed) expect(await into.retrieveArchivedConversation(entry.sessionId)).toEqual(await from.retrieveArchivedConversation(entry.sessionId));
    }

    // Again: nothing is written twice; a dry run writes nothing either.
    const bytes = await collect(from.exportStore());
    const { end } = await verified(bytes);
    expect([end.complete, end.cursor]).toEqual([true, null]);
    const again = await into.importStore(new Response(bytes).body!);
    expect([again.archivesWritten, again.objectsWritten, again.indexEntriesWritten, again.archivesAlreadyPresent]).toEqual([0, 0, 0, 39]);
    const dry = await into.importStore(new Response(bytes).body!, { dryRun: true });
    expect([dry.dryRun, dry.archivesWritten, dry.archivesAlreadyPresent]).toEqual([true, 0, 39]);
  }, 60_000);

  it("continues by cursor, refuses a damaged line by number, and says when a stream was cut", async () => {
    const from = source();
    const whole = await collect(from.exportStore());
    const { lines: all } = await verified(whole);
    const parts: Record<string, unknown>[] = [];
    let cursor: string | undefined;
    let exports = 0;
    for (;;) {
      const { lines, end } = await verified(await collect(from.exportStore({ maxStorageCalls: 12, ...(cursor === undefined ? {} : { cursor }) })));
      parts.push(...lines);
      exports++;
      if (end.complete) break;
      expect(end.stoppedBy).toBe("call_budget");
      cursor = end.cursor!;
    }
    expect(exports).toBeGreaterThan(3);
    expect(parts).toEqual(all);

    const lines = text.decode(whole).split("\n");
    const k = lines.findIndex((line) => line.startsWith('{"type":"archive"')) + 2;
    const damaged = JSON.parse(lines[k - 1]!) as { archive: string };
    damaged.archive = (damaged.archive[0] === "A" ? "B" : "A") + damaged.archive.slice(1);
    const flipped = [...lines.slice(0, k - 1), JSON.stringify(damaged), ...lines.slice(k)].join("\n");
    const fresh = new DataPersistenceService({ CHAT_KV: env.CHAT_KV_IMPORT, ARCHIVE_R2: env.ARCHIVE_R2_IMPORT }, {}, { encryptionKeys: [KEK] });
    let error: unknown;
    try {
      await fresh.importStore(new Response(utf8.encode(flipped)).body!, { dryRun: true });
    } catch (caught) {
      error = caught;
    }
    expect((error as { code?: string }).code).toBe("CHECKSUM_MISMATCH");
    expect(String(error)).toContain(`line ${k}`);
    expect(await codeOf(fresh.importStore(new Response("not json\n").body!))).toBe("CORRUPT_DATA");
    const headless = await fresh.importStore(new Response(utf8.encode(lines.slice(0, 3).join("\n") + "\n")).body!, { dryRun: true });
    expect([headless.ended, headless.complete]).toEqual([false, false]);
    expect(await codeOf(fresh.importStore(new Response(whole).body!, { maxStorageCalls: 3 }))).toBe("INVALID_INPUT");
    expect(() => from.exportStore({ cursor: "not-a-cursor" })).toThrow(/cursor/);
  }, 60_000);
});

describe("GET /users/:userId/export", () => {
  const SECRET = "test-auth-secret-0123456789abcdef-0123456789";
  const testEnv: ExampleEnv = { ...env, AUTH_SECRET: SECRET };

  it("streams the user's own export as NDJSON, to them or a service token; 403 for others, 400 for a bad id", async () => {
    const key = await importAuthKey(SECRET);
    const [dana, eve, service] = await Promise.all([signToken(key, "http-dana"), signToken(key, "http-eve"), signToken(key, "exporter", 3600, Date.now(), "service")]);
    await archiveMany(new DataPersistenceService(env), "http-dana", "http-dana", 3, 300);
    const get = (path: string, token: string) => worker.fetch(new Request(`http://example.com${path}`, { headers: { authorization: `Bearer ${token}` } }), testEnv);

    for (const token of [dana, service]) {
      const response = await get("/users/http-dana/export", token);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("application/x-ndjson");
      expect(response.headers.get("content-disposition")).toBe('attachment; filename="supportbot-export-http-dana.ndjson"');
      const { lines, end } = await verified(new Uint8Array(await response.arrayBuffer()));
      expect(end.count).toBe(3);
      expect(lines.every((line) => (line.metadata as { userId: string }).userId === "http-dana")).toBe(true);
    }
    const forbidden = await get("/users/http-dana/export", eve);
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { error: { code: string } }).error.code).toBe("FORBIDDEN");
    const bad = await get("/users/%01/export", dana);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("INVALID_ID");
  });
});
