/**
 * The optional native kernels (`native/`): matrix products through the system's BLAS, the Adam / SGD
 * updates, losses, convolutions, pooling and broadcasting element-wise ops, run directly on the
 * tfjs-wasm heap.
 *
 * Why: where the native TensorFlow backend cannot be installed, tfjs falls back to wasm, whose SIMD128
 * matrix products reach about 15 GFLOP/s on one core of the development machine, against 60-85 for
 * OpenBLAS's sgemm on the same core. The addon keeps every tensor where tfjs-wasm put it (no copies)
 * and only replaces the loops. It is built from source by `npm run native` (the cookbook and test
 * commands run it through scripts/setup.mjs); when it is missing or fails to load, everything takes
 * the pure-wasm paths and the reason is available from {@link nativeKernels}.
 *
 * Switches: `JOINTLY_NATIVE=0` never loads it; `JOINTLY_NATIVE_PATH` loads another build;
 * `JOINTLY_NATIVE_THREADS` sets BLAS threads (default 1: tfjs itself runs on one thread, a second BLAS
 * thread measured no faster on the 2-core machine, and one thread keeps the comparison with
 * single-threaded PyTorch fair).
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The addon's functions; offsets are byte offsets into `heap`, counts are float32 elements. */
export interface NativeKernels {
  /** C_b = act(op(A_b)·op(B_b) + bias) for b < batch; strides in floats (0 = one operand for every b). */
  gemm(
    heap: ArrayBufferLike,
    batch: number,
    M: number,
    N: number,
    K: number,
    transA: number,
    transB: number,
    aOff: number,
    aStride: number,
    bOff: number,
    bStride: number,
    cOff: number,
    biasOff: number,
    biasSize: number,
    activation: number,
    alpha: number,
  ): void;
  /** tf.train.adam's update of one variable, bit for bit; outputs may alias inputs. */
  adam(
    heap: ArrayBufferLike,
    n: number,
    xOff: number,
    gOff: number,
    mOff: number,
    vOff: number,
    xDst: number,
    mDst: number,
    vDst: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    oneMinusAcc1: number,
    oneMinusAcc2: number,
    eps: number,
    negLr: number,
  ): void;
  /** tf.train.sgd's update x' = -lr·g + x. */
  sgd(heap: ArrayBufferLike, n: number, xOff: number, gOff: number, xDst: number, negLr: number): void;
  /** out[j] = Σ_i x[i, j] over a row-major [rows, cols] block, in row order (float32). */
  sumRows(heap: ArrayBufferLike, rows: number, cols: number, xOff: number, outOff: number): void;
  /** out[i,:] = table[idx[i],:] (4-byte elements); -1, or the position of the first out-of-range index (nothing copied). */
  gatherRows(heap: ArrayBufferLike, n: number, rowElems: number, tableRows: number, tableOff: number, idxOff: number, outOff: number): number;
  /** A rows x width block of 4-byte elements from one row stride to another (strides in elements). */
  copy2d(heap: ArrayBufferLike, rows: number, width: number, srcOff: number, srcStride: number, dstOff: number, dstStride: number): void;
  /** Gradient through an activation (wasm FusableActivation code) from its output y. */
  actGrad(heap: ArrayBufferLike, n: number, activation: number, dyOff: number, yOff: number, outOff: number): void;
  /** Per-row (or mean) loss; kind 0 softmax CE on class ids, 1 MSE, 2 sigmoid CE. -1 or the row of a bad class id. */
  lossForward(heap: ArrayBufferLike, kind: number, n: number, cols: number, predOff: number, labelOff: number, labelIsFloat: number, outOff: number, mean: number): number;
  /** Gradient of {@link NativeKernels.lossForward} for the predictions (or the labels, for MSE / sigmoid CE). */
  lossBackward(
    heap: ArrayBufferLike, kind: number, n: number, cols: number, predOff: number, labelOff: number, labelIsFloat: number,
    dyOff: number, dyIsScalar: number, outOff: number, wrtLabels: number,
  ): void;
  /** NHWC Conv2D: out = act(conv(x, w) + bias) as im2col + sgemm (biasOff < 0: no bias); geometry: {@link ConvGeometryArgs}. */
  conv2d(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, wOff: number, outOff: number, biasOff: number, activation: number, alpha: number]): void;
  /** dx of Conv2D for dy (sgemm dy·wᵀ, then col2im). */
  conv2dBackpropInput(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, dyOff: number, wOff: number, dxOff: number]): void;
  /** dw of Conv2D for dy (im2col(x)ᵀ·dy by sgemm, summed over blocks of rows). */
  conv2dBackpropFilter(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, dyOff: number, dwOff: number]): void;
  /** NHWC depthwise convolution, filter [fh, fw, inC, mult], outChannels = inC·mult (direct loops). */
  depthwiseConv2d(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, wOff: number, outOff: number]): void;
  /** dx of the depthwise convolution. */
  depthwiseConv2dBackpropInput(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, dyOff: number, wOff: number, dxOff: number]): void;
  /** dw of the depthwise convolution (sums in float64). */
  depthwiseConv2dBackpropFilter(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, dyOff: number, dwOff: number]): void;
  /** Max pooling, NHWC / NDHWC (2-D: depth 1): y = each window's maximum; geometry: {@link PoolGeometryArgs}. */
  maxPool(heap: ArrayBufferLike, ...args: [...geometry: PoolGeometryArgs, xOff: number, yOff: number]): void;
  /** dx (x's shape) of max pooling: each dy added, in output order, at its window's maximum. */
  maxPoolGrad(heap: ArrayBufferLike, ...args: [...geometry: PoolGeometryArgs, xOff: number, dyOff: number, dxOff: number]): void;
  /**
   * A float32 binary op (code from {@link BINARY_OPS}) with broadcasting, as four output axes and each
   * operand's strides over them in floats (0 where it is broadcast); the output is contiguous.
   */
  binary(
    heap: ArrayBufferLike, op: number, d0: number, d1: number, d2: number, d3: number,
    as0: number, as1: number, as2: number, as3: number, bs0: number, bs1: number, bs2: number, bs3: number,
    aOff: number, bOff: number, outOff: number,
  ): void;
  /**
   * Batch normalisation over the last axis of a [rows, channels] block: offset + (x − mean)·scale /
   * √(variance + ε), in double as the cpu backend, rounded to float32. Each parameter has 1 or
   * `channels` values; offsetOff / scaleOff < 0: none.
   */
  batchNorm(
    heap: ArrayBufferLike, rows: number, channels: number, xOff: number, meanOff: number, meanLen: number, varOff: number, varLen: number,
    offsetOff: number, offsetLen: number, scaleOff: number, scaleLen: number, epsilon: number, outOff: number,
  ): void;
  setThreads(n: number): void;
  info(): { threads: number; blasConfig: string };
}

