// `npm run bench`: every contender side by side on the same seeded inputs, in this one Node
// process (plus fresh child processes for cold start, peak memory and the backup steps' memory, and the native Rust
// contender). Prints Markdown tables of absolute figures, ratios and the issue's targets;
// `--write` also writes bench/RESULTS.md; `--smoke` runs one iteration of everything on small
// inputs and never fails on a target (CI checks that the harness works, not timings); `--ui`
// runs only the UIMessage rows of (a) and (c) and their targets (`node bench/run.mjs --ui`).
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, cpus } from "node:os";
import { serialize } from "node:v8";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

import { VirtualClock, backupOnly, freshBindings } from "./lib/bindings.mjs";
import { conversation, embedding, queryAndResult, rng, shortKey, uiMessages, withSession } from "./lib/data.mjs";
import { measure, median, stepRecorder } from "./lib/measure.mjs";
import * as library from "./contenders/library.mjs";
import * as legacy from "./contenders/legacy.mjs";
import * as bestPractice from "./contenders/best_practice.mjs";

const args = new Set(process.argv.slice(2));
const SMOKE = args.has("--smoke");
const WRITE = args.has("--write");
// `--ui`: only the UIMessage rows of the contenders that speak them, and their two targets
// (issue 17); a quick before/after check, not a substitute for the full run.
const UI_ONLY = args.has("--ui");
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const print = console.log.bind(console);
const progress = (text) => process.stderr.write(`bench: ${text}\n`);

// The library logs one JSON line per storage call to console.log; the lines are built (in
// Rust) as in production, and counted here instead of printed.
let logLines = 0;
console.log = () => {
  logLines++;
};

const DAY = 24 * 60 * 60 * 1000;
const START_MS = Date.UTC(2026, 10, 26, 12);
const clock = new VirtualClock(START_MS);
clock.install();

const CONTENDERS = [
  { id: "a", label: library.label, Class: library.LibraryContender },
  { id: "b", label: legacy.label, Class: legacy.LegacyContender },
  { id: "c", label: bestPractice.label, Class: bestPractice.BestPracticeContender },
];

const SIZES = SMOKE
  ? { conversations: [20, 200, 2000].map((n) => [String(n), Math.max(2, n / 100)]), list: 10, pageSize: 4, retention: { embeddings: 20, queries: 50, archives: 30 }, backup: 5, peakBytes: 1_000_000, coldStarts: 1, ui: [200, 2000].map((n) => [String(n), n / 100]), workflowBackup: 100 }
  : { conversations: [20, 200, 2000].map((n) => [String(n), n]), list: 500, pageSize: 100, retention: { embeddings: 2000, queries: 5000, archives: 3000 }, backup: 100, peakBytes: 50_000_000, coldStarts: 7, ui: [200, 2000].map((n) => [String(n), n]), workflowBackup: 10_000 };
// Archives a backup pack step reads: BackupWorkflow's default (DEFAULT_STEP_ARCHIVES in
// js/backup_workflow.ts, `BACKUP_STEP_ARCHIVES` unset).
const STEP_ARCHIVES = 40;
const REPS = SMOKE ? 1 : 5;
const OPS = SMOKE
  ? new Proxy({}, { get: () => 1 })
  : { "archive-20": 200, "archive-200": 50, "archive-2000": 8, "retrieve-20": 200, "retrieve-200": 50, "retrieve-2000": 8, "embed-put-768": 1000, "embed-get-768": 5000, "embed-miss-768": 5000, "embed-put-1536": 1000, "embed-get-1536": 5000, "embed-miss-1536": 5000, "query-hit": 2000, "query-miss": 2000, "hash-short": 20000, "list-500": 3, "ui-archive-200": 50, "ui-archive-2000": 8, "ui-retrieve-200": 50, "ui-retrieve-2000": 8 };

// ---------------------------------------------------------------- inputs (seeded)
progress(`generating inputs${SMOKE ? " (smoke sizes)" : ""}`);
const random = rng(20261126);
const conversations = Object.fromEntries(
  SIZES.conversations.map(([label, count]) => [label, conversation(random, `bench-${label}`, "user-bench", count, START_MS - DAY)]),
);
const pool = Array.from({ length: 40 }, (_, i) => conversation(random, `pool-${i}`, "user-pool", SMOKE ? 4 : 10 + Math.floor(random() * 50), START_MS - 2 * DAY));
const embeddingSets = Object.fromEntries(
  ["768", "1536"].map((dims) => [dims, { texts: Array.from({ length: SMOKE ? 2 : 200 }, (_, i) => `${shortKey(random, i)} passage ${i}`), vectors: Array.from({ length: SMOKE ? 2 : 200 }, () => embedding(random, Number(dims))) }]),
);
const queries = Array.from({ length: SMOKE ? 3 : 300 }, (_, i) => queryAndResult(random, i));
const missQueries = Array.from({ length: SMOKE ? 3 : 300 }, (_, i) => `${shortKey(random, i)} never asked ${i}`);
const shortKeys = Array.from({ length: 500 }, (_, i) => shortKey(random, i));
const uiConversations = Object.fromEntries(SIZES.ui.map(([label, count]) => [label, uiMessages(random, count, START_MS - DAY)]));
const uiBytes = Object.fromEntries(Object.entries(uiConversations).map(([label, messages]) => [label, Buffer.byteLength(JSON.stringify(messages))]));
const conversationBytes = Object.fromEntries(Object.entries(conversations).map(([label, c]) => [label, JSON.stringify(c.memory).length]));

// ---------------------------------------------------------------- JS workloads
const results = {}; // results[workload][contender id] = {cpuMs, wallMs, counters, note?}
const record = (workload, id, value) => ((results[workload] ??= {})[id] = value);

