// `supportbot-persistence/agents`: archive, restore and offload the conversation of an Agents
// SDK `AIChatAgent` (a subpath export: the package's main entry never imports the SDK, an
// optional peer dependency).
//
// Design: a subclass, `PersistentChatAgent`, extended instead of `AIChatAgent`. It reads and
// writes the agent's messages only through the SDK's public API (`this.messages`,
// `persistMessages`, `maxPersistedMessages`, `schedule`); its own bookkeeping lives under
// `supportbot:` keys of the Durable Object's key-value storage, never in the SDK's tables.
// Format decisions (segment ids, keys, verification) are the Rust core's (docs/FORMAT.md,
// "Segments").
import { AIChatAgent } from "@cloudflare/ai-chat";
import type { UIMessage } from "ai";
import { DataPersistenceService, optionsFromEnv, policyFromEnv } from "./workerd.js";
import type { PersistenceBindings } from "./types.js";

/** The bindings (and optional [vars]) a PersistentChatAgent archives through. */
export type ChatPersistenceEnv = PersistenceBindings & Record<string, unknown>;

/** Codes of the errors the agent's own checks throw (besides the library's PersistenceError codes). */
export type ChatArchiveErrorCode = "INVALID_INPUT" | "NOT_FOUND" | "CONFLICT" | "ARCHIVE_UNVERIFIED";

function chatError(code: ChatArchiveErrorCode, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

const STATE = "supportbot:";
const SEGMENT_COUNT = `${STATE}segmentCount`;
const SEGMENT_KEY_PREFIX = `${STATE}segment:`;
const LAST_OFFLOADED = `${STATE}lastOffloadedId`;
const ARCHIVE_KEY = `${STATE}archiveKey`;
const ARCHIVING_KEY = `${STATE}archiving`;
const LAST_ACTIVITY = `${STATE}lastActivity`;
const IDLE_SCHEDULED = `${STATE}idleScheduled`;
const IDLE_RETRY_SECONDS = 60;

const encoder = new TextEncoder();

/** The UTF-8 size of a message's JSON: what one SDK row holds. */
function messageBytes(message: UIMessage): number {
  return encoder.encode(JSON.stringify(message)).byteLength;
}

function segmentStorageKey(seq: number): string {
  return `${SEGMENT_KEY_PREFIX}${String(seq).padStart(6, "0")}`;
}

function positiveInteger(field: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 1) throw chatError("INVALID_INPUT", `${field}: must be a positive integer, not ${String(value)}`);
  return value;
}

function sameIds(expected: readonly UIMessage[], found: readonly UIMessage[] | null): boolean {
  return found !== null && found.length === expected.length && expected.every((message, index) => message.id === found[index]?.id);
}

/**
 * An `AIChatAgent` whose conversation can be archived to R2, restored, and offloaded while it
 * grows. Extend it instead of `AIChatAgent` and set the fields below; the agent's `env` needs
 * the library's bindings (`CHAT_KV`, `ARCHIVE_R2`).
 *
 * - `archiveChat({ userId })`: the whole conversation (offloaded segments + the messages in
 *   SQLite) becomes one archive of the session (listed once for `userId`), read back from R2 and
 *   checked, and only then are the agent's messages cleared.
 * - `restoreChat(sessionId)`: loads an archive back through `persistMessages`.
 * - Offload: with `maxHotBytes`, once the messages in SQLite exceed 3/4 of it, the oldest are
 *   archived as a segment (verified by reading it back) and only then removed, down to half
 *   of it; with `keepRecentMessages`, once twice as many are held, all but that many go.
 *   A single message above the budget stays (a segment never splits a message).
 * - `archiveAfterIdle` (ms): archives by schedule once the chat was idle that long.
 *
 * The session id is the agent's name (`this.name`); override `chatSessionId()` to change it.
 */
