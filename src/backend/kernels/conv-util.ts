/**
 * What the convolution kernels of this folder share: their attributes, tfjs's geometry for them
 * (`computeConv2DInfo`, so padding and output sizes match tfjs exactly), the geometry in the
 * native addon's argument order, input checks, the calls of a native function or a JavaScript
 * loop on heap tensors, the NCHW <-> NHWC transposes around the NHWC paths, and the calls of the
 * wasm backend's own XNNPACK convolutions.
 */
import * as tf from "@tensorflow/tfjs";
import type { ConvGeometryArgs } from "../native.js";
import { byteOffset, dataOf, prod, type WasmBackend } from "../wasm-internals.js";

type Pair = number | [number, number];
type Pad = "same" | "valid" | number | tf.backend_util.ExplicitPadding;

/** The attributes every conv kernel reads (a subset of each kernel's own). */
export interface ConvAttrs {
  strides: Pair;
  pad: Pad;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: Pair;
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** tfjs's geometry of a convolution of an input of `xShape` by a filter of `filterShape`. */
export function convInfo(xShape: number[], filterShape: number[], attrs: ConvAttrs, depthwise: boolean): tf.backend_util.Conv2DInfo {
  const format = tf.backend_util.convertConv2DDataFormat(attrs.dataFormat ?? "NHWC");
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
    depthwise,
    format,
  );
}

/** The geometry in the order the native conv functions take it. */
export function geometry(info: tf.backend_util.Conv2DInfo): ConvGeometryArgs {
  return [
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
}

/** Throws unless `t` is a float32 tensor of rank 4. */
export function checkInput(kernelName: string, what: string, t: tf.TensorInfo): void {
  if (t.dtype !== "float32") throw new Error(`${kernelName} (wasm): ${what} must be float32, but got ${t.dtype}.`);
  if (t.shape.length !== 4) throw new Error(`${kernelName} (wasm): ${what} must be rank 4, but got shape [${t.shape}].`);
}

/** Throws unless `actual` equals `expected`. */
export function checkShape(kernelName: string, what: string, actual: readonly number[], expected: readonly number[]): void {
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    throw new Error(`${kernelName} (wasm): ${what} has shape [${actual}], but the convolution's geometry needs [${expected}].`);
  }
}

/** Throws unless the filter's input channels are the input's; `inputName` names the input in the message. */
export function checkChannels(kernelName: string, info: tf.backend_util.Conv2DInfo, filterShape: readonly number[], inputName = "the input"): void {
  if (filterShape[2] !== info.inChannels) {
    throw new Error(`${kernelName} (wasm): the filter has ${filterShape[2]} input channels (shape [${filterShape}]), but ${inputName} has ${info.inChannels}.`);
  }
}

/** The geometry of a convolution of an input of `inShape` by `filter`, after checking the filter (checkInput, checkChannels). */
function filterChecked(
  kernelName: string,
  inShape: number[],
  filter: tf.TensorInfo,
  attrs: ConvAttrs,
  depthwise: boolean,
  inputName: string | undefined,
): tf.backend_util.Conv2DInfo {
  checkInput(kernelName, "filter", filter);
  const info = convInfo(inShape, filter.shape, attrs, depthwise);
  checkChannels(kernelName, info, filter.shape, inputName);
  return info;
}

/**
 * The geometry of a forward convolution of `x` by `filter`, after checking both (float32, rank 4)
 * and that the filter's input channels are x's (`inputName` names x in that message).
 */
export function forwardInfo(
  kernelName: string,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  attrs: ConvAttrs,
  depthwise: boolean,
  inputName?: string,
): tf.backend_util.Conv2DInfo {
  checkInput(kernelName, "x", x);
  return filterChecked(kernelName, x.shape, filter, attrs, depthwise, inputName);
}

/**
 * The geometry of an input gradient (dx of an input of `inputShape` from `dy` and `filter`), after
 * checking dy and filter (float32, rank 4), the filter's input channels (`inputName` names the
 * input in that message) and dy's shape (the convolution's output).
 */
