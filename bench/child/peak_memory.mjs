// Peak RSS growth while one contender archives a conversation of about `bytes` bytes of JSON,
// in a fresh process (node --expose-gc peak_memory.mjs <contender> <bytes>). A worker thread
// samples the process RSS every millisecond, so the peak inside synchronous wasm is seen too.
import { freshBindings, VirtualClock } from "../lib/bindings.mjs";
import { conversation, rng } from "../lib/data.mjs";
import { rssSampler } from "../lib/rss.mjs";

const [contenderName, bytesArg] = process.argv.slice(2);
const targetBytes = Number(bytesArg);
const clock = new VirtualClock(Date.UTC(2026, 10, 26, 12));
clock.install();

const modules = {
  library: () => import("../contenders/library.mjs").then((m) => m.LibraryContender),
  legacy: () => import("../contenders/legacy.mjs").then((m) => m.LegacyContender),
  best_practice: () => import("../contenders/best_practice.mjs").then((m) => m.BestPracticeContender),
};
const Contender = await modules[contenderName]();
console.log = () => {};

// ~1000 bytes of JSON per message on average.
const probe = conversation(rng(7), "big-session", "user-big", 200, clock.now - 3_600_000);
const perMessage = JSON.stringify(probe.memory).length / 200;
const count = Math.max(2, Math.round(targetBytes / perMessage));
const { memory, session } = conversation(rng(7), "big-session", "user-big", count, clock.now - 86_400_000);
const inputBytes = Buffer.byteLength(JSON.stringify(memory)) + Buffer.byteLength(JSON.stringify(session));

const sampler = await rssSampler();
const bindings = freshBindings(clock);
const contender = new Contender(bindings);
const { before: rssBefore, after: rssAfter, peak, growth, ms: archiveMs } = await sampler.measure(() => contender.archive(memory, session));
await sampler.stop();
// The library's wasm linear memory: it grows to the archive's peak and never shrinks.
const wasmMemory = contenderName === "library" ? (await import("../../dist/wasm/supportbot_persistence.js")).initSync({ module: new Uint8Array(0) }).memory.buffer.byteLength : undefined;
process.stdout.write(
  JSON.stringify({ contender: contenderName, inputBytes, messages: count, rssBefore, rssAfter, peakRss: peak, peakGrowth: growth, archiveMs, wasmMemory, storedBytes: bindings.ARCHIVE_R2.counters.bytesWritten }),
);
