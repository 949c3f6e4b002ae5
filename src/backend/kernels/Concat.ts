/**
 * `Concat` for wasm (an override, with the native addon only): row blocks are copied natively
 * instead of the stock JavaScript loop of row copies (concatenated embeddings, bench W3). float32
 * and int32 only; anything else, and every call without the addon, is the stock kernel's.
 */
import * as tf from "@tensorflow/tfjs";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { copiesNatively } from "./row-copy-common.js";
import type { WasmKernel } from "./types.js";

export const concatKernel: WasmKernel = {
  kernelName: "Concat",
  role: "override",
  make: (native, stock) => {
    if (native === undefined || stock === undefined) return undefined;
    return (args) => {
      const inputs = args.inputs as unknown as tf.TensorInfo[];
      if (!Array.isArray(inputs) || inputs.length < 2) return stock(args);
      const dtype = inputs[0]!.dtype;
      if (!copiesNatively(dtype) || inputs.some((t) => t.dtype !== dtype)) return stock(args);
      const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, inputs[0]!.shape)[0]!;
      const shapes = inputs.map((t) => t.shape);
      tf.backend_util.assertParamsConsistent(shapes, axis);
      const outShape = tf.backend_util.computeOutShape(shapes, axis);
      const backend = args.backend as unknown as WasmBackend;
      const out = backend.makeOutput(outShape, dtype);
      // Rows = the axes before `axis`; each input contributes a block of its inner size to every row.
      const rows = prod(outShape.slice(0, axis));
      const width = prod(outShape.slice(axis));
      if (rows === 0 || width === 0) return out;
      const dst = byteOffset(backend, out);
      const heap = backend.wasm.HEAPU8.buffer;
      let col = 0;
      for (const t of inputs) {
        const w = prod(t.shape.slice(axis));
        if (w > 0) native.copy2d(heap, rows, w, byteOffset(backend, t), w, dst + col * 4, width);
        col += w;
      }
      return out;
    };
  },
};
