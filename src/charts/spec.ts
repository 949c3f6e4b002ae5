/**
 * Minimal vega-lite types. jointly's public declarations deliberately avoid vega-lite's own types:
 * notebooks type-check with tslab's bundled TypeScript, which cannot resolve vega-lite's `exports`.
 */

/** A vega-lite (v5-compatible) top-level specification, as a plain JSON object. */
export type VegaLiteSpec = { [key: string]: unknown };

/** The JSON schema URL put in every spec; JupyterLab's renderer keys on the v5 MIME type. */
export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

/** The MIME type JupyterLab renders interactively. */
export const VEGA_LITE_MIME = "application/vnd.vegalite.v5+json";

/** Rows of a table: an arquero table (anything with `objects()`) or an array of plain objects. */
export type Rows = readonly Record<string, unknown>[] | { objects(): object[] };

export function toRows(data: Rows): Record<string, unknown>[] {
  if (Array.isArray(data)) return data as Record<string, unknown>[];
  const table = data as { objects?: () => object[] };
  if (typeof table.objects === "function") return table.objects() as Record<string, unknown>[];
  throw new TypeError(`Chart data must be an array of objects or an arquero table, but got ${typeof data}.`);
}

/** Drop rows whose value is not a finite number: vega-lite would draw a log axis from 0 as -Infinity. */
export function finiteRows(rows: Record<string, unknown>[], field: string, positive = false) {
  return rows.filter((r) => {
    const v = r[field];
    return typeof v === "number" && Number.isFinite(v) && (!positive || v > 0);
  });
}
