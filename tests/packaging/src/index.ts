// A user's existing Worker: it imports the library by package name and re-exports its Durable
// Object class, the way the README tells users to.
import { hashText, isPersistenceError, livenessReport, type PersistenceEnv } from "supportbot-persistence";

export { SessionMemoryDO } from "supportbot-persistence";

export default {
  async fetch(request: Request, env: PersistenceEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/health") return Response.json(livenessReport());
    if (url.pathname === "/remember" && request.method === "POST") {
      const text = await request.text();
      const key = `query:${hashText(text)}`;
      await env.CHAT_KV.put(key, text);
      const session = env.SESSION_MEMORY.get(env.SESSION_MEMORY.idFromName("consumer"));
      const count = await session.addMessage({
        id: key,
        sessionId: "consumer",
        role: "user",
        content: text,
        timestamp: Date.now(),
      });
      return Response.json({ key, count });
    }
    if (url.pathname === "/error") {
      try {
        livenessReport(-1);
      } catch (error) {
        return Response.json({ recognised: isPersistenceError(error), code: (error as { code?: string }).code });
      }
    }
    return new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<PersistenceEnv>;
