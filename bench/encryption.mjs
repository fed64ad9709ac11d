// `node bench/encryption.mjs [--smoke]` (after `npm run build`): what encryption at rest costs
// contender (a), the library through its public API over the fake bindings. Each row runs the
// same operation on a service without and with `encryptionKeys` (one KEK), in alternating
// rounds so that drift on this shared machine hits both alike; figures are process CPU per
// operation, medians over the rounds (bench/NOTES.md, "Encryption").
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

import { VirtualClock, freshBindings } from "./lib/bindings.mjs";
import { conversation, rng, withSession } from "./lib/data.mjs";
import { measure, median } from "./lib/measure.mjs";
import { DataPersistenceService } from "../dist/node.js";

const SMOKE = process.argv.includes("--smoke");
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const progress = (text) => process.stderr.write(`bench: ${text}\n`);
console.log = () => {}; // the library's log lines, built as in production, not printed
const print = process.stdout.write.bind(process.stdout);

const DAY = 24 * 60 * 60 * 1000;
const START_MS = Date.UTC(2026, 10, 26, 12);
const clock = new VirtualClock(START_MS);
clock.install();

const ROUNDS = SMOKE ? 1 : 9;
const OPS = SMOKE ? { 200: 1, 2000: 1, page: 1, list: 1 } : { 200: 40, 2000: 6, page: 20, list: 4 };
const LISTED = SMOKE ? 10 : 500;
const PAGE = SMOKE ? 4 : 100;
const KEK = { id: "k1", key: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1)).toString("base64") };
const VARIANTS = {
  plain: {},
  encrypted: { encryptionKeys: [KEK] },
};

const random = rng(20261126);
const conversations = Object.fromEntries([200, 2000].map((n) => [n, conversation(random, `enc-${n}`, "user-enc", SMOKE ? n / 100 : n, START_MS - DAY)]));
const pool = Array.from({ length: 40 }, (_, i) => conversation(random, `pool-${i}`, "user-pool", SMOKE ? 4 : 10 + Math.floor(random() * 50), START_MS - 2 * DAY));

const service = (bindings, variant) => new DataPersistenceService(bindings, {}, VARIANTS[variant]);

/** `variant`'s stores holding `LISTED` archives of one user. */
async function listedStores(variant) {
  const bindings = freshBindings(clock);
  const writer = service(bindings, variant);
  for (let i = 0; i < LISTED; i++) {
    clock.now += 1000;
    const { memory, session } = withSession(pool[i % pool.length], `list-${i}`, "user-list");
    await writer.archiveConversation(memory, session);
  }
  return bindings;
}

const ROWS = [];
for (const n of [200, 2000]) {
  const { memory, session } = conversations[n];
  ROWS.push({
    name: `archive, ${n} messages`,
    ops: OPS[n],
    setup: (variant) => {
      const bindings = freshBindings(clock);
      return { bindings, service: service(bindings, variant) };
    },
    op: async ({ service }) => {
      clock.now += 1000;
      await service.archiveConversation(memory, session);
    },
  });
  ROWS.push({
    name: `retrieve, ${n} messages`,
    ops: OPS[n],
    setup: async (variant) => {
      const bindings = freshBindings(clock);
      const state = { bindings, service: service(bindings, variant) };
      await state.service.archiveConversation(memory, session);
      return state;
    },
    op: async ({ service }) => {
      const found = await service.retrieveArchivedConversation(session.id);
      if (found?.messages?.length !== memory.messages.length) throw new Error(`retrieve returned ${found?.messages?.length} messages`);
    },
  });
}
const listed = {};
ROWS.push({
  name: `list a user's archives: one page of ${PAGE}`,
  ops: OPS.page,
  setup: async (variant) => ({ bindings: (listed[variant] ??= await listedStores(variant)), variant }),
  op: async (state) => {
    // A fresh service per page, as a Worker request builds it: data keys are read anew.
    const page = await service(state.bindings, state.variant).listArchivedConversations("user-list", PAGE);
    if (page.length !== PAGE || typeof page[0].summary !== "string") throw new Error(`listed ${page.length}, summary ${typeof page[0]?.summary}`);
  },
});
ROWS.push({
  name: `list a user's ${LISTED} archives, ${PAGE} a page`,
  ops: OPS.list,
  setup: async (variant) => ({ bindings: (listed[variant] ??= await listedStores(variant)), variant }),
  op: async (state) => {
    const reader = service(state.bindings, state.variant);
    let cursor;
    let count = 0;
    for (;;) {
      const page = await reader.listArchivedConversations("user-list", PAGE, cursor);
      count += page.length;
      if (page.listComplete) break;
      cursor = page.cursor;
    }
    if (count !== LISTED) throw new Error(`listed ${count} of ${LISTED}`);
  },
});

const fmtMs = (ms) => (ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(0)} µs`);
const calls = (c) => [...Object.entries(c.kv), ...Object.entries(c.r2).map(([k, v]) => [`R2 ${k}`, v])].filter(([, v]) => v > 0).map(([k, v]) => `${+v.toFixed(2)} ${k}`).join(", ");

const lines = ["| operation (a) | without encryption | with encryption | ratio | storage calls with encryption |", "|---|---:|---:|---:|---|"];
for (const row of ROWS) {
  progress(row.name);
  const cpu = { plain: [], encrypted: [] };
  let counters;
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ["plain", "encrypted"] : ["encrypted", "plain"];
    for (const variant of order) {
      const result = await measure({ reps: 1, ops: row.ops, warmup: round === 0 && !SMOKE, setup: () => row.setup(variant), op: row.op });
      cpu[variant].push(result.cpuMs);
      if (variant === "encrypted") counters = result.counters;
    }
  }
  const [plain, encrypted] = [median(cpu.plain), median(cpu.encrypted)];
  lines.push(`| ${row.name} | ${fmtMs(plain)} | ${fmtMs(encrypted)} | ${(encrypted / plain).toFixed(2)}× | ${counters ? calls(counters) : "—"} |`);
}

const gzipped = (path) => gzipSync(readFileSync(path), { level: 9 }).length;
const wasm = join(ROOT, "dist/wasm/supportbot_persistence_bg.wasm");
const base = process.env.BASE_WASM;
const size = gzipped(wasm);
lines.push("");
lines.push(`.wasm gzip -9: ${size} B${base ? `; ${gzipped(base)} B before (${base}): ${size - gzipped(base) >= 0 ? "+" : ""}${size - gzipped(base)} B` : ""}`);
print(`${lines.join("\n")}\n`);
