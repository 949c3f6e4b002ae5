/**
 * `DepthwiseConv2dNative` for wasm (a fix: the stock kernel is wrong in some geometries, see
 * below). With the native addon: a C loop over output pixels and taps with the channels innermost (native/conv.c). Without it: the stock XNNPACK
 * depthwise convolution, but given explicit pads, which fixes the geometries where the stock
 * kernel's TensorFlow-SAME mode makes XNNPACK refuse the operator and leave the output unwritten
 * (e.g. a 1x3 filter with strides 2); where XNNPACK's output cannot have tfjs's size, a
 * JavaScript loop (./conv-loops.ts). NCHW is transposed to NHWC and back.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { prod, type WasmBackend } from "../wasm-internals.js";
import { depthwiseForwardLoop } from "./conv-loops.js";
import { forwardInfo, inNhwc, nhwcShape, runLoop, runNative, xnnDepthwiseConv2d, xnnForwardPads, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "DepthwiseConv2dNative";

function make(native: NativeKernels | undefined): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const wasm = backend as unknown as WasmBackend;
    const info = forwardInfo(NAME, x, filter, attrs as unknown as ConvAttrs, true, "x");
    const channelsFirst = info.dataFormat === "channelsFirst";
    const outShape = nhwcShape(info.outShape, channelsFirst);
    return inNhwc(wasm, channelsFirst, [x], false, ([xh]) => {
      if (prod(outShape) === 0) return wasm.makeOutput(outShape, "float32");
      if (native !== undefined && prod(x.shape) > 0) {
        const out = wasm.makeOutput(outShape, "float32");
        runNative(wasm, info, native.depthwiseConv2d, xh!, filter, out);
        return out;
      }
      const pads = prod(x.shape) > 0 ? xnnForwardPads(info) : undefined;
      if (pads !== undefined) return xnnDepthwiseConv2d(wasm, xh!, filter, pads);
      const out = wasm.makeOutput(outShape, "float32");
      runLoop(wasm, info, depthwiseForwardLoop, xh!, filter, out);
      return out;
    });
  };
}

export const depthwiseConv2dNativeKernel: WasmKernel = {
  kernelName: NAME,
  role: "fix",
  make: (native) => make(native),
};
