// SessionMemoryDO: one Durable Object per chat session. It holds the session's live messages and
// state in the object's SQLite storage, archives them through DataPersistenceService (by call, or
// by alarm after conversationTTL of inactivity) and can load an archive back.
//
// Errors cross Workers RPC with only their message (own properties such as `code` are dropped),
// so every error these methods throw has a message that starts with its code ("FORBIDDEN: ...");
// `sessionErrorCode(error)` reads it back on the caller's side.
import { DurableObject } from "cloudflare:workers";
import { checkConversation, DataPersistenceService, ERROR_CODES, isPersistenceError, optionsFromEnv, policyFromEnv } from "./api.js";
import type { PersistenceEnv } from "./env.js";
import type { ArchiveFields, ArchivePage, ArchivedConversation, ChatMessage, ConversationMemory, DataRetentionPolicy, SessionState } from "./types.js";

/** A JSON scalar; message metadata is flat because RPC stub types cannot map a recursive JSON type (TS2589). */
export type JsonScalar = string | number | boolean | null;

/** A chat message as the DO stores it: the spec's ChatMessage with RPC-safe (flat JSON) metadata. */
export type SessionMessage = Omit<ChatMessage, "metadata"> & { metadata?: Record<string, JsonScalar> };

/** A session's state as the DO keeps it. */
export interface SessionInfo {
  sessionId: string;
  /** The user who created the session; absent when it was created without one. */
  userId?: string;
  /** "active" while messages are held here; "archived" once they were archived and cleared. */
  status: "active" | "archived";
  /** Epoch milliseconds. */
  createdAt: number;
  /** Epoch milliseconds of the last message (or restore). */
  lastActivity: number;
  summary: string;
  messageCount: number;
  /** The R2 key of the archive, once archived. */
  archiveKey?: string;
}

/** The session's state with its most recent messages, oldest first. */
export interface SessionContext extends SessionInfo {
  recentMessages: SessionMessage[];
}

/** @deprecated The same as {@link ArchiveFields}, the element type of both listings. */
export type ArchiveSummary = ArchiveFields;

/** Codes of the errors SessionMemoryDO throws: the library's codes plus the object's own. */
const SESSION_ERROR_CODES = [...ERROR_CODES, "FORBIDDEN", "CONFLICT", "ARCHIVE_UNVERIFIED"] as const;

/** The code of an error SessionMemoryDO throws. */
export type SessionErrorCode = (typeof SESSION_ERROR_CODES)[number];

/** The code of an error thrown by SessionMemoryDO (directly or through an RPC stub), or undefined. */
export function sessionErrorCode(error: unknown): SessionErrorCode | undefined {
  if (!(error instanceof Error)) return undefined;
  const own = (error as { code?: unknown }).code;
  if (typeof own === "string" && (SESSION_ERROR_CODES as readonly string[]).includes(own)) return own as SessionErrorCode;
  const prefix = /^([A-Z_]+): /.exec(error.message)?.[1];
  return prefix !== undefined && (SESSION_ERROR_CODES as readonly string[]).includes(prefix) ? (prefix as SessionErrorCode) : undefined;
}

