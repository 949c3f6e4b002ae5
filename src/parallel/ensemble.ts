/**
 * Vectorised ensembles: M MLPs of one architecture trained as ONE batched computation.
 *
 * Every weight is stacked on a leading member axis (kernels `[M, in, out]`, biases `[M, 1, out]`),
 * the forward pass is a chain of rank-3 `tf.matMul`s, and the loss that is differentiated is the sum
 * of the members' own losses, so member i's gradient is exactly the gradient of its own loss. All the
 * TensorFlow.js optimizers act element by element, so one optimizer over the stacked variables makes
 * the same updates as M independent optimizers (up to float32 rounding, since the batched matmul sums in another order), one per member (Adam's step counter is shared, and
 * every member steps together, so it is the same counter too).
 *
 * Seeding: member i, layer l (both from 0) starts from `tf.initializers.glorotUniform({ seed })`
 * with `seed = seeds[i] + l`, where by default `seeds[i] = baseSeed + 1000 * i` (see
 * {@link ensembleSeed}); biases start at zero. A standalone `tf.layers.dense` built with the same seed
 * starts from the same kernel.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../data/random.js";
import { firstNonFinite, findBadGradient, multiIndex } from "../train/finite-checks.js";

/** Activations an ensemble layer supports (applied after the bias, as `tf.layers.dense` does). */
export type EnsembleActivation = "relu" | "tanh" | "sigmoid" | "linear";

/** The activations accepted, for validation messages. */
export const ENSEMBLE_ACTIVATIONS: readonly EnsembleActivation[] = ["relu", "tanh", "sigmoid", "linear"];

/** One dense layer of every member. */
export interface EnsembleLayerSpec {
  /** Output width of the layer. */
  units: number;
  /** Activation after the bias (default `"linear"`). */
  activation?: EnsembleActivation;
}

/**
 * Per-member training loss. The cross-entropies read the last layer's output as logits (keep that
 * layer `"linear"`); labels are one-hot / probability rows for `softmaxCrossEntropy` and 0/1 (or
 * probabilities) for `binaryCrossEntropy`.
 */
export type EnsembleLoss = "mse" | "softmaxCrossEntropy" | "binaryCrossEntropy";

/** The losses accepted, for validation messages. */
export const ENSEMBLE_LOSSES: readonly EnsembleLoss[] = ["mse", "softmaxCrossEntropy", "binaryCrossEntropy"];

/** Options of {@link VectorizedEnsemble}. */
export interface VectorizedEnsembleOptions {
  /** Number of members M (>= 1). */
  members: number;
  /** Width of each member's input. */
  inputSize: number;
  /** The layers of every member, first to last (at least one). */
  layers: EnsembleLayerSpec[];
  /** One integer seed per member; member i layer l uses `seeds[i] + l`. Exclusive with `baseSeed`. */
  seeds?: number[];
  /** Member i layer l uses `baseSeed + 1000 * i + l` (default baseSeed 1). */
  baseSeed?: number;
  /** Per-member loss (default `"mse"`). */
  loss?: EnsembleLoss;
  /**
   * `"adam"` (default) or `"sgd"`, created here with `learningRate`; or any `tf.Optimizer`, which the
   * caller owns (all tfjs optimizers are elementwise, so the per-member equivalence holds for each).
   */
  optimizer?: "adam" | "sgd" | tf.Optimizer;
  /** Learning rate for a named optimizer (default 0.001 for adam, 0.01 for sgd). */
  learningRate?: number;
}

/** How far apart consecutive members' seeds are under `baseSeed` (so up to 1000 layers never collide). */
export const ENSEMBLE_SEED_STRIDE = 1000;

/** The seed of member `member`'s layer `layer` under the `baseSeed` scheme: `baseSeed + 1000*member + layer`. */
export function ensembleSeed(baseSeed: number, member: number, layer: number): number {
  return baseSeed + ENSEMBLE_SEED_STRIDE * member + layer;
}

/** Member i's loss and the loss of the members' averaged prediction, from {@link VectorizedEnsemble.evaluate}. */
export interface EnsembleEvaluation {
  /** Each member's own loss on the data. */
  members: number[];
  /** The loss of {@link VectorizedEnsemble.predictMean}'s averaged prediction (probabilities for the cross-entropies). */
  ensemble: number;
}

