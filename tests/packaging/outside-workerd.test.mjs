// The packed tarball: it ships both licenses; installed, it is imported by Node ESM and
// bundled by Vite for a browser page that headless Chromium loads (outside workerd).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const here = fileURLToPath(new URL(".", import.meta.url));

test("the tarball and the installed package ship LICENSE-MIT and LICENSE-APACHE", async () => {
  const listed = execFileSync("tar", ["-tzf", join(here, "supportbot-persistence.tgz")], { encoding: "utf8" }).split("\n");
  const installed = join(here, "node_modules/supportbot-persistence");
  assert.equal(JSON.parse(await readFile(join(installed, "package.json"), "utf8")).license, "MIT OR Apache-2.0");
  for (const file of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    assert.ok(listed.includes(`package/${file}`), `the tarball has no package/${file}`);
    assert.equal(await readFile(join(installed, file), "utf8"), await readFile(join(here, "../..", file), "utf8"), `installed ${file}`);
  }
});

test("Node ESM imports the package by name", async () => {
  const library = await import("supportbot-persistence");
  assert.equal(library.hashText("abc"), ABC_SHA256);
  assert.throws(() => library.livenessReport(Number.NaN), (error) => library.isPersistenceError(error) && error.code === "INVALID_INPUT");
});

test("a Vite browser bundle runs in headless Chromium", async () => {
  execFileSync(join(here, "node_modules/.bin/vite"), ["build", "--config", join(here, "browser/vite.config.js")], { stdio: "inherit" });
  const root = join(here, "browser/dist");
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
  let resolveReport;
  const report = new Promise((resolve) => (resolveReport = resolve));
  const server = createServer(async (request, response) => {
    if (request.method === "POST" && request.url === "/report") {
      let body = "";
      for await (const chunk of request) body += chunk;
      resolveReport(JSON.parse(body));
      return response.writeHead(204).end();
    }
    const path = normalize(join(root, new URL(request.url, "http://x").pathname.replace(/\/$/, "/index.html")));
    if (!path.startsWith(root)) return response.writeHead(403).end();
    try {
      const body = await readFile(path);
      response.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const chromium = spawn(
    "chromium",
    ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
     "--disable-component-update", "--disable-sync", "--disable-quic",
     `--user-data-dir=${join(here, "browser/.profile")}`, `http://127.0.0.1:${server.address().port}/`],
    { stdio: "ignore" },
  );
  try {
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no report from the page in 60 s")), 60_000).unref());
    const result = await Promise.race([report, timeout]);
    assert.deepEqual(result, { sha256: ABC_SHA256, version: JSON.parse(await readFile(join(here, "node_modules/supportbot-persistence/package.json"), "utf8")).version });
  } finally {
    chromium.kill();
    server.close();
  }
});
