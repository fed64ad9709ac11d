// The library's TypeScript API. Platform-neutral: the entry modules (workerd.ts, node.ts,
// browser.ts) initialise the wasm module once, then re-export everything from here.
import * as wasm from "./wasm/supportbot_persistence.js";

/** Every `code` a PersistenceError can carry; stable across releases. */
export const ERROR_CODES = [
  "INVALID_INPUT",
  "INVALID_ID",
  "INVALID_CONFIG",
  "NOT_FOUND",
  "CHECKSUM_MISMATCH",
  "ARCHIVE_TOO_LARGE",
  "CORRUPT_DATA",
  "UNSUPPORTED_FORMAT",
  "STORAGE_UNAVAILABLE",
  "CIRCUIT_OPEN",
] as const;

/** The stable, machine-readable reason of a PersistenceError. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error raised by this library: an `Error` whose `code` says what went wrong. */
export interface PersistenceError extends Error {
  name: "PersistenceError";
  code: ErrorCode;
}

/** Tells a PersistenceError (thrown by this library) apart from any other thrown value. */
export function isPersistenceError(error: unknown): error is PersistenceError {
  return (
    error instanceof Error &&
    error.name === "PersistenceError" &&
    (ERROR_CODES as readonly string[]).includes((error as { code?: unknown }).code as string)
  );
}

/** SHA-256 of the UTF-8 bytes of `text`, as 64 lowercase hex characters. */
export function hashText(text: string): string {
  return wasm.hashText(text);
}

/** The library version (same as the npm package and the Rust crate). */
export function libraryVersion(): string {
  return wasm.libraryVersion();
}

/** The error codes as the Rust core defines them (equal to ERROR_CODES; checked in tests). */
export function errorCodes(): string[] {
  return wasm.errorCodes();
}

/** That the wasm module is loaded and answering, with the time it answered. */
export interface LivenessReport {
  status: "alive";
  library: string;
  version: string;
  /** RFC 3339 UTC time with milliseconds. */
  timestamp: string;
}

/** Builds the liveness report in Rust; throws INVALID_INPUT for a time that is not a valid epoch-ms. */
export function livenessReport(nowMs: number = Date.now()): LivenessReport {
  return JSON.parse(wasm.livenessReport(nowMs)) as LivenessReport;
}
