// Drop-in replacement of the earlier TypeScript implementation (tests/fixtures/drop_in_scenarios.mjs)
// through the built package in Node (dist/node.js, as `import "supportbot-persistence"` resolves
// there), over the in-memory KV and R2 bindings the benchmark uses (bench/lib/bindings.mjs):
// Node has no Workers bindings of its own. The same scenarios run in workerd against real
// local KV and R2 (tests/workerd/drop_in.test.ts).
import { test } from "node:test";

import { freshBindings, VirtualClock } from "../../bench/lib/bindings.mjs";
import * as library from "../../dist/node.js";
import { scenarios } from "../fixtures/drop_in_scenarios.mjs";

// One pair of bindings for all, as one Worker's would be; R2 checks put's sha256 as R2 does.
const bindings = freshBindings(new VirtualClock(Date.now()), { checked: true });

for (const [name, scenario] of Object.entries(scenarios)) {
  test(name, () => scenario(bindings, library));
}
