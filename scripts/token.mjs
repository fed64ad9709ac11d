#!/usr/bin/env node
// Mints a bearer token for the example Worker: `node scripts/token.mjs [--service] alice [ttlSeconds]`
// (--service: role "service", which alone may write the shared caches). The format is the
// Worker's (js/example/auth.ts): base64url(JSON {userId, exp, role?}) "." base64url(HMAC-SHA256
// of the first part). The secret is $AUTH_SECRET, else the dev value that
// scripts/start.sh passes to `wrangler dev` (read from that script, so there is one copy).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The dev AUTH_SECRET of `npm start`, as written in scripts/start.sh. */
export function devAuthSecret() {
  const script = readFileSync(fileURLToPath(new URL("./start.sh", import.meta.url)), "utf8");
  const value = /^DEV_AUTH_SECRET="([^"]+)"$/m.exec(script)?.[1];
  if (!value) throw new Error("scripts/start.sh defines no DEV_AUTH_SECRET");
  return value;
}

/** A token for `userId`, valid for `ttlSeconds`, signed with `secret`; `role` is "service" or undefined. */
export async function mintToken(userId, secret, ttlSeconds = 24 * 3600, nowMs = Date.now(), role = undefined) {
  const encoder = new TextEncoder();
  const claims = { userId, exp: Math.floor(nowMs / 1000) + ttlSeconds, ...(role && { role }) };
  const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = Buffer.from(await crypto.subtle.sign("HMAC", key, encoder.encode(payload))).toString("base64url");
  return `${payload}.${signature}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const role = args[0] === "--service" ? (args.shift(), "service") : undefined;
  const [userId, ttl, extra] = args;
  const validUserId = userId && Buffer.byteLength(userId) <= 128 && !/[\p{Cc}\uD800-\uDFFF\uFFFD]/u.test(userId);
  if (!validUserId || extra !== undefined) {
    console.error("usage: node scripts/token.mjs [--service] <userId> [ttlSeconds]   (userId: 1-128 bytes, no control characters)");
    process.exit(2);
  }
  const ttlSeconds = ttl === undefined ? 24 * 3600 : Number(ttl);
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    console.error("ttlSeconds must be a positive integer");
    process.exit(2);
  }
  console.log(await mintToken(userId, process.env.AUTH_SECRET || devAuthSecret(), ttlSeconds, Date.now(), role));
}
