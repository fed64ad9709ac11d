// Contender (c): best-practice TypeScript with only platform APIs: JSON, CompressionStream gzip,
// crypto.subtle SHA-256 (keys, checksums, R2's own upload check), summaries in KV list
// metadata (one list per page), batched R2 deletes. The bar the library must beat in JS.

export const label = "(c) best-practice TS";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function pipe(bytes, transform) {
  const stream = new Blob([bytes]).stream().pipeThrough(transform);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
export const gzip = (bytes) => pipe(bytes, new CompressionStream("gzip"));
export const gunzip = (bytes) => pipe(bytes, new DecompressionStream("gzip"));

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
function hex(buffer) {
  const bytes = new Uint8Array(buffer);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}
export async function sha256Hex(data) {
  return hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? encoder.encode(data) : data));
}

const DEFAULT_POLICY = {
  cacheTTL: 24 * 60 * 60 * 1000,
  archiveRetention: 90 * 24 * 60 * 60 * 1000,
  maxArchiveSize: 50 * 1024 * 1024,
};
const INVERT = 9999999999999;

function archiveKey(sessionId, archivedAt) {
  const date = new Date(archivedAt);
  const month = String(date.getUTCMonth() + 1).padStart(2, "0");
  return `conversations/${date.getUTCFullYear()}/${month}/archive_${sessionId}_${archivedAt}.json.gz`;
}
function parseArchiveKey(key) {
  const match = /archive_(.+)_(\d+)\.json\.gz$/.exec(key);
  return match ? { sessionId: match[1], archivedAt: Number(match[2]) } : null;
}

/** A listing summary that fits KV's 1024-byte metadata limit. */
function summaryOf(metadata, key) {
  const summary = { ...metadata, key };
  let text = summary.summary ?? "";
  while (encoder.encode(JSON.stringify(summary)).length > 1024 && text.length > 0) {
    text = text.slice(0, Math.max(0, text.length - 64));
    summary.summary = text;
  }
  return summary;
}

export class BestPracticeContender {
  constructor(bindings, policy = {}) {
    this.kv = bindings.CHAT_KV;
    this.r2 = bindings.ARCHIVE_R2;
    this.policy = { ...DEFAULT_POLICY, ...policy };
  }

