// `node bench/erasure.mjs [--smoke]` (after `npm run build`): what erasing one user costs,
// contender (a), the library through its public API over the fake bindings. A store holds the
// user's archives (one conversation each), as many of other users', and a backup made for the
// user; eraseUserData runs once, unbounded, on a copy of it per round. Figures: process CPU of
// the whole erasure (median over rounds) and its storage calls by kind (bench/NOTES.md,
// "Erasure").
import { VirtualClock, copyBindings, describeCalls, freshBindings, resetCounters, snapshotCounters } from "./lib/bindings.mjs";
import { conversation, rng, withSession } from "./lib/data.mjs";
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

const ROUNDS = SMOKE ? 1 : 5;
const USER_ARCHIVES = SMOKE ? 10 : 1000;
const OTHER_ARCHIVES = SMOKE ? 10 : 1000;
const BACKED_UP = SMOKE ? 5 : 100;
const KEK = { id: "k1", key: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 5 + 3)).toString("base64") };
const VARIANTS = { plain: {}, encrypted: { encryptionKeys: [KEK] } };
const USER = "erased@example.com";

const random = rng(20261206);
const pool = Array.from({ length: 40 }, (_, i) => conversation(random, `pool-${i}`, "user-pool", SMOKE ? 4 : 10 + Math.floor(random() * 30), START_MS - 2 * DAY));

/** A store of `variant` with the user's archives, others', and a backup made for the user. */
async function store(variant) {
  const bindings = freshBindings(clock);
  const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
  for (let i = 0; i < USER_ARCHIVES + OTHER_ARCHIVES; i++) {
    clock.now += 1000;
    const theirs = i % 2 === 0 && i / 2 < USER_ARCHIVES;
    const { memory, session } = withSession(pool[i % pool.length], `s-${i}`, theirs ? USER : `other-${i % 97}@example.com`);
    await service.archiveConversation(memory, session);
  }
  const sessions = Array.from({ length: BACKED_UP }, (_, i) => `s-${2 * i}`);
  await service.createBackup(sessions, { userId: USER });
  return bindings;
}


const lines = [
  `| erasure of a user with ${USER_ARCHIVES} archives (of ${USER_ARCHIVES + OTHER_ARCHIVES}) and a backup | CPU | per archive | storage calls | receipt |`,
  "|---|---:|---:|---|---|",
];
for (const variant of Object.keys(VARIANTS)) {
  progress(`erasure, ${variant}: building the store`);
  const original = await store(variant);
  const cpu = [];
  let counters;
  let receipt;
  for (let round = 0; round < ROUNDS; round++) {
    const bindings = copyBindings(original, clock);
    const service = new DataPersistenceService(bindings, {}, VARIANTS[variant]);
    resetCounters(bindings);
    const start = process.cpuUsage();
    receipt = await service.eraseUserData(USER);
    const used = process.cpuUsage(start);
    cpu.push((used.user + used.system) / 1000);
    counters = snapshotCounters(bindings);
    if (!receipt.complete || receipt.archivesDeleted !== USER_ARCHIVES || receipt.backupsDeleted !== 1) {
      throw new Error(`erasure incomplete: ${JSON.stringify(receipt)}`);
    }
  }
  const ms = median(cpu);
  const total = Object.values(counters.kv).reduce((a, b) => a + b, 0) + Object.values(counters.r2).reduce((a, b) => a + b, 0);
  lines.push(
    `| ${variant} | ${ms.toFixed(0)} ms | ${((ms * 1000) / USER_ARCHIVES).toFixed(0)} µs | ${total}: ${describeCalls(counters)} | ${receipt.archivesDeleted} archives, ${receipt.indexEntriesDeleted} entries, ${receipt.backupsDeleted} backup, ${receipt.keysDestroyed} keys |`,
  );
}
print(`${lines.join("\n")}\n`);
