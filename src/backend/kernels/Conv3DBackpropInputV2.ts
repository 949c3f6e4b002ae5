/**
 * `Conv3DBackpropInputV2` for wasm (a fix): tfjs-backend-wasm 4.22's kernel gives a wrong input
 * gradient whenever the filter has more than one input or output channel (a 1x1x1 conv3d from 2 to
 * 3 channels: off by up to 4.8 against a float64 reference, the cpu backend off by 2e-7), so conv3d
 * layers trained on wasm got wrong gradients below their first layer. This one matches cpu.
 *
 * dx[n, d, h, w, c] = Σ over output positions and filter taps that read (d, h, w) of
 * dy[n, od, oh, ow, o] · W[fd, fh, fw, c, o]; computed as a scatter from each output position, with
 * the Σ over o innermost, in float32.
 */
import * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

type Triple = number | [number, number, number];

export const conv3DBackpropInputV2Kernel: WasmKernel = {
  kernelName: "Conv3DBackpropInputV2",
  role: "fix",
  make: () => ({ inputs, attrs, backend }) => {
    const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const a = attrs as unknown as { strides: Triple; pad: "same" | "valid"; inputShape: [number, number, number, number, number] };
    if (dy.dtype !== "float32" || filter.dtype !== "float32") {
      throw new Error(`Conv3DBackpropInputV2 (wasm): dy and filter must be float32, but got ${dy.dtype} and ${filter.dtype}.`);
    }
    const g = tf.backend_util.computeConv3DInfo(a.inputShape, filter.shape as [number, number, number, number, number], a.strides, 1, a.pad);
    const wasm = backend as unknown as WasmBackend;
    const out = wasm.makeOutput(g.inShape, "float32");
    const dx = wasm.typedArrayFromHeap(out) as Float32Array;
    const dys = wasm.typedArrayFromHeap(dy) as Float32Array;
    const W = wasm.typedArrayFromHeap(filter) as Float32Array;
    dx.fill(0);
    const C = g.inChannels;
    const O = g.outChannels;
    const inRow = g.inWidth * C;
    const inPlane = g.inHeight * inRow;
    const inBatch = g.inDepth * inPlane;
    let o0 = 0;
    for (let n = 0; n < g.batchSize; n++) {
      for (let od = 0; od < g.outDepth; od++) {
        for (let oh = 0; oh < g.outHeight; oh++) {
          for (let ow = 0; ow < g.outWidth; ow++, o0 += O) {
            for (let fd = 0; fd < g.filterDepth; fd++) {
              const d = od * g.strideDepth - g.padInfo.front + fd * g.dilationDepth;
              if (d < 0 || d >= g.inDepth) continue;
              for (let fh = 0; fh < g.filterHeight; fh++) {
                const h = oh * g.strideHeight - g.padInfo.top + fh * g.dilationHeight;
                if (h < 0 || h >= g.inHeight) continue;
                for (let fw = 0; fw < g.filterWidth; fw++) {
                  const w = ow * g.strideWidth - g.padInfo.left + fw * g.dilationWidth;
                  if (w < 0 || w >= g.inWidth) continue;
                  const xi = n * inBatch + d * inPlane + h * inRow + w * C;
                  const tap = ((fd * g.filterHeight + fh) * g.filterWidth + fw) * C * O;
                  for (let c = 0; c < C; c++) {
                    let s = 0;
                    const wc = tap + c * O;
                    for (let o = 0; o < O; o++) s += dys[o0 + o]! * W[wc + o]!;
                    dx[xi + c] += s;
                  }
                }
              }
            }
          }
        }
      }
    }
    return out;
  },
};