/** The op codes of {@link NativeKernels.binary}. */
export const BINARY_OPS = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3 } as const;

/**
 * A pooling's geometry as the native pooling functions take it (NDHWC; a 2-D pooling has depth 1,
 * filter depth 1, stride and dilation 1 and no front pad): output (od, oh, ow) and tap (fd, fh, fw)
 * read input (od·strideDepth − padFront + fd·dilationDepth, ...).
 */
export type PoolGeometryArgs = [
  batch: number,
  channels: number,
  inDepth: number,
  inHeight: number,
  inWidth: number,
  outDepth: number,
  outHeight: number,
  outWidth: number,
  strideDepth: number,
  strideHeight: number,
  strideWidth: number,
  dilationDepth: number,
  dilationHeight: number,
  dilationWidth: number,
  filterDepth: number,
  filterHeight: number,
  filterWidth: number,
  padFront: number,
  padTop: number,
  padLeft: number,
];

/**
 * A convolution's geometry as the native conv functions take it (NHWC; every value from tfjs's
 * computeConv2DInfo): output pixel (oy, ox) and tap (fy, fx) read input pixel
 * (oy·strideHeight − padTop + fy·dilationHeight, ox·strideWidth − padLeft + fx·dilationWidth).
 */
export type ConvGeometryArgs = [
  batch: number,
  inHeight: number,
  inWidth: number,
  inChannels: number,
  outHeight: number,
  outWidth: number,
  outChannels: number,
  filterHeight: number,
  filterWidth: number,
  strideHeight: number,
  strideWidth: number,
  dilationHeight: number,
  dilationWidth: number,
  padTop: number,
  padLeft: number,
];