export function inputGradInfo(
  kernelName: string,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  inputShape: number[],
  attrs: ConvAttrs,
  depthwise: boolean,
  inputName?: string,
): tf.backend_util.Conv2DInfo {
  checkInput(kernelName, "dy", dy);
  const info = filterChecked(kernelName, inputShape, filter, attrs, depthwise, inputName);
  checkShape(kernelName, "dy", dy.shape, info.outShape);
  return info;
}

/**
 * The geometry of a filter gradient (dw of a filter of `filterShape` from `x` and `dy`), after
 * checking x and dy (float32, rank 4), that filterShape's input channels are x's, and dy's shape
 * (the convolution's output).
 */
export function filterGradInfo(
  kernelName: string,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  filterShape: number[],
  attrs: ConvAttrs,
  depthwise: boolean,
): tf.backend_util.Conv2DInfo {
  checkInput(kernelName, "x", x);
  checkInput(kernelName, "dy", dy);
  const info = convInfo(x.shape, filterShape, attrs, depthwise);
  if (filterShape[2] !== info.inChannels) {
    throw new Error(`${kernelName} (wasm): filterShape [${filterShape}] has ${filterShape[2]} input channels, but x has ${info.inChannels}.`);
  }
  checkShape(kernelName, "dy", dy.shape, info.outShape);
  return info;
}

/** A float32 view of the whole wasm heap (taken after the last makeOutput, which may grow it). */
export function heapF32(backend: WasmBackend): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer);
}

/** A float32 view of a tensor's data in the wasm heap (taken after the last makeOutput, which may grow the heap). */
export function heapView(backend: WasmBackend, t: tf.TensorInfo): Float32Array {
  const start = byteOffset(backend, t) / 4;
  return heapF32(backend).subarray(start, start + prod(t.shape));
}

/** A native conv function of ../native.ts: the geometry, then the heap offsets of two inputs and of the output. */
export type NativeConvFn = (heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, aOff: number, bOff: number, outOff: number]) => void;

/** A JavaScript loop of ./conv-loops.ts: the geometry, then two inputs and the output. */
export type ConvLoop = (g: tf.backend_util.Conv2DInfo, a: Float32Array, b: Float32Array, out: Float32Array) => void;

/** Runs the native `fn` on the NHWC heap tensors `a`, `b` and `out`. */
export function runNative(backend: WasmBackend, info: tf.backend_util.Conv2DInfo, fn: NativeConvFn, a: tf.TensorInfo, b: tf.TensorInfo, out: tf.TensorInfo): void {
  fn(backend.wasm.HEAPU8.buffer, ...geometry(info), byteOffset(backend, a), byteOffset(backend, b), byteOffset(backend, out));
}

/** Runs the JavaScript `loop` on views of the NHWC heap tensors `a`, `b` and `out`. */
export function runLoop(backend: WasmBackend, info: tf.backend_util.Conv2DInfo, loop: ConvLoop, a: tf.TensorInfo, b: tf.TensorInfo, out: tf.TensorInfo): void {
  loop(info, heapView(backend, a), heapView(backend, b), heapView(backend, out));
}

/**
 * A gradient of `outShape` from the NHWC tensors `a` and `b`: by the native `fn` when given, else
 * by the JavaScript `loop` (an empty output is returned as it is).
 */
export function nativeOrLoop(
  backend: WasmBackend,
  info: tf.backend_util.Conv2DInfo,
  outShape: readonly number[],
  fn: NativeConvFn | undefined,
  loop: ConvLoop,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
): tf.TensorInfo {
  const out = backend.makeOutput([...outShape], "float32");
  if (prod(outShape) === 0) return out;
  if (fn !== undefined) runNative(backend, info, fn, a, b, out);
  else runLoop(backend, info, loop, a, b, out);
  return out;
}

