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

/** What {@link perTaskLines} draws: one line per task of `y` against `x`. */
export interface PerTaskLinesOptions {
  rows: Record<string, unknown>[];
  x: string;
  y: string;
  title: string;
  yTitle?: string;
  /** The y scale (e.g. `{ type: "log" }`); default `{ zero: false }` is left to the caller. */
  yScale?: Record<string, unknown>;
  width?: number;
  height?: number;
  /** Extra encodings (e.g. a strokeDash by split) and tooltip fields, added after the task's. */
  encoding?: Record<string, unknown>;
  tooltip?: Record<string, unknown>[];
}

/** The shared shape of the per-task line charts: x quantitative, y quantitative, colour by task. */
export function perTaskLines(o: PerTaskLinesOptions): VegaLiteSpec {
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: o.title,
    width: o.width ?? 420,
    height: o.height ?? 200,
    data: { values: o.rows },
    mark: { type: "line", point: o.rows.length <= 60 },
    encoding: {
      x: { field: o.x, type: "quantitative", title: o.x },
      y: { field: o.y, type: "quantitative", title: o.yTitle ?? o.y, ...(o.yScale ? { scale: o.yScale } : {}) },
      color: { field: "task", type: "nominal", title: "task" },
      ...o.encoding,
      tooltip: [
        { field: "task", type: "nominal" },
        ...(o.tooltip ?? []),
        { field: o.x, type: "quantitative" },
        { field: o.y, type: "quantitative", format: ".4g" },
      ],
    },
  };
}
