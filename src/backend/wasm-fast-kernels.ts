/**
 * Cheaper kernels for the TensorFlow.js `wasm` backend, found by timing every kernel of the bench
 * workloads' training steps (W2: 152 kernel calls a step; W3: 190).
 *
 * - `Identity` shares its input's buffer (one more reference) instead of copying it. The engine runs
 *   Identity to keep every tensor a gradient will need (`saveTensorsForBackwardMode` clones them),
 *   so a stock wasm step copied 36 tensors, 7 of them [1024, 512], only to read them once. The `cpu`
 *   backend's Identity shares the buffer the same way. Sharing is safe because tfjs kernels never
 *   write into their inputs; jointly's fused optimizers write in place only into a buffer with a
 *   reference count of 1 and otherwise into a new one (src/backend/fused-optimizers.ts).
 * - `Cast` to the tensor's own dtype shares the buffer too (relu's gradient casts a float32 mask to
 *   float32: a copy per layer per step).
 * - `Sum` over leading axes (the bias gradient of every Dense layer: dy summed over the batch) runs
 *   in the native addon as a row-order column sum, without the transpose the stock kernel makes first
 *   (4.4 ms of a 42 ms W2 step went to two such sums). The order of additions is the stock kernel's
 *   after its transpose, so the result is the same. A sum over an empty tensor is zeros here (the
 *   stock kernel returns uninitialised memory for it).
 * - `GatherV2` on axis 0 (embedding lookups) copies whole rows natively: the stock kernel took 4.3 ms
 *   to gather 1024 rows of a 10000x64 table (bench W3). An index outside the table is an error that
 *   names it (the stock wasm kernel reads outside the table instead).
 * - `Concat` and `SplitV` (concatenated embeddings and their gradient) copy row blocks natively
 *   instead of a JavaScript loop of row copies (2.1 ms of SplitV in a W3 step).
 * The native ones need the addon (src/backend/native.ts) and take float32 / int32 tensors; without
 * it, or for anything else, the stock kernel runs.
 *
 * Caveat: relies on the wasm backend's `dataIdMap`, `incRef`, `makeOutput` and heap, which are stable
 * in @tensorflow/tfjs-backend-wasm 4.x but not public API.
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "./native.js";
import { byteOffset, prod, type WasmBackend } from "./wasm-internals.js";

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

/** float32 and int32: the 4-byte types the native copies handle. */
const fourBytes = (dtype: tf.DataType): boolean => dtype === "float32" || dtype === "int32";

function makeCast(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x;
    const dtype = (args.attrs as { dtype?: tf.DataType } | undefined)?.dtype;
    // A cast to its own dtype (relu's gradient casts step(x), already float32) is the same values.
    if (x === undefined || dtype !== x.dtype || x.dtype === "string" || x.dtype === "complex64") return stock(args);
    (args.backend as unknown as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  };
}

function makeGather(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const native = activeNative();
    const { x, indices } = args.inputs;
    const attrs = (args.attrs ?? {}) as { axis?: number; batchDims?: number };
    if (native === undefined || x === undefined || indices === undefined || !fourBytes(x.dtype) || indices.dtype !== "int32") return stock(args);
    const rank = x.shape.length;
    const axis = (attrs.axis ?? 0) < 0 ? (attrs.axis ?? 0) + rank : (attrs.axis ?? 0);
    if (axis !== 0 || (attrs.batchDims ?? 0) !== 0 || rank === 0) return stock(args);
    const backend = args.backend as unknown as WasmBackend;
    const rowElems = prod(x.shape.slice(1));
    const n = prod(indices.shape);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    if (n === 0 || rowElems === 0) return out;
    const bad = native.gatherRows(backend.wasm.HEAPU8.buffer, n, rowElems, x.shape[0]!, byteOffset(backend, x), byteOffset(backend, indices), byteOffset(backend, out));
    if (bad >= 0) {
      const value = (backend.typedArrayFromHeap(indices) as Int32Array)[bad];
      // No tensor was made from `out` yet: free its buffer directly.
      backend.disposeData(out.dataId);
      throw new Error(`GatherV2: index ${value} (at position ${bad} of the indices) is not in [0, ${x.shape[0]! - 1}] for a tensor of shape [${x.shape}].`);
    }
    return out;
  };
}

function makeConcat(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const native = activeNative();
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    if (native === undefined || !Array.isArray(inputs) || inputs.length < 2) return stock(args);
    const dtype = inputs[0]!.dtype;
    if (!fourBytes(dtype) || inputs.some((t) => t.dtype !== dtype)) return stock(args);
    const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, inputs[0]!.shape)[0]!;
    const shapes = inputs.map((t) => t.shape);
    tf.backend_util.assertParamsConsistent(shapes, axis);
    const outShape = tf.backend_util.computeOutShape(shapes, axis);
    const backend = args.backend as unknown as WasmBackend;
    const out = backend.makeOutput(outShape, dtype);
    // Rows = the axes before `axis`; each input contributes a block of its inner size to every row.
    const rows = prod(outShape.slice(0, axis));
    const width = prod(outShape.slice(axis));
    if (rows === 0 || width === 0) return out;
    const dst = byteOffset(backend, out);
    const heap = backend.wasm.HEAPU8.buffer;
    let col = 0;
    for (const t of inputs) {
      const w = prod(t.shape.slice(axis));
      if (w > 0) native.copy2d(heap, rows, w, byteOffset(backend, t), w, dst + col * 4, width);
      col += w;
    }
    return out;
  };
}

function makeSplitV(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const native = activeNative();
    const x = args.inputs.x;
    if (native === undefined || x === undefined || !fourBytes(x.dtype)) return stock(args);
    const attrs = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, attrs.numOrSizeSplits, axis);
    const backend = args.backend as unknown as WasmBackend;
    const rows = prod(x.shape.slice(0, axis));
    const inner = prod(x.shape.slice(axis + 1));
    const width = prod(x.shape.slice(axis));
    const outs = sizes.map((s) => backend.makeOutput(x.shape.map((d, i) => (i === axis ? s : d)), x.dtype));
    // Fetched after every makeOutput: an allocation may replace the heap's buffer.
    const heap = backend.wasm.HEAPU8.buffer;
    const src = byteOffset(backend, x);
    let col = 0;
    sizes.forEach((s, i) => {
      const w = s * inner;
      if (rows > 0 && w > 0) native.copy2d(heap, rows, w, src + col * 4, width, byteOffset(backend, outs[i]!), w);
      col += w;
    });
    return outs;
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
  const makers: Record<string, (stock: tf.KernelFunc) => tf.KernelFunc> = {
    Identity: makeIdentity,
    Cast: makeCast,
    Sum: makeSum,
    GatherV2: makeGather,
    Concat: makeConcat,
    SplitV: makeSplitV,
  };
  const stock = Object.keys(makers).map((name) => {
    const cfg = tf.getKernel(name, "wasm");
    if (cfg === undefined) throw new Error(`registerWasmFastKernels: import @tensorflow/tfjs-backend-wasm first (no wasm ${name} kernel)`);
    return cfg;
  });
  for (const cfg of stock) {
    tf.unregisterKernel(cfg.kernelName, "wasm");
    tf.registerKernel({ ...cfg, kernelFunc: makers[cfg.kernelName]!(cfg.kernelFunc) });
  }
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
