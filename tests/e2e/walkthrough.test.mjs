// End-to-end: starts the real `wrangler dev` (tests/e2e/wrangler.mjs: the flags `npm start` uses,
// a free port, a throwaway state directory), drives the README walkthrough steps over HTTP,
// including the cron handler and forged tokens, and always stops the process group. Needs a
// built dist/ (npm test builds it first).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { devAuthSecret, mintToken } from "../../scripts/token.mjs";
import { call as callAt, ROOT, startWranglerDev, waitFor } from "./wrangler.mjs";

let dev;
let base;

before(async () => {
  dev = await startWranglerDev();
  base = dev.base;
});

after(async () => {
  await dev?.stop();
});

function call(method, path, token, body) {
  return callAt(base, method, path, token, body);
}

test("the walkthrough, over HTTP against wrangler dev", async () => {
  const secret = devAuthSecret();
  const alice = await mintToken("alice", secret);
  const bob = await mintToken("bob", secret);
  // As the README mints it: `node scripts/token.mjs --service faq-indexer`, with the dev secret.
  const { AUTH_SECRET: _ignored, ...devEnv } = process.env;
  const indexer = execFileSync(process.execPath, ["scripts/token.mjs", "--service", "faq-indexer"], { cwd: ROOT, env: devEnv, encoding: "utf8" }).trim();

  const health = await call("GET", "/health");
  assert.equal(health.status, 200);
  assert.equal(health.body.status, "healthy");

  let response = await call("POST", "/sessions/s1/messages", alice, { role: "user", content: "I forgot my password", summary: "Password reset" });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  assert.equal(response.body.messageCount, 1);
  response = await call("POST", "/sessions/s1/messages", alice, { role: "assistant", content: "Use the reset link on the sign-in page." });
  assert.equal(response.body.messageCount, 2);

  response = await call("GET", "/sessions/s1/context", alice);
  assert.equal(response.status, 200);
  assert.equal(response.body.summary, "Password reset");
  assert.deepEqual(response.body.recentMessages.map((m) => m.role), ["user", "assistant"]);

  response = await call("POST", "/sessions/s1/archive", alice);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  // npm start configures a (dev-only) encryption key: the archive is stored encrypted.
  assert.match(response.body.archiveKey, /^conversations\/.*archive_s1_\d+\.json\.gz\.enc$/);

  response = await call("GET", "/users/alice/archives?limit=10", alice);
  assert.equal(response.status, 200);
  assert.deepEqual(response.body.archives.map((a) => a.sessionId), ["s1"]);
  // Its summary is stored encrypted and listed decrypted.
  assert.deepEqual(response.body.archives.map((a) => [a.summary, a.encryptedSummary]), [["Password reset", undefined]]);

  response = await call("GET", "/sessions/s1/archive", alice);
  assert.equal(response.status, 200);
  assert.equal(response.body.messages.length, 2);

  // Alice's copy of her data: a line per archive (decrypted), then the count and SHA-256 of the
  // lines before it, as `head -n -1 alice.ndjson | sha256sum` checks it.
  const exported = await fetch(`${base}/users/alice/export`, { headers: { authorization: `Bearer ${alice}` } });
  assert.equal(exported.status, 200);
  assert.equal(exported.headers.get("content-type"), "application/x-ndjson");
  assert.equal(exported.headers.get("content-disposition"), 'attachment; filename="supportbot-export-alice.ndjson"');
  const ndjson = Buffer.from(await exported.arrayBuffer());
  const endAt = ndjson.lastIndexOf(10, ndjson.length - 2) + 1;
  const end = JSON.parse(ndjson.subarray(endAt).toString("utf8"));
  const lines = ndjson.subarray(0, endAt).toString("utf8").trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual([end.type, end.count, end.sha256], ["end", 1, createHash("sha256").update(ndjson.subarray(0, endAt)).digest("hex")]);
  assert.deepEqual(lines.map((line) => [line.type, line.sessionId, line.metadata.summary, line.conversation.messages.length]), [["conversation", "s1", "Password reset", 2]]);
  assert.equal((await call("GET", "/users/alice/export", bob)).status, 403);

  response = await call("POST", "/backups", alice, { sessionIds: ["s1"] });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  const { backupId } = response.body;
  response = await call("GET", "/backups", alice);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  const listed = response.body.backups.find((backup) => backup.backupId === backupId);
  assert.deepEqual([listed?.forUser, listed?.sessionCount, listed?.kept], [true, 1, true], JSON.stringify(response.body));
  response = await call("POST", `/backups/${backupId}/restore`, alice);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  assert.deepEqual(response.body.restoredSessions, ["s1"]);

  response = await call("POST", "/sessions/s1/restore", alice);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  assert.equal(response.body.status, "active");
  assert.equal(response.body.messageCount, 2);

  response = await call("POST", "/cache/embeddings", indexer, { text: "reset password", embedding: [0.12, -0.5, 0.33], model: "demo-model" });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  response = await call("GET", "/cache/embeddings?text=reset%20password&model=demo-model", alice);
  assert.deepEqual(response.body.embedding, [0.12, -0.5, 0.33]);
  response = await call("POST", "/cache/queries", indexer, { query: "how do I reset my password?", result: { answer: "Use the reset link." } });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  response = await call("GET", "/cache/queries?query=how%20do%20I%20reset%20my%20password%3F", alice);
  assert.deepEqual(response.body.result, { answer: "Use the reset link." });

  response = await call("GET", "/metrics", alice);
  assert.equal(response.status, 403, JSON.stringify(response.body));
  response = await call("GET", "/metrics", indexer);
  assert.equal(response.status, 200);
  assert.equal(response.body.complete, true);
  assert.ok(response.body.storage.archived_conversations >= 1, JSON.stringify(response.body));

  // The cron handler, as `wrangler dev --test-scheduled` exposes it.
  const cron = await fetch(`${base}/__scheduled?cron=0+*/6+*+*+*`);
  assert.equal(cron.status, 200, await cron.text());
  const logged = await waitFor(() => /"event":"retention_run"/.test(dev.output));
  assert.ok(logged, `no retention_run log line in:\n${dev.output}`);
  // ... then rotates the data keys to the newest key (the only one: all current at once).
  const rotated = await waitFor(() => /"event":"key_rotation_run".*"complete":true/.test(dev.output));
  assert.ok(rotated, `no complete key_rotation_run log line in:\n${dev.output}`);
  assert.match(dev.output, /"event":"key_rotation_run"[^\n]*"keyUnavailable":0/);
  // ... then verifies (and repairs) a sample of the store with the calls left, or says why not.
  const verified = await waitFor(() => /"event":"verification_(run|skipped)"/.test(dev.output));
  assert.ok(verified, `no verification log line in:\n${dev.output}`);
  assert.doesNotMatch(dev.output, /"event":"verification_run"[^\n]*"problemsFound":[1-9]/);
  // ... and starts this interval's automated backup (BackupWorkflow), which commits a backup.
  const started = await waitFor(() => /"event":"backup_started"/.test(dev.output));
  assert.ok(started, `no backup_started log line in:\n${dev.output}`);
  const instanceId = /"event":"backup_started","instanceId":"([^"]+)"/.exec(dev.output)[1];
  const explorer = `${base}/cdn-cgi/local/explorer/api/workflows/supportbot-backup/instances/${instanceId}`;
  let instance;
  const finished = await waitFor(async () => {
    instance = (await (await fetch(explorer)).json()).result;
    return instance?.status === "complete" || instance?.status === "errored";
  }, 30_000);
  assert.ok(finished, `instance ${instanceId}: ${JSON.stringify(instance)}`);
  assert.equal(instance.status, "complete", JSON.stringify(instance.error));
  // Its last step committed the manifest of every archive so far, a pack per step.
  assert.match(instance.output.backupId, /^backup_\d{13}_[0-9a-f]+$/);
  assert.ok(instance.output.archives >= 1 && instance.output.packs >= 1, JSON.stringify(instance.output));
  assert.deepEqual(instance.steps.map((step) => step.name.replace(/-\d+$/, "")).filter((name) => !name.startsWith("pack")), ["plan", "commit"]);

  // Forged tokens and another user's session.
  const forged = await mintToken("alice", "not-the-secret-but-long-enough-000000000");
  response = await call("GET", "/sessions/s1/context", forged);
  assert.equal(response.status, 401);
  assert.equal(response.body.error.code, "UNAUTHORIZED");
  response = await call("GET", "/sessions/s1/context", bob);
  assert.equal(response.status, 403);
  assert.equal(response.body.error.code, "FORBIDDEN");
  response = await call("GET", "/users/alice/archives", bob);
  assert.equal(response.status, 403);
  response = await call("POST", "/cache/queries", alice, { query: "how do I reset my password?", result: { answer: "Email it to me." } });
  assert.equal(response.status, 403);
  assert.equal(response.body.error.code, "FORBIDDEN");

  // Erasure (README "Data rights and migration"): bob may not erase alice; alice erases herself.
  response = await call("DELETE", "/users/alice", bob);
  assert.equal(response.status, 403, JSON.stringify(response.body));
  response = await call("DELETE", "/users/alice", alice);
  // Her session's Durable Object is cleared at once; the erasure itself may need more than one
  // request's call budget (202): asking again continues it, as the cron would.
  assert.equal(response.body.sessionsCleared, 1, JSON.stringify(response.body));
  for (let again = 0; response.status === 202 && again < 5; again++) {
    assert.equal(response.body.complete, false);
    response = await call("DELETE", "/users/alice", alice);
  }
  assert.equal(response.status, 200, JSON.stringify(response.body));
  assert.equal(response.body.complete, true);
  assert.ok(response.body.archivesDeleted >= 1 && response.body.keysDestroyed === 1, JSON.stringify(response.body));
  assert.match(response.body.userKey, /^[0-9a-f]{64}$/);
  response = await call("GET", "/users/alice/archives", alice);
  assert.deepEqual(response.body.archives, []);
  response = await call("GET", "/sessions/s1/context", alice);
  assert.equal(response.status, 404, JSON.stringify(response.body));
  response = await call("GET", "/sessions/s1/archive", alice);
  assert.equal(response.status, 404, JSON.stringify(response.body));
});
