#!/usr/bin/env bash
# Builds src/wasm/bench.rs (feature `bench`: the service over the in-memory stores, as
# examples/bench_native.rs runs it) into target/bench-core-pkg/, for bench/run.mjs to time the
# same Rust compiled to wasm against the native build. The release profile and wasm-opt pass
# of the shipped module; `--dev` (the smoke run) builds fast instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

profile=--release
[ "${1:-}" = "--dev" ] && profile=--dev
OUT=target/bench-core-pkg
step "build: bench-core wasm ($profile)"
wasm-pack --log-level warn build "$profile" --target web --no-pack --no-opt \
  --out-dir "$OUT" --out-name bench_core -- --features bench
rm -f "$OUT/.gitignore"
if [ "$profile" = --release ]; then
  bash scripts/optimize-wasm.sh "$OUT/bench_core_bg.wasm"
fi
