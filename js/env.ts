// The bindings this library works with, as declared in wrangler.toml.
import type { SessionMemoryDO } from "./session_memory_do.js";

/** The Worker environment the library and the example Worker expect. */
export interface PersistenceEnv {
  /** Workers KV: caches, archive metadata, per-user archive index, backup manifests. */
  CHAT_KV: KVNamespace;
  /** R2: gzip'd conversation archives and backups. */
  ARCHIVE_R2: R2Bucket;
  /** One SessionMemoryDO per chat session. */
  SESSION_MEMORY: DurableObjectNamespace<SessionMemoryDO>;
}
