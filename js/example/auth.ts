// Bearer tokens: base64url(JSON {userId, exp, role?}) "." base64url(HMAC-SHA256 of the first
// part), signed with the AUTH_SECRET Worker secret. scripts/token.mjs mints the same format for dev.
import { HttpError } from "./http.js";
import { checkUserId } from "./validate.js";

const encoder = new TextEncoder();

/** The one role a token may carry: a trusted backend job, which alone may write the shared caches. */
export type TokenRole = "service";

/** What a valid token says: who is calling, until when (epoch seconds), and any role. */
export interface TokenClaims {
  userId: string;
  exp: number;
  /** Absent for an end user. */
  role?: TokenRole;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  } catch {
    return null;
  }
}

/** The HMAC key of `secret`, for signing and verifying. */
export function importAuthKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
}

/** Mints a token for `userId` valid for `ttlSeconds` (tests; scripts/token.mjs does the same in Node). */
export async function signToken(key: CryptoKey, userId: string, ttlSeconds = 3600, nowMs = Date.now(), role?: TokenRole): Promise<string> {
  const claims: TokenClaims = { userId, exp: Math.floor(nowMs / 1000) + ttlSeconds, ...(role && { role }) };
  const payload = base64url(encoder.encode(JSON.stringify(claims)));
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(payload)));
  return `${payload}.${base64url(signature)}`;
}

/**
 * The claims of the request's `Authorization: Bearer <token>`, or a 401. The signature is
 * checked by crypto.subtle.verify (constant time) before the payload is even parsed.
 */
export async function authenticate(request: Request, key: CryptoKey, nowMs = Date.now()): Promise<TokenClaims> {
  const unauthorized = (reason: string) =>
    new HttpError(401, "UNAUTHORIZED", reason, { "www-authenticate": 'Bearer realm="supportbot-persistence-example"' });
  const header = request.headers.get("authorization");
  if (header === null) throw unauthorized("missing Authorization: Bearer <token> header");
  const match = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(header.trim());
  if (!match) throw unauthorized("Authorization header is not 'Bearer <payload>.<signature>'");
  const [, payloadPart = "", signaturePart = ""] = match;
  const signature = fromBase64url(signaturePart);
  if (signature === null || !(await crypto.subtle.verify("HMAC", key, signature, encoder.encode(payloadPart)))) {
    throw unauthorized("token signature is not valid");
  }
  let claims: unknown;
  try {
    claims = JSON.parse(new TextDecoder().decode(fromBase64url(payloadPart) ?? new Uint8Array()));
  } catch {
    throw unauthorized("token payload is not JSON");
  }
  const { userId, exp, role } = (claims ?? {}) as Partial<Record<keyof TokenClaims, unknown>>;
  if (typeof userId !== "string" || checkUserId(userId) !== null) throw unauthorized("token userId is missing or not a valid user id");
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw unauthorized("token exp is missing");
  if (exp * 1000 <= nowMs) throw unauthorized("token has expired");
  if (role === undefined) return { userId, exp };
  if (role !== "service") throw unauthorized('token role is not "service"');
  return { userId, exp, role };
}
