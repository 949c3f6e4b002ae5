/**
 * FAMO: Fast Adaptive Multitask Optimization.
 * Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.
 *
 * Logits ξ (T values) give task weights z = softmax(ξ). The model step descends
 * Σ_i z_i log(L_i - b_i), rescaled by c = Σ_j z_j / (L_j - b_j) so the step size does not follow
 * the loss scale: as loss weights, w_i = z_i / (c (L_i - b_i)), which sum to 1 (b_i = lower bound
 * of the loss, default 0). After the step, with δ_i = log(L_i - b_i)(before) - log(L_i - b_i)(after)
 * the log-loss improvement, the logits descend δ-weighted by z plus weight decay:
 *   ξ ← ξ - β (∇_ξ zᵀδ + γ ξ),  ∂(zᵀδ)/∂ξ_j = z_j (δ_j - zᵀδ),
 * so a task that improved less than the z-average (e.g. stalled) gains weight. β = lr (0.025),
 * γ = weightDecay (0.001); like the paper's experiments, the step uses Adam by default
 * (`optimizer: "sgd"` is the plain rule above). `update({ losses })` compares with the losses of
 * the previous `update`, i.e. it uses the next step's batch as the "after" losses.
 */
import { checkTaskCount, checkVector, requireLosses, softmax, stateVector, sum, type MethodState, type Weighting, type WeightingInput } from "./common.js";
import { VectorOptimizer, type OptimizerOptions } from "./optimizer.js";

export interface FAMOOptions extends OptimizerOptions {
  numTasks: number;
  /** Lower bounds b_i of the losses, each below every loss. Default 0. */
  minLosses?: number[];
}

/** Keeps log(L - b) finite when a loss reaches its bound. */
const TINY = 1e-8;

/** ∇_ξ zᵀδ for z = softmax(ξ). */
export function famoLogitGradient(logits: number[], improvement: number[]): number[] {
  const z = softmax(logits);
  const avg = sum(z.map((zi, i) => zi * improvement[i]));
  return z.map((zi, i) => zi * (improvement[i] - avg));
}

export class FAMO implements Weighting {
  readonly name = "famo";
  readonly numTasks: number;
  private xi: number[];
  private previous: number[] | undefined;
  private readonly bounds: number[];
  private readonly opt: VectorOptimizer;

  constructor({ numTasks, minLosses, lr = 0.025, weightDecay = 0.001, ...opt }: FAMOOptions) {
    this.numTasks = checkTaskCount("FAMO", numTasks);
    this.bounds = minLosses === undefined ? new Array<number>(this.numTasks).fill(0) : checkVector("FAMO minLosses", minLosses, this.numTasks);
    this.opt = new VectorOptimizer("FAMO", { lr, weightDecay, ...opt });
    this.xi = new Array<number>(this.numTasks).fill(0);
  }

  get logits(): number[] {
    return [...this.xi];
  }

  /** z = softmax(ξ), the weights on the log-losses before rescaling. */
  taskWeights(): number[] {
    return softmax(this.xi);
  }

  private shifted(input: WeightingInput | undefined): number[] {
    const L = requireLosses("FAMO", input, this.numTasks, "any");
    return L.map((l, i) => {
      // A loss a rounding error below its bound (e.g. -6e-17 for a bound of 0) is the bound itself.
      const slack = 1e-12 * Math.max(1, Math.abs(this.bounds[i]));
      if (!(l >= this.bounds[i] - slack)) throw new Error(`FAMO losses[${i}] must be >= minLosses[${i}] = ${this.bounds[i]}, but got ${l}.`);
      return Math.max(l - this.bounds[i], 0) + TINY;
    });
  }

  /** Loss weights w_i = z_i / (c (L_i - b_i)) at the current losses; they sum to 1. */
  weights(input?: WeightingInput): number[] {
    const D = this.shifted(input);
    const r = this.taskWeights().map((z, i) => z / D[i]);
    const c = sum(r);
    return r.map((x) => x / c);
  }

  /** The logits, the last log-losses and the optimizer's moments, for checkpoints. */
  exportState(): MethodState {
    return { logits: [...this.xi], previous: this.previous ? [...this.previous] : null, optimizer: this.opt.exportState() };
  }

  importState(state: MethodState): void {
    this.xi = stateVector("FAMO", state, "logits", this.numTasks)!;
    this.previous = stateVector("FAMO", state, "previous", this.numTasks, true);
    this.opt.importState(state.optimizer as object, "FAMO");
  }

  update(input?: WeightingInput): void {
    const now = this.shifted(input).map(Math.log);
    if (this.previous) this.xi = this.opt.step(this.xi, famoLogitGradient(this.xi, this.previous.map((p, i) => p - now[i])));
    this.previous = now;
  }
}
