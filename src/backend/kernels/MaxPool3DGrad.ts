/**
 * `MaxPool3DGrad` for wasm (a fix): the stock kernel sends the gradient of an all-negative window to
 * the wrong position, as MaxPoolGrad's (see ./max-pool-loops.ts); this one matches the cpu backend.
 * With the addon the loop is native (native/pool.c), else JavaScript.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { maxPoolGrad, pool3DGeometry, type PoolAttrs } from "./max-pool-loops.js";
import type { WasmKernel } from "./types.js";

export const maxPool3DGradKernel: WasmKernel = {
  kernelName: "MaxPool3DGrad",
  role: "fix",
  make: (native) => ({ inputs, attrs, backend }) => {
    const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    return maxPoolGrad(backend as unknown as WasmBackend, input, dy, pool3DGeometry(input.shape, attrs as unknown as PoolAttrs), native);
  },
};