function setupWith(Class, bindings = freshBindings(clock, { checked: SMOKE }), policy) {
  return { bindings, contender: new Class(bindings, policy) };
}

/** AI SDK UIMessages (issue 17), for the contenders that speak them. */
async function runUiWorkloads({ id, Class }) {
  if (!Class.prototype.archiveUI) return;
  for (const [label] of SIZES.ui) {
    const messages = uiConversations[label];
    const sessionId = `ui-${label}`;
    record(`ui-archive-${label}`, id, await measure({
      reps: REPS, ops: OPS[`ui-archive-${label}`], warmup: !SMOKE,
      setup: () => setupWith(Class),
      op: async ({ contender }) => {
        clock.now += 1000;
        await contender.archiveUI(sessionId, messages, "user-ui");
      },
    }));
    record(`ui-retrieve-${label}`, id, await measure({
      reps: REPS, ops: OPS[`ui-retrieve-${label}`], warmup: !SMOKE,
      setup: async () => {
        const state = setupWith(Class);
        await state.contender.archiveUI(sessionId, messages, "user-ui");
        // Lossless, checked untimed: every part and metadata back as given.
        if (JSON.stringify(await state.contender.retrieveUI(sessionId)) !== JSON.stringify(messages)) throw new Error(`${id}: UIMessages ${label} came back changed`);
        return state;
      },
      op: async ({ contender }) => {
        const found = await contender.retrieveUI(sessionId);
        if (found?.length !== messages.length) throw new Error(`${id}: retrieveUI returned ${found?.length} messages`);
      },
    }));
  }
}

async function runJsWorkloads({ id, Class }) {
  for (const [label] of SIZES.conversations) {
    const { memory, session } = conversations[label];
    record(`archive-${label}`, id, await measure({
      reps: REPS, ops: OPS[`archive-${label}`], warmup: !SMOKE,
      setup: () => setupWith(Class),
      op: async ({ contender }) => {
        clock.now += 1000;
        await contender.archive(memory, session);
      },
    }));
    record(`retrieve-${label}`, id, await measure({
      reps: REPS, ops: OPS[`retrieve-${label}`], warmup: !SMOKE,
      setup: async () => {
        const state = setupWith(Class);
        await state.contender.archive(memory, session);
        return state;
      },
      op: async ({ contender }) => {
        const found = await contender.retrieve(session.id);
        if (found?.messages?.length !== memory.messages.length) throw new Error(`${id}: retrieve returned ${found?.messages?.length} messages`);
      },
    }));
  }

  await runUiWorkloads({ id, Class });

  const metadata = { model: "bge-base", source: "knowledge_base" };
  for (const dims of ["768", "1536"]) {
    const { texts, vectors } = embeddingSets[dims];
    const populatedEmbeddings = async () => {
      const state = setupWith(Class);
      for (let i = 0; i < texts.length; i++) await state.contender.cacheEmbedding(texts[i], vectors[i], metadata);
      return state;
    };
    record(`embed-put-${dims}`, id, await measure({
      reps: REPS, ops: OPS[`embed-put-${dims}`], warmup: !SMOKE,
      setup: () => setupWith(Class),
      op: ({ contender }, i) => contender.cacheEmbedding(texts[i % texts.length], vectors[i % texts.length], metadata),
    }));
    record(`embed-get-${dims}`, id, await measure({
      reps: REPS, ops: OPS[`embed-get-${dims}`], warmup: !SMOKE,
      setup: populatedEmbeddings,
      op: async ({ contender }, i) => {
        const found = await contender.getEmbedding(texts[i % texts.length], "bge-base");
        if (found?.length !== Number(dims) || found[7] !== vectors[i % texts.length][7]) throw new Error(`${id}: embedding ${i} came back wrong`);
      },
    }));
    // The same lookup of a text never cached: everything a hit costs except decoding.
    record(`embed-miss-${dims}`, id, await measure({
      reps: REPS, ops: OPS[`embed-miss-${dims}`], warmup: !SMOKE,
      setup: populatedEmbeddings,
      op: async ({ contender }, i) => {
        if ((await contender.getEmbedding(`${texts[i % texts.length]} (never cached)`, "bge-base")) !== null) throw new Error(`${id}: uncached embedding ${i} was found`);
      },
    }));
  }

  const populatedQueries = async () => {
    const state = setupWith(Class);
    for (const { query, result } of queries) await state.contender.cacheQuery(query, result);
    return state;
  };
  record("query-hit", id, await measure({
    reps: REPS, ops: OPS["query-hit"], warmup: !SMOKE, setup: populatedQueries,
    op: async ({ contender }, i) => {
      const found = await contender.getQuery(queries[i % queries.length].query);
      if (found?.answer !== queries[i % queries.length].result.answer) throw new Error(`${id}: query ${i} missed`);
    },
  }));
  record("query-miss", id, await measure({
    reps: REPS, ops: OPS["query-miss"], warmup: !SMOKE, setup: populatedQueries,
    op: async ({ contender }, i) => {
      if ((await contender.getQuery(missQueries[i % missQueries.length])) !== null) throw new Error(`${id}: miss query hit`);
    },
  }));

  record("hash-short", id, await measure({
    reps: REPS, ops: OPS["hash-short"], warmup: !SMOKE,
    setup: () => setupWith(Class),
    op: async ({ contender }, i) => {
      await contender.hash(shortKeys[i % shortKeys.length]);
    },
  }));

  // A user's archives, listed page by page.
  const listed = setupWith(Class);
  for (let i = 0; i < SIZES.list; i++) {
    clock.now += 1000;
    const { memory, session } = withSession(pool[i % pool.length], `list-${i}`, "user-list");
    await listed.contender.archive(memory, session);
  }
  record("list-500", id, await measure({
    reps: REPS, ops: OPS["list-500"], warmup: !SMOKE,
    setup: () => setupWith(Class, listed.bindings),
    op: async ({ contender }) => {
      const all = await contender.listAll("user-list", SIZES.pageSize);
      if (all.length !== SIZES.list) throw new Error(`${id}: listed ${all.length} of ${SIZES.list}`);
    },
  }));

  // Retention: 30 % of cache entries expired (30 s TTL, written 45 s ago: past their logical
  // expiry, before KV's 60 s floor removes them) and 30 % of archives past 90 days.
  const policy = { cacheTTL: 30_000 };
  const swept = setupWith(Class, undefined, policy);
  const { embeddings: nEmbeddings, queries: nQueries, archives: nArchives } = SIZES.retention;
  const expired = (i) => i % 10 < 3;
  for (const passExpired of [true, false]) {
    clock.now = START_MS - (passExpired ? 100 : 1) * DAY;
    for (let i = 0; i < nArchives; i++) {
      if (expired(i) !== passExpired) continue;
      clock.now += 1;
      const { memory, session } = withSession(pool[i % pool.length], `ret-${i}`, `user-${i % 50}`);
      await swept.contender.archive(memory, session);
    }
  }
  const vectors768 = embeddingSets["768"].vectors;
  for (const passExpired of [true, false]) {
    clock.now = START_MS - (passExpired ? 45_000 : 0);
    for (let i = 0; i < nEmbeddings; i++) if (expired(i) === passExpired) await swept.contender.cacheEmbedding(`ret-emb-${i}`, vectors768[i % vectors768.length]);
    for (let i = 0; i < nQueries; i++) if (expired(i) === passExpired) await swept.contender.cacheQuery(`${queries[i % queries.length].query} ret-${i}`, queries[i % queries.length].result);
  }
  clock.now = START_MS;
  record("retention-10k", id, await measure({
    reps: Math.min(REPS, 3), ops: 1, warmup: !SMOKE,
    setup: () => setupWith(Class, { CHAT_KV: swept.bindings.CHAT_KV.clone(), ARCHIVE_R2: swept.bindings.ARCHIVE_R2.clone() }, policy),
    op: ({ contender }) => contender.retention(),
  }));

  // Backup of 100 sessions, and their restore into stores that hold only the backup.
  const backedUp = setupWith(Class);
  const sessionIds = [];
  for (let i = 0; i < SIZES.backup; i++) {
    clock.now += 1;
    const { memory, session } = withSession(pool[i % pool.length], `bk-${i}`, "user-bk");
    await backedUp.contender.archive(memory, session);
    sessionIds.push(session.id);
  }
  let backupId;
  record("backup-100", id, await measure({
    reps: Math.min(REPS, 3), ops: 1, warmup: !SMOKE,
    setup: () => setupWith(Class, backedUp.bindings),
    op: async ({ contender }) => {
      clock.now += 1000;
      backupId = await contender.backup(sessionIds);
    },
  }));
  record("restore-100", id, await measure({
    reps: Math.min(REPS, 3), ops: 1, warmup: !SMOKE,
    setup: () => setupWith(Class, backupOnly(backedUp.bindings, backupId, clock, { checked: SMOKE })),
    op: async ({ contender }) => {
      const restored = await contender.restore(backupId);
      if (restored.length !== SIZES.backup) throw new Error(`${id}: restored ${restored.length} of ${SIZES.backup}`);
    },
  }));
}

