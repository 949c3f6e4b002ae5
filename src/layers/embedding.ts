/**
 * An embedding layer whose gradient works on every backend. `tf.layers.embedding` differentiates
 * through `tf.gather`, whose gradient needs the `UnsortedSegmentSum` kernel, which the `wasm`
 * backend (the one jointly runs on where the native build is unavailable) does not have: training
 * any model with a standard embedding fails there. This layer gathers rows in the forward pass and
 * scatters the gradient back with `tf.scatterND` (which sums repeated ids), available everywhere.
 */
import * as tf from "@tensorflow/tfjs";
import { cachedLookup } from "./step-cache.js";

/** A Layers initializer (the type `tf.initializers.*` functions return). */
export type EmbeddingInitializer = ReturnType<typeof tf.initializers.randomUniform>;

export interface TableEmbeddingArgs {
  inputDim: number;
  outputDim: number;
  name?: string;
  embeddingsInitializer?: EmbeddingInitializer;
  trainable?: boolean;
}

/** Rows of `table` at `ids` (1-D int32), with the gradient into the table scattered back by id. */
function gatherRows(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const rows = table.shape[0];
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [t, i, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    // Saved, not captured: the ids tensor of the forward pass is disposed before the backward pass runs.
    save([i]);
    return {
      value: tf.gather(t, i),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = dy as tf.Tensor;
        const idx = saved[0] as tf.Tensor;
        // scatterND adds the rows of dy that share an id: a row used twice gets both gradients.
        return [tf.scatterND(tf.reshape(idx, [-1, 1]), g, [rows, g.shape[1] as number]), tf.zeros(idx.shape)];
      },
    };
  });
  return f(table, ids) as tf.Tensor2D;
}

/**
 * Embedding table `[inputDim, outputDim]` applied to integer ids of any shape `[batch, ...]`,
 * giving `[batch, ..., outputDim]`; its variable is `<name>/embeddings`. Same forward values as
 * `tf.layers.embedding`, but trainable on the `wasm` backend too.
 */
export class TableEmbedding extends tf.layers.Layer {
  /** Registered name, for model serialisation. */
  static className = "JointlyTableEmbedding";
  readonly inputDim: number;
  readonly outputDim: number;
  private readonly initializer: EmbeddingInitializer;
  private table: tf.LayerVariable | null = null;

  constructor(args: TableEmbeddingArgs) {
    super({ name: args.name, trainable: args.trainable ?? true });
    for (const [k, v] of [["inputDim", args.inputDim], ["outputDim", args.outputDim]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`TableEmbedding: ${k} must be a positive integer, but got ${v}.`);
    }
    this.inputDim = args.inputDim;
    this.outputDim = args.outputDim;
    this.initializer = args.embeddingsInitializer ?? tf.initializers.randomUniform({ minval: -0.05, maxval: 0.05 });
  }

  override build(): void {
    this.table = this.addWeight("embeddings", [this.inputDim, this.outputDim], "float32", this.initializer, undefined, true);
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [...shape, this.outputDim];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
      return tf.reshape(this.lookupRows(x), [...x.shape, this.outputDim]);
    });
  }

  /**
   * The table's rows for `ids` of any shape, as an `[ids.size, outputDim]` matrix: the layer's
   * output before its last reshape (the direct forward pass reads it to skip a reshape and a
   * `Flatten`). Within a trainer's gradient pass, models sharing this table and fed the same ids
   * tensor share one lookup (see step-cache.ts); anywhere else it is computed afresh.
   */
  lookupRows(ids: tf.Tensor): tf.Tensor2D {
    if (!this.table) throw new Error(`TableEmbedding "${this.name}": the layer is not built yet; apply it to an input (or call build()) first.`);
    const table = this.table.read() as tf.Tensor2D;
    return cachedLookup(table, ids, () =>
      tf.tidy(() => {
        const flat = tf.reshape(ids, [-1]);
        return gatherRows(table, (flat.dtype === "int32" ? flat : tf.cast(flat, "int32")) as tf.Tensor1D);
      }),
    ) as tf.Tensor2D;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), inputDim: this.inputDim, outputDim: this.outputDim };
  }
}
tf.serialization.registerClass(TableEmbedding);