function sessionError(code: SessionErrorCode, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** A PersistenceError keeps its code across RPC by carrying it in the message. */
function coded(error: unknown): unknown {
  if (isPersistenceError(error) && !error.message.startsWith(`${error.code}: `)) return sessionError(error.code, error.message);
  return error;
}

/**
 * Archive failures no retry can fix: the stored conversation itself is refused (messages from
 * before addMessage checked them against the archive's rules, or one past maxArchiveSize).
 */
const REFUSED_ARCHIVE_CODES: ReadonlySet<string> = new Set(["INVALID_INPUT", "INVALID_ID", "ARCHIVE_TOO_LARGE"]);

/** First retry of a failed alarm archive; doubles per failure up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 60_000;
const MAX_RETRY_MS = 60 * 60_000;
const DEFAULT_CONTEXT_MESSAGES = 20;
const MAX_CONTEXT_MESSAGES = 1000;

/** The one row of the `session` table (a type alias: SqlStorage rows need an index signature). */
type SessionRow = {
  session_id: string;
  user_id: string | null;
  status: "active" | "archived";
  created_at: number;
  last_activity: number;
  summary: string;
  archive_key: string | null;
  archive_failures: number;
};

/**
 * Refuses now what archiving would refuse later (a bad role, a timestamp out of range, metadata
 * that is not an object, a session or user id it cannot take): once stored, a message the archive
 * rejects would keep the session from ever being archived. The archive's own check (the core's)
 * decides; its field paths are rebased from the conversation (`memory.messages[0]`) onto
 * `message`. Only the DO's own rule is checked here: a message id is its primary key.
 */
function checkMessage(message: SessionMessage, userId: string | null, summary: string): void {
  const sessionId = typeof message?.sessionId === "string" ? message.sessionId : "";
  try {
    checkConversation(
      { sessionId, messages: [message], summary },
      { id: sessionId, status: "active", createdAt: 0, lastActivity: 0, ...(userId === null ? {} : { userId }) },
    );
  } catch (error) {
    if (!isPersistenceError(error)) throw error;
    const detail = error.message
      .replace(/^Archive operation failed: (?:invalid input: )?/, "")
      .replaceAll("memory.messages[0]", "message")
      .replace("memory.sessionId", "message.sessionId");
    throw sessionError(error.code, detail);
  }
  if (message.id.length === 0) throw sessionError("INVALID_INPUT", "message.id: must be a non-empty string");
}

function retryDelay(failures: number): number {
  return Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS);
}

/** Logs one JSON line; session and user ids stay out of logs (the object id identifies the object). */
function log(event: string, fields: Record<string, JsonScalar>): void {
  console.log(JSON.stringify({ event, component: "SessionMemoryDO", ...fields }));
}

export class SessionMemoryDO extends DurableObject<PersistenceEnv> {
  private readonly sql: SqlStorage;
  private service?: DataPersistenceService;

  constructor(ctx: DurableObjectState, env: PersistenceEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Runs before any call is delivered, so every method sees the tables.
    this.createTables();
  }

  /**
   * Appends a message and resets the inactivity alarm; returns the session's message count.
   * The first message creates the session, owned by `options.userId`. With a `userId`, a session
   * owned by someone else is FORBIDDEN. A message whose id is already stored is ignored (retries
   * are safe). An archived session is a CONFLICT: restore it first.
   */
  async addMessage(message: SessionMessage, options: { userId?: string; summary?: string } = {}): Promise<number> {
    try {
      const existing = this.readSession();
      // The owner and summary the archive will record: the stored ones were checked on arrival.
      checkMessage(message, existing ? existing.user_id : (options.userId ?? null), options.summary ?? existing?.summary ?? "");
      if (existing) {
        this.checkOwner(existing, options.userId);
        if (existing.status === "archived") throw sessionError("CONFLICT", `session ${existing.session_id} is archived; restore it first`);
        if (message.sessionId !== existing.session_id) {
          throw sessionError("INVALID_INPUT", `message.sessionId: ${message.sessionId} is not this object's session ${existing.session_id}`);
        }
      }
      const ttl = this.policy().conversationTTL;
      const now = Date.now();
      this.ctx.storage.transactionSync(() => {
        if (existing) {
          this.sql.exec(
            "UPDATE session SET last_activity = ?, summary = coalesce(?, summary), archive_failures = 0",
            now,
            options.summary ?? null,
          );
        } else {
          this.sql.exec(
            "INSERT INTO session (singleton, session_id, user_id, status, created_at, last_activity, summary) VALUES (1, ?, ?, 'active', ?, ?, ?)",
            message.sessionId,
            options.userId ?? null,
            now,
            now,
            options.summary ?? "",
          );
        }
        this.sql.exec("INSERT OR IGNORE INTO messages (id, body) VALUES (?, ?)", message.id, JSON.stringify(message));
      });
      await this.ctx.storage.setAlarm(now + ttl);
      return this.messageCount();
    } catch (error) {
      throw coded(error);
    }
  }

