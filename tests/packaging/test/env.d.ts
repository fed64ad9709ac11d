// Types for `cloudflare:workers` in tests: the main module's exports and the bindings.
import type { PersistenceEnv } from "supportbot-persistence";

declare global {
  namespace Cloudflare {
    interface GlobalProps {
      mainModule: typeof import("../src/index.js");
    }
    interface Env extends PersistenceEnv {}
  }
}
