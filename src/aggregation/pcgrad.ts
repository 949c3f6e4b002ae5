/**
 * PCGrad ("projecting conflicting gradients").
 * Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
 *
 * For each task i, g_i is projected onto the normal plane of every g_j (j != i, in a random order)
 * it conflicts with (negative inner product), always against the original g_j; the update is the
 * sum of the projected gradients (Algorithm 1). Every projected gradient stays a combination of
 * the rows, so PCGrad is a weighting: the returned weights are exact and direction = weightsᵀ J.
 * The weights do not sum to 1 (they sum to T when nothing conflicts).
 *
 * The random order comes from `seed`; pass a different seed at every step to get the paper's
 * behaviour, the same seed to reproduce a step.
 */
import { checkGramian, checkMatrix, checkSeed, combine, dot, gramian, seededRandom, shuffled, type Aggregation } from "./linalg.js";

export interface PCGradOptions {
  /** Seed of the task order. Default 0. */
  seed?: number;
}

export function pcgradWeights(G: number[][], { seed = 0 }: PCGradOptions = {}): number[] {
  const T = checkGramian(G);
  const random = seededRandom(checkSeed("PCGrad", seed));
  const weights = new Array<number>(T).fill(0);
  for (let i = 0; i < T; i++) {
    // c holds the coefficients of the projected g_i in terms of the original rows.
    const c = new Array<number>(T).fill(0);
    c[i] = 1;
    const others = shuffled([...Array(T).keys()].filter((j) => j !== i), random);
    for (const j of others) {
      const inner = dot(c, G[j]); // <projected g_i, g_j>
      if (inner < 0 && G[j][j] > 0) c[j] -= inner / G[j][j];
    }
    c.forEach((v, k) => (weights[k] += v));
  }
  return weights;
}

export function pcgrad(J: number[][], options?: PCGradOptions): Aggregation {
  checkMatrix(J);
  const weights = pcgradWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
