/**
 * `DepthwiseConv2dNativeBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22): the filter
 * gradient of a depthwise convolution (any channel multiplier, strides, dilations), summed over
 * every output pixel of the batch in float64. With the native addon a C loop (native/conv.c),
 * without it the same loop in JavaScript over the heap (./conv-loops.ts). NHWC (tfjs gives this
 * kernel no data format).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import type { WasmBackend } from "../wasm-internals.js";
import { depthwiseBackpropFilterLoop } from "./conv-loops.js";
import { filterGradInfo, nativeOrLoop, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "DepthwiseConv2dNativeBackpropFilter";

interface Attrs extends ConvAttrs {
  filterShape: [number, number, number, number];
}

function make(native: NativeKernels | undefined): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as unknown as Attrs;
    const wasm = backend as unknown as WasmBackend;
    const info = filterGradInfo(NAME, x, dy, a.filterShape, { ...a, dataFormat: "NHWC" }, true);
    return nativeOrLoop(wasm, info, a.filterShape, native?.depthwiseConv2dBackpropFilter, depthwiseBackpropFilterLoop, x, dy);
  };
}

export const depthwiseConv2dNativeBackpropFilterKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
