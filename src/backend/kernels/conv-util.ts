/**
 * What the convolution kernels of this folder share: their attributes, tfjs's geometry for them
 * (`computeConv2DInfo`, so padding and output sizes match tfjs exactly), the geometry in the
 * native addon's argument order, input checks, and the NCHW <-> NHWC transposes around the NHWC
 * paths.
 */
import * as tf from "@tensorflow/tfjs";
import type { ConvGeometryArgs, NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";

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

/** Throws unless the filter's input channels are the input's (regular convolution). */
export function checkChannels(kernelName: string, info: tf.backend_util.Conv2DInfo, filterShape: readonly number[]): void {
  if (filterShape[2] !== info.inChannels) {
    throw new Error(`${kernelName} (wasm): the filter has ${filterShape[2]} input channels (shape [${filterShape}]), but the input has ${info.inChannels}.`);
  }
}

/** A float32 view of the whole wasm heap (taken after the last makeOutput, which may grow it). */
export function heapF32(backend: WasmBackend): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer);
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

type WasmConv2dFn = (...args: number[]) => void;
// One wrapped C function per backend instance, so a re-created wasm backend gets its own.
const conv2dFns = new WeakMap<object, WasmConv2dFn>();

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
 * Runs the wasm backend's XNNPACK convolution (the C function behind the stock Conv2D kernel) on
 * `x` [batch, h, w, inC] with `filter` [fh, fw, inC, outC] and explicit pads (all >= 0): returns
 * a new [batch, oh, ow, outC] tensor. XNNPACK keeps the operator it builds until `filter` is
 * disposed, so a temporary filter costs one packing per call.
 */
export function xnnConv2d(backend: WasmBackend, x: tf.TensorInfo, filter: tf.TensorInfo, g: XnnConvGeometry): tf.TensorInfo {
  let fn = conv2dFns.get(backend);
  if (fn === undefined) {
    fn = backend.wasm.cwrap("Conv2D", null, new Array<string>(19).fill("number")) as WasmConv2dFn;
    conv2dFns.set(backend, fn);
  }
  const [batch, h, w, inC] = x.shape as [number, number, number, number];
  const outC = filter.shape[3]!;
  const oh = Math.floor((h + g.padTop + g.padBottom - ((g.filterHeight - 1) * g.dilationHeight + 1)) / g.strideHeight) + 1;
  const ow = Math.floor((w + g.padLeft + g.padRight - ((g.filterWidth - 1) * g.dilationWidth + 1)) / g.strideWidth) + 1;
  const out = backend.makeOutput([batch, oh, ow, outC], "float32");
  const id = (t: tf.TensorInfo): number => {
    const d = backend.dataIdMap.get(t.dataId);
    if (d === undefined) throw new Error("jointly conv kernels: a tensor is not on the wasm backend");
    return d.id;
  };
  fn(
    id(x), batch, h, w, id(filter), g.filterHeight, g.filterWidth,
    g.padTop, g.padRight, g.padBottom, g.padLeft, 0,
    g.dilationHeight, g.dilationWidth, g.strideHeight, g.strideWidth, inC, outC, id(out),
  );
  return out;
}

/** The bias and activation fused into a forward convolution. */
export interface ConvEpilogue {
  /** outChannels values (any shape of that size), or a single value for every channel. */
  bias?: tf.TensorInfo;
  /** A {@link FUSABLE_ACTIVATION} code other than prelu. */
  activation: number;
  leakyreluAlpha: number;
}

/**
 * Conv2D (+ bias + activation) forward through the native addon (im2col + sgemm); NCHW tensors
 * are transposed to NHWC and back. Checks the inputs like the stock kernels do.
 */
export function nativeConv2dForward(
  native: NativeKernels,
  wasm: WasmBackend,
  kernelName: string,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  attrs: ConvAttrs,
  epi: ConvEpilogue,
): tf.TensorInfo {
  checkInput(kernelName, "x", x);
  checkInput(kernelName, "filter", filter);
  const info = convInfo(x.shape, filter.shape, attrs, false);
  checkChannels(kernelName, info, filter.shape);
  const N = info.outChannels;
  let scalarBias: tf.TensorInfo | undefined;
  if (epi.bias !== undefined) {
    const size = prod(epi.bias.shape);
    if (epi.bias.dtype !== "float32") throw new Error(`${kernelName} (wasm): bias must be float32, but got ${epi.bias.dtype}.`);
    if (size === 1 && N !== 1) {
      // One value for every channel: spread it over a row of N for the native epilogue.
      scalarBias = wasm.makeOutput([N], "float32");
      const heap = heapF32(wasm);
      heap.fill(heap[byteOffset(wasm, epi.bias) / 4]!, byteOffset(wasm, scalarBias) / 4, byteOffset(wasm, scalarBias) / 4 + N);
    } else if (size !== N || epi.bias.shape[epi.bias.shape.length - 1] !== N) {
      throw new Error(`${kernelName} (wasm): bias of shape [${epi.bias.shape}] is not one value per output channel (${N}) nor a single value.`);
    }
  }
  const bias = scalarBias ?? epi.bias;
  try {
    const channelsFirst = info.dataFormat === "channelsFirst";
    return inNhwc(wasm, channelsFirst, [x], false, ([xh]) => {
      const out = wasm.makeOutput(nhwcShape(info.outShape, channelsFirst), "float32");
      if (prod(info.outShape) === 0) return out;
      native.conv2d(
        wasm.wasm.HEAPU8.buffer, ...geometry(info),
        byteOffset(wasm, xh!), byteOffset(wasm, filter), byteOffset(wasm, out),
        bias === undefined ? -1 : byteOffset(wasm, bias), epi.activation, epi.leakyreluAlpha,
      );
      return out;
    });
  } finally {
    if (scalarBias !== undefined) wasm.disposeData(scalarBias.dataId);
  }
}
