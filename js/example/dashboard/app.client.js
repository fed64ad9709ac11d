// The operators' dashboard in the browser (served as /dashboard/app.js; type-checked by
// js/example/dashboard/tsconfig.json). It reads the Worker's JSON with a service token that stays
// in this tab's sessionStorage, and draws everything with DOM calls: no inline script or style,
// no other origin (the page's Content-Security-Policy forbids both).

const TOKEN_KEY = "supportbot.dashboard.token";
const WINDOW_DAYS = 30;
const BACKUPS_SHOWN = 50;
const SVG = "http://www.w3.org/2000/svg";

/** What to do about a refused request, by status. */
const STATUS_ADVICE = {
  401: "Token missing, invalid or expired: paste a service token (node scripts/token.mjs --service <name>).",
  403: "This token belongs to a user; the dashboard needs a service token.",
  503: "Storage unavailable: try again.",
};

/** What the retention report's `deleted` counts are, for people. */
const DELETION_LABELS = {
  expiredCacheEntry: "Expired cache entries",
  archivePastRetention: "Archives past retention",
  backupPastRetention: "Backups past retention",
  orphanBackupData: "Orphaned backup data",
  danglingIndexEntry: "Dangling index entries",
};

/** @param {number} count @param {string} noun @param {string} [nouns] */
function plural(count, noun, nouns = `${noun}s`) {
  return `${count} ${count === 1 ? noun : nouns}`;
}

/** A request that did not answer with the JSON asked for. */
class RequestError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** @param {string} id */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no #${id}`);
  return found;
}

/**
 * A new element with attributes and children (strings become text).
 * @param {string} tag @param {Record<string, string | number>} [attributes] @param {(Node | string)[]} [children]
 * @returns {HTMLElement}
 */
