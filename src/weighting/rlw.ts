/**
 * Random Loss Weighting (RLW).
 * Lin, Ye, Zhang & Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
 * Multi-Task Learning", TMLR 2022.
 *
 * At every step, w = softmax(z) with z_i ~ N(0, σ²) independent (the paper's normal variant, σ = 1),
 * so weights are positive and sum to 1. Draws are a function of (seed, step) only: the weights of
 * step k are the same whatever was asked before, so runs are reproducible and order-free.
 * `weights({ step })` gives any step's weights; without `step`, the internal counter that
 * `update` advances is used.
 */
import { checkNumber, checkTaskCount, seededRandom, softmax, type MethodState, type Weighting, type WeightingInput } from "./common.js";

export interface RLWOptions {
  numTasks: number;
  /** Integer seed. Default 0. */
  seed?: number;
  /** Standard deviation σ of the logits, finite > 0. Default 1. */
  sigma?: number;
}

/** A 32-bit seed for (seed, step): mixes step with a golden-ratio multiplier so steps decorrelate. */
const mix = (seed: number, step: number): number => (Math.imul(step + 1, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;

export function rlwWeights(numTasks: number, seed: number, step: number, sigma = 1): number[] {
  const random = seededRandom(mix(seed, step));
  // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  const z = Array.from({ length: numTasks }, () => sigma * Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));
  return softmax(z);
}

export class RLW implements Weighting {
  readonly name = "rlw";
  readonly numTasks: number;
  readonly seed: number;
  readonly sigma: number;
  step = 0;

  constructor({ numTasks, seed = 0, sigma = 1 }: RLWOptions) {
    this.numTasks = checkTaskCount("RLW", numTasks);
    this.seed = checkNumber("RLW seed", seed, "an integer", (v) => Number.isInteger(v));
    this.sigma = checkNumber("RLW sigma", sigma, "a finite number > 0", (v) => v > 0);
  }

  weights(input?: WeightingInput): number[] {
    const step = input?.step === undefined ? this.step : checkNumber("RLW step", input.step, "an integer >= 0", (v) => Number.isInteger(v) && v >= 0);
    return rlwWeights(this.numTasks, this.seed, step, this.sigma);
  }

  /** Moves to the next step's draw. */
  /** The step counter the weights are drawn from, for checkpoints. */
  exportState(): MethodState {
    return { step: this.step };
  }

  importState(state: MethodState): void {
    this.step = checkNumber("RLW state step", state?.step, "an integer >= 0", (v) => Number.isInteger(v) && v >= 0);
  }

  update(): void {
    this.step += 1;
  }
}
