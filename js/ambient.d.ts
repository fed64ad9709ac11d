// Module shapes the build relies on, declared here so the library needs neither @types/node
// nor bundler-specific type packages.

/** wrangler (esbuild) and vitest-plugin turn a `.wasm` import into a compiled module. */
declare module "*.wasm" {
  const wasmModule: WebAssembly.Module;
  export default wasmModule;
}

/** The one Node API the Node entry uses. */
declare module "node:fs" {
  export function readFileSync(path: URL): Uint8Array;
}

/** ES module URL (workers-types omits it; Node and bundlers provide it). */
interface ImportMeta {
  readonly url: string;
}
