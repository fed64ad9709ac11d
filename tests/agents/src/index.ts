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
  /** The most message bytes SQLite held, measured after each SDK write and before any offload. */
  peakHotBytes = 0;
  segmentsWritten = 0;

  override chatUserId(): string | undefined {
    return `owner-of-${this.name}`;
  }

  override async offloadIfNeeded(): Promise<string | null> {
    const held = this.messages.reduce((sum, m) => sum + new TextEncoder().encode(JSON.stringify(m)).byteLength, 0);
    this.peakHotBytes = Math.max(this.peakHotBytes, held);
    const key = await super.offloadIfNeeded();
    if (key !== null) this.segmentsWritten++;
    return key;
  }

  override async onChatMessage(): Promise<Response> {
    return new Response("no model in tests");
  }

  /** Tests set it to make forgetting the segment records after the clear throw once. */
  failForget = false;

  protected override async forgetSegments(key: string): Promise<void> {
    if (this.failForget) {
      this.failForget = false;
      throw new Error("crash before the segment records were dropped");
    }
    await super.forgetSegments(key);
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
