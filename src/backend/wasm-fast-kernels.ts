/**
 * Two cheaper kernels for the TensorFlow.js `wasm` backend, found by timing every kernel of a
 * training step (bench W2: 152 kernel calls a step).
 *
 * - `Identity` shares its input's buffer (one more reference) instead of copying it. The engine runs
 *   Identity to keep every tensor a gradient will need (`saveTensorsForBackwardMode` clones them),
 *   so a stock wasm step copied 36 tensors, 7 of them [1024, 512], only to read them once. The `cpu`
 *   backend's Identity shares the buffer the same way. Sharing is safe because tfjs kernels never
 *   write into their inputs; jointly's fused optimizers write in place only into a buffer with a
 *   reference count of 1 and otherwise into a new one (src/backend/fused-optimizers.ts).
 * - `Sum` over leading axes (the bias gradient of every Dense layer: dy summed over the batch) runs
 *   in the native addon as a row-order column sum, without the transpose the stock kernel makes first
 *   (4.4 ms of a 42 ms W2 step went to two such sums). The order of additions is the stock kernel's
 *   after its transpose, so the result is the same. Without the addon, or for any other reduction,
 *   the stock kernel runs. A sum over an empty tensor is zeros here (the stock kernel returns
 *   uninitialised memory for it).
 *
 * Caveat: relies on the wasm backend's `dataIdMap`, `incRef`, `makeOutput` and heap, which are stable
 * in @tensorflow/tfjs-backend-wasm 4.x but not public API.
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "./native.js";

interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number | null } | undefined };
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

function prod(dims: readonly number[]): number {
  let p = 1;
  for (const d of dims) p *= d;
  return p;
}

function makeIdentity(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x;
    if (x === undefined) throw new Error("Identity needs input x");
    // Strings live outside the heap; leave them to the stock kernel.
    if (x.dtype === "string") return stock(args);
    (args.backend as unknown as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  };
}

/**
 * The reduced axes as non-negative numbers in the order given, or undefined when they are not plain
 * integers in range (the stock kernel then reports the error).
 */
function normalAxes(axis: unknown, rank: number): number[] | undefined {
  const list: unknown[] = axis === undefined || axis === null ? [...Array(rank).keys()] : Array.isArray(axis) ? axis : [axis];
  const out: number[] = [];
  for (const a of list) {
    if (typeof a !== "number" || !Number.isInteger(a) || a < -rank || a >= rank) return undefined;
    out.push(a < 0 ? a + rank : a);
  }
  return out;
}

function makeSum(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const native = activeNative();
    const x = args.inputs.x;
    if (x !== undefined && prod(x.shape) === 0 && x.dtype !== "string") {
      // The stock kernel skips an empty input and returns uninitialised memory; a sum of nothing is 0.
      const out = stock(args) as tf.TensorInfo;
      (args.backend as unknown as WasmBackend).typedArrayFromHeap(out).fill(0);
      return out;
    }
    if (native === undefined || x === undefined || x.dtype !== "float32") return stock(args);
    const rank = x.shape.length;
    const attrs = (args.attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
    const axes = normalAxes(attrs.axis, rank);
    // Only the leading axes 0..r-1, listed in that order, with something left over: the stock kernel
    // sums those in row order after its transpose (another order of listing adds in another order,
    // and reductions over inner axes need no transpose, so the stock kernel is as fast there).
    const r = axes?.length ?? 0;
    if (axes === undefined || r === 0 || r >= rank || axes.some((a, i) => a !== i)) return stock(args);
    const backend = args.backend as unknown as WasmBackend;
    const rows = prod(x.shape.slice(0, r));
    const rest = x.shape.slice(r);
    const outShape = attrs.keepDims === true ? [...new Array<number>(r).fill(1), ...rest] : rest;
    const out = backend.makeOutput(outShape, "float32");
    const xOff = backend.dataIdMap.get(x.dataId)?.memoryOffset;
    const outOff = backend.dataIdMap.get(out.dataId)?.memoryOffset;
    if (xOff == null || outOff == null) throw new Error("Sum (wasm): a tensor has no wasm memory");
    native.sumRows(backend.wasm.HEAPU8.buffer, rows, prod(rest), xOff, outOff);
    return out;
  };
}

/** Handle returned by {@link registerWasmFastKernels}. */
export interface WasmFastKernelsHandle {
  /** Put the stock kernels back. */
  restore(): void;
}

let active: WasmFastKernelsHandle | null = null;

/**
 * Registers the sharing `Identity` and the leading-axes `Sum` for backend "wasm" (see the module
 * comment). Idempotent; requires `@tensorflow/tfjs-backend-wasm` to be imported.
 */
export function registerWasmFastKernels(): WasmFastKernelsHandle {
  if (active !== null) return active;
  const stock = ["Identity", "Sum"].map((name) => {
    const cfg = tf.getKernel(name, "wasm");
    if (cfg === undefined) throw new Error(`registerWasmFastKernels: import @tensorflow/tfjs-backend-wasm first (no wasm ${name} kernel)`);
    return cfg;
  });
  const [identity, sum] = stock as [tf.KernelConfig, tf.KernelConfig];
  tf.unregisterKernel("Identity", "wasm");
  tf.unregisterKernel("Sum", "wasm");
  tf.registerKernel({ ...identity, kernelFunc: makeIdentity(identity.kernelFunc) });
  tf.registerKernel({ ...sum, kernelFunc: makeSum(sum.kernelFunc) });
  const handle: WasmFastKernelsHandle = {
    restore() {
      if (active !== handle) return;
      for (const cfg of stock) {
        tf.unregisterKernel(cfg.kernelName, "wasm");
        tf.registerKernel(cfg);
      }
      active = null;
    },
  };
  active = handle;
  return handle;
}
