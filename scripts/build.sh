#!/usr/bin/env bash
# Builds the npm package into dist/: Rust → wasm (wasm-pack, --target web) → wasm-opt (npm's
# binaryen; Debian's wasm-opt 108 emits modules that trap at init) → TypeScript (tsc).
# Incremental: cargo skips unchanged Rust, and wasm-opt results are cached by input hash.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

OUT=js/wasm
NAME=supportbot_persistence

step "build: wasm"
wasm-pack --log-level warn build --release --target web --no-pack --no-opt \
  --out-dir "$OUT" --out-name "$NAME"
rm -f "$OUT/.gitignore"

# The features are the ones rustc's wasm32 target emits, plus simd128 (.cargo/config.toml).
# -O3: -Os/-Oz/--converge change the gzipped size by under 0.1 % here (bench/NOTES.md);
# the two stripped custom sections are toolchain metadata no runtime reads.
WASM_OPT_FLAGS=(-O3 --strip-producers --strip-target-features
  --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
# wasm-bindgen output is deterministic for the same Rust, so its hash (with the flags) keys the cache.
input_hash="$( { cat "$OUT/${NAME}_bg.wasm"; echo "${WASM_OPT_FLAGS[*]}"; } | sha256sum | cut -d' ' -f1)"
optimised="target/wasm-opt/$input_hash.wasm"
if [ ! -f "$optimised" ]; then
  step "build: wasm-opt"
  mkdir -p target/wasm-opt
  wasm-opt "${WASM_OPT_FLAGS[@]}" "$OUT/${NAME}_bg.wasm" -o "$optimised.tmp"
  mv "$optimised.tmp" "$optimised"
fi
cp "$optimised" "$OUT/${NAME}_bg.wasm"

step "build: TypeScript"
rm -rf dist
tsc -p js/tsconfig.build.json
mkdir -p dist/wasm
cp "$OUT/${NAME}.js" "$OUT/${NAME}.d.ts" "$OUT/${NAME}_bg.wasm" "$OUT/${NAME}_bg.wasm.d.ts" dist/wasm/
raw_size=$(stat -c %s "dist/wasm/${NAME}_bg.wasm")
gz_size=$(gzip -9 -c "dist/wasm/${NAME}_bg.wasm" | wc -c)
echo "dist/wasm/${NAME}_bg.wasm: $raw_size bytes raw, $gz_size bytes gzipped"
