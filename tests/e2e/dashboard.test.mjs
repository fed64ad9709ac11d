// End-to-end: the operators' dashboard (GET /dashboard) in Debian's headless Chromium, driven by
// playwright-core (which downloads no browser), against the real `wrangler dev`. Seeds data
// through the HTTP API and the cron handler, enters a service token, and checks that the page
// shows the API's numbers, one chart bar per day with archives, no console errors, the 403 advice
// for a user's token, no sideways scrolling at 360 px and keyboard-reachable controls. Saves a
// full-page screenshot to target/test-logs/dashboard.png (docs/dashboard.png is a copy of one).
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { devAuthSecret, mintToken } from "../../scripts/token.mjs";
import { call as callAt, ROOT, startWranglerDev, waitFor } from "./wrangler.mjs";

const SCREENSHOT = join(ROOT, "target/test-logs/dashboard.png");
/** The advice the page gives for a user's token (js/example/dashboard/app.client.js). */
const FORBIDDEN_ADVICE = "This token belongs to a user; the dashboard needs a service token.";
const UNAUTHORIZED_ADVICE = /^Token missing, invalid or expired: paste a service token/;

/** Debian's Chromium (scripts/setup.sh installs it); its absence fails the test, never skips it. */
function chromiumPath() {
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("chromium is not installed: run scripts/setup.sh (apt-get install chromium)");
  }
}

let dev;
let browser;

