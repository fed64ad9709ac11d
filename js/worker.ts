// The example Worker: a small JSON API over the library, served by `npm start`.
// Imported by package name, exactly as a user's Worker would (resolves to the built dist/).
import { hashText, isPersistenceError, livenessReport, type PersistenceEnv } from "supportbot-persistence";

export { SessionMemoryDO } from "supportbot-persistence";

/** Largest request body the example accepts. */
const MAX_BODY_BYTES = 1 << 20;

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

function errorResponse(status: number, code: string, message: string): Response {
  return json({ error: { code, message } }, status);
}

async function readText(request: Request): Promise<string | Response> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) return errorResponse(413, "PAYLOAD_TOO_LARGE", `body over ${MAX_BODY_BYTES} bytes`);
  const text = await request.text();
  if (text.length > MAX_BODY_BYTES) return errorResponse(413, "PAYLOAD_TOO_LARGE", `body over ${MAX_BODY_BYTES} bytes`);
  return text;
}

export default {
  async fetch(request: Request, _env: PersistenceEnv): Promise<Response> {
    const { pathname } = new URL(request.url);
    try {
      switch (pathname) {
        case "/health":
          if (request.method !== "GET") return errorResponse(405, "METHOD_NOT_ALLOWED", "use GET");
          return json(livenessReport());
        case "/hash": {
          if (request.method !== "POST") return errorResponse(405, "METHOD_NOT_ALLOWED", "use POST");
          const text = await readText(request);
          if (text instanceof Response) return text;
          return json({ sha256: hashText(text) });
        }
        default:
          return errorResponse(404, "NOT_FOUND", `no route ${pathname}`);
      }
    } catch (error) {
      if (isPersistenceError(error)) return errorResponse(400, error.code, error.message);
      throw error;
    }
  },
} satisfies ExportedHandler<PersistenceEnv>;
