/**
 * Multi-task gradient aggregators: pure functions from the per-task gradient matrix J (T rows =
 * tasks, d columns = parameters) to an update direction and per-task weights.
 */
import { checkMatrix, type Aggregation } from "./linalg.js";
import { mean } from "./mean.js";
import { mgda } from "./mgda.js";
import { pcgrad } from "./pcgrad.js";
import { cagrad } from "./cagrad.js";
import { imtlg } from "./imtl-g.js";
import { gradvac } from "./gradvac.js";
import { graddrop } from "./graddrop.js";
import { alignedMtl } from "./aligned-mtl.js";
import { nashMtl } from "./nash-mtl.js";
import { upgrad } from "./upgrad.js";
import { dualproj } from "./dualproj.js";
import { config } from "./config.js";

export * from "./linalg.js";
export * from "./qp.js";
export * from "./mean.js";
export * from "./mgda.js";
export * from "./pcgrad.js";
export * from "./cagrad.js";
export * from "./imtl-g.js";
export * from "./gradvac.js";
export * from "./graddrop.js";
export * from "./aligned-mtl.js";
export * from "./nash-mtl.js";
export * from "./upgrad.js";
export * from "./dualproj.js";
export * from "./config.js";

export interface AggregatorEntry {
  /** Runs the method on a validated J. */
  run: (J: number[][], options: Record<string, unknown>) => Aggregation;
  /** Option names the method accepts; anything else is rejected by `aggregate`. */
  options: readonly string[];
}

const QP = ["tol", "maxIters", "preference"] as const;

/** Every method by name. The casts are safe: each method validates its own option values. */
export const aggregators = {
  mean: { run: (J) => mean(J), options: [] },
  mgda: { run: (J, o) => mgda(J, o), options: ["tol", "maxIters"] },
  pcgrad: { run: (J, o) => pcgrad(J, o), options: ["seed"] },
  cagrad: { run: (J, o) => cagrad(J, o), options: ["c", "rescale", "tol", "maxIters"] },
  "imtl-g": { run: (J) => imtlg(J), options: [] },
  gradvac: { run: (J, o) => gradvac(J, o), options: ["beta", "seed", "targets"] },
  graddrop: { run: (J, o) => graddrop(J, o), options: ["seed", "leak"] },
  "aligned-mtl": { run: (J, o) => alignedMtl(J, o), options: ["scale", "preference"] },
  "nash-mtl": { run: (J, o) => nashMtl(J, o), options: ["tol", "maxIters"] },
  upgrad: { run: (J, o) => upgrad(J, o), options: QP },
  dualproj: { run: (J, o) => dualproj(J, o), options: QP },
  config: { run: (J) => config(J), options: [] },
} satisfies Record<string, AggregatorEntry>;

export type AggregatorName = keyof typeof aggregators;

export const aggregatorNames = Object.keys(aggregators) as AggregatorName[];

/**
 * Aggregates J with the method called `method` (see `aggregatorNames`). Stateful GradVac keeps its
 * state only if you pass `targets` back in, or use the `GradVac` class.
 */
export function aggregate(method: string, J: number[][], options: Record<string, unknown> = {}): Aggregation {
  if (!Object.hasOwn(aggregators, method)) {
    throw new Error(`Unknown aggregation method ${JSON.stringify(method)}; valid names are: ${aggregatorNames.join(", ")}.`);
  }
  const entry: AggregatorEntry = aggregators[method as AggregatorName];
  checkMatrix(J);
  if (options === null || typeof options !== "object") throw new Error(`aggregate options must be an object, but got ${String(options)}.`);
  for (const key of Object.keys(options)) {
    if (!entry.options.includes(key)) {
      throw new Error(`Unknown option ${JSON.stringify(key)} for ${method}; it accepts ${entry.options.length ? entry.options.join(", ") : "no options"}.`);
    }
  }
  return entry.run(J, options);
}
