#!/usr/bin/env bash
# `npm test`: installs what is missing (scripts/setup.sh), builds, then runs every test layer.
# Every layer runs even when an earlier one failed; each prints its pass count, and the script
# exits non-zero if any layer failed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
export NO_COLOR=1 FORCE_COLOR=0 CARGO_TERM_COLOR=never

bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }

LOGS="target/test-logs"
mkdir -p "$LOGS"
declare -a SUMMARY=()
total_passed=0
total_failed=0
failed_layers=0

# Sums the passed (or failed) counts a runner printed: cargo / wasm-bindgen-test
# ("test result: ok. N passed; M failed"), vitest ("Tests  N passed | M failed") and
# node --test ("# pass N" / "# fail N").
count_tests() {
  local log="$1" kind="$2" node_kind
  [ "$kind" = passed ] && node_kind=pass || node_kind=fail
  {
    grep -E '^test result:' "$log" | grep -Eo "[0-9]+ $kind"
    grep -E '^\s*Tests\s' "$log" | grep -Eo "[0-9]+ $kind"
    grep -E "^# $node_kind [0-9]+$" "$log" | awk '{ print $3 }'
  } | awk '{ n += $1 } END { print n + 0 }'
}

# run_layer NAME COUNTED COMMAND...: COUNTED is "tests" for a test runner, "none" for a check.
run_layer() {
  local name="$1" counter="$2"; shift 2
  local log="$LOGS/${name//[^a-zA-Z0-9]/_}.log"
  step "$name"
  local started=$SECONDS
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local passed=0 failed=0
  if [ "$counter" = tests ]; then
    passed=$(count_tests "$log" passed)
    failed=$(count_tests "$log" failed)
  fi
  # A layer that exits 0 but ran no test is a failure: it proves nothing.
  if [ "$status" -eq 0 ] && [ "$counter" != none ] && [ "$passed" -eq 0 ]; then status=1; fi
  total_passed=$((total_passed + passed)); total_failed=$((total_failed + failed))
  local verdict=ok
  if [ "$status" -ne 0 ]; then verdict=FAILED; failed_layers=$((failed_layers + 1)); fi
  if [ "$counter" = none ]; then
    SUMMARY+=("$(printf '%-34s %-7s %s' "$name" "$verdict" "($((SECONDS - started)) s)")")
  else
    SUMMARY+=("$(printf '%-34s %-7s %5d passed %3d failed  (%d s)' "$name" "$verdict" "$passed" "$failed" $((SECONDS - started)))")
  fi
}

run_layer "cargo fmt --check" none cargo fmt --check
run_layer "cargo clippy (native)" none cargo clippy --all-targets --all-features --quiet -- -D warnings
run_layer "cargo clippy (wasm32)" none cargo clippy --all-targets --all-features --quiet --target wasm32-unknown-unknown -- -D warnings
run_layer "cargo test (native)" tests cargo test --all-features
run_layer "build (wasm + TypeScript)" none bash scripts/build.sh
run_layer "wasm-pack test --headless --chrome" tests env WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome
run_layer "wasm-pack test --node" tests wasm-pack test --node
# Before tsc: tests/workerd/conformance.test.ts imports the module (and its .d.ts) it builds.
run_layer "build conformance wasm" none bash scripts/build-conformance.sh
# The second: the dashboard's browser script (JSDoc-typed JavaScript) against the DOM.
run_layer "tsc --noEmit" none bash -c 'tsc -p tsconfig.json && tsc -p js/example/dashboard/tsconfig.json'
run_layer "vitest in workerd" tests vitest run
run_layer "built package in Node" tests node --test "tests/node/*.test.mjs"
# Node 22 takes a glob, not a directory: the real `wrangler dev` serving the README walkthrough.
run_layer "end-to-end (wrangler dev)" tests node --test "tests/e2e/*.test.mjs"
run_layer "benchmark smoke (1 iteration)" none bash scripts/bench.sh --smoke
run_layer "packaging (npm pack, consumer)" tests bash scripts/test-packaging.sh
run_layer "agents SDK (npm pack, AIChatAgent)" tests bash scripts/test-agents.sh

printf '\n== summary\n'
printf '%s\n' "${SUMMARY[@]}"
echo "logs: $LOGS/"
echo "$total_passed passed, $total_failed failed"
[ "$failed_layers" -eq 0 ]
