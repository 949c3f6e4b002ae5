/**
 * Static weighting: fixed, hand-chosen weights w_i (finite, >= 0; 0 switches a task off), used
 * as given without renormalisation, e.g. the 0.7 / 0.3 split of a two-loss objective.
 */
import { checkTaskCount, checkVector, describe, requireLosses, type Weighting, type WeightingInput } from "./common.js";

export interface StaticOptions {
  /** One weight per task, finite and >= 0. */
  weights: number[];
  /** Optional; must equal weights.length if given. */
  numTasks?: number;
}

export class StaticWeighting implements Weighting {
  readonly name = "static";
  readonly numTasks: number;
  private readonly fixed: number[];
  constructor({ weights, numTasks }: StaticOptions) {
    if (!Array.isArray(weights) || weights.length === 0) throw new Error(`Static weights must be a non-empty array of numbers, but got ${describe(weights)}.`);
    this.numTasks = numTasks === undefined ? weights.length : checkTaskCount("Static", numTasks);
    this.fixed = checkVector("Static weights", weights, this.numTasks, ">= 0");
  }

  weights(): number[] {
    return [...this.fixed];
  }

  update(input?: WeightingInput): void {
    if (input?.losses !== undefined) requireLosses("Static", input, this.numTasks, "any");
  }
}
