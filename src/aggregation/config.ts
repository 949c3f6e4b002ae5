/**
 * ConFIG: conflict-free inverse gradients.
 * Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
 * Networks", arXiv:2408.11104, 2024 (ICLR 2025).
 *
 * With unit rows û_i = g_i / ||g_i||, g_u = pinv(Û) 1 is the minimum-norm vector with
 * <û_i, g_u> = 1 for all i (equal cosine with every task); the update is its unit vector scaled
 * by the sum of the projections: d = (Σ_i <g_i, ĝ_u>) ĝ_u. On the Gramian, g_u = Jᵀ c with
 * c = N (N G N)⁺ 1, N = diag(1/||g_i||), so d = Jᵀ c (1ᵀGc)/(cᵀGc): the weights are exact and
 * direction = weightsᵀ J. Zero rows get weight 0; if g_u = 0 the direction is 0.
 * The momentum variant (M-ConFIG) is not included.
 */
import { checkGramian, checkMatrix, combine, dot, gramian, matVec, pinvSymmetric, type Aggregation } from "./linalg.js";

export function configWeights(G: number[][]): number[] {
  const T = checkGramian(G);
  const inv = G.map((row, i) => (row[i] > 0 ? 1 / Math.sqrt(row[i]) : 0));
  const normalised = G.map((row, i) => row.map((v, j) => v * inv[i] * inv[j]));
  const ones = inv.map((x) => (x > 0 ? 1 : 0)); // a zero row has no direction to agree with
  const c = matVec(pinvSymmetric(normalised), ones).map((x, i) => x * inv[i]);
  const Gc = matVec(G, c);
  const norm2 = dot(c, Gc);
  if (!(norm2 > 0)) return new Array<number>(T).fill(0);
  const total = Gc.reduce((a, b) => a + b, 0); // Σ_i <g_i, g_u>
  return c.map((x) => (x * total) / norm2);
}

export function config(J: number[][]): Aggregation {
  checkMatrix(J);
  const weights = configWeights(gramian(J));
  return { direction: combine(weights, J), weights };
}