function h(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** @param {string} tag @param {Record<string, string | number>} [attributes] @param {(Node | string)[]} [children] */
function svg(tag, attributes = {}, children = []) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** @param {number} ms */
function formatTime(ms) {
  return `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** @param {number} bytes */
function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** @param {number} ms */
function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/**
 * GETs `path` as JSON. With `okStatuses`, those statuses' bodies are answers too (/health is 503
 * with its report when unhealthy).
 * @param {string} path @param {string | null} token @param {number[]} [okStatuses]
 * @returns {Promise<any>}
 */
async function getJson(path, token, okStatuses = []) {
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { headers, cache: "no-store" });
  } catch {
    throw new RequestError(0, "The Worker did not answer: is it running?");
  }
  const body = await response.json().catch(() => null);
  if (response.ok || okStatuses.includes(response.status)) return body;
  const advice = STATUS_ADVICE[/** @type {keyof typeof STATUS_ADVICE} */ (response.status)];
  const detail = body?.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`;
  throw new RequestError(response.status, advice ?? detail);
}

/**
 * Puts a panel in a state: "loading", "error" (with the message), "empty" (with what is missing)
 * or "ready" (with its content).
 * @param {string} id @param {"idle" | "loading" | "error" | "empty" | "ready"} state
 * @param {string} [text] @param {Node[]} [content]
 */
function show(id, state, text = "", content = []) {
  const panel = element(id);
  panel.dataset.state = state;
  panel.setAttribute("aria-busy", String(state === "loading"));
  const stateText = panel.querySelector("[data-state-text]");
  if (stateText) stateText.textContent = state === "loading" ? "Loading…" : text;
  panel.querySelector(".content")?.replaceChildren(...content);
}

/**
 * A list of label → figure; each figure carries its raw value in data-value for scripts and tests.
 * @param {[string, string, string | number, string?][]} rows [key, label, raw value, shown text]
 */
function figures(rows) {
  const list = h("dl", { class: "figures" });
  for (const [key, label, value, text] of rows) {
    list.append(h("dt", {}, [label]), h("dd", { "data-metric": key, "data-value": value }, [text ?? String(value)]));
  }
  return list;
}

/** @param {string} state */
function stateBadge(state) {
  const tone = state === "healthy" || state === "closed" ? "good" : state === "degraded" || state === "half_open" ? "warn" : "bad";
  return h("span", { class: `badge ${tone}` }, [state]);
}

/** @param {any} health */
function renderHealth(health) {
  const details = health.details ?? {};
  const list = h("dl", { class: "figures" });
  const row = (/** @type {string} */ key, /** @type {string} */ label, /** @type {Node | string} */ value) =>
    list.append(h("dt", {}, [label]), h("dd", { "data-health": key }, [value]));
  row("status", "Status", stateBadge(health.status));
  row("r2", "R2 (ARCHIVE_R2)", stateBadge(details.r2_storage ?? "unknown"));
  row("kv", "KV (CHAT_KV)", stateBadge(details.kv_cache ?? "unknown"));
  for (const [binding, state] of Object.entries(details.breakers ?? {})) row(`breaker-${binding}`, `Breaker ${binding}`, stateBadge(String(state)));
  const verification = health.verification;
  row("verification-problems", "Open verification problems", verification ? String(verification.problems) : "never verified");
  if (verification?.lastCompleteAt) row("verification-last", "Last complete verification", formatTime(Date.parse(verification.lastCompleteAt)));
  show("health", "ready", "", [list, h("p", { class: "note" }, [`Probed ${details.timestamp ?? ""}, R2 ${details.latencies?.r2_ms ?? "?"} ms, KV ${details.latencies?.kv_ms ?? "?"} ms.`])]);

  const replica = health.replica;
  if (!replica) {
    show("replica", "empty", "No replica bucket bound (ARCHIVE_R2_REPLICA).");
    return;
  }
  const pending = replica.pending === null ? "unknown" : `${replica.pending}${replica.pendingComplete ? "" : "+"}`;
  show("replica", "ready", "", [
    figures([
      ["replica-storage", "Replica bucket", replica.storage],
      ["replica-pending", "Copies queued", replica.pending ?? "", pending],
      ["replica-oldest", "Oldest queued copy", replica.oldestPendingMs ?? 0, replica.oldestPendingMs ? formatDuration(replica.oldestPendingMs) : "none"],
    ]),
  ]);
}

/** @param {any} metrics */
function renderStorage(metrics) {
  const content = [
    figures([
      ["archives", "Archived conversations", metrics.storage.archived_conversations],
      ["backups", "Backups", metrics.storage.backups],
      ["bytes", "Bytes in R2", metrics.storage.bytes, formatBytes(metrics.storage.bytes)],
      ["embeddings", "Cached embeddings", metrics.cache.embeddings],
      ["queries", "Cached query results", metrics.cache.queries],
      ["archive-meta", "Archive metadata entries", metrics.cache.archives_metadata],
    ]),
  ];
  if (!metrics.complete) content.push(h("p", { class: "note warn", "data-incomplete": "" }, ["Counted within the call budget: these are lower bounds."]));
  show("storage", "ready", "", content);
}

/**
 * A bar per day with archives, over the whole window; each bar has a <title> (date and count)
 * for screen readers and hover.
 * @param {any} perDay
 */
function renderPerDay(perDay) {
  /** @type {{date: string, archives: number}[]} */
  const days = perDay.days;
  const withData = days.filter((day) => day.archives > 0);
  const total = withData.reduce((sum, day) => sum + day.archives, 0);
  const notes = [];
  if (!perDay.complete) {
    notes.push(h("p", { class: "note warn", "data-incomplete": "" }, [`Incomplete: the call budget ran out after ${perDay.scannedEntries} archives; the oldest days are undercounted.`]));
  }
  if (withData.length === 0) {
    show("per-day", "empty", `No archives in the last ${days.length} days.`, notes);
    return;
  }
  const width = 600;
  const height = 180;
  const left = 32;
  const bottom = 20;
  const top = 8;
  const slot = (width - left) / days.length;
  const max = Math.max(...withData.map((day) => day.archives));
  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${plural(total, "archive")} on ${withData.length} of the last ${days.length} days`,
  });
  chart.append(
    svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, [String(max)]),
    svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, ["0"]),
    svg("text", { x: left, y: height - 4 }, [days[0]?.date ?? ""]),
    svg("text", { x: width, y: height - 4, "text-anchor": "end" }, [days.at(-1)?.date ?? ""]),
  );
  days.forEach((day, index) => {
    if (day.archives === 0) return;
    const barHeight = Math.max(2, ((height - bottom - top) * day.archives) / max);
    const bar = svg(
      "rect",
      {
        class: "bar",
        x: (left + index * slot + slot * 0.15).toFixed(1),
        y: (height - bottom - barHeight).toFixed(1),
        width: (slot * 0.7).toFixed(1),
        height: barHeight.toFixed(1),
        "data-date": day.date,
        "data-count": day.archives,
      },
      [svg("title", {}, [`${day.date}: ${plural(day.archives, "archive")}`])],
    );
    chart.append(bar);
  });
  const summary = h("p", { class: "note" }, [
    `${plural(total, "archive")} on ${plural(withData.length, "day")}; read ${plural(perDay.scannedEntries, "index entry", "index entries")} in ${plural(perDay.listCalls, "list call")}.`,
  ]);
  show("per-day", "ready", "", [chart, summary, ...notes]);
}

/** @param {any} page */
function renderBackups(page) {
  /** @type {any[]} */
  const backups = page.backups;
  if (backups.length === 0) {
    show("backups", "empty", "No backups yet: the cron starts one per BACKUP_INTERVAL_HOURS, or POST /backups.");
    return;
  }
  const head = h("tr", {}, ["Created", "Backup", "Kind", "Sessions", "Size", "Kept", "Why"].map((title) => h("th", { scope: "col" }, [title])));
  const rows = backups.map((backup) =>
    h("tr", { "data-backup-id": backup.backupId }, [
      h("td", {}, [formatTime(backup.createdAt)]),
      h("td", {}, [h("code", {}, [backup.backupId])]),
      h("td", { "data-field": "kind" }, [`${backup.kind}${backup.incremental ? " (incremental)" : ""}`]),
      h("td", { class: "number", "data-field": "sessionCount" }, [String(backup.sessionCount)]),
      h("td", { class: "number", "data-field": "storedSize", "data-value": backup.storedSize }, [formatBytes(backup.storedSize)]),
      h("td", { "data-field": "kept" }, [backup.kept ? "kept" : "deleted by the next sweep"]),
      h("td", { "data-field": "reasons" }, [backup.reasons.join(", ") || "—"]),
    ]),
  );
  const table = h("table", {}, [h("caption", { class: "note" }, [`Newest ${backups.length}${page.listComplete ? "" : " (more exist)"}`]), h("thead", {}, [head]), h("tbody", {}, rows)]);
  show("backups", "ready", "", [h("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Backups table" }, [table])]);
}

/** @param {any} runs */
function renderRuns(runs) {
  const card = (/** @type {string} */ job, /** @type {string} */ title, /** @type {Node[]} */ body) => h("div", { "data-run": job }, [h("h3", {}, [title]), ...body]);
  const never = (/** @type {string} */ what) => [h("p", { class: "note" }, [`No ${what} recorded yet.`])];

  const retention = runs.retention;
  const retentionBody = retention
    ? [
        figures([
          ["retention-at", "Ended", retention.at, formatTime(retention.at)],
          ["retention-complete", "Sweep", String(retention.outcome.complete), retention.outcome.complete ? "complete" : `cut short (${retention.outcome.stoppedBy})`],
          ...Object.entries(retention.outcome.deleted).map(
            ([reason, count]) => /** @type {[string, string, number]} */ ([`deleted-${reason}`, DELETION_LABELS[/** @type {keyof typeof DELETION_LABELS} */ (reason)] ?? reason, Number(count)]),
          ),
          ["retention-bytes", "Bytes freed", retention.outcome.bytesFreed, formatBytes(retention.outcome.bytesFreed)],
          ["retention-calls", "Storage calls", retention.outcome.storageCalls],
        ]),
      ]
    : never("retention run");
  if (runs.lastCompleteSweepAt !== null) retentionBody.push(h("p", { class: "note" }, [`Last complete sweep: ${formatTime(runs.lastCompleteSweepAt)}`]));

  const verification = runs.verification;
  const verificationBody = verification
    ? [
        figures([
          ["verification-at", "Ended", verification.at, formatTime(verification.at)],
          ["verification-sample", "Sample (slot)", verification.outcome.sample, `${verification.outcome.sample} (${verification.outcome.slot})`],
          ["verification-checked", "Objects checked", verification.outcome.objectsChecked],
          ["verification-found", "Problems found", verification.outcome.problemsFound],
          ["verification-repaired", "Repaired", verification.outcome.repaired],
          ["verification-complete", "Pass", String(verification.outcome.complete), verification.outcome.complete ? "complete" : `continues (${verification.outcome.stoppedBy})`],
        ]),
      ]
    : [h("p", { class: "note" }, ["No verification run recorded yet: the cron verifies when at least 12 storage calls are left after the sweep."])];

  const backup = runs.backup;
  const newest = runs.newestBackup;
  const backupBody = backup ? [figures([["backup-at", "Started", backup.at, formatTime(backup.at)], ["backup-instance", "Workflow instance", backup.outcome.instanceId]])] : never("backup started by the cron");
  backupBody.push(
    newest
      ? h("p", { class: "note" }, [`Newest backup: ${newest.backupId}, ${newest.kind}, ${newest.sessionCount} sessions, ${formatTime(newest.createdAt)}.`])
      : h("p", { class: "note" }, ["No backup committed yet."]),
  );
  show("runs", "ready", "", [h("div", { class: "runs" }, [card("retention", "Retention", retentionBody), card("verification", "Verification", verificationBody), card("backup", "Backup", backupBody)])]);
}

/** The panels, each with its request and how it is drawn. */
const PANELS = [
  { ids: ["health", "replica"], path: "/health", auth: false, okStatuses: [503], render: renderHealth },
  { ids: ["storage"], path: "/metrics", auth: true, okStatuses: [], render: renderStorage },
  { ids: ["per-day"], path: `/ops/archives-per-day?days=${WINDOW_DAYS}`, auth: true, okStatuses: [], render: renderPerDay },
  { ids: ["runs"], path: "/ops/runs", auth: true, okStatuses: [], render: renderRuns },
  { ids: ["backups"], path: `/ops/backups?limit=${BACKUPS_SHOWN}`, auth: true, okStatuses: [], render: renderBackups },
];

/** @param {string} text @param {boolean} [error] */
function setStatus(text, error = false) {
  const status = element("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

/** Loads every panel with the token in the field; says what went wrong once, at the top. */
async function refresh() {
  const input = /** @type {HTMLInputElement} */ (element("token"));
  const token = input.value.trim();
  if (token === "") {
    setStatus(STATUS_ADVICE[401], true);
    input.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const button = /** @type {HTMLButtonElement} */ (element("refresh"));
  button.disabled = true;
  setStatus("Loading…");
  /** @type {RequestError[]} */
  const failures = [];
  await Promise.all(
    PANELS.map(async ({ ids, path, auth, okStatuses, render }) => {
      for (const id of ids) show(id, "loading");
      try {
        render(await getJson(path, auth ? token : null, okStatuses));
      } catch (error) {
        const failure = error instanceof RequestError ? error : new RequestError(0, String(error));
        failures.push(failure);
        for (const id of ids) show(id, "error", failure.message);
      }
    }),
  );
  button.disabled = false;
  // The most telling failure first: a refused token explains every other panel's error.
  const worst = failures.find((failure) => failure.status === 401 || failure.status === 403) ?? failures[0];
  if (worst) setStatus(worst.message, true);
  else setStatus(`Updated ${formatTime(Date.now())}.`);
}

function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  const input = /** @type {HTMLInputElement} */ (element("token"));
  input.value = "";
  for (const { ids } of PANELS) for (const id of ids) show(id, "idle");
  setStatus("Token forgotten. Paste a service token, then Refresh.");
  input.focus();
}

element("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void refresh();
});
element("forget").addEventListener("click", forget);

const remembered = sessionStorage.getItem(TOKEN_KEY);
if (remembered) {
  /** @type {HTMLInputElement} */ (element("token")).value = remembered;
  void refresh();
}