if (UI_ONLY) {
  for (const contender of CONTENDERS) {
    progress(`running ${contender.label}: UIMessage rows`);
    await runUiWorkloads(contender);
  }
  const ms = (workload, id) => results[workload]?.[id]?.cpuMs;
  const stored = (workload, id) => (results[workload]?.[id]?.counters?.r2Bytes ?? NaN) / 1e3;
  print("| workload | (a) library | (c) best-practice TS | a / c | R2 bytes written (a, c) |\n|---|---|---|---|---|");
  for (const [label] of SIZES.ui) {
    for (const kind of ["archive", "retrieve"]) {
      const workload = `ui-${kind}-${label}`;
      const written = kind === "archive" ? `${stored(workload, "a").toFixed(1)} KB, ${stored(workload, "c").toFixed(1)} KB` : "";
      print(`| ${kind} ${label} UIMessages (${(uiBytes[label] / 1e6).toFixed(2)} MB JSON) | ${ms(workload, "a").toFixed(2)} ms | ${ms(workload, "c").toFixed(2)} ms | ${(ms(workload, "a") / ms(workload, "c")).toFixed(2)}× | ${written} |`);
    }
  }
  for (const [kind, limit] of [["archive", 0.8], ["retrieve", 1.0]]) {
    const ratios = SIZES.ui.map(([label]) => ms(`ui-${kind}-${label}`, "a") / ms(`ui-${kind}-${label}`, "c"));
    print(`UIMessage ${kind} CPU ≤ ${limit.toFixed(1)}× (c): ${ratios.map((r) => `${r.toFixed(2)}×`).join(", ")} — ${ratios.every((r) => r <= limit) ? "met" : "MISSED"}`);
  }
  process.exit(0);
}

for (const contender of CONTENDERS) {
  progress(`running ${contender.label}`);
  await runJsWorkloads(contender);
}

