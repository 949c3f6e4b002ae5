/**
 * `DepthwiseConv2dNative` for wasm (an override). With the native addon: a C loop over output
 * pixels and taps with the channels innermost (native/conv.c). Without it: the stock XNNPACK
 * depthwise convolution, but given explicit pads, which fixes the geometries where the stock
 * kernel's TensorFlow-SAME mode makes XNNPACK refuse the operator and leave the output unwritten
 * (e.g. a 1x3 filter with strides 2); where XNNPACK's output cannot have tfjs's size, a
 * JavaScript loop (./conv-loops.ts). NCHW is transposed to NHWC and back.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { depthwiseForwardLoop } from "./conv-loops.js";
import { checkInput, convInfo, geometry, heapF32, inNhwc, nhwcShape, xnnDepthwiseConv2d, xnnForwardPads, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "DepthwiseConv2dNative";

function make(native: NativeKernels | undefined): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const wasm = backend as unknown as WasmBackend;
    checkInput(NAME, "x", x);
    checkInput(NAME, "filter", filter);
    const info = convInfo(x.shape, filter.shape, attrs as unknown as ConvAttrs, true);
    if (filter.shape[2] !== info.inChannels) {
      throw new Error(`${NAME} (wasm): the filter has ${filter.shape[2]} input channels (shape [${filter.shape}]), but x has ${info.inChannels}.`);
    }
    const channelsFirst = info.dataFormat === "channelsFirst";
    const outShape = nhwcShape(info.outShape, channelsFirst);
    return inNhwc(wasm, channelsFirst, [x], false, ([xh]) => {
      if (prod(outShape) === 0) return wasm.makeOutput(outShape, "float32");
      if (native !== undefined && prod(x.shape) > 0) {
        const out = wasm.makeOutput(outShape, "float32");
        native.depthwiseConv2d(wasm.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(wasm, xh!), byteOffset(wasm, filter), byteOffset(wasm, out));
        return out;
      }
      const pads = prod(x.shape) > 0 ? xnnForwardPads(info) : undefined;
      if (pads !== undefined) return xnnDepthwiseConv2d(wasm, xh!, filter, pads);
      const out = wasm.makeOutput(outShape, "float32");
      const heap = heapF32(wasm);
      const view = (t: tf.TensorInfo): Float32Array => heap.subarray(byteOffset(wasm, t) / 4, byteOffset(wasm, t) / 4 + prod(t.shape));
      depthwiseForwardLoop(info, view(xh!), view(filter), view(out));
      return out;
    });
  };
}

export const depthwiseConv2dNativeKernel: WasmKernel = {
  kernelName: NAME,
  role: "override",
  make: (native) => make(native),
};
