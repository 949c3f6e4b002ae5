/**
 * The ops that run jointly's own fused kernels (src/backend/kernels/Jointly*.ts): a Dense layer and
 * the per-task losses as single kernels with single-kernel gradients, for the `wasm` backend with the
 * native addon.
 *
 * Why: on small models the cost of a training step is the number of ops, not their arithmetic. Each
 * tfjs op costs ~10-15 µs of engine bookkeeping (and the engine clones every tensor a gradient will
 * need, another op each), against ~3 µs for a PyTorch op. Softmax cross-entropy on class ids is about
 * 14 ops forward and as many backward when composed from tfjs ops (one-hot, log-softmax, ...); here
 * it is one each. A Dense layer's backward pass through tf.fused.matMul is about 9 ops (step, cast,
 * multiply for relu; two products; a sum and reshapes for the bias); here it is 4 (the activation's
 * derivative, two products, one sum), with the same kernels for the products and the sum, so the
 * same numbers.
 *
 * How: each function here returns `undefined` unless the fused kernels can run now (wasm is the
 * active backend, the addon is on, and src/backend/kernels/register-all.ts registered them, which it
 * does with the fast paths on), so callers keep their composite ops (and their numbers) elsewhere.
 * The kernels have registered gradients, so the results work under `tf.grads`, `tf.variableGrads`
 * and tidy like any op.
 *
 * Numbers: the Dense forward pass is the `_FusedMatMul` kernel itself, its gradient the same
 * products and sum as tf.fused.matMul's (equal bits for linear and relu). The losses accumulate in
 * double and round once, so they differ from the composite float32 ops by rounding only (tested to
 * 1e-6 relative).
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "../backend/native.js";
import { ACT_GRAD_ACTIVATIONS, JOINTLY_ACT_GRAD } from "../backend/kernels/JointlyActGrad.js";
import { JOINTLY_DENSE } from "../backend/kernels/JointlyDense.js";
import { JOINTLY_DENSE_LINEAR } from "../backend/kernels/JointlyDenseLinear.js";
import { JOINTLY_LOSS } from "../backend/kernels/JointlyLoss.js";
import { JOINTLY_LOSS_GRAD } from "../backend/kernels/JointlyLossGrad.js";
import type { FusedLossName } from "../backend/kernels/loss-common.js";

export type { FusedLossName } from "../backend/kernels/loss-common.js";

/** The activations a Dense layer can fuse here (those `JointlyActGrad` differentiates from the output). */
export const FUSED_ACTIVATIONS = ACT_GRAD_ACTIVATIONS;
export type FusedActivation = (typeof FUSED_ACTIVATIONS)[number];

const FUSED_KERNELS = [JOINTLY_DENSE, JOINTLY_DENSE_LINEAR, JOINTLY_ACT_GRAD, JOINTLY_LOSS, JOINTLY_LOSS_GRAD];

/** True for the names of {@link FUSED_ACTIVATIONS}. */
export function isFusedActivation(name: string): name is FusedActivation {
  return (FUSED_ACTIVATIONS as readonly string[]).includes(name);
}

/** True when the fused ops can run now: wasm is the active backend, the addon is on, and the fused kernels are registered. */
export function fusedOpsActive(): boolean {
  return tf.getBackend() === "wasm" && activeNative() !== undefined && FUSED_KERNELS.every((k) => tf.getKernel(k, "wasm") !== undefined);
}

/**
 * The gradient through a fusable activation from its output `y`, `dy ⊙ act'(y)`, as the one kernel
 * the fused Dense gradient uses (so the same numbers), or `undefined` when the fused ops are not
 * active or the activation is not one of {@link FusedActivation}.
 */
export function fusedActivationGrad(dy: tf.Tensor, y: tf.Tensor, activation: string): tf.Tensor | undefined {
  if (!fusedOpsActive() || !isFusedActivation(activation) || dy.dtype !== "float32" || y.dtype !== "float32") return undefined;
  return tf.engine().runKernel(JOINTLY_ACT_GRAD, { dy, y }, { activation }) as tf.Tensor;
}

/**
 * `activation(x · kernel + bias)` as one fused op with a 4-op gradient, or `undefined` when the fused
 * ops are not active or the arguments are not the plain case (rank-2 float32 x and kernel, rank-1
 * bias of the kernel's width, an activation listed in {@link FusedActivation}).
 */
export function fusedDense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, activation: string): tf.Tensor2D | undefined {
  if (!fusedOpsActive() || !isFusedActivation(activation)) return undefined;
  if (x.rank !== 2 || kernel.rank !== 2 || bias.rank !== 1 || x.dtype !== "float32" || kernel.dtype !== "float32" || bias.dtype !== "float32") return undefined;
  if (x.shape[1] !== kernel.shape[0] || bias.shape[0] !== kernel.shape[1]) return undefined;
  return tf.engine().runKernel(activation === "linear" ? JOINTLY_DENSE_LINEAR : JOINTLY_DENSE, { a: x, b: kernel, bias }, { activation }) as tf.Tensor2D;
}

/**
 * A per-task loss as one fused op: the mean over rows (`mean`) or one value per row, or `undefined`
 * when the fused ops are not active or the case is not covered (softmax CE needs rank-2 logits and one
 * class id per row, or with `softmaxCrossEntropyRows` one-hot / probability rows of the logits' shape;
 * MSE and sigmoid CE need labels with as many elements as the predictions).
 * Validation of shapes with clear errors is the caller's (src/losses/per-task.ts).
 */
export function fusedLoss(kind: FusedLossName, labels: tf.Tensor, predictions: tf.Tensor, mean: boolean): tf.Tensor | undefined {
  if (!fusedOpsActive() || predictions.dtype !== "float32" || predictions.rank === 0) return undefined;
  const n = predictions.shape[0]!;
  if (kind === "softmaxCrossEntropy") {
    if (predictions.rank !== 2 || labels.size !== n || (labels.dtype !== "int32" && labels.dtype !== "float32") || predictions.shape[1] === 0) return undefined;
  } else if (kind === "softmaxCrossEntropyRows") {
    if (predictions.rank !== 2 || labels.size !== predictions.size || labels.dtype !== "float32" || predictions.shape[1] === 0) return undefined;
  } else if (labels.size !== predictions.size || labels.dtype !== "float32") {
    return undefined;
  }
  return tf.engine().runKernel(JOINTLY_LOSS, { pred: predictions, labels }, { kind, mean } as unknown as tf.NamedAttrMap) as tf.Tensor;
}
