// Encryption at rest inside workerd, through the built package, against the real local KV and
// R2: nothing of a conversation is stored readable (archives, summaries, backups), everything
// reads back, tampering is an error with a code, one data key per owner under concurrency, and
// an archive decrypts with WebCrypto alone, following docs/FORMAT.md ("Encryption").
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  DataPersistenceService,
  isPersistenceError,
  type ArchivedConversation,
  type ConversationMemory,
  type SessionState,
} from "supportbot-persistence";

const KEK_ID = "k-workerd-2026";
const KEK = btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256)));
const T0 = 1_736_157_600_000;

function encrypted(): DataPersistenceService {
  return new DataPersistenceService(env, {}, { encryptionKeys: [{ id: KEK_ID, key: KEK }] });
}

/** A conversation of `sessionId` whose messages, summary and context each hold `marker`. */
function marked(sessionId: string, userId: string | undefined, marker: string): { memory: ConversationMemory; session: SessionState } {
  return {
    memory: {
      sessionId,
      messages: [
        { id: "m1", sessionId, role: "user", content: `my order ${marker} never arrived`, timestamp: T0 },
        { id: "m2", sessionId, role: "assistant", content: "A replacement is on its way.", timestamp: T0 + 5_000 },
      ],
      summary: `Customer ${marker} asked about a refund`,
      context: { note: `address ${marker}` },
    },
    session: { id: sessionId, ...(userId === undefined ? {} : { userId }), status: "closed", createdAt: T0, lastActivity: T0 + 5_000 },
  };
}

/** What retrieving the archive of `marked(...)` gives back. */
function expected({ memory, session }: { memory: ConversationMemory; session: SessionState }): ArchivedConversation {
  return JSON.parse(JSON.stringify({ ...memory, sessionState: session })) as ArchivedConversation;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    const value = await promise;
    return `resolved: ${JSON.stringify(value)?.slice(0, 200)}`;
  } catch (error) {
    expect(isPersistenceError(error), String(error)).toBe(true);
    return (error as { code: string }).code;
  }
}

// --- bytes ---------------------------------------------------------------------------------

const utf8 = (text: string) => new TextEncoder().encode(text);
const latin1 = (bytes: Uint8Array) => {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return text;
};
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) (out.set(part, at), (at += part.length));
  return out;
}
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}
async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// --- the scan ------------------------------------------------------------------------------

/**
 * Whether `bytes` show `marker` in a readable form: as is, base64-encoded at each of the three
 * alignments, inflated when they are gzip, and inside any base64 run that decodes to gzip (an
 * archive as a backup pack holds it).
 */
async function reveals(bytes: Uint8Array, marker: string, depth = 0): Promise<boolean> {
  const text = latin1(bytes);
  if (text.includes(marker)) return true;
  for (let shift = 0; shift < 3; shift++) {
    const encoded = btoa("x".repeat(shift) + marker);
    // The characters that depend on the marker alone.
    const core = encoded.slice(Math.ceil((shift * 4) / 3) + 1, encoded.length - 4);
    if (text.includes(core)) return true;
  }
  if (depth > 2) return false;
  const inflatable: Uint8Array[] = [];
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) inflatable.push(bytes);
  for (const run of text.match(/[A-Za-z0-9+/]{24,}={0,2}/g) ?? []) {
    if (!run.startsWith("H4sI")) continue; // base64 of 1f 8b 08
    try {
      inflatable.push(fromBase64(run));
    } catch {
      // not base64 after all
    }
  }
  for (const candidate of inflatable) {
    let inflated: Uint8Array;
    try {
      inflated = await gunzip(candidate);
    } catch {
      continue;
    }
    if (await reveals(inflated, marker, depth + 1)) return true;
  }
  return false;
}

interface Scanned {
  places: Map<string, Uint8Array>;
  r2Keys: string[];
  kvKeys: string[];
}

