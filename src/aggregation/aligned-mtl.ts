/**
 * Aligned-MTL.
 * Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for Multi-Task
 * Learning", CVPR 2023.
 *
 * Replaces the task gradients by the rows of B J, which are orthogonal and all of norm σ (the
 * gradient system then has condition number 1), where with G = V Λ Vᵀ,
 *   B = σ V Λ^{-1/2} Vᵀ  (restricted to the non-zero eigenvalues, rank tolerance 1e-10 relative),
 * and σ² = the smallest non-zero eigenvalue ("min", the paper's choice), their median, or their
 * mean ("rmse"). The update is Σ_i w_i (B J)_i with preference weights w (default 1/T), i.e. the
 * weights α = B w on the original rows: exact, direction = weightsᵀ J.
 */
import { checkGramian, checkMatrix, checkOption, combine, gramian, matVec, RANK_TOL, symmetricEigen, type Aggregation } from "./linalg.js";

export type AlignedScale = "min" | "median" | "rmse";

export interface AlignedMTLOptions {
  /** How σ² is taken from the non-zero eigenvalues. Default "min". */
  scale?: AlignedScale;
  /** Preference weights w over tasks, non-negative, length T. Default 1/T each. */
  preference?: number[];
}

/** The balance matrix B (T x T): rows of B J are orthogonal with equal norms. */
export function alignedMtlBalance(G: number[][], scale: AlignedScale = "min"): number[][] {
  const T = checkGramian(G);
  if (!["min", "median", "rmse"].includes(scale)) throw new Error(`Aligned-MTL scale must be "min", "median" or "rmse", but got ${JSON.stringify(scale)}.`);
  const { values, vectors } = symmetricEigen(G);
  const cut = RANK_TOL * Math.max(...values, 0);
  const kept = values.map((_, k) => k).filter((k) => values[k] > cut && values[k] > 0);
  const B = G.map(() => new Array<number>(T).fill(0));
  if (kept.length === 0) return B; // all gradients are zero: nothing to align
  const positive = kept.map((k) => values[k]); // ascending, as symmetricEigen sorts
  const mid = positive.length >> 1;
  const sigma2 = scale === "min" ? positive[0]
    : scale === "median" ? (positive.length % 2 ? positive[mid] : (positive[mid - 1] + positive[mid]) / 2)
    : positive.reduce((a, b) => a + b, 0) / positive.length;
  for (const k of kept) {
    const f = Math.sqrt(sigma2 / values[k]);
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) B[i][j] += f * vectors[i][k] * vectors[j][k];
  }
  return B;
}

export function alignedMtlWeights(G: number[][], { scale = "min", preference }: AlignedMTLOptions = {}): number[] {
  const T = checkGramian(G);
  if (preference !== undefined && (!Array.isArray(preference) || preference.length !== T)) {
    throw new Error(`Aligned-MTL preference must be an array of ${T} numbers, but got ${Array.isArray(preference) ? `length ${preference.length}` : String(preference)}.`);
  }
  const w = (preference ?? new Array<number>(T).fill(1 / T)).map((p, i) => checkOption(`Aligned-MTL preference[${i}]`, p, "a number >= 0", (v) => v >= 0));
  return matVec(alignedMtlBalance(G, scale), w);
}

export function alignedMtl(J: number[][], options?: AlignedMTLOptions): Aggregation {
  checkMatrix(J);
  const weights = alignedMtlWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
