/**
 * One training job: the unit of work shared by the worker pool ({@link trainMany}) and job queues.
 * A job is plain JSON (a {@link TrainingJobSpec}) so it can cross a thread or a broker; it loads its
 * own data, takes its own partition, trains one seeded model and saves it atomically.
 */
import * as tf from "@tensorflow/tfjs";
import type { ColumnTable } from "arquero";
import { join } from "node:path";
import { ensureBackend } from "../backend/init.js";
import { loadCars } from "../data/cars.js";
import { loadPenguins } from "../data/penguins.js";
import { fitStandardizer, takeRows, toClassIds, toMatrix, trainTestSplit } from "../data/prepare.js";
import { Rng } from "../data/random.js";
import { promises as fsp } from "node:fs";
import { fit } from "../train/fit.js";
import { claimModelDir, confineOutDir, modelFolder, resolveReal } from "./confine.js";
import { OutOfMemoryError, WASM_HEAP_MAX_BYTES, formatBytes, isOutOfMemory, mlpMemoryEstimate } from "./health.js";
import { fileSystemIO } from "./model-files.js";
import { PARTITION_SCHEMES, ROW_ID, addRowIds, partitionTable, type PartitionScheme } from "./partition.js";

/** Everything needed to train and save one model, as plain JSON. */
export interface TrainingJobSpec {
  /** Unique name of the job; also the folder the model is saved in. */
  id: string;
  architecture: { hidden: number[]; activation?: "relu" | "tanh"; task: "regression" | "classification" };
  hyper: { epochs: number; batchSize: number; learningRate: number };
  data: {
    dataset: "penguins" | "cars";
    features: string[];
    label: string;
    partition: { scheme: "contiguous" | "shuffled" | "stratified"; parts: number; index: number; seed: number };
    /** Share of the partition's rows held out for testing (default 0.2). */
    testFraction?: number;
  };
  /** Weight init + shuffling: no two models start from the same weights. */
  seed: number;
  /** The model is saved to `join(outDir, id)`. */
  outDir: string;
  /**
   * Stop the job after this many seconds (in {@link trainMany} and the queue worker, which run it on
   * a thread they can stop). Default: the worker's limit; `Infinity` or `null` (JSON's form) for none.
   */
  timeoutSeconds?: number | null;
}

/** The folder inside a job's model folder where its run is checkpointed while it trains. */
export const JOB_CHECKPOINT_DIR = ".checkpoint";

/** Options of {@link runTrainingJob} that come from whoever runs the job, not from the spec. */
export interface RunJobOptions {
  /**
   * Accept only a model folder that resolves (after `..` and symlinks) inside one of these folders
   * (see {@link confineOutDir}); default: no restriction. trainMany and the queue worker pass theirs.
   */
  outRoots?: readonly string[];
}

/** What a finished job reports. */
export interface TrainingJobResult {
  id: string;
  /** The partition index the job trained on. */
  partition: number;
  seed: number;
  /**
   * Test metrics (`accuracy` for classification; `r2`, `mae` in label units for regression), plus
   * `trainLoss`, `testLoss` and `initHash` (a 32-bit hash of the first layer's initial kernel).
   */
  metrics: Record<string, number>;
  /** Where the model was saved (`model.json` + `weights.bin`). */
  modelDir: string;
  trainRows: number;
  testRows: number;
  /** Wall time of the whole job. */
  seconds: number;
  /** The TensorFlow.js backend it ran on (`tf.getBackend()`). */
  backend: string;
}

const DATASETS = ["penguins", "cars"] as const;
const TASKS = ["regression", "classification"] as const;
const ACTIVATIONS = ["relu", "tanh"] as const;

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "undefined";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function fail(field: string, expected: string, value: unknown): never {
  throw new Error(`TrainingJobSpec.${field} must be ${expected}, but got ${show(value)}.`);
}

function record(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(field, "an object", value);
  return value as Record<string, unknown>;
}

function int(value: unknown, field: string, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) fail(field, `an integer >= ${min}`, value);
  return value;
}

function oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) fail(field, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`, value);
  return value as T;
}

function text(value: unknown, field: string): string {
  if (typeof value !== "string" || value.trim() === "") fail(field, "a non-empty string", value);
  return value;
}

/**
 * Check that `spec` is a well-formed {@link TrainingJobSpec} (types, ranges, partition index below
 * the number of parts) and return it typed. Errors name the field and the value found. Whether the
 * feature and label columns exist is checked when the job loads its data.
 */
export function validateJobSpec(spec: unknown): TrainingJobSpec {
  const s = record(spec, "(spec)");
  const id = text(s.id, "id");
  // The id becomes a folder name: keep it to one path segment.
  if (/[/\\]|^\.\.?$/.test(id)) fail("id", "a name without slashes (it becomes a folder)", id);
  const arch = record(s.architecture, "architecture");
  if (!Array.isArray(arch.hidden)) fail("architecture.hidden", "an array of layer widths", arch.hidden);
  const hidden = (arch.hidden as unknown[]).map((h, i) => int(h, `architecture.hidden[${i}]`, 1));
  const activation = arch.activation === undefined ? undefined : oneOf(arch.activation, "architecture.activation", ACTIVATIONS);
  const task = oneOf(arch.task, "architecture.task", TASKS);
  const hyper = record(s.hyper, "hyper");
  const epochs = int(hyper.epochs, "hyper.epochs", 1);
  const batchSize = int(hyper.batchSize, "hyper.batchSize", 1);
  const lr = hyper.learningRate;
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr <= 0) fail("hyper.learningRate", "a finite number > 0", lr);
  const data = record(s.data, "data");
  const dataset = oneOf(data.dataset, "data.dataset", DATASETS);
  if (!Array.isArray(data.features) || data.features.length === 0) fail("data.features", "a non-empty array of column names", data.features);
  const features = (data.features as unknown[]).map((f, i) => text(f, `data.features[${i}]`));
  const label = text(data.label, "data.label");
  if (features.includes(label)) fail("data.features", `a list without the label column "${label}"`, features);
  const p = record(data.partition, "data.partition");
  const scheme = oneOf(p.scheme, "data.partition.scheme", PARTITION_SCHEMES);
  const parts = int(p.parts, "data.partition.parts", 1);
  const index = int(p.index, "data.partition.index", 0);
  if (index >= parts) fail("data.partition.index", `an integer in [0, ${parts - 1}] (parts is ${parts})`, index);
  const partSeed = int(p.seed, "data.partition.seed", 0);
  const testFraction = data.testFraction;
  if (testFraction !== undefined && (typeof testFraction !== "number" || !(testFraction > 0 && testFraction < 1))) fail("data.testFraction", "a number in (0, 1)", testFraction);
  if (scheme === "stratified" && task !== "classification") fail("data.partition.scheme", `"contiguous" or "shuffled" for a regression task ("stratified" needs class labels)`, scheme);
  const seed = int(s.seed, "seed", 0);
  const outDir = text(s.outDir, "outDir");
  const timeout = s.timeoutSeconds;
  if (timeout !== undefined && timeout !== null && (typeof timeout !== "number" || !(timeout > 0))) fail("timeoutSeconds", "a number of seconds > 0 (Infinity or null for no limit)", timeout);
  return {
    id,
    architecture: { hidden, ...(activation ? { activation } : {}), task },
    hyper: { epochs, batchSize, learningRate: lr as number },
    data: {
      dataset,
      features,
      label,
      partition: { scheme, parts, index, seed: partSeed },
      ...(testFraction !== undefined ? { testFraction: testFraction as number } : {}),
    },
    seed,
    outDir,
    ...(timeout !== undefined ? { timeoutSeconds: timeout as number | null } : {}),
  };
}

function loadDataset(name: TrainingJobSpec["data"]["dataset"]): ColumnTable {
  return name === "penguins" ? loadPenguins() : loadCars();
}

/** Rows where every used column has a value (penguins' `sex` may be null). */
function completeRows(table: ColumnTable, columns: readonly string[], spec: TrainingJobSpec): ColumnTable {
  const names = table.columnNames();
  for (const c of columns) {
    if (!names.includes(c)) {
      const field = c === spec.data.label ? "data.label" : "data.features";
      throw new Error(`TrainingJobSpec.${field} names the column "${c}", which the ${spec.data.dataset} data set does not have (it has ${names.join(", ")}).`);
    }
  }
  const cols = columns.map((c) => table.array(c) as ArrayLike<unknown>);
  const keep: number[] = [];
  for (let i = 0; i < table.numRows(); i++) if (cols.every((col) => col[i] !== null && col[i] !== undefined)) keep.push(i);
  return keep.length === table.numRows() ? table : takeRows(table, keep);
}

/** FNV-1a over a float array's bytes: equal initial kernels give equal hashes. */
export function weightsHash(values: Float32Array): number {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** An MLP whose every kernel is drawn from a seed of its own, derived from the job's seed. */
function buildMLP(inputs: number, outputs: number, spec: TrainingJobSpec): tf.LayersModel {
  const rng = new Rng(spec.seed);
  const input = tf.input({ shape: [inputs], name: "features" });
  const widths = [...spec.architecture.hidden, outputs];
  let h: tf.SymbolicTensor = input;
  widths.forEach((units, i) => {
    const last = i === widths.length - 1;
    h = tf.layers
      .dense({
        units,
        activation: last ? "linear" : spec.architecture.activation ?? "relu",
        kernelInitializer: tf.initializers.glorotUniform({ seed: rng.int(2 ** 31) }),
        biasInitializer: "zeros",
        name: last ? "out" : `hidden_${i}`,
      })
      .apply(h) as tf.SymbolicTensor;
  });
  // A functional model (not tf.sequential) so outputNames is known before the first call.
  return tf.model({ inputs: input, outputs: h, name: `mlp_${spec.id.replace(/[^A-Za-z0-9_]/g, "_")}` });
}

/**
 * Run one job: load the data set, take the job's partition, split it into train and test (seeded,
 * stratified for classification), standardise features (and a regression label) on the train rows
 * only, build a seeded MLP, train it with {@link fit}, evaluate it on the test rows, and save it to
 * `join(outDir, id)` with {@link fileSystemIO} (atomically). `onProgress` gets each epoch's mean
 * training loss.
 *
 * The model folder must resolve inside `options.outRoots` when given, and belong to this job: it is
 * claimed before training by writing a `job.json` naming the job id (see {@link claimModelDir}), and
 * a folder another job id wrote is never replaced. The run is checkpointed into
 * `<model folder>/.checkpoint` (about 100 times a run) and resumed from there when the job is run
 * again with the same id, e.g. a queue retry; the checkpoint is removed once the model is saved. A model too big for memory fails with an
 * {@link OutOfMemoryError} that names the job and the model's size.
 */
export async function runTrainingJob(
  specInput: TrainingJobSpec,
  onProgress?: (epoch: number, loss: number) => void,
  options: RunJobOptions = {},
): Promise<TrainingJobResult> {
  const started = performance.now();
  const spec = validateJobSpec(specInput);
  const modelDir = modelFolder(spec.outDir, spec.id);
  // Where the files really go: checked before any training time is spent, and again before saving.
  const target = (): string => {
    try {
      return options.outRoots ? confineOutDir(modelDir, options.outRoots) : resolveReal(modelDir);
    } catch (err) {
      throw new Error(`Job ${JSON.stringify(spec.id)}: ${(err as Error).message}`, { cause: err });
    }
  };
  target();
  await ensureBackend();
  const { features, label, partition } = spec.data;
  const classification = spec.architecture.task === "classification";
  const full = addRowIds(completeRows(loadDataset(spec.data.dataset), [...features, label], spec));
  // Classes come from the whole data set, so every partition's model has the same output width.
  const classes = classification ? [...new Set(Array.from(full.array(label) as ArrayLike<unknown>, String))].sort() : [];
  const parts = partitionTable(full, partition.parts, {
    scheme: partition.scheme as PartitionScheme,
    seed: partition.seed,
    ...(partition.scheme === "stratified" ? { label } : {}),
  });
  const part = parts[partition.index] as ColumnTable;
  if (part.numRows() < 2) throw new Error(`Job "${spec.id}": partition ${partition.index} of ${partition.parts} has ${part.numRows()} rows; it needs at least 2 to train and test.`);
  const { train, test } = trainTestSplit(part, {
    testFraction: spec.data.testFraction ?? 0.2,
    seed: spec.seed,
    ...(classification ? { stratify: label } : {}),
  });
  if (train.numRows() === 0 || test.numRows() === 0) {
    throw new Error(`Job "${spec.id}": partition ${partition.index} (${part.numRows()} rows) split into ${train.numRows()} train and ${test.numRows()} test rows; use fewer parts or another testFraction.`);
  }
  const scaled = fitStandardizer(train, classification ? features : [...features, label]);
  const trainS = scaled.apply(train);
  const testS = scaled.apply(test);

  const outputs = classification ? classes.length : 1;
  const size = mlpMemoryEstimate(features.length, spec.architecture.hidden, outputs, spec.hyper.batchSize);
  const outOfMemory = (err: unknown): OutOfMemoryError => {
    const backend = tf.getBackend();
    const limit = backend === "wasm" ? `; the wasm backend's heap holds at most ${formatBytes(WASM_HEAP_MAX_BYTES)}` : "";
    return new OutOfMemoryError(
      `Job ${JSON.stringify(spec.id)} ran out of memory on the ${backend} backend: its model has ${size.parameters.toLocaleString("en-US")} parameters ` +
        `(${formatBytes(4 * size.parameters)} of float32 weights, about ${formatBytes(size.bytes)} to train with Adam${limit}). ` +
        `Use narrower or fewer hidden layers (architecture.hidden is ${JSON.stringify(spec.architecture.hidden)}). (${(err as Error)?.message ?? String(err)})`,
      size.bytes,
      { cause: err },
    );
  };
  // Claimed once the data is known to be good, so a job with a wrong column leaves no folder behind.
  await claimModelDir(target(), spec.id);
  // Inside the claimed folder, so a retried job (same id) finds it and no other job can.
  const checkpointDir = join(target(), JOB_CHECKPOINT_DIR);
  let model: tf.LayersModel;
  try {
    model = buildMLP(features.length, outputs, spec);
  } catch (err) {
    throw isOutOfMemory(err) ? outOfMemory(err) : err;
  }
  const tensors: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => (tensors.push(t), t);
  try {
    const initHash = weightsHash(model.layers.find((l) => l.getWeights().length > 0)!.getWeights()[0]!.dataSync() as Float32Array);
    const x = keep(toMatrix(trainS, features));
    const xTest = keep(toMatrix(testS, features));
    const y = classification ? keep(toClassIds(trainS, label, classes).ids) : keep(toMatrix(trainS, [label]));
    const yTest = classification ? keep(toClassIds(testS, label, classes).ids) : keep(toMatrix(testS, [label]));
    const output = model.outputNames[0] as string;
    const run = await fit({
      trainer: {
        model,
        tasks: [{ name: "y", output, loss: classification ? "softmaxCrossEntropy" : "mse", metrics: classification ? ["accuracy"] : ["r2"] }],
        optimizer: tf.train.adam(spec.hyper.learningRate),
      },
      x,
      y: { y },
      epochs: spec.hyper.epochs,
      batchSize: spec.hyper.batchSize,
      seed: spec.seed,
      live: false,
      // A retried job (after a kill, a timeout or a stall) continues from its last checkpoint; at
      // most about 100 checkpoints a run, so saving never dominates a small model's epochs.
      checkpoint: { dir: checkpointDir, every: Math.max(1, Math.ceil(spec.hyper.epochs / 100)) },
      resume: true,
      // A job reports its epochs through onProgress (the pool's or the queue's); no lines of its own.
      verbose: 0,
      onEpochEnd: (epoch, rows) => {
        onProgress?.(epoch, rows.find((r) => r.split === "train")?.loss ?? NaN);
      },
    });
    const trainLoss = Number(run.history.array("loss").at(-1));
    const ev = run.trainer.evaluate(xTest, { y: yTest }).y as { loss: number } & Record<string, number>;
    const metrics: Record<string, number> = { trainLoss, testLoss: ev.loss, initHash };
    if (classification) metrics.accuracy = ev.accuracy as number;
    else {
      const pred = tf.tidy(() => (model.predict(xTest) as tf.Tensor).dataSync());
      const truth = Array.from(test.array(label) as ArrayLike<number>, Number);
      const predicted = scaled.invert(label, pred);
      metrics.r2 = ev.r2 as number;
      metrics.mae = truth.reduce((a, t, i) => a + Math.abs(t - (predicted[i] as number)), 0) / truth.length;
    }
    // What a reader of the saved model needs to feed it: columns, scaling, classes, provenance.
    model.setUserDefinedMetadata({
      jointly: {
        job: spec.id,
        features,
        label,
        task: spec.architecture.task,
        classes,
        standardizer: { columns: scaled.columns, mean: scaled.mean, std: scaled.std },
        partition,
        seed: spec.seed,
        rowIds: Array.from(train.array(ROW_ID) as ArrayLike<number>, Number),
      },
    });
    const dir = target();
    // Claimed before training; checked again in case the folder changed hands meanwhile.
    await claimModelDir(dir, spec.id);
    await model.save(fileSystemIO(dir));
    // The model is saved: a rerun of this id starts afresh, not from the finished run.
    await fsp.rm(checkpointDir, { recursive: true, force: true });
    return {
      id: spec.id,
      partition: partition.index,
      seed: spec.seed,
      metrics,
      // Where the files went (symlinks and `..` resolved).
      modelDir: dir,
      trainRows: train.numRows(),
      testRows: test.numRows(),
      seconds: (performance.now() - started) / 1000,
      backend: tf.getBackend(),
    };
  } catch (err) {
    throw isOutOfMemory(err) ? outOfMemory(err) : err;
  } finally {
    try {
      tf.dispose(tensors);
      model.dispose();
    } catch {
      // A backend broken by running out of memory cannot free either; the error above says why.
    }
  }
}
