// The real `wrangler dev` for the end-to-end tests: scripts/start.sh with SKIP_BUILD=1 (the flags
// `npm start` uses) on free ports with a throwaway state directory, and a stop that always ends
// the whole process group. Needs a built dist/ (npm test builds it first).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const READY_TIMEOUT_MS = 45_000;
const START_ATTEMPTS = 3;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Signals the child's process group, if it still runs. */
function signalGroup(child, signal) {
  if (child && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Starts scripts/start.sh on fresh ports and waits until /health answers 200. */
async function startOnce(stateDir, state) {
  const [port, inspectorPort] = [await freePort(), await freePort()];
  state.base = `http://127.0.0.1:${port}`;
  state.output = "";
  const child = spawn("bash", ["scripts/start.sh", "--inspector-port", String(inspectorPort)], {
    cwd: ROOT,
    env: { ...process.env, SKIP_BUILD: "1", PORT: String(port), PERSIST_TO: stateDir, CI: "1", NO_COLOR: "1" },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  state.child = child;
  child.stdout.on("data", (chunk) => (state.output += chunk));
  child.stderr.on("data", (chunk) => (state.output += chunk));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${state.output}`);
    try {
      const response = await fetch(`${state.base}/health`);
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`wrangler dev not ready after ${READY_TIMEOUT_MS} ms:\n${state.output}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * Starts `wrangler dev` and resolves once it serves: `base` is its URL, `output` what it printed
 * so far (the Worker's log lines included), `stop()` ends it and removes its state.
 */
export async function startWranglerDev() {
  const stateDir = mkdtempSync(join(tmpdir(), "supportbot-e2e-"));
  const state = { base: "", output: "", child: null };
  const killOnExit = () => signalGroup(state.child, "SIGKILL");
  process.on("exit", killOnExit);

  async function stop() {
    const child = state.child;
    signalGroup(child, "SIGTERM");
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      const killed = setTimeout(() => signalGroup(child, "SIGKILL"), 5000);
      await exited;
      clearTimeout(killed);
    }
    process.off("exit", killOnExit);
    rmSync(stateDir, { recursive: true, force: true });
  }

  // A port found free can be taken by another process before wrangler binds it; try new ports
  // then, and only then.
  for (let attempt = 1; ; attempt++) {
    try {
      await startOnce(stateDir, state);
      break;
    } catch (error) {
      signalGroup(state.child, "SIGTERM");
      if (attempt === START_ATTEMPTS || !/Address already in use/.test(String(error))) {
        await stop();
        throw error;
      }
    }
  }
  return {
    get base() {
      return state.base;
    },
    get output() {
      return state.output;
    },
    stop,
  };
}

/** Polls `predicate` (sync or async) until it holds or `timeoutMs` passes; resolves to its last answer. */
export async function waitFor(predicate, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return predicate();
}

/** A JSON call to the Worker at `base`: `{status, body}` (the body as text when it is not JSON). */
export async function call(base, method, path, token, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}
