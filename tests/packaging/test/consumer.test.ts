// Runs inside workerd against the installed tarball: the library as a user's Worker gets it.
import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";
import { hashText, libraryVersion } from "supportbot-persistence";

it("the installed library reports its version", () => {
  expect(libraryVersion()).toMatch(/^\d+\.\d+\.\d+$/);
});

it("a user's Worker answers through the library", async () => {
  const health = (await (await exports.default.fetch(new Request("http://x/health"))).json()) as { status: string };
  expect(health.status).toBe("alive");

  const stored = await exports.default.fetch(new Request("http://x/remember", { method: "POST", body: "how do I reset my password?" }));
  expect(await stored.json()).toEqual({ key: `query:${hashText("how do I reset my password?")}`, count: 1 });

  const error = await exports.default.fetch(new Request("http://x/error"));
  expect(await error.json()).toEqual({ recognised: true, code: "INVALID_INPUT" });
});
