/**
 * GradNorm: learned loss weights that balance the gradient norms of the tasks.
 * Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
 * Balancing in Deep Multitask Networks", ICML 2018.
 *
 * Weights w_i (sum T) scale the task losses. On a chosen shared layer W, G_i = ||∇_W (w_i L_i)||
 * = w_i g_i, where g_i is the norm of the unweighted task gradient. With loss ratios
 * L̃_i = L_i(t) / L_i(0) and relative inverse training rates r_i = L̃_i / mean_j L̃_j, GradNorm
 * minimises over w
 *   L_grad(w) = Σ_i | G_i(w) - Ḡ r_i^α |,   Ḡ = mean_j G_j,
 * with the target Ḡ r_i^α held constant (the paper's detach), so ∂L_grad/∂w_j = sign(G_j - C_j) g_j.
 * α >= 0 is the restoring force: larger α pushes lagging tasks (high r_i) harder. After each
 * optimizer step the weights are clipped to `minWeight` and renormalised to sum T.
 *
 * `update` wants the norms of the WEIGHTED task gradients, measured after that task's backward
 * pass (so the gradient exists and carries the current w_i). Seed 004 read the norms before any
 * backward pass, i.e. of stale or zero gradients: GradNorm then balances nothing real.
 * Learning rate default 0.025 with Adam; tune it with the network's optimizer.
 */
import { checkNumber, checkTaskCount, checkVector, requireGradNorms, requireLosses, stateVector, sum, type MethodState, type Weighting, type WeightingInput } from "./common.js";
import { VectorOptimizer, type OptimizerOptions } from "./optimizer.js";

/** r_i = L̃_i / mean L̃ with L̃_i = L_i / L_i(0). */
export function inverseTrainingRates(losses: number[], initialLosses: number[]): number[] {
  const ratios = losses.map((l, i) => l / initialLosses[i]);
  const mean = sum(ratios) / ratios.length;
  return ratios.map((x) => (mean > 0 ? x / mean : 1)); // all losses at 0: every task equally done
}

/** L_grad(w) for unweighted norms g; `target` fixes C_i (else Ḡ(w) r_i^α, not detached). */
export function gradnormLoss(weights: number[], unweightedNorms: number[], rates: number[], alpha: number, target?: number[]): number {
  const G = weights.map((w, i) => w * unweightedNorms[i]);
  const C = target ?? rates.map((r) => (sum(G) / G.length) * r ** alpha);
  return sum(G.map((x, i) => Math.abs(x - C[i])));
}

/**
 * Closed-form gradient of L_grad with respect to w, given the weighted norms G_i = w_i g_i and the
 * unweighted norms g_i. With `detachTarget` false, Ḡ's dependence on w adds -(g_j/T) Σ_i s_i r_i^α.
 * At a kink (G_i exactly on target) the subgradient 0 is used for that term.
 */
export function gradnormGradient(gradNorms: number[], unweightedNorms: number[], rates: number[], alpha: number, { detachTarget = true } = {}): number[] {
  const T = gradNorms.length;
  const mean = sum(gradNorms) / T;
  const s = gradNorms.map((G, i) => Math.sign(G - mean * rates[i] ** alpha));
  const coupling = detachTarget ? 0 : sum(s.map((si, i) => si * rates[i] ** alpha)) / T;
  return unweightedNorms.map((g, j) => s[j] * g - coupling * g);
}

export interface GradNormOptions extends OptimizerOptions {
  numTasks: number;
  /** Restoring force α, finite >= 0. Default 1.5 (the paper's NYUv2 value). */
  alpha?: number;
  /** L_i(0), each > 0; default: the losses of the first `update`. */
  initialLosses?: number[];
  /** Floor of a weight before renormalising, keeps w_i > 0. Default 1e-6. */
  minWeight?: number;
}

export class GradNorm implements Weighting {
  readonly name = "gradnorm";
  readonly numTasks: number;
  readonly alpha: number;
  initialLosses: number[] | undefined;
  private w: number[];
  private readonly minWeight: number;
  private readonly opt: VectorOptimizer;

  constructor({ numTasks, alpha = 1.5, initialLosses, minWeight = 1e-6, lr = 0.025, ...opt }: GradNormOptions) {
    this.numTasks = checkTaskCount("GradNorm", numTasks);
    this.alpha = checkNumber("GradNorm alpha", alpha, "a finite number >= 0", (v) => v >= 0);
    this.minWeight = checkNumber("GradNorm minWeight", minWeight, "a finite number > 0", (v) => v > 0);
    if (initialLosses !== undefined) this.initialLosses = checkVector("GradNorm initialLosses", initialLosses, this.numTasks, "> 0");
    this.opt = new VectorOptimizer("GradNorm", { lr, ...opt });
    this.w = new Array<number>(this.numTasks).fill(1);
  }

  weights(): number[] {
    return [...this.w];
  }

  /** The weights, L_i(0) and the optimizer's moments, for checkpoints. */
  exportState(): MethodState {
    return { weights: [...this.w], initialLosses: this.initialLosses ? [...this.initialLosses] : null, optimizer: this.opt.exportState() };
  }

  importState(state: MethodState): void {
    this.w = stateVector("GradNorm", state, "weights", this.numTasks)!;
    this.initialLosses = stateVector("GradNorm", state, "initialLosses", this.numTasks, true);
    this.opt.importState(state.optimizer as object, "GradNorm");
  }

  /** One step on w from this step's losses and WEIGHTED norms G_i; returns L_grad before the step. */
  update(input?: WeightingInput): number {
    const T = this.numTasks;
    const losses = requireLosses("GradNorm", input, T);
    const G = requireGradNorms("GradNorm", input, T);
    this.initialLosses ??= checkVector("GradNorm initial losses (first update)", losses, T, "> 0");
    const rates = inverseTrainingRates(losses, this.initialLosses);
    const g = G.map((x, i) => x / this.w[i]);
    const loss = gradnormLoss(this.w, g, rates, this.alpha);
    const next = this.opt.step(this.w, gradnormGradient(G, g, rates, this.alpha)).map((x) => Math.max(x, this.minWeight));
    const total = sum(next);
    this.w = next.map((x) => (T * x) / total);
    return loss;
  }
}
