/**
 * `dense()`: a Dense layer's computation for forward functions written by hand, fused where jointly
 * can fuse it (./fused.ts) and tf.fused.matMul everywhere else.
 */
import * as tf from "@tensorflow/tfjs";
import { FUSED_ACTIVATIONS, fusedDense, isFusedActivation, type FusedActivation } from "./fused.js";

export type { FusedActivation } from "./fused.js";

/**
 * A Dense layer's computation, `activation(x · kernel + bias)`, for forward functions written by hand
 * (an `AlternatingTrainer`'s `forward`, a custom model): one fused op with a 4-op gradient on wasm
 * with the native addon, `tf.fused.matMul` everywhere else (same numbers). `x` is `[rows, in]`,
 * `kernel` `[in, out]`, `bias` `[out]` or omitted.
 *
 * @example
 * const h = dense(x, w1, b1, "relu");
 * const out = dense(h, w2, b2);
 */
export function dense(x: tf.Tensor, kernel: tf.Tensor, bias?: tf.Tensor, activation: FusedActivation = "linear"): tf.Tensor2D {
  if (!isFusedActivation(activation)) {
    throw new Error(`dense: activation must be one of ${FUSED_ACTIVATIONS.join(", ")}, but got "${String(activation)}".`);
  }
  if (x.rank !== 2 || kernel.rank !== 2 || x.shape[1] !== kernel.shape[0]) {
    throw new Error(`dense: x [rows, in] and kernel [in, out] must agree, but got x of shape [${x.shape}] and kernel of shape [${kernel.shape}].`);
  }
  if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== kernel.shape[1])) {
    throw new Error(`dense: bias must have shape [${kernel.shape[1]}], but got [${bias.shape}].`);
  }
  if (bias !== undefined) {
    const out = fusedDense(x, kernel, bias, activation);
    if (out !== undefined) return out;
  }
  return tf.fused.matMul({ a: x as tf.Tensor2D, b: kernel as tf.Tensor2D, bias, activation }) as tf.Tensor2D;
}