// ---------------------------------------------------------------- backups of the whole store (issue 14)
// (a) as BackupWorkflow and RestoreWorkflow drive it, a step at a time, each step timed as the
// invocation it is on Workflows; (c) naively, the whole backup and the whole restore each in one
// invocation. Each writes its own archives first (untimed); the stores are also written to disk
// so fresh processes can measure each step's memory.
const workDir = mkdtempSync(join(tmpdir(), "supportbot-bench-"));
const workflowSteps = {}; // workflowSteps[contender id] = {backup: steps, restore: steps}
const storesFiles = {};
for (const { id, Class } of CONTENDERS.filter(({ Class }) => Class.prototype.workflowBackup || Class.prototype.backupAll)) {
  progress(`backup and restore of ${SIZES.workflowBackup} sessions, ${id === "a" ? "as Workflow steps" : "naively in one invocation"}`);
  const { bindings, contender } = setupWith(Class);
  clock.now = START_MS;
  for (let i = 0; i < SIZES.workflowBackup; i++) {
    clock.now += 1;
    const { memory, session } = withSession(pool[i % pool.length], `wf-${i}`, `user-${i % 200}`);
    await contender.archive(memory, session);
  }
  clock.now += 60 * 60 * 1000;
  storesFiles[id] = join(workDir, `stores-${id}.bin`);
  writeFileSync(storesFiles[id], serialize({ now: clock.now, kv: [...bindings.CHAT_KV.entries], r2: [...bindings.ARCHIVE_R2.objects] }));
  const backup = stepRecorder(bindings);
  const backupId = id === "a"
    ? (await contender.workflowBackup(backup.step, STEP_ARCHIVES)).backupId
    : await backup.step("backup", () => contender.backupAll());
  clock.now += 1000;
  const restoredBindings = backupOnly(bindings, backupId, clock, { checked: SMOKE });
  const restorer = new Class(restoredBindings);
  const restore = stepRecorder(restoredBindings);
  const restored = id === "a" ? await restorer.workflowRestore(restore.step, backupId) : await restore.step("restore", () => restorer.restore(backupId));
  if (restored.length !== SIZES.workflowBackup) throw new Error(`${id}: restored ${restored.length} of ${SIZES.workflowBackup} sessions`);
  workflowSteps[id] = { backup: backup.steps, restore: restore.steps };
  for (const [kind, steps] of Object.entries(workflowSteps[id])) {
    const total = steps.reduce((sum, step) => sum + step.cpuMs, 0);
    record(`${kind}-10k`, id, { cpuMs: total, wallMs: steps.reduce((sum, step) => sum + step.wallMs, 0), counters: sumCounters(steps.map((step) => step.calls)) });
  }
}
const workflowMemory = {};
for (const [id, name] of [["a", "library"], ["c", "best_practice"]]) {
  progress(`peak memory of ${name}'s backup and restore steps (fresh process)`);
  workflowMemory[id] = JSON.parse(
    execFileSync(process.execPath, ["--expose-gc", "--max-old-space-size=8192", join(ROOT, "bench/child/backup_memory.mjs"), name, storesFiles[id], String(STEP_ARCHIVES)], { encoding: "utf8", maxBuffer: 1 << 20 }),
  );
  if (workflowMemory[id].restored !== SIZES.workflowBackup) throw new Error(`${name}: restored ${workflowMemory[id].restored} sessions in the memory run`);
}

/** The storage calls and bytes of several steps, added up. */
function sumCounters(list) {
  const add = (a, b) => Object.fromEntries(Object.keys(b).map((kind) => [kind, (a?.[kind] ?? 0) + b[kind]]));
  return list.reduce((sum, c) => ({ kv: add(sum.kv, c.kv), r2: add(sum.r2, c.r2), kvBytes: sum.kvBytes + c.kvBytes, r2Bytes: sum.r2Bytes + c.r2Bytes }), { kv: undefined, r2: undefined, kvBytes: 0, r2Bytes: 0 });
}

// ---------------------------------------------------------------- (d) native Rust
const nativeInput = join(workDir, "input.json");
writeFileSync(nativeInput, JSON.stringify({
  startMs: START_MS,
  conversations,
  embeddings: embeddingSets,
  queries,
  missQueries,
  shortKeys,
  pool,
  plan: { list: { userId: "user-list", count: SIZES.list, pageSize: SIZES.pageSize }, retention: SIZES.retention, backup: { sessions: SIZES.backup } },
}));
const nativeArgs = JSON.stringify({ input: nativeInput, reps: REPS, ops: SMOKE ? {} : OPS });
const profile = SMOKE ? [] : ["--release"];
progress(`building and running (d) native Rust (cargo ${profile.join(" ") || "dev profile"})`);
const native = spawnSync("cargo", ["run", ...profile, "--quiet", "--features", "memory", "--example", "bench_native", "--", nativeArgs], { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "inherit"] });
if (native.status !== 0) throw new Error(`bench_native failed with status ${native.status}`);
const nativeReport = JSON.parse(native.stdout);
for (const [workload, value] of Object.entries(nativeReport.workloads)) {
  record(workload, "d", { cpuMs: value.msPerOp, wallMs: value.msPerOp, counters: { kv: value.calls.kv, r2: value.calls.r2 } });
}
rmSync(workDir, { recursive: true, force: true });

