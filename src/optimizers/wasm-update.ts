/**
 * What the fused optimizers (./fused-adam.ts, ./fused-sgd.ts) share: reading a variable, its
 * gradient and its slots where they lie in the TensorFlow.js `wasm` backend's heap, and writing the
 * new values back without intermediate tensors.
 *
 * Why: stock `tf.train.adam` runs about a dozen small ops per variable per step, each allocating a
 * tensor; on small models (bench W1) that per-op overhead is a visible share of a training step.
 *
 * How: the update reads and writes the heap in one loop (the native addon's C loop when it is built,
 * src/backend/native.ts, else a JS loop over Float32Array views). A buffer is written in place only
 * when no other tensor shares it (the backend's refCount for its data id is 1), and its C++ id is
 * then re-registered so XNNPACK operators cached on it (packed weights) are rebuilt, as they are for
 * stock's new tensors. A shared buffer (e.g. a variable assigned a reshape of another tensor, or a
 * clone made by the sharing Identity kernel) gets a fresh buffer that is then `assign`ed, so the
 * other tensor keeps its values. On any other backend, or for tensors that are not float32 on wasm,
 * the optimizers run the stock optimizers' composite of tfjs ops instead.
 *
 * Size threshold: the JS loop costs about 15-35 ns per element for Adam and 3-4 ns for SGD, while a
 * stock op costs a fixed ~10-20 µs plus a few ns per element (wasm SIMD kernels). So the loop wins
 * only for small variables; each optimizer has its measured limit (`maxFusedElements`). The native
 * loop (about 1 ns per element) beats the stock ops at every size, so with the addon loaded every
 * variable is fused and the limit does not apply.
 *
 * Caveat: this reaches into the wasm backend's internals (`dataIdMap`, `makeOutput`, the emscripten
 * module's `HEAPU8` and `tfjs.registerTensor` / `tfjs.disposeData`; src/backend/wasm-internals.ts),
 * which are stable in @tensorflow/tfjs-backend-wasm 4.x but not public API.
 */
import * as tf from "@tensorflow/tfjs";
import { wasmInternalsProblem, type WasmBackend } from "../backend/wasm-internals.js";

/** A named tensor as optimizers take and return them (tfjs-core's `NamedTensor`, not re-exported by tfjs). */
export type NamedTensor = { name: string; tensor: tf.Tensor };

// One whole-heap float view per backend, rebuilt only when the wasm memory grows (its buffer changes).
const heapViews = new WeakMap<object, Float32Array>();

export function heapF32(b: WasmBackend): Float32Array {
  const buffer = b.wasm.HEAPU8.buffer;
  let view = heapViews.get(b);
  if (view === undefined || view.buffer !== buffer) {
    view = new Float32Array(buffer);
    heapViews.set(b, view);
  }
  return view;
}

/**
 * The active backend if it is wasm with the internals this module relies on; otherwise undefined
 * (also for a tfjs-backend-wasm version whose internals jointly does not support: the stock composite then).
 */
export function activeWasm(): WasmBackend | undefined {
  if (tf.getBackend() !== "wasm" || wasmInternalsProblem() !== undefined) return undefined;
  const b = tf.backend() as unknown as Partial<WasmBackend>;
  if (b.wasm?.HEAPU8 === undefined || b.wasm.tfjs === undefined || b.dataIdMap === undefined || typeof b.makeOutput !== "function") return undefined;
  return b as WasmBackend;
}

/** Float32 element offset of a tensor's data in the wasm heap, or undefined if not float32 on wasm. */
export function heapIndex(b: WasmBackend, t: tf.Tensor): number | undefined {
  const d = b.dataIdMap.get(t.dataId);
  if (d === undefined || d.dtype !== "float32" || t.dtype !== "float32" || d.memoryOffset == null) return undefined;
  return d.memoryOffset >>> 2;
}

/** Where one updated tensor is read from and written to; `fresh` when it needs its own buffer. */
export interface Target {
  variable: tf.Variable;
  src: number;
  dst: number;
  fresh?: tf.TensorInfo;
}

/** Plan the write into `v`: in place when its buffer is not shared, else into a new buffer. */
export function target(b: WasmBackend, v: tf.Variable, src: number): Target {
  const d = b.dataIdMap.get(v.dataId);
  if (d !== undefined && d.refCount <= 1) return { variable: v, src, dst: src };
  const fresh = b.makeOutput(v.shape.slice(), "float32");
  const off = b.dataIdMap.get(fresh.dataId)?.memoryOffset;
  if (off == null) throw new Error(`fused optimizer: the wasm backend gave no memory for a new buffer of shape [${v.shape}]`);
  return { variable: v, src, dst: off >>> 2, fresh };
}

/**
 * Publish a target's new values. In place: re-register the buffer with the C++ side, because its
 * matmul/conv kernels cache XNNPACK operators holding packed copies of weights and biases keyed by
 * buffer id (dropped only when the id is disposed), and would otherwise go on using the old values.
 * New buffer: make it the variable's value (the old, shared buffer stays with its other owners).
 */
export function commit(b: WasmBackend, t: Target): void {
  if (t.fresh === undefined) {
    const d = b.dataIdMap.get(t.variable.dataId);
    if (d === undefined || d.memoryOffset == null) throw new Error(`fused optimizer: variable "${t.variable.name}" lost its wasm buffer during the update`);
    b.wasm.tfjs.disposeData(d.id);
    b.wasm.tfjs.registerTensor(d.id, t.variable.size, d.memoryOffset);
    return;
  }
  const tensor = tf.engine().makeTensorFromTensorInfo(t.fresh, b as unknown as tf.KernelBackend);
  t.variable.assign(tensor);
  tensor.dispose();
}

/** Variable named `name` in the engine's registry; throws naming the optimizer and the name. */
export function registered(owner: string, name: string): tf.Variable {
  const v = tf.engine().registeredVariables[name];
  if (v === undefined) throw new Error(`${owner}.applyGradients: no variable named "${name}" is registered with TensorFlow.js (disposed, or not a tf.Variable).`);
  return v;
}

export function checkRate(owner: string, lr: unknown): number {
  if (typeof lr !== "number" || !Number.isFinite(lr)) throw new Error(`${owner}: learningRate must be a finite number, but got ${String(lr)}.`);
  return lr;
}

/** Gradient list in the order tfjs optimizers index their state: the array's order, or the map's keys. */
export function gradientList(grads: tf.NamedTensorMap | NamedTensor[]): { name: string; tensor: tf.Tensor | null }[] {
  if (Array.isArray(grads)) return grads.map((g) => ({ name: g.name, tensor: g.tensor ?? null }));
  return Object.keys(grads).map((name) => ({ name, tensor: grads[name] ?? null }));
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** How many variable updates took each path (cumulative); lets callers and tests see what ran. */
export interface FusedUpdateCounts {
  /** Updated in place in wasm memory. */
  inPlace: number;
  /** Updated in the same pass, but into new buffers because a target's memory was shared. */
  copied: number;
  /** Updated with the composite tfjs ops (not wasm, not float32, or a broadcast gradient). */
  composite: number;
  /** Updated with the composite (stock) ops because the variable has more than `maxFusedElements` elements. */
  large: number;
}
