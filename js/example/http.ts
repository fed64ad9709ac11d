// JSON responses, coded errors and bounded body reading for the example Worker.
import { isPersistenceError, sessionErrorCode } from "supportbot-persistence";

/** Largest request body the example accepts (an embedding of 4096 numbers fits). */
export const MAX_BODY_BYTES = 256 * 1024;

/** An error the Worker answers with `{ error: { code, message } }` and `status`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

export function errorResponse(error: HttpError): Response {
  return Response.json({ error: { code: error.code, message: error.message } }, { status: error.status, headers: error.headers });
}

/** HTTP status of each library and SessionMemoryDO error code. */
const STATUS_OF_CODE: Record<string, number> = {
  INVALID_INPUT: 400,
  INVALID_ID: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  ARCHIVE_TOO_LARGE: 422,
  INVALID_CONFIG: 500,
  CHECKSUM_MISMATCH: 500,
  CORRUPT_DATA: 500,
  UNSUPPORTED_FORMAT: 500,
  ARCHIVE_UNVERIFIED: 500,
  STORAGE_UNAVAILABLE: 503,
  CIRCUIT_OPEN: 503,
};

/** Turns what a handler threw into an HttpError; unexpected errors become a 500 INTERNAL. */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  const code = isPersistenceError(error) ? error.code : sessionErrorCode(error);
  if (code !== undefined) {
    const message = (error as Error).message.replace(new RegExp(`^${code}: `), "");
    return new HttpError(STATUS_OF_CODE[code] ?? 500, code, message);
  }
  console.error(JSON.stringify({ event: "unexpected_error", message: String((error as Error)?.message ?? error).slice(0, 300) }));
  return new HttpError(500, "INTERNAL", "unexpected error; see the Worker's logs");
}

/** The request body as JSON, refused with 413 past MAX_BODY_BYTES (declared or streamed). */
export async function readJsonBody(request: Request): Promise<unknown> {
  const tooLarge = () => new HttpError(413, "PAYLOAD_TOO_LARGE", `request body is over ${MAX_BODY_BYTES} bytes`);
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  const text = new TextDecoder().decode(bytes);
  if (text.trim() === "") throw new HttpError(400, "INVALID_INPUT", "body: expected a JSON object, got an empty body");
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new HttpError(400, "INVALID_INPUT", `body: not valid JSON (${(error as Error).message})`);
  }
}
