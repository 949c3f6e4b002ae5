/**
 * `GatherV2` for wasm (an override, with the native addon only): on axis 0 (embedding lookups) whole
 * rows are copied natively; the stock kernel took 4.3 ms to gather 1024 rows of a 10000x64 table
 * (bench W3). An index outside the table is an error that names it (the stock wasm kernel reads
 * outside the table instead). Other axes, batch dims and dtypes, and every call without the addon,
 * are the stock kernel's.
 */
import type * as tf from "@tensorflow/tfjs";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import { copiesNatively } from "./row-copy-common.js";
import type { WasmKernel } from "./types.js";

export const gatherV2Kernel: WasmKernel = {
  kernelName: "GatherV2",
  role: "override",
  make: (native, stock) => {
    if (native === undefined || stock === undefined) return undefined;
    return (args) => {
      const { x, indices } = args.inputs;
      const attrs = (args.attrs ?? {}) as { axis?: number; batchDims?: number };
      if (x === undefined || indices === undefined || !copiesNatively(x.dtype) || indices.dtype !== "int32") return stock(args);
      const rank = x.shape.length;
      const axis = (attrs.axis ?? 0) < 0 ? (attrs.axis ?? 0) + rank : (attrs.axis ?? 0);
      if (axis !== 0 || (attrs.batchDims ?? 0) !== 0 || rank === 0) return stock(args);
      const backend = args.backend as unknown as WasmBackend;
      const rowElems = prod(x.shape.slice(1));
      const n = prod(indices.shape);
      const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
      if (n === 0 || rowElems === 0) return out;
      const bad = native.gatherRows(backend.wasm.HEAPU8.buffer, n, rowElems, x.shape[0]!, byteOffset(backend, x), byteOffset(backend, indices), byteOffset(backend, out));
      if (bad >= 0) {
        const value = (backend.typedArrayFromHeap(indices) as Int32Array)[bad];
        // No tensor was made from `out` yet: free its buffer directly.
        backend.disposeData(out.dataId);
        throw new Error(`GatherV2: index ${value} (at position ${bad} of the indices) is not in [0, ${x.shape[0]! - 1}] for a tensor of shape [${x.shape}].`);
      }
      return out;
    };
  },
};
