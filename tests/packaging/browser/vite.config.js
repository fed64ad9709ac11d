import { defineConfig } from "vite";

export default defineConfig({
  root: new URL(".", import.meta.url).pathname,
  logLevel: "warn",
  // The browser entry initialises the wasm with top-level await.
  build: { target: "esnext", outDir: "dist", emptyOutDir: true },
});
