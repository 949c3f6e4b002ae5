/**
 * Charts for image tasks: a grid of grey-level images with their labels, and a two-task trade-off
 * scatter (task 1's metric against task 2's, one point per method), as in Lin et al., "Pareto
 * Multi-Task Learning" (NeurIPS 2019), Fig. 4.
 */
import { toRows, VEGA_LITE_SCHEMA, type Rows, type VegaLiteSpec } from "./spec.js";

export interface ImageGridOptions {
  /** Images per row of the grid (default 6). */
  columns?: number;
  /** Pixel size of one image pixel (default 3). */
  scale?: number;
  title?: string;
}

/**
 * A grid of `count` grey-level images from row-major `images` ([n, rows, cols] in [0, 1]), each titled
 * with its label. Values are drawn dark on light (1 = black).
 */
export function imageGridSpec(
  images: ArrayLike<number>,
  shape: { rows: number; cols: number },
  labels: readonly string[],
  options: ImageGridOptions = {},
): VegaLiteSpec {
  const { rows, cols } = shape;
  const count = labels.length;
  if (images.length < count * rows * cols) {
    throw new Error(`imageGridSpec: ${count} labels need ${count * rows * cols} pixel values, but got ${images.length}.`);
  }
  const values: { image: number; label: string; r: number; c: number; v: number }[] = [];
  for (let i = 0; i < count; i++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = images[(i * rows + r) * cols + c]!;
        if (v > 0) values.push({ image: i, label: `${i + 1}: ${labels[i]}`, r, c, v });
      }
    }
  }
  const scale = options.scale ?? 3;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: options.title ?? "Examples",
    data: { values },
    facet: { field: "label", type: "nominal", title: null, sort: null },
    columns: options.columns ?? 6,
    spec: {
      width: cols * scale,
      height: rows * scale,
      mark: { type: "rect" },
      encoding: {
        x: { field: "c", type: "ordinal", axis: null, scale: { domain: [...Array(cols).keys()] } },
        y: { field: "r", type: "ordinal", axis: null, scale: { domain: [...Array(rows).keys()] } },
        color: { field: "v", type: "quantitative", scale: { scheme: "greys", domain: [0, 1] }, legend: null },
      },
    },
  };
}

export interface TradeoffOptions {
  /** Fields of the two metrics (x: task 1, y: task 2) and of the point label. */
  x: string;
  y: string;
  label: string;
  /** Optional field that colours the points (e.g. the kind of method). */
  color?: string;
  xTitle?: string;
  yTitle?: string;
  title?: string;
  width?: number;
  height?: number;
}

/** A scatter of two task metrics, one labelled point per row (method). */
export function tradeoffSpec(rows: Rows, options: TradeoffOptions): VegaLiteSpec {
  const values = toRows(rows).filter((r) => Number.isFinite(r[options.x]) && Number.isFinite(r[options.y]));
  const enc = {
    x: { field: options.x, type: "quantitative", title: options.xTitle ?? options.x, scale: { zero: false } },
    y: { field: options.y, type: "quantitative", title: options.yTitle ?? options.y, scale: { zero: false } },
  };
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: options.title ?? `${options.yTitle ?? options.y} against ${options.xTitle ?? options.x}`,
    width: options.width ?? 360,
    height: options.height ?? 300,
    data: { values },
    encoding: enc,
    layer: [
      {
        mark: { type: "point", filled: true, size: 70 },
        encoding: {
          ...(options.color ? { color: { field: options.color, type: "nominal", title: null } } : {}),
          tooltip: [{ field: options.label }, { field: options.x, format: ".3f" }, { field: options.y, format: ".3f" }],
        },
      },
      { mark: { type: "text", align: "left", dx: 6, dy: -6, fontSize: 10 }, encoding: { text: { field: options.label } } },
    ],
  };
}
