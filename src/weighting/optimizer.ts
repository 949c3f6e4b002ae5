/**
 * A tiny optimizer over a plain number[] for the learned weighting parameters (GradNorm's weights,
 * uncertainty weighting's log-variances, IMTL-L's scales, FAMO's logits): T values, closed-form
 * gradients, so no autodiff is needed. `sgd`: p ← p - lr g. `adam` (Kingma & Ba, ICLR 2015):
 * bias-corrected first and second moments, p ← p - lr m̂ / (√v̂ + eps). Optional L2 `weightDecay`
 * is added to the gradient (coupled, as in classic Adam), which is what FAMO's γ ξ term is.
 */
import { checkNumber } from "./common.js";

export type OptimizerName = "adam" | "sgd";

export interface OptimizerOptions {
  /** "adam" (default) or "sgd". */
  optimizer?: OptimizerName;
  /** Learning rate, > 0. Each method sets its own default. */
  lr?: number;
  /** Adam's moment decay rates. Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Adam's denominator guard. Default 1e-8. */
  eps?: number;
  /** L2 coefficient added to the gradient, >= 0. Default 0. */
  weightDecay?: number;
}

export class VectorOptimizer {
  private m: number[] = [];
  private v: number[] = [];
  private t = 0;
  readonly kind: OptimizerName;
  readonly lr: number;
  private readonly b1: number;
  private readonly b2: number;
  private readonly eps: number;
  private readonly decay: number;

  constructor(who: string, { optimizer = "adam", lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0 }: OptimizerOptions = {}) {
    if (optimizer !== "adam" && optimizer !== "sgd") throw new Error(`${who} optimizer must be "adam" or "sgd", but got ${JSON.stringify(optimizer)}.`);
    this.kind = optimizer;
    this.lr = checkNumber(`${who} lr`, lr, "a finite number > 0", (x) => x > 0);
    this.b1 = checkNumber(`${who} betas[0]`, betas?.[0], "in [0, 1)", (x) => x >= 0 && x < 1);
    this.b2 = checkNumber(`${who} betas[1]`, betas?.[1], "in [0, 1)", (x) => x >= 0 && x < 1);
    this.eps = checkNumber(`${who} eps`, eps, "a finite number > 0", (x) => x > 0);
    this.decay = checkNumber(`${who} weightDecay`, weightDecay, "a finite number >= 0", (x) => x >= 0);
  }

  /** Adam's moments and step count (SGD keeps none), for checkpoints. */
  exportState(): { m: number[]; v: number[]; t: number } {
    return { m: [...this.m], v: [...this.v], t: this.t };
  }

  /** Put back what {@link VectorOptimizer.exportState} returned. */
  importState(state: { m?: unknown; v?: unknown; t?: unknown }, who = "VectorOptimizer"): void {
    const { m, v, t } = state ?? {};
    const ok = (x: unknown): x is number[] => Array.isArray(x) && x.every((e) => typeof e === "number" && Number.isFinite(e));
    if (!ok(m) || !ok(v) || m.length !== v.length) throw new Error(`${who} optimizer state must hold m and v as arrays of finite numbers of one length, but got m ${JSON.stringify(m)} and v ${JSON.stringify(v)}.`);
    this.m = [...m];
    this.v = [...v];
    this.t = checkNumber(`${who} optimizer state t`, t, "an integer >= 0", (x) => Number.isInteger(x) && x >= 0);
  }

  /** Returns the parameters after one step along -grad; does not modify `params`. */
  step(params: number[], grad: number[]): number[] {
    const g = grad.map((x, i) => x + this.decay * params[i]);
    if (this.kind === "sgd") return params.map((p, i) => p - this.lr * g[i]);
    if (this.m.length === 0) (this.m = g.map(() => 0)), (this.v = g.map(() => 0));
    this.t += 1;
    const c1 = 1 - this.b1 ** this.t, c2 = 1 - this.b2 ** this.t;
    return params.map((p, i) => {
      this.m[i] = this.b1 * this.m[i] + (1 - this.b1) * g[i];
      this.v[i] = this.b2 * this.v[i] + (1 - this.b2) * g[i] * g[i];
      return p - (this.lr * (this.m[i] / c1)) / (Math.sqrt(this.v[i] / c2) + this.eps);
    });
  }
}