// Probabilities are clipped this far from 0 and 1 before a log, as tf.layers' cross-entropies do.
const PROB_EPSILON = 1e-7;

function isPositiveInt(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n > 0;
}

function shapeText(t: tf.Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

/**
 * M MLPs of one architecture with their weights stacked on a leading member axis, trained together
 * by one optimizer step per {@link VectorizedEnsemble.step}.
 *
 * @example
 * const ens = new VectorizedEnsemble({ members: 8, inputSize: 32, layers: [{ units: 64, activation: "relu" }, { units: 1 }] });
 * const losses = ens.step(x, y);             // x [8, batch, 32], y [8, batch, 1]: one loss per member
 * const avg = ens.predictMean(xTest);        // [rows, 1], the members' mean prediction
 * const m3 = ens.toLayersModel(3);           // member 3 as an ordinary tf.LayersModel
 */
export class VectorizedEnsemble {
  /** Number of members M. */
  readonly members: number;
  /** Width of each member's input. */
  readonly inputSize: number;
  /** Width of each member's output (the last layer's units). */
  readonly outputSize: number;
  /** The layer specs, activations filled in. */
  readonly layers: readonly Required<EnsembleLayerSpec>[];
  /** The per-member loss. */
  readonly loss: EnsembleLoss;
  /** The seed of member i's first layer (layer l uses `memberSeeds[i] + l`). */
  readonly memberSeeds: readonly number[];
  /** Kernels, `[M, in, out]` per layer. */
  readonly kernels: tf.Variable[];
  /** Biases, `[M, 1, out]` per layer (the 1 broadcasts over the batch rows). */
  readonly biases: tf.Variable[];
  /** The optimizer that updates all members at once. */
  readonly optimizer: tf.Optimizer;
  private readonly ownsOptimizer: boolean;
  private steps = 0;
  private disposed = false;

  constructor(options: VectorizedEnsembleOptions) {
    const { members, inputSize, layers } = options;
    if (!isPositiveInt(members)) throw new Error(`VectorizedEnsemble members must be an integer >= 1, but got ${members}.`);
    if (!isPositiveInt(inputSize)) throw new Error(`VectorizedEnsemble inputSize must be an integer >= 1, but got ${inputSize}.`);
    if (!Array.isArray(layers) || layers.length === 0) throw new Error(`VectorizedEnsemble layers must list at least one layer, but got ${JSON.stringify(layers)}.`);
    this.layers = layers.map((l, i) => {
      if (!isPositiveInt(l.units)) throw new Error(`VectorizedEnsemble layers[${i}].units must be an integer >= 1, but got ${l.units}.`);
      const activation = l.activation ?? "linear";
      if (!ENSEMBLE_ACTIVATIONS.includes(activation)) {
        throw new Error(`VectorizedEnsemble layers[${i}].activation must be one of ${ENSEMBLE_ACTIVATIONS.join(", ")}, but got "${activation}".`);
      }
      return { units: l.units, activation };
    });
    const loss = options.loss ?? "mse";
    if (!ENSEMBLE_LOSSES.includes(loss)) throw new Error(`VectorizedEnsemble loss must be one of ${ENSEMBLE_LOSSES.join(", ")}, but got "${loss}".`);
    this.loss = loss;
    this.members = members;
    this.inputSize = inputSize;
    this.outputSize = this.layers[this.layers.length - 1]!.units;
    this.memberSeeds = memberSeedsOf(options, members, this.layers.length);

    // Each member's kernel comes from the very initializer tf.layers.dense would use, then all are stacked.
    const kernels: tf.Variable[] = [];
    const biases: tf.Variable[] = [];
    let fanIn = inputSize;
    this.layers.forEach((layer, l) => {
      const stacked = tf.tidy(() =>
        tf.stack(this.memberSeeds.map((s) => tf.initializers.glorotUniform({ seed: s + l }).apply([fanIn, layer.units], "float32"))),
      );
      kernels.push(tf.variable(stacked, true));
      stacked.dispose();
      const zeros = tf.zeros([members, 1, layer.units]);
      biases.push(tf.variable(zeros, true));
      zeros.dispose();
      fanIn = layer.units;
    });
    this.kernels = kernels;
    this.biases = biases;

    const opt = options.optimizer ?? "adam";
    if (typeof opt === "string") {
      if (opt !== "adam" && opt !== "sgd") throw new Error(`VectorizedEnsemble optimizer must be "adam", "sgd" or a tf.Optimizer, but got "${String(opt)}".`);
      const lr = options.learningRate ?? (opt === "adam" ? 0.001 : 0.01);
      if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`VectorizedEnsemble learningRate must be a positive finite number, but got ${lr}.`);
      this.optimizer = opt === "adam" ? tf.train.adam(lr) : tf.train.sgd(lr);
      this.ownsOptimizer = true;
    } else {
      if (!(opt instanceof tf.Optimizer)) throw new Error(`VectorizedEnsemble optimizer must be "adam", "sgd" or a tf.Optimizer, but got ${String(opt)}.`);
      this.optimizer = opt;
      this.ownsOptimizer = false;
    }
  }

  /** Training steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** All trainable variables, layer by layer: kernel then bias. */
  get variables(): tf.Variable[] {
    return this.kernels.flatMap((k, l) => [k, this.biases[l]!]);
  }

  /**
   * One training step for every member: member i's loss on `x[i]`, `y[i]`, one optimizer update for
   * all. Returns each member's loss (before the update). A non-finite loss, input, label or gradient
   * throws before any update, naming the member (and the row and column, or the variable).
   *
   * @param x inputs `[M, batch, inputSize]`
   * @param y labels `[M, batch, outputSize]`
   */
  step(x: tf.Tensor3D, y: tf.Tensor3D): number[] {
    this.checkAlive("step");
    this.checkData(x, y, "step");
    const vars = this.variables;
    let perMember: tf.Tensor1D | undefined;
    const { value, grads } = tf.variableGrads(() => {
      // Keep the per-member losses past variableGrads' own tidy; summing gives each member its own gradient.
      perMember = tf.keep(this.memberLosses(this.forward(x), y));
      return tf.sum(perMember);
    }, vars);
    const losses = Array.from(perMember!.dataSync());
    tf.dispose([value, perMember!]);
    const stepNo = this.steps + 1;
    const bad = losses.findIndex((v) => !Number.isFinite(v));
    // x and y are scanned in place (finite-checks.ts): no kernel, about a nanosecond a value.
    const data = dataProblem(x, y);
    if (bad >= 0) {
      tf.dispose(grads);
      throw new Error(`VectorizedEnsemble step ${stepNo}: member ${bad}'s ${this.loss} loss is ${losses[bad]}; no update was applied.${data ? ` The cause: ${data}.` : ""}`);
    }
    if (data) {
      tf.dispose(grads);
      throw new Error(`VectorizedEnsemble step ${stepNo}: ${data}; no update was applied. Remove or impute the missing or infinite values.`);
    }
    const badGrad = findBadGradient(grads, vars);
    if (badGrad) {
      tf.dispose(grads);
      // The leading axis of every stacked variable is the member.
      throw new Error(
        `VectorizedEnsemble step ${stepNo}: member ${badGrad.at[0]}'s gradient of "${badGrad.variable}" is ${badGrad.value} at [${badGrad.at.slice(1).join(", ")}] (its losses are finite); no update was applied. ` +
          "A weight so large that its gradient overflows float32, or an infinite slope, gives this; lower the learning rate or rescale the data.",
      );
    }
    this.optimizer.applyGradients(grads);
    tf.dispose(grads);
    this.steps++;
    return losses;
  }

  /**
   * Every member's output: raw last-layer values (logits for the cross-entropies), `[M, rows, outputSize]`.
   *
   * @param x `[M, rows, inputSize]` (each member its own inputs) or `[rows, inputSize]` (the same rows for all)
   */
  predict(x: tf.Tensor2D | tf.Tensor3D): tf.Tensor3D {
    this.checkAlive("predict");
    return tf.tidy(() => this.forward(this.perMemberInput(x, "predict")));
  }

  /**
   * The ensemble's averaged prediction `[rows, outputSize]`: the mean over members of the output for
   * mse, of the softmax probabilities for softmaxCrossEntropy, of the sigmoid probabilities for
   * binaryCrossEntropy.
   */
  predictMean(x: tf.Tensor2D | tf.Tensor3D): tf.Tensor2D {
    this.checkAlive("predictMean");
    return tf.tidy(() => tf.mean(this.toOutputSpace(this.forward(this.perMemberInput(x, "predictMean"))), 0) as tf.Tensor2D);
  }

  /**
   * Each member's loss and the averaged prediction's loss on one shared data set: mse of the mean
   * output; cross-entropy of the mean probabilities (clipped to [1e-7, 1 - 1e-7] before the log).
   *
   * @param x `[rows, inputSize]`
   * @param y `[rows, outputSize]`
   */
  evaluate(x: tf.Tensor2D, y: tf.Tensor2D): EnsembleEvaluation {
    this.checkAlive("evaluate");
    if (x.rank !== 2 || x.shape[1] !== this.inputSize) {
      throw new Error(`VectorizedEnsemble evaluate: x must be [rows, ${this.inputSize}], but got ${shapeText(x)}.`);
    }
    if (y.rank !== 2 || y.shape[0] !== x.shape[0] || y.shape[1] !== this.outputSize) {
      throw new Error(`VectorizedEnsemble evaluate: y must be [${x.shape[0]}, ${this.outputSize}] to match x ${shapeText(x)}, but got ${shapeText(y)}.`);
    }
    const [members, ensemble] = tf.tidy(() => {
      const out = this.forward(this.perMemberInput(x, "evaluate"));
      const yAll = tf.broadcastTo(y, [this.members, y.shape[0], y.shape[1]]);
      const mean = tf.mean(this.toOutputSpace(out), 0);
      return [this.memberLosses(out, yAll), this.averagedLoss(mean, y)] as [tf.Tensor1D, tf.Scalar];
    });
    const result = { members: Array.from(members.dataSync()), ensemble: ensemble.dataSync()[0] as number };
    tf.dispose([members, ensemble]);
    return result;
  }

  /** Member `i`'s weights as `[kernel [in, out], bias [out]]` per layer, flattened in layer order (caller disposes). */
  memberWeights(i: number): tf.Tensor[] {
    this.checkAlive("memberWeights");
    this.checkMember(i, "memberWeights");
    return tf.tidy(() =>
      this.kernels.flatMap((k, l) => {
        const [, fanIn, units] = k.shape as [number, number, number];
        // Sliced from flat views so each result owns data of its own shape: the wasm matmul override
        // reads a bias's rank from its data, and a reshaped [1, 1, units] slice would still say rank 3.
        const kernel = tf.slice(tf.reshape(k, [-1]), [i * fanIn * units], [fanIn * units]);
        const bias = tf.slice(tf.reshape(this.biases[l]!, [-1]), [i * units], [units]);
        return [tf.reshape(kernel, [fanIn, units]), bias];
      }),
    );
  }

  /**
   * Member `i` as an ordinary `tf.LayersModel` (a `tf.sequential` of `tf.layers.dense`) holding a copy of
   * its current weights; it outputs what {@link predict} gives for that member (logits for the
   * cross-entropies). The caller owns and disposes it.
   */
  toLayersModel(i: number): tf.Sequential {
    this.checkAlive("toLayersModel");
    this.checkMember(i, "toLayersModel");
    const model = tf.sequential();
    this.layers.forEach((layer, l) => {
      model.add(
        tf.layers.dense({
          units: layer.units,
          activation: layer.activation,
          ...(l === 0 ? { inputShape: [this.inputSize] } : {}),
        }),
      );
    });
    const weights = this.memberWeights(i);
    model.setWeights(weights);
    tf.dispose(weights);
    return model;
  }

  /** Free the variables (and the optimizer, if the ensemble created it). Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose(this.variables);
    if (this.ownsOptimizer) this.optimizer.dispose();
  }

  /** The stacked forward pass, `[M, rows, in]` to `[M, rows, out]`. */
  private forward(x: tf.Tensor3D): tf.Tensor3D {
    let h: tf.Tensor3D = x;
    this.layers.forEach((layer, l) => {
      // Bias added separately: a fused batched matmul's bias is per column, not per member.
      const z = tf.add(tf.matMul(h, this.kernels[l] as tf.Tensor3D), this.biases[l]!) as tf.Tensor3D;
      h = activate(z, layer.activation);
    });
    return h;
  }

  /** Each member's mean loss, `[M]`, from outputs and labels `[M, rows, out]`. */
  private memberLosses(out: tf.Tensor3D, y: tf.Tensor): tf.Tensor1D {
    switch (this.loss) {
      case "mse":
        return tf.mean(tf.squaredDifference(out, y), [1, 2]) as tf.Tensor1D;
      case "softmaxCrossEntropy":
        return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(out)), 2), 1)) as tf.Tensor1D;
      case "binaryCrossEntropy":
        // The stable form on logits: max(z, 0) - z*y + log(1 + exp(-|z|)).
        return tf.mean(tf.add(tf.sub(tf.relu(out), tf.mul(out, y)), tf.log1p(tf.exp(tf.neg(tf.abs(out))))), [1, 2]) as tf.Tensor1D;
    }
  }

  /** Outputs mapped to what gets averaged: values (mse) or probabilities (cross-entropies). */
  private toOutputSpace(out: tf.Tensor3D): tf.Tensor3D {
    if (this.loss === "softmaxCrossEntropy") return tf.softmax(out) as tf.Tensor3D;
    if (this.loss === "binaryCrossEntropy") return tf.sigmoid(out) as tf.Tensor3D;
    return out;
  }

  /** The loss of an averaged prediction `[rows, out]` (values or probabilities) against `y`. */
  private averagedLoss(mean: tf.Tensor, y: tf.Tensor2D): tf.Scalar {
    if (this.loss === "mse") return tf.mean(tf.squaredDifference(mean, y));
    const p = tf.clipByValue(mean, PROB_EPSILON, 1 - PROB_EPSILON);
    if (this.loss === "softmaxCrossEntropy") return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(p)), 1))) as tf.Scalar;
    return tf.neg(tf.mean(tf.add(tf.mul(y, tf.log(p)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, p)))))) as tf.Scalar;
  }

  /** A 2-D input repeated for every member, a 3-D one checked. */
  private perMemberInput(x: tf.Tensor2D | tf.Tensor3D, where: string): tf.Tensor3D {
    if (x.rank === 2 && x.shape[1] === this.inputSize) return tf.broadcastTo(x, [this.members, x.shape[0], this.inputSize]) as tf.Tensor3D;
    if (x.rank === 3 && x.shape[0] === this.members && x.shape[2] === this.inputSize) return x as tf.Tensor3D;
    throw new Error(`VectorizedEnsemble ${where}: x must be [rows, ${this.inputSize}] or [${this.members}, rows, ${this.inputSize}], but got ${shapeText(x)}.`);
  }

  private checkData(x: tf.Tensor, y: tf.Tensor, where: string): void {
    if (x.rank !== 3 || x.shape[0] !== this.members || x.shape[2] !== this.inputSize) {
      throw new Error(`VectorizedEnsemble ${where}: x must be [${this.members}, batch, ${this.inputSize}] (members, rows, inputSize), but got ${shapeText(x)}.`);
    }
    if (y.rank !== 3 || y.shape[0] !== this.members || y.shape[1] !== x.shape[1] || y.shape[2] !== this.outputSize) {
      throw new Error(
        `VectorizedEnsemble ${where}: y must be [${this.members}, ${x.shape[1]}, ${this.outputSize}] to match x ${shapeText(x)}, but got ${shapeText(y)}.`,
      );
    }
  }

  private checkMember(i: number, where: string): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.members) {
      throw new Error(`VectorizedEnsemble ${where}: member must be an integer in [0, ${this.members - 1}], but got ${i}.`);
    }
  }

  private checkAlive(where: string): void {
    if (this.disposed) throw new Error(`VectorizedEnsemble ${where}: the ensemble has been disposed.`);
  }
}

