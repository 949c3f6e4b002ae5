/**
 * `DepthwiseConv2dNativeBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22): the filter
 * gradient of a depthwise convolution (any channel multiplier, strides, dilations), summed over
 * every output pixel of the batch in float64. With the native addon a C loop (native/conv.c),
 * without it the same loop in JavaScript over the heap (./conv-loops.ts). NHWC (tfjs gives this
 * kernel no data format).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { depthwiseBackpropFilterLoop } from "./conv-loops.js";
import { checkInput, checkShape, convInfo, geometry, heapF32, type ConvAttrs } from "./conv-util.js";
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
    checkInput(NAME, "x", x);
    checkInput(NAME, "dy", dy);
    const info = convInfo(x.shape, a.filterShape, { ...a, dataFormat: "NHWC" }, true);
    if (a.filterShape[2] !== info.inChannels) {
      throw new Error(`${NAME} (wasm): filterShape [${a.filterShape}] has ${a.filterShape[2]} input channels, but x has ${info.inChannels}.`);
    }
    checkShape(NAME, "dy", dy.shape, info.outShape);
    const out = wasm.makeOutput([...a.filterShape], "float32");
    const size = prod(a.filterShape);
    if (size === 0) return out;
    if (native !== undefined) {
      native.depthwiseConv2dBackpropFilter(wasm.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(wasm, x), byteOffset(wasm, dy), byteOffset(wasm, out));
      return out;
    }
    const heap = heapF32(wasm);
    const view = (t: tf.TensorInfo): Float32Array => heap.subarray(byteOffset(wasm, t) / 4, byteOffset(wasm, t) / 4 + prod(t.shape));
    depthwiseBackpropFilterLoop(info, view(x), view(dy), view(out));
    return out;
  };
}

export const depthwiseConv2dNativeBackpropFilterKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
