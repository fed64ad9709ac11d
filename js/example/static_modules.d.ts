// The dashboard's files (js/example/dashboard/), imported as text: wrangler's Text module rules
// (its default `**/*.html`, and `**/*.css` and `**/*.client.js` in wrangler.toml) bundle them,
// and the vitest workerd pool reads the same rules.
declare module "*.html" {
  const text: string;
  export default text;
}
declare module "*.css" {
  const text: string;
  export default text;
}
/** A script for the browser, served as is (never imported as code by the Worker). */
declare module "*.client.js" {
  const text: string;
  export default text;
}
