/**
 * `Sum` for wasm (an override). With the native addon, a sum over leading axes (the bias gradient
 * of every Dense layer: dy summed over the batch) runs as a row-order column sum, without the
 * transpose the stock kernel makes first (4.4 ms of a 42 ms W2 step went to two such sums). The
 * order of additions is the stock kernel's after its transpose, so the result is the same bits.
 * With or without the addon, a sum over an empty tensor is zeros (the stock kernel returns
 * uninitialised memory for it); every other reduction is the stock kernel's.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

/**
 * The reduced axes as non-negative numbers in the order given, or undefined when they are not plain
 * integers in range (the stock kernel then reports the error).
 */
function normalAxes(axis: unknown, rank: number): number[] | undefined {
  const list: unknown[] = axis === undefined || axis === null ? [...Array(rank).keys()] : Array.isArray(axis) ? axis : [axis];
  const out: number[] = [];
  for (const a of list) {
    if (typeof a !== "number" || !Number.isInteger(a) || a < -rank || a >= rank) return undefined;
    out.push(a < 0 ? a + rank : a);
  }
  return out;
}

/**
 * r when the reduced axes are exactly the leading axes 0..r-1, listed in that order, with something
 * left over; else undefined. The stock kernel reduces those in row order after its transpose
 * (another order of listing adds in another order, and reductions over inner axes need no
 * transpose, so the stock kernel is as fast there).
 */
function leadingAxes(axis: unknown, rank: number): number | undefined {
  const axes = normalAxes(axis, rank);
  const r = axes?.length ?? 0;
  if (axes === undefined || r === 0 || r >= rank || axes.some((a, i) => a !== i)) return undefined;
  return r;
}

/** The leading-axis reduction of a float32 call: rows summed, the rest kept, the output's shape. */
export interface LeadingReduction {
  x: tf.TensorInfo;
  rows: number;
  cols: number;
  outShape: number[];
}

/** The call as a reduction over leading axes (see {@link leadingAxes}), or undefined when it is not one. */
export function leadingReduction(args: Parameters<tf.KernelFunc>[0]): LeadingReduction | undefined {
  const x = args.inputs.x;
  if (x === undefined || x.dtype !== "float32") return undefined;
  const attrs = (args.attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
  const r = leadingAxes(attrs.axis, x.shape.length);
  if (r === undefined) return undefined;
  const rest = x.shape.slice(r);
  const outShape = attrs.keepDims === true ? [...new Array<number>(r).fill(1), ...rest] : rest;
  return { x, rows: prod(x.shape.slice(0, r)), cols: prod(rest), outShape };
}

/** Column sums of a leading-axis reduction through the addon, into a new float32 output. */
export function sumRowsNative(native: NativeKernels, backend: WasmBackend, red: LeadingReduction): tf.TensorInfo {
  const out = backend.makeOutput(red.outShape, "float32");
  native.sumRows(backend.wasm.HEAPU8.buffer, red.rows, red.cols, byteOffset(backend, red.x), byteOffset(backend, out));
  return out;
}

export const sumKernel: WasmKernel = {
  kernelName: "Sum",
  role: "override",
  make: (native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const x = args.inputs.x;
      if (x !== undefined && prod(x.shape) === 0 && x.dtype !== "string") {
        // The stock kernel skips an empty input and returns uninitialised memory; a sum of nothing is 0.
        const out = stock(args) as tf.TensorInfo;
        (args.backend as unknown as WasmBackend).typedArrayFromHeap(out).fill(0);
        return out;
      }
      const red = native === undefined ? undefined : leadingReduction(args);
      return native === undefined || red === undefined ? stock(args) : sumRowsNative(native, args.backend as unknown as WasmBackend, red);
    };
  },
};
