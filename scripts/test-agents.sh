#!/usr/bin/env bash
# Packs the library with `npm pack`, installs the tarball next to the real Agents SDK (`agents`,
# `@cloudflare/ai-chat`, `ai`, versions pinned in tests/agents/package-lock.json) into the
# throwaway consumer project tests/agents/, type-checks it and runs its AIChatAgent tests in
# workerd. Warm runs install nothing new (`npm ci` is skipped while the lockfile is unchanged).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

CONSUMER=tests/agents
pack_into "$CONSUMER"
cd "$CONSUMER"
stamp=node_modules/.lock-installed
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --prefer-offline --loglevel=error
  cp package-lock.json "$stamp"
else
  # The tarball changes with every build; npm does not re-extract an unchanged version.
  rm -rf node_modules/supportbot-persistence
  mkdir -p node_modules/supportbot-persistence
  tar -xzf supportbot-persistence.tgz -C node_modules/supportbot-persistence --strip-components=1
fi
# Vitest caches transformed modules by content: one cached while the package was broken (a
# failed build) would outlive the fix.
rm -rf node_modules/.vitest-cache node_modules/.vite
./node_modules/.bin/tsc -p tsconfig.json
./node_modules/.bin/vitest run
