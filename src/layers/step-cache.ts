/**
 * A cache of embedding lookups that lives for one gradient pass of a trainer step.
 *
 * Why: when one table is shared by several models (a user table read by a ranking model and by a
 * retrieval model), each model looks the same ids up again. On wasm a 1024-row lookup of a 64-wide
 * table is a few ms, and each lookup's gradient is a dense scatter into the whole table, summed
 * with the others: for W3 of `npm run bench` the repeated lookups were about a quarter of the step.
 * Inside {@link withLookupCache}, {@link TableEmbedding} computes a lookup of the same table
 * variable with the same ids tensor once and hands the same tensor to every consumer, so the
 * backward pass sums the consumers' gradients on the looked-up rows and scatters them into the
 * table once: the same sum as before, computed on the batch's rows instead of on whole tables.
 *
 * Scope: a cache belongs to one gradient pass (the trainers open it around each `tf.variableGrads`
 * and close it when that returns, freeing what it holds), and it is consulted only at the gradient
 * depth that pass runs at, so a lookup inside a nested `tf.grad` (another tape) or outside any
 * tape is computed afresh. Nothing is cached outside a trainer step: `predict`, `evaluate` and
 * hand-written loops see no difference.
 */
import * as tf from "@tensorflow/tfjs";

interface Entry {
  out: tf.Tensor;
  /** The table's and the ids' data at lookup time: a table assigned a new value is looked up again. */
  tableData: object;
  idsData: object;
}

interface Cache {
  /** Gradient depth of the pass this cache serves (that of `tf.variableGrads`' function). */
  depth: number;
  /** Made on the first lookup: most passes (models without tables) never use their cache. */
  entries?: Map<string, Entry>;
  /** Lookups replaced after their table changed: a consumer may still hold them, so freed at the end. */
  retired?: tf.Tensor[];
}

let active: Cache | undefined;

const gradientDepth = (): number => tf.engine().state.gradientDepth;

/**
 * Run `pass` (a `tf.variableGrads` or `tf.grad` call) with lookups shared within it; the cached
 * tensors are freed when it returns or throws. Scopes nest: an inner one has its own cache.
 */
export function withLookupCache<T>(pass: () => T): T {
  const outer = active;
  const cache: Cache = { depth: gradientDepth() + 1 };
  active = cache;
  try {
    return pass();
  } finally {
    active = outer;
    if (cache.entries) for (const e of cache.entries.values()) e.out.dispose();
    if (cache.retired) tf.dispose(cache.retired);
    cache.entries = undefined;
    cache.retired = undefined;
  }
}

/** `tf.variableGrads` with lookups shared within the pass (see {@link withLookupCache}). */
export function variableGradsShared(f: () => tf.Scalar, variables?: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  return withLookupCache(() => tf.variableGrads(f, variables));
}

/** Number of lookups held by the innermost open cache (undefined when none is open), for tests. */
export function lookupCacheSize(): number | undefined {
  return active && (active.entries?.size ?? 0);
}

/**
 * The rows of `table` at `ids` from `compute()`, or the tensor an earlier identical lookup of this
 * pass computed. Outside a cache, or at another gradient depth, it is just `compute()`.
 */
export function cachedLookup(table: tf.Tensor, ids: tf.Tensor, compute: () => tf.Tensor): tf.Tensor {
  const cache = active;
  if (!cache || gradientDepth() !== cache.depth) return compute();
  const key = `${table.id}:${ids.id}`;
  const entries = (cache.entries ??= new Map());
  const hit = entries.get(key);
  if (hit && !hit.out.isDisposed && hit.tableData === table.dataId && hit.idsData === ids.dataId) return hit.out;
  // Kept: the layer (or model) computing it runs inside a tidy that would free it before the
  // next consumer; withLookupCache frees it when the pass ends.
  const out = tf.keep(compute());
  if (hit) (cache.retired ??= []).push(hit.out);
  entries.set(key, { out, tableData: table.dataId, idsData: ids.dataId });
  return out;
}
