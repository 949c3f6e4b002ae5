/**
 * `Conv2D` for wasm (a fix: the stock kernel is wrong in some geometries, see below). With the
 * native addon: im2col + OpenBLAS sgemm
 * (native/conv.c), 1.5-3x the stock XNNPACK convolution on the W7 / W8 layers of
 * bench/conv-kernels.ts. Without it: still XNNPACK, but given explicit pads, which fixes the
 * geometries the stock kernel gets wrong (./conv2d-forward.ts says which). NCHW is transposed to
 * NHWC and back (the stock kernel refuses NCHW).
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import type { ConvAttrs } from "./conv-util.js";
import { conv2dForward } from "./conv2d-forward.js";
import { FUSABLE_ACTIVATION } from "./fusable-activation.js";
import type { WasmKernel } from "./types.js";

export const conv2DKernel: WasmKernel = {
  kernelName: "Conv2D",
  role: "fix",
  make: (native) => ({ inputs, attrs, backend }) => {
    const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    return conv2dForward(native, backend as unknown as WasmBackend, "Conv2D", x, filter, attrs as unknown as ConvAttrs, {
      activation: FUSABLE_ACTIVATION.linear,
      leakyreluAlpha: 0,
    });
  },
};
