// The library's TypeScript API. Platform-neutral: the entry modules (workerd.ts, node.ts,
// browser.ts) initialise the wasm module once, then re-export everything from here.
import { operationRecorder } from "./analytics.js";
import * as wasm from "./wasm/supportbot_persistence.js";
import type {
  ArchiveList,
  ArchiveMetadata,
  ArchiveUIMessagesOptions,
  ArchivedConversation,
  BackupList,
  BackupOptions,
  BackupPlan,
  BackupSummary,
  BackupRequest,
  ConversationMemory,
  DataRetentionPolicy,
  EncryptionKey,
  ErasureReceipt,
  ErasureRunOptions,
  HealthReport,
  ListBackupsOptions,
  MigrationReport,
  MigrationRunOptions,
  PackRecord,
  PackSource,
  PackStepReport,
  PersistenceBindings,
  PersistenceOptions,
  ReindexReport,
  ReplicaSyncReport,
  RotationReport,
  EncryptExistingReport,
  ExportStoreOptions,
  ImportReport,
  ImportStoreOptions,
  RestorePackOptions,
  RestoredSessions,
  RetentionReport,
  RetentionRunOptions,
  SessionState,
  StorageMetrics,
  StorageMetricsOptions,
  UIMessage,
  VerificationReport,
  VerifyStorageOptions,
} from "./types.js";

export type * from "./types.js";
export { ANALYTICS_SCHEMA, type OperationRecorder } from "./analytics.js";

/** Every `code` a PersistenceError can carry; stable across releases. */
export const ERROR_CODES = [
  "INVALID_INPUT",
  "INVALID_ID",
  "INVALID_CONFIG",
  "NOT_FOUND",
  "CHECKSUM_MISMATCH",
  "ARCHIVE_TOO_LARGE",
  "CORRUPT_DATA",
  "UNSUPPORTED_FORMAT",
  "KEY_UNAVAILABLE",
  "DECRYPTION_FAILED",
  "CRYPTO_UNAVAILABLE",
  "STORAGE_UNAVAILABLE",
  "CIRCUIT_OPEN",
] as const;

/** The stable, machine-readable reason of a PersistenceError. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error raised by this library: an `Error` whose `code` says what went wrong. */
export interface PersistenceError extends Error {
  name: "PersistenceError";
  code: ErrorCode;
}

/** Tells a PersistenceError (thrown by this library) apart from any other thrown value. */
export function isPersistenceError(error: unknown): error is PersistenceError {
  return (
    error instanceof Error &&
    error.name === "PersistenceError" &&
    (ERROR_CODES as readonly string[]).includes((error as { code?: unknown }).code as string)
  );
}

/** SHA-256 of the UTF-8 bytes of `text`, as 64 lowercase hex characters. */
export function hashText(text: string): string {
  return wasm.hashText(text);
}

/**
 * Checks `memory` and `session` exactly as archiveConversation reads them, storing nothing:
 * throws the error archiving would (INVALID_INPUT naming the field, INVALID_ID). The size limit
 * is not checked. Use it where messages are accepted long before they are archived.
 */
export function checkConversation(memory: ConversationMemory, session: SessionState): void {
  wasm.checkConversationInput(toJson("memory", memory), toJson("session", session));
}

/** The library version (same as the npm package and the Rust crate). */
export function libraryVersion(): string {
  return wasm.libraryVersion();
}

/** The error codes as the Rust core defines them (equal to ERROR_CODES; checked in tests). */
export function errorCodes(): string[] {
  return wasm.errorCodes();
}

/** That the wasm module is loaded and answering, with the time it answered. */
export interface LivenessReport {
  status: "alive";
  library: string;
  version: string;
  /** RFC 3339 UTC time with milliseconds. */
  timestamp: string;
}

/** Builds the liveness report in Rust; throws INVALID_INPUT for a time that is not a valid epoch-ms. */
export function livenessReport(nowMs: number = Date.now()): LivenessReport {
  return JSON.parse(wasm.livenessReport(nowMs)) as LivenessReport;
}

/** A PersistenceError raised on the TypeScript side (checks that must happen before Rust). */
function persistenceError(code: ErrorCode, message: string): PersistenceError {
  return Object.assign(new Error(message), { name: "PersistenceError" as const, code });
}

function invalidInput(field: string, reason: string): PersistenceError {
  return persistenceError("INVALID_INPUT", `invalid input: ${field}: ${reason}`);
}

/**
 * The `userId` of backup options. Named but not a string (`{userId: claims.sub}` with no
 * `sub`) is an error, not "no user": that would turn the ownership check off. Rust checks the
 * string itself (INVALID_ID).
 */
function ownerOption(options: { userId?: string }): string | undefined {
  if (!("userId" in options)) return undefined;
  if (typeof options.userId !== "string") throw invalidInput("userId", `must be a string, not ${options.userId === null ? "null" : typeof options.userId}`);
  return options.userId;
}

/** The `keep` of createBackup's options: a boolean when given. */
function keepOption(options: BackupOptions): boolean {
  if (options.keep === undefined) return false;
  if (typeof options.keep !== "boolean") throw invalidInput("keep", `must be a boolean, not ${options.keep === null ? "null" : typeof options.keep}`);
  return options.keep;
}

const utf8 = new TextEncoder();

/** JSON text of `value` for the Rust side, which validates its shape and names bad fields. */
function toJson(field: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw invalidInput(field, `cannot be serialized to JSON (${(error as Error).message})`);
  }
  if (text === undefined) throw invalidInput(field, `must be a JSON value, got ${typeof value}`);
  return text;
}

