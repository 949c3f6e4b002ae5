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
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { leadingAxes } from "./Sum.js";
import type { WasmKernel } from "./types.js";

export const meanKernel: WasmKernel = {
  kernelName: "Mean",
  role: "override",
  make: (native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const x = args.inputs.x;
      const attrs = (args.attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
      if (x === undefined || x.dtype !== "float32") return stock(args);
      const r = leadingAxes(attrs.axis, x.shape.length);
      if (r === undefined) return stock(args);
      const backend = args.backend as unknown as WasmBackend;
      const rows = prod(x.shape.slice(0, r));
      const rest = x.shape.slice(r);
      const cols = prod(rest);
      if (rows === 0 || cols === 0) return stock(args);
      const out = backend.makeOutput(attrs.keepDims === true ? [...new Array<number>(r).fill(1), ...rest] : rest, "float32");
      if (native !== undefined) {
        native.sumRows(backend.wasm.HEAPU8.buffer, rows, cols, byteOffset(backend, x), byteOffset(backend, out));
        const o = backend.typedArrayFromHeap(out) as Float32Array;
        for (let j = 0; j < cols; j++) o[j] = o[j]! / rows;
      } else {
        const xs = backend.typedArrayFromHeap(x) as Float32Array;
        const acc = new Float64Array(cols);
        for (let i = 0, k = 0; i < rows; i++) for (let j = 0; j < cols; j++, k++) acc[j]! += xs[k]!;
        const o = backend.typedArrayFromHeap(out) as Float32Array;
        for (let j = 0; j < cols; j++) o[j] = acc[j]! / rows;
      }
      return out as tf.TensorInfo;
    };
  },
};
