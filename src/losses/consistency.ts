/**
 * Consistency losses between two networks' outputs `a` and `b` (same shape, one row per example):
 * an auxiliary term that couples models without sharing weights. Each returns the mean over rows
 * (over rows whose mask is 1 when a mask is given), and can stop the gradient into one side so that
 * only the other model is pulled towards it (a teacher/student set-up).
 *
 * Seed 003 adds `0.1 * |a - b|` to the loss without reducing it to a scalar; seed 000 compares the
 * outputs with a plain MSE only. Here every term is a validated scalar, with a choice of distance.
 */
import * as tf from "@tensorflow/tfjs";
import { maskedMean } from "./per-task.js";

/** (a, b, mask?) => scalar consistency loss. */
export type ConsistencyFn = (a: tf.Tensor, b: tf.Tensor, mask?: tf.Tensor) => tf.Scalar;

/** Which side receives no gradient: `"a"`, `"b"`, or `"none"` (default: both sides are trained). */
export type StopSide = "a" | "b" | "none";

export interface ConsistencyOptions {
  /** Treat this side as a constant target (its gradient is zero). Default `"none"`. */
  stopGradient?: StopSide;
}

export interface KLOptions extends ConsistencyOptions {
  /** Whether `a` and `b` hold logits (softmax applied here) or probability rows. Required: guessing is a silent bug. */
  from: "logits" | "probabilities";
  /** Average KL(a‖b) and KL(b‖a) instead of KL(a‖b) alone. Default false. */
  symmetric?: boolean;
  /** Floor for probabilities before the log (only with `from: "probabilities"`). Default 1e-7. */
  epsilon?: number;
}

export interface CosineOptions extends ConsistencyOptions {
  /** Floor for the product of the two norms, so a zero row gives cos = 0 rather than NaN. Default 1e-8. */
  epsilon?: number;
}

// The identity forward with a zero backward: tfjs has no tf.stopGradient, so detach through customGrad.
const detach = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor),
}));

/**
 * The same values as `x`, with no gradient flowing back into `x` (TensorFlow's `stop_gradient`,
 * PyTorch's `detach`), built with `tf.customGrad` because TensorFlow.js has no such op.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return detach(x) as T;
}

function checkPair(a: tf.Tensor, b: tf.Tensor, loss: string, minRank = 1) {
  if (!(a instanceof tf.Tensor) || !(b instanceof tf.Tensor)) throw new Error(`${loss}: a and b must be tensors.`);
  if (a.shape.join() !== b.shape.join()) {
    throw new Error(`${loss}: a has shape [${a.shape}] but b has shape [${b.shape}]; the two outputs must have the same shape.`);
  }
  if (a.rank < minRank) {
    throw new Error(`${loss}: the outputs need rank >= ${minRank} (rows × values), but have shape [${a.shape}].`);
  }
}

function checkStop(side: StopSide | undefined, loss: string): StopSide {
  const s = side ?? "none";
  if (s !== "a" && s !== "b" && s !== "none") throw new Error(`${loss}: stopGradient must be "a", "b" or "none", but got ${JSON.stringify(side)}.`);
  return s;
}

function sides(a: tf.Tensor, b: tf.Tensor, stop: StopSide): [tf.Tensor, tf.Tensor] {
  return [stop === "a" ? stopGradient(a) : a, stop === "b" ? stopGradient(b) : b];
}

/** Mean over every axis but the first: one value per row. */
function perRow(t: tf.Tensor): tf.Tensor1D {
  return (t.rank <= 1 ? t : tf.mean(t, Array.from({ length: t.rank - 1 }, (_, i) => i + 1))) as tf.Tensor1D;
}

/** Mean squared difference between `a` and `b` (per row, then over rows). */
export function consistencyMSE(options: ConsistencyOptions = {}): ConsistencyFn {
  const stop = checkStop(options.stopGradient, "consistencyMSE");
  return (a, b, mask) =>
    tf.tidy(() => {
      checkPair(a, b, "consistencyMSE");
      const [x, y] = sides(a, b, stop);
      return maskedMean(perRow(tf.squaredDifference(x, y)), mask);
    });
}