/** Largest view of wasm memory that JSON text is encoded into, unless a text needs more (bytes). */
const VIEW_BYTES = 1 << 16;

/**
 * Writes text into a JsonInput as UTF-8, encoded straight into views of its spare wasm memory
 * (spareBytes/commit): one `encodeInto` per text and no concatenated strings, which V8 would
 * flatten (twice the work, measured, 2000 messages). A view lives across texts, so code run
 * between writes (a message's toJSON) may call into wasm: if linear memory grows, the view is
 * detached, encodes nothing, and is replaced; what was written stays in memory.
 */
class JsonInputWriter {
  readonly #input: wasm.JsonInput;
  readonly #viewBytes: number;
  #view: Uint8Array | null = null;
  #used = 0;

  /** `expectedBytes` (about the whole text) keeps views of a small text small: each is zeroed. */
  constructor(input: wasm.JsonInput, expectedBytes: number) {
    this.#input = input;
    this.#viewBytes = Math.min(VIEW_BYTES, Math.max(expectedBytes, 64));
  }

  write(text: string): void {
    let rest = text;
    // A new view for this text has one byte per UTF-16 unit, which fits most chat text; what
    // overflows goes into one of three bytes per unit, the most a unit takes. So a text takes
    // at most two views, and a huge message never makes a view (and linear memory) 3x its size.
    let bytesPerUnit = 1;
    while (rest.length > 0) {
      // At least 4 bytes (any character) free, else a new view.
      if (this.#view === null || this.#view.length - this.#used < 4) this.#nextView(rest.length * bytesPerUnit);
      const { read, written } = utf8.encodeInto(rest, this.#view!.subarray(this.#used));
      this.#used += written;
      if (read === rest.length) return;
      rest = rest.slice(read);
      this.finish();
      bytesPerUnit = 3;
    }
  }

  /** Hands what the current view holds to the input; after the last write, the input is complete. */
  finish(): void {
    if (this.#view !== null) this.#input.commit(this.#used);
    this.#view = null;
  }

  #nextView(bytes: number): void {
    this.finish();
    this.#view = this.#input.spareBytes(Math.max(this.#viewBytes, bytes));
    this.#used = 0;
  }
}

/**
 * About the UTF-8 size of the messages' JSON, so the wasm buffer is allocated once: growing it
 * by doubling would hold the old and the new copy at once. Content counts a byte per UTF-16
 * unit (most chat text); each message adds its other fields. Only a hint: the buffer grows if
 * it is short.
 */
function estimatedJsonBytes(messages: unknown[]): number {
  let bytes = 1024;
  for (const message of messages) {
    const content = (message as { content?: unknown } | null)?.content;
    bytes += 256 + (typeof content === "string" ? content.length : 0);
  }
  return bytes;
}

/** About the UTF-8 size of UIMessages' JSON (see estimatedJsonBytes): each part's `text` counts, plus its other fields. */
function estimatedUIMessageBytes(messages: unknown[]): number {
  let bytes = 1024;
  for (const message of messages) {
    bytes += 256;
    const parts = (message as { parts?: unknown } | null)?.parts;
    if (!Array.isArray(parts)) continue;
    for (const part of parts) {
      const text = (part as { text?: unknown } | null)?.text;
      bytes += 128 + (typeof text === "string" ? text.length : 0);
    }
  }
  return bytes;
}

/** A JsonInput of about `expectedBytes`, filled by `fill`; freed if `fill` throws. */
function jsonInput(expectedBytes: number, fill: (writer: JsonInputWriter) => void): wasm.JsonInput {
  const input = new wasm.JsonInput(expectedBytes);
  try {
    const writer = new JsonInputWriter(input, expectedBytes);
    fill(writer);
    writer.finish();
    return input;
  } catch (error) {
    input.free();
    throw error;
  }
}

/** Items stringified by one JSON.stringify call (measured, 2000 UIMessages: 3.1 ms against 4.1 ms one call per item). */
const ITEMS_PER_CALL = 64;

/** Whether JSON.stringify writes `item` inside an array as it writes it alone: an object without `toJSON` (which would be given its index). */
function stringifiesAlike(item: unknown): boolean {
  return typeof item === "object" && item !== null && typeof (item as { toJSON?: unknown }).toJSON !== "function";
}

/**
 * Writes the items of `array` (the value at `field`) comma-separated: the text one JSON.stringify
 * of each would give, written a run of items at a time. A run with anything but plain objects
 * is stringified an item at a time, so that a value JSON cannot hold is named by its index.
 */
function writeItems(writer: JsonInputWriter, field: string, array: unknown[]): void {
  for (let start = 0; start < array.length; start += ITEMS_PER_CALL) {
    const end = Math.min(start + ITEMS_PER_CALL, array.length);
    let alike = true;
    for (let i = start; i < end && alike; i++) alike = stringifiesAlike(array[i]);
    let json: string | undefined;
    if (alike) {
      try {
        json = JSON.stringify(array.slice(start, end)).slice(1, -1);
      } catch {
        // Named below, by the item that fails.
      }
    }
    if (json !== undefined) {
      writer.write(start === 0 ? json : `,${json}`);
      continue;
    }
    for (let i = start; i < end; i++) {
      // A hole or undefined is null, as JSON.stringify writes it inside an array.
      const item = toJson(`${field}[${i}]`, array[i] ?? null);
      writer.write(i === 0 ? item : `,${item}`);
    }
  }
}

/**
 * The memory's JSON text, handed to wasm a message at a time (JsonInput in
 * src/wasm/service.rs), so a large conversation never exists here as one string: V8 keeps
 * text outside Latin-1 as UTF-16, twice the UTF-8 size. The JSON value is the one
 * JSON.stringify(memory) gives, with `messages` first; anything unusual (not a plain object,
 * no messages array, a toJSON method) is stringified whole, and Rust names what is wrong.
 */
function memoryInput(memory: unknown): wasm.JsonInput {
  const record = memory as Record<string, unknown> | null;
  const messages = record?.messages;
  const expectedBytes = Array.isArray(messages) ? estimatedJsonBytes(messages) : 0;
  return jsonInput(expectedBytes, (writer) => {
    if (typeof memory !== "object" || memory === null || Array.isArray(memory) || !Array.isArray(messages) || typeof record!.toJSON === "function") {
      writer.write(toJson("memory", memory));
    } else {
      const { messages: _messages, ...rest } = record!;
      const restJson = toJson("memory", rest);
      writer.write('{"messages":[');
      writeItems(writer, "memory.messages", messages);
      writer.write(`]${restJson === "{}" ? "" : `,${restJson.slice(1, -1)}`}}`);
    }
  });
}

/**
 * The JSON text of UIMessages, handed to wasm a message at a time as memoryInput does. The
 * value is the one JSON.stringify(messages) gives; anything but an array without a toJSON
 * method is stringified whole, and Rust names what is wrong (`messages: must be an array`).
 */
function uiMessagesInput(messages: unknown): wasm.JsonInput {
  const items = Array.isArray(messages) && typeof (messages as { toJSON?: unknown }).toJSON !== "function" ? messages : null;
  return jsonInput(items === null ? 0 : estimatedUIMessageBytes(items), (writer) => {
    if (items === null) {
      writer.write(toJson("messages", messages));
    } else {
      writer.write("[");
      writeItems(writer, "messages", items);
      writer.write("]");
    }
  });
}

/** Embeddings cross as one Float64Array copy; Rust rejects NaN and infinities by index. */
function toFloat64Array(embedding: unknown): Float64Array {
  if (embedding instanceof Float64Array) return embedding;
  if (embedding instanceof Float32Array) return Float64Array.from(embedding);
  if (!Array.isArray(embedding)) throw invalidInput("embedding", "must be an array of numbers or a Float32Array/Float64Array");
  const values = new Float64Array(embedding.length);
  for (let i = 0; i < embedding.length; i++) {
    const value: unknown = embedding[i];
    if (typeof value !== "number") throw invalidInput(`embedding[${i}]`, `is a ${typeof value}, not a number`);
    values[i] = value;
  }
  return values;
}

/** INVALID_CONFIG for `variable`, worded by the core as all its configuration errors; `value` "" withholds it. */
function invalidConfig(variable: string, value: string, reason: string): PersistenceError {
  return wasm.invalidConfigError(variable, value, reason) as PersistenceError;
}

/**
 * A plain array of `values` (a view of wasm memory, valid only during this call): an indexed
 * loop, ~15x faster in V8 than Array.from on a typed array (measured, 768 values).
 */
function toNumberArray(values: Float64Array): number[] {
  const array = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) array[i] = values[i]!;
  return array;
}

function checkBindings(bindings: PersistenceBindings | undefined): PersistenceBindings {
  if (!bindings?.CHAT_KV || !bindings?.ARCHIVE_R2) {
    throw invalidConfig("bindings", "", "CHAT_KV (KV namespace) and ARCHIVE_R2 (R2 bucket) are required");
  }
  const analytics: unknown = bindings.PERSISTENCE_ANALYTICS;
  if (analytics != null && typeof (analytics as { writeDataPoint?: unknown }).writeDataPoint !== "function") {
    throw invalidConfig("PERSISTENCE_ANALYTICS", "", "must be an Analytics Engine dataset binding (with writeDataPoint)");
  }
  return bindings;
}

/** Bytes of a stream handed to an import at once: a larger chunk is handed over in parts, so wasm memory holds at most this plus one line. */
const IMPORT_PUSH_BYTES = 1 << 20;

/** A stateful reader in wasm whose `next()` gives the next chunk of an export, or null at its end. */
interface ChunkSource {
  next(): Promise<Uint8Array | null>;
  free(): void;
}

/**
 * A ReadableStream over `source` that pulls one chunk at a time when the consumer reads (nothing
 * is read ahead: highWaterMark 0), and frees it once the stream is done, errored or cancelled.
 */
function pullStream(source: ChunkSource): ReadableStream<Uint8Array> {
  let freed = false;
  const free = () => {
    if (!freed) {
      freed = true;
      source.free();
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Uint8Array | null;
        try {
          chunk = await source.next();
        } catch (error) {
          free();
          throw error;
        }
        if (chunk === null) {
          free();
          controller.close();
        } else {
          controller.enqueue(chunk);
        }
      },
      cancel() {
        free();
      },
    },
    { highWaterMark: 0 },
  );
}

