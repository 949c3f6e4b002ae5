/**
 * CAGrad: conflict-averse gradient descent.
 * Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
 *
 * With g0 the mean gradient and r = c ||g0||, the dual problem
 *   min_{w in simplex} g_wᵀ g0 + r ||g_w||,   g_w = Σ w_i g_i
 * gives d = g0 + (r / ||g_w||) g_w, the direction within distance r of g0 that maximises the
 * worst task's improvement. The dual is solved on the Gramian by projected gradient with
 * backtracking (the authors use SLSQP). With `rescale` (default, as in the authors' code) d is
 * divided by 1 + c². Returned weights are exact: direction = weightsᵀ J.
 */
import { checkGramian, checkMatrix, checkOption, combine, dot, gramian, matVec, projectSimplex, type Aggregation } from "./linalg.js";

export interface CAGradOptions {
  /** Radius of the ball around g0, relative to ||g0||, in [0, 1). Default 0.4. */
  c?: number;
  /** Divide by 1 + c² so c does not change the step size much. Default true. */
  rescale?: boolean;
  /** Stop when the dual iterate moves less than this. Default 1e-10. */
  tol?: number;
  /** Maximum projected-gradient iterations. Default 2000. */
  maxIters?: number;
}

export function cagradWeights(G: number[][], { c = 0.4, rescale = true, tol = 1e-10, maxIters = 2000 }: CAGradOptions = {}): number[] {
  const T = checkGramian(G);
  checkOption("CAGrad c", c, "in [0, 1)", (v) => v >= 0 && v < 1);
  if (typeof rescale !== "boolean") throw new Error(`CAGrad rescale must be a boolean, but got ${String(rescale)}.`);
  checkOption("CAGrad tol", tol, "a number >= 0", (v) => v >= 0);
  checkOption("CAGrad maxIters", maxIters, "a positive integer", (v) => Number.isInteger(v) && v > 0);
  const mean = new Array<number>(T).fill(1 / T);
  const b = matVec(G, mean); // b_i = <g_i, g0>
  const r = c * Math.sqrt(Math.max(0, dot(mean, b)));
  const normOf = (w: number[]) => Math.sqrt(Math.max(0, dot(w, matVec(G, w))));
  const objective = (w: number[]) => dot(w, b) + r * normOf(w);
  let w = [...mean];
  let step = 1 / Math.max(G.reduce((s, row, i) => s + row[i], 0), 1e-300);
  for (let iter = 0; iter < maxIters; iter++) {
    const n = normOf(w);
    const Gw = matVec(G, w);
    const grad = b.map((bi, i) => bi + (n > 0 ? (r * Gw[i]) / n : 0));
    const f = objective(w);
    let next: number[];
    // Backtracking: shrink the step until the quadratic upper bound holds.
    for (;;) {
      next = projectSimplex(w.map((x, i) => x - step * grad[i]));
      const move = next.map((x, i) => x - w[i]);
      if (objective(next) <= f + dot(grad, move) + dot(move, move) / (2 * step) + 1e-15 * Math.abs(f) || step < 1e-30) break;
      step /= 2;
    }
    const moved = Math.sqrt(next.reduce((s, x, i) => s + (x - w[i]) ** 2, 0));
    w = next;
    step *= 1.5; // let the step grow back after a cautious phase
    if (moved < tol) break;
  }
  const n = normOf(w);
  // ||g_w|| = 0 means 0 is in the hull: no direction helps every task, fall back to g0.
  const lambda = n > 0 ? r / n : 0;
  const scale = rescale ? 1 / (1 + c * c) : 1;
  return w.map((wi) => (1 / T + lambda * wi) * scale);
}

export function cagrad(J: number[][], options?: CAGradOptions): Aggregation {
  checkMatrix(J);
  const weights = cagradWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
