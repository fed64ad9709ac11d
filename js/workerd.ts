// Entry for Cloudflare Workers (export condition "workerd"): wrangler bundles the .wasm as a
// compiled WebAssembly.Module, so instantiation is synchronous and happens once per isolate,
// when this module is first evaluated.
import wasmModule from "./wasm/supportbot_persistence_bg.wasm";
import { initSync } from "./wasm/supportbot_persistence.js";

initSync({ module: wasmModule });

export * from "./api.js";
export { SessionMemoryDO, sessionErrorCode } from "./session_memory_do.js";
export {
  BackupWorkflow,
  DEFAULT_STEP_ARCHIVES,
  REPLICATE_STEP_CALLS,
  replicateCommitted,
  RestoreWorkflow,
  type BackupOutcome,
  type RestoreOutcome,
} from "./backup_workflow.js";
export type {
  ArchiveSummary,
  JsonScalar,
  SessionContext,
  SessionErrorCode,
  SessionInfo,
  SessionMessage,
} from "./session_memory_do.js";
export type { PersistenceEnv } from "./env.js";