export class PersistentChatAgent<Env extends ChatPersistenceEnv = ChatPersistenceEnv, State = unknown> extends AIChatAgent<Env & Cloudflare.Env, State> {
  /** Budget, in bytes of message JSON, of the messages kept in the Durable Object's SQLite. */
  maxHotBytes: number | undefined = undefined;
  /** The newest messages always kept in SQLite (and, alone, an offload trigger at twice as many). */
  keepRecentMessages: number | undefined = undefined;
  /** Archive the chat after this many milliseconds without a new message. */
  archiveAfterIdle: number | undefined = undefined;

  #service?: DataPersistenceService;
  #offloading = false;

  /** The session id archives and segments are stored under: the agent's name by default. */
  chatSessionId(): string {
    return this.name;
  }

  /** The owner recorded when `archiveAfterIdle` archives the chat (none by default). */
  chatUserId(): string | undefined {
    return undefined;
  }

  /** The library's service over this agent's bindings, policy and options from its env. */
  protected persistence(): DataPersistenceService {
    this.#service ??= new DataPersistenceService(this.env, policyFromEnv(this.env), optionsFromEnv(this.env));
    return this.#service;
  }

  /**
   * Persists through the SDK, first dropping messages already offloaded (a client resends the
   * whole conversation it holds), then offloads when over budget and re-arms the idle archive.
   */
  override async persistMessages(messages: UIMessage[], excludeBroadcastIds: string[] = [], options?: { _deleteStaleRows?: boolean }): Promise<void> {
    const lastOffloaded = await this.ctx.storage.get<string>(LAST_OFFLOADED);
    const cut = lastOffloaded === undefined ? -1 : messages.findIndex((message) => message.id === lastOffloaded);
    await super.persistMessages(cut < 0 ? messages : messages.slice(cut + 1), excludeBroadcastIds, options);
    if (!this.#offloading) await this.offloadIfNeeded();
    await this.touchActivity();
  }

  /**
   * Offloads the oldest messages when over budget (see the class); returns the segment's R2
   * key, or null when nothing was due. Costs, per segment: 1 R2 put and 2 KV puts (archive),
   * 1 R2 get (read back), and the SDK's row deletes.
   */
  async offloadIfNeeded(): Promise<string | null> {
    const maxHotBytes = positiveInteger("maxHotBytes", this.maxHotBytes);
    const keep = positiveInteger("keepRecentMessages", this.keepRecentMessages) ?? 0;
    let messages = [...this.messages];
    // A crash after a segment was recorded but before SQLite was trimmed: finish the trim.
    const lastOffloaded = await this.ctx.storage.get<string>(LAST_OFFLOADED);
    const done = lastOffloaded === undefined ? -1 : messages.findIndex((message) => message.id === lastOffloaded);
    if (done >= 0) {
      messages = messages.slice(done + 1);
      await this.keepOnly(messages, false);
    }
    const sizes = maxHotBytes === undefined ? [] : messages.map(messageBytes);
    let hot = sizes.reduce((sum, size) => sum + size, 0);
    const overBytes = maxHotBytes !== undefined && hot > (maxHotBytes * 3) / 4;
    const overCount = this.keepRecentMessages !== undefined && messages.length >= 2 * keep;
    if (!overBytes && !overCount) return null;
    let cold = overCount ? messages.length - keep : 0;
    for (let index = 0; index < cold; index++) hot -= sizes[index] ?? 0;
    while (maxHotBytes !== undefined && hot > maxHotBytes / 2 && cold < messages.length - keep) {
      hot -= sizes[cold] ?? 0;
      cold++;
    }
    if (cold === 0) return null;
    return this.offload(messages.slice(0, cold), messages.slice(cold));
  }

  /** Archives `cold` as the next segment, verifies it, records it, and only then removes it from SQLite. */
  private async offload(cold: UIMessage[], hot: UIMessage[]): Promise<string> {
    this.#offloading = true;
    try {
      const seq = ((await this.ctx.storage.get<number>(SEGMENT_COUNT)) ?? 0) + 1;
      const service = this.persistence();
      const key = await service.archiveSegment(this.chatSessionId(), seq, cold);
      if (!sameIds(cold, await service.retrieveUIMessagesByKey<UIMessage>(key))) {
        throw chatError("ARCHIVE_UNVERIFIED", `segment ${key} did not read back the ${cold.length} messages offloaded; nothing was removed`);
      }
      await this.ctx.storage.put({ [segmentStorageKey(seq)]: key, [SEGMENT_COUNT]: seq, [LAST_OFFLOADED]: cold[cold.length - 1]!.id });
      await this.keepOnly(hot, false);
      return key;
    } finally {
      this.#offloading = false;
    }
  }

  /**
   * Removes every persisted message but `kept` (the newest ones) through the SDK's own trimming.
   * Without `broadcast`, connected clients are not sent the shortened list: an offload moves
   * messages, it does not take them from the conversation a client shows.
   */
  private async keepOnly(kept: UIMessage[], broadcast: boolean): Promise<void> {
    const limit = this.maxPersistedMessages;
    this.maxPersistedMessages = kept.length;
    try {
      const everyone = broadcast ? [] : [...this.getConnections()].map((connection) => connection.id);
      await super.persistMessages(kept, everyone);
    } finally {
      this.maxPersistedMessages = limit;
    }
  }

  /**
   * Clears the agent's persisted messages (SDK rows, through `persistMessages` with
   * `maxPersistedMessages` 0). Called by archiveChat only after the archive verified.
   */
  protected async clearPersistedMessages(): Promise<void> {
    await this.keepOnly([], true);
  }

  /** The whole conversation in order: the offloaded segments (read from R2, verified), then the messages in SQLite. Costs 1 R2 get per segment. */
  async loadFullHistory(): Promise<UIMessage[]> {
    const service = this.persistence();
    const segments = await this.ctx.storage.list<string>({ prefix: SEGMENT_KEY_PREFIX });
    const history: UIMessage[] = [];
    for (const key of segments.values()) {
      const messages = await service.retrieveUIMessagesByKey<UIMessage>(key);
      if (messages === null) throw chatError("NOT_FOUND", `segment ${key} of session ${this.chatSessionId()} is missing from R2`);
      history.push(...messages);
    }
    // A crash between recording a segment and trimming SQLite leaves its messages in both.
    const offloaded = new Set(history.map((message) => message.id));
    history.push(...this.messages.filter((message) => !offloaded.has(message.id)));
    return history;
  }

  /**
   * Archives the whole conversation as the session's archive (owned by `userId`), reads it
   * back from R2 and checks its message ids, and only then clears the agent's messages and
   * its segment records (the segments stay in R2 until retention). Resolves to the archive's
   * key. Costs: 1 R2 get per segment, 1 R2 put + 2-3 KV puts, 1 R2 get, the SDK's deletes.
   * NOT_FOUND with no message; ARCHIVE_UNVERIFIED (nothing cleared) when the read-back differs.
   */
  async archiveChat(options: { userId?: string } = {}): Promise<string> {
    if (options.userId !== undefined && typeof options.userId !== "string") throw chatError("INVALID_INPUT", "userId: must be a string");
    const finished = await this.finishInterruptedArchive();
    if (finished !== null) return finished;
    const history = await this.loadFullHistory();
    if (history.length === 0) throw chatError("NOT_FOUND", `session ${this.chatSessionId()} has no messages to archive`);
    const service = this.persistence();
    const key = await service.archiveUIMessages(this.chatSessionId(), history, options.userId === undefined ? {} : { userId: options.userId });
    if (!sameIds(history, await service.retrieveUIMessagesByKey<UIMessage>(key))) {
      throw chatError("ARCHIVE_UNVERIFIED", `archive ${key} did not read back the ${history.length} messages; nothing was cleared`);
    }
    // Recorded before the clear: should the segment records outlive it (a crash), the next
    // call finishes instead of archiving the segments alone as a newer, partial archive.
    await this.ctx.storage.put(ARCHIVING_KEY, key);
    await this.clearPersistedMessages();
    await this.forgetSegments(key);
    return key;
  }

  /**
   * Drops the segment records once the archive `key` holds the whole conversation and the
   * messages were cleared (the segment objects stay in R2 until retention).
   */
  protected async forgetSegments(key: string): Promise<void> {
    const segments = await this.ctx.storage.list({ prefix: SEGMENT_KEY_PREFIX });
    await this.ctx.storage.delete([...segments.keys(), SEGMENT_COUNT, LAST_OFFLOADED, ARCHIVING_KEY]);
    await this.ctx.storage.put(ARCHIVE_KEY, key);
  }

  /**
   * An archiveChat interrupted after its clear: finishes it and returns its key. One
   * interrupted before its clear (messages still held) is dropped, to archive anew.
   */
  private async finishInterruptedArchive(): Promise<string | null> {
    const pending = await this.ctx.storage.get<string>(ARCHIVING_KEY);
    if (pending === undefined) return null;
    if (this.messages.length > 0) {
      await this.ctx.storage.delete(ARCHIVING_KEY);
      return null;
    }
    await this.forgetSegments(pending);
    return pending;
  }

  /**
   * Loads the archive of `sessionId` back into the agent through `persistMessages` (in
   * batches, so offload keeps SQLite under budget): the archive this agent wrote last when it
   * is of that session, else the session's newest archive. CONFLICT while the agent holds
   * messages; NOT_FOUND without an archive. Resolves to the number of messages restored.
   */
  async restoreChat(sessionId: string): Promise<number> {
    if (typeof sessionId !== "string" || sessionId.length === 0) throw chatError("INVALID_INPUT", "sessionId: must be a non-empty string");
    await this.finishInterruptedArchive();
    if (this.messages.length > 0 || (await this.ctx.storage.get(SEGMENT_COUNT)) !== undefined) {
      throw chatError("CONFLICT", `the agent holds messages; archive them before restoring ${sessionId}`);
    }
    const service = this.persistence();
    const own = await this.ctx.storage.get<string>(ARCHIVE_KEY);
    const ownMessages = own !== undefined && sessionId === this.chatSessionId() ? await service.retrieveUIMessagesByKey<UIMessage>(own) : null;
    const messages = ownMessages ?? (await service.retrieveUIMessages<UIMessage>(sessionId));
    if (messages === null) throw chatError("NOT_FOUND", `no archive of session ${sessionId}`);
    const batch = this.maxHotBytes === undefined && this.keepRecentMessages === undefined ? messages.length : 50;
    for (let start = 0; start < messages.length; start += batch) {
      await this.persistMessages([...this.messages, ...messages.slice(start, start + batch)]);
    }
    return messages.length;
  }

  /** Records activity and, with archiveAfterIdle, makes sure one idle check is scheduled. */
  private async touchActivity(): Promise<void> {
    const idle = positiveInteger("archiveAfterIdle", this.archiveAfterIdle);
    if (idle === undefined) return;
    await this.ctx.storage.put(LAST_ACTIVITY, Date.now());
    if ((await this.ctx.storage.get(IDLE_SCHEDULED)) === undefined) {
      await this.ctx.storage.put(IDLE_SCHEDULED, true);
      await this.schedule(Math.ceil(idle / 1000), "archiveIfIdle");
    }
  }

  /** The scheduled idle check: archives once idle long enough, else checks again when it would be. */
  async archiveIfIdle(): Promise<void> {
    const idle = positiveInteger("archiveAfterIdle", this.archiveAfterIdle);
    await this.ctx.storage.delete(IDLE_SCHEDULED);
    if (idle === undefined || this.messages.length === 0) return;
    const due = ((await this.ctx.storage.get<number>(LAST_ACTIVITY)) ?? 0) + idle;
    let retryInSeconds = Math.ceil((due - Date.now()) / 1000);
    if (retryInSeconds <= 0) {
      try {
        const userId = this.chatUserId();
        await this.archiveChat(userId === undefined ? {} : { userId });
        return;
      } catch (error) {
        console.log(JSON.stringify({ event: "chat_archive_failed", component: "PersistentChatAgent", message: String((error as Error)?.message ?? error).slice(0, 200) }));
        retryInSeconds = IDLE_RETRY_SECONDS;
      }
    }
    await this.ctx.storage.put(IDLE_SCHEDULED, true);
    await this.schedule(retryInSeconds, "archiveIfIdle");
  }
}
