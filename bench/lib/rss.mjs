// Peak RSS of this process, sampled every millisecond by a worker thread, so a peak inside
// synchronous wasm or a long synchronous JS call is seen too (the main thread cannot sample it).
import { Worker } from "node:worker_threads";

const SAMPLER = `const { workerData } = require("node:worker_threads");
  const peak = new Float64Array(workerData);
  const tick = () => { const rss = process.memoryUsage.rss(); if (rss > peak[0]) peak[0] = rss; if (peak[1] === 0) setTimeout(tick, 1); };
  tick();`;

const settle = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the sampler; `measure(fn)` runs `fn` after a full GC and resolves to `{result, before, peak, growth, ms}`. */
export async function rssSampler() {
  const shared = new Float64Array(new SharedArrayBuffer(16));
  const worker = new Worker(SAMPLER, { eval: true, workerData: shared.buffer });
  await settle(50);
  return {
    async measure(fn) {
      globalThis.gc();
      await settle(20);
      globalThis.gc();
      const before = process.memoryUsage.rss();
      shared[0] = before;
      const started = performance.now();
      const result = await fn();
      const ms = performance.now() - started;
      const after = process.memoryUsage.rss();
      await settle(5);
      const peak = Math.max(shared[0], after);
      return { result, before, after, peak, growth: peak - before, ms };
    },
    async stop() {
      shared[1] = 1;
      await worker.terminate();
    },
  };
}
