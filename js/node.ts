// Entry for Node >= 22 (export condition "node"): reads the .wasm shipped next to this file.
import { readFileSync } from "node:fs";
import { initSync } from "./wasm/supportbot_persistence.js";

initSync({ module: readFileSync(new URL("./wasm/supportbot_persistence_bg.wasm", import.meta.url)) });

export * from "./api.js";