/** "NaN at member 2, row 5, column 1 of x" for the first non-finite value of a step's x or y, or undefined. */
function dataProblem(x: tf.Tensor3D, y: tf.Tensor3D): string | undefined {
  for (const [name, t] of [["x", x], ["y", y]] as const) {
    const found = firstNonFinite(t);
    if (!found) continue;
    const [member, row, column] = multiIndex(found.index, t.shape);
    return `${found.value} at member ${member}, row ${row}, column ${column} of ${name}`;
  }
  return undefined;
}

function activate(z: tf.Tensor3D, activation: EnsembleActivation): tf.Tensor3D {
  switch (activation) {
    case "relu":
      return tf.relu(z);
    case "tanh":
      return tf.tanh(z);
    case "sigmoid":
      return tf.sigmoid(z);
    case "linear":
      return z;
  }
}

/** Each member's first-layer seed from `seeds` or `baseSeed`, validated. */
function memberSeedsOf(options: VectorizedEnsembleOptions, members: number, layerCount: number): number[] {
  if (options.seeds !== undefined && options.baseSeed !== undefined) {
    throw new Error(`VectorizedEnsemble takes seeds or baseSeed, not both (got seeds of length ${options.seeds.length} and baseSeed ${options.baseSeed}).`);
  }
  if (options.seeds !== undefined) {
    if (!Array.isArray(options.seeds) || options.seeds.length !== members) {
      throw new Error(`VectorizedEnsemble seeds must have one entry per member (${members}), but got ${options.seeds.length}.`);
    }
    options.seeds.forEach((s, i) => {
      if (!Number.isInteger(s)) throw new Error(`VectorizedEnsemble seeds[${i}] must be an integer, but got ${s}.`);
    });
    return [...options.seeds];
  }
  const base = options.baseSeed ?? 1;
  if (!Number.isInteger(base)) throw new Error(`VectorizedEnsemble baseSeed must be an integer, but got ${base}.`);
  // Beyond the stride, member i's last layers would reuse member i+1's first seeds.
  if (layerCount > ENSEMBLE_SEED_STRIDE) throw new Error(`VectorizedEnsemble baseSeed seeding supports up to ${ENSEMBLE_SEED_STRIDE} layers, but got ${layerCount}; pass seeds instead.`);
  return Array.from({ length: members }, (_, i) => ensembleSeed(base, i, 0));
}

