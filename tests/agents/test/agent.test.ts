// The real Agents SDK in workerd (real DO SQLite, local R2/KV): a PersistentChatAgent archives,
// restores and offloads its conversation. Messages are injected through the SDK's
// persistMessages; no model is called.
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { getAgentByName } from "agents";
import type { UIMessage } from "ai";
import { expect, it } from "vitest";
import { DataPersistenceService } from "supportbot-persistence";
import type { SupportChat } from "../src/index.js";

const encoder = new TextEncoder();
const bytes = (messages: readonly UIMessage[]) => messages.reduce((sum, m) => sum + encoder.encode(JSON.stringify(m)).byteLength, 0);

/** Message `i`, cycling through every part type the AI SDK defines (and one it does not). */
function message(i: number, filler = 0): UIMessage {
  const pad = "x".repeat(filler);
  const parts: unknown[][] = [
    [{ type: "text", text: `question ${i} about my invoice ${pad}` }],
    [{ type: "step-start" }, { type: "reasoning", text: `thinking ${i}${pad}` }, { type: "text", text: `answer ${i}` }],
    [{ type: "tool-lookup", toolCallId: `c${i}`, state: "output-available", input: { q: i }, output: { rows: [i, pad] } }],
    [{ type: "tool-refund", toolCallId: `r${i}`, state: "output-error", input: { amount: i }, errorText: `declined ${pad}` }],
    [{ type: "tool-search", toolCallId: `s${i}`, state: "input-available", input: { q: `s${pad}` } }],
    [{ type: "dynamic-tool", toolName: "mcp_fetch", toolCallId: `d${i}`, state: "output-available", input: {}, output: pad }],
    [{ type: "file", mediaType: "image/png", url: `https://example.com/${i}.png`, filename: "shot.png" }, { type: "text", text: pad }],
    [{ type: "source-url", sourceId: `u${i}`, url: "https://example.com/doc" }, { type: "source-document", sourceId: `doc${i}`, mediaType: "application/pdf", title: `T${pad}` }],
    [{ type: "data-ticket", id: `t${i}`, data: { ticket: i, note: pad } }, { type: "x-future-part", anything: [1, { pad }] }],
  ];
  return {
    id: `m${String(i).padStart(5, "0")}`,
    role: i % 2 === 0 ? "user" : "assistant",
    metadata: { createdAt: 1_760_000_000_000 + i * 1000, rating: i % 5 },
    parts: parts[i % parts.length] as UIMessage["parts"],
  };
}

const range = (n: number, filler = 0) => Array.from({ length: n }, (_, i) => message(i, filler));

async function agent(name: string) {
  return getAgentByName(env.SupportChat, name);
}

/** Persists `messages` through the SDK in batches, checking the SQLite budget after each. */
async function inject(chat: SupportChat, messages: UIMessage[], batch = 50): Promise<number> {
  let maxHot = 0;
  for (let start = 0; start < messages.length; start += batch) {
    await chat.persistMessages([...chat.messages, ...messages.slice(start, start + batch)]);
    maxHot = Math.max(maxHot, bytes(chat.messages));
  }
  return maxHot;
}

it("500 messages of every part type: archiveChat verifies, empties the agent, and restoreChat into a fresh agent gives them back", async () => {
  const stub = await agent("chat-archive");
  const { original, key } = await runInDurableObject(stub, async (chat: SupportChat) => {
    chat.maxHotBytes = undefined;
    await inject(chat, range(500));
    const original = structuredClone(chat.messages);
    expect(original).toHaveLength(500);
    const key = await chat.archiveChat({ userId: "user-1" });
    expect(chat.messages).toEqual([]);
    return { original, key };
  });
  const object = await env.ARCHIVE_R2.get(key);
  expect(object).not.toBeNull();
  const body = new Uint8Array(await object!.arrayBuffer());
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", body))].map((b) => b.toString(16).padStart(2, "0")).join("");
  expect(object!.checksums.sha256 === undefined ? digest : [...new Uint8Array(object!.checksums.sha256)].map((b) => b.toString(16).padStart(2, "0")).join("")).toBe(digest);
  const fresh = await agent("chat-archive-restored");
  const restored = await runInDurableObject(fresh, async (chat: SupportChat) => {
    chat.maxHotBytes = undefined;
    expect(await chat.restoreChat("chat-archive")).toBe(500);
    return structuredClone(chat.messages);
  });
  expect(restored).toEqual(original);
});

