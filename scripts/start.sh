#!/usr/bin/env bash
# `npm start`: installs what is missing, builds the package, and serves the example Worker
# (js/worker.ts) on http://localhost:8787 with local KV, R2 and Durable Object state persisted
# under .wrangler/state. --test-scheduled exposes /__scheduled to run the cron handler by hand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

bash scripts/setup.sh
bash scripts/build.sh
step "wrangler dev on http://localhost:${PORT:-8787}"
exec wrangler dev --port "${PORT:-8787}" --ip 127.0.0.1 --persist-to .wrangler/state --test-scheduled "$@"
