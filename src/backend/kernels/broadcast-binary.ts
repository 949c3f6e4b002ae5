/**
 * What the `Add`, `Sub`, `Multiply` and `RealDiv` overrides share: float32 binary ops where one
 * operand is broadcast against the other (a per-channel vector `[C]` or `[1, 1, 1, C]` against an
 * NHWC activation, a scalar, `[N, 1, 1, C]` against `[N, H, W, C]`), as loops over at most four
 * collapsed axes, in the native addon (native/elementwise.c).
 *
 * Why: tfjs-wasm 4.22's binary ops compute every element's source indices when the shapes differ,
 * 2-3 ns an element here against 0.5 ns for the same op on equal shapes; batch norm's gradient and
 * forward pass are made of such ops (about 80 ms of an 830 ms W8 step).
 *
 * Which calls: both operands float32 and of different shapes, whose broadcast collapses to at most
 * four axes (adjacent axes along which each operand is broadcast, or not, in the same way merge into
 * one). Equal shapes (already fast), other dtypes and other patterns go to the stock kernel.
 *
 * Results: one float32 operation per element, so exactly the stock kernel's and the cpu backend's.
 *
 * Without the addon the stock kernel stays: a JavaScript loop over the heap measured 29-39 ms on a
 * [64, 64, 64, 32] activation times a [32] vector (2.5-4.5 ns an element), against 6-8 ms for the
 * stock kernel and 3-5 ms for the native loop.
 */
import * as tf from "@tensorflow/tfjs";
import { BINARY_OPS, type NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

export type BinaryOpName = keyof typeof BINARY_OPS;

/** A broadcast as four output axes (outermost first) and each operand's strides over them (0 = broadcast). */
export interface BroadcastPlan {
  outShape: number[];
  dims: [number, number, number, number];
  aStrides: [number, number, number, number];
  bStrides: [number, number, number, number];
}

/**
 * The plan for a op b with broadcasting, or undefined when the shapes are equal, do not broadcast,
 * or need more than four collapsed axes.
 */
export function broadcastPlan(aShape: readonly number[], bShape: readonly number[]): BroadcastPlan | undefined {
  if (aShape.length === bShape.length && aShape.every((d, i) => d === bShape[i])) return undefined;
  let outShape: number[];
  try {
    outShape = tf.backend_util.assertAndGetBroadcastShape(aShape as number[], bShape as number[]);
  } catch {
    return undefined;
  }
  const r = outShape.length;
  const pad = (s: readonly number[]): number[] => [...new Array<number>(r - s.length).fill(1), ...s];
  const a = pad(aShape);
  const b = pad(bShape);
  // Axes of size > 1, merged where each operand is broadcast (or not) the same way.
  const axes: { size: number; aB: boolean; bB: boolean }[] = [];
  for (let i = 0; i < r; i++) {
    if (outShape[i] === 1) continue;
    const aB = a[i] === 1;
    const bB = b[i] === 1;
    const last = axes[axes.length - 1];
    if (last !== undefined && last.aB === aB && last.bB === bB) last.size *= outShape[i]!;
    else axes.push({ size: outShape[i]!, aB, bB });
  }
  if (axes.length > 4) return undefined;
  while (axes.length < 4) axes.unshift({ size: 1, aB: true, bB: true });
  const strides = (broadcast: (x: (typeof axes)[number]) => boolean): [number, number, number, number] => {
    const s: [number, number, number, number] = [0, 0, 0, 0];
    let run = 1;
    for (let k = 3; k >= 0; k--) {
      const ax = axes[k]!;
      if (broadcast(ax)) continue;
      s[k] = run;
      run *= ax.size;
    }
    return s;
  };
  return {
    outShape,
    dims: [axes[0]!.size, axes[1]!.size, axes[2]!.size, axes[3]!.size],
    aStrides: strides((x) => x.aB),
    bStrides: strides((x) => x.bB),
  };
}

/**
 * The override of binary op `name`: broadcasting float32 calls through the addon, everything else
 * (and everything without the addon) through the stock kernel.
 */
export function broadcastBinaryKernel(name: BinaryOpName): WasmKernel {
  return {
    kernelName: name,
    role: "override",
    make: (native: NativeKernels | undefined, stock) => {
      if (stock === undefined || native === undefined) return undefined;
      const code = BINARY_OPS[name];
      return (args) => {
        const { a, b } = args.inputs as { a?: tf.TensorInfo; b?: tf.TensorInfo };
        if (a === undefined || b === undefined || a.dtype !== "float32" || b.dtype !== "float32") return stock(args);
        const plan = broadcastPlan(a.shape, b.shape);
        if (plan === undefined || prod(plan.outShape) === 0) return stock(args);
        const backend = args.backend as unknown as WasmBackend;
        const out = backend.makeOutput(plan.outShape, "float32");
        native.binary(backend.wasm.HEAPU8.buffer, code, ...plan.dims, ...plan.aStrides, ...plan.bStrides, byteOffset(backend, a), byteOffset(backend, b), byteOffset(backend, out));
        return out;
      };
    },
  };
}
