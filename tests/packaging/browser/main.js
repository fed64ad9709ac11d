// Bundled by Vite with the "browser" export condition; the wasm is emitted as an asset. The page
// reports back to the test's server, which is how the test learns the result.
import { hashText, libraryVersion } from "supportbot-persistence";

let report;
try {
  report = { sha256: hashText("abc"), version: libraryVersion() };
} catch (error) {
  report = { error: String(error) };
}
await fetch("/report", { method: "POST", body: JSON.stringify(report) });
