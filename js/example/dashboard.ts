// The operators' dashboard (GET /dashboard): a static page, its stylesheet and its script, served
// from text modules bundled with the Worker, so it works with no network beyond this Worker. The
// page holds no data: it asks for a service token (kept in sessionStorage) and reads the /ops/*,
// /metrics and /health JSON with it. Everything comes from this origin, which the
// Content-Security-Policy enforces (no inline script or style, no other host).
import page from "./dashboard/index.html";
import stylesheet from "./dashboard/app.css";
import script from "./dashboard/app.client.js";
import { HttpError } from "./http.js";

/** No source but this origin; no framing, no forms, no <base>. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The dashboard's files by path, with their content types. */
export const DASHBOARD_FILES: Record<string, { body: string; contentType: string }> = {
  "/dashboard": { body: page, contentType: "text/html; charset=utf-8" },
  "/dashboard/app.css": { body: stylesheet, contentType: "text/css; charset=utf-8" },
  "/dashboard/app.js": { body: script, contentType: "text/javascript; charset=utf-8" },
};

/** A dashboard file with its security headers; revalidated on every load (it changes with each deploy). */
export function dashboardFile(path: string): Response {
  const file = DASHBOARD_FILES[path];
  if (!file) throw new HttpError(404, "NOT_FOUND", `no dashboard file ${path}`);
  return new Response(file.body, {
    headers: {
      "content-type": file.contentType,
      "content-security-policy": DASHBOARD_CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-cache",
    },
  });
}
