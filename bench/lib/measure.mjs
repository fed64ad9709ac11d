// Timing: CPU time of the whole process (process.cpuUsage: every thread, so zlib work that
// CompressionStream hands to the libuv pool counts too) and wall time, per operation, median
// over repetitions after one warm-up repetition.
import { resetCounters, snapshotCounters } from "./bindings.mjs";

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)];
}

/**
 * Runs `op(state, i)` `ops` times per repetition on the state `setup()` returns (untimed), and
 * returns {cpuMs, wallMs} per op (medians) with the storage calls and bytes per op of the last
 * repetition. `state.bindings` are the fakes whose counters are read (no counters without).
 */
export async function measure({ reps, ops, warmup = true, setup, op }) {
  const cpu = [];
  const wall = [];
  let counters;
  for (let rep = warmup ? -1 : 0; rep < reps; rep++) {
    const state = await setup();
    if (state.bindings) resetCounters(state.bindings);
    const cpuStart = process.cpuUsage();
    const wallStart = performance.now();
    for (let i = 0; i < ops; i++) await op(state, i);
    const wallMs = performance.now() - wallStart;
    const used = process.cpuUsage(cpuStart);
    if (rep >= 0) {
      cpu.push((used.user + used.system) / 1000 / ops);
      wall.push(wallMs / ops);
    }
    counters = state.bindings && perOp(snapshotCounters(state.bindings), ops);
  }
  return { cpuMs: median(cpu), wallMs: median(wall), counters };
}

function perOp(counters, ops) {
  const divide = (record) => Object.fromEntries(Object.entries(record).map(([kind, n]) => [kind, n / ops]));
  return {
    kv: divide(counters.kv),
    r2: divide(counters.r2),
    kvBytes: counters.kvBytes / ops,
    r2Bytes: counters.r2Bytes / ops,
    r2DeletedKeys: counters.r2DeletedKeys / ops,
    r2LargestDeleteBatch: counters.r2LargestDeleteBatch,
  };
}

/**
 * A stand-in for a Workflow's `step.do(name, fn)` that runs each step once and records its
 * process CPU, wall time, storage calls (all kinds, both bindings) and the size of its result
 * as JSON (Workflows persist it, ≤ 1 MiB a step). `steps` lists them in order.
 */
export function stepRecorder(bindings) {
  const steps = [];
  const step = async (name, fn) => {
    resetCounters(bindings);
    const cpuStart = process.cpuUsage();
    const wallStart = performance.now();
    const result = await fn();
    const wallMs = performance.now() - wallStart;
    const used = process.cpuUsage(cpuStart);
    const calls = snapshotCounters(bindings);
    const callCount = [calls.kv, calls.r2].flatMap((kinds) => Object.values(kinds)).reduce((sum, n) => sum + n, 0);
    steps.push({ name, cpuMs: (used.user + used.system) / 1000, wallMs, calls, callCount, resultBytes: Buffer.byteLength(JSON.stringify(result ?? null)) });
    return result;
  };
  return { step, steps };
}