before(async () => {
  // The browser first: a missing one fails before wrangler is started.
  browser = await chromium.launch({ executablePath: chromiumPath(), args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
  dev = await startWranglerDev();
});

after(async () => {
  await browser?.close();
  await dev?.stop();
});

function call(method, path, token, body) {
  return callAt(dev.base, method, path, token, body);
}

/** Seeds two users' archives, a backup, cache entries and a cron run (with its automated backup). */
async function seed(secret, ops) {
  const users = { dana: await mintToken("dana", secret), eli: await mintToken("eli", secret) };
  for (const [user, sessionIds] of [
    ["dana", ["dash-1", "dash-2"]],
    ["eli", ["dash-3"]],
  ]) {
    for (const sessionId of sessionIds) {
      let response = await call("POST", `/sessions/${sessionId}/messages`, users[user], { role: "user", content: `hello from ${user}`, summary: "greeting" });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      response = await call("POST", `/sessions/${sessionId}/archive`, users[user]);
      assert.equal(response.status, 200, JSON.stringify(response.body));
    }
  }
  let response = await call("POST", "/backups", users.dana, { sessionIds: ["dash-1", "dash-2"] });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  response = await call("POST", "/cache/embeddings", ops, { text: "reset password", embedding: [0.1, 0.2], model: "demo-model" });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  response = await call("POST", "/cache/queries", ops, { query: "how do I reset?", result: { answer: "Settings" } });
  assert.equal(response.status, 201, JSON.stringify(response.body));

  const cron = await fetch(`${dev.base}/__scheduled?cron=0+*/6+*+*+*`);
  assert.equal(cron.status, 200, await cron.text());
  // The cron's automated backup commits through its Workflow; wait for it, so the numbers hold still.
  assert.ok(await waitFor(() => /"event":"backup_started"/.test(dev.output)), `no backup_started in:\n${dev.output}`);
  const runsRecorded = await waitFor(async () => {
    const runs = (await call("GET", "/ops/runs", ops)).body;
    return runs.retention !== null && runs.backup !== null && runs.newestBackup?.kind === "automated";
  }, 30_000);
  assert.ok(runsRecorded, JSON.stringify((await call("GET", "/ops/runs", ops)).body));
  return users;
}

/** Opens the dashboard, enters `token` and waits until the status line settles. */
async function openWith(page, token) {
  await page.goto(`${dev.base}/dashboard`);
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await page.waitForFunction(() => {
    const status = document.getElementById("status")?.textContent ?? "";
    return status !== "" && status !== "Loading…" && !status.startsWith("Paste");
  });
  return (await page.textContent("#status")).trim();
}

test("the dashboard shows the API's numbers in headless Chromium", async () => {
  const secret = devAuthSecret();
  const ops = await mintToken("ops", secret, 3600, Date.now(), "service");
  const users = await seed(secret, ops);

  const metrics = (await call("GET", "/metrics", ops)).body;
  const perDay = (await call("GET", "/ops/archives-per-day?days=30", ops)).body;
  const backups = (await call("GET", "/ops/backups?limit=50", ops)).body;
  const runs = (await call("GET", "/ops/runs", ops)).body;
  assert.ok(metrics.storage.archived_conversations >= 3 && metrics.cache.embeddings === 1, JSON.stringify(metrics));
  assert.ok(backups.backups.length >= 2, JSON.stringify(backups));

  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  const status = await openWith(page, ops);
  assert.match(status, /^Updated /);
  assert.equal(await page.getAttribute("#per-day", "data-state"), "ready");

  // Stored counts, as /metrics answers them.
  const shown = async (selector) => (await page.textContent(selector)).trim();
  assert.equal(await shown('[data-metric="archives"]'), String(metrics.storage.archived_conversations));
  assert.equal(await shown('[data-metric="backups"]'), String(metrics.storage.backups));
  assert.equal(await page.getAttribute('[data-metric="bytes"]', "data-value"), String(metrics.storage.bytes));
  assert.equal(await shown('[data-metric="embeddings"]'), String(metrics.cache.embeddings));
  assert.equal(await shown('[data-metric="queries"]'), String(metrics.cache.queries));
  assert.equal(await shown('[data-metric="archive-meta"]'), String(metrics.cache.archives_metadata));

  // The chart: one bar per day with archives, with its date and count.
  const bars = await page.$$eval("#per-day rect.bar", (rects) => rects.map((rect) => ({ date: rect.dataset.date, archives: Number(rect.dataset.count), title: rect.querySelector("title")?.textContent })));
  const daysWithData = perDay.days.filter((day) => day.archives > 0);
  assert.deepEqual(
    bars.map(({ date, archives }) => ({ date, archives })),
    daysWithData,
  );
  for (const bar of bars) assert.match(bar.title, new RegExp(`^${bar.date}: ${bar.archives} archives?$`));

  // Backups: every one listed, with its kind and the rotation's reasons.
  const rows = await page.$$eval("#backups tbody tr", (trs) =>
    trs.map((tr) => ({ backupId: tr.dataset.backupId, kind: tr.querySelector('[data-field="kind"]').textContent, reasons: tr.querySelector('[data-field="reasons"]').textContent })),
  );
  assert.deepEqual(
    rows,
    backups.backups.map((backup) => ({ backupId: backup.backupId, kind: `${backup.kind}${backup.incremental ? " (incremental)" : ""}`, reasons: backup.reasons.join(", ") || "—" })),
  );

  // The last runs.
  assert.equal(await page.getAttribute('[data-metric="retention-calls"]', "data-value"), String(runs.retention.outcome.storageCalls));
  assert.equal(await shown('[data-metric="backup-instance"]'), runs.backup.outcome.instanceId);
  if (runs.verification) assert.equal(await shown('[data-metric="verification-checked"]'), String(runs.verification.outcome.objectsChecked));
  assert.equal(await shown('[data-health="status"]'), (await call("GET", "/health")).body.status);
  assert.equal(await page.getAttribute("#replica", "data-state"), "empty");

  mkdirSync(join(ROOT, "target/test-logs"), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);

  // 360 px wide: nothing scrolls sideways (tables scroll inside their own box).
  await page.setViewportSize({ width: 360, height: 740 });
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 360);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-360.png"), fullPage: true });

  // The keyboard reaches the token field and both buttons, in that order.
  await page.goto(`${dev.base}/dashboard`);
  // The token stayed in this tab's sessionStorage: the reloaded page refreshes by itself (its
  // buttons are disabled, out of the Tab order, until it is done).
  await page.waitForFunction(() => document.getElementById("status")?.textContent?.startsWith("Updated"));
  assert.equal(await page.inputValue("#token"), ops);
  const focused = [];
  for (let press = 0; press < 6; press++) {
    await page.keyboard.press("Tab");
    focused.push(await page.evaluate(() => document.activeElement?.id ?? ""));
  }
  const order = ["token", "refresh", "forget"].map((id) => focused.indexOf(id));
  assert.ok(order.every((index, i) => index >= 0 && (i === 0 || index > order[i - 1])), `Tab order: ${focused.join(", ")}`);

  // Forget, then a user's token: the 403 advice. Then a bad token: the 401 advice.
  await page.click("#forget");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.equal(await openWith(page, users.dana), FORBIDDEN_ADVICE);
  assert.equal(await page.getAttribute("#storage", "data-state"), "error");
  assert.match(await openWith(page, "not-a-token"), UNAUTHORIZED_ADVICE);
  // Only the refused requests were logged (Chromium reports a 401/403 response as a console error).
  const unexpected = problems.filter((problem) => !/Failed to load resource: the server responded with a status of 40[13]/.test(problem));
  assert.deepEqual(unexpected, []);
  await context.close();
});
