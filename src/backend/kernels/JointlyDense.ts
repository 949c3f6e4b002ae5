/**
 * `JointlyDense` (one of jointly's own kernels, with the native addon only): a Dense layer with a
 * nonlinear activation, `activation(a · b + bias)`, as one op with a 4-op gradient (the activation's
 * derivative once, by ./JointlyActGrad.ts, then two products and a column sum) against about 9 for
 * tf.fused.matMul's. The forward pass is the `_FusedMatMul` kernel and the gradient the same
 * products and sum as tf.fused.matMul's, so the same numbers (equal bits for relu). Run by
 * src/ops/fused.ts's `fusedDense`; see ./JointlyDenseLinear.ts for the linear case.
 */
import * as tf from "@tensorflow/tfjs";
import { denseForward, denseGrads, type DenseAttrs } from "./dense-common.js";
import { JOINTLY_ACT_GRAD } from "./JointlyActGrad.js";
import type { WasmKernel } from "./types.js";

export const JOINTLY_DENSE = "JointlyDense";

export const jointlyDenseKernel: WasmKernel = {
  kernelName: JOINTLY_DENSE,
  role: "new",
  make: (native) => (native === undefined ? undefined : denseForward),
  gradient: {
    kernelName: JOINTLY_DENSE,
    inputsToSave: ["a", "b"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [a, b, y] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      const activation = (attrs as unknown as DenseAttrs).activation;
      // The activation's derivative once, shared by the three gradients.
      const dz = activation === "linear" ? (dy as tf.Tensor2D) : (tf.engine().runKernel(JOINTLY_ACT_GRAD, { dy: dy as tf.Tensor, y }, { activation }) as tf.Tensor2D);
      return denseGrads(a, b, dz);
    },
  },
};
