import { routeAgentRequest } from "agents";
import { PersistentChatAgent, type ChatPersistenceEnv } from "supportbot-persistence/agents";

export interface Env extends ChatPersistenceEnv {
  CHAT_KV: KVNamespace;
  ARCHIVE_R2: R2Bucket;
  SupportChat: DurableObjectNamespace<SupportChat>;
}

/** A support chat: archives when the chat ends, offloads past 1 MB. No model is called in tests. */
export class SupportChat extends PersistentChatAgent<Env> {
  override maxHotBytes: number | undefined = 1024 * 1024;
  /** Tests set it to make the clear after a verified archive throw (a crash between the two). */
  failClear = false;

  override async onChatMessage(): Promise<Response> {
    return new Response("no model in tests");
  }

  protected override async clearPersistedMessages(): Promise<void> {
    if (this.failClear) throw new Error("crash before the clear");
    await super.clearPersistedMessages();
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    return (await routeAgentRequest(request, env)) ?? new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
