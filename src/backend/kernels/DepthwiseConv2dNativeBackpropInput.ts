/**
 * `DepthwiseConv2dNativeBackpropInput` for wasm (missing in tfjs-backend-wasm 4.22): the input
 * gradient of a depthwise convolution (any channel multiplier, strides, dilations). With the
 * native addon a C loop (native/conv.c), without it the same loop in JavaScript over the heap
 * (./conv-loops.ts). NHWC (tfjs gives this kernel no data format).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { prod, type WasmBackend } from "../wasm-internals.js";
import { depthwiseBackpropInputLoop } from "./conv-loops.js";
import { inputGradInfo, nativeOrLoop, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "DepthwiseConv2dNativeBackpropInput";

interface Attrs extends ConvAttrs {
  inputShape: [number, number, number, number];
}

function make(native: NativeKernels | undefined): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const a = attrs as unknown as Attrs;
    const wasm = backend as unknown as WasmBackend;
    const info = inputGradInfo(NAME, dy, filter, a.inputShape, { ...a, dataFormat: "NHWC" }, true, `inputShape [${a.inputShape}]`);
    // The native loop is not given an empty filter (its dx is zeros, which the JavaScript loop writes).
    const fn = prod(filter.shape) > 0 ? native?.depthwiseConv2dBackpropInput : undefined;
    return nativeOrLoop(wasm, info, a.inputShape, fn, depthwiseBackpropInputLoop, dy, filter);
  };
}

export const depthwiseConv2dNativeBackpropInputKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
