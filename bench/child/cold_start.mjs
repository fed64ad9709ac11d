// One cold start in a fresh process: WebAssembly.compile of the shipped .wasm, then
// wasm-bindgen's initSync (instantiate + start), then the first call. Prints JSON.
import { readFileSync } from "node:fs";

const wasmUrl = new URL("../../dist/wasm/supportbot_persistence_bg.wasm", import.meta.url);
const bytes = readFileSync(wasmUrl);
const glue = await import("../../dist/wasm/supportbot_persistence.js");
const t0 = performance.now();
const module = await WebAssembly.compile(bytes);
const t1 = performance.now();
glue.initSync({ module });
const t2 = performance.now();
glue.hashText("first call");
const t3 = performance.now();
process.stdout.write(JSON.stringify({ compileMs: t1 - t0, instantiateMs: t2 - t1, firstCallMs: t3 - t2 }));
