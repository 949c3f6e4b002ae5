/**
 * DB-MTL: Dual-Balancing Multi-Task Learning.
 * Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang & Kwok, "Dual-Balancing for Multi-Task Learning",
 * arXiv:2308.12029, 2023.
 *
 * Two balances. Loss scale: each task trains on log(L_i + ε) instead of L_i, so a loss 100x larger
 * is not 100x louder. Gradient magnitude: with n_i = ||∇_W log(L_i + ε)|| on the shared layer W
 * and its EMA n̄_i ← β n̄_i + (1 - β) n_i (β = weight of the past, default 0.9), the task
 * gradients are rescaled to the largest one: w_i = max_j n̄_j / n̄_i, weights on the LOG-losses
 * (so every w_i >= 1 and Σ w_i >= T). The paper keeps an EMA of the gradient vectors and takes
 * their norms; with only norms at hand we average the norms, which matches when the task
 * gradient's direction is steady. n̄ starts at 0 without bias correction: all tasks share the
 * factor (1 - β^t), which cancels in the ratios. A task whose n̄_i is 0 keeps weight 1.
 * As weights on the raw losses: w_i / (L_i + ε) (`lossWeights`).
 */
import { checkNumber, checkTaskCount, requireGradNorms, requireLosses, stateVector, type MethodState, type Weighting, type WeightingInput } from "./common.js";

export interface DBMTLOptions {
  numTasks: number;
  /** EMA weight of the past, in [0, 1). Default 0.9. */
  beta?: number;
  /** ε in log(L + ε), finite > 0. Default 1e-8. */
  eps?: number;
}

export class DBMTL implements Weighting {
  readonly name = "db-mtl";
  readonly numTasks: number;
  readonly beta: number;
  readonly eps: number;
  private ema: number[];

  constructor({ numTasks, beta = 0.9, eps = 1e-8 }: DBMTLOptions) {
    this.numTasks = checkTaskCount("DB-MTL", numTasks);
    this.beta = checkNumber("DB-MTL beta", beta, "in [0, 1)", (v) => v >= 0 && v < 1);
    this.eps = checkNumber("DB-MTL eps", eps, "a finite number > 0", (v) => v > 0);
    this.ema = new Array<number>(this.numTasks).fill(0);
  }

  /** The transformed losses log(L_i + ε) the weights apply to. */
  logLosses(losses: number[]): number[] {
    return requireLosses("DB-MTL", { losses }, this.numTasks).map((l) => Math.log(l + this.eps));
  }

  /** Weights on the log-losses: max_j n̄_j / n̄_i. */
  weights(): number[] {
    const top = Math.max(...this.ema);
    return this.ema.map((n) => (n > 0 ? top / n : 1));
  }

  /** The same step as weights on the raw losses: w_i / (L_i + ε). */
  lossWeights(losses: number[]): number[] {
    const L = requireLosses("DB-MTL", { losses }, this.numTasks);
    return this.weights().map((w, i) => w / (L[i] + this.eps));
  }

  /** `gradNorms` are the norms of ∇_W log(L_i + ε), the gradients of the transformed losses. */
  /** The moving average of the gradient norms, for checkpoints. */
  exportState(): MethodState {
    return { ema: [...this.ema] };
  }

  importState(state: MethodState): void {
    this.ema = stateVector("DB-MTL", state, "ema", this.numTasks)!;
  }

  update(input?: WeightingInput): void {
    const n = requireGradNorms("DB-MTL", input, this.numTasks);
    this.ema = this.ema.map((m, i) => this.beta * m + (1 - this.beta) * n[i]);
  }
}
