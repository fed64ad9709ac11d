// In-memory KV and R2 shaped like the Workers bindings (the methods src/wasm/kv.rs and
// src/wasm/r2.rs call, plus the ones the TypeScript contenders use), counting calls by kind and
// bytes written. Like the real services they copy bytes in and out and serialize metadata as
// JSON; what real KV/R2 do server side (R2's SHA-256 check) is modelled only when `checked`.
import { createHash } from "node:crypto";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A value given to put() as bytes (a copy, as the runtime makes one). */
function toBytes(value) {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  throw new TypeError(`unsupported value type ${Object.prototype.toString.call(value)}`);
}

/** Call and byte counters of one binding. */
export class Counters {
  constructor(kinds) {
    this.kinds = kinds;
    this.reset();
  }
  reset() {
    this.calls = Object.fromEntries(this.kinds.map((kind) => [kind, 0]));
    this.bytesWritten = 0;
    this.deletedKeys = 0;
    this.largestDeleteBatch = 0;
  }
}

/**
 * Sorted key index, so list() pages by binary search. A new key rebuilds it (lazily, at the next
 * list); a deleted key only goes stale in it, and lists skip stale keys: otherwise every list
 * after a delete would re-sort the whole store, a cost the real KV and R2 do not have, charged to
 * whichever contender interleaves lists and deletes.
 */
class SortedKeys {
  constructor() {
    this.sorted = null;
    this.stale = 0;
  }
  invalidate() {
    this.sorted = null;
    this.stale = 0;
  }
  deleted() {
    if (this.sorted !== null && ++this.stale > this.sorted.length / 2) this.invalidate();
  }
  get(map) {
    // Byte order of UTF-8 equals code-point order; our keys are ASCII, where it is also UTF-16 order.
    if (this.sorted === null) this.sorted = [...map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return this.sorted;
  }
  /** From `at`, the index of the first key still in `map`. */
  static live(sorted, at, map) {
    while (at < sorted.length && !map.has(sorted[at])) at++;
    return at;
  }
  /** Index of the first key strictly after `key`. */
  static after(sorted, key) {
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (sorted[middle] <= key) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/** Workers KV: values as bytes, metadata ≤ 1024 bytes of JSON, TTL ≥ 60 s, pages ≤ 1000 keys. */
export class FakeKV {
  constructor(clock) {
    this.clock = clock;
    this.entries = new Map();
    this.index = new SortedKeys();
    this.counters = new Counters(["get", "put", "delete", "list"]);
  }

  /** A copy sharing nothing mutable with this namespace (values are never mutated). */
  clone() {
    const copy = new FakeKV(this.clock);
    copy.entries = new Map(this.entries);
    return copy;
  }

  #live(key) {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiration !== undefined && entry.expiration * 1000 <= this.clock.now) {
      this.entries.delete(key);
      this.index.deleted();
      return undefined;
    }
    return entry;
  }

  #read(entry, type) {
    if (type === "arrayBuffer") return entry.value.slice().buffer;
    if (type === "json") return JSON.parse(decoder.decode(entry.value));
    if (type === "stream") throw new Error("stream reads are not modelled");
    return decoder.decode(entry.value);
  }

  async get(key, options) {
    this.counters.calls.get++;
    const entry = this.#live(key);
    if (entry === undefined) return null;
    return this.#read(entry, typeof options === "string" ? options : options?.type);
  }

