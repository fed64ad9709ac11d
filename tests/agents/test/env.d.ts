// Types for `cloudflare:workers` in tests: the main module's exports and the bindings.
import type { Env as ConsumerEnv } from "../src/index.js";

declare global {
  namespace Cloudflare {
    interface GlobalProps {
      mainModule: typeof import("../src/index.js");
    }
    interface Env extends ConsumerEnv {}
  }
}
