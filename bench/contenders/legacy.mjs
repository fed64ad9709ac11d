// Contender (b): plain TypeScript the way the spec's earlier implementation worked: archives as
// plain JSON, a 32-bit string hash in cache keys, embeddings as JSON, no compression, and a
// `get` per key wherever a listing needs a value (user listings, cleanup). Written for this
// benchmark from that description; kept working (pagination, KV's 60 s TTL floor) so it can be
// timed on the same workloads.

export const label = "(b) legacy TS";

/** Java's String.hashCode: the 32-bit hash the earlier implementation keyed caches with. */
export function hash32(text) {
  let hash = 0;
  for (let i = 0; i < text.length; i++) hash = ((hash << 5) - hash + text.charCodeAt(i)) | 0;
  return Math.abs(hash).toString(36);
}

function archiveKey(sessionId, archivedAt) {
  const date = new Date(archivedAt);
  const month = String(date.getUTCMonth() + 1).padStart(2, "0");
  return `conversations/${date.getUTCFullYear()}/${month}/archive_${sessionId}_${archivedAt}.json`;
}

const DEFAULT_POLICY = {
  cacheTTL: 24 * 60 * 60 * 1000,
  archiveRetention: 90 * 24 * 60 * 60 * 1000,
  maxArchiveSize: 50 * 1024 * 1024,
};

export class LegacyContender {
  constructor(bindings, policy = {}) {
    this.kv = bindings.CHAT_KV;
    this.r2 = bindings.ARCHIVE_R2;
    this.policy = { ...DEFAULT_POLICY, ...policy };
  }

  #ttlSeconds() {
    return Math.max(60, Math.ceil(this.policy.cacheTTL / 1000));
  }

  async archive(memory, session) {
    const archivedAt = Date.now();
    const key = archiveKey(session.id, archivedAt);
    const messages = memory.messages;
    const metadata = {
      sessionId: session.id,
      userId: session.userId,
      archivedAt,
      messageCount: messages.length,
      summary: memory.summary ?? "",
      duration: session.lastActivity - session.createdAt,
    };
    const json = JSON.stringify({ metadata, conversation: { ...memory, sessionState: session } });
    if (json.length > this.policy.maxArchiveSize) throw new Error(`archive too large: ${json.length}`);
    await this.r2.put(key, json, {
      httpMetadata: { contentType: "application/json" },
      customMetadata: { sessionId: session.id, userId: session.userId ?? "", archivedAt: String(archivedAt) },
    });
    await this.kv.put(`archive_meta:${session.id}`, JSON.stringify({ ...metadata, key }));
    return key;
  }

  async retrieve(sessionId) {
    const meta = await this.kv.get(`archive_meta:${sessionId}`, "json");
    if (!meta) return null;
    const object = await this.r2.get(meta.key);
    if (!object) return null;
    const data = await object.json();
    return data.conversation;
  }

  /** Lists every archive_meta entry, reads each, keeps the user's: 1 list + 1 get per entry. */
  async listAll(userId) {
    const found = [];
    let cursor;
    do {
      const page = await this.kv.list({ prefix: "archive_meta:", cursor });
      for (const { name } of page.keys) {
        const meta = await this.kv.get(name, "json");
        if (meta && meta.userId === userId) found.push(meta);
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    return found.sort((a, b) => b.archivedAt - a.archivedAt);
  }

  cacheEmbedding(text, embedding, metadata) {
    const value = JSON.stringify({ embedding, metadata, timestamp: Date.now() });
    return this.kv.put(`embedding:${hash32(text)}`, value, { expirationTtl: this.#ttlSeconds() });
  }

  async getEmbedding(text) {
    const entry = await this.kv.get(`embedding:${hash32(text)}`, "json");
    if (!entry || entry.timestamp + this.policy.cacheTTL < Date.now()) return null;
    return entry.embedding;
  }

  cacheQuery(query, result, metadata) {
    const value = JSON.stringify({ result, metadata, timestamp: Date.now() });
    return this.kv.put(`query:${hash32(query)}`, value, { expirationTtl: this.#ttlSeconds() });
  }

  async getQuery(query) {
    const entry = await this.kv.get(`query:${hash32(query)}`, "json");
    if (!entry || entry.timestamp + this.policy.cacheTTL < Date.now()) return null;
    return entry.result;
  }

  hash(text) {
    return hash32(text);
  }

  async backup(sessionIds) {
    const backupId = `backup_${Date.now()}`;
    const sessions = [];
    for (const sessionId of sessionIds) {
      const conversation = await this.retrieve(sessionId);
      const meta = await this.kv.get(`archive_meta:${sessionId}`, "json");
      if (conversation) sessions.push({ metadata: meta, conversation });
    }
    const data = JSON.stringify({ backupId, timestamp: Date.now(), sessions });
    const manifest = { backupId, timestamp: Date.now(), sessionIds, checksum: hash32(data), size: data.length };
    await this.r2.put(`backups/${backupId}/data.json`, data);
    await this.r2.put(`backups/${backupId}/manifest.json`, JSON.stringify(manifest));
    await this.kv.put(`backup_manifest:${backupId}`, JSON.stringify(manifest));
    return backupId;
  }

  async restore(backupId) {
    const manifest = await (await this.r2.get(`backups/${backupId}/manifest.json`)).json();
    const text = await (await this.r2.get(`backups/${backupId}/data.json`)).text();
    if (hash32(text) !== manifest.checksum) throw new Error(`backup ${backupId}: checksum mismatch`);
    const restored = [];
    for (const { metadata, conversation } of JSON.parse(text).sessions) {
      await this.r2.put(metadata.key, JSON.stringify({ metadata, conversation }), { httpMetadata: { contentType: "application/json" } });
      await this.kv.put(`archive_meta:${metadata.sessionId}`, JSON.stringify(metadata));
      restored.push(metadata.sessionId);
    }
    return restored;
  }

  /** Cleanup: reads every cache and metadata entry to find its time, deletes one key per call. */
  async retention() {
    const now = Date.now();
    let deleted = 0;
    for (const prefix of ["embedding:", "query:"]) {
      let cursor;
      do {
        const page = await this.kv.list({ prefix, cursor });
        for (const { name } of page.keys) {
          const entry = await this.kv.get(name, "json");
          if (entry && entry.timestamp + this.policy.cacheTTL < now) {
            await this.kv.delete(name);
            deleted++;
          }
        }
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
    }
    let cursor;
    do {
      const page = await this.kv.list({ prefix: "archive_meta:", cursor });
      for (const { name } of page.keys) {
        const meta = await this.kv.get(name, "json");
        if (meta && meta.archivedAt + this.policy.archiveRetention < now) {
          await this.r2.delete(meta.key);
          await this.kv.delete(name);
          deleted += 2;
        }
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    for (const prefix of ["conversations/", "backups/"]) {
      let cursor;
      do {
        const page = await this.r2.list({ prefix, cursor });
        for (const object of page.objects) {
          if (object.uploaded.getTime() + this.policy.archiveRetention < now) {
            await this.r2.delete(object.key);
            deleted++;
          }
        }
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
    }
    return { deleted };
  }
}
