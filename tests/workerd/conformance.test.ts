// The store conformance suite (src/store/conformance.rs), which the in-memory adapter passes
// natively, run inside workerd through the JS adapters (src/wasm/kv.rs, src/wasm/r2.rs) against
// the real local KV and R2 of wrangler.toml; then the earlier implementation's archives and
// backups, written as it wrote them, read back through the service (src/service/legacy_suite.rs). The suite is a separate wasm module built by
// scripts/build-conformance.sh; if it was not built, importing it fails and so does this file.
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";

// Dynamic imports, resolved when the file runs: vitest caches a file's transform by its content
// (fsModuleCache), and a static import of a module missing at that time would stay unresolved
// in the cache, failing every later run even after the module is built.
const { default: conformanceWasm } = await import("../../target/conformance-pkg/conformance_bg.wasm");
const { conformanceCheckNames, initSync, runStoreConformance } = await import(
  "../../target/conformance-pkg/conformance.js"
);

initSync({ module: conformanceWasm });

/** One check's outcome; `message` says what differed when `ok` is false. */
interface CheckResult {
  name: string;
  ok: boolean;
  message: string;
}

// Known before running, so each check gets its own test and a missing outcome fails.
const checkNames = conformanceCheckNames();
const kvChecks = checkNames.filter((name) => name.startsWith("kv."));
const r2Checks = checkNames.filter((name) => name.startsWith("r2."));
const legacyChecks = checkNames.filter((name) => name.startsWith("legacy."));

describe("store conformance and the earlier implementation's data in workerd (real local KV and R2)", () => {
  const outcomes = new Map<string, CheckResult>();
  let results: CheckResult[] = [];

  beforeAll(async () => {
    // The pagination checks write more than 1000 keys and objects.
    results = (await runStoreConformance(env.CHAT_KV, env.ARCHIVE_R2, `conformance-${Date.now()}/`)) as CheckResult[];
    for (const result of results) outcomes.set(result.name, result);
  }, 300_000);

  it("has KV, R2 and legacy checks, and ran each exactly once, in order", () => {
    expect(kvChecks.length).toBeGreaterThan(0);
    expect(r2Checks.length).toBeGreaterThan(0);
    expect(legacyChecks.length).toBeGreaterThan(0);
    expect(kvChecks.length + r2Checks.length + legacyChecks.length).toBe(checkNames.length);
    expect(results.map((result) => result.name)).toEqual(checkNames);
  });

  it.each(checkNames)("%s", (name) => {
    const outcome = outcomes.get(name);
    expect(outcome, `no outcome for ${name}`).toBeDefined();
    expect(outcome?.message).toBe("");
    expect(outcome?.ok).toBe(true);
  });
});
