/**
 * `Conv2D` for wasm (an override, with the native addon only): im2col + OpenBLAS sgemm
 * (native/conv.c), measured faster than the stock XNNPACK convolution on the LeNet and CelebA-like
 * layers of bench/conv-kernels.ts. NCHW is transposed to NHWC and back (the stock kernel refuses
 * NCHW). Without the addon the stock kernel stays.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { nativeConv2dForward, type ConvAttrs } from "./conv-util.js";
import { FUSABLE_ACTIVATION } from "./fusable-activation.js";
import type { WasmKernel } from "./types.js";

export const conv2DKernel: WasmKernel = {
  kernelName: "Conv2D",
  role: "override",
  make: (native) => {
    if (native === undefined) return undefined;
    return ({ inputs, attrs, backend }) => {
      const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
      return nativeConv2dForward(native, backend as unknown as WasmBackend, "Conv2D", x, filter, attrs as unknown as ConvAttrs, {
        activation: FUSABLE_ACTIVATION.linear,
        leakyreluAlpha: 0,
      });
    };
  },
};
