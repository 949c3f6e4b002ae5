/**
 * `Conv2DBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22): the filter gradient of
 * Conv2D, dw = Σ over output pixels of the input patch under each tap times dy.
 *
 * With the native addon: im2col of x in blocks of rows and sgemm (native/conv.c). Without it,
 * through the stock backend's XNNPACK convolution, by the identity
 *   dw[fy, fx, ci, co] = Σ_{b, oy, ox} xᵀ[ci, fy·dh + oy·sh − pt, fx·dw + ox·sw − pl, b] · dyᵀ[oy, ox, b, co],
 * a convolution of xᵀ = x transposed to [inC, h, w, batch] (the batch as channels) by the filter
 * dyᵀ = dy transposed to [outH, outW, batch, outC], with the forward's strides as dilations and
 * its dilations as strides; its [inC, fh, fw, outC] output is transposed to the filter's layout.
 * Where that does not fit XNNPACK (a pad would be negative), JavaScript loops over the heap,
 * summing in float64 (./conv-loops.ts). NCHW tensors are transposed to NHWC first. Like the cpu
 * kernel it gets no dilations attribute from tfjs (jointly's dilated gradient dilates the filter
 * instead, src/backend/gradients/conv.ts), but honours one if given.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { conv2DBackpropFilterLoop } from "./conv-loops.js";
import { filterGradInfo, heapF32, inNhwc, runLoop, runNative, transpose, xnnConv2d, type ConvAttrs } from "./conv-util.js";
import type { WasmKernel } from "./types.js";

const NAME = "Conv2DBackpropFilter";

interface Attrs extends ConvAttrs {
  filterShape: [number, number, number, number];
}

type Info = tf.backend_util.Conv2DInfo;

/** dw through XNNPACK as described above (NHWC x and dy), or false when a pad would be negative. */
function viaXnnpack(wasm: WasmBackend, info: Info, x: tf.TensorInfo, dy: tf.TensorInfo, out: tf.TensorInfo): boolean {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: N } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = info;
  const PT = info.padInfo.top;
  const PL = info.padInfo.left;
  // Pads that make the output exactly FH x FW; a negative one means the forward never reads the
  // last rows (columns), which XNNPACK's larger output then holds and the copy below drops.
  const padBottom = (FH - 1) * DH + (OH - 1) * SH + 1 - H - PT;
  const padRight = (FW - 1) * DW + (OW - 1) * SW + 1 - W - PL;
  const xt = transpose(wasm, x, [3, 1, 2, 0]);
  const dyt = transpose(wasm, dy, [1, 2, 0, 3]);
  let res: tf.TensorInfo | undefined;
  try {
    res = xnnConv2d(wasm, xt, dyt, {
      filterHeight: OH, filterWidth: OW,
      padTop: PT, padLeft: PL, padBottom: Math.max(0, padBottom), padRight: Math.max(0, padRight),
      strideHeight: DH, strideWidth: DW, dilationHeight: SH, dilationWidth: SW,
    });
    const [, RH, RW] = res.shape as [number, number, number, number];
    if (RH < FH || RW < FW) return false;
    const heap = heapF32(wasm);
    const r = byteOffset(wasm, res) / 4;
    const o = byteOffset(wasm, out) / 4;
    // [C, RH, RW, N] (first FH x FW taps) -> [FH, FW, C, N].
    for (let ci = 0; ci < C; ci++)
      for (let fy = 0; fy < FH; fy++)
        for (let fx = 0; fx < FW; fx++) {
          const from = r + ((ci * RH + fy) * RW + fx) * N;
          heap.copyWithin(o + ((fy * FW + fx) * C + ci) * N, from, from + N);
        }
    return true;
  } finally {
    wasm.disposeData(xt.dataId);
    wasm.disposeData(dyt.dataId);
    if (res !== undefined) wasm.disposeData(res.dataId);
  }
}

function make(native: NativeKernels | undefined): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = attrs as unknown as Attrs;
    const wasm = backend as unknown as WasmBackend;
    const info = filterGradInfo(NAME, x, dy, a.filterShape, a, false);
    const channelsFirst = info.dataFormat === "channelsFirst";
    return inNhwc(wasm, channelsFirst, [x, dy], true, ([xh, dyh]) => {
      const out = wasm.makeOutput([...a.filterShape], "float32");
      const size = prod(a.filterShape);
      if (size === 0) return out;
      if (native !== undefined) runNative(wasm, info, native.conv2dBackpropFilter, xh!, dyh!, out);
      else if (!viaXnnpack(wasm, info, xh!, dyh!, out)) runLoop(wasm, info, conv2DBackpropFilterLoop, xh!, dyh!, out);
      return out;
    });
  };
}

export const conv2DBackpropFilterKernel: WasmKernel = {
  kernelName: NAME,
  role: "missing",
  make: (native) => make(native),
};
