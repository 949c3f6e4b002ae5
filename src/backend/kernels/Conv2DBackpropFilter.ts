/**
 * `Conv2DBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22): the filter gradient of
 * Conv2D, dw = Σ over output pixels of the input patch under each tap times dy.
 *
 * With the native addon: im2col of x in blocks of rows and sgemm (native/conv.c). Without it:
 * JavaScript loops over the heap, summing in float64 (./conv-loops.ts). NCHW tensors are
 * transposed to NHWC first. Like the cpu kernel it takes no dilations attribute from tfjs, but
 * honours one if given (jointly's dilated-conv gradient passes it).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { conv2DBackpropFilterLoop } from "./conv-loops.js";
import { checkInput, checkShape, convInfo, geometry, heapF32, inNhwc, nhwcShape, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "Conv2DBackpropFilter";

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
    const info = convInfo(x.shape, a.filterShape, a, false);
    checkShape(NAME, "dy", dy.shape, info.outShape);
    if (a.filterShape[2] !== info.inChannels) {
      throw new Error(`${NAME} (wasm): filterShape [${a.filterShape}] has ${a.filterShape[2]} input channels, but x has ${info.inChannels}.`);
    }
    const channelsFirst = info.dataFormat === "channelsFirst";
    return inNhwc(wasm, channelsFirst, [x, dy], true, ([xh, dyh]) => {
      const out = wasm.makeOutput([...a.filterShape], "float32");
      const size = prod(a.filterShape);
      if (size === 0) return out;
      if (native !== undefined) {
        native.conv2dBackpropFilter(wasm.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(wasm, xh!), byteOffset(wasm, dyh!), byteOffset(wasm, out));
      } else {
        const heap = heapF32(wasm);
        const view = (t: tf.TensorInfo, shape: readonly number[]): Float32Array => {
          const o = byteOffset(wasm, t) / 4;
          return heap.subarray(o, o + prod(shape as number[]));
        };
        conv2DBackpropFilterLoop(info, view(xh!, nhwcShape(x.shape, channelsFirst)), view(dyh!, nhwcShape(dy.shape, channelsFirst)), view(out, a.filterShape));
      }
      return out;
    });
  };
}

export const conv2DBackpropFilterKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
