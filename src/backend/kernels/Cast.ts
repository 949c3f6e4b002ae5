/**
 * `Cast` for wasm (an override): a cast to the tensor's own dtype shares the buffer, like
 * ./Identity.ts, instead of copying it (relu's gradient casts its float32 mask to float32: a copy per
 * layer per step). Every real conversion is the stock kernel's.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

export const castKernel: WasmKernel = {
  kernelName: "Cast",
  role: "override",
  make: (_native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const x = args.inputs.x;
      const dtype = (args.attrs as { dtype?: tf.DataType } | undefined)?.dtype;
      // A cast to its own dtype (relu's gradient casts step(x), already float32) is the same values.
      if (x === undefined || dtype !== x.dtype || x.dtype === "string" || x.dtype === "complex64") return stock(args);
      (args.backend as unknown as WasmBackend).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
    };
  },
};
