/**
 * Fused optimizer updates: Adam and SGD that update each variable (and Adam's two moment slots) in
 * one pass over the TensorFlow.js `wasm` backend's memory, without intermediate tensors.
 *
 * Why: stock `tf.train.adam` runs about a dozen small ops per variable per step, each allocating a
 * tensor; on small models (bench W1) that per-op overhead is a visible share of a training step.
 *
 * How: on the wasm backend, {@link FusedAdam} and {@link FusedSGD} read the gradient, the variable and
 * the slots where they lie in the wasm heap and write the new values back in one loop: the native
 * addon's C loop when it is built (src/backend/native.ts), else a JS loop over Float32Array views. Every
 * intermediate is rounded to float32 (`Math.fround`) in the same order as the stock ops, so the result
 * is the stock optimizer's, bit for bit where the wasm kernels are IEEE float32 (they are: add, mul,
 * div, sqrt are correctly rounded). A buffer is written in place only when no other tensor shares it
 * (the backend's refCount for its data id is 1), and its C++ id is then re-registered so XNNPACK
 * operators cached on it (packed weights) are rebuilt, as they are for stock's new tensors. A shared
 * buffer (e.g. a variable assigned a reshape of another tensor) gets a fresh buffer that is then
 * `assign`ed, so the other tensor keeps its values.
 * On any other backend, or for tensors that are not float32 on wasm, the same update runs as a
 * tidy-wrapped composite of tfjs ops, identical to the stock optimizers' code.
 *
 * Size threshold: the JS loop costs about 15-35 ns per element for Adam and 3-4 ns for SGD, while a
 * stock op costs a fixed ~10-20 µs plus a few ns per element (wasm SIMD kernels). So the loop wins
 * only for small variables. Measured with bench/fused-threshold.ts on the project's loaded 2-core
 * machine, one variable, fused-loop time / stock time: Adam 0.15 at 1k elements, 0.53 at 4k, 0.83
 * at 8k, 1.4 at 16k, 2.75 at 256k; SGD 0.31 at 1k, 0.66 at 2k, 1.24 at 4k, 5.6 at 256k. Variables
 * above `maxFusedElements` (Adam 8192, SGD 2048 by default) therefore take the stock ops (the same
 * composite, so the numbers are identical), and a fused optimizer is never slower than stock. The
 * native loop (about 1 ns per element) beats the stock ops at every size, so with the addon loaded
 * every variable is fused and the limit does not apply.
 *
 * State and semantics follow `tf.train.adam` / `tf.train.sgd` (tfjs 4.x): Adam's slots are kept by
 * position in the gradient list and created (zeros) at first sight even without a gradient; bias
 * correction uses accBeta1/accBeta2, float32 running products of beta1/beta2 updated once per
 * `applyGradients`; `getWeights()` is `[iterations, ...m, ...v]`; `setWeights` restores accBeta as
 * `pow(beta, iterations + 1)`; `learningRate` is a plain field read at every update.
 *
 * Caveat: this reaches into the wasm backend's internals (`dataIdMap`, `makeOutput`, the emscripten
 * module's `HEAPU8` and `tfjs.registerTensor` / `tfjs.disposeData`), which are stable in @tensorflow/tfjs-backend-wasm 4.x but not public API.
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "./native.js";
import type { WasmBackend } from "./wasm-internals.js";

/** A named tensor as optimizers take and return them (tfjs-core's `NamedTensor`, not re-exported by tfjs). */
export type NamedTensor = { name: string; tensor: tf.Tensor };

const fround = Math.fround;

// One whole-heap float view per backend, rebuilt only when the wasm memory grows (its buffer changes).
const heapViews = new WeakMap<object, Float32Array>();

function heapF32(b: WasmBackend): Float32Array {
  const buffer = b.wasm.HEAPU8.buffer;
  let view = heapViews.get(b);
  if (view === undefined || view.buffer !== buffer) {
    view = new Float32Array(buffer);
    heapViews.set(b, view);
  }
  return view;
}

