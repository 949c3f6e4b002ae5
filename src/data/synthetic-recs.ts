/**
 * A seeded synthetic recommendation data set with planted latent factors, for the shared-embedding
 * recipes (seed 000's user-preference model A and contextual item model B). Users and items have
 * factor vectors u and v, contexts have feature vectors c, and a weight vector w scores them:
 *
 * - task A (user preference): clicked ~ Bernoulli(sigmoid(scale · u·v))
 * - task B (contextual item model): chosen ~ Bernoulli(sigmoid(scale · (u·v + c·w)))
 *
 * Because the factors are returned, a notebook can measure how well trained embeddings recover them
 * (with {@link scoreCorrelation}, which does not depend on the embeddings' rotation).
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "./random.js";

export interface SyntheticRecsOptions {
  users: number;
  items: number;
  /** Distinct contexts (e.g. time of day × device), each with a feature vector. */
  contexts: number;
  /** Interactions per user, each with a different item: the sparsity knob (must be <= items). */
  ratingsPerUser: number;
  /** Latent factors per user and item (default 4). */
  factors?: number;
  /** Features per context (default 3). */
  contextDim?: number;
  /** Multiplies the logits: larger means cleaner labels (default 3). */
  scale?: number;
  seed?: number;
}

/** The planted truth. */
export interface PlantedFactors {
  /** `[users][factors]`, entries N(0, factors^-1/2) so that u·v has unit variance. */
  userFactors: number[][];
  /** `[items][factors]`, same scale as the user factors. */
  itemFactors: number[][];
  /** `[contexts][contextDim]`, standard normal. */
  contextFeatures: number[][];
  /** `[contextDim]`, N(0, 1/contextDim) so that c·w has unit variance. */
  contextWeights: number[];
}

/** Tensors for training; the caller disposes them. */
export interface SyntheticRecsTensors {
  /** User ids `[n, 1]` (float32 holding integers, as Layers inputs expect). */
  user: tf.Tensor2D;
  item: tf.Tensor2D;
  context: tf.Tensor2D;
  /** Each row's context feature vector `[n, contextDim]`. */
  contextFeatures: tf.Tensor2D;
  /** Task A labels `[n, 1]`, 0 or 1. */
  a: tf.Tensor2D;
  /** Task B labels `[n, 1]`, 0 or 1. */
  b: tf.Tensor2D;
}

export interface SyntheticRecs {
  /** Number of interactions (users × ratingsPerUser). */
  n: number;
  /** Observed share of the user × item matrix. */
  density: number;
  user: Int32Array;
  item: Int32Array;
  context: Int32Array;
  /** Task A label (clicked) per interaction. */
  a: Float32Array;
  /** Task B label per interaction. */
  b: Float32Array;
  /** The planted logits of each interaction, before sampling. */
  logitA: Float32Array;
  logitB: Float32Array;
  planted: PlantedFactors;
  /** The interactions as tensors (new ones on each call). */
  tensors(): SyntheticRecsTensors;
}

function positiveInt(value: number, what: string) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`syntheticRecs: ${what} must be a positive integer, but got ${value}.`);
}

