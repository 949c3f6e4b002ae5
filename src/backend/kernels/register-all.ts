/**
 * Every kernel jointly registers for the `wasm` backend, in one list, and the one place they are
 * registered and restored (the layout of tfjs-backend-wasm's `register_all_kernels.ts`).
 *
 * Each entry is a {@link WasmKernel}: an override of a stock kernel, a kernel the stock backend
 * lacks, or one of jointly's own. After the list, the safety net (./cpu-fallback.ts) gives every
 * kernel that wasm still lacks the cpu backend's implementation, so no model fails with "Kernel X
 * not registered".
 *
 * Native or not is decided here, once per kernel: `make` is called with the addon and without it,
 * and the registered function picks one of the two prepared functions per call (the addon can be
 * switched off at run time with `setNativeKernelsEnabled(false)`, for comparisons and tests).
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative, nativeKernels } from "../native.js";
import { registerCpuFallbacks } from "./cpu-fallback.js";
import type { WasmKernel } from "./types.js";
import { maxPoolGradKernel } from "./MaxPoolGrad.js";
import { maxPool3DKernel } from "./MaxPool3D.js";
import { maxPool3DGradKernel } from "./MaxPool3DGrad.js";
import { conv3DBackpropInputV2Kernel } from "./Conv3DBackpropInputV2.js";

/** The kernels of this folder, by name. */
export const WASM_KERNELS: readonly WasmKernel[] = [
  // Fixes: stock kernels that give wrong results.
  maxPoolGradKernel,
  maxPool3DKernel,
  maxPool3DGradKernel,
  conv3DBackpropInputV2Kernel,
];

/** What {@link registerWasmKernels} did. */
export interface WasmKernelsHandle {
  /** The kernels of {@link WASM_KERNELS} now registered (a "missing" one the backend already has is not). */
  registered: string[];
  /** Kernels wasm lacked that now run the cpu backend's implementation. */
  viaCpu: string[];
  /** Put back exactly what was there before. */
  restore(): void;
}

let active: WasmKernelsHandle | null = null;

/**
 * Registers {@link WASM_KERNELS} and the cpu fallbacks for backend "wasm". With `overrides: false`
 * only the kernels the backend lacks are added (the stock ones stay). Idempotent until restored.
 */
export function registerWasmKernels(options: { overrides?: boolean } = {}): WasmKernelsHandle {
  if (active !== null) return active;
  const overrides = options.overrides ?? true;
  const native = nativeKernels().kernels;
  const replaced: { ours: tf.KernelConfig; stock?: tf.KernelConfig }[] = [];
  for (const k of WASM_KERNELS) {
    const stock = tf.getKernel(k.kernelName, "wasm");
    // A kernel we add because it was missing is left to a backend version that has its own.
    if (k.role === "missing" && stock !== undefined) continue;
    if (k.role === "override" && !overrides) continue;
    const withAddon = native === undefined ? undefined : k.make(native, stock?.kernelFunc);
    const without = k.make(undefined, stock?.kernelFunc) ?? stock?.kernelFunc;
    if (withAddon === undefined && without === undefined) continue;
    const kernelFunc: tf.KernelFunc =
      withAddon === undefined
        ? without!
        : without === undefined
          ? withAddon
          : (args) => (activeNative() !== undefined ? withAddon : without)(args);
    const ours: tf.KernelConfig = { kernelName: k.kernelName, backendName: "wasm", kernelFunc, setupFunc: stock?.setupFunc, disposeFunc: stock?.disposeFunc };
    if (stock !== undefined) tf.unregisterKernel(k.kernelName, "wasm");
    tf.registerKernel(ours);
    replaced.push({ ours, stock });
  }
  const fallbacks = registerCpuFallbacks();
  const handle: WasmKernelsHandle = {
    registered: replaced.map((r) => r.ours.kernelName),
    viaCpu: fallbacks.map((c) => c.kernelName),
    restore() {
      if (active !== handle) return;
      for (const c of [...fallbacks, ...replaced.map((r) => r.ours)]) {
        // Only ours: a kernel someone registered since must survive.
        if (tf.getKernel(c.kernelName, "wasm")?.kernelFunc === c.kernelFunc) tf.unregisterKernel(c.kernelName, "wasm");
      }
      for (const r of replaced) if (r.stock !== undefined && tf.getKernel(r.stock.kernelName, "wasm") === undefined) tf.registerKernel(r.stock);
      active = null;
    },
  };
  active = handle;
  return handle;
}
