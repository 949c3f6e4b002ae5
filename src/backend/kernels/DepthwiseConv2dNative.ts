/**
 * `DepthwiseConv2dNative` for wasm (an override, with the native addon only): a C loop over
 * output pixels and taps with the channels innermost (native/conv.c). NCHW is transposed to NHWC
 * and back. Without the addon the stock XNNPACK kernel stays.
 */
import type * as tf from "@tensorflow/tfjs";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { checkInput, convInfo, geometry, inNhwc, nhwcShape, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "DepthwiseConv2dNative";

export const depthwiseConv2dNativeKernel: WasmKernel = {
  kernelName: NAME,
  role: "override",
  make: (native) => {
    if (native === undefined) return undefined;
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
      return inNhwc(wasm, channelsFirst, [x], false, ([xh]) => {
        const out = wasm.makeOutput(nhwcShape(info.outShape, channelsFirst), "float32");
        if (prod(info.outShape) === 0 || prod(x.shape) === 0) {
          const o = byteOffset(wasm, out) / 4;
          new Float32Array(wasm.wasm.HEAPU8.buffer).fill(0, o, o + prod(info.outShape));
          return out;
        }
        native.depthwiseConv2d(wasm.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(wasm, xh!), byteOffset(wasm, filter), byteOffset(wasm, out));
        return out;
      });
    };
  },
};
