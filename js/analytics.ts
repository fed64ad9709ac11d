// Workers Analytics Engine: with a dataset bound as PERSISTENCE_ANALYTICS, every call of the
// library writes one data point when it settles. The wasm core measures the call (storage
// calls, bytes, duration, cache hit) and hands the numbers to `record` below, which only lays
// them out as the dataset's columns. `writeDataPoint` is fire-and-forget: it returns at once
// and the runtime sends the point after the response, so nothing waits on it (no
// `ctx.waitUntil` is needed), and whatever it throws is dropped by the core: analytics never
// fails a call. README "Analytics Engine" has the SQL queries over these columns.

/**
 * The columns of one data point (the dataset's schema). Durations are wall time: in production
 * Workers the clock advances across I/O only, so a call's duration is the time it waited on
 * storage, not its CPU time.
 */
export const ANALYTICS_SCHEMA = {
  /** The sampling key: the operation's name. */
  index1: "operation (e.g. archiveConversation, getCachedQueryResult, enforceRetentionPolicy)",
  blob1: "operation, as index1",
  blob2: 'outcome: "ok", the PersistenceError code (e.g. "NOT_FOUND"), or "cancelled" for an export stream cancelled before its end',
  blob3: 'cache lookup: "hit" or "miss" (getCachedEmbedding, getCachedQueryResult), "" for any other operation',
  blob4: "library version",
  double1: "storage calls made (a retried call counts once)",
  double2: "storage attempts that failed (retried or not)",
  double3: "bytes read from KV and R2 (values and object bodies)",
  double4: "bytes written to KV and R2 (values and object bodies)",
  double5: "duration in milliseconds (wall time; see above)",
} as const;

/** What the core calls once per settled call (src/wasm/bindings/analytics.rs); `startedMs` is `Date.now()` when the call began. */
export interface OperationRecorder {
  record(
    op: string,
    outcome: string,
    cache: string,
    storageCalls: number,
    failedAttempts: number,
    bytesRead: number,
    bytesWritten: number,
    startedMs: number,
  ): void;
}

/** The recorder writing to `dataset`, one data point per call, laid out as ANALYTICS_SCHEMA. */
export function operationRecorder(dataset: AnalyticsEngineDataset, version: string): OperationRecorder {
  return {
    record(op, outcome, cache, storageCalls, failedAttempts, bytesRead, bytesWritten, startedMs) {
      const durationMs = Math.max(0, Date.now() - startedMs);
      dataset.writeDataPoint({
        indexes: [op],
        blobs: [op, outcome, cache, version],
        doubles: [storageCalls, failedAttempts, bytesRead, bytesWritten, durationMs],
      });
    },
  };
}
