// Bindings of wrangler.toml as seen by tests (`import { env } from "cloudflare:workers"`).
/// <reference types="@cloudflare/vitest-plugin/types" />
import type { BackupRequest, PersistenceEnv, RestoreRequest } from "supportbot-persistence";

declare global {
  namespace Cloudflare {
    interface GlobalProps {
      mainModule: typeof import("../../js/example/worker.js");
    }
    interface Env extends PersistenceEnv {
      BACKUP_WORKFLOW: Workflow<BackupRequest>;
      RESTORE_WORKFLOW: Workflow<RestoreRequest>;
      BACKUP_INTERVAL_HOURS?: string;
      // Test config only (vitest.config.ts): a store to export from and one to import into.
      CHAT_KV_EXPORT: KVNamespace;
      ARCHIVE_R2_EXPORT: R2Bucket;
      CHAT_KV_IMPORT: KVNamespace;
      ARCHIVE_R2_IMPORT: R2Bucket;
      // Test config only: the replica bucket of tests/workerd/replica.test.ts.
      ARCHIVE_R2_REPLICA_TEST: R2Bucket;
    }
  }
}