  /** The session's state and its `limit` (20) most recent messages, oldest first; NOT_FOUND before the first message. */
  getContext(options: { limit?: number; userId?: string } = {}): SessionContext {
    try {
      const session = this.requireSession(options.userId);
      const limit = Math.max(1, Math.min(Math.trunc(options.limit ?? DEFAULT_CONTEXT_MESSAGES) || DEFAULT_CONTEXT_MESSAGES, MAX_CONTEXT_MESSAGES));
      return { ...this.info(session), recentMessages: this.recentMessages(limit) };
    } catch (error) {
      throw coded(error);
    }
  }

  /** The session's state (owner included) without an ownership check, or null before the first message. */
  getSessionInfo(): SessionInfo | null {
    const session = this.readSession();
    return session ? this.info(session) : null;
  }

  /**
   * Archives the session through DataPersistenceService and resolves to the archive's R2 key.
   * The messages are cleared only after the archive was written AND read back by that key with
   * the same message ids (ARCHIVE_UNVERIFIED otherwise, and nothing is cleared). What stays is one row:
   * the owner and the archive key, so the session id cannot be taken over by another user; it is
   * deleted by alarm after archiveRetention. Archiving an archived session returns its key.
   */
  async archiveSession(options: { userId?: string } = {}): Promise<string> {
    try {
      const session = this.requireSession(options.userId);
      if (session.status === "archived" && session.archive_key !== null) return session.archive_key;
      return await this.exclusive(() => this.archiveNow());
    } catch (error) {
      throw coded(error);
    }
  }

  /**
   * Loads an archive of `sessionId` back into this object (status "active", the inactivity alarm
   * restarted) and returns the session's context: the archive this object wrote last when it
   * still exists, else the session's newest archive. NOT_FOUND without an archive;
   * FORBIDDEN when `options.userId` is given and owns neither this object nor the archive;
   * CONFLICT while the object holds unarchived messages.
   */
  async restoreSession(sessionId: string, options: { userId?: string } = {}): Promise<SessionContext> {
    try {
      if (typeof sessionId !== "string" || sessionId.length === 0) throw sessionError("INVALID_INPUT", "sessionId: must be a non-empty string");
      return await this.exclusive(() => this.restoreNow(sessionId, options.userId));
    } catch (error) {
      throw coded(error);
    }
  }

  /**
   * Forgets the session if `userId` owns it (an erasure of that user): its live messages and the
   * owner row an archived session keeps are deleted, and its alarm cancelled. Resolves to
   * whether anything was deleted; a session of another user, or none, is left as it is.
   */
  async forgetUser(userId: string): Promise<boolean> {
    try {
      if (typeof userId !== "string" || userId.length === 0) throw sessionError("INVALID_INPUT", "userId: must be a non-empty string");
      return await this.exclusive(async () => {
        const session = this.readSession();
        if (!session || session.user_id !== userId) return false;
        await this.ctx.storage.deleteAlarm();
        await this.ctx.storage.deleteAll();
        this.createTables();
        log("session_forgotten", {});
        return true;
      });
    } catch (error) {
      throw coded(error);
    }
  }

  /** One page of `userId`'s archives, newest first (`limit` 20, 1..=1000). */
  async listArchivedConversations(userId: string, options: { limit?: number; cursor?: string } = {}): Promise<ArchivePage> {
    try {
      const list = await this.persistence().listArchivedConversations(userId, options.limit ?? 20, options.cursor);
      const page: ArchivePage = { archives: Array.from(list), listComplete: list.listComplete };
      if (list.cursor !== undefined) page.cursor = list.cursor;
      return page;
    } catch (error) {
      throw coded(error);
    }
  }