/** The maintenance jobs of the core's run driver: each takes a call budget and a time budget. */
type RunJob =
  | "enforceRetentionPolicy"
  | "previewRetentionPolicy"
  | "indexLegacyArchives"
  | "reindexUserArchives"
  | "rotateEncryptionKeys"
  | "encryptExistingArchives"
  | "syncReplica"
  | "getStorageMetrics";

/** A restore's outcome from the core (`{restored, skipped}` JSON) as `RestoredSessions`. */
function restoredSessions(json: string): RestoredSessions {
  const { restored, skipped } = JSON.parse(json) as { restored: string[]; skipped: string[] };
  return Object.defineProperty(restored, "skippedSessionIds", { value: skipped, enumerable: false }) as RestoredSessions;
}

/** Runs `job` within the budget of its options (checked by the core); its report. */
async function runJob<Report>(core: wasm.DataPersistenceService, job: RunJob, options: { maxStorageCalls?: number; timeBudgetMs?: number }): Promise<Report> {
  return JSON.parse(await core.runJob(job, options.maxStorageCalls, options.timeBudgetMs)) as Report;
}

/**
 * The spec's DataPersistenceService: archives in R2, caches and indexes in KV, verified backups
 * and paginated retention. Construct one per isolate (e.g. lazily in your Worker) and share it:
 * calls may run concurrently. Errors are PersistenceErrors with a stable `code`.
 */