// ---------------------------------------------------------------- (d) compiled to wasm
// The same service over the same in-memory stores as (d), built to wasm (src/wasm/bench.rs):
// wasm against native without the JavaScript boundary, which (a) adds on top.
progress(`building and running (d) compiled to wasm`);
execFileSync("bash", [join(ROOT, "scripts/build-bench-core.sh"), ...(SMOKE ? ["--dev"] : [])], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
const benchCore = await import(join(ROOT, "target/bench-core-pkg/bench_core.js"));
benchCore.initSync({ module: readFileSync(join(ROOT, "target/bench-core-pkg/bench_core_bg.wasm")) });
for (const [label] of SIZES.conversations) {
  const { memory, session } = conversations[label];
  const core = () => ({ bench: new benchCore.CorePipelineBench(START_MS, JSON.stringify(memory), JSON.stringify(session), session.id) });
  record(`archive-${label}`, "w", await measure({
    reps: REPS, ops: 1, warmup: !SMOKE, setup: core,
    op: ({ bench }) => bench.archive(OPS[`archive-${label}`]),
  }));
  record(`retrieve-${label}`, "w", await measure({
    reps: REPS, ops: 1, warmup: !SMOKE,
    setup: () => {
      const state = core();
      state.bench.archive(1);
      return state;
    },
    op: ({ bench }) => bench.retrieve(OPS[`retrieve-${label}`]),
  }));
  // Per operation, and on (d)'s clock: bench_native times wall clock, and a loop with no I/O
  // on one thread spends its wall time on CPU (process CPU would add V8's helper threads).
  for (const kind of ["archive", "retrieve"]) {
    const timed = results[`${kind}-${label}`].w;
    timed.wallMs /= OPS[`${kind}-${label}`];
    timed.cpuMs = timed.wallMs;
  }
}

// ---------------------------------------------------------------- wasm size, cold start, memory
const wasmBytes = readFileSync(join(ROOT, "dist/wasm/supportbot_persistence_bg.wasm"));
const wasmSize = { raw: wasmBytes.length, gzip: gzipSync(wasmBytes, { level: 9 }).length };
progress(`cold start x${SIZES.coldStarts} (fresh processes)`);
const coldStarts = Array.from({ length: SIZES.coldStarts }, () =>
  JSON.parse(execFileSync(process.execPath, [join(ROOT, "bench/child/cold_start.mjs")], { encoding: "utf8" })),
);
const coldStart = {
  compileMs: median(coldStarts.map((run) => run.compileMs)),
  instantiateMs: median(coldStarts.map((run) => run.instantiateMs)),
  totalMs: median(coldStarts.map((run) => run.compileMs + run.instantiateMs)),
  firstCallMs: median(coldStarts.map((run) => run.firstCallMs)),
};
const peakMemory = {};
for (const [id, name] of [["a", "library"], ["b", "legacy"], ["c", "best_practice"]]) {
  progress(`peak memory of ${name} archiving ${(SIZES.peakBytes / 1e6).toFixed(0)} MB (fresh process)`);
  peakMemory[id] = JSON.parse(
    execFileSync(process.execPath, ["--expose-gc", join(ROOT, "bench/child/peak_memory.mjs"), name, String(SIZES.peakBytes)], { encoding: "utf8", maxBuffer: 1 << 20 }),
  );
}

// ---------------------------------------------------------------- report
const fmtMs = (ms) => (ms === undefined || Number.isNaN(ms) ? "—" : ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(ms >= 0.01 ? 0 : 2)} µs`);
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "—");
// For verdicts decided near their line, where two decimals would round onto it.
const fmtRatioFine = (x) => (Number.isFinite(x) ? `${x.toFixed(3)}×` : "—");
const fmtBytes = (n) => (n === undefined ? "—" : n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e4 ? `${(n / 1e3).toFixed(1)} KB` : `${Math.round(n)} B`);
function fmtCalls(counters) {
  if (!counters) return "—";
  const parts = [];
  for (const binding of ["kv", "r2"]) {
    for (const [kind, n] of Object.entries(counters[binding] ?? {})) {
      if (n > 0) parts.push(`${binding.toUpperCase()} ${kind} ${Number.isInteger(n) ? n : n.toFixed(2)}`);
    }
  }
  return parts.length ? parts.join(", ") : "none";
}
const cpu = (workload, id) => results[workload]?.[id]?.cpuMs;
const counters = (workload, id) => results[workload]?.[id]?.counters;

const WORKLOADS = [
  ...SIZES.conversations.flatMap(([label]) => [[`archive-${label}`, `archive ${label} msgs (${fmtBytes(conversationBytes[label])} JSON)`], [`retrieve-${label}`, `retrieve ${label} msgs`]]),
  ["embed-put-768", "embedding put, 768 dims"], ["embed-get-768", "embedding get, 768 dims"], ["embed-miss-768", "embedding get of an uncached text, 768 dims"],
  ["embed-put-1536", "embedding put, 1536 dims"], ["embed-get-1536", "embedding get, 1536 dims"], ["embed-miss-1536", "embedding get of an uncached text, 1536 dims"],
  ["query-hit", "query cache hit"], ["query-miss", "query cache miss"],
  ["hash-short", "short cache-key hash"],
  ["list-500", `list a user's ${SIZES.list} archives (pages of ${SIZES.pageSize})`],
  ["retention-10k", `retention sweep, ${SIZES.retention.embeddings + SIZES.retention.queries + SIZES.retention.archives} entries, 30 % expired`],
  ["backup-100", `backup of ${SIZES.backup} sessions`], ["restore-100", `restore of ${SIZES.backup} sessions`],
  ["backup-10k", `backup of ${SIZES.workflowBackup} sessions: (a) all Workflow steps, (c) one invocation`], ["restore-10k", `restore of ${SIZES.workflowBackup} sessions: (a) all Workflow steps, (c) one invocation`],
  ...SIZES.ui.flatMap(([label]) => [[`ui-archive-${label}`, `archive ${label} UIMessages (${fmtBytes(uiBytes[label])} JSON)`], [`ui-retrieve-${label}`, `retrieve ${label} UIMessages`]]),
];

const lines = [];
const out = (line = "") => lines.push(line);
out(`# Benchmark results${SMOKE ? " (smoke run: tiny inputs, one iteration — not timings)" : ""}`);
out();
out(`Node ${process.version} (V8 ${process.versions.v8}), ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}; native Rust: ${nativeReport.profile} build. ` +
  `CPU time per operation (process.cpuUsage, all threads; for (d) and (d) built to wasm, wall time of a single-threaded loop without I/O), median of ${REPS} repetitions after a warm-up; storage calls and bytes written per operation, against in-memory KV/R2 shaped like the Workers bindings. Inputs: seeded chat text (Zipf-distributed vocabulary of a few hundred words, names, numbers, ids, URLs, typos). ` +
  `The library's ${logLines} log lines (one per storage call) were built but not printed.`);
