/**
 * GradDrop (gradient sign dropout).
 * Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign: Optimizing Deep
 * Multitask Models with Gradient Sign Dropout", NeurIPS 2020.
 *
 * Per coordinate k, the positive sign purity P_k = ½ (1 + Σ_i J_ik / Σ_i |J_ik|) is compared with
 * a uniform draw U_k: if P_k > U_k only the positive entries of column k are kept, otherwise only
 * the negative ones; the direction is the sum of the kept entries. Optional per-task `leak`
 * ℓ_i keeps ℓ_i of task i's gradient unconditionally (the paper's transfer-learning variant).
 * The paper applies this at activations; here it is applied to the parameter coordinates of J.
 *
 * Not a weighting of the rows: `weights` are the least-squares weights w minimising
 * ||Jᵀ w - direction|| (minimum norm), so weightsᵀ J is only the projection of the direction
 * onto the row space. Needs J itself, not just the Gramian. Seeded: same seed, same mask.
 */
import { checkMatrix, checkOption, checkSeed, leastSquaresWeights, seededRandom, type Aggregation } from "./linalg.js";

export interface GradDropOptions {
  /** Seed of the uniform draws. Default 0. */
  seed?: number;
  /** Per-task leak in [0, 1], length T. Default all 0. */
  leak?: number[];
}

export function graddrop(J: number[][], { seed = 0, leak }: GradDropOptions = {}): Aggregation {
  const [T, d] = checkMatrix(J);
  const random = seededRandom(checkSeed("GradDrop", seed));
  if (leak !== undefined && (!Array.isArray(leak) || leak.length !== T)) {
    throw new Error(`GradDrop leak must be an array of ${T} numbers (one per task), but got ${Array.isArray(leak) ? `length ${leak.length}` : String(leak)}.`);
  }
  const leaks = (leak ?? new Array<number>(T).fill(0)).map((l, i) => checkOption(`GradDrop leak[${i}]`, l, "in [0, 1]", (v) => v >= 0 && v <= 1));
  const direction = new Array<number>(d).fill(0);
  for (let k = 0; k < d; k++) {
    let sum = 0, abs = 0;
    for (let i = 0; i < T; i++) (sum += J[i][k]), (abs += Math.abs(J[i][k]));
    const purity = abs > 0 ? 0.5 * (1 + sum / abs) : 0.5;
    // Draw for every coordinate, even all-zero ones, so masks do not depend on the values' zeros.
    const keepPositive = purity > random();
    for (let i = 0; i < T; i++) {
      const v = J[i][k];
      const kept = keepPositive ? v > 0 : v < 0;
      direction[k] += (leaks[i] + (1 - leaks[i]) * (kept ? 1 : 0)) * v;
    }
  }
  return { direction, weights: leastSquaresWeights(J, direction) };
}
