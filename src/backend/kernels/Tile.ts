/**
 * `Tile` for wasm (an override): block copies instead of one index computation per element.
 *
 * Why: the stock kernel computes every output element's source index in a scalar loop, about 67 ns
 * an element here; batch norm's gradient tiles its per-channel terms over the whole activation, so in
 * a CelebA-like conv net (bench W8) three Tile calls took 1.0 s of a 1.8 s step.
 *
 * How: the output is built from the innermost axis outwards. At each axis the input's block is first
 * written once (recursively), then that block is repeated `reps` times with `copyWithin`, a memmove.
 * The values are copies, so the result is exactly the stock kernel's, for every dtype on the heap.
 */
import { prod, type WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

/** Writes x tiled by `reps` into out (both row-major views; out is prod(shape[i] * reps[i]) long). */
export function tileInto<T extends Float32Array | Int32Array | Uint8Array>(x: T, shape: readonly number[], reps: readonly number[], out: T): void {
  const rank = shape.length;
  const outShape = shape.map((d, i) => d * reps[i]!);
  // Elements of one output block below axis d, and of one input block below axis d.
  const outInner = new Array<number>(rank + 1).fill(1);
  const inInner = new Array<number>(rank + 1).fill(1);
  for (let d = rank - 1; d >= 0; d--) {
    outInner[d] = outInner[d + 1]! * outShape[d]!;
    inInner[d] = inInner[d + 1]! * shape[d]!;
  }
  const fill = (d: number, src: number, dst: number): void => {
    if (d === rank) {
      out[dst] = x[src]!;
      return;
    }
    const n = shape[d]!;
    if (d === rank - 1) {
      out.set(x.subarray(src, src + n), dst);
    } else {
      for (let j = 0; j < n; j++) fill(d + 1, src + j * inInner[d + 1]!, dst + j * outInner[d + 1]!);
    }
    // The block just written is n rows of the axis; repeat it reps[d] - 1 more times.
    const block = n * outInner[d + 1]!;
    for (let r = 1; r < reps[d]!; r++) out.copyWithin(dst + r * block, dst, dst + block);
  };
  if (rank === 0) {
    out[0] = x[0]!;
    return;
  }
  if (prod(outShape) > 0) fill(0, 0, 0);
}

export const tileKernel: WasmKernel = {
  kernelName: "Tile",
  role: "override",
  make: (_native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const x = args.inputs.x;
      const reps = (args.attrs as { reps?: number[] } | undefined)?.reps;
      if (x === undefined || x.dtype === "string" || x.dtype === "complex64" || !Array.isArray(reps) || reps.length !== x.shape.length) return stock(args);
      if (reps.some((r) => !Number.isInteger(r) || r < 0)) return stock(args);
      const backend = args.backend as unknown as WasmBackend;
      const out = backend.makeOutput(x.shape.map((d, i) => d * reps[i]!), x.dtype);
      // Views after makeOutput: an allocation may replace the heap's buffer.
      tileInto(backend.typedArrayFromHeap(x), x.shape, reps, backend.typedArrayFromHeap(out));
      return out;
    };
  },
};
