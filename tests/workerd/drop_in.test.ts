// Drop-in replacement of the earlier TypeScript implementation (tests/fixtures/drop_in_scenarios.mjs)
// through the built package inside workerd, against the real local KV and R2 of wrangler.toml:
// its archives and backups, written as it wrote them, read back; the spec's embedding example;
// a backup of sessions without archives. The same scenarios run in Node (tests/node/).
import { env } from "cloudflare:workers";
import { describe, it } from "vitest";
import * as library from "supportbot-persistence";

import { scenarios } from "../fixtures/drop_in_scenarios.mjs";

describe("drop-in replacement of the earlier implementation, in workerd", () => {
  it.each(Object.entries(scenarios))("%s", async (_name, scenario) => {
    await scenario(env, library);
  });
});
