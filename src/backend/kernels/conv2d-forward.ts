/**
 * The forward convolution behind ./Conv2D.ts and ./FusedConv2D.ts (x ⊛ w, + bias, activation).
 *
 * With the native addon: im2col + OpenBLAS sgemm with the bias and activation applied per block
 * of rows (native/conv.c). Without it: the stock backend's XNNPACK convolution, but always given
 * explicit pads computed from tfjs's geometry. The stock kernels hand XNNPACK its
 * TensorFlow-SAME mode instead, which XNNPACK refuses for some geometries (e.g. a 1x5 filter with
 * strides 2, leaving the output unwritten), and with a numeric pad tfjs sizes the output from the
 * filter height and stride height on both axes, which XNNPACK does not. Where XNNPACK's output
 * cannot have tfjs's size, a JavaScript loop over the heap runs (./conv-loops.ts). NCHW tensors
 * are transposed to NHWC and back.
 *
 * A bias is one value per output channel (any shape of that size) or one value for all;
 * activations are the wasm backend's fusable ones; prelu weights are tiled over the output, as
 * the stock kernel does (the native path leaves prelu to XNNPACK's epilogue).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, dataOf, prod, type WasmBackend } from "../wasm-internals.js";
import { conv2DForwardLoop } from "./conv-loops.js";
import { forwardInfo, geometry, heapF32, heapView, inNhwc, nhwcShape, xnnConv2d, xnnForwardPads, type ConvAttrs } from "./conv-util.js";
import { applyActivation, clampDropsNaN, FUSABLE_ACTIVATION } from "./fusable-activation.js";

/** The bias and activation fused into a forward convolution. */
export interface ConvEpilogue {
  bias?: tf.TensorInfo;
  /** A FUSABLE_ACTIVATION code. */
  activation: number;
  prelu?: tf.TensorInfo;
  leakyreluAlpha: number;
}

/**
 * Conv2D (+ bias + activation) forward on wasm: see the module comment. `native` undefined takes
 * the path without the addon. Checks the inputs like the stock kernels do.
 */
export function conv2dForward(
  native: NativeKernels | undefined,
  wasm: WasmBackend,
  kernelName: string,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  attrs: ConvAttrs,
  epi: ConvEpilogue,
): tf.TensorInfo {
  const info = forwardInfo(kernelName, x, filter, attrs, false);
  const N = info.outChannels;
  const isPrelu = epi.activation === FUSABLE_ACTIVATION.prelu;
  if (isPrelu && epi.prelu === undefined) throw new Error(`${kernelName} (wasm): prelu activation needs preluActivationWeights.`);
  const temps: tf.TensorInfo[] = [];
  let bias = epi.bias;
  if (bias !== undefined) {
    if (bias.dtype !== "float32") throw new Error(`${kernelName} (wasm): bias must be float32, but got ${bias.dtype}.`);
    const size = prod(bias.shape);
    if (size === 1) {
      // One value for every channel: spread over a row of N, which both epilogues read.
      const row = wasm.makeOutput([N], "float32");
      temps.push(row);
      const heap = heapF32(wasm);
      heap.fill(heap[byteOffset(wasm, bias) / 4]!, byteOffset(wasm, row) / 4, byteOffset(wasm, row) / 4 + N);
      bias = row;
    } else if (size !== N || bias.shape[bias.shape.length - 1] !== N) {
      throw new Error(`${kernelName} (wasm): bias of shape [${bias.shape}] is not one value per output channel (${N}) nor a single value.`);
    }
  }
  const channelsFirst = info.dataFormat === "channelsFirst";
  const outShape = nhwcShape(info.outShape, channelsFirst);
  try {
    return inNhwc(wasm, channelsFirst, [x], false, ([xh]) => {
      if (prod(outShape) === 0) return wasm.makeOutput(outShape, "float32");
      if (native !== undefined && !isPrelu) {
        const out = wasm.makeOutput(outShape, "float32");
        native.conv2d(
          wasm.wasm.HEAPU8.buffer, ...geometry(info),
          byteOffset(wasm, xh!), byteOffset(wasm, filter), byteOffset(wasm, out),
          bias === undefined ? -1 : byteOffset(wasm, bias), epi.activation, epi.leakyreluAlpha,
        );
        return out;
      }
      const pads = prod(x.shape) > 0 ? xnnForwardPads(info) : undefined;
      if (pads !== undefined) {
        // XNNPACK's relu/relu6 clamp turns NaN into 0: run it linear and keep NaN as the cpu backend does.
        const after = clampDropsNaN(epi.activation);
        const out = xnnConv2d(
          wasm, xh!, filter,
          pads,
          { biasId: bias === undefined ? 0 : dataOf(wasm, bias).id, activation: after ? FUSABLE_ACTIVATION.linear : epi.activation, preluId: epi.prelu === undefined ? 0 : dataOf(wasm, epi.prelu).id, leakyreluAlpha: epi.leakyreluAlpha },
        );
        if (after) applyActivation(heapView(wasm, out), epi.activation, 0);
        return out;
      }
      const out = wasm.makeOutput(outShape, "float32");
      const y = heapView(wasm, out);
      conv2DForwardLoop(info, heapView(wasm, xh!), heapView(wasm, filter), y);
      if (bias !== undefined) {
        const b = heapView(wasm, bias);
        for (let i = 0; i < y.length; i++) y[i] += b[i % N]!;
      }
      applyActivation(y, epi.activation, epi.leakyreluAlpha, epi.prelu === undefined ? undefined : heapView(wasm, epi.prelu));
      return out;
    });
  } finally {
    for (const t of temps) wasm.disposeData(t.dataId);
  }
}
