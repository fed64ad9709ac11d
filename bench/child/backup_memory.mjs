// Peak RSS growth of the steps of a backup and of its restore, in a fresh process
// (node --expose-gc backup_memory.mjs <library|best_practice> <stores.bin> <step archives>).
// stores.bin holds the populated fake stores (v8.serialize, written by run.mjs). The library
// runs as BackupWorkflow/RestoreWorkflow do, one pack a step; a sample of its steps is measured
// (each measurement collects garbage twice first). best_practice runs its naive backup and
// restore, each one invocation, measured whole.
import { readFileSync } from "node:fs";
import { deserialize } from "node:v8";
import { backupOnly, freshBindings, VirtualClock } from "../lib/bindings.mjs";
import { rssSampler } from "../lib/rss.mjs";

const [contenderName, storesPath, stepArchivesArg] = process.argv.slice(2);
const stored = deserialize(readFileSync(storesPath));
const clock = new VirtualClock(stored.now);
clock.install();
console.log = () => {};

const bindings = freshBindings(clock);
bindings.CHAT_KV.entries = new Map(stored.kv);
bindings.ARCHIVE_R2.objects = new Map(stored.r2);
const sampler = await rssSampler();
const peaks = { backup: [], restore: [] };
const measuredStep = (phase) => async (name, fn) => {
  const n = Number(name.split(" ")[1]);
  if (name.startsWith("pack") && n >= 3 && n % 50 !== 49) return fn();
  const { result, growth } = await sampler.measure(fn);
  peaks[phase].push({ name, growth });
  return result;
};

let backupId;
let restored;
if (contenderName === "library") {
  const { LibraryContender } = await import("../contenders/library.mjs");
  clock.now += 1000;
  ({ backupId } = await new LibraryContender(bindings).workflowBackup(measuredStep("backup"), Number(stepArchivesArg)));
  clock.now += 1000;
  restored = await new LibraryContender(backupOnly(bindings, backupId, clock)).workflowRestore(measuredStep("restore"), backupId);
} else {
  const { BestPracticeContender } = await import("../contenders/best_practice.mjs");
  clock.now += 1000;
  backupId = await measuredStep("backup")("backup", () => new BestPracticeContender(bindings).backupAll());
  clock.now += 1000;
  restored = await measuredStep("restore")("restore", () => new BestPracticeContender(backupOnly(bindings, backupId, clock)).restore(backupId));
}
await sampler.stop();
// The library's wasm linear memory after every step: it grows to the largest step's need and never shrinks.
const wasmMemory = contenderName === "library" ? (await import("../../dist/wasm/supportbot_persistence.js")).initSync({ module: new Uint8Array(0) }).memory.buffer.byteLength : undefined;
const largest = (list) => list.reduce((max, step) => (step.growth > max.growth ? step : max), { growth: -Infinity });
process.stdout.write(JSON.stringify({ contender: contenderName, restored: restored.length, measuredSteps: { backup: peaks.backup.length, restore: peaks.restore.length }, backupPeak: largest(peaks.backup), restorePeak: largest(peaks.restore), wasmMemory }));
