/**
 * IMTL-G: impartial multi-task learning, gradient part.
 * Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.
 *
 * Finds the combination g = Σ α_i g_i with Σ α_i = 1 whose projections onto every unit task
 * gradient u_i = g_i / ||g_i|| are equal. On the Gramian: (G α)_i / ||g_i|| = λ for all i, so
 * α ∝ G⁺ n with n_i = ||g_i||, normalised to sum 1 (this equals the paper's closed form
 * α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹ when G is invertible; the pseudo-inverse handles dependent rows).
 * If the normalising sum vanishes the weights are all 0.
 */
import { checkGramian, checkMatrix, combine, gramian, matVec, pinvSymmetric, type Aggregation } from "./linalg.js";

export function imtlgWeights(G: number[][]): number[] {
  checkGramian(G);
  const norms = G.map((row, i) => Math.sqrt(Math.max(0, row[i])));
  const raw = matVec(pinvSymmetric(G), norms);
  const total = raw.reduce((a, b) => a + b, 0);
  const tiny = 1e-12 * raw.reduce((a, b) => a + Math.abs(b), 0);
  return Math.abs(total) > tiny && total !== 0 ? raw.map((x) => x / total) : raw.map(() => 0);
}

export function imtlg(J: number[][]): Aggregation {
  checkMatrix(J);
  const weights = imtlgWeights(gramian(J));
  return { direction: combine(weights, J), weights };
}
