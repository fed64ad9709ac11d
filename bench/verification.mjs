// `node bench/verification.mjs [--smoke]` (after `npm run build`): what verifyStorage costs,
// contender (a), the library through its public API over the fake bindings. A store holds
// ARCHIVES archives (one conversation each, of a few users) and a backup of BACKED_UP of them;
// one unbounded pass checks everything (throughput in objects and MB per CPU-second, storage
// calls by kind), then passes with the example cron's free-plan budget (21 storage calls) show
// what one cron invocation verifies (bench/NOTES.md, "Verification").
import { VirtualClock, copyBindings, describeCalls, freshBindings, resetCounters, snapshotCounters } from "./lib/bindings.mjs";
import { conversation, rng, withSession } from "./lib/data.mjs";
import { median } from "./lib/measure.mjs";
import { DataPersistenceService } from "../dist/node.js";

const SMOKE = process.argv.includes("--smoke");
const progress = (text) => process.stderr.write(`bench: ${text}\n`);
console.log = () => {}; // the library's log lines, built as in production, not printed
const print = process.stdout.write.bind(process.stdout);

const MINUTE = 60 * 1000;
const START_MS = Date.UTC(2026, 11, 6, 12);
const clock = new VirtualClock(START_MS);
clock.install();

const ROUNDS = SMOKE ? 1 : 5;
const ARCHIVES = SMOKE ? 20 : 2000;
const BACKED_UP = SMOKE ? 5 : 200;
/** The example cron's calls on the free plan: floor((45 - 2) / 2). */
const CRON_CALLS = 21;
const KEK = { id: "k1", key: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1)).toString("base64") };
const VARIANTS = { plain: {}, encrypted: { encryptionKeys: [KEK] } };

const random = rng(20261207);
const pool = Array.from({ length: 40 }, (_, i) => conversation(random, `pool-${i}`, "user-pool", SMOKE ? 4 : 10 + Math.floor(random() * 30), START_MS - MINUTE));

/** A store of `variant`: the archives, then a backup, past the index lag (so entries are checked too). */
async function store(variant) {
  const bindings = freshBindings(clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  for (let i = 0; i < ARCHIVES; i++) {
    clock.now += 1000;
    const { memory, session } = withSession(pool[i % pool.length], `s-${i}`, `user-${i % 50}@example.com`);
    await service.archiveConversation(memory, session);
  }
  await service.createBackup(Array.from({ length: BACKED_UP }, (_, i) => `s-${i}`));
  clock.now += 10 * MINUTE;
  return bindings;
}

const cpuMs = (start) => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
};

const lines = [
  `| a full pass over ${ARCHIVES} archives and a backup of ${BACKED_UP} | CPU | objects / CPU-s | MB / CPU-s | storage calls | a free-plan cron run (${CRON_CALLS} calls, sample 1/7) |`,
  "|---|---:|---:|---:|---|---|",
];
for (const variant of Object.keys(VARIANTS)) {
  progress(`verification, ${variant}: building the store`);
  const original = await store(variant);
  const cpu = [];
  let counters;
  let report;
  for (let round = 0; round < ROUNDS; round++) {
    const bindings = copyBindings(original, clock);
    const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
    resetCounters(bindings);
    const start = process.cpuUsage();
    report = await service.verifyStorage();
    cpu.push(cpuMs(start));
    counters = snapshotCounters(bindings);
    if (!report.complete || report.problemsFound !== 0) throw new Error(`verification failed: ${JSON.stringify(report)}`);
  }
  // The cron: sampled runs at its budget, resuming, until one pass of the slot completes.
  const bindings = copyBindings(original, clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  const cron = { runs: 0, objects: 0, cpu: [] };
  for (let done = false; !done && cron.runs < 10_000; cron.runs++) {
    const start = process.cpuUsage();
    const run = await service.verifyStorage({ sample: "1/7", repair: true, maxStorageCalls: CRON_CALLS });
    cron.cpu.push(cpuMs(start));
    cron.objects += run.objectsChecked;
    done = run.complete;
  }
  const ms = median(cpu);
  const total = Object.values(counters.kv).reduce((a, b) => a + b, 0) + Object.values(counters.r2).reduce((a, b) => a + b, 0);
  const seconds = ms / 1000;
  lines.push(
    `| ${variant} | ${ms.toFixed(0)} ms | ${(report.objectsChecked / seconds).toFixed(0)} | ${(report.bytesChecked / 1e6 / seconds).toFixed(1)} | ${total}: ${describeCalls(counters)} | ${(cron.objects / cron.runs).toFixed(1)} objects per run, ${median(cron.cpu).toFixed(1)} ms CPU; ${cron.runs} runs for the slot |`,
  );
}
print(`${lines.join("\n")}\n`);