  /**
   * Archives the session once conversationTTL has passed since its last activity. A failed
   * archive keeps every message and retries later (1 min, doubling to 1 h). On an archived
   * session the alarm deletes the remaining row, after archiveRetention.
   */
  override async alarm(): Promise<void> {
    const session = this.readSession();
    if (!session) return;
    const now = Date.now();
    if (session.status === "archived") {
      await this.ctx.storage.deleteAll();
      this.createTables();
      log("session_row_expired", {});
      return;
    }
    const due = session.last_activity + this.policy().conversationTTL;
    if (now < due) {
      await this.ctx.storage.setAlarm(due);
      return;
    }
    try {
      await this.exclusive(() => this.archiveNow());
      log("session_archived_by_alarm", { idleMs: now - session.last_activity });
    } catch (error) {
      const failures = session.archive_failures + 1;
      this.sql.exec("UPDATE session SET archive_failures = ?", failures);
      const code = sessionErrorCode(error);
      if (code !== undefined && REFUSED_ARCHIVE_CODES.has(code)) {
        // Retrying cannot succeed: keep the session as it is (nothing is lost, and it can still
        // be read), stop the alarm, and say so once. The next message re-arms the alarm.
        log("session_archive_refused", { code, failures });
        return;
      }
      const retryInMs = retryDelay(failures);
      await this.ctx.storage.setAlarm(now + retryInMs);
      log("session_archive_failed", {
        code: code ?? "UNEXPECTED",
        message: String((error as Error)?.message ?? error).slice(0, 200),
        failures,
        retryInMs,
      });
    }
  }

  /**
   * The service this object archives through; built once, from the object's env the same way the
   * Worker builds its own ([vars] and secrets), so both hash user ids with the same key.
   */
  protected persistence(): DataPersistenceService {
    this.service ??= new DataPersistenceService(this.env, this.policy(), optionsFromEnv(this.env));
    return this.service;
  }

  private policy(): DataRetentionPolicy {
    return policyFromEnv(this.env);
  }

