#!/usr/bin/env bash
# Builds the store conformance suite (src/store/conformance.rs, exported by
# src/wasm/conformance.rs) into a separate wasm module, target/conformance-pkg/, which
# tests/workerd/conformance.test.ts runs against workerd's real local KV and R2. A dev build:
# it is test code, and fast to compile matters more than speed or size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

step "build: conformance wasm"
wasm-pack --log-level warn build --dev --target web --no-pack --no-opt \
  --out-dir target/conformance-pkg --out-name conformance -- --features conformance
rm -f target/conformance-pkg/.gitignore
ls -l target/conformance-pkg/conformance_bg.wasm