// ---------------------------------------------------------------------------------------------
// The training loop over per-member data.

/** Options of {@link fitEnsemble}. */
export interface FitEnsembleOptions {
  /** Inputs: `[M, rows, inputSize]` (member i trains on `x[i]`) or `[rows, inputSize]` (all share the rows). */
  x: tf.Tensor2D | tf.Tensor3D;
  /** Labels, `[M, rows, outputSize]` or `[rows, outputSize]`, shaped like `x`. */
  y: tf.Tensor2D | tf.Tensor3D;
  /** Passes over the rows (>= 1). */
  epochs: number;
  /** Rows per step for every member (>= 1); the last batch of an epoch may be smaller. */
  batchSize: number;
  /** Member i shuffles with `new Rng(seed + i)`, one `permutation(rows)` per epoch (default seed 1). */
  seed?: number;
  /** Shuffle each epoch (default true); false keeps every member in row order. */
  shuffle?: boolean;
  /** Called after each epoch with that epoch's record. */
  onEpochEnd?: (record: EnsembleEpoch) => void;
}

/** One epoch of {@link fitEnsemble}. */
export interface EnsembleEpoch {
  /** Epoch number, from 0. */
  epoch: number;
  /** Each member's loss, averaged over the epoch's rows (each batch weighted by its rows). */
  loss: number[];
}

