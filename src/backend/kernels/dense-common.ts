/**
 * What jointly's two Dense kernels (./JointlyDense.ts, ./JointlyDenseLinear.ts) share: the forward
 * pass, which is the registered `_FusedMatMul` kernel itself (so the same numbers as
 * tf.fused.matMul), and the gradients of x·W + b given the gradient at the pre-activation.
 */
import * as tf from "@tensorflow/tfjs";

/** The attributes of jointly's Dense kernels. */
export interface DenseAttrs {
  /** One of the activations of src/ops/fused.ts's `FusedActivation`. */
  activation: string;
}

/** `activation(a · b + bias)` through the wasm `_FusedMatMul` kernel registered now (ours, normally). */
export const denseForward: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const fused = tf.getKernel("_FusedMatMul", "wasm");
  if (fused === undefined) throw new Error("JointlyDense: no _FusedMatMul kernel on wasm");
  const { a, b, bias } = inputs;
  return fused.kernelFunc({
    inputs: { a: a!, b: b!, bias: bias! },
    attrs: { transposeA: false, transposeB: false, activation: (attrs as unknown as DenseAttrs).activation, leakyreluAlpha: 0 },
    backend,
  }) as tf.TensorInfo;
};

/** Gradients of x·W + b given dz, the gradient at the pre-activation: two products and a column sum. */
export function denseGrads(a: tf.Tensor2D, b: tf.Tensor2D, dz: tf.Tensor2D): Record<string, () => tf.Tensor> {
  return {
    a: () => tf.matMul(dz, b, false, true),
    b: () => tf.matMul(a, dz, true, false),
    bias: () => tf.sum(dz, 0),
  };
}