export class DataPersistenceService {
  readonly #core: wasm.DataPersistenceService;

  constructor(bindings: PersistenceBindings, policy: Partial<DataRetentionPolicy> = {}, options: PersistenceOptions = {}) {
    const { CHAT_KV, ARCHIVE_R2, ARCHIVE_R2_REPLICA, PERSISTENCE_ANALYTICS } = checkBindings(bindings);
    const recorder = PERSISTENCE_ANALYTICS ? operationRecorder(PERSISTENCE_ANALYTICS, wasm.libraryVersion()) : undefined;
    this.#core = new wasm.DataPersistenceService(CHAT_KV, ARCHIVE_R2, toJson("policy", policy), toJson("options", options), ARCHIVE_R2_REPLICA ?? undefined, recorder);
  }

  /** The retention policy in force (spec defaults merged with what was passed). */
  get policy(): DataRetentionPolicy {
    return JSON.parse(this.#core.policyJson()) as DataRetentionPolicy;
  }

  /** Archives the conversation to R2 and indexes it in KV; resolves to the archive's R2 key. Costs 1 R2 put and 2-3 KV puts. */
  async archiveConversation(memory: ConversationMemory, session: SessionState): Promise<string> {
    return this.#core.archiveConversation(memoryInput(memory), utf8.encode(toJson("session", session)));
  }

  /** The newest archive of a session, checksum-verified, or null. Costs 1 KV get and 1 R2 get. */
  async retrieveArchivedConversation(sessionId: string): Promise<ArchivedConversation | null> {
    const json: string | null = await this.#core.retrieveArchivedConversation(String(sessionId));
    return json === null ? null : (JSON.parse(json) as ArchivedConversation);
  }

  /**
   * Archives AI SDK UIMessages as the conversation of `sessionId`, an archive like any other
   * (listed, backed up and swept as `archiveConversation`'s): every part and metadata is kept
   * and `retrieveUIMessages` gives them back as given; topics come from the text parts, the
   * duration from `metadata.createdAt` (docs/FORMAT.md, "UIMessage conversations"). Resolves to
   * the archive's R2 key. Bad input is INVALID_INPUT naming the path (`messages[3].parts`),
   * a bad session or user id INVALID_ID. Costs 1 R2 put and 2-3 KV puts.
   */
  async archiveUIMessages<Message extends UIMessage<unknown, { type: string }>>(
    sessionId: string,
    messages: readonly Message[],
    options: ArchiveUIMessagesOptions = {},
  ): Promise<string> {
    return this.#core.archiveUIMessages(String(sessionId), uiMessagesInput(messages), toJson("options", options));
  }

  /**
   * The newest archive of a session as UIMessages, checksum-verified, or null: those given to
   * `archiveUIMessages` as they were given; messages archived by `archiveConversation` as
   * `{id, role, parts: [{type: "text", text: content}], metadata}`. Costs 1 KV get and 1 R2 get.
   */
  async retrieveUIMessages<Message extends UIMessage<unknown, { type: string }> = UIMessage>(sessionId: string): Promise<Message[] | null> {
    const json: string | null = await this.#core.retrieveUIMessages(String(sessionId));
    return json === null ? null : (JSON.parse(json) as Message[]);
  }

  /**
   * Archives UIMessages as segment `seq` (1..=999999) of `sessionId`: an archive of the session
   * id `<sessionId>:segment-<6-digit seq>` that records no user, so it is backed up, swept and
   * found by session like any archive but never listed as a conversation of its own
   * (docs/FORMAT.md, "Segments"). Used by `supportbot-persistence/agents` to offload the oldest
   * messages of a live conversation. Resolves to the segment's R2 key. Costs 1 R2 put and 2 KV puts.
   */
  async archiveSegment<Message extends UIMessage<unknown, { type: string }>>(sessionId: string, seq: number, messages: readonly Message[]): Promise<string> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw invalidInput("seq", `${String(seq)} is not a segment number (1..=999999)`);
    return this.#core.archiveSegment(String(sessionId), Math.min(seq, 2 ** 32 - 1), uiMessagesInput(messages));
  }

  /**
   * The archive or segment stored under an R2 key (as archiveUIMessages or archiveSegment
   * returned it) as UIMessages, checksum-verified, or null when nothing is stored there. Reads
   * R2 only (strongly consistent). Costs 1 R2 get.
   */
  async retrieveUIMessagesByKey<Message extends UIMessage<unknown, { type: string }> = UIMessage>(archiveKey: string): Promise<Message[] | null> {
    const json: string | null = await this.#core.retrieveUIMessagesByKey(String(archiveKey));
    return json === null ? null : (JSON.parse(json) as Message[]);
  }

  /**
   * One page of archive summaries, newest first (all users when `userId` is omitted). Costs 1 KV
   * list; with encryption on, 1 R2 get more per data key of the page this service has not yet
   * unwrapped (a user's page: 1 at most; a global page: one per owner on it).
   */
  async listArchivedConversations(userId?: string, limit = 20, cursor?: string): Promise<ArchiveList> {
    const json: string = await this.#core.listArchivedConversations(userId ?? undefined, limit, cursor ?? undefined);
    const page = JSON.parse(json) as { archives: ArchiveMetadata[]; cursor?: string; listComplete: boolean };
    return Object.assign(page.archives, { cursor: page.cursor, listComplete: page.listComplete });
  }

