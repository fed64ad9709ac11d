// SessionMemoryDO: one Durable Object per chat session, holding its live messages in the
// object's SQLite storage until the session is archived.
import { DurableObject } from "cloudflare:workers";
import type { PersistenceEnv } from "./env.js";

/** A chat message as the spec's ChatMessage. */
export interface ChatMessage {
  id: string;
  sessionId: string;
  role: "user" | "assistant" | "system";
  content: string;
  /** Epoch milliseconds. */
  timestamp: number;
  // Flat on purpose: RPC stub types cannot map a recursive JSON type (TS2589).
  metadata?: Record<string, string | number | boolean | null>;
}

/** The most recent messages of a session, oldest first. */
export interface SessionContext {
  sessionId: string;
  messageCount: number;
  recentMessages: ChatMessage[];
}

const ROLES = new Set(["user", "assistant", "system"]);

export class SessionMemoryDO extends DurableObject<PersistenceEnv> {
  private readonly sql: SqlStorage;

  constructor(state: DurableObjectState, env: PersistenceEnv) {
    super(state, env);
    this.sql = state.storage.sql;
    // Runs before any request is delivered, so every method sees the table.
    this.sql.exec(
      `CREATE TABLE IF NOT EXISTS messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         id TEXT NOT NULL UNIQUE,
         body TEXT NOT NULL
       )`,
    );
  }

  /** Appends a message; a message whose id is already stored is ignored (retries are safe). */
  addMessage(message: ChatMessage): number {
    if (typeof message?.id !== "string" || message.id.length === 0) {
      throw new TypeError("message.id must be a non-empty string");
    }
    if (!ROLES.has(message.role)) throw new TypeError(`message.role ${String(message.role)} is not user, assistant or system`);
    if (typeof message.content !== "string") throw new TypeError("message.content must be a string");
    if (!Number.isSafeInteger(message.timestamp) || message.timestamp < 0) {
      throw new TypeError("message.timestamp must be non-negative integral epoch milliseconds");
    }
    this.sql.exec("INSERT OR IGNORE INTO messages (id, body) VALUES (?, ?)", message.id, JSON.stringify(message));
    return this.messageCount();
  }

  /** The session's `limit` most recent messages, oldest first. */
  getContext(sessionId: string, limit = 20): SessionContext {
    const bounded = Math.max(1, Math.min(Math.trunc(limit) || 20, 1000));
    const rows = this.sql
      .exec<{ body: string }>("SELECT body FROM (SELECT seq, body FROM messages ORDER BY seq DESC LIMIT ?) ORDER BY seq", bounded)
      .toArray();
    return {
      sessionId,
      messageCount: this.messageCount(),
      recentMessages: rows.map((row) => JSON.parse(row.body) as ChatMessage),
    };
  }

  private messageCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
  }
}
