// Tests that run inside workerd (the real Workers runtime) with the local KV, R2 and Durable
// Object declared in wrangler.toml; they import the built package by name.
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        // vitest's own runner imports node:* modules inside the test isolate.
        compatibilityFlags: ["nodejs_compat"],
        // A second pair of bindings to export from and a third to import into
        // (tests/workerd/export.test.ts); test config only, never deployed.
        kvNamespaces: ["CHAT_KV_EXPORT", "CHAT_KV_IMPORT"],
        // A replica bucket (tests/workerd/replica.test.ts passes it as ARCHIVE_R2_REPLICA;
        // under its own name so the other tests keep running without one).
        r2Buckets: ["ARCHIVE_R2_EXPORT", "ARCHIVE_R2_IMPORT", "ARCHIVE_R2_REPLICA_TEST"],
      },
    }),
  ],
  test: {
    include: ["tests/workerd/**/*.test.ts"],
  },
});
