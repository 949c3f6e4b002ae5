/**
 * Geometric Loss Strategy (GLS).
 * Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
 * Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019.
 *
 * The total is the geometric mean (Π_i L_i)^{1/T}, which is invariant to each task's loss scale.
 * Its gradient is Σ_i w_i ∇L_i with w_i = (Π_j L_j)^{1/T} / (T L_i), so as a weighting GLS gives
 * those implied weights (recomputed each step, treated as constants): small losses weigh more.
 * Not normalised: Σ w_i = GM(L) · mean(1/L_i) >= 1 (AM-HM), with equality iff all L_i are equal.
 * Needs every loss > 0; computed in log space so many tasks do not overflow the product.
 */
import { checkTaskCount, requireLosses, sum, type Weighting, type WeightingInput } from "./common.js";

/** (Π L_i)^{1/T}, losses > 0. */
export const geometricMean = (losses: number[]): number => Math.exp(sum(losses.map(Math.log)) / losses.length);

export function glsWeights(losses: number[]): number[] {
  const gm = geometricMean(losses);
  return losses.map((l) => gm / (losses.length * l));
}

export class GLS implements Weighting {
  readonly name = "gls";
  readonly numTasks: number;
  constructor({ numTasks }: { numTasks: number }) {
    this.numTasks = checkTaskCount("GLS", numTasks);
  }

  weights(input?: WeightingInput): number[] {
    return glsWeights(requireLosses("GLS", input, this.numTasks, "> 0"));
  }

  /** Stateless: only checks the losses. */
  update(input?: WeightingInput): void {
    if (input?.losses !== undefined) requireLosses("GLS", input, this.numTasks, "> 0");
  }
}
