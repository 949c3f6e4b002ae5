/**
 * The loops behind the `MaxPool3D`, `MaxPoolGrad` and `MaxPool3DGrad` fixes: max pooling and its
 * gradient, NHWC / NDHWC, on views of the wasm heap, run by the native addon when it is loaded
 * (native/pool.c, the same semantics and summation order: the same bits) and in JavaScript without it.
 *
 * Why: tfjs-backend-wasm 4.22's own kernels are wrong where a window holds only negative values
 * (measured against the cpu backend and a JavaScript reference): MaxPool3D returns values off by up
 * to 4.6 on inputs around -3, and MaxPoolGrad / MaxPool3DGrad send the gradient to the wrong
 * position ([1,6,6,3] pooled 2x2 stride 2 off by up to 1.07; [1,6,6,2] 3x3 stride 1 "same" by 1.19).
 * So every conv net with max pooling trained on wasm got a wrong gradient wherever a pooled window
 * was all negative (common before a relu). The 2-D MaxPool forward (XNNPACK) is right and stays.
 *
 * Semantics: those of the cpu backend: a window's maximum is the first position in window order
 * (depth, row, column) strictly greater than all before it, starting from -Infinity, so the first
 * of ties wins, positions in the padding never do, and NaN values are skipped (a window of only NaN
 * gives -Infinity and passes no gradient).
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeKernels, PoolGeometryArgs } from "../native.js";
import { byteOffset, type WasmBackend } from "../wasm-internals.js";

/** The geometry of a 3-D pooling; a 2-D one has depth 1, filter depth 1, stride 1, no front pad. */
export interface PoolGeometry {
  batch: number;
  channels: number;
  inDepth: number;
  inHeight: number;
  inWidth: number;
  outDepth: number;
  outHeight: number;
  outWidth: number;
  strideDepth: number;
  strideHeight: number;
  strideWidth: number;
  dilationDepth: number;
  dilationHeight: number;
  dilationWidth: number;
  filterDepth: number;
  filterHeight: number;
  filterWidth: number;
  padFront: number;
  padTop: number;
  padLeft: number;
}

/**
 * Calls `visit(o, at, best)` for every output position o (in NHWC / NDHWC order) with the flat index
 * in xs of its window's maximum (-1 when no position won) and that maximum.
 */
function eachWindowMax(xs: Float32Array, g: PoolGeometry, visit: (o: number, at: number, best: number) => void): void {
  const C = g.channels;
  const rowStride = g.inWidth * C;
  const planeStride = g.inHeight * rowStride;
  const batchStride = g.inDepth * planeStride;
  let o = 0;
  for (let b = 0; b < g.batch; b++) {
    const xBase = b * batchStride;
    for (let od = 0; od < g.outDepth; od++) {
      const d0 = od * g.strideDepth - g.padFront;
      for (let oh = 0; oh < g.outHeight; oh++) {
        const h0 = oh * g.strideHeight - g.padTop;
        for (let ow = 0; ow < g.outWidth; ow++) {
          const w0 = ow * g.strideWidth - g.padLeft;
          for (let c = 0; c < C; c++, o++) {
            let best = -Infinity;
            let at = -1;
            for (let fd = 0; fd < g.filterDepth; fd++) {
              const d = d0 + fd * g.dilationDepth;
              if (d < 0 || d >= g.inDepth) continue;
              for (let fh = 0; fh < g.filterHeight; fh++) {
                const h = h0 + fh * g.dilationHeight;
                if (h < 0 || h >= g.inHeight) continue;
                const rowBase = xBase + d * planeStride + h * rowStride + c;
                for (let fw = 0; fw < g.filterWidth; fw++) {
                  const w = w0 + fw * g.dilationWidth;
                  if (w < 0 || w >= g.inWidth) continue;
                  const i = rowBase + w * C;
                  const v = xs[i]!;
                  if (v > best) {
                    best = v;
                    at = i;
                  }
                }
              }
            }
            visit(o, at, best);
          }
        }
      }
    }
  }
}

/** The output shape of a pooling: [batch, (depth,) height, width, channels]. */
function outShape(g: PoolGeometry, rank: number): number[] {
  return rank === 5 ? [g.batch, g.outDepth, g.outHeight, g.outWidth, g.channels] : [g.batch, g.outHeight, g.outWidth, g.channels];
}