/**
 * Member i's row order for every epoch: `new Rng(seed + i)`, one permutation per epoch (or row order
 * when not shuffling). A standalone replica of member i replays its batches from this.
 */
export function memberOrders(members: number, rows: number, epochs: number, seed = 1, shuffle = true): number[][][] {
  return Array.from({ length: members }, (_, i) => {
    const rng = new Rng(seed + i);
    return Array.from({ length: epochs }, () => epochOrder(rng, rows, shuffle));
  });
}

/** One epoch's row order from a member's generator (the generator is not touched when not shuffling). */
function epochOrder(rng: Rng, rows: number, shuffle: boolean): number[] {
  return shuffle ? rng.permutation(rows) : Array.from({ length: rows }, (_, r) => r);
}

/**
 * Train a {@link VectorizedEnsemble} for some epochs, each member on its own shuffled order of its
 * own rows (or of shared rows): one {@link VectorizedEnsemble.step} per batch. Returns one record per epoch.
 */
export function fitEnsemble(ensemble: VectorizedEnsemble, options: FitEnsembleOptions): EnsembleEpoch[] {
  const { x, y, epochs, batchSize } = options;
  const M = ensemble.members;
  const perMember = x.rank === 3;
  if (!(x.rank === 2 || x.rank === 3) || (perMember && x.shape[0] !== M) || x.shape[x.rank - 1] !== ensemble.inputSize) {
    throw new Error(`fitEnsemble: x must be [${M}, rows, ${ensemble.inputSize}] or [rows, ${ensemble.inputSize}], but got ${shapeText(x)}.`);
  }
  const rows = x.shape[x.rank - 2] as number;
  const yWant = perMember ? [M, rows, ensemble.outputSize] : [rows, ensemble.outputSize];
  if (y.shape.join() !== yWant.join()) {
    throw new Error(`fitEnsemble: y must be [${yWant.join(", ")}] to match x ${shapeText(x)}, but got ${shapeText(y)}.`);
  }
  if (!isPositiveInt(epochs)) throw new Error(`fitEnsemble: epochs must be an integer >= 1, but got ${epochs}.`);
  if (!isPositiveInt(batchSize)) throw new Error(`fitEnsemble: batchSize must be an integer >= 1, but got ${batchSize}.`);
  const seed = options.seed ?? 1;
  if (!Number.isInteger(seed)) throw new Error(`fitEnsemble: seed must be an integer, but got ${seed}.`);

  // Once per data set, before training: a NaN row fails here, named by its place in x or y, not a batch later.
  for (const [name, t] of [["x", x], ["y", y]] as const) {
    const found = firstNonFinite(t);
    if (!found) continue;
    const at = multiIndex(found.index, t.shape);
    const where = perMember ? `member ${at[0]}, row ${at[1]}, column ${at[2]}` : `row ${at[0]}, column ${at[1]}`;
    throw new Error(`fitEnsemble: ${found.value} at ${where} of ${name}, checked before training; nothing was trained. Remove or impute the missing or infinite values.`);
  }

  const shuffle = options.shuffle ?? true;
  // One generator per member, drawn one epoch at a time (all epochs up front would be M x epochs x rows numbers).
  const rngs = Array.from({ length: M }, (_, i) => new Rng(seed + i));
  // Rows of all members in one table, so one gather per batch fetches every member's rows.
  const xFlat = tf.reshape(x, [-1, ensemble.inputSize]) as tf.Tensor2D;
  const yFlat = tf.reshape(y, [-1, ensemble.outputSize]) as tf.Tensor2D;
  const history: EnsembleEpoch[] = [];
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const sums = new Array<number>(M).fill(0);
      const orders = rngs.map((rng) => epochOrder(rng, rows, shuffle));
      for (let start = 0; start < rows; start += batchSize) {
        const n = Math.min(batchSize, rows - start);
        const idx = new Int32Array(M * n);
        for (let i = 0; i < M; i++) {
          const order = orders[i]!;
          const offset = perMember ? i * rows : 0;
          for (let j = 0; j < n; j++) idx[i * n + j] = offset + order[start + j]!;
        }
        const [xb, yb] = tf.tidy(() => {
          const ids = tf.tensor1d(idx, "int32");
          return [
            tf.reshape(tf.gather(xFlat, ids), [M, n, ensemble.inputSize]) as tf.Tensor3D,
            tf.reshape(tf.gather(yFlat, ids), [M, n, ensemble.outputSize]) as tf.Tensor3D,
          ];
        });
        try {
          const losses = ensemble.step(xb, yb);
          losses.forEach((v, i) => (sums[i]! += v * n));
        } finally {
          tf.dispose([xb, yb]);
        }
      }
      const record = { epoch, loss: sums.map((s) => s / rows) };
      history.push(record);
      options.onEpochEnd?.(record);
    }
  } finally {
    // Defensive: the flat views are new handles, but the caller's own tensors must never be freed here.
    if (xFlat !== x) xFlat.dispose();
    if (yFlat !== y) yFlat.dispose();
  }
  return history;
}