/** The active backend if it is wasm with the internals this module relies on; otherwise undefined. */
function activeWasm(): WasmBackend | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const b = tf.backend() as unknown as Partial<WasmBackend>;
  if (b.wasm?.HEAPU8 === undefined || b.wasm.tfjs === undefined || b.dataIdMap === undefined || typeof b.makeOutput !== "function") return undefined;
  return b as WasmBackend;
}

/** Float32 element offset of a tensor's data in the wasm heap, or undefined if not float32 on wasm. */
function heapIndex(b: WasmBackend, t: tf.Tensor): number | undefined {
  const d = b.dataIdMap.get(t.dataId);
  if (d === undefined || d.dtype !== "float32" || t.dtype !== "float32" || d.memoryOffset == null) return undefined;
  return d.memoryOffset >>> 2;
}

/** Where one updated tensor is read from and written to; `fresh` when it needs its own buffer. */
interface Target {
  variable: tf.Variable;
  src: number;
  dst: number;
  fresh?: tf.TensorInfo;
}

/** Plan the write into `v`: in place when its buffer is not shared, else into a new buffer. */
function target(b: WasmBackend, v: tf.Variable, src: number): Target {
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
function commit(b: WasmBackend, t: Target): void {
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
function registered(owner: string, name: string): tf.Variable {
  const v = tf.engine().registeredVariables[name];
  if (v === undefined) throw new Error(`${owner}.applyGradients: no variable named "${name}" is registered with TensorFlow.js (disposed, or not a tf.Variable).`);
  return v;
}

function checkRate(owner: string, lr: unknown): number {
  if (typeof lr !== "number" || !Number.isFinite(lr)) throw new Error(`${owner}: learningRate must be a finite number, but got ${String(lr)}.`);
  return lr;
}

/** Gradient list in the order tfjs optimizers index their state: the array's order, or the map's keys. */
function gradientList(grads: tf.NamedTensorMap | NamedTensor[]): { name: string; tensor: tf.Tensor | null }[] {
  if (Array.isArray(grads)) return grads.map((g) => ({ name: g.name, tensor: g.tensor ?? null }));
  return Object.keys(grads).map((name) => ({ name, tensor: grads[name] ?? null }));
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
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

/**
 * Largest variable (elements) FusedAdam updates in its JS loop; bigger ones take the stock ops,
 * which are faster there (crossover measured at about 10-12k elements; see the header).
 */
export const FUSED_ADAM_MAX_ELEMENTS = 8192;
/** Same for FusedSGD (its stock update is only two ops, so the crossover is lower, about 3k). */
export const FUSED_SGD_MAX_ELEMENTS = 2048;

/**
 * Adam with tf.train.adam's exact arithmetic and state, fused into one pass per variable on wasm.
 * Drop-in for `tf.train.adam` (a `tf.Optimizer`): works with `JointTrainer` and optimizer groups.
 */
export class FusedAdam extends tf.Optimizer {
  /** Serialised as "Adam": config and weights have stock Adam's layout, so saved state loads into either. */
  static get className(): string {
    return "Adam";
  }

  /** Read at every update; change it between steps (schedules do) like stock Adam's field. */
  learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  /** Paths taken so far, per variable update. */
  readonly counts: FusedUpdateCounts = { inPlace: 0, copied: 0, composite: 0, large: 0 };
  /** Variables with more elements than this take the stock ops (faster for them; same numbers). */
  maxFusedElements = FUSED_ADAM_MAX_ELEMENTS;

  // Float32 running products beta^t, kept as JS numbers rounded exactly like stock's scalar variables.
  private accBeta1: number;
  private accBeta2: number;
  private firstMoment: { originalName: string; variable: tf.Variable }[] = [];
  private secondMoment: { originalName: string; variable: tf.Variable }[] = [];
  private disposed = false;

  /** Same arguments as `tf.train.adam`; `epsilon` null or undefined means the backend's epsilon. */
  constructor(learningRate: number, beta1: number, beta2: number, epsilon: number | null = null) {
    super();
    this.learningRate = checkRate("FusedAdam", learningRate);
    for (const [label, b] of [["beta1", beta1], ["beta2", beta2]] as const) {
      if (typeof b !== "number" || !(b >= 0 && b < 1)) throw new Error(`FusedAdam: ${label} must be a number in [0, 1), but got ${String(b)}.`);
    }
    if (epsilon != null && (typeof epsilon !== "number" || !(epsilon >= 0))) throw new Error(`FusedAdam: epsilon must be a number >= 0, but got ${String(epsilon)}.`);
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.epsilon = epsilon ?? tf.backend().epsilon();
    this.accBeta1 = fround(beta1);
    this.accBeta2 = fround(beta2);
  }

  /** One Adam update of each named variable; gradients are not disposed (as with stock optimizers). */
  applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    if (this.disposed) throw new Error("FusedAdam.applyGradients: this optimizer was disposed; make a new one.");
    const lr = checkRate("FusedAdam", this.learningRate);
    const list = gradientList(variableGradients);
    const wasm = activeWasm();
    const oneMinusAcc1 = fround(1 - this.accBeta1);
    const oneMinusAcc2 = fround(1 - this.accBeta2);
    list.forEach(({ name, tensor: grad }, i) => {
      const value = registered("FusedAdam", name);
      // Slots are created at first sight even without a gradient, by position, as stock Adam does.
      this.firstMoment[i] ??= { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
      this.secondMoment[i] ??= { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
      if (grad == null) return;
      const m = this.firstMoment[i]!.variable;
      const v = this.secondMoment[i]!.variable;
      // The size limit is for the JS loop; the native addon's loop beats the stock ops at every size.
      if (value.size > this.maxFusedElements && (wasm === undefined || activeNative() === undefined)) {
        this.composite(value, grad, m, v, lr, oneMinusAcc1, oneMinusAcc2);
        this.counts.large++;
        return;
      }
      if (wasm !== undefined && this.fused(wasm, value, grad, m, v, lr, oneMinusAcc1, oneMinusAcc2)) return;
      this.composite(value, grad, m, v, lr, oneMinusAcc1, oneMinusAcc2);
      this.counts.composite++;
    });
    this.accBeta1 = fround(this.accBeta1 * fround(this.beta1));
    this.accBeta2 = fround(this.accBeta2 * fround(this.beta2));
    this.incrementIterations();
  }

  /** The one-pass update on the wasm heap; false (nothing touched) when a tensor does not qualify. */
  private fused(b: WasmBackend, value: tf.Variable, grad: tf.Tensor, m: tf.Variable, v: tf.Variable, lr: number, oma1: number, oma2: number): boolean {
    if (!sameShape(grad.shape, value.shape) || !sameShape(m.shape, value.shape) || !sameShape(v.shape, value.shape)) return false;
    const gs = heapIndex(b, grad);
    const xs = heapIndex(b, value);
    const ms = heapIndex(b, m);
    const vs = heapIndex(b, v);
    if (gs === undefined || xs === undefined || ms === undefined || vs === undefined) return false;
    const tx = target(b, value, xs);
    const tm = target(b, m, ms);
    const tv = target(b, v, vs);
    const n = value.size;
    const b1 = fround(this.beta1);
    const c1 = fround(1 - this.beta1);
    const b2 = fround(this.beta2);
    const c2 = fround(1 - this.beta2);
    const eps = fround(this.epsilon);
    const nlr = fround(-lr);
    const xd = tx.dst, md = tm.dst, vd = tv.dst;
    const native = activeNative();
    // Fetched after any allocation above, which may have grown (replaced) the heap buffer.
    if (native !== undefined) {
      native.adam(b.wasm.HEAPU8.buffer, n, xs * 4, gs * 4, ms * 4, vs * 4, xd * 4, md * 4, vd * 4, b1, c1, b2, c2, oma1, oma2, eps, nlr);
    } else {
      this.jsLoop(heapF32(b), n, gs, xs, ms, vs, xd, md, vd, b1, c1, b2, c2, oma1, oma2, eps, nlr);
    }
    commit(b, tx);
    commit(b, tm);
    commit(b, tv);
    if (tx.fresh || tm.fresh || tv.fresh) this.counts.copied++;
    else this.counts.inPlace++;
    return true;
  }

  /** The update in JavaScript, each intermediate rounded to float32 in stock's order. */
  private jsLoop(
    H: Float32Array, n: number, gs: number, xs: number, ms: number, vs: number, xd: number, md: number, vd: number,
    b1: number, c1: number, b2: number, c2: number, oma1: number, oma2: number, eps: number, nlr: number,
  ): void {
    for (let k = 0; k < n; k++) {
      const g = H[gs + k]!;
      const mNew = fround(fround(H[ms + k]! * b1) + fround(g * c1));
      const vNew = fround(fround(H[vs + k]! * b2) + fround(fround(g * g) * c2));
      const mHat = fround(mNew / oma1);
      const vHat = fround(vNew / oma2);
      const step = fround(fround(mHat / fround(fround(Math.sqrt(vHat)) + eps)) * nlr);
      H[md + k] = mNew;
      H[vd + k] = vNew;
      H[xd + k] = step + H[xs + k]!;
    }
  }

  /** Stock Adam's ops for one variable, for backends other than wasm. */
  private composite(value: tf.Variable, grad: tf.Tensor, m: tf.Variable, v: tf.Variable, lr: number, oma1: number, oma2: number): void {
    tf.tidy(() => {
      const mNew = tf.add(tf.mul(m, this.beta1), tf.mul(grad, 1 - this.beta1));
      const vNew = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(grad), 1 - this.beta2));
      const mHat = tf.div(mNew, oma1);
      const vHat = tf.div(vNew, oma2);
      m.assign(mNew);
      v.assign(vNew);
      value.assign(tf.add(tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), this.epsilon)), -lr), value));
    });
  }

  /** Frees the moment slots; the optimizer cannot be used afterwards. */
  override dispose(): void {
    tf.dispose(this.firstMoment.map((s) => s.variable));
    tf.dispose(this.secondMoment.map((s) => s.variable));
    this.firstMoment = [];
    this.secondMoment = [];
    this.disposed = true;
  }

  /** `[iterations, ...first moments, ...second moments]`, the slots themselves, as stock Adam. */
  override async getWeights(): Promise<NamedTensor[]> {
    const slots = [...this.firstMoment, ...this.secondMoment];
    return [await this.saveIterations(), ...slots.map((s) => ({ name: s.originalName, tensor: s.variable }))];
  }

  /** Restore from `getWeights()` output (this class's or stock Adam's); old slots are freed. */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    if (rest.length % 2 !== 0) throw new Error(`FusedAdam.setWeights: expected as many second moments as first moments after the iterations entry, but got ${rest.length} tensors.`);
    // Same float32 pow as stock setWeights, so the bias correction resumes identically.
    const [a1, a2] = tf.tidy(() => [tf.pow(this.beta1, this.iterations_ + 1), tf.pow(this.beta2, this.iterations_ + 1)].map((t) => t.dataSync()[0] as number));
    this.accBeta1 = a1!;
    this.accBeta2 = a2!;
    tf.dispose([...this.firstMoment, ...this.secondMoment].map((s) => s.variable));
    const half = rest.length / 2;
    this.firstMoment = rest.slice(0, half).map((w) => ({ originalName: w.name, variable: w.tensor.variable(false) }));
    this.secondMoment = rest.slice(half).map((w) => ({ originalName: w.name, variable: w.tensor.variable(false) }));
  }

  /** Stock Adam's config keys. */
  getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon };
  }

  /** Inverse of {@link FusedAdam.getConfig}. */
  static override fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T {
    return new cls(config["learningRate"], config["beta1"], config["beta2"], config["epsilon"]);
  }
}