  #cacheTimes() {
    const createdAt = Date.now();
    return { createdAt, expiresAt: createdAt + this.policy.cacheTTL, ttl: Math.max(60, Math.ceil(this.policy.cacheTTL / 1000)) };
  }

  /** Encodes and stores one archive document; `archivedAt` fixes its key. */
  async #store(document, archivedAt, userKey) {
    const { metadata } = document;
    const json = JSON.stringify(document);
    if (json.length > this.policy.maxArchiveSize) throw new Error(`archive too large: ${json.length}`);
    const body = await gzip(encoder.encode(json));
    const sha256 = await sha256Hex(body);
    const key = archiveKey(metadata.sessionId, archivedAt);
    await this.r2.put(key, body, {
      sha256,
      onlyIf: { etagDoesNotMatch: "*" },
      httpMetadata: { contentType: "application/gzip" },
      customMetadata: { sessionId: metadata.sessionId, userKey: userKey ?? "", archivedAt: String(archivedAt), sha256 },
    });
    const summary = summaryOf({ ...metadata, sha256 }, key);
    await this.kv.put(`archive_meta:${metadata.sessionId}`, JSON.stringify({ ...metadata, key, sha256 }), { metadata: summary });
    if (userKey) await this.kv.put(`user_archives:${userKey}:${INVERT - archivedAt}:${metadata.sessionId}`, key, { metadata: summary });
    return key;
  }

  async archive(memory, session) {
    const archivedAt = Date.now();
    const metadata = {
      sessionId: session.id,
      userId: session.userId,
      archivedAt,
      messageCount: memory.messages.length,
      summary: memory.summary ?? "",
      duration: session.lastActivity - session.createdAt,
    };
    const userKey = session.userId === undefined ? undefined : await sha256Hex(`user\0${session.userId}`);
    return this.#store({ formatVersion: 1, metadata, conversation: { ...memory, sessionState: session } }, archivedAt, userKey);
  }

  /**
   * AI SDK UIMessages as one archive document, stored as they are (JSON.stringify, gzip,
   * SHA-256); the duration from the messages' `metadata.createdAt`.
   */
  async archiveUI(sessionId, messages, userId) {
    const archivedAt = Date.now();
    const times = messages.map((message) => message.metadata?.createdAt).filter((time) => typeof time === "number");
    const metadata = {
      sessionId,
      userId,
      archivedAt,
      messageCount: messages.length,
      summary: "",
      duration: times.length > 0 ? Math.max(...times) - Math.min(...times) : 0,
    };
    const userKey = userId === undefined ? undefined : await sha256Hex(`user\0${userId}`);
    return this.#store({ formatVersion: 1, metadata, conversation: { sessionId, messages } }, archivedAt, userKey);
  }

  async retrieveUI(sessionId) {
    return (await this.retrieve(sessionId))?.messages ?? null;
  }

  async #readArchive(key, sha256) {
    const object = await this.r2.get(key);
    if (!object) return null;
    const body = new Uint8Array(await object.arrayBuffer());
    if ((await sha256Hex(body)) !== sha256) throw new Error(`${key}: checksum mismatch`);
    return gunzip(body);
  }

  async retrieve(sessionId) {
    const meta = await this.kv.get(`archive_meta:${sessionId}`, "json");
    if (!meta) return null;
    const json = await this.#readArchive(meta.key, meta.sha256);
    return json === null ? null : JSON.parse(decoder.decode(json)).conversation;
  }

  /** One KV list per page: summaries come from list metadata. */
  async listAll(userId, pageSize) {
    const prefix = `user_archives:${await sha256Hex(`user\0${userId}`)}:`;
    const all = [];
    let cursor;
    do {
      const page = await this.kv.list({ prefix, limit: pageSize, cursor });
      for (const key of page.keys) all.push(key.metadata);
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    return all;
  }

  async cacheEmbedding(text, embedding, metadata) {
    const { createdAt, expiresAt, ttl } = this.#cacheTimes();
    const key = `embedding:${await sha256Hex(`embedding\0${metadata?.model ?? ""}\0${text}`)}`;
    await this.kv.put(key, JSON.stringify({ embedding, metadata, createdAt, expiresAt }), { expirationTtl: ttl, metadata: { expiresAt } });
  }

  async getEmbedding(text, model) {
    const entry = await this.kv.get(`embedding:${await sha256Hex(`embedding\0${model ?? ""}\0${text}`)}`, "json");
    if (!entry || entry.expiresAt <= Date.now()) return null;
    return entry.embedding;
  }

  async cacheQuery(query, result, metadata) {
    const { createdAt, expiresAt, ttl } = this.#cacheTimes();
    const key = `query:${await sha256Hex(`query\0${query.trim().toLowerCase()}`)}`;
    await this.kv.put(key, JSON.stringify({ result, metadata, createdAt, expiresAt }), { expirationTtl: ttl, metadata: { expiresAt } });
  }

  async getQuery(query) {
    const entry = await this.kv.get(`query:${await sha256Hex(`query\0${query.trim().toLowerCase()}`)}`, "json");
    if (!entry || entry.expiresAt <= Date.now()) return null;
    return entry.result;
  }

  hash(text) {
    return sha256Hex(text);
  }

  /** Bundles the archive documents as they are (JSON text, not re-parsed), data first, manifest last. */
  async backup(sessionIds) {
    const texts = [];
    const included = [];
    for (const sessionId of sessionIds) {
      const meta = await this.kv.get(`archive_meta:${sessionId}`, "json");
      const json = meta && (await this.#readArchive(meta.key, meta.sha256));
      if (!json) continue;
      texts.push(decoder.decode(json));
      included.push(sessionId);
    }
    return this.#putBundle(texts, included);
  }

  /**
   * Every archive in the bucket, naively in one invocation: list R2 (checksums come with the
   * listing's custom metadata), read and verify each archive, one bundle, gzip, put.
   */
  async backupAll() {
    const texts = [];
    const included = [];
    let cursor;
    do {
      const page = await this.r2.list({ prefix: "conversations/", cursor, include: ["customMetadata"] });
      for (const object of page.objects) {
        const json = await this.#readArchive(object.key, object.customMetadata.sha256);
        if (!json) continue;
        texts.push(decoder.decode(json));
        included.push(object.customMetadata.sessionId);
      }
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    return this.#putBundle(texts, included);
  }

  async #putBundle(texts, included) {
    const backupId = `backup_${Date.now()}`;
    const data = `{"backupId":${JSON.stringify(backupId)},"archives":[${texts.join(",")}]}`;
    const body = await gzip(encoder.encode(data));
    const sha256 = await sha256Hex(body);
    await this.r2.put(`backups/${backupId}/data.json.gz`, body, { sha256, httpMetadata: { contentType: "application/gzip" } });
    const manifest = JSON.stringify({ backupId, createdAt: Date.now(), sessionIds: included, sha256, size: body.length });
    await this.r2.put(`backups/${backupId}/manifest.json`, manifest, { onlyIf: { etagDoesNotMatch: "*" }, customMetadata: { createdAt: String(Date.now()) } });
    await this.kv.put(`backup_manifest:${backupId}`, manifest, { metadata: { createdAt: Date.now() } });
    return backupId;
  }

  async restore(backupId) {
    const manifest = await (await this.r2.get(`backups/${backupId}/manifest.json`)).json();
    const json = await this.#readArchive(`backups/${backupId}/data.json.gz`, manifest.sha256);
    const restored = [];
    for (const document of JSON.parse(decoder.decode(json)).archives) {
      const { metadata, conversation } = document;
      const userId = conversation.sessionState?.userId;
      const userKey = userId === undefined ? undefined : await sha256Hex(`user\0${userId}`);
      await this.#store(document, metadata.archivedAt, userKey);
      restored.push(metadata.sessionId);
    }
    return restored;
  }

  /** Decides from listings only: KV list metadata and R2 keys; R2 deletes in batches of ≤ 1000. */
  async retention() {
    const now = Date.now();
    let deleted = 0;
    for (const prefix of ["embedding:", "query:"]) {
      let cursor;
      do {
        const page = await this.kv.list({ prefix, cursor });
        for (const { name, metadata } of page.keys) {
          if (metadata && metadata.expiresAt <= now) {
            await this.kv.delete(name);
            deleted++;
          }
        }
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
    }
    const cutoff = now - this.policy.archiveRetention;
    let cursor;
    do {
      const page = await this.r2.list({ prefix: "conversations/", cursor, include: ["customMetadata"] });
      const expired = page.objects.filter((object) => (parseArchiveKey(object.key)?.archivedAt ?? Infinity) < cutoff);
      if (expired.length > 0) await this.r2.delete(expired.map((object) => object.key));
      for (const object of expired) {
        const { sessionId, archivedAt } = parseArchiveKey(object.key);
        const userKey = object.customMetadata?.userKey;
        if (userKey) await this.kv.delete(`user_archives:${userKey}:${INVERT - archivedAt}:${sessionId}`);
        await this.kv.delete(`archive_meta:${sessionId}`);
      }
      deleted += expired.length * 3;
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    let backupCursor;
    do {
      const page = await this.r2.list({ prefix: "backups/", cursor: backupCursor });
      const expired = page.objects.filter((object) => object.uploaded.getTime() < cutoff).map((object) => object.key);
      if (expired.length > 0) await this.r2.delete(expired);
      deleted += expired.length;
      backupCursor = page.truncated ? page.cursor : undefined;
    } while (backupCursor);
    return { deleted };
  }
}
