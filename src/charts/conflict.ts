/**
 * Gradient-conflict charts from the diagnostics tables a `JointTrainer` records with
 * `diagnostics: true` (or any rows of the same shape): the pairwise cosine heatmap, per-task
 * gradient norms over steps, and the share of conflicting task pairs over steps.
 */
import { finiteRows, perTaskLines, toRows, VEGA_LITE_SCHEMA, type Rows, type VegaLiteSpec } from "./spec.js";

export interface ConflictChartOptions {
  title?: string;
  width?: number;
  height?: number;
}

export interface CosineHeatmapOptions extends ConflictChartOptions {
  /** Which step to draw: a step number, "last" (default) or "mean" (the average cosine over all recorded steps). */
  step?: number | "last" | "mean";
}

/**
 * Cosine heatmap: one cell per task pair, coloured from -1 (opposed, red) through 0 to 1 (aligned,
 * blue), with the value written in the cell. Expects rows with step, task_i, task_j, cosine.
 */
export function cosineHeatmapSpec(cosines: Rows, options: CosineHeatmapOptions = {}): VegaLiteSpec {
  const all = finiteRows(toRows(cosines), "cosine");
  const which = options.step ?? "last";
  let rows: { task_i: unknown; task_j: unknown; cosine: number }[];
  let label: string;
  if (which === "mean") {
    const sums = new Map<string, { task_i: unknown; task_j: unknown; sum: number; n: number }>();
    for (const r of all) {
      const key = JSON.stringify([r.task_i, r.task_j]);
      const e = sums.get(key) ?? { task_i: r.task_i, task_j: r.task_j, sum: 0, n: 0 };
      e.sum += r.cosine as number;
      e.n++;
      sums.set(key, e);
    }
    rows = [...sums.values()].map((e) => ({ task_i: e.task_i, task_j: e.task_j, cosine: e.sum / e.n }));
    label = "mean over steps";
  } else {
    const steps = all.map((r) => r.step as number);
    const step = which === "last" ? Math.max(...steps) : which;
    if (typeof step !== "number" || !Number.isFinite(step)) throw new Error(`cosineHeatmapSpec: step must be a step number, "last" or "mean", but got ${String(which)}.`);
    rows = all.filter((r) => r.step === step).map((r) => ({ task_i: r.task_i, task_j: r.task_j, cosine: r.cosine as number }));
    if (rows.length === 0 && all.length > 0) throw new Error(`cosineHeatmapSpec: no cosines recorded at step ${step}; recorded steps are ${[...new Set(steps)].join(", ")}.`);
    label = `step ${step}`;
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: options.title ?? `Cosine of task gradients (${label})`,
    width: options.width ?? 240,
    height: options.height ?? 240,
    data: { values: rows },
    encoding: {
      x: { field: "task_j", type: "nominal", title: null, sort: null },
      y: { field: "task_i", type: "nominal", title: null, sort: null },
    },
    layer: [
      {
        mark: "rect",
        encoding: {
          color: { field: "cosine", type: "quantitative", title: "cosine", scale: { scheme: "redblue", domain: [-1, 1] } },
          tooltip: [
            { field: "task_i", type: "nominal" },
            { field: "task_j", type: "nominal" },
            { field: "cosine", type: "quantitative", format: ".3f" },
          ],
        },
      },
      {
        mark: { type: "text", fontSize: 11 },
        encoding: {
          text: { field: "cosine", type: "quantitative", format: ".2f" },
          // Dark cells get white text.
          color: { condition: { test: "abs(datum.cosine) > 0.6", value: "white" }, value: "black" },
        },
      },
    ],
  };
}

/** Per-task gradient norm over steps, one line per task (log scale). Expects rows with step, task, gradNorm. */
export function gradientNormsSpec(norms: Rows, options: ConflictChartOptions & { logScale?: boolean } = {}): VegaLiteSpec {
  const log = options.logScale ?? true;
  const rows = finiteRows(toRows(norms), "gradNorm", log).map((r) => ({ step: r.step, task: r.task, gradNorm: r.gradNorm }));
  return perTaskLines({
    rows,
    x: "step",
    y: "gradNorm",
    title: options.title ?? "Per-task gradient norm",
    yTitle: "‖∇L_i‖",
    yScale: log ? { type: "log" } : { zero: false },
    width: options.width,
    height: options.height,
  });
}

/**
 * Share of task pairs whose gradients conflict (cos < 0) over steps. Expects rows with step and
 * conflictShare (the `conflicts` table), or cosine rows (step, task_i, task_j, cosine), from which
 * the share over pairs i < j is computed.
 */
export function conflictShareSpec(rows: Rows, options: ConflictChartOptions = {}): VegaLiteSpec {
  const input = toRows(rows);
  let values: { step: number; conflictShare: number }[];
  if (input.some((r) => "conflictShare" in r)) {
    values = finiteRows(input, "conflictShare").map((r) => ({ step: r.step as number, conflictShare: r.conflictShare as number }));
  } else {
    const bySteps = new Map<number, { pairs: number; conflicts: number }>();
    for (const r of finiteRows(input, "cosine")) {
      if (String(r.task_i) >= String(r.task_j)) continue;
      const e = bySteps.get(r.step as number) ?? { pairs: 0, conflicts: 0 };
      e.pairs++;
      if ((r.cosine as number) < 0) e.conflicts++;
      bySteps.set(r.step as number, e);
    }
    values = [...bySteps.entries()].sort((a, b) => a[0] - b[0]).map(([step, e]) => ({ step, conflictShare: e.conflicts / e.pairs }));
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: options.title ?? "Share of conflicting task pairs (cos < 0)",
    width: options.width ?? 420,
    height: options.height ?? 160,
    data: { values },
    mark: { type: "line", point: values.length <= 60, interpolate: "step-after" },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step" },
      y: { field: "conflictShare", type: "quantitative", title: "share of pairs", scale: { domain: [0, 1] }, axis: { format: "%" } },
      tooltip: [
        { field: "step", type: "quantitative" },
        { field: "conflictShare", type: "quantitative", format: ".0%" },
      ],
    },
  };
}
