/**
 * A weighted sum of named scalar losses, the multi-objective total of seeds 000 and 001 (0.7·a + 0.3·b
 * + penalty), with the names checked: a loss without a weight, or a weight for no loss, is an error
 * rather than a silently dropped term.
 */
import * as tf from "@tensorflow/tfjs";

/**
 * Σ weights[name]·losses[name]. Every loss needs a weight and every weight a loss; weights must be
 * finite and >= 0 (0 switches a term off); each loss must be a scalar.
 */
export function weightedSum(losses: Record<string, tf.Scalar>, weights: Record<string, number>): tf.Scalar {
  const names = Object.keys(losses);
  if (names.length === 0) throw new Error("weightedSum: no losses given.");
  const missing = names.filter((n) => !(n in weights));
  if (missing.length) {
    throw new Error(`weightedSum: no weight for the loss ${missing.map((n) => `"${n}"`).join(", ")}; weights are given for ${Object.keys(weights).map((n) => `"${n}"`).join(", ") || "nothing"}.`);
  }
  const unknown = Object.keys(weights).filter((n) => !(n in losses));
  if (unknown.length) {
    throw new Error(`weightedSum: the weight ${unknown.map((n) => `"${n}"`).join(", ")} names no loss; the losses are ${names.map((n) => `"${n}"`).join(", ")}.`);
  }
  for (const n of names) {
    const w = weights[n];
    if (typeof w !== "number" || !Number.isFinite(w) || w < 0) throw new Error(`weightedSum: the weight of "${n}" must be a finite number >= 0, but got ${w}.`);
    const l = losses[n];
    if (!(l instanceof tf.Tensor) || l.rank !== 0) {
      throw new Error(`weightedSum: the loss "${n}" must be a scalar tensor, but has shape [${l instanceof tf.Tensor ? l.shape : typeof l}].`);
    }
  }
  return tf.tidy(() => tf.addN(names.map((n) => tf.mul(weights[n] as number, losses[n] as tf.Scalar))) as tf.Scalar);
}
