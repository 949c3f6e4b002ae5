/**
 * What the addon's row-copy kernels (./GatherV2.ts, ./Concat.ts, ./SplitV.ts) share: they copy
 * 4-byte elements, so they take float32 and int32 tensors and leave every other dtype to the stock
 * kernel.
 */
import type * as tf from "@tensorflow/tfjs";

/** float32 and int32: the 4-byte types the native copies handle. */
export function copiesNatively(dtype: tf.DataType): boolean {
  return dtype === "float32" || dtype === "int32";
}
