// archiveUIMessages / retrieveUIMessages through the built package, inside workerd, against the
// real local KV and R2 of wrangler.toml.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DataPersistenceService, isPersistenceError, type UIMessage } from "supportbot-persistence";

const T0 = 1_736_157_600_000;

/** A support chat with every part type the AI SDK defines, tools in every state, and what no SDK defines yet. */
function uiMessages(sessionId: string): UIMessage[] {
  return [
    {
      id: `${sessionId}-u1`,
      role: "user",
      metadata: { createdAt: T0, locale: "de-DE" },
      parts: [
        { type: "text", text: "I was charged twice for my subscription" },
        { type: "file", mediaType: "application/pdf", filename: "invoice.pdf", url: "data:application/pdf;base64,JVBERi0xLjQK" },
      ],
    },
    {
      id: `${sessionId}-a1`,
      role: "assistant",
      metadata: { createdAt: new Date(T0 + 90_000).toISOString(), model: "m-1", usage: { inputTokens: 12, outputTokens: 3 } },
      parts: [
        { type: "step-start" },
        { type: "reasoning", text: "Probably a duplicate payment; check the invoices.", state: "done", providerMetadata: { anthropic: { signature: "sig==" } } },
        { type: "tool-listInvoices", toolCallId: "c1", state: "input-streaming", input: { month: "2025-" } },
        { type: "tool-listInvoices", toolCallId: "c2", state: "input-available", input: { month: "2025-01" }, callProviderMetadata: { openai: { itemId: "i" } } },
        { type: "tool-listInvoices", toolCallId: "c3", state: "output-available", input: { month: "2025-01" }, output: [{ id: "INV-1", amount: 9.99 }, { id: "INV-2", amount: 9.99 }], providerExecuted: false, preliminary: false },
        { type: "tool-refund", toolCallId: "c4", state: "output-error", input: { id: "INV-2" }, errorText: "refund service unavailable" },
        { type: "tool-refund", toolCallId: "c5", state: "approval-requested", input: { id: "INV-2" }, approval: { id: "ap-1" } },
        { type: "dynamic-tool", toolName: "crm_lookup", toolCallId: "c6", state: "output-available", input: { email: "a@example.com" }, output: { tier: "gold" } },
        { type: "dynamic-tool", toolName: "crm_lookup", toolCallId: "c7", state: "output-error", input: null, errorText: "timeout" },
        { type: "source-url", sourceId: "s1", url: "https://example.com/billing", title: "Billing FAQ" },
        { type: "source-document", sourceId: "s2", mediaType: "text/plain", title: "Refund policy", filename: "refunds.txt" },
        { type: "data-ticket", id: "t1", data: { number: 1234, tags: ["billing", null] } },
        { type: "text", text: "You were charged twice; I opened ticket 1234 for the refund.", state: "done" },
        { type: "x-future-part", anything: { nested: [1, 2.5, "ü 請 😀", false] } },
      ],
    },
    { id: `${sessionId}-s1`, role: "system", parts: [], futureMember: { kept: true } } as UIMessage,
    { id: `${sessionId}-u2`, role: "user", metadata: "not an object", parts: [{ type: "text", text: "Thanks!" }] },
  ];
}

async function codeAndMessage(promise: Promise<unknown>): Promise<[string, string] | undefined> {
  try {
    await promise;
  } catch (error) {
    expect(isPersistenceError(error)).toBe(true);
    return [(error as { code: string }).code, (error as Error).message];
  }
  return undefined;
}

