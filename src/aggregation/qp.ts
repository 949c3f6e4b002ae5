/**
 * Tiny convex quadratic programs on T x T Gramians, used by UPGrad and DualProj.
 */
import { checkOption, matVec, maxDiagonal, solve } from "./linalg.js";

export interface QPOptions {
  /** Stop when no bound-constrained coordinate has gradient below -tol * scale. */
  tol?: number;
  /** Cap on active-set changes (each costs one small linear solve); 0 = default 10 T + 20. */
  maxIters?: number;
}

/**
 * argmin_{z >= 0} ½ zᵀ H z + qᵀ z for a positive semi-definite H, by the Lawson-Hanson
 * active-set method generalised from least squares to a quadratic (exact in finitely many steps).
 * A ridge of 1e-12 * max diag(H) is added so singular Gramians still give a unique answer.
 */
export function nonNegativeQP(H: number[][], q: number[], { tol = 1e-12, maxIters = 0 }: QPOptions = {}): number[] {
  checkOption("QP tol", tol, "a number >= 0", (v) => v >= 0);
  checkOption("QP maxIters", maxIters, "a non-negative integer", (v) => Number.isInteger(v) && v >= 0);
  const n = q.length;
  const ridge = 1e-12 * (maxDiagonal(H) || 1);
  const A = H.map((row, i) => row.map((v, j) => (i === j ? v + ridge : v)));
  const limit = maxIters || 10 * n + 20;
  const z = new Array<number>(n).fill(0);
  const free = new Array<boolean>(n).fill(false);
  const scale = Math.max(...q.map(Math.abs), maxDiagonal(A), 1e-300);
  for (let iter = 0; iter < limit; iter++) {
    const grad = matVec(A, z).map((g, i) => g + q[i]);
    // Enter the bound variable whose gradient most wants it to grow; none left means KKT holds.
    let enter = -1;
    for (let i = 0; i < n; i++) if (!free[i] && grad[i] < -tol * scale && (enter < 0 || grad[i] < grad[enter])) enter = i;
    if (enter < 0) break;
    free[enter] = true;
    for (let inner = 0; inner < n + 1; inner++) {
      const s = unconstrainedOnFree(A, q, free);
      const blocking = s.map((v, i) => (free[i] && v <= 0 ? i : -1)).filter((i) => i >= 0);
      if (blocking.length === 0) {
        s.forEach((v, i) => (z[i] = v));
        break;
      }
      // Move toward s until the first free coordinate hits zero, then fix it at the bound.
      const step = Math.min(...blocking.map((i) => z[i] / (z[i] - s[i])));
      for (let i = 0; i < n; i++) {
        z[i] += step * (s[i] - z[i]);
        if (free[i] && z[i] <= 1e-15 * scale) {
          free[i] = false;
          z[i] = 0;
        }
      }
    }
  }
  return z;
}

/** Minimiser of ½ zᵀAz + qᵀz over the free coordinates, the others held at 0. */
function unconstrainedOnFree(A: number[][], q: number[], free: boolean[]): number[] {
  const idx = free.map((f, i) => (f ? i : -1)).filter((i) => i >= 0);
  const x = solve(idx.map((i) => idx.map((j) => A[i][j])), idx.map((i) => -q[i]));
  const s = new Array<number>(q.length).fill(0);
  idx.forEach((i, k) => (s[i] = x[k]));
  return s;
}

/**
 * argmin_{v >= u} vᵀ G v. By Quinton & Rey (2024, Prop. 1), Jᵀ v is then the projection of Jᵀ u
 * onto the dual cone {x : J x >= 0}. Substituting v = u + z turns it into a non-negative QP.
 */
export function projectWeights(u: number[], G: number[][], options?: QPOptions): number[] {
  const z = nonNegativeQP(G, matVec(G, u), options);
  return u.map((ui, i) => ui + z[i]);
}
