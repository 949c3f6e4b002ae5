/**
 * Dynamic loss weightings for multi-task learning: per-task losses (and their history, and for
 * some methods per-task gradient norms on a shared layer) in, one weight per task out. Pure
 * numbers, explicit state in each instance; see `weightingRequirements` for what each needs.
 */
import { describe, type Weighting } from "./common.js";
import { EqualWeighting } from "./equal.js";
import { StaticWeighting } from "./static.js";
import { GradNorm } from "./gradnorm.js";
import { UncertaintyWeighting } from "./uncertainty.js";
import { DWA } from "./dwa.js";
import { RLW } from "./rlw.js";
import { GLS } from "./gls.js";
import { IMTLL } from "./imtl-l.js";
import { STCH } from "./stch.js";
import { FAMO } from "./famo.js";
import { DBMTL } from "./db-mtl.js";

export * from "./common.js";
export * from "./optimizer.js";
export * from "./equal.js";
export * from "./static.js";
export * from "./gradnorm.js";
export * from "./uncertainty.js";
export * from "./dwa.js";
export * from "./rlw.js";
export * from "./gls.js";
export * from "./imtl-l.js";
export * from "./stch.js";
export * from "./famo.js";
export * from "./db-mtl.js";

export interface WeightingEntry {
  create: (options: Record<string, unknown>) => Weighting;
  /** Option names the method accepts; anything else is rejected by `createWeighting`. */
  options: readonly string[];
}

const OPT = ["optimizer", "lr", "betas", "eps", "weightDecay"] as const;

/** Every method by name. The casts are safe: each constructor validates its own options. */
export const weightings = {
  equal: { create: (o) => new EqualWeighting(o as never), options: ["numTasks"] },
  static: { create: (o) => new StaticWeighting(o as never), options: ["numTasks", "weights"] },
  gradnorm: { create: (o) => new GradNorm(o as never), options: ["numTasks", "alpha", "initialLosses", "minWeight", ...OPT] },
  uncertainty: { create: (o) => new UncertaintyWeighting(o as never), options: ["numTasks", "logVariances", ...OPT] },
  dwa: { create: (o) => new DWA(o as never), options: ["numTasks", "temperature"] },
  rlw: { create: (o) => new RLW(o as never), options: ["numTasks", "seed", "sigma"] },
  gls: { create: (o) => new GLS(o as never), options: ["numTasks"] },
  "imtl-l": { create: (o) => new IMTLL(o as never), options: ["numTasks", "scales", ...OPT] },
  stch: { create: (o) => new STCH(o as never), options: ["numTasks", "mu", "preference", "ideal", "nadir"] },
  famo: { create: (o) => new FAMO(o as never), options: ["numTasks", "minLosses", ...OPT] },
  "db-mtl": { create: (o) => new DBMTL(o as never), options: ["numTasks", "beta", "eps"] },
} satisfies Record<string, WeightingEntry>;

export type WeightingName = keyof typeof weightings;

export const weightingNames = Object.keys(weightings) as WeightingName[];

/**
 * What a method reads. `losses`: this step's per-task losses; `lossHistory`: losses of earlier
 * steps or epochs (kept inside the instance, fed by `update`); `gradNorms`: per-task gradient
 * norms on a shared layer; `sharedGradients`: the gradient vectors themselves (none of these).
 */
export type WeightingNeed = "losses" | "lossHistory" | "gradNorms" | "sharedGradients";

export interface WeightingRequirement {
  needs: readonly WeightingNeed[];
  /** How often `update` is called: every step or once per epoch. */
  cadence: "step" | "epoch";
  /** What the weights multiply: the losses, or log(L_i + ε) (DB-MTL). */
  objective: "losses" | "log-losses";
  /** Sum of the weights: T, 1, or not normalised. */
  sum: "T" | "1" | "free";
  /** Which gradient norms, when `gradNorms` is needed. */
  gradNorms?: string;
}

export const weightingRequirements = {
  equal: { needs: [], cadence: "step", objective: "losses", sum: "T" },
  static: { needs: [], cadence: "step", objective: "losses", sum: "free" },
  gradnorm: { needs: ["losses", "lossHistory", "gradNorms"], cadence: "step", objective: "losses", sum: "T", gradNorms: "||∇_W (w_i L_i)||, weighted, after each task's backward pass" },
  uncertainty: { needs: ["losses"], cadence: "step", objective: "losses", sum: "free" },
  dwa: { needs: ["lossHistory"], cadence: "epoch", objective: "losses", sum: "T" },
  rlw: { needs: [], cadence: "step", objective: "losses", sum: "1" },
  gls: { needs: ["losses"], cadence: "step", objective: "losses", sum: "free" },
  "imtl-l": { needs: ["losses"], cadence: "step", objective: "losses", sum: "free" },
  stch: { needs: ["losses"], cadence: "step", objective: "losses", sum: "free" },
  famo: { needs: ["losses", "lossHistory"], cadence: "step", objective: "losses", sum: "1" },
  "db-mtl": { needs: ["losses", "gradNorms"], cadence: "step", objective: "log-losses", sum: "free", gradNorms: "||∇_W log(L_i + ε)||, unweighted" },
} as const satisfies Record<WeightingName, WeightingRequirement>;

/** Creates the method called `name` (see `weightingNames`); options include `numTasks`. */
export function createWeighting(name: string, options: Record<string, unknown>): Weighting {
  if (!Object.hasOwn(weightings, name)) {
    throw new Error(`Unknown weighting method ${JSON.stringify(name)}; valid names are: ${weightingNames.join(", ")}.`);
  }
  if (options === null || typeof options !== "object") throw new Error(`createWeighting options must be an object, but got ${describe(options)}.`);
  const entry: WeightingEntry = weightings[name as WeightingName];
  for (const key of Object.keys(options)) {
    if (!entry.options.includes(key)) throw new Error(`Unknown option ${JSON.stringify(key)} for ${name}; it accepts ${entry.options.join(", ")}.`);
  }
  return entry.create(options);
}
