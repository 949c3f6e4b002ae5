/**
 * Mean: equal weights 1/T on every task gradient. The baseline every other method is compared
 * with (equivalent to minimising the average loss).
 */
import { checkMatrix, combine, type Aggregation } from "./linalg.js";

export function meanWeights(T: number): number[] {
  return new Array<number>(T).fill(1 / T);
}

export function mean(J: number[][]): Aggregation {
  const [T] = checkMatrix(J);
  const weights = meanWeights(T);
  return { direction: combine(weights, J), weights };
}