/** What loading the addon gave: the kernels, or why there are none. */
export interface NativeStatus {
  kernels?: NativeKernels;
  /** The file tried. */
  path: string;
  /** Why `kernels` is undefined (not built, switched off, failed to load). */
  reason?: string;
  /** BLAS threads in use and the BLAS library's own description, when loaded. */
  threads?: number;
  blas?: string;
}

export const NATIVE_ENV = "JOINTLY_NATIVE";
export const NATIVE_PATH_ENV = "JOINTLY_NATIVE_PATH";
export const NATIVE_THREADS_ENV = "JOINTLY_NATIVE_THREADS";

/** Where `npm run native` writes the addon: build/native/ at the package root (two levels above this file). */
export function defaultNativePath(): string {
  return fileURLToPath(new URL("../../build/native/jointly_native.node", import.meta.url));
}

let status: NativeStatus | undefined;
let disabled = false;

function load(): NativeStatus {
  const path = process.env[NATIVE_PATH_ENV] || defaultNativePath();
  const env = process.env[NATIVE_ENV];
  if (env === "0" || env === "false") return { path, reason: `switched off (${NATIVE_ENV}=${env})` };
  if (!existsSync(path)) return { path, reason: `not built (${path} does not exist; run \`npm run native\`)` };
  let kernels: NativeKernels;
  try {
    const addon = createRequire(import.meta.url)(path) as NativeKernels;
    // A plain object of the same functions (the addon's own properties are read-only), so a caller can wrap one.
    kernels = {
      gemm: addon.gemm,
      adam: addon.adam,
      sgd: addon.sgd,
      sumRows: addon.sumRows,
      gatherRows: addon.gatherRows,
      copy2d: addon.copy2d,
      actGrad: addon.actGrad,
      lossForward: addon.lossForward,
      lossBackward: addon.lossBackward,
      conv2d: addon.conv2d,
      conv2dBackpropInput: addon.conv2dBackpropInput,
      conv2dBackpropFilter: addon.conv2dBackpropFilter,
      depthwiseConv2d: addon.depthwiseConv2d,
      depthwiseConv2dBackpropInput: addon.depthwiseConv2dBackpropInput,
      depthwiseConv2dBackpropFilter: addon.depthwiseConv2dBackpropFilter,
      maxPool: addon.maxPool,
      maxPoolGrad: addon.maxPoolGrad,
      binary: addon.binary,
      batchNorm: addon.batchNorm,
      setThreads: addon.setThreads,
      info: addon.info,
    };
    const missing = Object.entries(kernels).filter(([, f]) => typeof f !== "function").map(([name]) => name);
    if (missing.length > 0) return { path, reason: `${path} is an older build without ${missing.join(", ")} (run \`npm run native\`)` };
  } catch (err) {
    return { path, reason: `failed to load ${path}: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}` };
  }
  const threadsText = process.env[NATIVE_THREADS_ENV];
  const threads = threadsText === undefined || threadsText === "" ? 1 : Number(threadsText);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`${NATIVE_THREADS_ENV} must be an integer >= 1, but got "${threadsText}".`);
  }
  kernels.setThreads(threads);
  const info = kernels.info();
  return { kernels, path, threads: info.threads, blas: info.blasConfig };
}

/** Loads the addon once (later calls return the same status). */
export function nativeKernels(): NativeStatus {
  status ??= load();
  if (disabled) return { path: status.path, reason: "switched off by setNativeKernelsEnabled(false)" };
  return status;
}

/**
 * Turn the native kernels off (or back on) for this process; the pure-wasm paths are used while off.
 * For comparisons and tests: each kernel call checks this, so it takes effect at the next op.
 */
export function setNativeKernelsEnabled(enabled: boolean): void {
  disabled = !enabled;
}

/**
 * The kernels if the addon loaded, whether or not they are switched off right now (kernels are
 * prepared with and without them once, at registration, and pick per call with {@link activeNative}).
 */
export function loadedNative(): NativeKernels | undefined {
  status ??= load();
  return status.kernels;
}

/** The kernels if loaded and enabled, else undefined; cheap enough to call per op. */
export function activeNative(): NativeKernels | undefined {
  if (disabled) return undefined;
  status ??= load();
  return status.kernels;
}