  /** Caches an embedding of `text`, recorded as cached for `metadata.model` (else options.embeddingModel); replaces the text's entry. Costs 1 KV put. */
  async cacheEmbedding(text: string, embedding: number[] | Float32Array | Float64Array, metadata?: Record<string, unknown>): Promise<void> {
    await this.#core.cacheEmbedding(String(text), toFloat64Array(embedding), metadata === undefined ? undefined : toJson("metadata", metadata));
  }

  /** The cached embedding of `text`, or null; with `model` (or options.embeddingModel) only one cached for that model. A storage failure is a miss. Costs 1 KV get. */
  async getCachedEmbedding(text: string, model?: string): Promise<number[] | null> {
    return this.#core.getCachedEmbedding(String(text), model ?? undefined, toNumberArray);
  }

  /** Caches the result of a frequent query (any JSON value). Costs 1 KV put. */
  async cacheFrequentQuery(query: string, result: unknown, metadata?: Record<string, unknown>): Promise<void> {
    await this.#core.cacheFrequentQuery(String(query), toJson("result", result), metadata === undefined ? undefined : toJson("metadata", metadata));
  }

  /** The cached result of `query`, or null; a storage failure is a miss. Costs 1 KV get. */
  async getCachedQueryResult<T = unknown>(query: string): Promise<T | null> {
    const json: string | null = await this.#core.getCachedQueryResult(String(query));
    return json === null ? null : (JSON.parse(json) as T);
  }

  /**
   * Backs up the newest archive of each session (data first, manifest last); resolves to the
   * backup id. Sessions without an archive are recorded as missing, unless `userId` is given:
   * then every session must have an archive of that user, checked on the archive backed up, or
   * the call fails with NOT_FOUND naming the first that has none (another user's archive is
   * reported as missing, not revealed) and writes nothing.
   */
  async createBackup(sessionIds: string[], options: BackupOptions = {}): Promise<string> {
    if (!Array.isArray(sessionIds)) throw invalidInput("sessionIds", "must be an array of session ids");
    return this.#core.createBackup(sessionIds.map(String), ownerOption(options), keepOption(options));
  }