/**
 * Plain SGD (`x -= lr * g`) with tf.train.sgd's float32 arithmetic, in place on wasm memory.
 * `learningRate` is read at every update; `setLearningRate` is kept for stock SGD's callers.
 */
export class FusedSGD extends tf.Optimizer {
  /** Serialised as "SGD": same config as stock SGD. */
  static get className(): string {
    return "SGD";
  }

  /** Read at every update. */
  learningRate: number;
  /** Paths taken so far, per variable update. */
  readonly counts: FusedUpdateCounts = { inPlace: 0, copied: 0, composite: 0, large: 0 };
  /** Variables with more elements than this take the stock ops (faster for them; same numbers). */
  maxFusedElements = FUSED_SGD_MAX_ELEMENTS;

  /** Same argument as `tf.train.sgd`. */
  constructor(learningRate: number) {
    super();
    this.learningRate = checkRate("FusedSGD", learningRate);
  }

  /** Same as assigning `learningRate` (stock SGD caches `-lr` and needs this call; here either works). */
  setLearningRate(learningRate: number): void {
    this.learningRate = checkRate("FusedSGD", learningRate);
  }

  /** One SGD update of each named variable; gradients are not disposed. */
  applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const lr = checkRate("FusedSGD", this.learningRate);
    const wasm = activeWasm();
    for (const { name, tensor: grad } of gradientList(variableGradients)) {
      if (grad == null) continue;
      const value = registered("FusedSGD", name);
      const large = value.size > this.maxFusedElements && (wasm === undefined || activeNative() === undefined);
      if (!large && wasm !== undefined && this.fused(wasm, value, grad, lr)) continue;
      tf.tidy(() => value.assign(tf.add(tf.mul(-lr, grad), value)));
      if (large) this.counts.large++;
      else this.counts.composite++;
    }
    this.incrementIterations();
  }

  private fused(b: WasmBackend, value: tf.Variable, grad: tf.Tensor, lr: number): boolean {
    if (!sameShape(grad.shape, value.shape)) return false;
    const gs = heapIndex(b, grad);
    const xs = heapIndex(b, value);
    if (gs === undefined || xs === undefined) return false;
    const tx = target(b, value, xs);
    const nlr = fround(-lr);
    const xd = tx.dst;
    const n = value.size;
    const native = activeNative();
    if (native !== undefined) {
      native.sgd(b.wasm.HEAPU8.buffer, n, xs * 4, gs * 4, xd * 4, nlr);
    } else {
      const H = heapF32(b);
      for (let k = 0; k < n; k++) H[xd + k] = fround(nlr * H[gs + k]!) + H[xs + k]!;
    }
    commit(b, tx);
    if (tx.fresh) this.counts.copied++;
    else this.counts.inPlace++;
    return true;
  }

  /** `[iterations]`, as stock SGD. */
  override async getWeights(): Promise<NamedTensor[]> {
    return [await this.saveIterations()];
  }

  /** Accepts `[iterations]` only, as stock SGD. */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    if (rest.length !== 0) throw new Error(`FusedSGD.setWeights: SGD has no weights besides the iterations count, but got ${rest.length} more (${rest.map((w) => w.name).join(", ")}).`);
  }

  /** Stock SGD's config keys. */
  getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate };
  }

  /** Inverse of {@link FusedSGD.getConfig}. */
  static override fromConfig<T extends tf.serialization.Serializable>(cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T {
    return new cls(config["learningRate"]);
  }
}

/** Like `tf.train.adam(learningRate, beta1, beta2, epsilon)`, fused on wasm. */
export function fusedAdam(learningRate = 0.001, beta1 = 0.9, beta2 = 0.999, epsilon: number | null = null): FusedAdam {
  return new FusedAdam(learningRate, beta1, beta2, epsilon);
}

/** Like `tf.train.sgd(learningRate)`, fused on wasm. */
export function fusedSgd(learningRate: number): FusedSGD {
  return new FusedSGD(learningRate);
}