/** Mean absolute difference between `a` and `b` (per row, then over rows); its gradient is 0 where they agree. */
export function consistencyMAE(options: ConsistencyOptions = {}): ConsistencyFn {
  const stop = checkStop(options.stopGradient, "consistencyMAE");
  return (a, b, mask) =>
    tf.tidy(() => {
      checkPair(a, b, "consistencyMAE");
      const [x, y] = sides(a, b, stop);
      const d = tf.sub(x, y);
      // d·sign(d) rather than tf.abs: tfjs's abs has gradient −1 at 0, so agreeing outputs would still be pushed.
      return maskedMean(perRow(tf.mul(d, tf.sign(d))), mask);
    });
}

/**
 * Kullback-Leibler divergence KL(P_a ‖ P_b) = Σ p_a·(log p_a − log p_b) over the last axis, where
 * each row of `a` and `b` is a distribution: logits (`from: "logits"`, softmax taken here with a
 * stable log-softmax) or probabilities (`from: "probabilities"`, floored at `epsilon` before the log).
 * `a` is the reference distribution; `symmetric: true` averages both directions. For a teacher `a`
 * and a student `b`, use `stopGradient: "a"`.
 */
export function consistencyKL(options: KLOptions): ConsistencyFn {
  const name = "consistencyKL";
  if (!options || (options.from !== "logits" && options.from !== "probabilities")) {
    throw new Error(`${name}: say whether the outputs are "logits" or "probabilities" with { from }, got ${JSON.stringify(options?.from)}.`);
  }
  const stop = checkStop(options.stopGradient, name);
  const eps = options.epsilon ?? 1e-7;
  if (!(eps > 0 && eps < 1)) throw new Error(`${name}: epsilon must be in (0, 1), but got ${eps}.`);
  const logProbs = (t: tf.Tensor) => (options.from === "logits" ? tf.logSoftmax(t) : tf.log(tf.clipByValue(t, eps, 1)));
  return (a, b, mask) =>
    tf.tidy(() => {
      checkPair(a, b, name, 2);
      const [x, y] = sides(a, b, stop);
      const la = logProbs(x);
      const lb = logProbs(y);
      // KL per distribution (last axis), then mean over any middle axes: one value per row.
      const kl = (lp: tf.Tensor, lq: tf.Tensor) => perRow(tf.sum(tf.mul(tf.exp(lp), tf.sub(lp, lq)), -1));
      const row = options.symmetric ? tf.mul(0.5, tf.add(kl(la, lb), kl(lb, la))) : kl(la, lb);
      return maskedMean(row as tf.Tensor1D, mask);
    });
}

/**
 * Cosine distance 1 − cos(a_i, b_i) per row (over the last axis; middle axes averaged), then the
 * mean over rows. A zero row has cos = 0 (distance 1) instead of NaN.
 */
export function consistencyCosine(options: CosineOptions = {}): ConsistencyFn {
  const name = "consistencyCosine";
  const stop = checkStop(options.stopGradient, name);
  const eps = options.epsilon ?? 1e-8;
  if (!(eps > 0) || !Number.isFinite(eps)) throw new Error(`${name}: epsilon must be a positive finite number, but got ${eps}.`);
  return (a, b, mask) =>
    tf.tidy(() => {
      checkPair(a, b, name, 2);
      const [x, y] = sides(a, b, stop);
      const dot = tf.sum(tf.mul(x, y), -1);
      // One sqrt of the clipped product: sqrt(0) has an infinite gradient, which would give NaN.
      const sq = tf.mul(tf.sum(tf.square(x), -1), tf.sum(tf.square(y), -1));
      const cos = tf.div(dot, tf.sqrt(tf.maximum(sq, eps * eps)));
      return maskedMean(perRow(tf.sub(1, cos)), mask);
    });
}
