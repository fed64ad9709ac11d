// The example Worker's routes. Every route but GET /health needs a bearer token; a session
// belongs to the user whose token created it, and only that user can read, archive, restore,
// list or back it up (403 otherwise).
import { libraryVersion, type SessionMemoryDO } from "supportbot-persistence";
import { authenticate, type TokenClaims } from "./auth.js";
import type { ExampleEnv, Runtime } from "./config.js";
import { HttpError, json, readJsonBody } from "./http.js";
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
}

type Handler = (context: RouteContext) => Promise<Response>;

interface Route {
  pattern: string;
  /** Whether the route needs a bearer token. */
  auth: boolean;
  methods: Partial<Record<"GET" | "POST", Handler>>;
}

type SessionMessage = Parameters<SessionMemoryDO["addMessage"]>[0];

/** KV key recording who created a backup (only that user may restore it). */
export function backupOwnerKey(backupId: string): string {
  return `example:backup_owner:${backupId}`;
}

function sessionStub(env: ExampleEnv, sessionId: string) {
  return env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName(sessionId));
}

function forbidden(what: string): HttpError {
  return new HttpError(403, "FORBIDDEN", `${what} belongs to another user`);
}

/** The owner of a session: its Durable Object's, or, once that row is gone, its archive's. */
async function sessionOwner(context: RouteContext, sessionId: string): Promise<string | undefined> {
  const info = await sessionStub(context.env, sessionId).getSessionInfo();
  if (info) return info.userId;
  const archived = await context.rt.service.retrieveArchivedConversation(sessionId);
  if (archived === null) throw new HttpError(404, "NOT_FOUND", `session ${sessionId} not found`);
  return archived.sessionState?.userId;
}

const health: Handler = async ({ rt }) => {
  const report = await rt.integration.healthCheck();
  return json({ ...report, version: libraryVersion() }, report.status === "unhealthy" ? 503 : 200);
};

const metrics: Handler = async ({ rt }) => json(await rt.integration.getStorageMetrics());

const addMessage: Handler = async ({ request, env, params, userId }) => {
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

const getArchive: Handler = async ({ rt, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  const archived = await rt.service.retrieveArchivedConversation(sessionId);
  if (archived === null) throw new HttpError(404, "NOT_FOUND", `no archive of session ${sessionId}`);
  if (archived.sessionState?.userId !== userId) throw forbidden(`session ${sessionId}`);
  return json(archived);
};

const restoreSession: Handler = async ({ env, params, userId }) => {
  const sessionId = check.id("sessionId", params.sessionId);
  return json(await sessionStub(env, sessionId).restoreSession(sessionId, { userId }));
};

const listArchives: Handler = async ({ url, rt, params, userId }) => {
  const owner = check.id("userId", params.userId);
  if (owner !== userId) throw new HttpError(403, "FORBIDDEN", "you can list only your own archives");
  const limit = check.intParam("limit", url.searchParams.get("limit"), 1, 100, 20);
  const cursorParam = url.searchParams.get("cursor");
  const cursor = cursorParam === null ? undefined : check.text("cursor", cursorParam, 4096);
  const page = await rt.service.listArchivedConversations(owner, limit, cursor);
  return json({ archives: Array.from(page), cursor: page.cursor ?? null, listComplete: page.listComplete });
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
  const { request, env, rt, userId } = context;
  const body = check.object(await readJsonBody(request), ["sessionIds"]);
  const sessionIds = check.idList("body.sessionIds", body.sessionIds, check.MAX_BACKUP_SESSIONS);
  for (const sessionId of sessionIds) {
    if ((await sessionOwner(context, sessionId)) !== userId) throw forbidden(`session ${sessionId}`);
  }
  const backupId = await rt.service.createBackup(sessionIds);
  await env.CHAT_KV.put(backupOwnerKey(backupId), userId, { expirationTtl: Math.ceil(rt.policy.archiveRetention / 1000) });
  return json({ backupId, sessionIds }, 201);
};

const restoreBackup: Handler = async ({ env, rt, params, userId }) => {
  const backupId = check.id("backupId", params.backupId);
  const owner = await env.CHAT_KV.get(backupOwnerKey(backupId));
  if (owner === null) throw new HttpError(404, "NOT_FOUND", `backup ${backupId} not found`);
  if (owner !== userId) throw forbidden(`backup ${backupId}`);
  const restoredSessions = await rt.service.restoreFromBackup(backupId);
  return json({ backupId, restoredSessions });
};

const ROUTES: Route[] = [
  { pattern: "/health", auth: false, methods: { GET: health } },
  { pattern: "/metrics", auth: true, methods: { GET: metrics } },
  { pattern: "/sessions/:sessionId/messages", auth: true, methods: { POST: addMessage } },
  { pattern: "/sessions/:sessionId/context", auth: true, methods: { GET: getContext } },
  { pattern: "/sessions/:sessionId/archive", auth: true, methods: { POST: archiveSession, GET: getArchive } },
  { pattern: "/sessions/:sessionId/restore", auth: true, methods: { POST: restoreSession } },
  { pattern: "/users/:userId/archives", auth: true, methods: { GET: listArchives } },
  { pattern: "/cache/embeddings", auth: true, methods: { POST: cacheEmbedding, GET: getEmbedding } },
  { pattern: "/cache/queries", auth: true, methods: { POST: cacheQuery, GET: getQuery } },
  { pattern: "/backups", auth: true, methods: { POST: createBackup } },
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
    return handler({ request, url, env, rt, params, userId: claims?.userId ?? "" });
  }
  throw new HttpError(404, "NOT_FOUND", `no route ${url.pathname}`);
}
