// `node --expose-gc bench/export.mjs [--smoke]` (after `npm run build`): what exports and imports
// cost, contender (a), the library through its public API over the fake bindings (bench/NOTES.md,
// "Export and import"). For a user with ARCHIVES archives of ~40 messages, plaintext and
// encrypted: exportUserData (decrypts, verifies each archive), exportStore (archives as stored)
// and importStore of that stream into empty bindings, as throughput of NDJSON bytes per second
// of process CPU (medians over rounds) with the storage calls per archive; then the memory of a
// person's export of 100, 1000 and 3000 archives: wasm linear memory (which only grows, so it is
// the peak) and the peak RSS growth, each export in a fresh process.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import { VirtualClock, freshBindings, resetCounters, snapshotCounters } from "./lib/bindings.mjs";
import { conversation, rng, withSession } from "./lib/data.mjs";
import { median } from "./lib/measure.mjs";
import { rssSampler } from "./lib/rss.mjs";
import { DataPersistenceService } from "../dist/node.js";

const SMOKE = process.argv.includes("--smoke");
const CHILD = process.argv.find((arg) => arg.startsWith("--memory-child="))?.slice("--memory-child=".length);
const progress = (text) => process.stderr.write(`bench: ${text}\n`);
console.log = () => {}; // the library's log lines, built as in production, not printed
const print = process.stdout.write.bind(process.stdout);

const DAY = 24 * 60 * 60 * 1000;
const START_MS = Date.UTC(2026, 10, 26, 12);
const ARCHIVES = SMOKE ? 12 : 1000;
/** Person's exports measured in fresh processes: below one index page, one page, three pages. */
const MEMORY_COUNTS = SMOKE ? [4, 12] : [100, 1000, 3000];
const ROUNDS = SMOKE ? 1 : 5;
const KEK = { id: "k1", key: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1)).toString("base64") };
const VARIANTS = { plain: {}, encrypted: { encryptionKeys: [KEK] } };

/** Bindings holding `count` archives of one user, archived through `variant`'s service. */
async function storeOf(variant, count, clock) {
  const bindings = freshBindings(clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  const random = rng(20261206);
  const pool = Array.from({ length: 20 }, (_, i) => conversation(random, `pool-${i}`, "user-export", SMOKE ? 6 : 40, START_MS - DAY));
  for (let i = 0; i < count; i++) {
    clock.now += 1000;
    const { memory, session } = withSession(pool[i % pool.length], `exp-${i}`, "user-export");
    await service.archiveConversation(memory, session);
  }
  return bindings;
}

/** Reads a stream whole, keeping only its byte count (and its bytes when `keep`). */
async function drain(stream, keep) {
  const reader = stream.getReader();
  const chunks = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.length;
    if (keep) chunks.push(value);
  }
  return { bytes, data: keep ? Buffer.concat(chunks) : undefined };
}

/** Process CPU (ms) and wall time of `fn`, with its result. */
async function timed(fn) {
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();
  const result = await fn();
  const wallMs = performance.now() - wallStart;
  const used = process.cpuUsage(cpuStart);
  return { result, cpuMs: (used.user + used.system) / 1000, wallMs };
}

