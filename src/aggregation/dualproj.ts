/**
 * DualProj: the average gradient projected onto the dual cone of the rows.
 * Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv:2406.16232, 2024
 * (the projection idea comes from GEM: Lopez-Paz & Ranzato, NeurIPS 2017).
 *
 * Jᵀ u (u = preference, default 1/T) is projected onto {x : J x >= 0}; the projection is Jᵀ v
 * with v = argmin_{v >= u} vᵀ G v (qp.ts). Weights v are exact: direction = weightsᵀ J.
 */
import { checkGramian, checkMatrix, combine, gramian, type Aggregation } from "./linalg.js";
import { projectWeights, type QPOptions } from "./qp.js";
import { preferenceVector } from "./upgrad.js";

export interface DualProjOptions extends QPOptions {
  /** Non-negative weights defining the vector to project, length T. Default 1/T each. */
  preference?: number[];
}

export function dualprojWeights(G: number[][], { preference, ...qp }: DualProjOptions = {}): number[] {
  const T = checkGramian(G);
  return projectWeights(preferenceVector("DualProj", preference, T), G, qp);
}

export function dualproj(J: number[][], options?: DualProjOptions): Aggregation {
  checkMatrix(J);
  const weights = dualprojWeights(gramian(J), options);
  return { direction: combine(weights, J), weights };
}