  /**
   * Verifies a whole backup, then restores its sessions (idempotent); resolves to their ids. With
   * `userId`, only a backup `createBackup` made for that user: another user's, one made for
   * nobody, or none is NOT_FOUND (the same answer, so backup ids cannot be probed).
   */
  async restoreFromBackup(backupId: string, options: BackupOptions = {}): Promise<RestoredSessions> {
    return restoredSessions(await this.#core.restoreFromBackup(String(backupId), ownerOption(options)));
  }

  /**
   * The first step of an automated backup (`BackupWorkflow`): its id and time and, for a backup
   * of the whole store without `since`, the last automated backup it is incremental to. Each
   * pack step then reads at most `maxSessions` archives (one storage call each). Costs 1 KV list
   * per 1000 backups and 1 R2 get (incremental backups only).
   */
  async planBackup(request: BackupRequest = {}, maxSessions = 40): Promise<BackupPlan> {
    return JSON.parse(await this.#core.planBackup(toJson("request", request), maxSessions)) as BackupPlan;
  }

  /**
   * One pack step of a planned backup: writes the next pack from `from` (the previous step's
   * `next`; null first) as pack number `pack` (the count of packs written before). Idempotent.
   * Costs 1 R2 get per archive (plus 1 KV list, or 1 KV get per given session) and 1 R2 put.
   */
  async backupPack(plan: BackupPlan, pack: number, from: PackSource | null): Promise<PackStepReport> {
    return JSON.parse(await this.#core.backupPack(toJson("step", { plan, pack, from }))) as PackStepReport;
  }

  /** The last step of a planned backup: writes its manifest (the commit point) if absent; resolves to the backup id. Costs 1 R2 put, 1 KV put. */
  async commitBackup(plan: BackupPlan, packs: PackRecord[], missingSessionIds: string[] = []): Promise<string> {
    return this.#core.commitBackup(toJson("commit", { plan, packs, missingSessionIds }));
  }

  /**
   * What a restore of `backupId` restores, a step at a time (`RestoreWorkflow`): `[backupId,
   * packs, archivesPerPack]` of the backups of its chain, oldest first. Reads and checks the
   * manifests only (a format 1 backup, one bundle, counts as one pack and is verified whole here).
   */
  async planRestore(backupId: string, options: BackupOptions = {}): Promise<[string, number, number[]][]> {
    return JSON.parse(await this.#core.planRestore(String(backupId), ownerOption(options))) as [string, number, number[]][];
  }

  /**
   * Restores one pack of a backup, or the archives `first` to `first + count - 1` of it (fewer at
   * its end; none past it), the whole pack verified before the first write; resolves to their
   * session ids. Idempotent. Costs 2 R2 gets, then per archive 1 R2 put, 1 KV get and up to 3 KV
   * puts, so `count` bounds a step's subrequests.
   */
  async restorePack(backupId: string, pack: number, options: RestorePackOptions = {}): Promise<RestoredSessions> {
    return restoredSessions(await this.#core.restorePack(String(backupId), pack, ownerOption(options), options.first, options.count));
  }

  /** Deletes what the policy says has expired, page by page; resumes where a time-boxed run stopped. */
  async enforceRetentionPolicy(options: RetentionRunOptions = {}): Promise<RetentionReport> {
    if (options.dryRun !== undefined && typeof options.dryRun !== "boolean") throw invalidInput("dryRun", `must be a boolean, not ${typeof options.dryRun}`);
    return runJob<RetentionReport>(this.#core, options.dryRun === true ? "previewRetentionPolicy" : "enforceRetentionPolicy", options);
  }

  /**
   * One page of backups, newest first (those made for `userId` when given), each with its size,
   * sessions, kind and whether (and why) the backup policy keeps it: an array with `.cursor` and
   * `.listComplete`, like `listArchivedConversations`. Costs 1 KV list (of up to
   * 1000 index entries); KV shows a new backup within ~60 s.
   */
  async listBackups(options: ListBackupsOptions = {}): Promise<BackupList> {
    const owner = "userId" in options ? ownerOption(options) : undefined;
    const json: string = await this.#core.listBackups(owner, options.limit ?? 20, options.cursor ?? undefined);
    const page = JSON.parse(json) as { backups: BackupSummary[]; cursor?: string; listComplete: boolean };
    return Object.assign(page.backups, { cursor: page.cursor, listComplete: page.listComplete });
  }

  /**
   * The archive stored under an R2 key (as `archiveConversation` returned it), checksum-verified,
   * or null. Reads R2 only, so unlike `retrieveArchivedConversation` it sees an archive the moment
   * its key was returned, wherever it was written. Costs 1 R2 get.
   */
  async retrieveArchive(archiveKey: string): Promise<ArchivedConversation | null> {
    const json: string | null = await this.#core.retrieveArchive(String(archiveKey));
    return json === null ? null : (JSON.parse(json) as ArchivedConversation);
  }

  /**
   * Indexes the archives of the earlier TypeScript implementation so they are listed (run once
   * after upgrading, e.g. from a cron, until `complete`; give `maxStorageCalls` within the Worker's
   * subrequest limit); resumes where a time-boxed run stopped. Idempotent. Costs 1 KV list per
   * page, and per legacy archive 1 KV get, 1 R2 head and 2-3 KV puts.
   */
  async indexLegacyArchives(options: MigrationRunOptions = {}): Promise<MigrationReport> {
    return runJob<MigrationReport>(this.#core, "indexLegacyArchives", options);
  }

  /**
   * Rebuilds every user's archive index under the current `hashSecret` (or continues an
   * unfinished run): after the secret changes, users' listings are empty until it completes.
   * Start it once the new secret is deployed everywhere (an isolate still on the old one
   * indexes new archives under it), or run it once more after that. Reads the global index
   * only (its entries carry each archive's summary); resumable, and repeating it changes
   * nothing, but every complete run writes every entry again: 1 KV list per 1000 archives and
   * 1 KV put per archive with a user, so run it after a change, not on a schedule.
   */
  async reindexUserArchives(options: MigrationRunOptions = {}): Promise<ReindexReport> {
    return runJob<ReindexReport>(this.#core, "reindexUserArchives", options);
  }

  /**
   * Rewraps every data key under the newest of `encryptionKeys` (or continues an unfinished
   * run), never rewriting an archive; a data key destroyed or changed meanwhile is left as it
   * is. After a complete run with `keyUnavailable` and `damaged` both 0, the older keys can be
   * removed from the secret. A complete run is recorded, so later runs cost 1 KV get (2 with
   * the resume point) until a newer key is added: safe to call from every cron run. Costs 1 R2
   * list per 1000 data keys, and per key not yet current 1 R2 get and 1 R2 put.
   * INVALID_CONFIG when no keys are configured.
   */
  async rotateEncryptionKeys(options: MigrationRunOptions = {}): Promise<RotationReport> {
    return runJob<RotationReport>(this.#core, "rotateEncryptionKeys", options);
  }

  /**
   * Rewrites every plaintext archive encrypted (or continues an unfinished run): run it until
   * `complete` after turning encryption on for a store that has archives (they stay readable
   * meanwhile). Each archive: the encrypted copy is written, then its record and index entries
   * point at it, then the plaintext is deleted, so a run stopped or killed anywhere loses
   * nothing and the next one finishes it. Costs 1 R2 list per 1000 archives and up to 13
   * storage calls per plaintext archive. INVALID_CONFIG when no keys are configured.
   */
  async encryptExistingArchives(options: MigrationRunOptions = {}): Promise<EncryptExistingReport> {
    return runJob<EncryptExistingReport>(this.#core, "encryptExistingArchives", options);
  }

  /**
   * Erases everything stored of `userId` (GDPR Art. 17), or continues an unfinished erasure of
   * them: first a tombstone (from then on no listing, retrieval, restore or import shows their
   * archives), then their data key (with encryption: every copy anywhere becomes unreadable),
   * their archives (found through their index, the global index and each archive's recorded
   * owner in R2), the archives' records and index entries, and the backups made for them.
   * Idempotent and resumable: a receipt with `complete: false` is continued by the next call or
   * by `resumeErasures`. Erasing an unknown user is not an error. Costs about 5 storage calls
   * per archive, 5 per backup made for the user, and 1 list per 1000 keys of the indexes, of R2
   * archives and of backups (README "Data rights and migration").
   */
  async eraseUserData(userId: string, options: ErasureRunOptions = {}): Promise<ErasureReceipt> {
    return JSON.parse(await this.#core.eraseUserData(String(userId), options.maxStorageCalls, options.timeBudgetMs)) as ErasureReceipt;
  }

  /**
   * Settles the replica queue (run it from a cron when `ARCHIVE_R2_REPLICA` is bound): for each
   * key whose copy in the replica bucket failed (or a committed backup's packs and manifest,
   * manifest last), copies the primary's object as stored, or deletes the replica's when the
   * primary has none. Resumable, idempotent. Costs 1 KV list per 1000 queued entries, per key
   * 1 R2 get and 1 replica put or delete, per entry 1 KV delete. INVALID_CONFIG without a
   * replica bucket.
   */
  async syncReplica(options: MigrationRunOptions = {}): Promise<ReplicaSyncReport> {
    return runJob<ReplicaSyncReport>(this.#core, "syncReplica", options);
  }

  /** Continues every unfinished erasure (run it from a cron) within the budget; their receipts. */
  async resumeErasures(options: ErasureRunOptions = {}): Promise<ErasureReceipt[]> {
    return JSON.parse(await this.#core.resumeErasures(options.maxStorageCalls, options.timeBudgetMs)) as ErasureReceipt[];
  }

  /**
   * Reads back what is stored and checks it (README "Verification and replicas"): every archive
   * (stored SHA-256, gzip, document, decryption; its index entries), every KV entry pointing at
   * an archive, every committed backup's packs against its manifest; with `sample: "1/n"` one
   * n-th of the store per pass. Resumes where the last run stopped (KV `verify:cursor`); keeps
   * what it found for healthCheck (`verify:summary`). With `repair`, writes damaged or missing
   * archives back from a verified copy (the replica's, else a backup's), compares and repairs the replica, and rebuilds missing index entries; never deletes.
   * Costs about 2–3 storage calls per archive, 1 per index entry and 1 per backup object.
   */
  async verifyStorage(options: VerifyStorageOptions = {}): Promise<VerificationReport> {
    const { sample, repair = false, maxStorageCalls, timeBudgetMs } = options;
    return JSON.parse(await this.#core.verifyStorage(sample, repair, maxStorageCalls, timeBudgetMs)) as VerificationReport;
  }

  /**
   * Everything stored of one person (GDPR Art. 20), as NDJSON: a `conversation` line per archive
   * of theirs (found through their index, read from R2, checksum-verified and decrypted exactly
   * as `retrieveArchive` reads it), newest first, then an `end` line with the count of lines
   * before it and the SHA-256 of their bytes (docs/FORMAT.md, "Exports"). Archives an erasure
   * covers are left out. Memory stays bounded whatever the count: one page of 1000 index entries,
   * one archive and one chunk of about 64 KiB; nothing is read before the stream is. A damaged
   * archive errors the stream with its code (CHECKSUM_MISMATCH, CORRUPT_DATA, KEY_UNAVAILABLE,
   * ...): an export never leaves something out silently. Costs 1 R2 head, 1 KV list per 1000
   * archives and 1 R2 get per archive. Throws INVALID_ID for a bad user id (INVALID_INPUT for
   * one that is not a string).
   */
  exportUserData(userId: string): ReadableStream<Uint8Array> {
    // Not String(userId): `undefined` would export the user named "undefined".
    if (typeof userId !== "string") throw invalidInput("userId", `must be a string, not ${userId === null ? "null" : typeof userId}`);
    return pullStream(this.#core.exportUserData(userId) as unknown as ChunkSource);
  }

  /**
   * The whole store as NDJSON, for `importStore` into another environment's bindings: every
   * erasure tombstone and data key (`object` lines), then every archive of the global index as
   * stored (`archive` lines, encrypted ones staying encrypted; `document` lines for the earlier
   * implementation's), then an `end` line (docs/FORMAT.md, "Exports"). Archives an erasure
   * covers are left out; indexes are rebuilt by the import; backups are not exported (the target
   * makes its own). Within `maxStorageCalls`/`timeBudgetMs` the export ends early with
   * `complete: false` and a `cursor` in its end line: pass it as `cursor` to continue exactly
   * there. A damaged archive is left out and listed in the end line's `unreadable`. Costs 1 list
   * per 1000 keys, 1 R2 get per object and archive (+1 KV get when its listing summary was cut),
   * 1 R2 head per user per page (tombstones). Throws INVALID_INPUT for bad options.
   */
  exportStore(options: ExportStoreOptions = {}): ReadableStream<Uint8Array> {
    if (options.cursor !== undefined && typeof options.cursor !== "string") throw invalidInput("cursor", `must be a string, not ${options.cursor === null ? "null" : typeof options.cursor}`);
    return pullStream(this.#core.exportStore(options.maxStorageCalls, options.timeBudgetMs, options.cursor) as unknown as ChunkSource);
  }

  /**
   * Writes an `exportStore` stream into this service's bindings, line by line: each line is
   * verified (its bytes against its `sha256` and size) before anything of it is written; objects
   * and archives are written only if absent, archives with their KV record and index entries
   * (under this service's hash secret), so importing twice stores nothing twice. Archives a
   * tombstone in the target covers are skipped. Each end line is checked against the lines
   * before it. With `dryRun`, nothing is written and the report says what would be. A bad line
   * rejects with CORRUPT_DATA or CHECKSUM_MISMATCH naming it (1-based); the lines before it stay
   * written, and importing again once it is fixed completes the import. A stream without an end
   * line resolves with `ended: false`, `complete: false`. Within `maxStorageCalls`/`timeBudgetMs`
   * the import stops before a line and reports `nextLine`: import the same stream again with
   * `fromLine: nextLine`. Memory: one chunk (at most 1 MiB at a time) and one line.
   */
  async importStore(stream: ReadableStream<Uint8Array>, options: ImportStoreOptions = {}): Promise<ImportReport> {
    if (typeof (stream as { getReader?: unknown } | null)?.getReader !== "function") throw invalidInput("stream", "must be a ReadableStream of bytes (Uint8Array chunks)");
    if (options.dryRun !== undefined && typeof options.dryRun !== "boolean") throw invalidInput("dryRun", `must be a boolean, not ${options.dryRun === null ? "null" : typeof options.dryRun}`);
    const importer = this.#core.importStore(options.dryRun === true, options.fromLine, options.maxStorageCalls, options.timeBudgetMs);
    const reader = stream.getReader();
    try {
      let more = true;
      while (more) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!(value instanceof Uint8Array)) throw invalidInput("stream", `must yield Uint8Array chunks, not ${value === null ? "null" : typeof value}`);
        for (let at = 0; more && at < value.length; at += IMPORT_PUSH_BYTES) {
          more = (await importer.push(value.subarray(at, at + IMPORT_PUSH_BYTES))) as boolean;
        }
      }
      // Stopped early (a budget): the rest of the stream is not read.
      if (!more) await reader.cancel();
      return JSON.parse((await importer.finish()) as string) as ImportReport;
    } catch (error) {
      await reader.cancel(error).catch(() => {});
      throw error;
    } finally {
      reader.releaseLock();
      importer.free();
    }
  }

  /** Probes R2 and KV (one read each); never rejects. The spec calls it on DataPersistenceIntegration. */
  async healthCheck(): Promise<HealthReport> {
    return JSON.parse(await this.#core.healthCheck()) as HealthReport;
  }

  /**
   * Counts cache entries, archives and backups over every page, or as many pages as the options
   * allow (`complete: false` then). Costs 1 list per 1000 keys of each prefix; past about 45 000
   * keys an unbounded count exceeds the free plan's 50 subrequests, so pass `maxStorageCalls`.
   * The spec calls it on DataPersistenceIntegration.
   */
  async getStorageMetrics(options: StorageMetricsOptions = {}): Promise<StorageMetrics> {
    return runJob<StorageMetrics>(this.#core, "getStorageMetrics", options);
  }
}

/** The spec's DataPersistenceIntegration: health checks and storage metrics over the same bindings. */
export class DataPersistenceIntegration {
  readonly service: DataPersistenceService;

  constructor(bindings: PersistenceBindings, policy: Partial<DataRetentionPolicy> = {}, options: PersistenceOptions = {}) {
    this.service = new DataPersistenceService(bindings, policy, options);
  }

  /** Probes R2 and KV (one read each); never rejects. */
  healthCheck(): Promise<HealthReport> {
    return this.service.healthCheck();
  }

  /** {@link DataPersistenceService.getStorageMetrics} on this integration's service. */
  getStorageMetrics(options: StorageMetricsOptions = {}): Promise<StorageMetrics> {
    return this.service.getStorageMetrics(options);
  }
}

/**
 * PersistenceOptions from Worker env, so every part of a Worker (its fetch handler, its
 * SessionMemoryDO, its cron) builds the service the same way: `PERSISTENCE_HASH_SECRET` (a
 * Worker secret: `wrangler secret put PERSISTENCE_HASH_SECRET`) → `hashSecret`, and
 * `PERSISTENCE_ENCRYPTION_KEYS` (a Worker secret: a JSON array of `{id, key}`, newest first) →
 * `encryptionKeys`, `VERIFY_MAX_AGE_HOURS` → `verificationMaxAgeHours`, and `PERSISTENCE_DEBUG = "true"` → `debug`. Services built with different hash secrets do not
 * see each other's user indexes and caches: after changing the secret, run
 * `reindexUserArchives()` until `complete`.
 */
export function optionsFromEnv(env: object): PersistenceOptions {
  const source = env as Record<string, unknown>;
  const options: PersistenceOptions = {};
  const secret = source.PERSISTENCE_HASH_SECRET;
  if (secret !== undefined) {
    if (typeof secret !== "string") throw invalidConfig("PERSISTENCE_HASH_SECRET", "", "must be a string (a Worker secret)");
    options.hashSecret = secret;
  }
  const keys = source.PERSISTENCE_ENCRYPTION_KEYS;
  if (keys !== undefined) {
    if (typeof keys !== "string") throw invalidConfig("PERSISTENCE_ENCRYPTION_KEYS", "", "must be a string (a Worker secret holding a JSON array)");
    options.encryptionKeys = JSON.parse(wasm.encryptionKeysFromSecret(keys)) as EncryptionKey[];
  }
  const maxAge = source.VERIFY_MAX_AGE_HOURS;
  if (maxAge !== undefined) {
    const hours = Number(maxAge);
    if (typeof maxAge !== "string" || maxAge.trim() === "" || !Number.isFinite(hours)) throw invalidConfig("VERIFY_MAX_AGE_HOURS", String(maxAge), "is not a number of hours");
    options.verificationMaxAgeHours = hours;
  }
  const debug = source.PERSISTENCE_DEBUG;
  if (debug !== undefined) {
    if (debug !== "true" && debug !== "false") throw invalidConfig("PERSISTENCE_DEBUG", String(debug), 'is not "true" or "false"');
    options.debug = debug === "true";
  }
  return options;
}

/** The spec's wrangler.toml `[vars]` as a DataRetentionPolicy; throws INVALID_CONFIG naming a bad variable. */
export function policyFromEnv(env: object): DataRetentionPolicy {
  const source = env as Record<string, unknown>;
  const vars: Record<string, unknown> = {};
  for (const name of wasm.policyVarNames()) if (source[name] !== undefined) vars[name] = source[name];
  return JSON.parse(wasm.policyFromVars(JSON.stringify(vars))) as DataRetentionPolicy;
}