/** The geometry in the argument order of the addon's maxPool / maxPoolGrad. */
export function poolGeometryArgs(g: PoolGeometry): PoolGeometryArgs {
  return [
    g.batch, g.channels, g.inDepth, g.inHeight, g.inWidth, g.outDepth, g.outHeight, g.outWidth,
    g.strideDepth, g.strideHeight, g.strideWidth, g.dilationDepth, g.dilationHeight, g.dilationWidth,
    g.filterDepth, g.filterHeight, g.filterWidth, g.padFront, g.padTop, g.padLeft,
  ];
}

/** Max pooling of x, allocated on the wasm backend (through the addon when `native` is given). */
export function maxPool(backend: WasmBackend, x: tf.TensorInfo, g: PoolGeometry, native?: NativeKernels): tf.TensorInfo {
  const yInfo = backend.makeOutput(outShape(g, x.shape.length), "float32");
  if (native !== undefined) {
    native.maxPool(backend.wasm.HEAPU8.buffer, ...poolGeometryArgs(g), byteOffset(backend, x), byteOffset(backend, yInfo));
    return yInfo;
  }
  // Views after makeOutput: an allocation may replace the heap's buffer.
  const y = backend.typedArrayFromHeap(yInfo) as Float32Array;
  eachWindowMax(backend.typedArrayFromHeap(x) as Float32Array, g, (o, _at, best) => {
    y[o] = best;
  });
  return yInfo;
}

/** dx for max pooling of x with output gradient dy, allocated on the wasm backend (through the addon when `native` is given). */
export function maxPoolGrad(backend: WasmBackend, x: tf.TensorInfo, dy: tf.TensorInfo, g: PoolGeometry, native?: NativeKernels): tf.TensorInfo {
  const want = outShape(g, x.shape.length);
  if (x.dtype !== "float32" || dy.dtype !== "float32" || dy.shape.length !== want.length || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`max pooling gradient (wasm): x and dy must be float32 and dy of shape [${want}], but got x ${x.dtype} [${x.shape}], dy ${dy.dtype} [${dy.shape}].`);
  }
  const dxInfo = backend.makeOutput(x.shape, "float32");
  if (native !== undefined) {
    native.maxPoolGrad(backend.wasm.HEAPU8.buffer, ...poolGeometryArgs(g), byteOffset(backend, x), byteOffset(backend, dy), byteOffset(backend, dxInfo));
    return dxInfo;
  }
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const dx = backend.typedArrayFromHeap(dxInfo) as Float32Array;
  dx.fill(0);
  eachWindowMax(xs, g, (o, at) => {
    if (at >= 0) dx[at] += dys[o]!;
  });
  return dxInfo;
}

/** The geometry of a 2-D pooling from tfjs's computePool2DInfo. */
export function geometry2D(info: tf.backend_util.Conv2DInfo): PoolGeometry {
  return {
    batch: info.batchSize,
    channels: info.inChannels,
    inDepth: 1,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    outDepth: 1,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    strideDepth: 1,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationDepth: 1,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    filterDepth: 1,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    padFront: 0,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** The geometry of a 3-D pooling from tfjs's computePool3DInfo. */
export function geometry3D(info: tf.backend_util.Conv3DInfo): PoolGeometry {
  return {
    batch: info.batchSize,
    channels: info.inChannels,
    inDepth: info.inDepth,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    outDepth: info.outDepth,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    strideDepth: info.strideDepth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationDepth: info.dilationDepth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    filterDepth: info.filterDepth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    padFront: info.padInfo.front,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** The attributes of the pooling kernels. */
export interface PoolAttrs {
  filterSize: number | number[];
  strides: number | number[];
  pad: "same" | "valid" | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** 3-D pooling geometry of a `MaxPool3D` / `MaxPool3DGrad` call on input shape `shape`. */
export function pool3DGeometry(shape: number[], a: PoolAttrs): PoolGeometry {
  type T = [number, number, number];
  return geometry3D(tf.backend_util.computePool3DInfo(shape as [number, number, number, number, number], a.filterSize as T, a.strides as T, 1, a.pad, a.dimRoundingMode));
}
