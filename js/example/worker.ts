// The example Worker: a small JSON API over the library, served by `npm start` (see
// the README walkthrough). Imported by package name, exactly as a user's Worker would (resolves to
// the built dist/). Routes live in routes.ts, token checks in auth.ts.
import { runtime, type ExampleEnv } from "./config.js";
import { errorResponse, toHttpError } from "./http.js";
import { runScheduledRetention } from "./retention.js";
import { route } from "./routes.js";

export { SessionMemoryDO } from "supportbot-persistence";

export default {
  async fetch(request: Request, env: ExampleEnv): Promise<Response> {
    try {
      return await route(request, env, runtime(env));
    } catch (error) {
      return errorResponse(toHttpError(error));
    }
  },

  async scheduled(controller: ScheduledController, env: ExampleEnv): Promise<void> {
    await runScheduledRetention(controller.cron, env);
  },
} satisfies ExportedHandler<ExampleEnv>;
