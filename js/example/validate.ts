// Request validation: each failure is a 400 naming the offending field.
import { HttpError } from "./http.js";

export type Scalar = string | number | boolean | null;

/** Longest message text, summary, cached text or query the example accepts. */
export const MAX_TEXT_CHARS = 32 * 1024;
export const MAX_SUMMARY_CHARS = 2000;
export const MAX_EMBEDDING_DIMENSIONS = 4096;
export const MAX_METADATA_KEYS = 32;
export const MAX_BACKUP_SESSIONS = 20;

/** Why `value` cannot be a session or backup id (the library's rules), or null if it can. */
export function checkId(value: string): string | null {
  if (value.length === 0) return "is empty";
  if (value.length > 128) return "is longer than 128 characters";
  if (value.includes("..")) return 'contains ".."';
  if (value.startsWith(".")) return "starts with '.'";
  if (!/^[A-Za-z0-9\-_.:@]+$/.test(value)) return "contains a character other than ASCII letters, digits and - _ . : @";
  return null;
}

/**
 * Why `value` cannot be a user id (the library's rules: user ids are only hashed into keys, so
 * any text of 1-128 UTF-8 bytes without control characters), or null if it can. A lone
 * surrogate would reach wasm as U+FFFD, making two different strings the same user.
 */
export function checkUserId(value: string): string | null {
  if (value.length === 0) return "is empty";
  if (new TextEncoder().encode(value).length > 128) return "is longer than 128 bytes";
  if (/\p{Cc}/u.test(value)) return "contains a control character";
  if (/[\uD800-\uDFFF\uFFFD]/u.test(value)) return "contains a lone surrogate or U+FFFD";
  return null;
}

function invalid(field: string, reason: string): HttpError {
  return new HttpError(400, "INVALID_INPUT", `${field}: ${reason}`);
}

/** A path or body id, checked against the id rules (400 INVALID_ID). */
export function id(field: string, value: unknown): string {
  if (typeof value !== "string") throw invalid(field, "must be a string");
  const reason = checkId(value);
  if (reason !== null) throw new HttpError(400, "INVALID_ID", `${field}: ${JSON.stringify(value.slice(0, 64))} ${reason}`);
  return value;
}

/** A user id from the path, checked against the user id rules (400 INVALID_ID; the value is not echoed). */
export function userId(field: string, value: unknown): string {
  if (typeof value !== "string") throw invalid(field, "must be a string");
  const reason = checkUserId(value);
  if (reason !== null) throw new HttpError(400, "INVALID_ID", `${field}: ${reason}`);
  return value;
}

/** The body as an object whose keys are all in `allowed` (a typo is an error, not ignored). */
export function object(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalid("body", "must be a JSON object");
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw invalid(`body.${key}`, `unknown field (allowed: ${allowed.join(", ")})`);
  }
  return body as Record<string, unknown>;
}

export function text(field: string, value: unknown, maxChars: number, allowEmpty = false): string {
  if (typeof value !== "string") throw invalid(field, "must be a string");
  if (!allowEmpty && value.length === 0) throw invalid(field, "must not be empty");
  if (value.length > maxChars) throw invalid(field, `is ${value.length} characters, over the limit of ${maxChars}`);
  return value;
}

export function optionalText(field: string, value: unknown, maxChars: number): string | undefined {
  return value === undefined ? undefined : text(field, value, maxChars);
}

export function oneOf<T extends string>(field: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
    throw invalid(field, `must be one of ${choices.join(", ")}`);
  }
  return value as T;
}

/** Flat metadata: at most MAX_METADATA_KEYS keys with JSON scalar values. */
export function metadata(field: string, value: unknown): Record<string, Scalar> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(field, "must be an object");
  const entries = Object.entries(value);
  if (entries.length > MAX_METADATA_KEYS) throw invalid(field, `has ${entries.length} keys, over the limit of ${MAX_METADATA_KEYS}`);
  for (const [key, entry] of entries) {
    if (key.length > 64) throw invalid(`${field}.${key.slice(0, 64)}`, "key is longer than 64 characters");
    const scalar = entry === null || ["string", "number", "boolean"].includes(typeof entry);
    if (!scalar) throw invalid(`${field}.${key}`, "must be a string, number, boolean or null");
    if (typeof entry === "string" && entry.length > 1024) throw invalid(`${field}.${key}`, "is longer than 1024 characters");
  }
  return value as Record<string, Scalar>;
}

export function embedding(field: string, value: unknown): number[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid(field, "must be a non-empty array of numbers");
  if (value.length > MAX_EMBEDDING_DIMENSIONS) throw invalid(field, `has ${value.length} dimensions, over the limit of ${MAX_EMBEDDING_DIMENSIONS}`);
  value.forEach((entry, index) => {
    if (typeof entry !== "number" || !Number.isFinite(entry)) throw invalid(`${field}[${index}]`, "must be a finite number");
  });
  return value as number[];
}

export function idList(field: string, value: unknown, max: number): string[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid(field, "must be a non-empty array of ids");
  if (value.length > max) throw invalid(field, `has ${value.length} entries, over the limit of ${max}`);
  const ids = value.map((entry, index) => id(`${field}[${index}]`, entry));
  if (new Set(ids).size !== ids.length) throw invalid(field, "contains duplicates");
  return ids;
}

/** An integer query parameter in `min..=max`, or `fallback` when absent. */
export function intParam(field: string, value: string | null, min: number, max: number, fallback: number): number {
  if (value === null) return fallback;
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw invalid(field, `must be an integer in ${min}..=${max}`);
  return parsed;
}

export function requiredParam(field: string, value: string | null, maxChars: number): string {
  if (value === null) throw invalid(field, "query parameter is required");
  return text(field, value, maxChars);
}
