import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: { compatibilityFlags: ["nodejs_compat"] },
    }),
  ],
  test: { include: ["test/**/*.test.ts"] },
});
