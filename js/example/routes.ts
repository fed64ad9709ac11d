// The example Worker's routes. Every route but GET /health needs a bearer token; a session
// belongs to the user whose token created it, and only that user can read, archive, restore,
// list or back it up (403 otherwise); a backup is restored only by the user it was made for
// (404 for anyone else, as for a missing one). The caches every user is served from are written
// only with a service token (role "service"); any signed-in user reads them, and /metrics and the
// dashboard's /ops/* are for service tokens only (the /dashboard page itself is public: it holds
// no data). A user's export is for that user or a service token.
import { isPersistenceError, libraryVersion, type ArchivedConversation, type SessionMemoryDO } from "supportbot-persistence";
import { authenticate, type TokenClaims } from "./auth.js";
import type { ExampleEnv, Runtime } from "./config.js";
import { dashboardFile, DASHBOARD_FILES } from "./dashboard.js";
import { eraseUser, registerSession } from "./erasure.js";
import { HttpError, json, readJsonBody } from "./http.js";
import { getArchivesPerDay, getBackups, getRuns } from "./ops.js";
import { PROMETHEUS_CONTENT_TYPE, prometheusText, wantsPrometheus } from "./prometheus.js";
import { LAST_RUN_KEY } from "./retention.js";
import { readRunReports } from "./run_reports.js";
import * as check from "./validate.js";

/** What a handler gets: the request, its env and runtime, the path parameters and the caller. */
export interface RouteContext {
  request: Request;
  url: URL;
  env: ExampleEnv;
  rt: Runtime;
  params: Record<string, string>;
  /** The token's user; "" on the one public route. */
  userId: string;
  /** The token's role; absent for end users and on the public route. */
  role?: TokenClaims["role"];
}

type Handler = (context: RouteContext) => Promise<Response>;

interface Route {
  pattern: string;
  /** Whether the route needs a bearer token. */
  auth: boolean;
  methods: Partial<Record<"GET" | "POST" | "DELETE", Handler>>;
}

type SessionMessage = Parameters<SessionMemoryDO["addMessage"]>[0];

function sessionStub(env: ExampleEnv, sessionId: string) {
  return env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName(sessionId));
}

function forbidden(what: string): HttpError {
  return new HttpError(403, "FORBIDDEN", `${what} belongs to another user`);
}

/**
 * Wraps a handler only service tokens may call: one that writes what every user is served, or
 * reads what no single user owns. `refusal` says why a user token is refused.
 */
function serviceOnly(refusal: string, handler: Handler): Handler {
  return async (context) => {
    if (context.role !== "service") throw new HttpError(403, "FORBIDDEN", `${refusal} needs a service token (role "service")`);
    return handler(context);
  };
}

const CACHE_WRITE = "writing the shared caches (users may only read them)";

/**
 * The session's newest archive, or null: when its Durable Object is archived, the archive it
 * wrote, by R2 key (strongly consistent, so one made seconds ago is found); else the one KV's
 * archive_meta names.
 */
async function newestArchive({ env, rt }: RouteContext, sessionId: string): Promise<ArchivedConversation | null> {
  const info = await sessionStub(env, sessionId).getSessionInfo();
  if (info?.status === "archived" && info.archiveKey !== undefined) {
    const own = await rt.service.retrieveArchive(info.archiveKey);
    if (own !== null) return own;
  }
  return rt.service.retrieveArchivedConversation(sessionId);
}

/**
 * Refuses to back up a session whose Durable Object belongs to another user. The archive's own
 * owner is checked by createBackup({userId}) on the very archive it copies: the object's row is
 * deleted after archiveRetention while the archive may live on, and another user may then
 * have re-created the session id.
 */
async function checkSessionOwner({ env, userId }: RouteContext, sessionId: string): Promise<void> {
  const info = await sessionStub(env, sessionId).getSessionInfo();
  if (info !== null && info.userId !== userId) throw forbidden(`session ${sessionId}`);
}

const health: Handler = async ({ rt }) => {
  const report = await rt.integration.healthCheck();
  return json({ ...report, version: libraryVersion() }, report.status === "unhealthy" ? 503 : 200);
};

