/**
 * A batching pipeline on `tf.data`: sharding, seeded per-epoch shuffling, batching and prefetch.
 *
 * Seed 002's pipeline shards by the parent's process id (out of range as a shard index) after
 * batching, and hands the same dataset object to every worker, so no worker gets a shard of its own.
 * Here the shard is chosen first, by an explicit index below the shard count: shard i of n holds the
 * rows at positions i, i+n, i+2n, ..., so the n shards are disjoint and together cover every row;
 * only then are a shard's rows shuffled (seeded, a new order each epoch) and batched.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../data/random.js";

/** One batch: inputs, labels by name, and the original row numbers of the batch's rows. */
export interface PipelineBatch extends tf.TensorContainerObject {
  xs: tf.Tensor;
  ys: Record<string, tf.Tensor>;
  /** int32 [batch]: which rows of the source tensors these are. */
  rows: tf.Tensor1D;
}

/** Options of {@link batchPipeline}. */
export interface PipelineOptions {
  batchSize: number;
  /** Reshuffle the shard's rows each epoch (default true). */
  shuffle?: boolean;
  /** Seed of the shuffles: epoch e's order depends only on (seed, e). Default 0. */
  seed?: number;
  /** Take only shard `index` of `count` (default: all rows). */
  shard?: { index: number; count: number };
  /** Batches prepared ahead of the consumer (default 2; 0 for none). */
  prefetch?: number;
  /** Drop a last batch smaller than batchSize (default false). */
  dropRemainder?: boolean;
}

function positiveInt(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new Error(`batchPipeline: ${what} must be a positive integer, but got ${String(value)}.`);
  return value;
}

/**
 * Row numbers of shard `index` of `count` over `rows` rows: every `count`-th row starting at
 * `index`. The shards of one count are disjoint and cover `0 .. rows-1`; sizes differ by at most one.
 */
export function shardIndices(rows: number, index: number, count: number): number[] {
  if (!Number.isInteger(rows) || rows < 0) throw new Error(`shardIndices: rows must be an integer >= 0, but got ${rows}.`);
  if (!Number.isInteger(count) || count < 1) throw new Error(`shardIndices: the shard count must be a positive integer, but got ${count}.`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new Error(`shardIndices: the shard index must be an integer in [0, ${count - 1}], but got ${index}.`);
  const out: number[] = [];
  for (let i = index; i < rows; i += count) out.push(i);
  return out;
}

/** The order of `rows` for epoch `epoch` (0-based): a seeded permutation that differs per epoch. */
export function epochOrder(rows: readonly number[], seed: number, epoch: number): number[] {
  // Mix seed and epoch so (seed, epoch) pairs do not collide as simple sums would.
  const rng = new Rng((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) | 0);
  return rng.permutation(rows.length).map((i) => rows[i] as number);
}

/**
 * A `tf.data.Dataset` of {@link PipelineBatch}es over `x` (and labels `y`, same number of rows):
 * shard first, then each iteration (one epoch) a seeded shuffle, batches gathered from the source
 * tensors, and prefetch. Iterating again starts the next epoch, with a new order. The consumer owns
 * each batch's tensors: dispose them after use (`tf.dispose(batch)`).
 *
 * @example
 * const ds = batchPipeline(x, { species: y }, { batchSize: 32, seed: 1, shard: { index: 0, count: 4 } });
 * await ds.forEachAsync((b) => { trainer.step(b.xs, b.ys); tf.dispose(b); });
 */
export function batchPipeline(x: tf.Tensor, y: Record<string, tf.Tensor> = {}, options: PipelineOptions): tf.data.Dataset<PipelineBatch> {
  if (!(x instanceof tf.Tensor) || x.rank < 1) throw new Error(`batchPipeline: x must be a tensor with rows, but got ${x instanceof tf.Tensor ? `shape [${x.shape}]` : String(x)}.`);
  const n = x.shape[0] as number;
  for (const [name, t] of Object.entries(y)) {
    if (!(t instanceof tf.Tensor)) throw new Error(`batchPipeline: the labels "${name}" are not a tensor.`);
    if (t.shape[0] !== n) throw new Error(`batchPipeline: the labels "${name}" have ${t.shape[0]} rows but x has ${n}.`);
  }
  const batchSize = positiveInt(options?.batchSize, "batchSize");
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new Error(`batchPipeline: seed must be an integer, but got ${seed}.`);
  const prefetch = options.prefetch ?? 2;
  if (!Number.isInteger(prefetch) || prefetch < 0) throw new Error(`batchPipeline: prefetch must be an integer >= 0, but got ${prefetch}.`);
  const rows = options.shard ? shardIndices(n, options.shard.index, options.shard.count) : Array.from({ length: n }, (_, i) => i);
  const shuffle = options.shuffle ?? true;
  let epoch = 0;
  const dataset = tf.data.generator<PipelineBatch>(function* () {
    const order = shuffle ? epochOrder(rows, seed, epoch++) : rows;
    for (let start = 0; start < order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      if (options.dropRemainder && idx.length < batchSize) break;
      yield tf.tidy(() => {
        const r = tf.tensor1d(idx, "int32");
        const ys: Record<string, tf.Tensor> = {};
        for (const [name, t] of Object.entries(y)) ys[name] = tf.gather(t, r);
        return { xs: tf.gather(x, r), ys, rows: r };
      });
    }
  });
  return prefetch > 0 ? dataset.prefetch(prefetch) : dataset;
}
