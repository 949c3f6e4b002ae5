/**
 * `FusedBatchNorm` for wasm (an override): batch normalisation's forward pass over the last axis,
 * with the per-channel square root taken once per channel instead of once per element.
 *
 * Why: the stock kernel is a scalar loop with a square root and a division per element, 35 ms on
 * the [64, 64, 64, 32] activation of the W8 bench.
 *
 * Formula: the cpu backend's, in its order and in double precision as its JavaScript evaluates it,
 * rounded once to float32: offset + (x − mean) · scale / √(variance + ε) (no offset: 0, no scale:
 * 1, ε 0.001 when unset), so the result is the cpu backend's bit for bit; the stock wasm kernel
 * computes in float32 and differs from both by float32 rounding. Native (native/elementwise.c);
 * calls whose mean, variance, offset or scale is neither one value nor one per channel of x's last
 * axis go to the stock kernel, and so does every call without the addon (a JavaScript loop of the
 * same formula measured 52 ms on that activation, the stock kernel 31 ms, the native loop 4 ms).
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, prod, type WasmBackend } from "../wasm-internals.js";
import type { WasmKernel } from "./types.js";

export const fusedBatchNormKernel: WasmKernel = {
  kernelName: "FusedBatchNorm",
  role: "override",
  make: (native: NativeKernels | undefined, stock) => {
    if (stock === undefined || native === undefined) return undefined;
    return (args) => {
      const { x, mean, variance, offset, scale } = args.inputs as Record<string, tf.TensorInfo | undefined>;
      const eps = (args.attrs as { varianceEpsilon?: number } | undefined)?.varianceEpsilon ?? 0.001;
      if (x === undefined || mean === undefined || variance === undefined || x.shape.length === 0) return stock(args);
      const C = x.shape[x.shape.length - 1]!;
      const params = [mean, variance, offset, scale];
      const size = prod(x.shape);
      if (size === 0 || x.dtype !== "float32") return stock(args);
      for (const p of params) {
        if (p === undefined) continue;
        const n = prod(p.shape);
        if (p.dtype !== "float32" || (n !== 1 && n !== C)) return stock(args);
      }
      const backend = args.backend as unknown as WasmBackend;
      const out = backend.makeOutput(x.shape, "float32");
      const ref = (p: tf.TensorInfo | undefined): [number, number] => (p === undefined ? [-1, 1] : [byteOffset(backend, p), prod(p.shape)]);
      native.batchNorm(backend.wasm.HEAPU8.buffer, size / C, C, byteOffset(backend, x), ...ref(mean), ...ref(variance), ...ref(offset), ...ref(scale), eps, byteOffset(backend, out));
      return out;
    };
  },
};
