/**
 * Dynamic Weight Average (DWA).
 * Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
 *
 * Epoch-based: with r_i = L_i(t-1) / L_i(t-2), the rate at which task i's (epoch-average) loss
 * fell over the last two epochs, w_i(t) = T exp(r_i / τ) / Σ_j exp(r_j / τ). Tasks that improve
 * slowly (r near or above 1) get more weight; τ = 2 in the paper, larger τ is closer to equal.
 * The first two epochs have no two-epoch history, so every weight is 1. Weights sum to T.
 * Call `update({ losses })` once per epoch with that epoch's average losses.
 */
import { checkNumber, checkTaskCount, checkVector, requireLosses, softmax, type MethodState, type Weighting, type WeightingInput } from "./common.js";

export interface DWAOptions {
  numTasks: number;
  /** Temperature τ, finite > 0. Default 2. */
  temperature?: number;
}

/** DWA weights from the losses of the last two epochs (each > 0 where divided by). */
export function dwaWeights(previous: number[], beforePrevious: number[], temperature = 2): number[] {
  checkNumber("DWA temperature", temperature, "a finite number > 0", (v) => v > 0);
  const T = previous.length;
  const r = checkVector("DWA losses two epochs ago", beforePrevious, T, "> 0").map((l2, i) => previous[i] / l2);
  return softmax(r.map((x) => x / temperature)).map((p) => T * p);
}

export class DWA implements Weighting {
  readonly name = "dwa";
  readonly numTasks: number;
  readonly temperature: number;
  /** Epoch-average losses, oldest first; only the last two are kept. */
  private history: number[][] = [];

  constructor({ numTasks, temperature = 2 }: DWAOptions) {
    this.numTasks = checkTaskCount("DWA", numTasks);
    this.temperature = checkNumber("DWA temperature", temperature, "a finite number > 0", (v) => v > 0);
  }

  /** Weights for the coming epoch. */
  weights(): number[] {
    if (this.history.length < 2) return new Array<number>(this.numTasks).fill(1);
    return dwaWeights(this.history[1], this.history[0], this.temperature);
  }

  /** The last two epochs' losses, for checkpoints. */
  exportState(): MethodState {
    return { history: this.history.map((h) => [...h]) };
  }

  importState(state: MethodState): void {
    const h = state?.history;
    if (!Array.isArray(h) || h.length > 2) throw new Error(`DWA state history must be an array of at most 2 loss vectors, but got ${JSON.stringify(h)}.`);
    this.history = h.map((x, i) => checkVector(`DWA state history[${i}]`, x, this.numTasks));
  }

  /** Records the epoch-average losses of the epoch that just ended. */
  update(input?: WeightingInput): void {
    this.history = [...this.history, requireLosses("DWA", input, this.numTasks)].slice(-2);
  }
}
