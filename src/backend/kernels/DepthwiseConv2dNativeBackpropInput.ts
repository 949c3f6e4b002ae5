/**
 * `DepthwiseConv2dNativeBackpropInput` for wasm (missing in tfjs-backend-wasm 4.22): the input
 * gradient of a depthwise convolution (any channel multiplier, strides, dilations). With the
 * native addon a C loop (native/conv.c), without it the same loop in JavaScript over the heap
 * (./conv-loops.ts). NHWC (tfjs gives this kernel no data format).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { depthwiseBackpropInputLoop } from "./conv-loops.js";
import { checkInput, checkShape, convInfo, geometry, heapF32, type ConvAttrs } from "./conv-util.js";
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
    checkInput(NAME, "dy", dy);
    checkInput(NAME, "filter", filter);
    const info = convInfo(a.inputShape, filter.shape, { ...a, dataFormat: "NHWC" }, true);
    if (filter.shape[2] !== info.inChannels) {
      throw new Error(`${NAME} (wasm): the filter has ${filter.shape[2]} input channels (shape [${filter.shape}]), but inputShape [${a.inputShape}] has ${info.inChannels}.`);
    }
    checkShape(NAME, "dy", dy.shape, info.outShape);
    const out = wasm.makeOutput([...a.inputShape], "float32");
    const size = prod(a.inputShape);
    if (size === 0) return out;
    if (native !== undefined && prod(filter.shape) > 0) {
      native.depthwiseConv2dBackpropInput(wasm.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(wasm, dy), byteOffset(wasm, filter), byteOffset(wasm, out));
      return out;
    }
    const heap = heapF32(wasm);
    const view = (t: tf.TensorInfo): Float32Array => heap.subarray(byteOffset(wasm, t) / 4, byteOffset(wasm, t) / 4 + prod(t.shape));
    depthwiseBackpropInputLoop(info, view(dy), view(filter), view(out));
    return out;
  };
}

export const depthwiseConv2dNativeBackpropInputKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
