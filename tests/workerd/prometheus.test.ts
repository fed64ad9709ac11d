// GET /metrics in Prometheus text exposition format (js/example/prometheus.ts), inside workerd,
// parsed with a real text-format parser from npm: every family has HELP and TYPE, names carry
// their units, and the numbers equal the JSON answer's and the library's own reports.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { DataPersistenceService } from "supportbot-persistence";
import worker from "../../js/example/worker.js";
import { importAuthKey, signToken } from "../../js/example/auth.js";
import type { ExampleEnv } from "../../js/example/config.js";
import { LAST_RUN_KEY } from "../../js/example/retention.js";

const SECRET = "test-auth-secret-0123456789abcdef-0123456789";
const testEnv: ExampleEnv = { ...env, AUTH_SECRET: SECRET };
const key = await importAuthKey(SECRET);
const operator = await signToken(key, "prometheus", 3600, Date.now(), "service");
const user = await signToken(key, "alice");

interface Family {
  name: string;
  help: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}

async function scrape(path: string, headers: Record<string, string> = {}, token = operator): Promise<Response> {
  return worker.fetch(new Request(`http://example.com${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } }), testEnv);
}

function value(families: Family[], name: string, labels: Record<string, string> = {}): number {
  const family = families.find((candidate) => candidate.name === name);
  if (!family) throw new Error(`no family ${name}`);
  const sample = family.metrics.find((metric) => Object.entries(labels).every(([k, v]) => metric.labels?.[k] === v));
  if (!sample) throw new Error(`no sample of ${name} with ${JSON.stringify(labels)}`);
  return Number(sample.value);
}

describe("GET /metrics as Prometheus text", () => {
  it("answers the exposition format, with the numbers of the JSON answer and the library's reports", async () => {
    const service = new DataPersistenceService(env);
    const now = Date.now();
    for (const sessionId of ["prom-1", "prom-2"]) {
      await service.archiveConversation(
        { sessionId, messages: [{ id: "m1", sessionId, role: "user", content: "hello", timestamp: now - 1000 }], summary: "hi" },
        { id: sessionId, status: "closed", createdAt: now - 1000, lastActivity: now - 1000 },
      );
    }
    await service.createBackup(["prom-1"]);
    await service.verifyStorage();
    await env.CHAT_KV.put(LAST_RUN_KEY, String(now));

    const json = (await (await scrape("/metrics")).json()) as { cache: Record<string, number>; storage: Record<string, number>; complete: boolean };
    const response = await scrape("/metrics?format=prometheus");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    expect(text.endsWith("\n")).toBe(true);
    const families = parsePrometheusTextFormat(text) as Family[];
    for (const family of families) {
      expect(family.help.length, family.name).toBeGreaterThan(0);
      expect(["GAUGE", "COUNTER"]).toContain(family.type);
      expect(family.name).toMatch(/^supportbot_[a-z_]+$/);
    }
    expect(value(families, "supportbot_archives")).toBe(json.storage.archived_conversations);
    expect(value(families, "supportbot_backups")).toBe(json.storage.backups);
    expect(value(families, "supportbot_stored_bytes")).toBe(json.storage.bytes);
    expect(value(families, "supportbot_cache_entries", { kind: "archive_meta" })).toBe(json.cache.archives_metadata);
    expect(value(families, "supportbot_cache_entries", { kind: "embedding" })).toBe(json.cache.embeddings);
    expect(value(families, "supportbot_metrics_complete")).toBe(json.complete ? 1 : 0);
    expect(value(families, "supportbot_up", { binding: "ARCHIVE_R2" })).toBe(1);
    expect(value(families, "supportbot_circuit_breaker_state", { binding: "CHAT_KV", state: "closed" })).toBe(1);
    expect(value(families, "supportbot_circuit_breaker_state", { binding: "CHAT_KV", state: "open" })).toBe(0);
    const health = await service.healthCheck();
    expect(value(families, "supportbot_verification_problems")).toBe(health.verification!.problems);
    expect(value(families, "supportbot_verification_last_complete_timestamp_seconds")).toBe(Date.parse(health.verification!.lastCompleteAt!) / 1000);
    const [newest] = await service.listBackups({ limit: 1 });
    expect(value(families, "supportbot_backup_last_timestamp_seconds", { kind: newest!.kind })).toBe(newest!.createdAt / 1000);
    expect(value(families, "supportbot_retention_last_complete_timestamp_seconds")).toBe(now / 1000);

    // A scraper's Accept header asks for it too; JSON stays the default, and users get 403.
    const accepted = await scrape("/metrics", { accept: "text/plain;version=0.0.4;q=0.9,*/*;q=0.1" });
    expect(accepted.headers.get("content-type")).toContain("text/plain");
    expect((await scrape("/metrics")).headers.get("content-type")).toContain("application/json");
    expect((await scrape("/metrics?format=prometheus", {}, user)).status).toBe(403);
  });
});
