// An npm Prometheus text-format parser that ships no types (tests/workerd/prometheus.test.ts).
declare module "parse-prometheus-text-format" {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
