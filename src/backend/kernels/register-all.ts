/**
 * Every kernel jointly registers for the `wasm` backend, in one list, and the one place they are
 * registered and restored (the layout of tfjs-backend-wasm's `register_all_kernels.ts`).
 *
 * Each entry is a {@link WasmKernel}: a fix of a stock kernel that gives wrong results, a kernel the
 * stock backend lacks, an override of a stock kernel for speed, or one of jointly's own (with its
 * gradient). After the list, the safety net (./cpu-fallback.ts) gives every kernel that wasm still
 * lacks the cpu backend's implementation, so no model fails with "Kernel X not registered".
 *
 * Native or not is decided here, once per kernel: `make` is called with the addon and without it,
 * and the registered function picks one of the two prepared functions per call (the addon can be
 * switched off at run time with `setNativeKernelsEnabled(false)`, for comparisons and tests).
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative, loadedNative } from "../native.js";
import { registerCpuFallbacks } from "./cpu-fallback.js";
import type { WasmKernel } from "./types.js";
import { addKernel } from "./Add.js";
import { batchMatMulKernel } from "./BatchMatMul.js";
import { castKernel } from "./Cast.js";
import { concatKernel } from "./Concat.js";
import { conv2DKernel } from "./Conv2D.js";
import { conv2DBackpropFilterKernel } from "./Conv2DBackpropFilter.js";
import { conv2DBackpropInputKernel } from "./Conv2DBackpropInput.js";
import { depthwiseConv2dNativeKernel } from "./DepthwiseConv2dNative.js";
import { depthwiseConv2dNativeBackpropFilterKernel } from "./DepthwiseConv2dNativeBackpropFilter.js";
import { depthwiseConv2dNativeBackpropInputKernel } from "./DepthwiseConv2dNativeBackpropInput.js";
import { fusedBatchNormKernel } from "./FusedBatchNorm.js";
import { fusedConv2DKernel } from "./FusedConv2D.js";
import { conv3DBackpropInputV2Kernel } from "./Conv3DBackpropInputV2.js";
import { fusedMatMulKernel } from "./_FusedMatMul.js";
import { gatherV2Kernel } from "./GatherV2.js";
import { identityKernel } from "./Identity.js";
import { jointlyActGradKernel } from "./JointlyActGrad.js";
import { jointlyDenseKernel } from "./JointlyDense.js";
import { jointlyDenseLinearKernel } from "./JointlyDenseLinear.js";
import { jointlyLossKernel } from "./JointlyLoss.js";
import { jointlyLossGradKernel } from "./JointlyLossGrad.js";
import { maxPool3DKernel } from "./MaxPool3D.js";
import { maxPool3DGradKernel } from "./MaxPool3DGrad.js";
import { maxPoolGradKernel } from "./MaxPoolGrad.js";
import { multiplyKernel } from "./Multiply.js";
import { realDivKernel } from "./RealDiv.js";
import { splitVKernel } from "./SplitV.js";
import { meanKernel } from "./Mean.js";
import { subKernel } from "./Sub.js";
import { sumKernel } from "./Sum.js";
import { tileKernel } from "./Tile.js";
import { unsortedSegmentSumKernel } from "./UnsortedSegmentSum.js";

/** The kernels of this folder, grouped by role, registered in this order. */
export const WASM_KERNELS: readonly WasmKernel[] = [
  // Fixes: stock kernels that give wrong results.
  // The stock forward convolutions leave the output unwritten or wrongly sized in some geometries
  // (a 1xk filter with strides 2, numeric pads with non-square filters); these pass explicit pads to
  // XNNPACK (or loop in JavaScript) and run im2col + sgemm with the addon.
  conv2DKernel,
  fusedConv2DKernel,
  depthwiseConv2dNativeKernel,
  maxPoolGradKernel,
  maxPool3DKernel,
  maxPool3DGradKernel,
  conv3DBackpropInputV2Kernel,
  // Missing: kernels TensorFlow.js defines and the stock wasm backend lacks.
  unsortedSegmentSumKernel,
  conv2DBackpropFilterKernel,
  depthwiseConv2dNativeBackpropFilterKernel,
  depthwiseConv2dNativeBackpropInputKernel,
  // Overrides, for speed (only with the fast paths): matrix products through BLAS or XNNPACK, and
  // cheaper copies, sums and row gathers. Before jointly's own kernels, whose Dense runs _FusedMatMul.
  batchMatMulKernel,
  fusedMatMulKernel,
  identityKernel,
  castKernel,
  sumKernel,
  gatherV2Kernel,
  concatKernel,
  splitVKernel,
  tileKernel,
  meanKernel,
  // The convolutions' input gradient: im2col + sgemm with the addon, through XNNPACK without (the
  // stock kernel is a scalar loop).
  conv2DBackpropInputKernel,
  // Element-wise: binary ops with broadcasting (per-channel vectors, scalars) and batch norm's forward pass.
  addKernel,
  subKernel,
  multiplyKernel,
  realDivKernel,
  fusedBatchNormKernel,
  // New: jointly's own fused kernels (only with the fast paths and the addon), run by src/ops/fused.ts.
  jointlyDenseKernel,
  jointlyDenseLinearKernel,
  jointlyActGradKernel,
  jointlyLossKernel,
  jointlyLossGradKernel,
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

/** How {@link registerWasmKernels} is asked to register. */
export interface RegisterWasmKernelsOptions {
  /**
   * The fast paths (default true): the overrides of stock kernels and jointly's own kernels. With
   * false only the fixes and the missing kernels are added (the stock ones stay).
   */
  overrides?: boolean;
  /**
   * Only these kernels of {@link WASM_KERNELS}, by name, and no cpu safety net: for tests and
   * benchmarks that compare a kernel with the stock one.
   */
  only?: readonly string[];
}

/**
 * Registers {@link WASM_KERNELS} (with their gradients) and the cpu fallbacks for backend "wasm".
 * Idempotent until restored: while a registration is live, a second call returns its handle
 * (whatever the options). Works whether or not the wasm backend is initialised yet.
 */
export function registerWasmKernels(options: RegisterWasmKernelsOptions = {}): WasmKernelsHandle {
  if (active !== null) return active;
  const overrides = options.overrides ?? true;
  const only = options.only === undefined ? undefined : new Set(options.only);
  for (const name of only ?? []) {
    if (!WASM_KERNELS.some((k) => k.kernelName === name)) {
      throw new Error(`registerWasmKernels: "${name}" is not one of WASM_KERNELS (${WASM_KERNELS.map((k) => k.kernelName).join(", ")}).`);
    }
  }
  // Loaded, even if switched off just now: setNativeKernelsEnabled(true) later must find the addon's versions.
  const native = loadedNative();
  const replaced: { ours: tf.KernelConfig; stock?: tf.KernelConfig }[] = [];
  const gradients: { ours: tf.GradConfig; before?: tf.GradConfig }[] = [];
  for (const k of WASM_KERNELS) {
    if (only !== undefined && !only.has(k.kernelName)) continue;
    const stock = tf.getKernel(k.kernelName, "wasm");
    // A kernel we add because it was missing is left to a backend version that has its own.
    if (k.role === "missing" && stock !== undefined) continue;
    if ((k.role === "override" || k.role === "new") && !overrides) continue;
    const withAddon = native === undefined ? undefined : k.make(native, stock?.kernelFunc);
    const without = k.make(undefined, stock?.kernelFunc) ?? stock?.kernelFunc;
    // Nothing of ours to run (e.g. an override that only helps with the addon, which is not loaded).
    if (withAddon === undefined && (without === undefined || without === stock?.kernelFunc)) continue;
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
    if (k.gradient !== undefined) {
      gradients.push({ ours: k.gradient, before: tf.getGradient(k.gradient.kernelName) });
      tf.registerGradient(k.gradient);
    }
  }
  const fallbacks = only === undefined ? registerCpuFallbacks() : [];
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
      for (const g of gradients) {
        if (tf.getGradient(g.ours.kernelName) !== g.ours) continue;
        tf.unregisterGradient(g.ours.kernelName);
        if (g.before !== undefined) tf.registerGradient(g.before);
      }
      active = null;
    },
  };
  active = handle;
  return handle;
}
