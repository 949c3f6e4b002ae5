/**
 * GradVac (Gradient Vaccine).
 * Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving Multi-task
 * Optimization in Massively Multilingual Models", ICLR 2021.
 *
 * Keeps an EMA target φ̂_ij of the cosine similarity between tasks i and j. For each task i and
 * each other task j (random order), if the current cosine φ_ij of the (already adjusted) g_i with
 * g_j is below the target, g_i gets the multiple of g_j that raises the cosine exactly to φ̂_ij:
 *   g_i += ||g_i|| (φ̂ √(1-φ²) - φ √(1-φ̂²)) / (||g_j|| √(1-φ̂²)) g_j,
 * then φ̂_ij ← (1-β) φ̂_ij + β φ_ij. The update is the sum of adjusted gradients. With φ̂ = 0 this
 * is PCGrad. Whole model as one parameter group (the paper also allows per-layer targets).
 * The adjusted gradients stay combinations of the rows: weights are exact, direction = weightsᵀ J.
 *
 * State is explicit: `gradvacWeights` takes and returns `targets`; `GradVac` keeps it for you.
 */
import { checkGramian, checkMatrix, checkOption, checkSeed, combine, dot, gramian, matVec, seededRandom, shuffled, type Aggregation } from "./linalg.js";

export interface GradVacOptions {
  /** EMA rate of the targets, in (0, 1]. Default 0.5 (LibMTL's default; the paper tunes it). */
  beta?: number;
  /** Seed of the task order. Default 0. */
  seed?: number;
  /** T x T targets φ̂ from the previous step; default all 0 (first step). */
  targets?: number[][];
}

export function gradvacWeights(G: number[][], { beta = 0.5, seed = 0, targets }: GradVacOptions = {}): { weights: number[]; targets: number[][] } {
  const T = checkGramian(G);
  checkOption("GradVac beta", beta, "in (0, 1]", (v) => v > 0 && v <= 1);
  const random = seededRandom(checkSeed("GradVac", seed));
  if (targets !== undefined) {
    const [rows, cols] = checkMatrix(targets, "GradVac targets");
    if (rows !== T || cols !== T) throw new Error(`GradVac targets must be ${T} x ${T} to match the ${T} tasks, but got ${rows} x ${cols}.`);
  }
  const next = targets ? targets.map((row) => [...row]) : G.map(() => new Array<number>(T).fill(0));
  const weights = new Array<number>(T).fill(0);
  for (let i = 0; i < T; i++) {
    const c = new Array<number>(T).fill(0); // adjusted g_i as a combination of the rows
    c[i] = 1;
    for (const j of shuffled([...Array(T).keys()].filter((k) => k !== i), random)) {
      const normI = Math.sqrt(Math.max(0, dot(c, matVec(G, c))));
      const normJ = Math.sqrt(Math.max(0, G[j][j]));
      if (normI === 0 || normJ === 0) continue; // cosine undefined: nothing to vaccinate
      const phi = Math.max(-1, Math.min(1, dot(c, G[j]) / (normI * normJ)));
      const target = Math.max(-1, Math.min(1, next[i][j]));
      // A target of ±1 would divide by zero; such a target cannot be reached by adding g_j anyway.
      if (phi < target && Math.abs(target) < 1) {
        const root = Math.sqrt(1 - target * target);
        c[j] += (normI * (target * Math.sqrt(1 - phi * phi) - phi * root)) / (normJ * root);
      }
      next[i][j] = (1 - beta) * next[i][j] + beta * phi;
    }
    c.forEach((v, k) => (weights[k] += v));
  }
  return { weights, targets: next };
}

export function gradvac(J: number[][], options?: GradVacOptions): Aggregation & { targets: number[][] } {
  checkMatrix(J);
  const { weights, targets } = gradvacWeights(gramian(J), options);
  return { direction: combine(weights, J), weights, targets };
}

/** Stateful GradVac: remembers the targets and advances the seed by one per call. */
export class GradVac {
  targets: number[][] | undefined;
  step = 0;
  constructor(readonly options: { beta?: number; seed?: number } = {}) {
    checkOption("GradVac beta", options.beta ?? 0.5, "in (0, 1]", (v) => v > 0 && v <= 1);
    checkSeed("GradVac", options.seed ?? 0);
  }

  /** The targets and the step (which advances the seed), for checkpoints. */
  exportState(): { targets: number[][] | null; step: number } {
    return { targets: this.targets ? this.targets.map((r) => [...r]) : null, step: this.step };
  }

  importState(state: { targets?: unknown; step?: unknown }): void {
    const { targets, step } = state ?? {};
    if (targets !== null && targets !== undefined && !(Array.isArray(targets) && targets.every((r) => Array.isArray(r) && r.every((x) => typeof x === "number" && Number.isFinite(x))))) {
      throw new Error(`GradVac state targets must be null or a matrix of finite numbers, but got ${JSON.stringify(targets)}.`);
    }
    this.targets = targets ? (targets as number[][]).map((r) => [...r]) : undefined;
    this.step = checkOption("GradVac state step", step, "an integer >= 0", (v) => Number.isInteger(v) && v >= 0);
  }

  aggregate(J: number[][]): Aggregation {
    const out = gradvac(J, { beta: this.options.beta, seed: (this.options.seed ?? 0) + this.step, targets: this.targets });
    this.targets = out.targets;
    this.step += 1;
    return { direction: out.direction, weights: out.weights };
  }
}
