#!/usr/bin/env bash
# `npm run bench [-- --write]`: builds the package (unless SKIP_BUILD=1) and runs bench/run.mjs,
# every contender side by side in one Node 22 process, the native Rust one as a cargo example,
# then bench/encryption.mjs (what encryption at rest costs, bench/NOTES.md "Encryption"),
# bench/erasure.mjs (what erasing a user costs, "Erasure"), bench/export.mjs (exports and
# imports, "Export and import"), bench/offload.mjs (an Agents SDK segment, "Offload") and
# bench/verification.mjs (what verifyStorage checks per CPU-second, "Verification") and
# bench/analytics.mjs (CPU an Analytics Engine data point adds to a call, "Analytics").
# `--smoke` (CI, scripts/test.sh): one iteration on tiny inputs over the dist/ already built;
# it checks that the harness works and never fails on a target.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

smoke=""
for arg in "$@"; do [ "$arg" = "--smoke" ] && smoke=1; done
if [ -z "${SKIP_BUILD:-}" ] && { [ -z "$smoke" ] || [ ! -f dist/node.js ]; }; then
  bash scripts/build.sh
fi
step "benchmark${smoke:+ (smoke)}"
node bench/run.mjs "$@"
step "benchmark: encryption${smoke:+ (smoke)}"
node bench/encryption.mjs ${smoke:+--smoke}
step "benchmark: erasure${smoke:+ (smoke)}"
node bench/erasure.mjs ${smoke:+--smoke}
step "benchmark: export and import${smoke:+ (smoke)}"
node --expose-gc bench/export.mjs ${smoke:+--smoke}
step "benchmark: offload${smoke:+ (smoke)}"
node bench/offload.mjs ${smoke:+--smoke}
step "benchmark: verification${smoke:+ (smoke)}"
node bench/verification.mjs ${smoke:+--smoke}
step "benchmark: analytics${smoke:+ (smoke)}"
node bench/analytics.mjs ${smoke:+--smoke}
