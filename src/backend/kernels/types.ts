/**
 * What a kernel file of src/backend/kernels/ exports: one TensorFlow.js kernel for the `wasm` backend,
 * said to be an override of a stock kernel, a kernel the stock backend lacks, or one of jointly's own.
 *
 * Where it runs (the native addon or wasm/JavaScript) is decided when it is registered: `make` gets
 * the addon's functions (or undefined) and the stock kernel (if the backend has one) and returns the
 * function to register. src/backend/kernels/register-all.ts lists them all.
 */
import type * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";

export type KernelRole =
  /** Replaces a kernel the stock wasm backend has, for speed (left out when the fast paths are off). */
  | "override"
  /** Replaces a stock kernel that gives wrong results (always registered). */
  | "fix"
  /** A kernel TensorFlow.js defines and the stock wasm backend lacks. */
  | "missing"
  /** A kernel name of jointly's own (fused ops; left out, like the overrides, when the fast paths are off). */
  | "new";

export interface WasmKernel {
  kernelName: string;
  role: KernelRole;
  /**
   * The function to register. `native` is the addon when it is loaded and enabled; `stock` is the
   * wasm backend's own kernel for an override. Return undefined to leave the stock kernel in place
   * (e.g. an override that only helps with the addon).
   */
  make(native: NativeKernels | undefined, stock: tf.KernelFunc | undefined): tf.KernelFunc | undefined;
  /** The kernel's gradient (jointly's own kernels), registered and restored with it. */
  gradient?: tf.GradConfig;
}
