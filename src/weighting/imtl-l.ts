/**
 * IMTL-L: the loss-balancing half of Impartial Multi-Task Learning.
 * Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.
 *
 * A learned scale s_i per task and the objective Σ_i e^{s_i} L_i - s_i: the -s_i term stops the
 * scale from collapsing to 0, and ∂/∂s_i = e^{s_i} L_i - 1 vanishes when every scaled loss
 * e^{s_i} L_i equals 1 (s_i = -log L_i), so all tasks contribute on the same scale. Weights are
 * e^{s_i} (not normalised; 1 at the start). Stepped here with Adam, default lr 0.01.
 * (IMTL-G, the gradient half, is `imtl-g` in the aggregators.)
 */
import { checkTaskCount, checkVector, requireLosses, stateVector, sum, type MethodState, type Weighting, type WeightingInput } from "./common.js";
import { VectorOptimizer, type OptimizerOptions } from "./optimizer.js";

export interface IMTLLOptions extends OptimizerOptions {
  numTasks: number;
  /** Initial scales s_i; default all 0. */
  scales?: number[];
}

export const imtlLGradient = (scales: number[], losses: number[]): number[] => scales.map((s, i) => Math.exp(s) * losses[i] - 1);

export class IMTLL implements Weighting {
  readonly name = "imtl-l";
  readonly numTasks: number;
  private s: number[];
  private readonly opt: VectorOptimizer;

  constructor({ numTasks, scales, lr = 0.01, ...opt }: IMTLLOptions) {
    this.numTasks = checkTaskCount("IMTL-L", numTasks);
    this.s = scales === undefined ? new Array<number>(this.numTasks).fill(0) : checkVector("IMTL-L scales", scales, this.numTasks);
    this.opt = new VectorOptimizer("IMTL-L", { lr, ...opt });
  }

  get scales(): number[] {
    return [...this.s];
  }

  weights(): number[] {
    return this.s.map(Math.exp);
  }

  /** -Σ s_i, the term added to the scaled losses. */
  regularizer(): number {
    return -sum(this.s);
  }

  /** The log-scales and their optimizer's moments, for checkpoints. */
  exportState(): MethodState {
    return { scales: [...this.s], optimizer: this.opt.exportState() };
  }

  importState(state: MethodState): void {
    this.s = stateVector("IMTL-L", state, "scales", this.numTasks)!;
    this.opt.importState(state.optimizer as object, "IMTL-L");
  }

  update(input?: WeightingInput): void {
    const L = requireLosses("IMTL-L", input, this.numTasks);
    this.s = this.opt.step(this.s, imtlLGradient(this.s, L));
  }
}
