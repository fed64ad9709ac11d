// Workers Analytics Engine, inside workerd: with PERSISTENCE_ANALYTICS bound, every call writes
// one data point laid out as ANALYTICS_SCHEMA (operation, outcome, cache, version; storage
// calls, failed attempts, bytes read and written, duration), a failing dataset never fails a
// call, and the dataset wrangler.toml declares takes the points as they are.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  ANALYTICS_SCHEMA,
  DataPersistenceService,
  isPersistenceError,
  libraryVersion,
  type ConversationMemory,
  type SessionState,
} from "supportbot-persistence";

/** A dataset that keeps what it is given, as Analytics Engine would store it. */
class RecordingDataset implements AnalyticsEngineDataset {
  readonly points: AnalyticsEngineDataPoint[] = [];
  writeDataPoint(point?: AnalyticsEngineDataPoint): void {
    if (point) this.points.push(point);
  }
}

type Row = Record<string, unknown>;

/** One point as named columns (the schema's keys). */
function columns(point: AnalyticsEngineDataPoint): Row {
  const row: Row = { index1: point.indexes?.[0] };
  point.blobs?.forEach((blob, i) => (row[`blob${i + 1}`] = blob));
  point.doubles?.forEach((double, i) => (row[`double${i + 1}`] = double));
  return row;
}

function serviceWith(dataset: AnalyticsEngineDataset): DataPersistenceService {
  return new DataPersistenceService({ CHAT_KV: env.CHAT_KV, ARCHIVE_R2: env.ARCHIVE_R2, PERSISTENCE_ANALYTICS: dataset });
}

function conversation(sessionId: string, userId: string): [ConversationMemory, SessionState] {
  const at = Date.UTC(2026, 10, 2, 9);
  return [
    {
      sessionId,
      messages: [
        { id: `${sessionId}-1`, sessionId, role: "user", content: "My invoice shows the wrong VAT number", timestamp: at },
        { id: `${sessionId}-2`, sessionId, role: "assistant", content: "I have corrected it on the next invoice", timestamp: at + 1000 },
      ],
    },
    { id: sessionId, userId, status: "closed", createdAt: at, lastActivity: at + 1000 },
  ];
}