/** The wasm Transpose kernel applied to `x` (a new tensor the caller disposes). */
export function transpose(backend: WasmBackend, x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
  const k = tf.getKernel("Transpose", "wasm");
  if (k === undefined) throw new Error("jointly conv kernels: the wasm Transpose kernel is not registered");
  return k.kernelFunc({ inputs: { x }, backend: backend as unknown as tf.KernelBackend, attrs: { perm } }) as tf.TensorInfo;
}

const TO_NHWC = [0, 2, 3, 1];
const TO_NCHW = [0, 3, 1, 2];

/**
 * Runs an NHWC computation for a kernel whose tensors may be NCHW: with `channelsFirst`, the
 * `activations` (the image-shaped inputs) are transposed to NHWC first and, unless `outputIsFilter`,
 * the result back to NCHW; the temporaries are freed. Without it, `body` gets the inputs as they are.
 */
export function inNhwc(
  backend: WasmBackend,
  channelsFirst: boolean,
  activations: tf.TensorInfo[],
  outputIsFilter: boolean,
  body: (nhwc: tf.TensorInfo[]) => tf.TensorInfo,
): tf.TensorInfo {
  if (!channelsFirst) return body(activations);
  const temps = activations.map((t) => transpose(backend, t, TO_NHWC));
  try {
    const out = body(temps);
    if (outputIsFilter) return out;
    const back = transpose(backend, out, TO_NCHW);
    backend.disposeData(out.dataId);
    return back;
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

/** The NHWC shape of a shape given in `channelsFirst` order (unchanged when channels-last). */
export function nhwcShape(shape: readonly number[], channelsFirst: boolean): [number, number, number, number] {
  const [a, b, c, d] = shape as [number, number, number, number];
  return channelsFirst ? [a, c, d, b] : [a, b, c, d];
}

type WasmConvFn = (...args: number[]) => void;
// The wrapped C functions of each backend instance, so a re-created wasm backend gets its own.
const wasmFns = new WeakMap<object, Map<string, WasmConvFn>>();

/** The wasm module's C function `name` (taking `argCount` numbers), wrapped on first use. */
function wasmFn(backend: WasmBackend, name: string, argCount: number): WasmConvFn {
  let fns = wasmFns.get(backend);
  if (fns === undefined) wasmFns.set(backend, (fns = new Map()));
  let fn = fns.get(name);
  if (fn === undefined) {
    fn = backend.wasm.cwrap(name, null, new Array<string>(argCount).fill("number")) as WasmConvFn;
    fns.set(name, fn);
  }
  return fn;
}

/** The new [batch, oh, ow, outChannels] output of an XNNPACK convolution of `x` under `g`. */
function xnnOutput(backend: WasmBackend, x: tf.TensorInfo, g: XnnConvGeometry, outChannels: number): tf.TensorInfo {
  const [batch, h, w] = x.shape as [number, number, number, number];
  const oh = xnnOutSize(h, g.padTop, g.padBottom, g.filterHeight, g.strideHeight, g.dilationHeight);
  const ow = xnnOutSize(w, g.padLeft, g.padRight, g.filterWidth, g.strideWidth, g.dilationWidth);
  return backend.makeOutput([batch, oh, ow, outChannels], "float32");
}

/** Geometry of one call of the wasm backend's own (XNNPACK) NHWC convolution. */
export interface XnnConvGeometry {
  filterHeight: number;
  filterWidth: number;
  padTop: number;
  padBottom: number;
  padLeft: number;
  padRight: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
}

/**
 * The XNNPACK geometry of a forward convolution with explicit pads that give XNNPACK's output
 * tfjs's size, or undefined when none can (see ./conv2d-forward.ts).
 */
export function xnnForwardPads(info: tf.backend_util.Conv2DInfo): XnnConvGeometry | undefined {
  const extH = (info.filterHeight - 1) * info.dilationHeight + 1;
  const extW = (info.filterWidth - 1) * info.dilationWidth + 1;
  // Enough after-padding for the last output row to exist; 0 when the forward never reads the last input rows.
  const g: XnnConvGeometry = {
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    padBottom: Math.max(0, (info.outHeight - 1) * info.strideHeight + extH - info.inHeight - info.padInfo.top),
    padRight: Math.max(0, (info.outWidth - 1) * info.strideWidth + extW - info.inWidth - info.padInfo.left),
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
  };
  const oh = xnnOutSize(info.inHeight, g.padTop, g.padBottom, g.filterHeight, g.strideHeight, g.dilationHeight);
  const ow = xnnOutSize(info.inWidth, g.padLeft, g.padRight, g.filterWidth, g.strideWidth, g.dilationWidth);
  return oh === info.outHeight && ow === info.outWidth ? g : undefined;
}

/** What the wasm backend's fused convolution applies after the product (ids 0: none). */
export interface XnnEpilogue {
  biasId: number;
  activation: number;
  preluId: number;
  leakyreluAlpha: number;
}

/** The output size of a convolution along one axis, as XNNPACK computes it from explicit pads. */
export function xnnOutSize(inSize: number, padBefore: number, padAfter: number, filter: number, stride: number, dilation: number): number {
  return Math.floor((inSize + padBefore + padAfter - ((filter - 1) * dilation + 1)) / stride) + 1;
}

/**
 * Runs the wasm backend's XNNPACK convolution (the C function behind the stock FusedConv2D
 * kernel, so with its bias / activation epilogue) on `x` [batch, h, w, inC] with `filter`
 * [fh, fw, inC, outC] and explicit pads (all >= 0; never XNNPACK's TensorFlow-SAME mode, which
 * rejects some geometries the stock kernel then leaves unwritten): returns a new
 * [batch, oh, ow, outC] tensor. XNNPACK keeps the operator it builds until `filter` is disposed,
 * so a temporary filter costs one packing per call.
 */
export function xnnConv2d(backend: WasmBackend, x: tf.TensorInfo, filter: tf.TensorInfo, g: XnnConvGeometry, epi?: XnnEpilogue): tf.TensorInfo {
  const fn = wasmFn(backend, "FusedConv2D", 23);
  const [batch, h, w, inC] = x.shape as [number, number, number, number];
  const outC = filter.shape[3]!;
  const out = xnnOutput(backend, x, g, outC);
  const id = (t: tf.TensorInfo): number => dataOf(backend, t).id;
  fn(
    id(x), batch, h, w, id(filter), g.filterHeight, g.filterWidth, epi?.biasId ?? 0,
    g.padTop, g.padRight, g.padBottom, g.padLeft, 0,
    g.dilationHeight, g.dilationWidth, g.strideHeight, g.strideWidth, inC, outC,
    epi?.activation ?? 0, epi?.preluId ?? 0, epi?.leakyreluAlpha ?? 0, id(out),
  );
  return out;
}

/**
 * The wasm backend's XNNPACK depthwise convolution (the C function behind the stock
 * DepthwiseConv2dNative kernel) with explicit pads, as {@link xnnConv2d}: `filter` is
 * [fh, fw, inC, mult], the output [batch, oh, ow, inC·mult].
 */
export function xnnDepthwiseConv2d(backend: WasmBackend, x: tf.TensorInfo, filter: tf.TensorInfo, g: XnnConvGeometry): tf.TensorInfo {
  const fn = wasmFn(backend, "DepthwiseConv2dNative", 19);
  const [batch, h, w, inC] = x.shape as [number, number, number, number];
  const outC = inC * filter.shape[3]!;
  const out = xnnOutput(backend, x, g, outC);
  const id = (t: tf.TensorInfo): number => dataOf(backend, t).id;
  fn(
    id(x), batch, h, w, id(filter), g.filterHeight, g.filterWidth,
    g.padTop, g.padRight, g.padBottom, g.padLeft, 0,
    g.dilationHeight, g.dilationWidth, g.strideHeight, g.strideWidth, inC, outC, id(out),
  );
  return out;
}
