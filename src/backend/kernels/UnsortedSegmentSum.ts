/**
 * `UnsortedSegmentSum` for wasm (a missing kernel): @tensorflow/tfjs-backend-wasm 4.22.0 has none,
 * and the gradient of `tf.gather` (hence training any `tf.layers.embedding`) calls it, failing with
 * "Kernel 'UnsortedSegmentSum' not registered for backend 'wasm'". A backend version that has its own
 * keeps it (register-all skips a "missing" kernel that is already there).
 *
 * How: a JavaScript kernel that reads its inputs straight from their views on the wasm heap and
 * writes into an output allocated with the backend's own `makeOutput`, so tensors never leave wasm
 * memory. Input rows are bucketed by (segment, position) with a stable counting sort, then each
 * bucket is summed in float64 in input order and rounded to float32 once.
 *
 * Semantics: those of the `cpu` backend's kernel, bit for bit: the output is `float32` for every
 * input dtype (float32, int32, bool), of shape `[numSegments, ...x.shape.slice(1)]`; ids outside
 * `[0, numSegments)` are dropped; int32 values are rounded to float32 before they are summed; and,
 * as on cpu (which sums `mask * x`), a NaN or ±Infinity anywhere in a column turns that column into
 * NaN in every segment that does not own it. `segmentIds` must be 1-D with one id per row of `x`
 * (the op's documented contract): cpu's answers for other shapes come from accidental broadcasting
 * (rank-2 ids are matched against x's last axis), so they are rejected here rather than imitated.
 * Where cpu crashes instead of answering (`numSegments` 0), this returns the empty `[0, ...]` tensor.
 */
import type * as tf from "@tensorflow/tfjs";
import { prod, type WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

/** Checks the inputs as the cpu kernel effectively requires, with errors that name the bad value. */
function checkSegmentSumArgs(x: tf.TensorInfo, ids: tf.TensorInfo, numSegments: unknown): number {
  if (x.dtype !== "float32" && x.dtype !== "int32" && x.dtype !== "bool") {
    throw new Error(`UnsortedSegmentSum (wasm): x must be float32, int32 or bool, but got dtype ${x.dtype}.`);
  }
  if (ids.dtype !== "int32") {
    throw new Error(`UnsortedSegmentSum (wasm): segmentIds must be int32, but got dtype ${ids.dtype}.`);
  }
  if (typeof numSegments !== "number" || !Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum (wasm): numSegments must be a non-negative integer, but got ${String(numSegments)}.`);
  }
  if (x.shape.length === 0 || ids.shape.length !== 1 || ids.shape[0] !== x.shape[0]) {
    throw new Error(
      `UnsortedSegmentSum (wasm): segmentIds shape [${ids.shape.join(",")}] must be [rows] for x shape [${x.shape.join(",")}] (one id per row).`,
    );
  }
  return numSegments;
}

/** Sums row r of `xs` (rows of `inner` values) into row `ids[r]` of `out`, reproducing the cpu kernel exactly. */
function segmentSum(
  xs: Float32Array | Int32Array | Uint8Array,
  ids: Int32Array,
  out: Float32Array,
  numSegments: number,
  inner: number,
): void {
  const rows = ids.length;
  const keys = numSegments;
  // Stable counting sort of rows by output row, so each output row sums its inputs in input order as cpu does.
  const starts = new Int32Array(keys + 1);
  for (let r = 0; r < rows; r++) {
    const s = ids[r];
    if (s >= 0 && s < numSegments) starts[s + 1]++;
  }
  for (let k = 0; k < keys; k++) starts[k + 1] += starts[k];
  const order = new Int32Array(starts[keys]);
  const fill = starts.slice(0, keys);
  for (let r = 0; r < rows; r++) {
    const s = ids[r];
    if (s >= 0 && s < numSegments) order[fill[s]++] = r;
  }

  out.fill(0);
  const acc = new Float64Array(inner);
  // cpu multiplies int32 x by a float32 mask before summing, so each int32 value is rounded to float32 first.
  const roundFirst = xs instanceof Int32Array;
  for (let key = 0; key < keys; key++) {
    const begin = starts[key];
    const end = starts[key + 1];
    if (begin === end) continue;
    acc.fill(0);
    for (let o = begin; o < end; o++) {
      const base = order[o] * inner;
      if (roundFirst) {
        for (let c = 0; c < inner; c++) acc[c] += Math.fround(xs[base + c]);
      } else {
        for (let c = 0; c < inner; c++) acc[c] += xs[base + c];
      }
    }
    out.set(acc, key * inner);
  }

  if (xs instanceof Float32Array) poisonLikeCpu(xs, ids, out, starts, order, numSegments, inner);
}

/**
 * cpu sums `mask * x` over all rows, and 0 * NaN or 0 * ±Infinity is NaN: a non-finite value poisons
 * its column in every output row it does not belong to. Costs one scan when all values are finite.
 */
function poisonLikeCpu(
  xs: Float32Array,
  ids: Int32Array,
  out: Float32Array,
  starts: Int32Array,
  order: Int32Array,
  numSegments: number,
  inner: number,
): void {
  let finite = true;
  for (let i = 0; i < xs.length; i++) {
    // v - v is 0 for every finite v and NaN for NaN and ±Infinity.
    if (xs[i] - xs[i] !== 0) {
      finite = false;
      break;
    }
  }
  if (finite) return;
  // Non-finite values per column, over every row including those with dropped ids.
  const total = new Int32Array(inner);
  for (let r = 0; r < ids.length; r++) {
    const base = r * inner;
    for (let c = 0; c < inner; c++) if (xs[base + c] - xs[base + c] !== 0) total[c]++;
  }
  const own = new Int32Array(inner);
  for (let key = 0; key < numSegments; key++) {
    own.fill(0);
    for (let o = starts[key]; o < starts[key + 1]; o++) {
      const base = order[o] * inner;
      for (let c = 0; c < inner; c++) if (xs[base + c] - xs[base + c] !== 0) own[c]++;
    }
    for (let c = 0; c < inner; c++) if (total[c] > own[c]) out[key * inner + c] = NaN;
  }
}

/** `UnsortedSegmentSum` for the wasm backend, computed in JS over the wasm heap. */
const unsortedSegmentSum: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs;
  if (x === undefined || segmentIds === undefined) {
    throw new Error("UnsortedSegmentSum (wasm): needs inputs x and segmentIds.");
  }
  const numSegments = checkSegmentSumArgs(x, segmentIds, attrs?.numSegments);
  const wasm = backend as WasmBackend;
  const inner = prod(x.shape.slice(1));
  const out = wasm.makeOutput([numSegments, ...x.shape.slice(1)], "float32");
  // Views are taken after makeOutput: allocating may grow the wasm memory and detach older views.
  const outView = wasm.typedArrayFromHeap(out) as Float32Array;
  const xs = wasm.typedArrayFromHeap(x);
  const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
  segmentSum(xs, ids, outView, numSegments, inner);
  return out;
};

export const unsortedSegmentSumKernel: WasmKernel = {
  kernelName: "UnsortedSegmentSum",
  role: "missing",
  // The same JavaScript with or without the addon.
  make: () => unsortedSegmentSum,
};
