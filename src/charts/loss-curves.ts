import { finiteRows, perTaskLines, toRows, type Rows, type VegaLiteSpec } from "./spec.js";

export interface LossCurveOptions {
  /** Field plotted on y (default `"loss"`). Any numeric history column works, e.g. a metric. */
  value?: string;
  /** Field plotted on x (default `"epoch"`). */
  x?: string;
  /** Logarithmic y axis (default false). Non-positive values are dropped, since log(0) is undefined. */
  logScale?: boolean;
  title?: string;
  width?: number;
  height?: number;
}

/**
 * Per-task loss curves: one line per task, solid for training and dashed for validation.
 *
 * Expects history rows with `task`, `split` ("train" | "validation"), an x field (`epoch`) and the
 * plotted value (`loss`), as produced by `fit()`.
 */
export function lossCurvesSpec(history: Rows, options: LossCurveOptions = {}): VegaLiteSpec {
  const value = options.value ?? "loss";
  const x = options.x ?? "epoch";
  const rows = finiteRows(toRows(history), value, options.logScale ?? false).map((r) => ({
    [x]: r[x],
    task: r.task,
    split: r.split ?? "train",
    [value]: r[value],
  }));
  return perTaskLines({
    rows,
    x,
    y: value,
    title: options.title ?? `Per-task ${value}`,
    yScale: options.logScale ? { type: "log" } : { zero: false },
    width: options.width,
    height: options.height ?? 240,
    encoding: {
      strokeDash: {
        field: "split",
        type: "nominal",
        title: "split",
        scale: { domain: ["train", "validation"], range: [[1, 0], [6, 4]] },
      },
    },
    tooltip: [{ field: "split", type: "nominal" }],
  });
}

/**
 * Task weights over time: one line per task. Expects rows with `task`, an x field (`epoch` by
 * default, or `step`) and `weight`.
 */
export function taskWeightsSpec(history: Rows, options: Omit<LossCurveOptions, "value" | "logScale"> = {}): VegaLiteSpec {
  const x = options.x ?? "epoch";
  const rows = finiteRows(toRows(history), "weight")
    .filter((r) => (r.split ?? "train") === "train")
    .map((r) => ({ [x]: r[x], task: r.task, weight: r.weight }));
  return perTaskLines({ rows, x, y: "weight", title: options.title ?? "Task weights", width: options.width, height: options.height });
}
