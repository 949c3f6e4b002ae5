/**
 * `MaxPool3D` for wasm (a fix): the stock kernel returns wrong maxima for windows of only negative
 * values (see ./max-pool-loops.ts); this one matches the cpu backend.
 * With the addon the loop is native (native/pool.c), else JavaScript.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { maxPool, pool3DGeometry, type PoolAttrs } from "./max-pool-loops.js";
import type { WasmKernel } from "./types.js";

export const maxPool3DKernel: WasmKernel = {
  kernelName: "MaxPool3D",
  role: "fix",
  make: (native) => ({ inputs, attrs, backend }) => {
    const { x } = inputs as { x: tf.TensorInfo };
    if (x.dtype !== "float32") throw new Error(`MaxPool3D (wasm): x must be float32, but got ${x.dtype}.`);
    return maxPool(backend as unknown as WasmBackend, x, pool3DGeometry(x.shape, attrs as unknown as PoolAttrs), native);
  },
};
