// `node bench/analytics.mjs [--smoke]` (after `npm run build`): what writing one Analytics
// Engine data point per call costs, contender (a), the library through its public API over the
// fake bindings. Each row runs the same operation on a service without and with a
// PERSISTENCE_ANALYTICS dataset, in alternating rounds so that drift on this shared machine hits
// both alike; figures are process CPU per operation, medians over the rounds. Target: at most
// 2 % added per call (bench/NOTES.md, "Analytics").
//
// The dataset here keeps each point in an array, as a test would: the point is built and handed
// over exactly as in a Worker, but the runtime's own `writeDataPoint` (native code that queues
// the point for after the response) is not in these figures.
import { VirtualClock, freshBindings } from "./lib/bindings.mjs";
import { conversation, embedding, queryAndResult, rng } from "./lib/data.mjs";
import { median } from "./lib/measure.mjs";
import { DataPersistenceService } from "../dist/node.js";

const SMOKE = process.argv.includes("--smoke");
const progress = (text) => process.stderr.write(`bench: ${text}\n`);
console.log = () => {}; // the library's log lines, built as in production, not printed
const print = process.stdout.write.bind(process.stdout);

const DAY = 24 * 60 * 60 * 1000;
const START_MS = Date.UTC(2026, 11, 6, 12);
const clock = new VirtualClock(START_MS);
clock.install();

const ROUNDS = SMOKE ? 1 : 61;
/** Calls per timed batch: one batch is a few milliseconds of CPU, well above the clock's grain. */
const BATCH = SMOKE ? { cache: 2, archive: 1 } : { cache: 400, archive: 4 };
const TARGET = 0.02;

/**
 * A dataset that counts the points it is given and keeps the last, as Analytics Engine takes
 * them: the runtime copies a point out of the isolate at once, so points do not pile up on the
 * heap (keeping every one would measure the garbage collector, not the library).
 */
class CountedPoints {
  count = 0;
  last;
  writeDataPoint(point) {
    this.count++;
    this.last = point;
  }
}

const random = rng(20261206);
const QUERIES = Array.from({ length: 64 }, (_, i) => queryAndResult(random, i));
const EMBEDDING = embedding(random, 768);
const { memory, session } = conversation(random, "an-200", "user-an", SMOKE ? 4 : 200, START_MS - DAY);

/** A service over fresh bindings; `analytics` adds a dataset. */
function fresh(analytics) {
  const bindings = freshBindings(clock);
  const dataset = analytics ? new CountedPoints() : undefined;
  const service = new DataPersistenceService(dataset ? { ...bindings, PERSISTENCE_ANALYTICS: dataset } : bindings);
  return { bindings, service, dataset };
}

const ROWS = [
  {
    name: "getCachedQueryResult, a hit",
    ops: BATCH.cache,
    setup: async (analytics) => {
      const state = fresh(analytics);
      for (const { query, result } of QUERIES) await state.service.cacheFrequentQuery(query, result);
      return state;
    },
    op: async ({ service }, i) => {
      if ((await service.getCachedQueryResult(QUERIES[i % QUERIES.length].query)) === null) throw new Error("missed");
    },
  },
  {
    name: "getCachedEmbedding (768 dims), a hit",
    ops: BATCH.cache,
    setup: async (analytics) => {
      const state = fresh(analytics);
      await state.service.cacheEmbedding("reset my password", EMBEDDING);
      return state;
    },
    op: async ({ service }) => {
      if ((await service.getCachedEmbedding("reset my password"))?.length !== EMBEDDING.length) throw new Error("missed");
    },
  },
  {
    name: "getCachedQueryResult, a miss",
    ops: BATCH.cache,
    setup: async (analytics) => fresh(analytics),
    op: async ({ service }, i) => {
      if ((await service.getCachedQueryResult(QUERIES[i % QUERIES.length].query)) !== null) throw new Error("hit");
    },
  },
  {
    name: "archiveConversation, 200 messages",
    ops: BATCH.archive,
    setup: async (analytics) => fresh(analytics),
    op: async ({ service }) => {
      clock.now += 1000;
      await service.archiveConversation(memory, session);
    },
  },
  {
    name: "retrieveArchivedConversation, 200 messages",
    ops: BATCH.archive,
    setup: async (analytics) => {
      const state = fresh(analytics);
      await state.service.archiveConversation(memory, session);
      return state;
    },
    op: async ({ service }) => {
      const found = await service.retrieveArchivedConversation(session.id);
      if (found?.messages?.length !== memory.messages.length) throw new Error(`retrieve returned ${found?.messages?.length} messages`);
    },
  },
];

const fmtUs = (ms) => (ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`);
const lines = [
  "| operation (a) | without analytics | with analytics | added per call | added | target ≤ 2 % |",
  "|---|---:|---:|---:|---:|---|",
];
for (const row of ROWS) {
  progress(row.name);
  // One service of each variant, set up once; timed batches alternate between them so that
  // drift on this shared machine hits both alike.
  const states = { off: await row.setup(false), on: await row.setup(true) };
  const cpu = { off: [], on: [] };
  let calls = 0;
  for (let round = SMOKE ? 0 : -2; round < ROUNDS; round++) {
    for (const variant of round % 2 === 0 ? ["off", "on"] : ["on", "off"]) {
      const start = process.cpuUsage();
      for (let i = 0; i < row.ops; i++) await row.op(states[variant], calls + i);
      const used = process.cpuUsage(start);
      if (round >= 0) cpu[variant].push((used.user + used.system) / 1000 / row.ops);
    }
    calls += row.ops;
  }
  // Every call wrote one point (the setup's calls too): the bench measures what it says.
  if (states.on.dataset.count < calls) throw new Error(`${row.name}: ${states.on.dataset.count} data points for ${calls} calls`);
  const [off, on] = [median(cpu.off), median(cpu.on)];
  const added = (on - off) / off;
  const verdict = SMOKE ? "(smoke)" : added <= TARGET ? "met" : "missed";
  lines.push(`| ${row.name} | ${fmtUs(off)} | ${fmtUs(on)} | ${fmtUs(on - off)} | ${(added * 100).toFixed(1)} % | ${verdict} |`);
}
print(`${lines.join("\n")}\n`);
