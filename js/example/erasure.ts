// A person's erasure in the example Worker: DELETE /users/:userId runs eraseUserData and clears
// the user's SessionMemoryDOs; the cron finishes erasures a request could not complete.
//
// The library finds every archive of a user, but a Durable Object's live session is in no index
// of the library's. So the Worker records, when a user's session is created or restored, an
// empty R2 object `example/user_sessions/<owner hash>/<sessionId>` (R2, not KV: listing it is
// strongly consistent, so a session made a second before the erasure is found). The owner hash
// is HMAC-SHA256 of "user-sessions" 0x00 userId under the AUTH_SECRET key (a token's signed
// payload is base64url, never holding 0x00, so the two uses cannot collide), so the raw id is in
// no key. The erasure deletes these records with the sessions.
import type { ErasureReceipt } from "supportbot-persistence";
import { RETENTION_TIME_BUDGET_MS, runtime, type ExampleEnv, type Runtime } from "./config.js";

const REGISTRY_PREFIX = "example/user_sessions/";
/** The service's MIN_ERASURE_CALLS: with fewer calls left, the cron's erasures wait for the next run. */
export const MIN_ERASURE_CALLS = 10;

/** Durable Objects cleared at once (and session records deleted per R2 call). */
const DO_CALLS_AT_ONCE = 50;

const hex = (bytes: ArrayBuffer) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

/** The R2 prefix of `userId`'s session records. */
async function registryPrefix(rt: Runtime, userId: string): Promise<string> {
  const label = new TextEncoder().encode(`user-sessions\u0000${userId}`);
  return `${REGISTRY_PREFIX}${hex(await crypto.subtle.sign("HMAC", await rt.authKey, label))}/`;
}

/** Records that `sessionId` belongs to `userId` (idempotent; 1 R2 put). */
export async function registerSession(env: ExampleEnv, rt: Runtime, userId: string, sessionId: string): Promise<void> {
  await env.ARCHIVE_R2.put(`${await registryPrefix(rt, userId)}${sessionId}`, new Uint8Array(0));
}

/** The sessions recorded for `userId`, with their record keys (1 R2 list per 1000). */
async function recordedSessions(env: ExampleEnv, prefix: string): Promise<Map<string, string>> {
  const sessions = new Map<string, string>();
  let cursor: string | undefined;
  do {
    const page = await env.ARCHIVE_R2.list({ prefix, cursor });
    for (const object of page.objects) sessions.set(object.key.slice(prefix.length), object.key);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return sessions;
}

/** What DELETE /users/:userId answers: the library's receipt and the Durable Objects cleared. */
export type UserErasure = ErasureReceipt & { sessionsCleared: number };

/**
 * Erases `userId`: first their SessionMemoryDOs (live messages and owner rows, found through the
 * session records; each one's record deleted once it is cleared, so a retried request picks up
 * where this one stopped), then everything the library stores of them, within the cron's
 * storage call budget; the cron continues an erasure that did not complete. Idempotent. The
 * Durable Object calls and record deletes are subrequests besides that budget: a user with
 * many live sessions needs the paid plan's subrequests, or several requests.
 */
export async function eraseUser(env: ExampleEnv, rt: Runtime, userId: string): Promise<UserErasure> {
  const prefix = await registryPrefix(rt, userId);
  const sessions = await recordedSessions(env, prefix);
  let cleared = 0;
  // A bounded number of Durable Object calls at a time; each session's record goes once its
  // object is cleared (R2 deletes at most 1000 keys a call).
  const ids = [...sessions.keys()];
  for (let first = 0; first < ids.length; first += DO_CALLS_AT_ONCE) {
    const batch = ids.slice(first, first + DO_CALLS_AT_ONCE);
    const forgotten = await Promise.all(batch.map((sessionId) => env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName(sessionId)).forgetUser(userId)));
    cleared += forgotten.filter(Boolean).length;
    await env.ARCHIVE_R2.delete(batch.map((sessionId) => sessions.get(sessionId)!));
  }
  const receipt = await rt.retention.service.eraseUserData(userId, {
    maxStorageCalls: rt.retention.maxStorageCalls,
    timeBudgetMs: RETENTION_TIME_BUDGET_MS,
  });
  return { ...receipt, sessionsCleared: cleared };
}

/** What the cron's erasures did, as logged. */
export type ErasureOutcome =
  | { event: "erasures_skipped"; cron: string; callsLeft: number }
  | { event: "erasures_run"; cron: string; receipts: ErasureReceipt[] };

/** Continues unfinished erasures with `callsLeft` storage calls; logs and returns what it did. */
export async function runScheduledErasures(cron: string, env: ExampleEnv, callsLeft: number): Promise<ErasureOutcome> {
  let outcome: ErasureOutcome;
  // With a replica bucket, an archive's deletion and its conversation's tombstone are repeated there.
  if (callsLeft < MIN_ERASURE_CALLS + (env.ARCHIVE_R2_REPLICA ? 4 : 0)) {
    outcome = { event: "erasures_skipped", cron, callsLeft };
  } else {
    const receipts = await runtime(env).retention.service.resumeErasures({ maxStorageCalls: callsLeft, timeBudgetMs: RETENTION_TIME_BUDGET_MS });
    outcome = { event: "erasures_run", cron, receipts };
  }
  console.log(JSON.stringify(outcome));
  return outcome;
}