it("offload: 5000 messages of ~2 KB under maxHotBytes 1 MB stay under budget, and loadFullHistory gives every message in order", async () => {
  const stub = await agent("chat-offload");
  const all = range(5000, 1900);
  expect(bytes(all) / all.length).toBeGreaterThan(1900);
  const { maxHot, history, held } = await runInDurableObject(stub, async (chat: SupportChat) => {
    const started = Date.now();
    await inject(chat, all);
    const injectedMs = Date.now() - started;
    const loadStarted = Date.now();
    const history = await chat.loadFullHistory();
    console.log(JSON.stringify({ measured: "offload", messages: all.length, bytes: bytes(all), segments: chat.segmentsWritten, peakHotBytes: chat.peakHotBytes, injectedMs, loadFullHistoryMs: Date.now() - loadStarted }));
    return { maxHot: chat.peakHotBytes, history, held: chat.messages.length };
  });
  expect(maxHot).toBeGreaterThan(512 * 1024);
  expect(maxHot).toBeLessThanOrEqual(1024 * 1024);
  expect(held).toBeLessThan(all.length);
  expect(history.map((m) => m.id)).toEqual(all.map((m) => m.id));
  expect(history).toEqual(all);
  // A client resends the whole conversation it shows: offloaded messages do not come back.
  const after = await runInDurableObject(stub, async (chat: SupportChat) => {
    const held = chat.messages.length;
    await chat.persistMessages([...all]);
    return { held, now: chat.messages.length, history: (await chat.loadFullHistory()).map((m) => m.id) };
  });
  expect(after.now).toBe(after.held);
  expect(after.history).toEqual(all.map((m) => m.id));
  // Segments are archives (in the global index that whole-store backups walk) but never a user's conversations.
  const indexed = await env.CHAT_KV.list({ prefix: "archive_index:" });
  expect(indexed.keys.filter((k) => k.name.includes("chat-offload:segment-")).length).toBeGreaterThan(0);
  const listed = await env.CHAT_KV.list({ prefix: "user_archives:" });
  expect(listed.keys.length).toBeGreaterThan(0);
  expect(listed.keys.filter((k) => k.name.includes(":segment-"))).toEqual([]);
});

