/**
 * Sharing one layer (an embedding table, a Dense trunk, anything) between several models: create the
 * layer object once and apply it inside each model. There is then one set of weights; a joint step
 * (see `JointTrainer`) sums every model's gradient into it and applies it once.
 *
 * Seed 000 makes two different `Embedding` layers that are both named "shared_embedding": a name
 * clash, and nothing is shared. Seed 001 puts one layer object into two `Sequential` models.
 *
 * **Sequential vs functional.** A Sequential model is one chain: the shared layer is wired to
 * whatever layer precedes it in each chain, and after its first use its weights have a fixed input
 * width. In seed 001 the layer sits after a 64-unit layer in one model and a 16-unit layer in the
 * other, so the second model fails ("expected axis -1 of input shape to have value 64"). Sequential
 * also cannot feed the layer from two places or give it a second input. Use the functional API
 * instead: `const h = shared.apply(symbolicInput)` in each model, then `tf.model({ inputs, outputs })`.
 * A layer may then be applied to inputs of different shapes as long as the axis its weights depend
 * on matches: an embedding to `[batch, 1]` ids in one model and `[batch, 3]` ids in another, a Dense
 * (which acts on the last axis) to `[batch, 8]` and `[batch, 5, 8]`.
 */
import * as tf from "@tensorflow/tfjs";
import { TableEmbedding } from "./embedding.js";

export interface SharedEmbeddingOptions {
  /** Number of ids (rows of the table). */
  inputDim: number;
  /** Length of each embedding vector. */
  outputDim: number;
  /** Layer name, unique in the process: its variable is `<name>/embeddings`. */
  name: string;
  /** Seed of the uniform initialiser, for reproducible tables. */
  seed?: number;
  /** Half-width of the uniform initialiser (default 0.05, the Keras default). */
  scale?: number;
}

function checkPositiveInt(value: number, what: string) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`sharedEmbedding: ${what} must be a positive integer, but got ${value}.`);
}

/**
 * One embedding layer to apply in several models (one table, one set of weights): call it once and
 * apply the returned layer in each model. It is a {@link TableEmbedding}, so it trains on the `wasm`
 * backend, where `tf.layers.embedding`'s gradient kernel is missing. Calling it twice makes two tables, whatever their names
 * (seed 000's mistake); {@link sharedVariablesReport} shows what is really shared.
 */
export function sharedEmbedding(options: SharedEmbeddingOptions): tf.layers.Layer {
  checkPositiveInt(options.inputDim, "inputDim");
  checkPositiveInt(options.outputDim, "outputDim");
  if (typeof options.name !== "string" || !/^[A-Za-z][\w.-]*$/.test(options.name)) {
    throw new Error(`sharedEmbedding: the name must start with a letter and use letters, digits, _ . -, but got ${JSON.stringify(options.name)}.`);
  }
  const scale = options.scale ?? 0.05;
  if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`sharedEmbedding: scale must be a positive finite number, but got ${scale}.`);
  if (options.seed !== undefined && !Number.isInteger(options.seed)) throw new Error(`sharedEmbedding: seed must be an integer, but got ${options.seed}.`);
  // TableEmbedding rather than tf.layers.embedding: the latter cannot be trained on the wasm backend.
  return new TableEmbedding({
    inputDim: options.inputDim,
    outputDim: options.outputDim,
    name: options.name,
    embeddingsInitializer: tf.initializers.randomUniform({ minval: -scale, maxval: scale, seed: options.seed }),
  });
}

/** One variable and the models that use it. */
export interface SharedVariableRow {
  /** The variable's name, e.g. `user_embedding/embeddings`. */
  variable: string;
  /** TensorFlow.js's variable id: the identity that decides sharing (names can clash). */
  id: number;
  shape: number[];
  trainable: boolean;
  /** Keys of the models that use the variable, in the order given. */
  models: string[];
  /** True when more than one model uses it. */
  shared: boolean;
}

/**
 * For each variable of the given models, which models use it, identified by variable id rather than
 * by name (two distinct layers can carry the same name). Rows are in first-seen order; pass the
 * result to `aq.from(...)` to show it as a table ("user_embedding/embeddings is shared by a and b").
 */
export function sharedVariablesReport(models: Record<string, tf.LayersModel>): SharedVariableRow[] {
  const entries = Object.entries(models);
  if (entries.length === 0) throw new Error("sharedVariablesReport: no models given.");
  const rows = new Map<number, SharedVariableRow>();
  for (const [key, model] of entries) {
    if (!(model instanceof tf.LayersModel)) throw new Error(`sharedVariablesReport: "${key}" is not a tf.LayersModel.`);
    for (const w of model.weights) {
      const v = w.read() as tf.Variable;
      const row = rows.get(v.id) ?? { variable: v.name, id: v.id, shape: [...v.shape], trainable: w.trainable, models: [], shared: false };
      if (!row.models.includes(key)) row.models.push(key);
      row.shared = row.models.length > 1;
      rows.set(v.id, row);
    }
  }
  return [...rows.values()];
}
