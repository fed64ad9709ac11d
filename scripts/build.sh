#!/usr/bin/env bash
# Builds the npm package into dist/: Rust → wasm (wasm-pack, --target web) → wasm-opt (npm's
# binaryen; Debian's wasm-opt 108 emits modules that trap at init) → TypeScript (tsc).
# Incremental: cargo skips unchanged Rust, and wasm-opt results are cached (optimize-wasm.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

OUT=js/wasm
NAME=supportbot_persistence

step "build: wasm"
wasm-pack --log-level warn build --release --target web --no-pack --no-opt \
  --out-dir "$OUT" --out-name "$NAME"
rm -f "$OUT/.gitignore"

bash scripts/optimize-wasm.sh "$OUT/${NAME}_bg.wasm"

step "build: TypeScript"
rm -rf dist
tsc -p js/tsconfig.build.json
mkdir -p dist/wasm
cp "$OUT/${NAME}.js" "$OUT/${NAME}.d.ts" "$OUT/${NAME}_bg.wasm" "$OUT/${NAME}_bg.wasm.d.ts" dist/wasm/
raw_size=$(stat -c %s "dist/wasm/${NAME}_bg.wasm")
gz_size=$(gzip -9 -c "dist/wasm/${NAME}_bg.wasm" | wc -c)
echo "dist/wasm/${NAME}_bg.wasm: $raw_size bytes raw, $gz_size bytes gzipped"
