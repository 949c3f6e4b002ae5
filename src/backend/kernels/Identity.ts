/**
 * `Identity` for wasm (an override): shares its input's buffer (one more reference) instead of
 * copying it, as the `cpu` backend's Identity does.
 *
 * Why: the engine runs Identity to keep every tensor a gradient will need
 * (`saveTensorsForBackwardMode` clones them), so a stock wasm step copied 36 tensors (bench W2), 7 of
 * them [1024, 512], only to read them once. Sharing is safe because tfjs kernels never write into
 * their inputs; jointly's fused optimizers write in place only into a buffer with a reference count
 * of 1 and otherwise into a new one (src/optimizers/wasm-update.ts).
 */
import type { WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

export const identityKernel: WasmKernel = {
  kernelName: "Identity",
  role: "override",
  make: (_native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const x = args.inputs.x;
      if (x === undefined) throw new Error("Identity needs input x");
      // Strings live outside the heap; leave them to the stock kernel.
      if (x.dtype === "string") return stock(args);
      (args.backend as unknown as WasmBackend).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
    };
  },
};