out();
out("## CPU time per operation");
out();
out("| workload | (a) library (wasm) | (b) legacy TS | (c) best-practice TS | (d) native Rust | (d) built to wasm | a / b | a / c | API vs native (d / a) | wasm vs native (d / d in wasm) |");
out("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const [workload, title] of WORKLOADS) {
  const [a, b, c, d, w] = ["a", "b", "c", "d", "w"].map((id) => cpu(workload, id));
  out(`| ${title} | ${fmtMs(a)} | ${fmtMs(b)} | ${fmtMs(c)} | ${fmtMs(d)} | ${fmtMs(w)} | ${fmtRatio(a / b)} | ${fmtRatio(a / c)} | ${fmtRatio(d / a)} | ${fmtRatio(d / w)} |`);
}
out();
out("## Storage calls and bytes written per operation");
out();
out("| workload | (a) calls | (a) bytes | (b) calls | (b) bytes | (c) calls | (c) bytes | (d) calls |");
out("|---|---|---:|---|---:|---|---:|---|");
for (const [workload, title] of WORKLOADS) {
  const bytes = (id) => {
    const c = counters(workload, id);
    return c ? fmtBytes(c.kvBytes + c.r2Bytes) : "—";
  };
  out(`| ${title} | ${fmtCalls(counters(workload, "a"))} | ${bytes("a")} | ${fmtCalls(counters(workload, "b"))} | ${bytes("b")} | ${fmtCalls(counters(workload, "c"))} | ${bytes("c")} | ${fmtCalls(counters(workload, "d"))} |`);
}
out();
out("## Size, cold start, memory");
out();
out("| measure | value |");
out("|---|---:|");
out(`| .wasm raw | ${fmtBytes(wasmSize.raw)} (${wasmSize.raw} B) |`);
out(`| .wasm gzip -9 | ${fmtBytes(wasmSize.gzip)} (${wasmSize.gzip} B) |`);
out(`| cold start: WebAssembly.compile (median of ${SIZES.coldStarts} fresh processes) | ${fmtMs(coldStart.compileMs)} |`);
out(`| cold start: instantiate (initSync) | ${fmtMs(coldStart.instantiateMs)} |`);
out(`| first call after instantiate (hashText) | ${fmtMs(coldStart.firstCallMs)} |`);
{
  // What one cron run can sweep on CPU alone (the free plan's 10 ms a request); the free plan's
  // 50 subrequests bound it far sooner (a KV delete per expired key): see the README's cron notes.
  const entries = SIZES.retention.embeddings + SIZES.retention.queries + SIZES.retention.archives;
  const perMs = (id) => entries / cpu("retention-10k", id);
  const throughput = ["a", "b", "c", "d"].map((id) => `(${id}) ${perMs(id).toFixed(0)}/ms = ${(perMs(id) * 10).toFixed(0)} per 10 ms`);
  out(`| retention sweep throughput: entries per CPU-ms, and per 10 ms of CPU (the free plan's limit a request) | ${throughput.join("; ")} |`);
}
for (const [id, label] of [["a", "(a) library"], ["b", "(b) legacy TS"], ["c", "(c) best-practice TS"]]) {
  const m = peakMemory[id];
  out(`| ${label}: peak RSS growth archiving ${fmtBytes(m.inputBytes)} (${m.messages} msgs) | ${fmtBytes(m.peakGrowth)} = ${(m.peakGrowth / m.inputBytes).toFixed(2)}× input (archive took ${fmtMs(m.archiveMs)}, stored ${fmtBytes(m.storedBytes)}) |`);
}
out();

