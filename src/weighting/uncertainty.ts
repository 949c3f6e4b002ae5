/**
 * Uncertainty weighting: each task's homoscedastic noise as a learned log-variance s_i = log σ_i².
 * Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
 * Geometry and Semantics", CVPR 2018.
 *
 * Total = Σ_i exp(-s_i) L_i + s_i. The paper derives ½ exp(-s) L + ½ s for a Gaussian
 * (regression) likelihood and exp(-s) L + ½ s for a softmax (classification) one; we use one form
 * for every task, as most implementations do: it is twice the regression objective (same
 * minimiser), and for classification it moves the fixed point from log(2L) to log L. The
 * weights are exp(-s_i) (not normalised; 1 at the start, s = 0) and the regulariser is Σ s_i.
 * ∂/∂s_i = 1 - exp(-s_i) L_i, so on constant losses s_i → log L_i and the weighted loss → 1.
 * The s_i are stepped here with Adam (default lr 0.01) instead of by the network's optimizer.
 */
import { checkTaskCount, checkVector, requireLosses, stateVector, sum, type MethodState, type Weighting, type WeightingInput } from "./common.js";
import { VectorOptimizer, type OptimizerOptions } from "./optimizer.js";

export interface UncertaintyOptions extends OptimizerOptions {
  numTasks: number;
  /** Initial log-variances; default all 0. */
  logVariances?: number[];
}

/** The closed-form gradient of Σ exp(-s_i) L_i + s_i with respect to s. */
export const uncertaintyGradient = (logVariances: number[], losses: number[]): number[] =>
  logVariances.map((s, i) => 1 - Math.exp(-s) * losses[i]);

export class UncertaintyWeighting implements Weighting {
  readonly name = "uncertainty";
  readonly numTasks: number;
  private s: number[];
  private readonly opt: VectorOptimizer;

  constructor({ numTasks, logVariances, lr = 0.01, ...opt }: UncertaintyOptions) {
    this.numTasks = checkTaskCount("Uncertainty", numTasks);
    this.s = logVariances === undefined ? new Array<number>(this.numTasks).fill(0) : checkVector("Uncertainty logVariances", logVariances, this.numTasks);
    this.opt = new VectorOptimizer("Uncertainty", { lr, ...opt });
  }

  get logVariances(): number[] {
    return [...this.s];
  }

  /** exp(-s_i): the factor on each task loss. */
  weights(): number[] {
    return this.s.map((s) => Math.exp(-s));
  }

  /** Σ s_i, the term added to the weighted losses (its gradient keeps σ from growing forever). */
  regularizer(): number {
    return sum(this.s);
  }

  /** The full objective Σ exp(-s_i) L_i + s_i at the given losses. */
  total(losses: number[]): number {
    const L = checkVector("Uncertainty losses", losses, this.numTasks, ">= 0");
    return sum(this.weights().map((w, i) => w * L[i])) + this.regularizer();
  }

  /** The log-variances and their optimizer's moments, for checkpoints. */
  exportState(): MethodState {
    return { logVariances: [...this.s], optimizer: this.opt.exportState() };
  }

  importState(state: MethodState): void {
    this.s = stateVector("Uncertainty", state, "logVariances", this.numTasks)!;
    this.opt.importState(state.optimizer as object, "Uncertainty");
  }

  update(input?: WeightingInput): void {
    const L = requireLosses("Uncertainty", input, this.numTasks);
    this.s = this.opt.step(this.s, uncertaintyGradient(this.s, L));
  }
}
