/**
 * Nash-MTL: the Nash bargaining solution between tasks.
 * Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a
 * Bargaining Game", ICML 2022.
 *
 * Weights α > 0 solve G α = 1/α (elementwise), so every task gets <g_i, d> = 1/α_i > 0. Instead
 * of the paper's sequence of convex programs, we minimise φ(α) = ½ αᵀGα - Σ log α_i (whose
 * stationary point is exactly that equation) by damped Newton: φ is self-concordant, so steps
 * of 1/(1 + Newton decrement) keep α > 0 and converge (quadratically near the solution).
 * Stops when the squared Newton decrement is below `tol`. G is scaled to unit max diagonal first
 * and α scaled back (α ∝ 1/√scale). When 0 is in the convex hull of the gradients no solution
 * exists (no direction improves every task); a ridge of 1e-10 keeps the problem bounded, so the
 * weights then grow large (up to ~1e5/√scale) while their combination stays near 0.
 * The paper's step-size cap and its every-k-steps update schedule are left to the caller.
 */
import { checkGramian, checkMatrix, checkOption, combine, dot, gramian, maxDiagonal, matVec, solve, type Aggregation } from "./linalg.js";

export interface NashMTLOptions {
  /** Stop when the squared Newton decrement is below this. Default 1e-20. */
  tol?: number;
  /** Maximum Newton steps. Default 200. */
  maxIters?: number;
}

export function nashMtlWeights(G: number[][], { tol = 1e-20, maxIters = 200 }: NashMTLOptions = {}): number[] {
  const T = checkGramian(G);
  checkOption("Nash-MTL tol", tol, "a number >= 0", (v) => v >= 0);
  checkOption("Nash-MTL maxIters", maxIters, "a positive integer", (v) => Number.isInteger(v) && v > 0);
  const scale = maxDiagonal(G);
  if (scale === 0) return new Array<number>(T).fill(0); // all gradients zero: nothing to weigh
  const A = G.map((row, i) => row.map((v, j) => v / scale + (i === j ? 1e-10 : 0)));
  // Start from the solution for orthogonal gradients, α_i = 1/||g_i|| (floored for zero rows).
  let alpha = A.map((row, i) => 1 / Math.sqrt(Math.max(row[i], 1e-10)));
  for (let iter = 0; iter < maxIters; iter++) {
    const grad = matVec(A, alpha).map((v, i) => v - 1 / alpha[i]);
    const hessian = A.map((row, i) => row.map((v, j) => (i === j ? v + 1 / alpha[i] ** 2 : v)));
    const newton = solve(hessian, grad.map((g) => -g));
    const decrement2 = -dot(grad, newton);
    if (decrement2 <= tol) break;
    const step = decrement2 > 1 / 16 ? 1 / (1 + Math.sqrt(decrement2)) : 1;
    alpha = alpha.map((a, i) => Math.max(a + step * newton[i], 1e-300));
  }
  return alpha.map((a) => a / Math.sqrt(scale));
}

export function nashMtl(J: number[][], options?: NashMTLOptions): Aggregation {
  checkMatrix(J);
  const weights = nashMtlWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