// Backups of the whole store, a step at a time: what one step costs against the Workers plans.
// Limits (PLATFORM.md): a step or invocation gets 10 ms of CPU and 50 subrequests on the free
// plan, 30 s (by default; up to 5 min) and 10 000 subrequests on the paid plan, 128 MB of memory
// on both; a step's result is at most 1 MiB.
const PLANS = { free: { cpuMs: 10, calls: 50, bytes: 128 * 2 ** 20 }, paid: { cpuMs: 30_000, calls: 10_000, bytes: 128 * 2 ** 20 } };
const STEP_RESULT_LIMIT = 2 ** 20;
function stepSummary(steps, memory) {
  const work = steps.filter((step) => step.name !== "plan" && step.name !== "commit");
  const pick = (key) => work.map((step) => step[key]);
  const totalCpu = steps.reduce((sum, step) => sum + step.cpuMs, 0);
  const worst = { cpuMs: Math.max(...steps.map((step) => step.cpuMs)), calls: Math.max(...steps.map((step) => step.callCount)), bytes: memory.growth, resultBytes: Math.max(...steps.map((step) => step.resultBytes)) };
  const within = (plan) => {
    const over = [];
    if (worst.cpuMs > plan.cpuMs) over.push(`CPU ${fmtMs(worst.cpuMs)} > ${fmtMs(plan.cpuMs)}`);
    if (worst.calls > plan.calls) over.push(`${worst.calls} subrequests > ${plan.calls}`);
    if (worst.bytes > plan.bytes) over.push(`memory ${fmtBytes(worst.bytes)} > ${plan.bytes / 2 ** 20} MiB`);
    if (worst.resultBytes > STEP_RESULT_LIMIT) over.push(`step result ${fmtBytes(worst.resultBytes)} > 1 MiB`);
    return over.length === 0 ? "within" : `**over**: ${over.join(", ")}`;
  };
  return {
    steps: steps.length,
    work: work.length,
    totalCpu,
    cpuPerSession: totalCpu / SIZES.workflowBackup,
    packsPerSecond: work.length / (totalCpu / 1000),
    stepCpu: `${fmtMs(median(pick("cpuMs")))} / ${fmtMs(Math.max(...pick("cpuMs")))}`,
    stepCalls: `${median(pick("callCount"))} / ${Math.max(...pick("callCount"))}`,
    edgeSteps: steps.filter((step) => step.name === "plan" || step.name === "commit").map((step) => `${step.name} ${fmtMs(step.cpuMs)}, ${step.callCount} calls`).join("; ") || "—",
    memory: `${fmtBytes(memory.growth)} (${memory.name})`,
    resultBytes: fmtBytes(worst.resultBytes),
    free: within(PLANS.free),
    paid: within(PLANS.paid),
  };
}
const columns = [
  ["(a) backup, Workflow steps", stepSummary(workflowSteps.a.backup, workflowMemory.a.backupPeak)],
  ["(a) restore, Workflow steps", stepSummary(workflowSteps.a.restore, workflowMemory.a.restorePeak)],
  ["(c) naive backup, one invocation", stepSummary(workflowSteps.c.backup, workflowMemory.c.backupPeak)],
  ["(c) naive restore, one invocation", stepSummary(workflowSteps.c.restore, workflowMemory.c.restorePeak)],
];
out(`## Backup and restore of ${SIZES.workflowBackup} archived sessions, a step at a time`);
out();
out(`(a) runs planBackup, backupPack (${STEP_ARCHIVES} archives a step, BackupWorkflow's default) and commitBackup, then planRestore and restorePack, as BackupWorkflow and RestoreWorkflow do; (c) reads every archive, builds one bundle, gzips and puts it, and restores it, each in one invocation. A "pack step" of (c) is its whole invocation. ` +
  `Peak memory is the largest peak RSS growth of a step in a fresh process (of the plan, the commit, the first three pack steps and every 50th; (a)'s wasm memory ends at ${fmtBytes(workflowMemory.a.wasmMemory)}). Limits: free plan 10 ms CPU, 50 subrequests, 128 MB a step; paid 30 s CPU (default), 10 000 subrequests, 128 MB; a step's result ≤ 1 MiB.`);
out();
out(`| measure | ${columns.map(([title]) => title).join(" | ")} |`);
out(`|---|${columns.map(() => "---").join("|")}|`);
const row = (title, format) => out(`| ${title} | ${columns.map(([, summary]) => format(summary)).join(" | ")} |`);
row("steps (pack steps)", (x) => `${x.steps} (${x.work})`);
row("CPU in all", (x) => fmtMs(x.totalCpu));
row("CPU per session", (x) => fmtMs(x.cpuPerSession));
row("packs per CPU-second", (x) => x.packsPerSecond.toFixed(1));
row("pack step CPU: median / max", (x) => x.stepCpu);
row("pack step storage calls: median / max", (x) => x.stepCalls);
row("plan and commit steps", (x) => x.edgeSteps);
row("peak memory growth of a step (largest)", (x) => x.memory);
row("largest step result (JSON)", (x) => x.resultBytes);
row("every step within the free plan", (x) => x.free);
row("every step within the paid plan", (x) => x.paid);
out();

