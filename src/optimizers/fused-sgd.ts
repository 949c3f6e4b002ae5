/**
 * Plain SGD that updates each variable in one pass over the `wasm` backend's memory
 * (./wasm-update.ts), with `tf.train.sgd`'s float32 arithmetic, so the same numbers. On any other
 * backend the same update runs as the stock optimizer's composite of tfjs ops.
 *
 * Size threshold (the JS loop without the addon): fused-loop time / stock time, measured with
 * bench/fused-threshold.ts: 0.31 at 1k elements, 0.66 at 2k, 1.24 at 4k, 5.6 at 256k; variables above
 * `maxFusedElements` (2048 by default) take the stock ops.
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative } from "../backend/native.js";
import type { WasmBackend } from "../backend/wasm-internals.js";
import { activeWasm, checkRate, commit, gradientList, heapF32, heapIndex, registered, sameShape, target, type FusedUpdateCounts, type NamedTensor } from "./wasm-update.js";

const fround = Math.fround;

/** Largest variable (elements) FusedSGD updates in its JS loop (its stock update is only two ops, so the crossover is lower, about 3k). */
export const FUSED_SGD_MAX_ELEMENTS = 2048;

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

/** Like `tf.train.sgd(learningRate)`, fused on wasm. */
export function fusedSgd(learningRate: number): FusedSGD {
  return new FusedSGD(learningRate);
}
