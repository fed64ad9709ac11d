// Erasure of one person's data inside workerd, through the built package, against the real
// local KV and R2: after eraseUserData nothing of theirs is stored readable, everyone else's
// data is byte for byte as it was, a restore of an older backup brings none of it back, and an
// archive racing the erasure ends erased or under a new data key, never readable under the old.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, type ConversationMemory, type SessionState } from "supportbot-persistence";

const KEK = btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => (i * 29 + 3) % 256)));
const T0 = 1_736_157_600_000;

function service(encrypted: boolean): DataPersistenceService {
  return new DataPersistenceService(env, {}, encrypted ? { encryptionKeys: [{ id: "k-erasure", key: KEK }] } : {});
}

function conversation(sessionId: string, userId: string, marker: string): [ConversationMemory, SessionState] {
  return [
    {
      sessionId,
      messages: [
        { id: "m1", sessionId, role: "user", content: `my card ${marker} was charged twice`, timestamp: T0 },
        { id: "m2", sessionId, role: "assistant", content: "I have refunded it.", timestamp: T0 + 1_000 },
      ],
      summary: `Refund for ${marker}`,
      context: {},
    },
    { id: sessionId, userId, status: "closed", createdAt: T0, lastActivity: T0 + 1_000 },
  ];
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Every KV key (value and metadata) and R2 object (body, inflated when gzip, and custom metadata) as text, by name. */
async function everything(): Promise<Map<string, string>> {
  const stored = new Map<string, string>();
  let cursor: string | undefined;
  do {
    const page = await env.CHAT_KV.list({ cursor });
    for (const key of page.keys) {
      const value = await env.CHAT_KV.get(key.name, "text");
      stored.set(`KV ${key.name}`, `${value} ${JSON.stringify(key.metadata ?? null)}`);
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  let after: string | undefined;
  for (;;) {
    const page = await env.ARCHIVE_R2.list({ startAfter: after, include: ["customMetadata"] });
    for (const object of page.objects) {
      const body = new Uint8Array(await (await env.ARCHIVE_R2.get(object.key))!.arrayBuffer());
      const text = body[0] === 0x1f && body[1] === 0x8b ? await gunzip(body) : body;
      const decoded = new TextDecoder().decode(text);
      // A pack holds archives in base64: decode what looks like it, so a marker inside shows.
      const unpacked = object.key.startsWith("backups/") ? await unbase64(decoded) : "";
      stored.set(`R2 ${object.key}`, `${decoded} ${unpacked} ${JSON.stringify(object.customMetadata ?? {})}`);
    }
    if (!page.truncated) break;
    after = page.objects.at(-1)?.key;
  }
  return stored;
}

/** The text of every base64 archive in a pack, inflated. */
async function unbase64(pack: string): Promise<string> {
  const texts: string[] = [];
  for (const match of pack.matchAll(/"archive":"([A-Za-z0-9+/=]+)"/g)) {
    const bytes = Uint8Array.from(atob(match[1]!), (c) => c.charCodeAt(0));
    texts.push(new TextDecoder().decode(bytes[0] === 0x1f ? await gunzip(bytes) : bytes));
  }
  return texts.join(" ");
}

describe("eraseUserData in workerd", () => {
  for (const encrypted of [false, true]) {
    it(`leaves nothing of the user and everyone else byte for byte (${encrypted ? "encrypted" : "plaintext"})`, async () => {
      const persistence = service(encrypted);
      const alice = `alice-${encrypted}@example.com`;
      const bob = `bob-${encrypted}@example.com`;
      const tag = encrypted ? "e" : "p";
      for (const [sid, user, marker] of [
        [`${tag}-a1`, alice, `ALICE-${tag}-ONE`],
        [`${tag}-b1`, bob, `BOB-${tag}-ONE`],
        [`${tag}-a2`, alice, `ALICE-${tag}-TWO`],
      ] as const) {
        await persistence.archiveConversation(...conversation(sid, user, marker));
      }
      await persistence.createBackup([`${tag}-a1`, `${tag}-a2`], { userId: alice });
      const before = await everything();

      const receipt = await persistence.eraseUserData(alice);
      expect(receipt).toMatchObject({ complete: true, archivesDeleted: 2, backupsDeleted: 1, keysDestroyed: encrypted ? 1 : 0 });
      expect(JSON.stringify(receipt)).not.toContain("alice");

      const after = await everything();
      const hers = (name: string, text: string) =>
        name.includes(receipt.userKey) || text.includes(receipt.userKey) || text.includes(alice) || text.includes(`ALICE-${tag}`) || name.includes(`_${tag}-a`) || name.endsWith(`:${tag}-a1`) || name.endsWith(`:${tag}-a2`);
      const left = [...after].filter(([name, text]) => hers(name, text) && !name.startsWith(`R2 erasures/`));
      expect(left.map(([name]) => name)).toEqual([]);
      // Everything else is as it was, byte for byte (the tombstone and the erased entries aside).
      for (const [name, text] of before) {
        if (hers(name, text)) continue;
        expect(after.get(name), name).toBe(text);
      }
      expect(await persistence.retrieveArchivedConversation(`${tag}-b1`)).not.toBeNull();
      expect([...(await persistence.listArchivedConversations(bob))]).toHaveLength(1);
      expect([...(await persistence.listArchivedConversations(alice))]).toEqual([]);
    });
  }

  it("a restore of an older backup brings none of the erased user's sessions back", async () => {
    const persistence = service(true);
    const carol = "carol@example.com";
    const dave = "dave@example.com";
    await persistence.archiveConversation(...conversation("r-c1", carol, "CAROL-ONE"));
    await persistence.archiveConversation(...conversation("r-d1", dave, "DAVE-ONE"));
    const backupId = await persistence.createBackup(["r-c1", "r-d1"]);
    expect((await persistence.eraseUserData(carol)).complete).toBe(true);
    await env.ARCHIVE_R2.delete((await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.filter((o) => o.key.includes("r-d1")).map((o) => o.key));

    const restored = await persistence.restoreFromBackup(backupId);
    expect([...restored]).toEqual(["r-d1"]);
    expect(restored.skippedSessionIds).toEqual(["r-c1"]);
    expect(await persistence.retrieveArchivedConversation("r-c1")).toBeNull();
    expect(await persistence.retrieveArchivedConversation("r-d1")).not.toBeNull();
    expect([...(await persistence.listArchivedConversations(carol))]).toEqual([]);
  });

  it("an archive racing the erasure ends erased or under the new key, never readable under the old", async () => {
    const persistence = service(true);
    for (let round = 0; round < 6; round++) {
      const user = `racer-${round}@example.com`;
      await persistence.archiveConversation(...conversation(`race-${round}-old`, user, `OLD-${round}`));
      const keyObject = async (key: string) => (await env.ARCHIVE_R2.get(key))?.text();
      // Every data key that exists before the erasure (the user's among them).
      const oldDekIds = new Set<string>();
      for (const object of (await env.ARCHIVE_R2.list({ prefix: "keys/users/" })).objects) {
        oldDekIds.add((JSON.parse((await keyObject(object.key))!) as { dekId: string }).dekId);
      }
      // Stagger the two calls differently each round so that they interleave differently.
      const archiving = (async () => {
        for (let i = 0; i < round; i++) await Promise.resolve();
        return persistence.archiveConversation(...conversation(`race-${round}-new`, user, `NEW-${round}`));
      })();
      const [archiveKey, receipt] = await Promise.all([archiving, persistence.eraseUserData(user)]);
      expect(receipt.complete).toBe(true);
      const current = await keyObject(`keys/users/${receipt.userKey}.json`);
      const retrieved = await persistence.retrieveArchive(archiveKey);
      if (retrieved !== null) {
        // Readable: then under a data key made after the old one was destroyed, never the old.
        expect(current, `round ${round}`).toBeDefined();
        const dekId = (JSON.parse(current!) as { dekId: string }).dekId;
        expect(oldDekIds.has(dekId), `round ${round}: readable under the destroyed key`).toBe(false);
        expect(JSON.stringify(retrieved)).toContain(`NEW-${round}`);
      }
      // Listed exactly when readable: never an entry of something that cannot be read.
      const listed = [...(await persistence.listArchivedConversations(user))].map((entry) => entry.sessionId);
      expect(listed.includes(`race-${round}-new`), `round ${round}: ${listed}`).toBe(retrieved !== null);
      // The old conversation is gone either way.
      expect(await persistence.retrieveArchivedConversation(`race-${round}-old`)).toBeNull();
    }
  });
});
