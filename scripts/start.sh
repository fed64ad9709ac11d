#!/usr/bin/env bash
# `npm start`: installs what is missing, builds the package, and serves the example Worker
# (js/example/worker.ts) on http://localhost:8787 with local KV, R2 and Durable Object state persisted
# under .wrangler/state. --test-scheduled exposes /__scheduled to run the cron handler by hand.
#
# AUTH_SECRET (the key of the bearer tokens) is a Worker secret in production
# (`wrangler secret put AUTH_SECRET`); only here, for local development, it gets the dev value
# below, which `node scripts/token.mjs <userId>` also signs with. Never deploy with it.
#
# Environment: PORT (8787), PERSIST_TO (.wrangler/state), SKIP_BUILD=1 to serve the current
# dist/ without setup and build (the end-to-end test does, after `npm test` built it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

DEV_AUTH_SECRET="dev-only-auth-secret-do-not-deploy-0123456789"
# The hash secret of cache and user-index keys (PERSISTENCE_HASH_SECRET, a Worker secret in
# production), so local runs exercise the keyed (HMAC) key path like a deployment should.
DEV_HASH_SECRET="dev-only-hash-secret-do-not-deploy"
# The key-encryption keys (PERSISTENCE_ENCRYPTION_KEYS, a Worker secret in production: README
# "Encryption"), so local runs store every archive encrypted like a deployment should. The key is
# base64 of the 32 bytes "dev-only-encryption-key-01234567": public, so never deploy with it.
DEV_ENCRYPTION_KEYS='[{"id":"dev-only","key":"ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc="}]'

if [ -z "${SKIP_BUILD:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh
fi
step "wrangler dev on http://localhost:${PORT:-8787}"
exec wrangler dev --port "${PORT:-8787}" --ip 127.0.0.1 --persist-to "${PERSIST_TO:-.wrangler/state}" --test-scheduled \
  --var "AUTH_SECRET:$DEV_AUTH_SECRET" --var "PERSISTENCE_HASH_SECRET:$DEV_HASH_SECRET" \
  --var "PERSISTENCE_ENCRYPTION_KEYS:$DEV_ENCRYPTION_KEYS" "$@"
