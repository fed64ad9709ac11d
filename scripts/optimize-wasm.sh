#!/usr/bin/env bash
# `scripts/optimize-wasm.sh FILE.wasm`: runs wasm-opt (npm's binaryen; Debian's wasm-opt 108
# emits modules that trap at init) on wasm-bindgen output, in place. Results are cached in
# target/wasm-opt/ by input hash: wasm-bindgen output is deterministic for the same Rust.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

file="$1"
# The features are the ones rustc's wasm32 target emits, plus simd128 (.cargo/config.toml).
# -O3: -Os/-Oz/--converge change the gzipped size by under 0.1 % here (bench/NOTES.md);
# the two stripped custom sections are toolchain metadata no runtime reads.
WASM_OPT_FLAGS=(-O3 --strip-producers --strip-target-features
  --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
# The flags are part of the key: changing them must not reuse an old result.
input_hash="$( { cat "$file"; echo "${WASM_OPT_FLAGS[*]}"; } | sha256sum | cut -d' ' -f1)"
optimised="target/wasm-opt/$input_hash.wasm"
if [ ! -f "$optimised" ]; then
  step "build: wasm-opt $(basename "$file")"
  mkdir -p target/wasm-opt
  wasm-opt "${WASM_OPT_FLAGS[@]}" "$file" -o "$optimised.tmp"
  mv "$optimised.tmp" "$optimised"
fi
cp "$optimised" "$file"