/** Every R2 body and customMetadata value and every KV value and metadata, by place. */
async function scanEverything(): Promise<Scanned> {
  const places = new Map<string, Uint8Array>();
  const r2Keys: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await env.ARCHIVE_R2.list({ cursor, include: ["customMetadata", "httpMetadata"] });
    for (const listed of page.objects) {
      r2Keys.push(listed.key);
      const object = await env.ARCHIVE_R2.get(listed.key);
      expect(object, listed.key).not.toBeNull();
      places.set(`R2 ${listed.key} body`, new Uint8Array(await object!.arrayBuffer()));
      for (const [name, value] of Object.entries(object!.customMetadata ?? {})) {
        places.set(`R2 ${listed.key} customMetadata.${name}`, utf8(value));
      }
    }
    if (!page.truncated) break;
    cursor = page.cursor;
  }
  const kvKeys: string[] = [];
  let kvCursor: string | undefined;
  for (;;) {
    const page = await env.CHAT_KV.list({ cursor: kvCursor });
    for (const key of page.keys) {
      kvKeys.push(key.name);
      const { value, metadata } = await env.CHAT_KV.getWithMetadata(key.name, "arrayBuffer");
      places.set(`KV ${key.name} value`, new Uint8Array(value ?? new ArrayBuffer(0)));
      if (metadata !== null) places.set(`KV ${key.name} metadata`, utf8(JSON.stringify(metadata)));
      if (key.metadata !== undefined) places.set(`KV ${key.name} list metadata`, utf8(JSON.stringify(key.metadata)));
    }
    if (page.list_complete) break;
    kvCursor = page.cursor;
  }
  return { places, r2Keys, kvKeys };
}

async function placesRevealing(scanned: Scanned, marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const [place, bytes] of scanned.places) if (await reveals(bytes, marker)) found.push(place);
  return found;
}

/** Deletes every archive object and archive KV entry; data keys and backups stay. */
async function loseAllArchives(): Promise<void> {
  let listed = await env.ARCHIVE_R2.list({ prefix: "conversations/" });
  for (;;) {
    if (listed.objects.length > 0) await env.ARCHIVE_R2.delete(listed.objects.map((o) => o.key));
    if (!listed.truncated) break;
    listed = await env.ARCHIVE_R2.list({ prefix: "conversations/", cursor: listed.cursor });
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

// --- an independent decryption, written from docs/FORMAT.md ("Encryption") -------------------

/** Opens an envelope stored under `storageKey` for `sessionId`, with the KEK alone. */
async function openEnvelope(kekBase64: string, bucket: R2Bucket, blob: Uint8Array, storageKey: string, sessionId: string): Promise<Uint8Array> {
  if (latin1(blob.subarray(0, 4)) !== "SBPE" || blob[4] !== 1) throw new Error("not an SBPE v1 envelope");
  const n = blob[5]!;
  const reference = latin1(blob.subarray(6, 6 + n));
  const dekId = blob.subarray(6 + n, 22 + n);
  const nonce = blob.subarray(22 + n, 34 + n);
  const keyObject = `keys/${reference}.json`;
  const wrapped = await (await bucket.get(keyObject))!.json<{ dekId: string; kekId: string; nonce: string; wrappedKey: string }>();
  if (wrapped.dekId !== hex(dekId)) throw new Error("the data key was replaced");
  const aesGcm = (raw: BufferSource) => crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
  const wrapAad = concat(utf8("supportbot-persistence/data-key/v1"), [0], utf8(keyObject), [0], utf8(wrapped.dekId), [0], utf8(wrapped.kekId));
  const dek = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: fromBase64(wrapped.nonce), additionalData: wrapAad },
    await aesGcm(fromBase64(kekBase64)),
    fromBase64(wrapped.wrappedKey),
  );
  const aad = concat(blob.subarray(0, 34 + n), utf8(storageKey), [0], utf8(sessionId));
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, await aesGcm(dek), blob.subarray(34 + n)));
}

/** The conversation of the encrypted archive under `archiveKey`: decrypt, gunzip, parse. */
async function decryptArchive(kekBase64: string, bucket: R2Bucket, archiveKey: string): Promise<unknown> {
  const blob = new Uint8Array(await (await bucket.get(archiveKey))!.arrayBuffer());
  const sessionId = /\/archive_(.+)_\d{13}\.json\.gz\.enc$/.exec(archiveKey)![1]!;
  const gzipped = await openEnvelope(kekBase64, bucket, blob, archiveKey, sessionId);
  return JSON.parse(new TextDecoder().decode(await gunzip(gzipped))).conversation;
}

