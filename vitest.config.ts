// Tests that run inside workerd (the real Workers runtime) with the local KV, R2 and Durable
// Object declared in wrangler.toml; they import the built package by name.
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      // vitest's own runner imports node:* modules inside the test isolate.
      miniflare: { compatibilityFlags: ["nodejs_compat"] },
    }),
  ],
  test: {
    include: ["tests/workerd/**/*.test.ts"],
  },
});
