/**
 * Weight penalties over an explicit set of variables: `l2` = coeff·Σw², `l1` = coeff·Σ|w| (the Keras
 * convention, no ½). Pick the set with {@link selectVariables}, typically kernels and embedding
 * tables only.
 *
 * Seed 000 hands a list of variables to a Keras regulariser object (which expects one tensor) and
 * regularises every variable, biases included, of both models; here the set is chosen on purpose,
 * each shared variable is counted once, and an empty set is an error rather than a silent 0.
 */
import * as tf from "@tensorflow/tfjs";

/** Where variables can be taken from: a model or layer, several keyed by name, or variables. */
export type VariableSource = tf.layers.Layer | Record<string, tf.layers.Layer> | readonly (tf.Variable | tf.layers.Layer)[];

/** A filter on variable names: a RegExp, a substring, or a predicate. */
export type VariableFilter = RegExp | string | ((v: tf.Variable) => boolean);

/** Matches kernels of Dense/Conv layers and embedding tables, but not biases or normalisation scales. */
export const KERNELS: RegExp = /(^|\/)(kernel|embeddings|depthwise_kernel|pointwise_kernel|recurrent_kernel)(_\d+)?$/;

function fromLayer(layer: tf.layers.Layer): tf.Variable[] {
  return layer.trainableWeights.map((w) => w.read() as tf.Variable);
}

/**
 * The trainable variables of `source`, each once (a layer shared by two models yields its weights
 * once), optionally only those whose name matches `filter` (e.g. {@link KERNELS}).
 */
export function selectVariables(source: VariableSource, filter?: VariableFilter): tf.Variable[] {
  const all: tf.Variable[] = [];
  if (source instanceof tf.layers.Layer) all.push(...fromLayer(source));
  else if (Array.isArray(source)) {
    for (const s of source as readonly (tf.Variable | tf.layers.Layer)[]) {
      if (s instanceof tf.layers.Layer) all.push(...fromLayer(s));
      else if (s instanceof tf.Variable) all.push(s);
      else throw new Error(`selectVariables: expected variables or layers, but got ${String(s)}.`);
    }
  } else {
    for (const [k, m] of Object.entries(source as Record<string, tf.layers.Layer>)) {
      if (!(m instanceof tf.layers.Layer)) throw new Error(`selectVariables: "${k}" is not a layer or model.`);
      all.push(...fromLayer(m));
    }
  }
  const seen = new Set<number>();
  const unique = all.filter((v) => (seen.has(v.id) ? false : (seen.add(v.id), true)));
  if (filter === undefined) return unique;
  const test =
    typeof filter === "function" ? filter : typeof filter === "string" ? (v: tf.Variable) => v.name.includes(filter) : (v: tf.Variable) => filter.test(v.name);
  return unique.filter(test);
}

function checkPenalty(vars: readonly tf.Variable[], coeff: number, name: string) {
  if (typeof coeff !== "number" || !Number.isFinite(coeff) || coeff < 0) {
    throw new Error(`${name}: the coefficient must be a finite number >= 0, but got ${coeff}.`);
  }
  if (!Array.isArray(vars) || vars.length === 0) {
    throw new Error(`${name}: the variable set is empty (did the name filter match nothing?); pass at least one variable.`);
  }
}

function penalty(vars: readonly tf.Variable[], coeff: number, name: string, f: (v: tf.Tensor) => tf.Tensor): tf.Scalar {
  checkPenalty(vars, coeff, name);
  return tf.tidy(() => {
    const seen = new Set<number>();
    // A shared variable listed twice is penalised once, like it is updated once.
    const terms = vars.filter((v) => (seen.has(v.id) ? false : (seen.add(v.id), true))).map((v) => tf.sum(f(v)));
    return tf.mul(coeff, tf.addN(terms)) as tf.Scalar;
  });
}

/** L2 penalty coeff·Σ w² over `vars` (each variable once). */
export function l2(vars: readonly tf.Variable[], coeff: number): tf.Scalar {
  return penalty(vars, coeff, "l2", tf.square);
}

/** L1 penalty coeff·Σ |w| over `vars` (each variable once). */
export function l1(vars: readonly tf.Variable[], coeff: number): tf.Scalar {
  return penalty(vars, coeff, "l1", tf.abs);
}
