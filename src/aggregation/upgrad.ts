/**
 * UPGrad: unconflicting projection of gradients.
 * Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv:2406.16232, 2024.
 *
 * Each row g_i is projected onto the dual cone {x : J x >= 0} of the rows and the projections are
 * averaged (weighted by `preference`, default 1/T). Projecting Jᵀ u onto that cone is Jᵀ v with
 * v = argmin_{v >= u} vᵀ G v, a small non-negative QP on the Gramian (see qp.ts). The weights are
 * the average of those v: exact, direction = weightsᵀ J, and <g_i, direction> >= 0 for every i.
 */
import { checkGramian, checkMatrix, checkOption, combine, gramian, type Aggregation } from "./linalg.js";
import { projectWeights, type QPOptions } from "./qp.js";

export interface UPGradOptions extends QPOptions {
  /** Non-negative weights of the projected rows, length T. Default 1/T each. */
  preference?: number[];
}

/** Checks a preference vector (non-negative, length T) or returns the default 1/T each. */
export function preferenceVector(who: string, preference: unknown, T: number): number[] {
  if (preference === undefined) return new Array<number>(T).fill(1 / T);
  if (!Array.isArray(preference) || preference.length !== T) {
    throw new Error(`${who} preference must be an array of ${T} numbers, but got ${Array.isArray(preference) ? `length ${preference.length}` : String(preference)}.`);
  }
  return preference.map((p, i) => checkOption(`${who} preference[${i}]`, p, "a number >= 0", (v) => v >= 0));
}

export function upgradWeights(G: number[][], { preference, ...qp }: UPGradOptions = {}): number[] {
  const T = checkGramian(G);
  const u = preferenceVector("UPGrad", preference, T);
  const weights = new Array<number>(T).fill(0);
  for (let i = 0; i < T; i++) {
    if (u[i] === 0) continue;
    const e = new Array<number>(T).fill(0);
    e[i] = u[i];
    projectWeights(e, G, qp).forEach((v, k) => (weights[k] += v));
  }
  return weights;
}

export function upgrad(J: number[][], options?: UPGradOptions): Aggregation {
  checkMatrix(J);
  const weights = upgradWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