it("a single 3 MB conversation offloads, archives whole and restores whole", async () => {
  const stub = await agent("chat-3mb");
  const all = range(1500, 1950);
  expect(bytes(all)).toBeGreaterThan(3_000_000);
  const key = await runInDurableObject(stub, async (chat: SupportChat) => {
    await inject(chat, all);
    expect(chat.peakHotBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(chat.segmentsWritten).toBeGreaterThan(2);
    return chat.archiveChat({ userId: "user-3" });
  });
  expect(key).toContain("archive_chat-3mb_");
  const restored = await runInDurableObject(await agent("chat-3mb-again"), async (chat: SupportChat) => {
    chat.maxHotBytes = undefined;
    await chat.restoreChat("chat-3mb");
    return chat.messages.map((m) => m.id);
  });
  expect(restored).toEqual(all.map((m) => m.id));
});

it("a crash between the verified archive and the clear leaves every message in the agent", async () => {
  const stub = await agent("chat-crash");
  const all = range(40);
  await runInDurableObject(stub, async (chat: SupportChat) => {
    await inject(chat, all);
    chat.failClear = true;
    await expect(chat.archiveChat({ userId: "user-4" })).rejects.toThrow("crash before the clear");
    expect(chat.messages).toEqual(all);
    chat.failClear = false;
    await chat.archiveChat({ userId: "user-4" });
    expect(chat.messages).toEqual([]);
  });
});

it("bad configuration is INVALID_INPUT naming the field", async () => {
  await runInDurableObject(await agent("chat-bad"), async (chat: SupportChat) => {
    chat.maxHotBytes = -1;
    await expect(chat.persistMessages([message(0)])).rejects.toThrow(/^INVALID_INPUT: maxHotBytes/);
    chat.maxHotBytes = undefined;
    await expect(chat.restoreChat("")).rejects.toThrow(/^INVALID_INPUT: sessionId/);
  });
});

it("archiveAfterIdle: the scheduled check archives an idle chat (owned by chatUserId) and not a busy one", async () => {
  const stub = await agent("chat-idle");
  const all = range(10);
  await runInDurableObject(stub, async (chat: SupportChat) => {
    chat.archiveAfterIdle = 1_000;
    await inject(chat, all);
    expect(chat.getSchedules().filter((s) => s.callback === "archiveIfIdle")).toHaveLength(1);
    await chat.archiveIfIdle(); // before it is due: reschedules, archives nothing
    expect(chat.messages).toHaveLength(10);
  });
  await new Promise((resolve) => setTimeout(resolve, 2_100));
  await runDurableObjectAlarm(stub);
  const held = await runInDurableObject(stub, (chat: SupportChat) => chat.messages.length);
  expect(held).toBe(0);
  const listed = await new DataPersistenceService(env).listArchivedConversations("owner-of-chat-idle");
  expect(listed.map((archive) => archive.sessionId)).toEqual(["chat-idle"]);
  const restored = await runInDurableObject(await agent("chat-idle-restored"), async (chat: SupportChat) => {
    chat.maxHotBytes = undefined;
    await chat.restoreChat("chat-idle");
    return structuredClone(chat.messages);
  });
  expect(restored).toEqual(all);
});

it("a crash after a segment was recorded but before SQLite was trimmed loses and duplicates nothing", async () => {
  const stub = await agent("chat-trim-crash");
  const all = range(1200, 1900);
  const outcome = await runInDurableObject(stub, async (chat: SupportChat) => {
    // The SDK's own persistMessages (below PersistentChatAgent) fails once while trimming.
    const sdk = Object.getPrototypeOf(Object.getPrototypeOf(Object.getPrototypeOf(chat))) as { persistMessages: (...args: unknown[]) => Promise<void> };
    const original = sdk.persistMessages;
    let crashed = false;
    sdk.persistMessages = async function (this: SupportChat, ...args: unknown[]) {
      if (!crashed && this.maxPersistedMessages !== undefined && this.maxPersistedMessages > 0) {
        crashed = true;
        throw new Error("crash before the trim");
      }
      return original.apply(this, args);
    };
    let failure = "";
    try {
      try {
        await inject(chat, all);
      } catch (error) {
        failure = String(error);
      }
      const heldAfterCrash = chat.messages.length;
      const historyAfterCrash = (await chat.loadFullHistory()).map((m) => m.id);
      await inject(chat, all.slice(historyAfterCrash.length));
      return { failure, heldAfterCrash, historyAfterCrash, history: await chat.loadFullHistory(), held: chat.messages.length };
    } finally {
      sdk.persistMessages = original;
    }
  });
  expect(outcome.failure).toContain("crash before the trim");
  const ids = all.map((m) => m.id);
  expect(outcome.historyAfterCrash).toEqual(ids.slice(0, outcome.historyAfterCrash.length));
  // The interrupted trim left offloaded messages in SQLite too; they were trimmed later.
  expect(outcome.heldAfterCrash).toBe(outcome.historyAfterCrash.length);
  expect(outcome.held).toBeLessThan(outcome.heldAfterCrash);
  expect(outcome.history).toEqual(all);
});

it("a crash after the clear but before the segment records were dropped: the next archiveChat finishes, never a partial archive", async () => {
  const stub = await agent("chat-forget-crash");
  const all = range(800, 1900);
  const { first, second } = await runInDurableObject(stub, async (chat: SupportChat) => {
    await inject(chat, all);
    expect(chat.segmentsWritten).toBeGreaterThan(0);
    chat.failForget = true;
    let first = "";
    await chat.archiveChat({ userId: "user-5" }).catch((error: unknown) => {
      first = String(error);
    });
    expect(first).toContain("crash before the segment records were dropped");
    expect(chat.messages).toEqual([]);
    return { first, second: await chat.archiveChat({ userId: "user-5" }) };
  });
  expect(first).not.toBe("");
  const newest = await new DataPersistenceService(env).retrieveUIMessages("chat-forget-crash");
  expect(newest).toEqual(all);
  expect(second).toContain("archive_chat-forget-crash_");
  const restored = await runInDurableObject(stub, async (chat: SupportChat) => {
    chat.maxHotBytes = undefined;
    await chat.restoreChat("chat-forget-crash");
    return chat.messages.length;
  });
  expect(restored).toBe(all.length);
});
