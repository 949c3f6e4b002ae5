/**
 * What jointly's two loss kernels (./JointlyLoss.ts, ./JointlyLossGrad.ts) share: the loss kinds as
 * the native addon numbers them, their attributes, and how a predictions tensor is read as rows.
 */
import type * as tf from "@tensorflow/tfjs";
import { prod } from "../wasm-internals.js";

/** Loss kinds, as the addon numbers them. */
export const LOSS_KIND = { softmaxCrossEntropy: 0, mse: 1, binaryCrossEntropy: 2, softmaxCrossEntropyRows: 3 } as const;
export type FusedLossName = keyof typeof LOSS_KIND;

/** The attributes of `JointlyLoss` (and, with `wrtLabels`, of `JointlyLossGrad`). */
export interface LossAttrs {
  kind: FusedLossName;
  /** The mean over rows (a scalar), or one value per row. */
  mean: boolean;
}

/** Rows and values per row of a predictions tensor, as the loss kernels see it. */
export function rowsOf(pred: tf.TensorInfo): { n: number; cols: number } {
  const n = pred.shape[0] ?? 1;
  return { n, cols: n === 0 ? 0 : prod(pred.shape) / n };
}
