/**
 * `FusedConv2D` for wasm (a fix: the stock kernel is wrong in some geometries, see below): Conv2D +
 * bias + activation in one call. With the native
 * addon: im2col + sgemm with the bias as sgemm's starting value and the activation applied per
 * block of rows (native/conv.c); prelu goes through XNNPACK's epilogue. Without it: the stock
 * XNNPACK convolution given explicit pads (./conv2d-forward.ts says which geometries that fixes).
 * Also takes a single-value bias (the stock kernel demands rank 1) and NCHW (transposed to NHWC
 * and back).
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import type { ConvAttrs } from "./conv-util.js";
import { conv2dForward } from "./conv2d-forward.js";
import { fusableActivation } from "./fusable-activation.js";
import type { WasmKernel } from "./types.js";

interface Attrs extends ConvAttrs {
  activation?: string;
  leakyreluAlpha?: number;
}

export const fusedConv2DKernel: WasmKernel = {
  kernelName: "FusedConv2D",
  role: "fix",
  make: (native) => (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as {
      x: tf.TensorInfo;
      filter: tf.TensorInfo;
      bias?: tf.TensorInfo | null;
      preluActivationWeights?: tf.TensorInfo | null;
    };
    const a = args.attrs as unknown as Attrs;
    const activation = fusableActivation(a.activation);
    if (activation === undefined) throw new Error(`${a.activation} activation not yet supported for FusedConv2D in the wasm backend.`);
    return conv2dForward(native, args.backend as unknown as WasmBackend, "FusedConv2D", x, filter, a, {
      bias: bias ?? undefined,
      activation,
      prelu: preluActivationWeights ?? undefined,
      leakyreluAlpha: a.leakyreluAlpha ?? 0,
    });
  },
};
