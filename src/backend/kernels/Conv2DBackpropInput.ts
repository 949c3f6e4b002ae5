/**
 * `Conv2DBackpropInput` for wasm (an override: the stock kernel is a scalar loop at about 1-2
 * GFLOP/s): the input gradient of Conv2D, also the forward pass of conv2dTranspose.
 *
 * With the native addon: per block of output pixels, dcol = dy·wᵀ by sgemm, then col2im adds it
 * onto dx (native/conv.c). Without it, through the stock backend's fast XNNPACK convolution:
 * dx = conv(dy', w'), where w' is w flipped in both spatial axes with its in/out channels swapped,
 * and dy' is dy with strideHeight−1 (strideWidth−1) zero rows (columns) between its rows
 * (columns), padded by (filter extent − 1 − forward pad) so the output has the input's size.
 * Where those pads would be negative (explicit pads beyond the filter extent), the stock kernel
 * (or, with dilations, a JavaScript loop) runs instead. NCHW tensors are transposed to NHWC first.
 * tfjs gives this kernel no dilations attribute; one that is given is honoured.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { conv2DBackpropInputLoop } from "./conv-loops.js";
import { heapF32, heapView, inNhwc, inputGradInfo, nhwcShape, runLoop, runNative, xnnConv2d, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "Conv2DBackpropInput";

interface Attrs extends ConvAttrs {
  inputShape: [number, number, number, number];
}

type Info = tf.backend_util.Conv2DInfo;

/** The pads of the XNNPACK formulation (described above), or undefined when one would be negative. */
function xnnPads(info: Info): { padTop: number; padLeft: number; padBottom: number; padRight: number } | undefined {
  const pads = {
    padTop: (info.filterHeight - 1) * info.dilationHeight - info.padInfo.top,
    padLeft: (info.filterWidth - 1) * info.dilationWidth - info.padInfo.left,
    padBottom: info.inHeight - 1 + info.padInfo.top - (info.outHeight - 1) * info.strideHeight,
    padRight: info.inWidth - 1 + info.padInfo.left - (info.outWidth - 1) * info.strideWidth,
  };
  return Object.values(pads).some((p) => p < 0) ? undefined : pads;
}

/** dx through XNNPACK (NHWC dy and filter). */
function viaXnnpack(wasm: WasmBackend, info: Info, pads: NonNullable<ReturnType<typeof xnnPads>>, dy: tf.TensorInfo, filter: tf.TensorInfo): tf.TensorInfo {
  const { batchSize: B, inChannels: C, outHeight: OH, outWidth: OW, outChannels: N } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = info;
  const strided = SH > 1 || SW > 1;
  const flipped = wasm.makeOutput([FH, FW, N, C], "float32");
  const spreadH = (OH - 1) * SH + 1;
  const spreadW = (OW - 1) * SW + 1;
  const spread = strided ? wasm.makeOutput([B, spreadH, spreadW, N], "float32") : dy;
  try {
    const heap = heapF32(wasm);
    const w = byteOffset(wasm, filter) / 4;
    const f = byteOffset(wasm, flipped) / 4;
    for (let fy = 0; fy < FH; fy++) {
      for (let fx = 0; fx < FW; fx++) {
        const src = w + (fy * FW + fx) * C * N;
        const dst = f + ((FH - 1 - fy) * FW + (FW - 1 - fx)) * N * C;
        for (let c = 0; c < C; c++) for (let n = 0; n < N; n++) heap[dst + n * C + c] = heap[src + c * N + n];
      }
    }
    if (strided) {
      const s = byteOffset(wasm, spread) / 4;
      const d = byteOffset(wasm, dy) / 4;
      heap.fill(0, s, s + B * spreadH * spreadW * N);
      for (let b = 0; b < B; b++) {
        for (let oy = 0; oy < OH; oy++) {
          for (let ox = 0; ox < OW; ox++) {
            const from = d + ((b * OH + oy) * OW + ox) * N;
            heap.copyWithin(s + ((b * spreadH + oy * SH) * spreadW + ox * SW) * N, from, from + N);
          }
        }
      }
    }
    return xnnConv2d(wasm, spread, flipped, { filterHeight: FH, filterWidth: FW, ...pads, strideHeight: 1, strideWidth: 1, dilationHeight: DH, dilationWidth: DW });
  } finally {
    wasm.disposeData(flipped.dataId);
    if (strided) wasm.disposeData(spread.dataId);
  }
}

function make(native: NativeKernels | undefined, stock: tf.KernelFunc | undefined): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const a = attrs as unknown as Attrs;
    const wasm = backend as unknown as WasmBackend;
    const info = inputGradInfo(NAME, dy, filter, a.inputShape, a, false);
    const dilated = info.dilationHeight > 1 || info.dilationWidth > 1;
    const channelsFirst = info.dataFormat === "channelsFirst";
    const inShape = nhwcShape(a.inputShape, channelsFirst);
    if (prod(inShape) === 0 || prod(dy.shape) === 0 || prod(filter.shape) === 0) {
      const out = wasm.makeOutput([...a.inputShape], "float32");
      heapView(wasm, out).fill(0);
      return out;
    }
    if (native !== undefined) {
      return inNhwc(wasm, channelsFirst, [dy], false, ([dyh]) => {
        const out = wasm.makeOutput(inShape, "float32");
        runNative(wasm, info, native.conv2dBackpropInput, dyh!, filter, out);
        return out;
      });
    }
    const pads = xnnPads(info);
    if (pads !== undefined) return inNhwc(wasm, channelsFirst, [dy], false, ([dyh]) => viaXnnpack(wasm, info, pads, dyh!, filter));
    // The stock kernel takes any pads (but no dilations).
    if (stock !== undefined && !dilated) return stock(args);
    return inNhwc(wasm, channelsFirst, [dy], false, ([dyh]) => {
      const out = wasm.makeOutput(inShape, "float32");
      runLoop(wasm, info, conv2DBackpropInputLoop, dyh!, filter, out);
      return out;
    });
  };
}

export const conv2DBackpropInputKernel: WasmKernel = {
  kernelName: NAME,
  role: "override",
  make: (native, stock) => make(native, stock),
};