  async getWithMetadata(key, options) {
    this.counters.calls.get++;
    const entry = this.#live(key);
    if (entry === undefined) return { value: null, metadata: null, cacheStatus: null };
    const metadata = entry.metadata === undefined ? null : JSON.parse(entry.metadata);
    return { value: this.#read(entry, typeof options === "string" ? options : options?.type), metadata, cacheStatus: null };
  }

  async put(key, value, options = {}) {
    this.counters.calls.put++;
    if (key.length === 0 || key.length > 512) throw new Error(`KV put failed: 414 key ${key.length} bytes`);
    const bytes = toBytes(value);
    let metadata;
    if (options.metadata !== undefined && options.metadata !== null) {
      metadata = JSON.stringify(options.metadata);
      if (encoder.encode(metadata).length > 1024) throw new Error(`KV put failed: 413 metadata of ${key} exceeds 1024 bytes`);
    }
    let expiration;
    if (options.expirationTtl !== undefined) {
      if (options.expirationTtl < 60) throw new Error(`KV put failed: 400 expirationTtl ${options.expirationTtl} < 60`);
      expiration = Math.floor(this.clock.now / 1000) + options.expirationTtl;
    } else if (options.expiration !== undefined) {
      expiration = options.expiration;
    }
    if (!this.entries.has(key)) this.index.invalidate();
    this.entries.set(key, { value: bytes, metadata, expiration });
    this.counters.bytesWritten += bytes.length + (metadata === undefined ? 0 : metadata.length);
  }

  async delete(key) {
    this.counters.calls.delete++;
    this.counters.deletedKeys++;
    this.counters.largestDeleteBatch = Math.max(this.counters.largestDeleteBatch, 1);
    if (this.entries.delete(key)) this.index.deleted();
  }

  async list(options = {}) {
    this.counters.calls.list++;
    const limit = Math.min(options.limit ?? 1000, 1000);
    const prefix = options.prefix ?? "";
    const sorted = this.index.get(this.entries);
    let at = options.cursor ? SortedKeys.after(sorted, options.cursor) : SortedKeys.after(sorted, prefix) - (this.entries.has(prefix) ? 1 : 0);
    const keys = [];
    let last;
    while ((at = SortedKeys.live(sorted, at, this.entries)) < sorted.length && keys.length < limit) {
      const name = sorted[at++];
      if (!name.startsWith(prefix)) {
        at = sorted.length;
        break;
      }
      last = name;
      const entry = this.entries.get(name);
      if (entry.expiration !== undefined && entry.expiration * 1000 <= this.clock.now) continue;
      const listed = { name };
      if (entry.expiration !== undefined) listed.expiration = entry.expiration;
      if (entry.metadata !== undefined) listed.metadata = JSON.parse(entry.metadata);
      keys.push(listed);
    }
    at = SortedKeys.live(sorted, at, this.entries);
    const complete = at >= sorted.length || !sorted[at].startsWith(prefix);
    return complete ? { keys, list_complete: true, cacheStatus: null } : { keys, list_complete: false, cursor: last, cacheStatus: null };
  }
}

/** R2: bodies as bytes, custom metadata ≤ 2 KiB, sha256 and onlyIf on put, ≤ 1000 keys a delete. */
export class FakeR2 {
  constructor(clock, { checked = false } = {}) {
    this.clock = clock;
    this.checked = checked;
    this.objects = new Map();
    this.index = new SortedKeys();
    this.counters = new Counters(["get", "head", "put", "delete", "list"]);
  }

  clone() {
    const copy = new FakeR2(this.clock, { checked: this.checked });
    copy.objects = new Map(this.objects);
    return copy;
  }

  #meta(key, stored, includeCustom = true) {
    const object = {
      key,
      version: stored.etag,
      size: stored.body.length,
      etag: stored.etag,
      httpEtag: `"${stored.etag}"`,
      uploaded: new Date(stored.uploaded),
      httpMetadata: { ...stored.httpMetadata },
      checksums: stored.sha256 === undefined ? {} : { sha256: stored.sha256.slice(0) },
      storageClass: "Standard",
    };
    if (includeCustom) object.customMetadata = { ...stored.customMetadata };
    return object;
  }

  async head(key) {
    this.counters.calls.head++;
    const stored = this.objects.get(key);
    return stored === undefined ? null : this.#meta(key, stored);
  }

  async get(key) {
    this.counters.calls.get++;
    const stored = this.objects.get(key);
    if (stored === undefined) return null;
    const object = this.#meta(key, stored);
    object.arrayBuffer = async () => stored.body.slice().buffer;
    object.text = async () => decoder.decode(stored.body);
    object.json = async () => JSON.parse(decoder.decode(stored.body));
    object.bodyUsed = false;
    return object;
  }

  async put(key, value, options = {}) {
    this.counters.calls.put++;
    if (options.onlyIf?.etagDoesNotMatch === "*" && this.objects.has(key)) return null;
    if (options.onlyIf?.etagMatches !== undefined && this.objects.get(key)?.etag !== options.onlyIf.etagMatches) return null;
    const body = toBytes(value);
    let sha256;
    if (options.sha256 !== undefined) {
      const hex = typeof options.sha256 === "string" ? options.sha256.toLowerCase() : Buffer.from(options.sha256).toString("hex");
      if (this.checked && createHash("sha256").update(body).digest("hex") !== hex) {
        throw new Error(`put: The SHA-256 checksum you specified did not match what we received. (10037) ${key}`);
      }
      sha256 = new Uint8Array(Buffer.from(hex, "hex")).buffer;
    }
    const customMetadata = { ...(options.customMetadata ?? {}) };
    const customBytes = Object.entries(customMetadata).reduce((sum, [name, text]) => sum + name.length + String(text).length, 0);
    if (customBytes > 2048) throw new Error(`put: customMetadata of ${key} is ${customBytes} bytes, over 2048`);
    if (!this.objects.has(key)) this.index.invalidate();
    const stored = { body, customMetadata, httpMetadata: { ...(options.httpMetadata ?? {}) }, sha256, uploaded: this.clock.now, etag: (++FakeR2.etags).toString(16) };
    this.objects.set(key, stored);
    this.counters.bytesWritten += body.length + customBytes;
    return this.#meta(key, stored);
  }