const dot = (x: readonly number[], y: readonly number[]) => x.reduce((s, xi, i) => s + xi * (y[i] as number), 0);
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** Generate interactions with planted user, item and context factors, reproducibly from `seed`. */
export function syntheticRecs(options: SyntheticRecsOptions): SyntheticRecs {
  const { users, items, contexts, ratingsPerUser } = options;
  const factors = options.factors ?? 4;
  const contextDim = options.contextDim ?? 3;
  const scale = options.scale ?? 3;
  positiveInt(users, "users");
  positiveInt(items, "items");
  positiveInt(contexts, "contexts");
  positiveInt(ratingsPerUser, "ratingsPerUser");
  positiveInt(factors, "factors");
  positiveInt(contextDim, "contextDim");
  if (ratingsPerUser > items) throw new Error(`syntheticRecs: ratingsPerUser (${ratingsPerUser}) cannot exceed items (${items}); each rating is a different item.`);
  if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`syntheticRecs: scale must be a positive finite number, but got ${scale}.`);
  const rng = new Rng(options.seed ?? 0);
  const matrix = (rows: number, cols: number, sd: number) => Array.from({ length: rows }, () => Array.from({ length: cols }, () => rng.normal() * sd));
  const factorSd = factors ** -0.25;
  const planted: PlantedFactors = {
    userFactors: matrix(users, factors, factorSd),
    itemFactors: matrix(items, factors, factorSd),
    contextFeatures: matrix(contexts, contextDim, 1),
    contextWeights: Array.from({ length: contextDim }, () => rng.normal() / Math.sqrt(contextDim)),
  };
  const n = users * ratingsPerUser;
  const user = new Int32Array(n);
  const item = new Int32Array(n);
  const context = new Int32Array(n);
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  const logitA = new Float32Array(n);
  const logitB = new Float32Array(n);
  let row = 0;
  for (let u = 0; u < users; u++) {
    // Distinct items per user: the first ratingsPerUser entries of a seeded permutation.
    for (const i of rng.permutation(items).slice(0, ratingsPerUser)) {
      const ctx = rng.int(contexts);
      const uv = dot(planted.userFactors[u]!, planted.itemFactors[i]!);
      const cw = dot(planted.contextFeatures[ctx]!, planted.contextWeights);
      user[row] = u;
      item[row] = i;
      context[row] = ctx;
      logitA[row] = scale * uv;
      logitB[row] = scale * (uv + cw);
      a[row] = rng.next() < sigmoid(scale * uv) ? 1 : 0;
      b[row] = rng.next() < sigmoid(scale * (uv + cw)) ? 1 : 0;
      row++;
    }
  }
  return {
    n,
    density: ratingsPerUser / items,
    user, item, context, a, b, logitA, logitB, planted,
    tensors: () => ({
      user: tf.tensor2d(Float32Array.from(user), [n, 1]),
      item: tf.tensor2d(Float32Array.from(item), [n, 1]),
      context: tf.tensor2d(Float32Array.from(context), [n, 1]),
      contextFeatures: tf.tensor2d(Float32Array.from(Array.from(context).flatMap((c) => planted.contextFeatures[c]!)), [n, contextDim]),
      a: tf.tensor2d(a, [n, 1]),
      b: tf.tensor2d(b, [n, 1]),
    }),
  };
}

/**
 * Pearson correlation between the planted scores u·v and learned scores û·v̂ over every user-item
 * pair: 1 means the learned embeddings rank pairs exactly like the planted factors, whatever their
 * rotation or dimension.
 */
export function scoreCorrelation(plantedUsers: number[][], plantedItems: number[][], learnedUsers: number[][], learnedItems: number[][]): number {
  if (plantedUsers.length !== learnedUsers.length || plantedItems.length !== learnedItems.length) {
    throw new Error(`scoreCorrelation: planted ${plantedUsers.length} users × ${plantedItems.length} items but learned ${learnedUsers.length} × ${learnedItems.length}.`);
  }
  const p: number[] = [];
  const q: number[] = [];
  plantedUsers.forEach((u, i) => plantedItems.forEach((v, j) => {
    p.push(dot(u, v));
    q.push(dot(learnedUsers[i]!, learnedItems[j]!));
  }));
  const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const mp = mean(p);
  const mq = mean(q);
  let sxy = 0, sxx = 0, syy = 0;
  p.forEach((x, k) => {
    const dx = x - mp;
    const dy = (q[k] as number) - mq;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  });
  if (sxx === 0 || syy === 0) throw new Error("scoreCorrelation: the planted or learned scores are constant; the correlation is undefined.");
  return sxy / Math.sqrt(sxx * syy);
}