  /**
   * Runs `work` with input blocked, so no message lands between reading the messages and
   * clearing them. Failures are returned out of the block: a throwing block resets the object.
   */
  private async exclusive<T>(work: () => Promise<T>): Promise<T> {
    const outcome = await this.ctx.blockConcurrencyWhile(async () => {
      try {
        return { ok: true as const, value: await work() };
      } catch (error) {
        return { ok: false as const, error };
      }
    });
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  private async archiveNow(): Promise<string> {
    const session = this.readSession();
    if (!session) throw sessionError("NOT_FOUND", "session has no messages");
    if (session.status === "archived" && session.archive_key !== null) return session.archive_key;
    const messages = this.allMessages();
    if (messages.length === 0) throw sessionError("NOT_FOUND", `session ${session.session_id} has no messages to archive`);
    const memory: ConversationMemory = { sessionId: session.session_id, messages, summary: session.summary };
    const state: SessionState = {
      id: session.session_id,
      status: "archived",
      createdAt: session.created_at,
      lastActivity: session.last_activity,
      ...(session.user_id === null ? {} : { userId: session.user_id }),
    };
    const service = this.persistence();
    const archiveKey = await service.archiveConversation(memory, state);
    // By its R2 key (strongly consistent): KV's archive_meta may still name the previous archive
    // for up to a minute, which would fail the check and make the alarm archive again and again.
    const readBack = await service.retrieveArchive(archiveKey);
    const expected = messages.map((message) => message.id);
    const found = readBack?.messages.map((message) => message.id) ?? [];
    if (expected.length !== found.length || expected.some((id, index) => id !== found[index])) {
      throw sessionError(
        "ARCHIVE_UNVERIFIED",
        `archive ${archiveKey} read back ${found.length} message ids, expected the ${expected.length} archived; nothing was cleared`,
      );
    }
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM messages");
      this.sql.exec("UPDATE session SET status = 'archived', archive_key = ?, archive_failures = 0", archiveKey);
    });
    await this.ctx.storage.setAlarm(Date.now() + this.policy().archiveRetention);
    return archiveKey;
  }

  private async restoreNow(sessionId: string, userId: string | undefined): Promise<SessionContext> {
    const existing = this.readSession();
    if (existing) {
      this.checkOwner(existing, userId);
      if (existing.session_id !== sessionId) {
        throw sessionError("INVALID_INPUT", `sessionId: ${sessionId} is not this object's session ${existing.session_id}`);
      }
      const held = this.messageCount();
      if (existing.status === "active" && held > 0) {
        throw sessionError("CONFLICT", `session ${sessionId} is active with ${held} messages; archive it before restoring`);
      }
    }
    const archived = await this.archiveToRestore(existing, sessionId);
    if (archived === null) throw sessionError("NOT_FOUND", `no archive of session ${sessionId}`);
    const owner = archived.sessionState?.userId;
    if (userId !== undefined && owner !== userId) throw sessionError("FORBIDDEN", `session ${sessionId} belongs to another user`);
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM messages");
      this.sql.exec(
        `INSERT OR REPLACE INTO session
           (singleton, session_id, user_id, status, created_at, last_activity, summary, archive_key, archive_failures)
         VALUES (1, ?, ?, 'active', ?, ?, ?, NULL, 0)`,
        sessionId,
        owner ?? userId ?? null,
        archived.sessionState?.createdAt ?? now,
        now,
        archived.summary ?? "",
      );
      for (const message of archived.messages) {
        this.sql.exec("INSERT OR IGNORE INTO messages (id, body) VALUES (?, ?)", message.id, JSON.stringify(message));
      }
    });
    await this.ctx.storage.setAlarm(now + this.policy().conversationTTL);
    const session = this.readSession()!;
    return { ...this.info(session), recentMessages: this.recentMessages(DEFAULT_CONTEXT_MESSAGES) };
  }

  /**
   * The archive this object wrote last, read by its R2 key (strongly consistent, so an archive
   * made seconds ago is found), else, once that is gone or the object kept no key, the session's
   * newest archive as KV's archive_meta names it.
   */
  private async archiveToRestore(session: SessionRow | null, sessionId: string): Promise<ArchivedConversation | null> {
    const service = this.persistence();
    if (session?.archive_key) {
      const own = await service.retrieveArchive(session.archive_key);
      if (own !== null) return own;
    }
    return service.retrieveArchivedConversation(sessionId);
  }

  private createTables(): void {
    this.sql.exec(
      `CREATE TABLE IF NOT EXISTS messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         id TEXT NOT NULL UNIQUE,
         body TEXT NOT NULL
       );
       CREATE TABLE IF NOT EXISTS session (
         singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
         session_id TEXT NOT NULL,
         user_id TEXT,
         status TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         last_activity INTEGER NOT NULL,
         summary TEXT NOT NULL DEFAULT '',
         archive_key TEXT,
         archive_failures INTEGER NOT NULL DEFAULT 0
       )`,
    );
  }

  private readSession(): SessionRow | null {
    return this.sql.exec<SessionRow>("SELECT * FROM session").toArray()[0] ?? null;
  }

  private requireSession(userId: string | undefined): SessionRow {
    const session = this.readSession();
    if (!session) throw sessionError("NOT_FOUND", "session not found");
    this.checkOwner(session, userId);
    return session;
  }

  /** With a caller's `userId`, only the session's owner passes (an unowned session has none). */
  private checkOwner(session: SessionRow, userId: string | undefined): void {
    if (userId !== undefined && session.user_id !== userId) {
      throw sessionError("FORBIDDEN", `session ${session.session_id} belongs to another user`);
    }
  }

  private info(session: SessionRow): SessionInfo {
    const info: SessionInfo = {
      sessionId: session.session_id,
      status: session.status,
      createdAt: session.created_at,
      lastActivity: session.last_activity,
      summary: session.summary,
      messageCount: this.messageCount(),
    };
    if (session.user_id !== null) info.userId = session.user_id;
    if (session.archive_key !== null) info.archiveKey = session.archive_key;
    return info;
  }

  private recentMessages(limit: number): SessionMessage[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM (SELECT seq, body FROM messages ORDER BY seq DESC LIMIT ?) ORDER BY seq", limit)
      .toArray()
      .map((row) => JSON.parse(row.body) as SessionMessage);
  }

  private allMessages(): SessionMessage[] {
    return this.sql
      .exec<{ body: string }>("SELECT body FROM messages ORDER BY seq")
      .toArray()
      .map((row) => JSON.parse(row.body) as SessionMessage);
  }

  private messageCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
  }
}
