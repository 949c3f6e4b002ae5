/**
 * `Mean` for wasm (an override): a mean over leading axes (batch norm's per-channel moments in
 * training, `tf.moments(x, [0, 1, 2])`) as one pass of column sums, without the transpose the stock
 * kernel makes first to bring the reduced axes innermost.
 *
 * Why: two such means over a [64, 64, 64, 32] activation took 105 ms of a 1.8 s W8 step, most of it
 * the transpose. With the addon the column sums are the addon's float32 row-order sums (as the Sum
 * override's); without it, a JavaScript loop summing in float64. Either way the sum is then divided
 * by the row count, so results differ from the stock kernel's by float32 rounding only. Means over
 * other axes are the stock kernel's.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { leadingReduction, sumRowsNative } from "./Sum.js";
import type { WasmKernel } from "./types.js";

export const meanKernel: WasmKernel = {
  kernelName: "Mean",
  role: "override",
  make: (native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const red = leadingReduction(args);
      if (red === undefined || red.rows === 0 || red.cols === 0) return stock(args);
      const backend = args.backend as unknown as WasmBackend;
      let out: tf.TensorInfo;
      if (native !== undefined) {
        out = sumRowsNative(native, backend, red);
        const o = backend.typedArrayFromHeap(out) as Float32Array;
        for (let j = 0; j < red.cols; j++) o[j] = o[j]! / red.rows;
      } else {
        out = backend.makeOutput(red.outShape, "float32");
        const xs = backend.typedArrayFromHeap(red.x) as Float32Array;
        const acc = new Float64Array(red.cols);
        for (let i = 0, k = 0; i < red.rows; i++) for (let j = 0; j < red.cols; j++, k++) acc[j]! += xs[k]!;
        const o = backend.typedArrayFromHeap(out) as Float32Array;
        for (let j = 0; j < red.cols; j++) o[j] = acc[j]! / red.rows;
      }
      return out;
    };
  },
};