// --- tests ---------------------------------------------------------------------------------

describe("the scan", () => {
  it("finds a marker as is, in base64 at every alignment, in gzip, and in base64 of gzip", async () => {
    const marker = "MARKER-scan-7f3a9c";
    expect(await reveals(utf8(`a ${marker} b`), marker)).toBe(true);
    for (const prefix of ["", "a", "ab"]) expect(await reveals(utf8(btoa(`${prefix}${marker} and more`)), marker), prefix).toBe(true);
    const gzipped = await gzip(utf8(`{"summary":"${marker}"}`));
    expect(await reveals(gzipped, marker)).toBe(true);
    expect(await reveals(utf8(`{"archive":"${btoa(latin1(gzipped))}"}`), marker)).toBe(true);
    expect(await reveals(utf8("nothing here"), marker)).toBe(false);
    expect(await reveals(await gzip(utf8("nothing here either")), marker)).toBe(false);
  });
});

describe("encryption at rest", () => {
  it("stores no conversation text readable, in archives, summaries and backups, and restores what was archived", async () => {
    const service = encrypted();
    const cases = [
      { sid: "enc-alice-1", user: "alice@example.com", marker: "MARKER-a1c3e9" },
      { sid: "enc-alice-2", user: "alice@example.com", marker: "MARKER-a2d4f0" },
      { sid: "enc-anon", user: undefined, marker: "MARKER-e5f6a7" },
    ];
    const keys: string[] = [];
    for (const { sid, user, marker } of cases) {
      const { memory, session } = marked(sid, user, marker);
      const key = await service.archiveConversation(memory, session);
      expect(key).toMatch(new RegExp(`^conversations/\\d{4}/\\d{2}/archive_${sid}_\\d{13}\\.json\\.gz\\.enc$`));
      keys.push(key);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const sids = cases.map((c) => c.sid);
    const originals = await Promise.all(sids.map((sid) => service.retrieveArchivedConversation(sid)));
    cases.forEach((c, i) => expect(originals[i]).toEqual(expected(marked(c.sid, c.user, c.marker))));

    const listAlice = async () => [...(await service.listArchivedConversations("alice@example.com", 10))];
    const aliceBefore = await listAlice();
    expect(aliceBefore.map((a) => a.summary)).toEqual(["Customer MARKER-a2d4f0 asked about a refund", "Customer MARKER-a1c3e9 asked about a refund"]);
    expect(aliceBefore.every((a) => !("encryptedSummary" in a))).toBe(true);
    const everyone = await service.listArchivedConversations(undefined, 10);
    expect(everyone.map((a) => a.sessionId)).toEqual(["enc-anon", "enc-alice-2", "enc-alice-1"]);
    expect(everyone[0]!.summary).toBe("Customer MARKER-e5f6a7 asked about a refund");

    const backupId = await service.createBackup(sids);
    const scanned = await scanEverything();
    // What the scan saw: the three encrypted archives, two data keys, a backup, the KV entries.
    expect(scanned.r2Keys.filter((k) => k.startsWith("conversations/")).sort()).toEqual([...keys].sort());
    expect(scanned.r2Keys.filter((k) => k.startsWith("keys/")).sort()).toEqual([
      "keys/sessions/enc-anon.json",
      expect.stringMatching(/^keys\/users\/[0-9a-f]{64}\.json$/),
    ]);
    expect(scanned.r2Keys.filter((k) => k.startsWith(`backups/${backupId}/`))).toEqual([
      `backups/${backupId}/manifest.json`,
      `backups/${backupId}/pack-0.json`,
    ]);
    expect(scanned.kvKeys.filter((k) => k.startsWith("archive_meta:")).sort()).toEqual(sids.map((s) => `archive_meta:${s}`).sort());
    const record = JSON.parse(latin1(scanned.places.get("KV archive_meta:enc-alice-1 value")!)) as Record<string, unknown>;
    expect(record.summary).toBe("");
    expect(record.encryptedSummary).toMatch(/^U0JQRQ/); // base64 of "SBPE"
    expect(record.userId).toBe("alice@example.com"); // documented as plain
    for (const { marker } of cases) expect(await placesRevealing(scanned, marker), marker).toEqual([]);
    // The same scan does see a plaintext summary: what the KV listing metadata would say unencrypted.
    expect(await reveals(utf8(JSON.stringify(aliceBefore[0])), "MARKER-a2d4f0")).toBe(true);
    const stored = await env.ARCHIVE_R2.head(keys[0]!);
    expect(stored?.httpMetadata?.contentType).toBe("application/octet-stream");
    expect(Object.keys(stored?.customMetadata ?? {}).sort()).toEqual(["archivedAt", "duration", "formatVersion", "messageCount", "rawSize", "sessionId", "sha256", "userKey"]);
    const storedBytes = await Promise.all(keys.map(async (k) => new Uint8Array(await (await env.ARCHIVE_R2.get(k))!.arrayBuffer())));
    expect(stored?.customMetadata?.sha256).toBe(await sha256Hex(storedBytes[0]!));

    await loseAllArchives();
    expect(await service.retrieveArchivedConversation("enc-alice-1")).toBeNull();
    expect([...(await service.listArchivedConversations("alice@example.com", 10))]).toEqual([]);
    expect((await service.restoreFromBackup(backupId)).sort()).toEqual([...sids].sort());
    const restored = await Promise.all(sids.map((sid) => service.retrieveArchivedConversation(sid)));
    expect(restored).toEqual(originals);
    expect(await listAlice()).toEqual(aliceBefore);
    // A service with an empty key cache (another isolate) reads them too.
    expect(await encrypted().retrieveArchivedConversation("enc-anon")).toEqual(originals[2]);
    for (const [i, key] of keys.entries()) {
      const object = await env.ARCHIVE_R2.get(key);
      expect(new Uint8Array(await object!.arrayBuffer()), `${key} restored as stored`).toEqual(storedBytes[i]);
      expect(object!.httpMetadata?.contentType).toBe("application/octet-stream");
    }
    const after = await scanEverything();
    for (const { marker } of cases) expect(await placesRevealing(after, marker), marker).toEqual([]);
  });

  it("refuses a tampered or moved archive with a code, never other data", async () => {
    const service = encrypted();
    const { memory, session } = marked("enc-tamper", "dave", "MARKER-t1");
    const key = await service.archiveConversation(memory, session);
    const other = marked("enc-tamper-other", "dave", "MARKER-t2");
    const otherKey = await service.archiveConversation(other.memory, other.session);
    const original = await env.ARCHIVE_R2.get(key);
    const body = new Uint8Array(await original!.arrayBuffer());
    const customMetadata = original!.customMetadata!;

    /** Stores `bytes` under `archiveKey`; with `consistent`, records their SHA-256 in R2 and KV, as an attacker with write access would. */
    async function putRaw(archiveKey: string, bytes: Uint8Array, consistent: boolean): Promise<void> {
      const sha256 = await sha256Hex(bytes);
      const current = await env.ARCHIVE_R2.head(archiveKey);
      await env.ARCHIVE_R2.put(archiveKey, bytes, {
        customMetadata: { ...current!.customMetadata, ...(consistent ? { sha256 } : {}) },
        httpMetadata: current!.httpMetadata,
        ...(consistent ? { sha256 } : {}),
      });
      const sessionId = /\/archive_(.+)_\d{13}\.json\.gz\.enc$/.exec(archiveKey)![1]!;
      const { value, metadata } = await env.CHAT_KV.getWithMetadata<Record<string, unknown>>(`archive_meta:${sessionId}`, "json");
      const record = value as Record<string, unknown>;
      expect(record.key).toBe(archiveKey);
      if (consistent) await env.CHAT_KV.put(`archive_meta:${sessionId}`, JSON.stringify({ ...record, sha256 }), { metadata });
    }
    /** The code of both ways of reading `archiveKey` (they must agree). */
    async function readCode(sessionId: string, archiveKey: string): Promise<string> {
      const bySession = await codeOf(service.retrieveArchivedConversation(sessionId));
      expect(await codeOf(service.retrieveArchive(archiveKey)), archiveKey).toBe(bySession);
      return bySession;
    }

    const n = body[5]!;
    expect(latin1(body.subarray(6, 6 + n))).toMatch(/^users\/[0-9a-f]{64}$/);
    const positions: [string, number, string][] = [
      ["magic", 0, "CORRUPT_DATA"],
      ["version", 4, "UNSUPPORTED_FORMAT"],
      ["DEK id", 6 + n + 3, "KEY_UNAVAILABLE"],
      ["nonce", 22 + n + 5, "DECRYPTION_FAILED"],
      ["ciphertext, first byte", 34 + n, "DECRYPTION_FAILED"],
      ["ciphertext, middle", Math.floor((34 + n + body.length - 16) / 2), "DECRYPTION_FAILED"],
      ["tag, first byte", body.length - 16, "DECRYPTION_FAILED"],
      ["tag, last byte", body.length - 1, "DECRYPTION_FAILED"],
    ];
    for (const [what, position, code] of positions) {
      const flipped = body.slice();
      flipped[position]! ^= 0x01;
      // Checksum left as recorded: caught before anything is decrypted.
      await putRaw(key, flipped, false);
      expect(await readCode("enc-tamper", key), `${what}, checksum kept`).toBe("CHECKSUM_MISMATCH");
      // Checksum updated everywhere: decryption (or the header) must refuse it.
      await putRaw(key, flipped, true);
      expect(await readCode("enc-tamper", key), `${what}, checksum updated`).toBe(code);
    }
    // A header byte of the key reference: names no key, or another owner's missing one.
    const reference = body.slice();
    reference[6 + n - 1]! ^= 0x01;
    await putRaw(key, reference, true);
    expect(["KEY_UNAVAILABLE", "CORRUPT_DATA"]).toContain(await readCode("enc-tamper", key));

    // Intact ciphertext, copied to another session's archive key (same user, same data key).
    await putRaw(key, body, true);
    expect(await service.retrieveArchivedConversation("enc-tamper")).toEqual(expected({ memory, session }));
    await putRaw(otherKey, body, true);
    expect(await readCode("enc-tamper-other", otherKey)).toBe("DECRYPTION_FAILED");
    // ... and to another time of the same session.
    const later = key.replace(/_(\d{13})\.json\.gz\.enc$/, (_, ms: string) => `_${String(Number(ms) + 1).padStart(13, "0")}.json.gz.enc`);
    await env.ARCHIVE_R2.put(later, body, { customMetadata, sha256: await sha256Hex(body) });
    expect(await codeOf(service.retrieveArchive(later))).toBe("DECRYPTION_FAILED");
    // An encrypted summary moved into another archive's index entry is not shown as its summary.
    const { metadata: tamperedListing } = await env.CHAT_KV.getWithMetadata<{ encryptedSummary: string }>("archive_meta:enc-tamper");
    const index = await env.CHAT_KV.list<Record<string, unknown>>({ prefix: "archive_index:" });
    const entry = index.keys.find((k) => k.metadata?.sessionId === "enc-tamper-other");
    expect(entry).toBeDefined();
    await env.CHAT_KV.put(entry!.name, otherKey, { metadata: { ...entry!.metadata, encryptedSummary: tamperedListing!.encryptedSummary } });
    const listed = await service.listArchivedConversations(undefined, 1000);
    const moved = listed.find((a) => a.sessionId === "enc-tamper-other" && a.key === otherKey);
    expect(moved).toBeDefined();
    expect(moved!.summary).toBeUndefined();
    expect((moved as unknown as { encryptedSummary?: string }).encryptedSummary).toMatch(/^U0JQRQ/);
  });

  it("makes one data key for 20 concurrent first archives of a new user", async () => {
    const before = await env.ARCHIVE_R2.list({ prefix: "keys/users/" });
    // Two services: two isolates' key caches.
    const services = [encrypted(), encrypted()];
    const sids = Array.from({ length: 20 }, (_, i) => `enc-concurrent-${i}`);
    const keys = await Promise.all(
      sids.map((sid, i) => {
        const { memory, session } = marked(sid, "new-user-concurrent", `MARKER-c${i}`);
        return services[i % 2]!.archiveConversation(memory, session);
      }),
    );
    const after = await env.ARCHIVE_R2.list({ prefix: "keys/users/" });
    const made = after.objects.map((o) => o.key).filter((k) => !before.objects.some((b) => b.key === k));
    expect(made).toHaveLength(1);
    const wrapped = await (await env.ARCHIVE_R2.get(made[0]!))!.json<{ dekId: string }>();
    for (const key of keys) {
      const body = new Uint8Array(await (await env.ARCHIVE_R2.get(key))!.arrayBuffer());
      const n = body[5]!;
      expect(`keys/${latin1(body.subarray(6, 6 + n))}.json`, key).toBe(made[0]);
      expect(hex(body.subarray(6 + n, 22 + n)), key).toBe(wrapped.dekId);
    }
    const back = await Promise.all(sids.map((sid) => encrypted().retrieveArchivedConversation(sid)));
    back.forEach((conversation, i) => expect(conversation).toEqual(expected(marked(sids[i]!, "new-user-concurrent", `MARKER-c${i}`))));
  });

  it("decrypts with WebCrypto alone as docs/FORMAT.md describes, for a user's and a session's archive and summary", async () => {
    const service = encrypted();
    for (const [sid, user] of [["enc-doc-user", "erin"], ["enc-doc-anon", undefined]] as const) {
      const conversation = marked(sid, user, `MARKER-${sid}`);
      conversation.memory.summary = `${"long summary ".repeat(100)}${sid}`;
      const key = await service.archiveConversation(conversation.memory, conversation.session);
      const retrieved = await service.retrieveArchivedConversation(sid);
      expect(retrieved).toEqual(expected(conversation));
      expect(await decryptArchive(KEK, env.ARCHIVE_R2, key)).toEqual(retrieved);

      // The record's whole summary and the listing's prefix, bound to `<key>#summary`.
      const { value, metadata } = await env.CHAT_KV.getWithMetadata<{ encryptedSummary: string }, { encryptedSummary: string; summaryTruncated: boolean }>(
        `archive_meta:${sid}`,
        "json",
      );
      const whole = value!.encryptedSummary;
      const open = async (sealed: string) => new TextDecoder().decode(await openEnvelope(KEK, env.ARCHIVE_R2, fromBase64(sealed), `${key}#summary`, sid));
      expect(await open(whole)).toBe(conversation.memory.summary);
      const prefix = await open(metadata!.encryptedSummary);
      expect(metadata!.summaryTruncated).toBe(true);
      expect(prefix.length).toBeGreaterThan(100);
      expect(conversation.memory.summary.startsWith(prefix) && prefix.length < conversation.memory.summary.length).toBe(true);
      const listed = (await service.listArchivedConversations(user, 1000)).find((a) => a.key === key);
      expect(listed?.summary).toBe(prefix);

      // The wrong KEK does not unwrap the data key.
      const wrongKek = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));
      await expect(decryptArchive(wrongKek, env.ARCHIVE_R2, key)).rejects.toThrow();
    }
  });

  it("rotates every data key to a new KEK with real R2 etags, touching no archive; the old KEK can then go", async () => {
    const NEW_ID = "k-workerd-2027";
    const NEW_KEK = btoa(String.fromCharCode(...new Uint8Array(32).fill(0x27)));
    const cases = [marked("enc-rotate-1", "rotating-user", "MARKER-rot1"), marked("enc-rotate-2", undefined, "MARKER-rot2")];
    const keys = [];
    for (const { memory, session } of cases) keys.push(await encrypted().archiveConversation(memory, session));
    const dataKeys = [];
    for (const key of keys) {
      const body = new Uint8Array(await (await env.ARCHIVE_R2.get(key))!.arrayBuffer());
      dataKeys.push(`keys/${latin1(body.subarray(6, 6 + body[5]!))}.json`);
    }
    const archivesBefore = await Promise.all(keys.map(async (key) => sha256Hex(new Uint8Array(await (await env.ARCHIVE_R2.get(key))!.arrayBuffer()))));
    const both = new DataPersistenceService(env, {}, { encryptionKeys: [{ id: NEW_ID, key: NEW_KEK }, { id: KEK_ID, key: KEK }] });
    let report = await both.rotateEncryptionKeys({ maxStorageCalls: 6 });
    for (let runs = 0; !report.complete; runs++) {
      expect(runs, JSON.stringify(report)).toBeLessThan(50);
      expect(report.storageCalls).toBeLessThanOrEqual(6);
      report = await both.rotateEncryptionKeys({ maxStorageCalls: 6 });
    }
    expect(report.newestKeyId).toBe(NEW_ID);
    for (const dataKey of dataKeys) {
      const object = (await env.ARCHIVE_R2.get(dataKey))!;
      expect((await object.json<{ kekId: string }>()).kekId, dataKey).toBe(NEW_ID);
      expect(object.customMetadata?.kekId, dataKey).toBe(NEW_ID);
    }
    const archivesAfter = await Promise.all(keys.map(async (key) => sha256Hex(new Uint8Array(await (await env.ARCHIVE_R2.get(key))!.arrayBuffer()))));
    expect(archivesAfter).toEqual(archivesBefore);
    const newOnly = new DataPersistenceService(env, {}, { encryptionKeys: [{ id: NEW_ID, key: NEW_KEK }] });
    for (const [i, sid] of ["enc-rotate-1", "enc-rotate-2"].entries()) {
      expect(await newOnly.retrieveArchivedConversation(sid)).toEqual(expected(cases[i]!));
    }
    // Without the new KEK, a rotated key is unavailable, named by its KEK id.
    const oldOnly = encrypted();
    await expect(oldOnly.retrieveArchivedConversation("enc-rotate-1")).rejects.toThrow(NEW_ID);
  });

  it("encrypts the archives of a store written before keys were configured, reading the same", async () => {
    const plain = new DataPersistenceService(env);
    const cases = [marked("enc-existing-1", "existing-user", "MARKER-ex1"), marked("enc-existing-2", undefined, "MARKER-ex2")];
    const plainKeys = [];
    for (const { memory, session } of cases) plainKeys.push(await plain.archiveConversation(memory, session));
    expect(plainKeys.every((key) => key.endsWith(".json.gz"))).toBe(true);
    const listedBefore = (await plain.listArchivedConversations("existing-user")).map((a) => [a.sessionId, a.summary]);
    const keyed = encrypted();
    let report = await keyed.encryptExistingArchives({ maxStorageCalls: 16 });
    for (let runs = 0; !report.complete; runs++) {
      expect(runs, JSON.stringify(report)).toBeLessThan(200);
      report = await keyed.encryptExistingArchives({ maxStorageCalls: 16 });
    }
    for (const key of plainKeys) {
      expect(await env.ARCHIVE_R2.head(key), key).toBeNull();
      const sealed = (await env.ARCHIVE_R2.get(`${key}.enc`))!;
      expect(sealed, key).not.toBeNull();
      expect(latin1(new Uint8Array(await sealed.arrayBuffer()).subarray(0, 4))).toBe("SBPE");
    }
    for (const [i, sid] of ["enc-existing-1", "enc-existing-2"].entries()) {
      expect(await keyed.retrieveArchivedConversation(sid)).toEqual(expected(cases[i]!));
    }
    const listedAfter = await keyed.listArchivedConversations("existing-user");
    expect(listedAfter.map((a) => [a.sessionId, a.summary])).toEqual(listedBefore);
    expect(listedAfter.every((a) => a.key.endsWith(".enc"))).toBe(true);
    const record = await env.CHAT_KV.get<{ summary: string; encryptedSummary?: string }>("archive_meta:enc-existing-1", "json");
    expect([record?.summary, typeof record?.encryptedSummary]).toEqual(["", "string"]);
  });
});
