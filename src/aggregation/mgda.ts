/**
 * MGDA: the minimum-norm point of the convex hull of the task gradients.
 * Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
 *
 * Solved on the Gramian by Frank-Wolfe as in the paper (Algorithm 2) with exact line search, plus
 * away steps (Lacoste-Julien & Jaggi, NeurIPS 2015) so it converges linearly instead of as 1/k,
 * which matters when the min-norm point is near 0. Weights lie on the simplex (sum to 1).
 * The paper's gradient normalisation and MGDA-UB upper bound are left to the caller.
 */
import { checkGramian, checkMatrix, checkOption, combine, gramian, matVec, maxDiagonal, dot, type Aggregation } from "./linalg.js";

export interface MGDAOptions {
  /** Stop when the Frank-Wolfe duality gap is below tol * max_i ||g_i||². Default 1e-10. */
  tol?: number;
  /** Maximum Frank-Wolfe iterations. Default 10000 (each is O(T²)). */
  maxIters?: number;
}

export function mgdaWeights(G: number[][], { tol = 1e-10, maxIters = 10000 }: MGDAOptions = {}): number[] {
  const T = checkGramian(G);
  checkOption("MGDA tol", tol, "a number >= 0", (v) => v >= 0);
  checkOption("MGDA maxIters", maxIters, "a positive integer", (v) => Number.isInteger(v) && v > 0);
  const alpha = new Array<number>(T).fill(1 / T);
  const scale = maxDiagonal(G);
  for (let iter = 0; iter < maxIters; iter++) {
    const g = matVec(G, alpha); // gradient of ½ αᵀGα; g_i = <g_i, current point>
    const value = dot(alpha, g);
    let s = 0, a = -1;
    for (let i = 0; i < T; i++) {
      if (g[i] < g[s]) s = i;
      if (alpha[i] > 0 && (a < 0 || g[i] > g[a])) a = i;
    }
    const fwGap = value - g[s];
    if (fwGap <= tol * scale) break;
    // Toward the best vertex, or away from the worst vertex in use, whichever promises more.
    const toward = fwGap >= g[a] - value;
    const dir = alpha.map((x, i) => (toward ? (i === s ? 1 : 0) - x : x - (i === a ? 1 : 0)));
    const maxStep = toward ? 1 : alpha[a] / (1 - alpha[a]);
    const curvature = dot(dir, matVec(G, dir));
    const step = curvature > 0 ? Math.min(maxStep, Math.max(0, -dot(dir, g) / curvature)) : maxStep;
    for (let i = 0; i < T; i++) alpha[i] = Math.max(0, alpha[i] + step * dir[i]);
    if (!toward && step === maxStep) alpha[a] = 0; // a "drop step": remove the vertex exactly
  }
  const total = alpha.reduce((x, y) => x + y, 0);
  return alpha.map((x) => x / total);
}

export function mgda(J: number[][], options?: MGDAOptions): Aggregation {
  checkMatrix(J);
  const weights = mgdaWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