describe("Analytics Engine data points", () => {
  it("writes one point per call with its operation, outcome, calls, bytes and duration", async () => {
    const dataset = new RecordingDataset();
    const service = serviceWith(dataset);

    const key = await service.archiveConversation(...conversation("an-archive-1", "an-user-1"));
    const archived = await service.retrieveArchivedConversation("an-archive-1");

    expect(archived?.sessionId).toBe("an-archive-1");
    expect(dataset.points).toHaveLength(2);
    const [write, read] = dataset.points.map(columns) as [Row, Row];
    expect(write).toMatchObject({ index1: "archiveConversation", blob1: "archiveConversation", blob2: "ok", blob3: "", blob4: libraryVersion() });
    expect(Object.keys(write).sort()).toEqual(Object.keys(ANALYTICS_SCHEMA).sort());
    // 1 R2 put and 2-3 KV puts (README's cost table), nothing failed.
    expect(write.double1).toBeGreaterThanOrEqual(3);
    expect(write.double1).toBeLessThanOrEqual(4);
    expect(write.double2).toBe(0);
    expect(write.double3).toBe(0);
    const object = await env.ARCHIVE_R2.get(key);
    expect(write.double4).toBeGreaterThan((await object!.arrayBuffer()).byteLength);
    expect(write.double5).toBeGreaterThanOrEqual(0);
    // 1 KV get, 1 R2 get and 1 R2 head (the erasure tombstone); it read at least the object's
    // body and wrote nothing.
    expect(read).toMatchObject({ index1: "retrieveArchivedConversation", blob2: "ok", double1: 3, double4: 0 });
    expect(read.double3).toBeGreaterThanOrEqual(object!.size);
  });

  it("says hit or miss for cache lookups, and the hit reads what the write wrote", async () => {
    const dataset = new RecordingDataset();
    const service = serviceWith(dataset);

    expect(await service.getCachedQueryResult("an: opening hours")).toBeNull();
    await service.cacheFrequentQuery("an: opening hours", { weekdays: "9-17" });
    expect(await service.getCachedQueryResult("an: opening hours")).toEqual({ weekdays: "9-17" });
    await service.cacheEmbedding("an: refund", [0.25, -0.5, 1]);
    expect(await service.getCachedEmbedding("an: refund")).toEqual([0.25, -0.5, 1]);

    const rows = dataset.points.map(columns) as [Row, Row, Row, Row, Row];
    expect(rows.map((row) => [row.index1, row.blob2, row.blob3])).toEqual([
      ["getCachedQueryResult", "ok", "miss"],
      ["cacheFrequentQuery", "ok", ""],
      ["getCachedQueryResult", "ok", "hit"],
      ["cacheEmbedding", "ok", ""],
      ["getCachedEmbedding", "ok", "hit"],
    ]);
    expect(rows[2].double3).toBe(rows[1].double4);
    expect(rows[4].double3).toBe(rows[3].double4);
  });

  it("records a failed call under its error code, before any storage call", async () => {
    const dataset = new RecordingDataset();
    const service = serviceWith(dataset);
    const [memory, session] = conversation("an bad id", "an-user-2");

    const error = await service.archiveConversation(memory, { ...session, id: "an bad id" }).then(
      () => undefined,
      (caught: unknown) => caught,
    );

    expect(isPersistenceError(error)).toBe(true);
    const code = (error as { code: string }).code;
    expect(dataset.points.map(columns)).toEqual([expect.objectContaining({ index1: "archiveConversation", blob2: code, double1: 0, double4: 0 })]);
  });

  it("never fails a call when the dataset throws", async () => {
    const failing: AnalyticsEngineDataset = {
      writeDataPoint() {
        throw new Error("too many data points in this invocation");
      },
    };
    const service = serviceWith(failing);

    const key = await service.archiveConversation(...conversation("an-archive-3", "an-user-3"));
    expect(key).toContain("an-archive-3");
    expect((await service.retrieveArchivedConversation("an-archive-3"))?.sessionId).toBe("an-archive-3");
    expect(await service.getCachedQueryResult("an: nothing")).toBeNull();
  });

  it("writes one point for a whole export stream, and 'cancelled' for one cancelled early", async () => {
    const dataset = new RecordingDataset();
    const service = serviceWith(dataset);
    await service.archiveConversation(...conversation("an-archive-4a", "an-user-4"));
    await service.archiveConversation(...conversation("an-archive-4b", "an-user-4"));
    dataset.points.length = 0;

    const text = await new Response(service.exportUserData("an-user-4")).text();
    expect(text.trim().split("\n").length).toBeGreaterThanOrEqual(3);
    const rows = dataset.points.map(columns) as [Row];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ index1: "exportUserData", blob2: "ok" });
    // Its calls summed over every chunk: 1 R2 head, 1 KV list and 1 R2 get per archive.
    expect(rows[0].double1).toBeGreaterThanOrEqual(4);
    expect(rows[0].double3).toBeGreaterThan(0);

    const reader = service.exportUserData("an-user-4").getReader();
    await reader.read();
    await reader.cancel();
    expect(dataset.points.map(columns).slice(1)).toEqual([expect.objectContaining({ index1: "exportUserData", blob2: "cancelled" })]);
  });

  it("names maintenance jobs by their method", async () => {
    const dataset = new RecordingDataset();
    const service = serviceWith(dataset);

    await service.getStorageMetrics({ maxStorageCalls: 50 });
    await service.healthCheck();

    expect(dataset.points.map((point) => point.indexes?.[0])).toEqual(["getStorageMetrics", "healthCheck"]);
    expect(columns(dataset.points[0]!).double1).toBeGreaterThanOrEqual(3);
  });

  it("refuses a PERSISTENCE_ANALYTICS that is not a dataset, with INVALID_CONFIG", () => {
    const notADataset = { write() {} } as unknown as AnalyticsEngineDataset;
    let caught: unknown;
    try {
      serviceWith(notADataset);
    } catch (error) {
      caught = error;
    }
    expect(isPersistenceError(caught)).toBe(true);
    expect(caught).toMatchObject({ code: "INVALID_CONFIG" });
    expect(String((caught as Error).message)).toContain("PERSISTENCE_ANALYTICS");
  });

  it("works with the dataset wrangler.toml declares", async () => {
    expect(env.PERSISTENCE_ANALYTICS).toBeDefined();
    const service = new DataPersistenceService(env);

    const key = await service.archiveConversation(...conversation("an-archive-5", "an-user-5"));
    expect((await service.retrieveArchivedConversation("an-archive-5"))?.sessionId).toBe("an-archive-5");
    expect(key).toContain("an-archive-5");
  });
});
