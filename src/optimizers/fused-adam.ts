/**
 * Adam that updates each variable and its two moment slots in one pass over the `wasm` backend's
 * memory (./wasm-update.ts), with `tf.train.adam`'s arithmetic: every intermediate is rounded to
 * float32 (`Math.fround`) in the same order as the stock ops, so the result is the stock optimizer's,
 * bit for bit where the wasm kernels are IEEE float32 (they are: add, mul, div, sqrt are correctly
 * rounded). On any other backend the same update runs as a tidy-wrapped composite of tfjs ops,
 * identical to the stock optimizer's code.
 *
 * Size threshold (the JS loop without the addon): measured with bench/fused-threshold.ts on the
 * project's loaded 2-core machine, one variable, fused-loop time / stock time: 0.15 at 1k elements,
 * 0.53 at 4k, 0.83 at 8k, 1.4 at 16k, 2.75 at 256k. Variables above `maxFusedElements` (8192 by
 * default) therefore take the stock ops (the same composite, so the numbers are identical), and the
 * fused optimizer is never slower than stock.
 *
 * State and semantics follow `tf.train.adam` (tfjs 4.x): the slots are kept by position in the
 * gradient list and created (zeros) at first sight even without a gradient; bias correction uses
 * accBeta1/accBeta2, float32 running products of beta1/beta2 updated once per `applyGradients`;
 * `getWeights()` is `[iterations, ...m, ...v]`; `setWeights` restores accBeta as
 * `pow(beta, iterations + 1)`; `learningRate` is a plain field read at every update.
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "../backend/native.js";
import type { WasmBackend } from "../backend/wasm-internals.js";
import { activeWasm, checkRate, commit, gradientList, heapF32, heapIndex, registered, sameShape, target, type FusedUpdateCounts, type NamedTensor } from "./wasm-update.js";

const fround = Math.fround;

/**
 * Largest variable (elements) FusedAdam updates in its JS loop; bigger ones take the stock ops,
 * which are faster there (crossover measured at about 10-12k elements; see the module comment).
 */
export const FUSED_ADAM_MAX_ELEMENTS = 8192;
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

/** Like `tf.train.adam(learningRate, beta1, beta2, epsilon)`, fused on wasm. */
export function fusedAdam(learningRate = 0.001, beta1 = 0.9, beta2 = 0.999, epsilon: number | null = null): FusedAdam {
  return new FusedAdam(learningRate, beta1, beta2, epsilon);
}