/** Counts over the whole store: for operators (a service token), within the cron's call budget. */
const metrics: Handler = async ({ request, env, rt }) => {
  const counts = await rt.metrics.integration.getStorageMetrics({ maxStorageCalls: rt.metrics.maxStorageCalls });
  if (!wantsPrometheus(request)) return json(counts);
  // The exposition adds health (2-5 storage calls), the newest backup (1 KV list) and the last
  // sweep's time and report (1 KV get) to the counts.
  const [health, backups, { reports, extra }] = await Promise.all([
    rt.metrics.integration.healthCheck(),
    rt.service.listBackups({ limit: 1 }),
    readRunReports(env.CHAT_KV, [LAST_RUN_KEY]),
  ]);
  const lastRun = extra.get(LAST_RUN_KEY) ?? null;
  const lastRetentionMs = lastRun === null ? undefined : Number(lastRun);
  const text = prometheusText({
    metrics: counts,
    health,
    ...(backups[0] && { newestBackup: backups[0] }),
    ...(lastRetentionMs !== undefined && Number.isFinite(lastRetentionMs) && { lastRetentionMs }),
    ...(reports.retention && { lastRetentionDeleted: reports.retention.outcome.deleted }),
  });
  return new Response(text, { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
};

const addMessage: Handler = async ({ request, env, rt, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  const body = check.object(await readJsonBody(request), ["role", "content", "id", "metadata", "summary"]);
  const message: SessionMessage = {
    id: body.id === undefined ? crypto.randomUUID() : check.id("body.id", body.id),
    sessionId,
    role: check.oneOf("body.role", body.role, ["user", "assistant", "system"] as const),
    content: check.text("body.content", body.content, check.MAX_TEXT_CHARS),
    timestamp: Date.now(),
  };
  const metadata = check.metadata("body.metadata", body.metadata);
  if (metadata !== undefined) message.metadata = metadata;
  const summary = check.optionalText("body.summary", body.summary, check.MAX_SUMMARY_CHARS);
  const messageCount = await sessionStub(env, sessionId).addMessage(message, summary === undefined ? { userId } : { userId, summary });
  // The session's first message made it the user's: record it, for an erasure of the user.
  if (messageCount === 1) await registerSession(env, rt, userId, sessionId);
  return json({ sessionId, messageId: message.id, messageCount }, 201);
};

const getContext: Handler = async ({ url, env, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  const limit = check.intParam("limit", url.searchParams.get("limit"), 1, 100, 20);
  return json(await sessionStub(env, sessionId).getContext({ limit, userId }));
};

const archiveSession: Handler = async ({ env, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  const archiveKey = await sessionStub(env, sessionId).archiveSession({ userId });
  return json({ sessionId, archiveKey });
};

const getArchive: Handler = async (context) => {
  const { params, userId } = context;
  const sessionId = check.id("sessionId", params.sessionId);
  const archived = await newestArchive(context, sessionId);
  if (archived === null) throw new HttpError(404, "NOT_FOUND", `no archive of session ${sessionId}`);
  if (archived.sessionState?.userId !== userId) throw forbidden(`session ${sessionId}`);
  return json(archived);
};

const restoreSession: Handler = async ({ env, rt, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  const context = await sessionStub(env, sessionId).restoreSession(sessionId, { userId });
  await registerSession(env, rt, userId, sessionId);
  return json(context);
};

/**
 * Erases everything stored of a user (their own token, or a service token): 200 with the
 * receipt when complete, 202 with the receipt so far when the cron must finish it.
 */
const eraseUserData: Handler = async ({ env, rt, params, userId, role }) => {
  const target = check.userId("userId", params.userId);
  if (role !== "service" && target !== userId) throw new HttpError(403, "FORBIDDEN", "you can erase only your own data (or use a service token)");
  const erasure = await eraseUser(env, rt, target);
  if (erasure.erasedAt === null) {
    throw new HttpError(503, "STORAGE_UNAVAILABLE", `the erasure could not begin (${erasure.stoppedBy ?? "no tombstone written"}); try again`);
  }
  return json(erasure, erasure.complete ? 200 : 202);
};

const listArchives: Handler = async ({ url, rt, params, userId }) => {
  const owner = check.userId("userId", params.userId);
  if (owner !== userId) throw new HttpError(403, "FORBIDDEN", "you can list only your own archives");
  const limit = check.intParam("limit", url.searchParams.get("limit"), 1, 100, 20);
  const cursorParam = url.searchParams.get("cursor");
  const cursor = cursorParam === null ? undefined : check.text("cursor", cursorParam, 4096);
  const page = await rt.service.listArchivedConversations(owner, limit, cursor);
  return json({ archives: Array.from(page), cursor: page.cursor ?? null, listComplete: page.listComplete });
};

/** The file name an export is saved as: the user id in characters safe in any file system. */
export function exportFileName(userId: string): string {
  return `supportbot-export-${userId.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64)}.ndjson`;
}

/**
 * A person's copy of their data (exportUserData), streamed as NDJSON: for the user themselves or
 * a service token. The first chunk is read before answering, so that a failure before any data
 * is an HTTP error; one after it cuts the body short, which its missing end line shows.
 */
const exportUser: Handler = async ({ rt, params, userId, role }) => {
  const owner = check.userId("userId", params.userId);
  if (owner !== userId && role !== "service") throw new HttpError(403, "FORBIDDEN", "you can export only your own data");
  const reader = rt.service.exportUserData(owner).getReader();
  const first = await reader.read();
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        if (first.done) controller.close();
        else controller.enqueue(first.value);
      },
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  const headers = { "content-type": "application/x-ndjson", "content-disposition": `attachment; filename="${exportFileName(owner)}"` };
  return new Response(body, { headers });
};

const cacheEmbedding: Handler = async ({ request, rt }) => {
  const body = check.object(await readJsonBody(request), ["text", "embedding", "model", "source"]);
  const text = check.text("body.text", body.text, check.MAX_TEXT_CHARS);
  const embedding = check.embedding("body.embedding", body.embedding);
  const model = check.optionalText("body.model", body.model, 128);
  const source = check.optionalText("body.source", body.source, 128);
  await rt.service.cacheEmbedding(text, embedding, { ...(model && { model }), ...(source && { source }) });
  return json({ cached: true, dimensions: embedding.length }, 201);
};

const getEmbedding: Handler = async ({ url, rt }) => {
  const text = check.requiredParam("text", url.searchParams.get("text"), check.MAX_TEXT_CHARS);
  const modelParam = url.searchParams.get("model");
  const model = modelParam === null ? undefined : check.text("model", modelParam, 128);
  const embedding = await rt.service.getCachedEmbedding(text, model);
  if (embedding === null) throw new HttpError(404, "NOT_FOUND", "no cached embedding for this text and model");
  return json({ embedding });
};

const cacheQuery: Handler = async ({ request, rt }) => {
  const body = check.object(await readJsonBody(request), ["query", "result", "metadata"]);
  const query = check.text("body.query", body.query, check.MAX_TEXT_CHARS);
  if (body.result === undefined) throw new HttpError(400, "INVALID_INPUT", "body.result: is required (any JSON value)");
  const metadata = check.metadata("body.metadata", body.metadata);
  await rt.service.cacheFrequentQuery(query, body.result, metadata);
  return json({ cached: true }, 201);
};

const getQuery: Handler = async ({ url, rt }) => {
  const query = check.requiredParam("query", url.searchParams.get("query"), check.MAX_TEXT_CHARS);
  const result = await rt.service.getCachedQueryResult(query);
  if (result === null) throw new HttpError(404, "NOT_FOUND", "no cached result for this query");
  return json({ result });
};

const createBackup: Handler = async (context) => {
  const body = check.object(await readJsonBody(context.request), ["sessionIds"]);
  const sessionIds = check.idList("body.sessionIds", body.sessionIds, check.MAX_BACKUP_SESSIONS);
  // The Durable Objects answer concurrently: one round trip, not one per session.
  await Promise.all(sessionIds.map((sessionId) => checkSessionOwner(context, sessionId)));
  // Per session 1 KV get and 1 R2 get, then 3 writes: 43 KV/R2 calls for MAX_BACKUP_SESSIONS
  // (20), under the free plan's 50 subrequests unless calls are retried, besides the Durable
  // Object calls above. The manifest records the owner, in the write that commits the backup.
  const backupId = await context.rt.service.createBackup(sessionIds, { userId: context.userId });
  return json({ backupId, sessionIds }, 201);
};

/** The caller's own backups (those made for them), newest first, with whether each is kept. */
const listBackups: Handler = async ({ url, rt, userId }) => {
  const limit = check.intParam("limit", url.searchParams.get("limit"), 1, 100, 20);
  const cursorParam = url.searchParams.get("cursor");
  const cursor = cursorParam === null ? undefined : check.text("cursor", cursorParam, 8192);
  const page = await rt.service.listBackups({ userId, limit, ...(cursor !== undefined && { cursor }) });
  return json({ backups: Array.from(page), cursor: page.cursor ?? null, listComplete: page.listComplete });
};

/**
 * KV key under which earlier versions of this Worker recorded a backup's owner, before the
 * manifest held it. Only read: such records expire archiveRetention after their backup.
 */
export function legacyBackupOwnerKey(backupId: string): string {
  return `example:backup_owner:${backupId}`;
}

/** Only the user a backup was made for may restore it; anyone else gets the 404 of a missing one. */
const restoreBackup: Handler = async ({ env, rt, params, userId }) => {
  const backupId = check.id("backupId", params.backupId);
  let restoredSessions: string[];
  try {
    restoredSessions = await rt.service.restoreFromBackup(backupId, { userId });
  } catch (error) {
    // A backup made by an earlier version of this Worker names no owner; its KV record does.
    const notFound = isPersistenceError(error) && error.code === "NOT_FOUND";
    if (!notFound || (await env.CHAT_KV.get(legacyBackupOwnerKey(backupId))) !== userId) throw error;
    restoredSessions = await rt.service.restoreFromBackup(backupId);
  }
  return json({ backupId, restoredSessions });
};

const OPS = "reading what no single user owns";

const ROUTES: Route[] = [
  { pattern: "/health", auth: false, methods: { GET: health } },
  { pattern: "/metrics", auth: true, methods: { GET: serviceOnly("counting the whole store", metrics) } },
  // The dashboard's page, stylesheet and script: public, they hold no data.
  ...Object.keys(DASHBOARD_FILES).map((pattern): Route => ({ pattern, auth: false, methods: { GET: async () => dashboardFile(pattern) } })),
  { pattern: "/ops/archives-per-day", auth: true, methods: { GET: serviceOnly(OPS, getArchivesPerDay) } },
  { pattern: "/ops/backups", auth: true, methods: { GET: serviceOnly(OPS, getBackups) } },
  { pattern: "/ops/runs", auth: true, methods: { GET: serviceOnly(OPS, getRuns) } },
  { pattern: "/sessions/:sessionId/messages", auth: true, methods: { POST: addMessage } },
  { pattern: "/sessions/:sessionId/context", auth: true, methods: { GET: getContext } },
  { pattern: "/sessions/:sessionId/archive", auth: true, methods: { POST: archiveSession, GET: getArchive } },
  { pattern: "/sessions/:sessionId/restore", auth: true, methods: { POST: restoreSession } },
  { pattern: "/users/:userId", auth: true, methods: { DELETE: eraseUserData } },
  { pattern: "/users/:userId/archives", auth: true, methods: { GET: listArchives } },
  { pattern: "/users/:userId/export", auth: true, methods: { GET: exportUser } },
  { pattern: "/cache/embeddings", auth: true, methods: { POST: serviceOnly(CACHE_WRITE, cacheEmbedding), GET: getEmbedding } },
  { pattern: "/cache/queries", auth: true, methods: { POST: serviceOnly(CACHE_WRITE, cacheQuery), GET: getQuery } },
  { pattern: "/backups", auth: true, methods: { POST: createBackup, GET: listBackups } },
  { pattern: "/backups/:backupId/restore", auth: true, methods: { POST: restoreBackup } },
];

/** The path parameters of `pathname` under `pattern`, or null when it does not match. */
function match(pattern: string, pathname: string): Record<string, string> | null {
  const want = pattern.split("/");
  const got = pathname.split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const part = want[i] ?? "";
    const value = got[i] ?? "";
    if (part.startsWith(":")) {
      if (value === "") return null;
      try {
        params[part.slice(1)] = decodeURIComponent(value);
      } catch {
        throw new HttpError(400, "INVALID_ID", `${part.slice(1)}: not valid percent-encoding`);
      }
    } else if (part !== value) {
      return null;
    }
  }
  return params;
}

/** Routes `request`: 404 for an unknown path, 405 for a wrong method, 401 without a valid token. */
export async function route(request: Request, env: ExampleEnv, rt: Runtime): Promise<Response> {
  const url = new URL(request.url);
  for (const { pattern, auth, methods } of ROUTES) {
    const params = match(pattern, url.pathname);
    if (params === null) continue;
    const handler = methods[request.method as keyof typeof methods];
    if (!handler) {
      const allow = Object.keys(methods).join(", ");
      throw new HttpError(405, "METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${pattern}; use ${allow}`, { allow });
    }
    const claims: TokenClaims | null = auth ? await authenticate(request, await rt.authKey) : null;
    const context: RouteContext = { request, url, env, rt, params, userId: claims?.userId ?? "" };
    if (claims?.role !== undefined) context.role = claims.role;
    return handler(context);
  }
  throw new HttpError(404, "NOT_FOUND", `no route ${url.pathname}`);
}
