import * as tf from "@tensorflow/tfjs";
import { directForward } from "./direct-forward.js";
import { assertOwnTfjs } from "../backend/tfjs-copies.js";

/** Model inputs: one tensor, a list (multi-input models), or tensors by input name. */
export type Inputs = tf.Tensor | tf.Tensor[] | Record<string, tf.Tensor>;

/**
 * Anything jointly can train: a forward function giving named outputs, and the trainable variables
 * it uses. Build one from Layers models with {@link trainable}, or write it by hand around raw
 * `tf.Variable`s.
 */
export interface Trainable {
  /**
   * Named outputs for a batch. `training` switches dropout and similar layers. `outputs`, when
   * given, names the only outputs the caller reads (a task's own pass): the others may be left out.
   */
  forward(inputs: Inputs, training: boolean, outputs?: readonly string[]): Record<string, tf.Tensor>;
  /** Trainable variables, each listed once even when several models share it. */
  variables(): tf.Variable[];
  /** Output names, for error messages and task checks. */
  outputNames(): string[];
}

function isTrainable(x: unknown): x is Trainable {
  return typeof x === "object" && x !== null && typeof (x as Trainable).forward === "function" && typeof (x as Trainable).variables === "function";
}

/** Variables of a Layers model, read through its LayerVariables. */
export function modelVariables(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/** Each variable once, in first-seen order: a shared layer must be updated once, with its summed gradient. */
export function uniqueVariables(vars: Iterable<tf.Variable>): tf.Variable[] {
  const seen = new Set<number>();
  const out: tf.Variable[] = [];
  for (const v of vars) {
    if (!seen.has(v.id)) {
      seen.add(v.id);
      out.push(v);
    }
  }
  return out;
}

/** Options of {@link trainable}. */
export interface TrainableOptions {
  /**
   * Compute simple models' forward passes directly (see `directForward`) instead of through
   * `model.apply` (default true; the environment variable `JOINTLY_DIRECT_FORWARD=0` turns it off).
   * Models it cannot reproduce exactly always use `model.apply`.
   */
  direct?: boolean;
}

function directEnabled(options?: TrainableOptions): boolean {
  if (options?.direct !== undefined) return options.direct;
  const env = typeof process !== "undefined" ? process.env?.JOINTLY_DIRECT_FORWARD : undefined;
  return !(env === "0" || env === "false");
}

function layersTrainable(model: tf.LayersModel, direct = false): Trainable {
  const fast = direct ? directForward(model) : undefined;
  return {
    forward(inputs, training, outputs) {
      const x = Array.isArray(inputs) || inputs instanceof tf.Tensor ? inputs : model.inputNames.map((n) => {
        const t = (inputs as Record<string, tf.Tensor>)[n];
        if (!t) throw new Error(`Model "${model.name}" needs the input "${n}"; got inputs ${Object.keys(inputs).join(", ")}.`);
        return t;
      });
      // A direct forward pass computes only the layers the wanted outputs need.
      const wanted = fast && outputs ? model.outputNames.flatMap((n, i) => (outputs.includes(n) ? [i] : [])) : undefined;
      const out = fast ? fast(x as tf.Tensor | tf.Tensor[], training, wanted) : (model.apply(x, { training }) as tf.Tensor | tf.Tensor[]);
      const list = Array.isArray(out) ? out : [out];
      const named: Record<string, tf.Tensor> = {};
      model.outputNames.forEach((n, i) => {
        if (!wanted || wanted.includes(i)) named[n] = list[i] as tf.Tensor;
      });
      return named;
    },
    variables: () => uniqueVariables(modelVariables(model)),
    outputNames: () => [...model.outputNames],
  };
}

/**
 * Make a {@link Trainable} from a Layers model (outputs named by its output layers), from an existing
 * Trainable, or from several models keyed by name: then each model's outputs are named
 * `"<key>/<output>"`, plus `"<key>"` alone for a single-output model, and all of them see the same
 * inputs unless `route` picks each model's inputs.
 */
export function trainable(
  models: tf.LayersModel | Trainable | Record<string, tf.LayersModel>,
  route?: (key: string, inputs: Inputs) => Inputs,
  options?: TrainableOptions,
): Trainable {
  if (isTrainable(models)) return models;
  if (models instanceof tf.LayersModel) return layersTrainable(models, directEnabled(options));
  // A model of another TensorFlow.js copy fails instanceof and would be read as a record of models.
  assertOwnTfjs(models, "trainable(): the model");
  const entries = Object.entries(models);
  if (entries.length === 0) throw new Error("trainable(): no models given.");
  const direct = directEnabled(options);
  const parts = entries.map(([k, m]) => {
    if (!(m instanceof tf.LayersModel)) {
      assertOwnTfjs(m, `trainable(): "${k}"`);
      throw new Error(`trainable(): "${k}" is not a tf.LayersModel.`);
    }
    return [k, layersTrainable(m, direct), m] as const;
  });
  return {
    forward(inputs, training) {
      const named: Record<string, tf.Tensor> = {};
      for (const [k, t, m] of parts) {
        const out = t.forward(route ? route(k, inputs) : inputs, training);
        for (const [n, v] of Object.entries(out)) named[`${k}/${n}`] = v;
        if (m.outputNames.length === 1) named[k] = out[m.outputNames[0] as string] as tf.Tensor;
      }
      return named;
    },
    variables: () => uniqueVariables(parts.flatMap(([, t]) => t.variables())),
    outputNames: () =>
      parts.flatMap(([k, , m]) => [...m.outputNames.map((n) => `${k}/${n}`), ...(m.outputNames.length === 1 ? [k] : [])]),
  };
}

/** Rows in a batch of inputs (the first dimension of the first tensor). */
export function batchRows(inputs: Inputs): number {
  const first = inputs instanceof tf.Tensor ? inputs : Array.isArray(inputs) ? inputs[0] : Object.values(inputs)[0];
  if (!first) throw new Error("The inputs are empty.");
  return first.shape[0] as number;
}

/** Gather the same rows from every input tensor. */
export function gatherInputs(inputs: Inputs, rows: tf.Tensor1D): Inputs {
  if (inputs instanceof tf.Tensor) return tf.gather(inputs, rows);
  if (Array.isArray(inputs)) return inputs.map((t) => tf.gather(t, rows));
  return Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, tf.gather(t, rows)]));
}
