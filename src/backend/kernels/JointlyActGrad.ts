/**
 * `JointlyActGrad` (one of jointly's own kernels, with the native addon only): the gradient through
 * a fusable activation from its output y, `dy ⊙ act'(y)`, in one native pass. The gradient of
 * ./JointlyDense.ts runs it once and shares it among its three gradients; src/ops/fused.ts's
 * `fusedActivationGrad` offers it to hand-written backward passes.
 */
import type * as tf from "@tensorflow/tfjs";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { FUSABLE_ACTIVATION, type FusableActivationName } from "./fusable-activation.js";
import type { WasmKernel } from "./types.js";

export const JOINTLY_ACT_GRAD = "JointlyActGrad";

/** The activations this kernel differentiates from their output (so the ones a fused Dense layer can use). */
export const ACT_GRAD_ACTIVATIONS = ["linear", "relu", "relu6", "sigmoid", "elu"] as const satisfies readonly FusableActivationName[];

export const jointlyActGradKernel: WasmKernel = {
  kernelName: JOINTLY_ACT_GRAD,
  role: "new",
  make: (native) => {
    if (native === undefined) return undefined;
    return ({ inputs, attrs, backend }) => {
      const wasm = backend as unknown as WasmBackend;
      const { dy, y } = inputs as { dy: tf.TensorInfo; y: tf.TensorInfo };
      const out = wasm.makeOutput(y.shape.slice(), "float32");
      const code = FUSABLE_ACTIVATION[(attrs as unknown as { activation: FusableActivationName }).activation];
      native.actGrad(wasm.wasm.HEAPU8.buffer, prod(y.shape), code, byteOffset(wasm, dy), byteOffset(wasm, y), byteOffset(wasm, out));
      return out;
    };
  },
};
