/**
 * `MaxPoolGrad` for wasm (a fix): the stock kernel sends the gradient of an all-negative window to
 * the wrong position (see ./max-pool-loops.ts); this one matches the cpu backend.
 * With the addon the loop is native (native/pool.c), else JavaScript.
 */
import * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { geometry2D, maxPoolGrad, type PoolAttrs } from "./max-pool-loops.js";
import type { WasmKernel } from "./types.js";

export const maxPoolGradKernel: WasmKernel = {
  kernelName: "MaxPoolGrad",
  role: "fix",
  make: (native) => ({ inputs, attrs, backend }) => {
    const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const a = attrs as unknown as PoolAttrs;
    const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], a.filterSize as [number, number], a.strides as [number, number], 1, a.pad, a.dimRoundingMode);
    return maxPoolGrad(backend as unknown as WasmBackend, input, dy, geometry2D(info), native);
  },
};
