// `node bench/offload.mjs [--smoke]` (after `npm run build`): what one offloaded segment costs
// (issue 17): `archiveSegment` of the oldest UIMessages of a live Agents SDK conversation, as
// `PersistentChatAgent`'s offload calls it, and reading the segment back by key as
// `loadFullHistory` does. Contender (a), the library through its public API over the fake
// bindings; process CPU per segment, median over rounds, with the storage calls by kind
// (bench/NOTES.md, "Offload").
import { VirtualClock, describeCalls, freshBindings } from "./lib/bindings.mjs";
import { rng, uiMessages } from "./lib/data.mjs";
import { measure } from "./lib/measure.mjs";
import { DataPersistenceService } from "../dist/node.js";

const SMOKE = process.argv.includes("--smoke");
const progress = (text) => process.stderr.write(`bench: ${text}\n`);
console.log = () => {}; // the library's log lines, built as in production, not printed
const print = process.stdout.write.bind(process.stdout);

const START_MS = Date.UTC(2026, 11, 6, 12);
const clock = new VirtualClock(START_MS);
clock.install();

const REPS = SMOKE ? 1 : 7;
const SEGMENTS = SMOKE ? 2 : 20;
// A segment of ~0.5 MB and one of ~1 MB of UIMessage JSON (maxHotBytes 1 MB offloads about half).
const SIZES = SMOKE ? [10] : [500, 1000];

const random = rng(20261206);

const lines = ["| segment of | JSON | archiveSegment CPU | read back by key CPU | storage calls per segment (write; read) |", "|---|---:|---:|---:|---|"];
for (const count of SIZES) {
  progress(`offload, segments of ${count} messages`);
  const messages = uiMessages(random, count, START_MS - 86_400_000);
  const bytes = new TextEncoder().encode(JSON.stringify(messages)).length;
  const write = await measure({
    reps: REPS,
    ops: SEGMENTS,
    setup: () => {
      const bindings = freshBindings(clock);
      return { bindings, service: new DataPersistenceService(bindings) };
    },
    op: async (state, i) => {
      clock.now += 1000;
      await state.service.archiveSegment(`chat-${count}`, i + 1, messages);
    },
  });
  const readBindings = freshBindings(clock);
  const writer = new DataPersistenceService(readBindings);
  const written = [];
  for (let i = 0; i < SEGMENTS; i++) {
    clock.now += 1000;
    written.push(await writer.archiveSegment(`chat-${count}`, i + 1, messages));
  }
  const read = await measure({
    reps: REPS,
    ops: SEGMENTS,
    setup: () => ({ bindings: readBindings, service: new DataPersistenceService(readBindings) }),
    op: async (state, i) => {
      const back = await state.service.retrieveUIMessagesByKey(written[i]);
      if (back?.length !== messages.length) throw new Error(`segment ${i} came back with ${back?.length} messages`);
    },
  });
  lines.push(`| ${count} UIMessages | ${(bytes / 1024).toFixed(0)} KB | ${write.cpuMs.toFixed(2)} ms | ${read.cpuMs.toFixed(2)} ms | ${describeCalls(write.counters)}; ${describeCalls(read.counters)} |`);
}
print(`${lines.join("\n")}\n`);