const perArchive = (counters, n) =>
  [...Object.entries(counters.kv).map(([k, v]) => [`KV ${k}`, v]), ...Object.entries(counters.r2).map(([k, v]) => [`R2 ${k}`, v])]
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${+(v / n).toFixed(3)} ${k}`)
    .join(", ");
const mbPerS = (bytes, ms) => `${(bytes / 2 ** 20 / (ms / 1000)).toFixed(1)} MB/s`;
const fmtMs = (ms) => (ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);
const fmtBytes = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** One export in this process (a child): its wasm memory and peak RSS growth. */
async function memoryChild([variant, count]) {
  const clock = new VirtualClock(START_MS);
  clock.install();
  const bindings = await storeOf(variant, Number(count), clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  const wasm = (await import("../dist/wasm/supportbot_persistence.js")).initSync({ module: new Uint8Array(0) });
  const wasmBefore = wasm.memory.buffer.byteLength;
  const sampler = await rssSampler();
  const { result, growth } = await sampler.measure(() => drain(service.exportUserData("user-export"), false));
  await sampler.stop();
  process.stdout.write(JSON.stringify({ bytes: result.bytes, wasmBefore, wasmAfter: wasm.memory.buffer.byteLength, rssGrowth: growth }));
}

if (CHILD) {
  await memoryChild(CHILD.split(","));
  process.exit(0);
}

const clock = new VirtualClock(START_MS);
clock.install();
const lines = [
  `| ${ARCHIVES} archives of one user (a) | NDJSON | plaintext: CPU, throughput | encrypted: CPU, throughput | storage calls per archive (encrypted) |`,
  "|---|---:|---:|---:|---|",
];
const rows = { exportUserData: {}, exportStore: {}, importStore: {} };
for (const variant of Object.keys(VARIANTS)) {
  progress(`${variant}: archiving ${ARCHIVES}`);
  const bindings = await storeOf(variant, ARCHIVES, clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  const runs = { exportUserData: [], exportStore: [], importStore: [] };
  let stream;
  for (let round = 0; round < ROUNDS + (SMOKE ? 0 : 1); round++) {
    const warm = !SMOKE && round === 0;
    resetCounters(bindings);
    const user = await timed(() => drain(service.exportUserData("user-export"), false));
    const userCalls = snapshotCounters(bindings);
    resetCounters(bindings);
    const store = await timed(() => drain(service.exportStore(), true));
    const storeCalls = snapshotCounters(bindings);
    stream = store.result.data;
    const target = freshBindings(clock);
    const importer = new DataPersistenceService(target, {}, VARIANTS[variant]);
    const imported = await timed(() => importer.importStore(new Blob([stream]).stream()));
    if (!imported.result.complete || imported.result.archivesWritten !== ARCHIVES) throw new Error(`import: ${JSON.stringify(imported.result)}`);
    if (warm) continue;
    runs.exportUserData.push({ cpuMs: user.cpuMs, bytes: user.result.bytes, calls: userCalls });
    runs.exportStore.push({ cpuMs: store.cpuMs, bytes: store.result.bytes, calls: storeCalls });
    runs.importStore.push({ cpuMs: imported.cpuMs, bytes: stream.length, calls: snapshotCounters(target) });
  }
  for (const [name, measured] of Object.entries(runs)) {
    const cpuMs = median(measured.map((run) => run.cpuMs));
    rows[name][variant] = { cpuMs, bytes: measured[0].bytes, calls: measured[0].calls };
  }
}
for (const [name, byVariant] of Object.entries(rows)) {
  const cell = ({ cpuMs, bytes }) => `${fmtMs(cpuMs)}, ${mbPerS(bytes, cpuMs)}`;
  const { plain, encrypted } = byVariant;
  lines.push(`| ${name} | ${fmtBytes(plain.bytes)} / ${fmtBytes(encrypted.bytes)} | ${cell(plain)} | ${cell(encrypted)} | ${perArchive(encrypted.calls, ARCHIVES)} |`);
}

progress("memory (fresh processes)");
const script = fileURLToPath(import.meta.url);
const child = (variant, count) => JSON.parse(execFileSync(process.execPath, ["--expose-gc", script, `--memory-child=${variant},${count}`], { encoding: "utf8", maxBuffer: 1 << 20 }));
lines.push("");
lines.push("| exportUserData, fresh process (a) | NDJSON | wasm memory before → after | peak RSS growth |");
lines.push("|---|---:|---:|---:|");
for (const variant of Object.keys(VARIANTS)) {
  for (const count of MEMORY_COUNTS) {
    const m = child(variant, count);
    lines.push(`| ${variant}, ${count} archives | ${fmtBytes(m.bytes)} | ${fmtBytes(m.wasmBefore)} → ${fmtBytes(m.wasmAfter)} | ${fmtBytes(m.rssGrowth)} |`);
  }
}
print(`${lines.join("\n")}\n`);
