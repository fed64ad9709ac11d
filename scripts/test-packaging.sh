#!/usr/bin/env bash
# Packs the library with `npm pack`, installs the tarball into the throwaway consumer Worker
# project in tests/packaging/, type-checks it and runs its tests inside workerd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CONSUMER=tests/packaging
pack_into "$CONSUMER"
cd "$CONSUMER"
# --prefer-offline: the devDependencies are the root project's, already in npm's cache.
# npm does not re-extract a file: dependency whose version is unchanged; drop the old copy.
rm -rf node_modules/supportbot-persistence
npm install --no-audit --no-fund --prefer-offline --no-package-lock --loglevel=error
./node_modules/.bin/tsc -p tsconfig.json
./node_modules/.bin/vitest run
# The same tarball in Node ESM and in a browser bundle (Vite → headless Chromium).
node --test outside-workerd.test.mjs
