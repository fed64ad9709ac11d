// Entry for browsers and bundlers (export conditions "browser" and "default"): wasm-bindgen's
// loader fetches the .wasm next to this file via `new URL(..., import.meta.url)`, which
// bundlers (Vite, webpack, esbuild) understand.
import init from "./wasm/supportbot_persistence.js";

await init();

export * from "./api.js";