// ---------------------------------------------------------------- targets
const targets = [];
const target = (name, measured, met) => targets.push({ name, measured, met });
const sizes = SIZES.conversations.map(([label]) => label);
const archiveRatios = sizes.map((s) => cpu(`archive-${s}`, "a") / cpu(`archive-${s}`, "c"));
target("archive pipeline CPU ≤ 0.8× (c)", sizes.map((s, i) => `${s} msgs ${fmtRatio(archiveRatios[i])}`).join(", "), archiveRatios.every((r) => r <= 0.8));
const r2Ratios = sizes.map((s) => counters(`archive-${s}`, "a").r2Bytes / counters(`archive-${s}`, "c").r2Bytes);
const allBytesRatios = sizes.map((s) => {
  const [a, c] = [counters(`archive-${s}`, "a"), counters(`archive-${s}`, "c")];
  return (a.r2Bytes + a.kvBytes) / (c.r2Bytes + c.kvBytes);
});
target("archive stored bytes ≤ 1.02× (c) (R2 object + custom metadata)", sizes.map((s, i) => `${s} msgs ${fmtRatioFine(r2Ratios[i])}`).join(", ") + ` (with KV entries: ${allBytesRatios.map(fmtRatio).join(", ")})`, r2Ratios.every((r) => r <= 1.02));
const retrieveRatios = sizes.map((s) => cpu(`retrieve-${s}`, "a") / cpu(`retrieve-${s}`, "c"));
target("retrieve CPU ≤ 1.0× (c)", sizes.map((s, i) => `${s} msgs ${fmtRatio(retrieveRatios[i])}`).join(", "), retrieveRatios.every((r) => r <= 1.0));
const hashSpeedup = cpu("hash-short", "c") / cpu("hash-short", "a");
target("short cache-key hash ≥ 5× faster than crypto.subtle", `${fmtRatio(hashSpeedup)} (${fmtMs(cpu("hash-short", "a"))} vs ${fmtMs(cpu("hash-short", "c"))})`, hashSpeedup >= 5);
const embedBytes = ["768", "1536"].map((d) => counters(`embed-put-${d}`, "a").kvBytes / counters(`embed-put-${d}`, "b").kvBytes);
target("embedding bytes stored ≤ 0.35× JSON (b)", `768: ${fmtRatio(embedBytes[0])}, 1536: ${fmtRatio(embedBytes[1])}`, embedBytes.every((r) => r <= 0.35));
// Decoding is what a hit costs beyond a miss of the same lookup (key hash, KV call, promise
// plumbing): the binary entry's decode against the legacy entry's JSON.parse.
const decodeCost = (dims, id) => cpu(`embed-get-${dims}`, id) - cpu(`embed-miss-${dims}`, id);
const embedDecode = ["768", "1536"].map((d) => decodeCost(d, "b") / decodeCost(d, "a"));
const embedGet = ["768", "1536"].map((d) => cpu(`embed-get-${d}`, "b") / cpu(`embed-get-${d}`, "a"));
target(
  "embedding decode ≥ 5× faster than JSON.parse (b) (CPU of a hit minus a miss of the same lookup)",
  ["768", "1536"].map((d, i) => `${d}: ${fmtRatio(embedDecode[i])} (${fmtMs(decodeCost(d, "a"))} vs ${fmtMs(decodeCost(d, "b"))})`).join(", "),
  embedDecode.every((r) => r >= 5),
);
target(
  "… and the whole get (hit) ≥ 5× faster than (b)'s, key hashing and call overhead included",
  ["768", "1536"].map((d, i) => `${d}: ${fmtRatio(embedGet[i])}`).join(", "),
  embedGet.every((r) => r >= 5),
);
const pages = Math.ceil(SIZES.list / SIZES.pageSize);
const listCalls = (id) => Object.values(counters("list-500", id).kv).reduce((sum, n) => sum + n, 0) + Object.values(counters("list-500", id).r2).reduce((sum, n) => sum + n, 0);
target(`listing ${SIZES.list} archives: ≤ 1 storage call per page (${pages} pages)`, `(a) ${listCalls("a")} calls; (b) ${listCalls("b")} calls (1 + N); (c) ${listCalls("c")}`, listCalls("a") <= pages);
const sweep = counters("retention-10k", "a");
target(
  "retention sweep: no get per key, R2 deletes batched (≤ 1000 a call)",
  `(a) KV get ${sweep.kv.get}, R2 get ${sweep.r2.get}, R2 head ${sweep.r2.head}; R2 ${sweep.r2DeletedKeys} keys in ${sweep.r2.delete} delete calls (largest ${sweep.r2LargestDeleteBatch}); (b) KV get ${counters("retention-10k", "b").kv.get}, R2 delete calls ${counters("retention-10k", "b").r2.delete}`,
  sweep.kv.get <= 1 && sweep.r2.get === 0 && sweep.r2.head === 0 && sweep.r2LargestDeleteBatch <= 1000 && sweep.r2.delete <= Math.ceil(sweep.r2DeletedKeys / 1000) + 2,
);
const pipeline = (id) => cpu("archive-200", id) + cpu("retrieve-200", id);
const coreSpeed = pipeline("d") / pipeline("w");
target(
  "wasm ≥ 0.6× native speed on the core pipeline (archive + retrieve, 200 msgs): (d)'s service built to wasm",
  `${fmtRatioFine(coreSpeed)} (${fmtMs(pipeline("w"))} vs ${fmtMs(pipeline("d"))} native)`,
  coreSpeed >= 0.6,
);
const apiSpeed = pipeline("d") / pipeline("a");
target(
  "… and through the public API, (a), JavaScript boundary included",
  `${fmtRatioFine(apiSpeed)} (${fmtMs(pipeline("a"))} vs ${fmtMs(pipeline("d"))} native)`,
  apiSpeed >= 0.6,
);
target(".wasm ≤ 250 KB gzipped", `${fmtBytes(wasmSize.gzip)} (${wasmSize.gzip} B; raw ${wasmSize.raw} B)`, wasmSize.gzip <= 250_000);
target("cold start (compile + instantiate) ≤ 15 ms", fmtMs(coldStart.totalMs), coldStart.totalMs <= 15);
const peakRatio = peakMemory.a.peakGrowth / peakMemory.a.inputBytes;
target(`archiving ${fmtBytes(peakMemory.a.inputBytes)}: peak RSS growth ≤ 3× input`, `${fmtRatio(peakRatio)} (${fmtBytes(peakMemory.a.peakGrowth)})`, peakRatio <= 3);

const uiSizes = SIZES.ui.map(([label]) => label);
const uiArchiveRatios = uiSizes.map((s) => cpu(`ui-archive-${s}`, "a") / cpu(`ui-archive-${s}`, "c"));
target("UIMessage archive CPU ≤ 0.8× (c)", uiSizes.map((s, i) => `${s} msgs ${fmtRatio(uiArchiveRatios[i])}`).join(", "), uiArchiveRatios.every((r) => r <= 0.8));
const uiRetrieveRatios = uiSizes.map((s) => cpu(`ui-retrieve-${s}`, "a") / cpu(`ui-retrieve-${s}`, "c"));
target("UIMessage retrieve CPU ≤ 1.0× (c)", uiSizes.map((s, i) => `${s} msgs ${fmtRatio(uiRetrieveRatios[i])}`).join(", "), uiRetrieveRatios.every((r) => r <= 1.0));

out("## Targets");
out();
out("| target | measured | verdict |");
out("|---|---|---|");
for (const { name, measured, met } of targets) out(`| ${name} | ${measured} | ${met ? "met" : "**MISSED**"} |`);
out();
const missed = targets.filter((t) => !t.met).length;
out(`${targets.length - missed} of ${targets.length} targets met${missed ? `, ${missed} missed` : ""}.`);

const report = lines.join("\n");
print(report);
if (WRITE && !SMOKE) {
  const notesPath = join(ROOT, "bench/NOTES.md");
  let notes = "";
  try {
    notes = readFileSync(notesPath, "utf8");
  } catch {}
  writeFileSync(join(ROOT, "bench/RESULTS.md"), `${report}\n${notes ? `\n${notes}` : ""}`);
  progress("wrote bench/RESULTS.md");
} else if (WRITE) {
  progress("--write ignored in a smoke run");
}
