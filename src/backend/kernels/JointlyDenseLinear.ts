/**
 * `JointlyDenseLinear` (one of jointly's own kernels, with the native addon only): ./JointlyDense.ts
 * without an activation, under its own name so that its gradient (two products and a column sum)
 * needs no copy of the output kept.
 */
import type * as tf from "@tensorflow/tfjs";
import { denseForward, denseGrads } from "./dense-common.js";
import type { WasmKernel } from "./types.js";

export const JOINTLY_DENSE_LINEAR = "JointlyDenseLinear";

export const jointlyDenseLinearKernel: WasmKernel = {
  kernelName: JOINTLY_DENSE_LINEAR,
  role: "new",
  make: (native) => (native === undefined ? undefined : denseForward),
  gradient: {
    kernelName: JOINTLY_DENSE_LINEAR,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor2D, tf.Tensor2D];
      return denseGrads(a, b, dy as tf.Tensor2D);
    },
  },
};