describe("UIMessage archives", () => {
  const service = new DataPersistenceService(env);

  it("round-trips every part type, is listed, and reads as a conversation", async () => {
    const messages = uiMessages("ui-round-trip");
    const key = await service.archiveUIMessages("ui-round-trip", messages, { userId: "ui-user", summary: "Double charge" });
    expect(key).toMatch(/^conversations\/\d{4}\/\d{2}\/archive_ui-round-trip_\d{13}\.json\.gz$/);
    expect((await env.ARCHIVE_R2.head(key))?.customMetadata?.sha256).toMatch(/^[0-9a-f]{64}$/);

    expect(await service.retrieveUIMessages("ui-round-trip")).toEqual(messages);

    const listed = await service.listArchivedConversations("ui-user");
    expect(listed.map((a) => [a.key, a.sessionId, a.messageCount, a.summary, a.topics, a.duration])).toEqual([
      [key, "ui-round-trip", 4, "Double charge", ["billing"], 90_000],
    ]);

    // A reader that knows nothing of UIMessages sees the text of the text parts.
    const conversation = await service.retrieveArchivedConversation("ui-round-trip");
    expect(conversation?.messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "I was charged twice for my subscription"],
      ["assistant", "You were charged twice; I opened ticket 1234 for the refund."],
      ["system", ""],
      ["user", "Thanks!"],
    ]);
    expect(conversation?.messages[1]?.timestamp).toBe(T0 + 90_000);
    expect(conversation?.sessionState?.userId).toBe("ui-user");
  });

  it("round-trips a long conversation, texts of every kind, and messages with toJSON", async () => {
    const texts = ["plain", "two\n\nparagraphs", "", "Grüße 👋 — 請", '"quoted" \\ back\tslash', "\u0000\u001f"];
    const messages: UIMessage[] = Array.from({ length: 150 }, (_, i) => ({
      id: `long-${i}`,
      role: i % 2 === 0 ? "user" : "assistant",
      metadata: { createdAt: T0 + i * 1000 },
      parts: [{ type: "text", text: texts[i % texts.length]! }, { type: "text", text: texts[(i + 1) % texts.length]! }],
    }));
    // Stringified alone, as JSON.stringify of the message would: toJSON is given the key "".
    const withToJson = { toJSON: (key: string) => ({ id: `to-json-${JSON.stringify(key)}`, role: "user", parts: [{ type: "text", text: "from toJSON" }] }) };
    const key = await service.archiveUIMessages("ui-long", [...messages, withToJson as unknown as UIMessage]);
    const back = await service.retrieveUIMessagesByKey(key);
    expect(back?.slice(0, 150)).toEqual(messages);
    expect(back?.[150]).toEqual({ id: 'to-json-""', role: "user", parts: [{ type: "text", text: "from toJSON" }] });
    const conversation = await service.retrieveArchive(key);
    expect(conversation?.messages[1]?.content).toBe(`${texts[1]}\n\n${texts[2]}`);
    expect(conversation?.messages[3]?.content).toBe(`${texts[3]}\n\n${texts[4]}`);
  });

  it("reads archives of ChatMessages as one text part each", async () => {
    const sessionId = "ui-from-chat";
    await service.archiveConversation(
      {
        sessionId,
        messages: [
          { id: "m1", sessionId, role: "user", content: "hello", timestamp: T0 },
          { id: "m2", sessionId, role: "assistant", content: "hi there", timestamp: T0 + 1, metadata: { confidence: 0.5 } },
        ],
      },
      { id: sessionId, status: "ended", createdAt: T0, lastActivity: T0 + 1 },
    );
    expect(await service.retrieveUIMessages(sessionId)).toEqual([
      { id: "m1", role: "user", parts: [{ type: "text", text: "hello" }] },
      { id: "m2", role: "assistant", parts: [{ type: "text", text: "hi there" }], metadata: { confidence: 0.5 } },
    ]);
    expect(await service.retrieveUIMessages("ui-never-archived")).toBeNull();
  });

  it("refuses bad input with INVALID_INPUT naming the path, and stores nothing", async () => {
    const before = (await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.length;
    const ok = { id: "1", role: "user", parts: [] };
    const cases: [unknown, string][] = [
      [{ messages: [] }, "messages: must be an array, found object"],
      [undefined, "messages: must be a JSON value"],
      [[ok, ok, ok, { id: "4", role: "user" }], "messages[3].parts: is missing"],
      [[{ role: "user", parts: [] }], "messages[0].id: is missing"],
      [[{ id: "1", role: "robot", parts: [] }], "messages[0].role"],
      [[ok, ok, { id: "3", role: "assistant", parts: [{ type: "step-start" }, { type: "text", text: 42 }] }], "messages[2].parts[1].text: must be a string, found number"],
      [[ok, { id: "2", role: "user", parts: [{ text: "no type" }] }], "messages[1].parts[0].type: is missing"],
    ];
    for (const [messages, needle] of cases) {
      const [code, message] = (await codeAndMessage(service.archiveUIMessages("ui-bad", messages as UIMessage[]))) ?? [];
      expect(code).toBe("INVALID_INPUT");
      expect(message).toContain(needle);
    }
    // Messages are stringified a run at a time; a value JSON cannot hold is still named by its index.
    const many = (index: number, bad: unknown) => Array.from({ length: 150 }, (_, i) => (i === index ? bad : ok));
    const unserializable: [unknown, string][] = [
      [many(70, { ...ok, big: 1n }), "messages[70]: cannot be serialized to JSON"],
      [many(3, () => ok), "messages[3]: must be a JSON value, got function"],
      [many(140, null), "messages[140]: must be an object, found null"],
    ];
    for (const [messages, needle] of unserializable) {
      const [code, message] = (await codeAndMessage(service.archiveUIMessages("ui-bad", messages as UIMessage[]))) ?? [];
      expect(code).toBe("INVALID_INPUT");
      expect(message).toContain(needle);
    }
    expect((await codeAndMessage(service.archiveUIMessages("ui-bad", [], { userId: 7 } as never)))?.[1]).toContain("options.userId");
    expect((await codeAndMessage(service.archiveUIMessages("a/b", [])))?.[0]).toBe("INVALID_ID");
    expect((await codeAndMessage(service.retrieveUIMessages("x/../y")))?.[0]).toBe("INVALID_ID");
    expect((await env.ARCHIVE_R2.list({ prefix: "conversations/" })).objects.length).toBe(before);
  });
});
