/**
 * Smooth Tchebycheff scalarisation (STCH).
 * Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
 * Optimization", ICML 2024.
 *
 * Tchebycheff minimises the worst weighted gap max_i λ_i ℓ_i, ℓ_i = (L_i - z_i) / (n_i - z_i)
 * with ideal point z and (optional) nadir point n. STCH smooths the max with temperature μ:
 *   g_μ(L) = μ log Σ_i exp(λ_i ℓ_i / μ).
 * Its gradient is Σ_i w_i ∇L_i with implied weights w_i = λ_i p_i / (n_i - z_i),
 * p = softmax(λ ℓ / μ): the task furthest from its ideal dominates, more so as μ → 0, and
 * μ → ∞ tends to λ_i / (T (n_i - z_i)). Without a nadir and with λ_i = 1, weights sum to 1.
 * `ideal: "running-min"` takes z_i as the smallest loss seen so far (including the current one).
 */
import { checkNumber, checkTaskCount, checkVector, describe, requireLosses, softmax, stateVector, sum, type MethodState, type Weighting, type WeightingInput } from "./common.js";

export interface STCHOptions {
  numTasks: number;
  /** Smoothing μ, finite > 0. Default 1. */
  mu?: number;
  /** Preferences λ_i, finite > 0. Default 1 each. */
  preference?: number[];
  /** Ideal point z (finite numbers) or "running-min". Default all 0. */
  ideal?: number[] | "running-min";
  /** Nadir point n; each n_i must exceed z_i. Default none (scale 1). */
  nadir?: number[];
}

export class STCH implements Weighting {
  readonly name = "stch";
  readonly numTasks: number;
  readonly mu: number;
  readonly preference: number[];
  private readonly fixedIdeal: number[] | undefined;
  private readonly nadir: number[] | undefined;
  private runningMin: number[] | undefined;

  constructor({ numTasks, mu = 1, preference, ideal, nadir }: STCHOptions) {
    const T = (this.numTasks = checkTaskCount("STCH", numTasks));
    this.mu = checkNumber("STCH mu", mu, "a finite number > 0", (v) => v > 0);
    this.preference = preference === undefined ? new Array<number>(T).fill(1) : checkVector("STCH preference", preference, T, "> 0");
    if (ideal !== undefined && ideal !== "running-min" && !Array.isArray(ideal)) throw new Error(`STCH ideal must be an array of ${T} numbers or "running-min", but got ${describe(ideal)}.`);
    this.fixedIdeal = ideal === "running-min" ? undefined : ideal === undefined ? new Array<number>(T).fill(0) : checkVector("STCH ideal", ideal, T);
    this.nadir = nadir === undefined ? undefined : checkVector("STCH nadir", nadir, T);
  }

  /** The ideal point used for these losses. */
  ideal(losses: number[]): number[] {
    return this.fixedIdeal ?? losses.map((l, i) => Math.min(l, this.runningMin?.[i] ?? l));
  }

  private normalised(input: WeightingInput | undefined): { gaps: number[]; scales: number[] } {
    const L = requireLosses("STCH", input, this.numTasks, "any");
    const z = this.ideal(L);
    const scales = z.map((zi, i) => {
      if (this.nadir === undefined) return 1;
      if (!(this.nadir[i] > zi)) throw new Error(`STCH nadir[${i}] must exceed the ideal point ${zi}, but got ${this.nadir[i]}.`);
      return this.nadir[i] - zi;
    });
    return { gaps: L.map((l, i) => (this.preference[i] * (l - z[i])) / scales[i]), scales };
  }

  /** g_μ(L), computed with the max factored out. */
  value(input: WeightingInput): number {
    const { gaps } = this.normalised(input);
    const m = Math.max(...gaps);
    return m + this.mu * Math.log(sum(gaps.map((g) => Math.exp((g - m) / this.mu))));
  }

  weights(input?: WeightingInput): number[] {
    const { gaps, scales } = this.normalised(input);
    return softmax(gaps.map((g) => g / this.mu)).map((p, i) => (this.preference[i] * p) / scales[i]);
  }

  /** Tracks the running minimum (used only with ideal "running-min"). */
  /** The running minimum of the losses (with ideal "running-min"), for checkpoints. */
  exportState(): MethodState {
    return { runningMin: this.runningMin ? [...this.runningMin] : null };
  }

  importState(state: MethodState): void {
    this.runningMin = stateVector("STCH", state, "runningMin", this.numTasks, true);
  }

  update(input?: WeightingInput): void {
    const L = requireLosses("STCH", input, this.numTasks, "any");
    this.runningMin = L.map((l, i) => Math.min(l, this.runningMin?.[i] ?? l));
  }
}