  async delete(keys) {
    this.counters.calls.delete++;
    const list = Array.isArray(keys) ? keys : [keys];
    if (list.length > 1000) throw new Error(`delete: ${list.length} keys, at most 1000`);
    this.counters.deletedKeys += list.length;
    this.counters.largestDeleteBatch = Math.max(this.counters.largestDeleteBatch, list.length);
    for (const key of list) if (this.objects.delete(key)) this.index.deleted();
  }

  async list(options = {}) {
    this.counters.calls.list++;
    const limit = Math.min(options.limit ?? 1000, 1000);
    const prefix = options.prefix ?? "";
    const includeCustom = (options.include ?? []).includes("customMetadata");
    const sorted = this.index.get(this.objects);
    const after = options.cursor ?? options.startAfter;
    let at = after !== undefined ? SortedKeys.after(sorted, after) : SortedKeys.after(sorted, prefix) - (this.objects.has(prefix) ? 1 : 0);
    const objects = [];
    while ((at = SortedKeys.live(sorted, at, this.objects)) < sorted.length && objects.length < limit && sorted[at].startsWith(prefix)) {
      const key = sorted[at++];
      objects.push(this.#meta(key, this.objects.get(key), includeCustom));
    }
    at = SortedKeys.live(sorted, at, this.objects);
    const truncated = at < sorted.length && sorted[at].startsWith(prefix);
    return truncated
      ? { objects, truncated: true, cursor: objects[objects.length - 1].key, delimitedPrefixes: [] }
      : { objects, truncated: false, delimitedPrefixes: [] };
  }
}
FakeR2.etags = 0;

/** A controllable clock behind Date.now(), so every contender reads the same time. */
export class VirtualClock {
  constructor(startMs) {
    this.now = startMs;
  }
  install() {
    const clock = this;
    Date.now = () => clock.now;
  }
}

/** Both bindings over one clock, and their combined counters. */
export function freshBindings(clock, options) {
  return { CHAT_KV: new FakeKV(clock), ARCHIVE_R2: new FakeR2(clock, options) };
}

/** Fresh bindings holding only backup `backupId` (its R2 objects and KV manifest copy), as after losing the archives. */
export function backupOnly(bindings, backupId, clock, options) {
  const fresh = freshBindings(clock, options);
  for (const [key, value] of bindings.ARCHIVE_R2.objects) if (key.startsWith(`backups/${backupId}/`)) fresh.ARCHIVE_R2.objects.set(key, value);
  for (const [key, value] of bindings.CHAT_KV.entries) if (key.startsWith(`backup_manifest:${backupId}`)) fresh.CHAT_KV.entries.set(key, value);
  return fresh;
}

/** A copy of `bindings` over `clock` sharing their stored entries (for a job that writes only new keys or deletes). */
export function copyBindings(bindings, clock) {
  const copy = freshBindings(clock);
  for (const [key, value] of bindings.ARCHIVE_R2.objects) copy.ARCHIVE_R2.objects.set(key, value);
  for (const [key, value] of bindings.CHAT_KV.entries) copy.CHAT_KV.entries.set(key, value);
  return copy;
}

/** The calls of `snapshotCounters` as text, `1001 KV get, 3 KV list, ...` (kinds with none left out). */
export function describeCalls(counters) {
  const kinds = [...Object.entries(counters.kv).map(([k, v]) => [`KV ${k}`, v]), ...Object.entries(counters.r2).map(([k, v]) => [`R2 ${k}`, v])];
  return kinds.filter(([, v]) => v > 0).map(([k, v]) => `${+v.toFixed(2)} ${k}`).join(", ");
}

/** Calls and bytes of both bindings: {kv: {get,...}, r2: {...}, kvBytes, r2Bytes, ...}. */
export function snapshotCounters(bindings) {
  const kv = bindings.CHAT_KV.counters;
  const r2 = bindings.ARCHIVE_R2.counters;
  return {
    kv: { ...kv.calls },
    r2: { ...r2.calls },
    kvBytes: kv.bytesWritten,
    r2Bytes: r2.bytesWritten,
    r2DeletedKeys: r2.deletedKeys,
    r2LargestDeleteBatch: r2.largestDeleteBatch,
  };
}

export function resetCounters(bindings) {
  bindings.CHAT_KV.counters.reset();
  bindings.ARCHIVE_R2.counters.reset();
}
