import * as tf from "@tensorflow/tfjs";
import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { ensureBackend } from "../backend/init.js";
import { lossCurvesSpec } from "../charts/loss-curves.js";
import { inNotebook, liveChart } from "../charts/show.js";
import { Rng } from "../data/random.js";
import { batchRows, gatherInputs, type Inputs } from "./model.js";
import { isMainThread } from "node:worker_threads";
import { checkDataFinite } from "./finite-checks.js";
import { JointTrainer, type Evaluation, type JointTrainerOptions } from "./joint-trainer.js";
import { formatNumber, ProgressPrinter, type Verbosity } from "./progress.js";
import type { DiagnosticsTables } from "./diagnostics.js";
import { hasCheckpoint, type CheckpointOptions } from "./checkpoint.js";
import { loadRun, saveRun } from "./run-state.js";
import { checkSupported } from "./optimizer-state.js";

export type { CheckpointOptions } from "./checkpoint.js";

export type { Verbosity } from "./progress.js";

/** One row of a training history: one epoch, one task, one split. */
export interface HistoryRow {
  epoch: number;
  task: string;
  split: "train" | "validation";
  loss: number;
  weight: number;
  [metric: string]: number | string;
}

/** One row per training step and task (with `recordSteps`). */
export interface StepRow {
  step: number;
  epoch: number;
  task: string;
  loss: number;
  /** The weight of the task at this step (with an aggregator, the weight it implied). */
  weight: number;
}

/**
 * Plain numbers that `fit` turns into a tensor (as Keras takes arrays): nested arrays of numbers or a
 * typed array, one element per row. fit disposes the tensors it makes from them before it returns.
 */
export type ArrayData = number[] | number[][] | number[][][] | number[][][][] | Float32Array | Int32Array | Uint8Array;

/**
 * What `fit` takes as inputs: one tensor, a list of tensors (a multi-input model), tensors by input
 * name, or {@link ArrayData} in place of any tensor. An array whose elements are all tensors is a
 * list of inputs; any other array is the data of one input (so give several array inputs by name).
 */
export type FitInputs = Inputs | ArrayData | Record<string, tf.Tensor | ArrayData>;

/** Labels or masks by task name, as tensors or {@link ArrayData}. */
export type FitLabels = Record<string, tf.Tensor | ArrayData>;

/**
 * Early stopping: stop when the monitored value has not improved for `patience` epochs.
 *
 * `monitor` names what is watched, on the validation set when there is one (else on the training
 * epoch's mean losses):
 * - `"loss"` (default): the unweighted sum of the tasks' losses. Not the weighted sum: a dynamic
 *   weighting (uncertainty, DWA, ...) moves the weights every epoch, so the weighted sum can rise
 *   while every task's loss falls, and the best epoch would be picked by the weights.
 * - a task name, e.g. `"species"`: that task's loss.
 * - `"<task>.<metric>"`, e.g. `"species.accuracy"` or `"body_mass.r2"`: a metric the task lists in
 *   its `metrics` (validation only: metrics are computed on the validation set), or `"<task>.loss"`.
 *
 * `mode` says which way is better: "min" (default for losses, mae and rmse) or "max" (default for
 * accuracy and r2). The monitored value and its best epoch are also tracked without early stopping
 * (`FitResult.bestEpoch`): pass `earlyStopping: { patience: Infinity, monitor }` to choose it only.
 */
export interface EarlyStoppingOptions {
  /** Epochs without improvement before stopping: an integer >= 0, or Infinity to never stop. */
  patience: number;
  /** The least change that counts as an improvement (default 0). */
  minDelta?: number;
  /** Put back the weights of the best epoch when training ends, and before a {@link FitError} is thrown. */
  restoreBest?: boolean;
  /** What to watch: "loss" (default, the unweighted sum), a task name, or "task.metric". */
  monitor?: string;
  /** "min" or "max": which way the monitored value improves (default from the monitor). */
  mode?: "min" | "max";
}

export interface FitOptions {
  /** An existing trainer, or the options to make one (with at least model, tasks and optimizer). */
  trainer: JointTrainer | JointTrainerOptions;
  x: FitInputs;
  /** Labels by task name. */
  y: FitLabels;
  /** Optional masks by task name (1 = labelled). A task whose mask is 0 on every row is an error. */
  masks?: FitLabels;
  epochs: number;
  batchSize?: number;
  /** Reshuffle the rows each epoch (default true), reproducibly from `seed`. */
  shuffle?: boolean;
  seed?: number;
  /** Data scored after every epoch (loss and metrics of each task); checked like the training data. */
  validation?: { x: FitInputs; y: FitLabels; masks?: FitLabels };
  /** Stop when the monitored value stops improving; see {@link EarlyStoppingOptions}. */
  earlyStopping?: EarlyStoppingOptions;
  /** Called after each epoch with its rows; return `false` to stop. */
  onEpochEnd?: (epoch: number, rows: HistoryRow[]) => void | boolean | Promise<void | boolean>;
  /**
   * Draw a loss chart that updates while training. Default: on in a notebook kernel (tslab), off
   * elsewhere. Outside a kernel nobody would see it, so `live: true` there is ignored, with one
   * process warning (`JointlyWarning`), and nothing is rendered.
   */
  live?: boolean;
  /** Log-scale y axis for the live chart. */
  logScale?: boolean;
  /**
   * What is printed on stderr, as in Keras: 0 nothing; 1 a line per epoch (epoch n/N, per-task
   * losses, validation losses and metrics, time, ETA), redrawn in place while the epoch runs when
   * stderr is a terminal (batches done, ETA); 2 the same line per epoch, never redrawn. Default 1,
   * but 0 in a notebook kernel (the live chart shows progress) and in a worker thread.
   */
  verbose?: Verbosity;
  /** Also record one row per step and task (step, epoch, task, loss, weight) in `FitResult.steps`. */
  recordSteps?: boolean;
  /**
   * Save the whole run into `dir` after every `every` epochs (default 1; `everySteps` also inside
   * epochs), each save replacing the last as one set (a kill during a save leaves the previous
   * one): every model variable (batch-norm statistics included), the optimizers' slots, iteration
   * counts, learning rates and schedule positions, the trainer's step and epoch counters and task
   * weights, the weighting's and aggregator's state, the data-order RNG, the history (and step rows)
   * and the early-stopping state (best value, epochs since, best weights). With `resume` the run
   * continues from it, ending bit-identical to a run never interrupted.
   */
  checkpoint?: CheckpointOptions;
  /**
   * Continue the run saved in this checkpoint folder (made with `checkpoint`), with the same
   * trainer options, data, batchSize, shuffle and seed (`epochs` may be raised). `true` resumes
   * from `checkpoint.dir` when it holds a checkpoint and starts afresh otherwise (for a retried job).
   *
   * @example
   * await fit({ ...options, checkpoint: { dir: "runs/a" }, resume: true }); // continues after a crash
   */
  resume?: string | true;
}

export interface FitResult {
  trainer: JointTrainer;
  /** One row per epoch, task and split: epoch, task, split, loss, weight and each task metric. */
  history: ColumnTable;
  epochs: number;
  stoppedEarly: boolean;
  /** The epoch (1-based) with the best monitored value (see {@link EarlyStoppingOptions.monitor}). */
  bestEpoch: number;
  /** What was monitored ("loss", a task, or "task.metric") and its best value. */
  monitor: { name: string; mode: "min" | "max"; split: "train" | "validation"; best: number };
  /** With `recordSteps`: step, epoch, task, loss, weight; chart with `taskWeightsSpec(steps, { x: "step" })`. */
  steps?: ColumnTable;
  /** With a trainer made with `diagnostics`: cosines, gradient norms and conflict share by step. */
  diagnostics?: DiagnosticsTables;
}

/**
 * Thrown by `fit` when training stops on an error after it started (a NaN or infinite loss, a
 * throwing `onEpochEnd`, ...): it keeps what the epochs before the error produced. `cause` is the
 * original error. With `earlyStopping.restoreBest`, the best epoch's weights are back in the model
 * before this is thrown; otherwise the model keeps the weights of the last step that succeeded (a
 * step that fails applies no update).
 *
 * @example
 * try { await fit(options); } catch (err) {
 *   if (err instanceof FitError) await show(lossCurvesSpec(err.history));
 *   else throw err;
 * }
 */
export class FitError extends Error {
  override readonly name = "FitError";
  /** The history of the completed epochs (the rows `onEpochEnd` was given), as in `FitResult.history`. */
  readonly history: ColumnTable;
  /** How many epochs completed before the error. */
  readonly epochs: number;
  /** The epoch in which the error happened (1-based). */
  readonly failedEpoch: number;
  /** The completed epoch with the best monitored value, 0 if none completed. */
  readonly bestEpoch: number;
  /** Whether the best epoch's weights were restored (`earlyStopping.restoreBest` and a completed epoch). */
  readonly restoredBest: boolean;
  /** The trainer (made by fit from options, or the one given), to inspect or to go on training. */
  readonly trainer: JointTrainer;
  /** With `recordSteps`: the steps recorded up to the error. */
  readonly steps?: ColumnTable;

  constructor(message: string, details: { history: ColumnTable; epochs: number; failedEpoch: number; bestEpoch: number; restoredBest: boolean; trainer: JointTrainer; steps?: ColumnTable }, cause: unknown) {
    super(message, { cause });
    this.history = details.history;
    this.epochs = details.epochs;
    this.failedEpoch = details.failedEpoch;
    this.bestEpoch = details.bestEpoch;
    this.restoredBest = details.restoredBest;
    this.trainer = details.trainer;
    if (details.steps) this.steps = details.steps;
  }
}

/** An arquero table with every column any row has (arquero infers columns from the first row only). */
export function historyTable(rows: readonly Record<string, unknown>[]): ColumnTable {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return aq.from(rows.map((r) => Object.fromEntries(names.map((k) => [k, r[k] ?? null]))), names);
}

/** A value as an error message shows it: strings quoted, objects by kind. */
function describe(value: unknown): string {
  if (typeof value === "string") return `${JSON.stringify(value)} (a string)`;
  if (value === null || value === undefined || typeof value !== "object") return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return `an object (${(value as object).constructor?.name ?? "no prototype"})`;
}

function checkPositiveInt(value: unknown, name: string, example: string) {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new Error(`fit: ${name} must be a positive integer, but got ${describe(value)}. Give a whole number >= 1, e.g. ${example}.`);
  }
}

const EXAMPLE_TRAINER = "trainer: { model, tasks: [{ name: \"y\", loss: \"mse\" }], optimizer: tf.train.adam(0.01) }";

/** The trainer from fit's options, with the missing pieces named before the trainer's own checks run. */
function makeTrainer(spec: unknown): JointTrainer {
  if (spec instanceof JointTrainer) return spec;
  if (spec === null || typeof spec !== "object") {
    throw new Error(`fit: trainer must be a JointTrainer or its options, but got ${describe(spec)}. Give e.g. ${EXAMPLE_TRAINER}.`);
  }
  for (const key of ["model", "tasks", "optimizer"] as const) {
    if ((spec as Record<string, unknown>)[key] === undefined) {
      const what = key === "optimizer" ? "an optimizer, which applies the updates" : key === "model" ? "the model to train" : "the tasks: each a name, a loss and an optional weight";
      throw new Error(`fit: trainer.${key} is missing; a trainer needs ${what}. Give e.g. ${EXAMPLE_TRAINER}.`);
    }
  }
  return new JointTrainer(spec as JointTrainerOptions);
}

/** Where a piece of data sits in fit's options, for messages: `x`, `x[1]`, `validation.y["species"]`. */
function place(prefix: string, field: string, key?: string | number): string {
  return `${prefix}${field}${key === undefined ? "" : typeof key === "number" ? `[${key}]` : `[${JSON.stringify(key)}]`}`;
}

function isArrayData(v: unknown): v is ArrayData {
  return Array.isArray(v) || v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array;
}

const isList = (v: unknown): v is ArrayLike<unknown> => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));

/** A nested array whose every level has one length (its first element's) and whose leaves are numbers. */
function checkRectangular(value: unknown, where: string): void {
  const shape: number[] = [];
  for (let cur: unknown = value; isList(cur); cur = cur[0]) shape.push(cur.length);
  const walk = (node: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (typeof node !== "number") throw new Error(`fit: ${where}${path} is ${describe(node)}, not a number; plain-array data must hold numbers only.`);
      return;
    }
    if (!isList(node) || node.length !== shape[depth]) {
      const first = `${where}${"[0]".repeat(depth)}`;
      throw new Error(`fit: ${where} is a ragged array: ${where}${path} ${isList(node) ? `has ${node.length} elements` : `is ${describe(node)}`} but ${first} has ${shape[depth]}; every row needs the same length. Give a rectangular array or a tf.Tensor.`);
    }
    // Typed arrays hold numbers by construction.
    if (ArrayBuffer.isView(node) && depth === shape.length - 1) return;
    for (let i = 0; i < node.length; i++) walk(node[i], depth + 1, `${path}[${i}]`);
  };
  walk(value, 0, "");
}

/**
 * One piece of data as a live tensor with at least one dimension: a tensor is checked (not disposed,
 * not of another tfjs copy), an array is converted (and the tensor kept in `owned` to be disposed).
 */
function asTensor(value: unknown, where: string, owned: tf.Tensor[]): tf.Tensor {
  let t: tf.Tensor;
  if (value instanceof tf.Tensor) {
    if (value.isDisposed) {
      throw new Error(`fit: ${where} is a disposed tensor (shape [${value.shape}]): it was disposed (by tf.dispose, or at the end of the tf.tidy that made it) before fit could read it. Keep the data alive until fit returns.`);
    }
    t = value;
  } else if (isArrayData(value)) {
    // tf.tensor takes the shape from the first elements and does not check the rest: a ragged array
    // would become a wrong tensor (rows cut or run together), so check it here.
    checkRectangular(value, where);
    try {
      t = tf.tensor(value as tf.TensorLike);
    } catch (err) {
      throw new Error(`fit: ${where} is an array that does not make a tensor: ${(err as Error).message}. Give a rectangular array of numbers (every row the same length) or a tf.Tensor.`);
    }
    owned.push(t);
  } else {
    const v = value as { shape?: unknown; dtype?: unknown; dataId?: unknown } | null;
    if (v && typeof v === "object" && Array.isArray(v.shape) && typeof v.dtype === "string" && v.dataId !== undefined) {
      throw new Error(`fit: ${where} is a tensor of another copy of TensorFlow.js (not an instance of the tf.Tensor jointly uses); install one copy of @tensorflow/tfjs (npm ls @tensorflow/tfjs-core shows them).`);
    }
    throw new Error(`fit: ${where} must be a tf.Tensor or an array of numbers (one element per row), but got ${describe(value)}.`);
  }
  if (t.rank === 0) throw new Error(`fit: ${where} is a scalar (rank 0); it needs one row per example, e.g. a tensor of shape [rows, features].`);
  return t;
}

/** Model inputs with arrays made tensors; each input's place, for row-count messages. */
function prepareInputs(x: unknown, prefix: string, owned: tf.Tensor[]): { inputs: Inputs; parts: [string, tf.Tensor][] } {
  const name = place(prefix, "x");
  if (x === undefined || x === null) {
    throw new Error(`fit: ${name} is missing; give the inputs as a tensor, a list of tensors (one per model input) or tensors by input name.`);
  }
  // An array holding tensors is a list of inputs; any other array is one input's data.
  if (x instanceof tf.Tensor || (isArrayData(x) && !(Array.isArray(x) && (x as unknown[]).some((e) => e instanceof tf.Tensor)))) {
    const t = asTensor(x, name, owned);
    return { inputs: t, parts: [[name, t]] };
  }
  if (Array.isArray(x)) {
    const list = x.map((e, i) => asTensor(e, place(prefix, "x", i), owned));
    return { inputs: list, parts: list.map((t, i) => [place(prefix, "x", i), t]) };
  }
  if (typeof x !== "object") throw new Error(`fit: ${name} must be a tensor, a list of tensors or tensors by input name, but got ${describe(x)}.`);
  const entries = Object.entries(x as Record<string, unknown>);
  if (entries.length === 0) throw new Error(`fit: ${name} is an empty object; give the inputs by input name, e.g. { features: tensor }.`);
  const named = entries.map(([k, v]) => [k, asTensor(v, place(prefix, "x", k), owned)] as const);
  return { inputs: Object.fromEntries(named), parts: named.map(([k, t]) => [place(prefix, "x", k), t]) };
}

interface PreparedData {
  x: Inputs;
  y: Record<string, tf.Tensor>;
  masks?: Record<string, tf.Tensor>;
  rows: number;
}

/**
 * Check one data set against the trainer's tasks, before any training, so that every mistake is
 * named with its place and values instead of surfacing from inside a kernel (a GatherV2 index error,
 * a history of NaN): row counts of inputs, labels and masks, empty data, a task with no labelled row.
 */
function prepareData(trainer: JointTrainer, data: { x?: unknown; y?: unknown; masks?: unknown }, prefix: string, owned: tf.Tensor[]): PreparedData {
  const { inputs, parts } = prepareInputs(data.x, prefix, owned);
  const rows = (parts[0]![1].shape[0]) as number;
  const counts = parts.map(([where, t]) => `${where} has ${t.shape[0]}`);
  if (parts.some(([, t]) => t.shape[0] !== rows)) {
    throw new Error(`fit: the inputs have different row counts: ${counts.join(", ")}; every input needs one row per example.`);
  }
  const xName = parts.length === 1 ? parts[0]![0] : `${place(prefix, "x")} (each input)`;
  if (rows === 0) {
    throw new Error(`fit: the ${prefix ? "validation" : "training"} data set is empty: ${xName} has 0 rows. Give at least one row (did a filter or a split leave nothing?).`);
  }
  const taskNames = trainer.tasks.map((t) => t.name);
  const listed = taskNames.map((n) => JSON.stringify(n)).join(", ");
  const byTask = (field: "y" | "masks", value: unknown, required: boolean): Record<string, tf.Tensor> | undefined => {
    const name = place(prefix, field);
    if (value === undefined || value === null) {
      if (!required) return undefined;
      throw new Error(`fit: ${name} is missing; give the labels by task name, e.g. ${field}: { ${taskNames.map((n) => `${JSON.stringify(n)}: labels`).join(", ")} }.`);
    }
    if (typeof value !== "object" || value instanceof tf.Tensor || Array.isArray(value)) {
      throw new Error(`fit: ${name} must be an object keyed by task name (${listed}), but got ${value instanceof tf.Tensor ? "a tensor" : describe(value)}.`);
    }
    const out: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (!taskNames.includes(k)) throw new Error(`fit: ${place(prefix, field, k)} names no task; the tasks are ${listed}.`);
      if (v === undefined) continue;
      const t = asTensor(v, place(prefix, field, k), owned);
      if (t.shape[0] !== rows) {
        throw new Error(`fit: ${place(prefix, field, k)} has ${t.shape[0]} rows but ${xName} has ${rows}; task "${k}" needs one ${field === "y" ? "label" : "mask value"} per input row.`);
      }
      out[k] = t;
    }
    if (field === "y") {
      const missing = taskNames.filter((n) => !out[n]);
      if (missing.length) throw new Error(`fit: ${name} has no labels for the task${missing.length > 1 ? "s" : ""} ${missing.map((n) => JSON.stringify(n)).join(", ")}; every task needs labels (mask rows without one with masks).`);
    }
    return out;
  };
  const y = byTask("y", data.y, true)!;
  const masks = byTask("masks", data.masks, false);
  for (const [task, m] of Object.entries(masks ?? {})) {
    const where = place(prefix, "masks", task);
    if (m.size !== rows) throw new Error(`fit: ${where} has shape [${m.shape}]; a mask holds one value per row: shape [${rows}] or [${rows}, 1].`);
    // One read of a [rows] vector per fit: cheap next to an epoch.
    const values = m.dataSync() as ArrayLike<number>;
    let labelled = 0;
    for (let i = 0; i < values.length; i++) if (values[i] !== 0) labelled++;
    if (labelled === 0) {
      throw new Error(prefix
        ? `fit: ${where} is 0 on all ${rows} rows: task "${task}" has no labelled validation row, so its validation loss would be 0 whatever the model does. Give validation rows labelled for "${task}".`
        : `fit: ${where} is 0 on all ${rows} rows: task "${task}" has no labelled row and cannot be trained. Give it labelled rows, or remove it from the trainer's tasks.`);
    }
  }
  // NaN or ±Infinity in the data, named by place, row and column before any epoch (finite-checks.ts).
  checkDataFinite("fit", [...parts.map(([name, tensor]) => ({ name, tensor })), ...Object.entries(y).map(([k, tensor]) => ({ name: place(prefix, "y", k), tensor, ...(masks?.[k] ? { mask: masks[k] } : {}) }))]);
  return masks ? { x: inputs, y, masks, rows } : { x: inputs, y, rows };
}

/** What early stopping (and bestEpoch) watches, resolved against the tasks. */
interface Monitor {
  name: string;
  mode: "min" | "max";
  split: "train" | "validation";
  value(rows: readonly HistoryRow[]): number;
}

const HIGHER_IS_BETTER = new Set(["accuracy", "r2"]);

function resolveMonitor(trainer: JointTrainer, es: EarlyStoppingOptions | undefined, hasValidation: boolean): Monitor {
  const split = hasValidation ? "validation" : "train";
  const name = es?.monitor ?? "loss";
  const tasks = trainer.tasks;
  const choices = `"loss" (the unweighted sum of the task losses), a task name (${tasks.map((t) => JSON.stringify(t.name)).join(", ")}) or "task.metric"`;
  if (typeof name !== "string") throw new Error(`fit: earlyStopping.monitor must be ${choices}, but got ${describe(name)}.`);
  let task: string | undefined;
  let metric = "loss";
  if (name !== "loss") {
    if (tasks.some((t) => t.name === name)) task = name;
    else {
      const dot = name.lastIndexOf(".");
      task = dot > 0 ? name.slice(0, dot) : undefined;
      metric = dot > 0 ? name.slice(dot + 1) : "";
      const t = tasks.find((x) => x.name === task);
      if (!t) throw new Error(`fit: earlyStopping.monitor ${JSON.stringify(name)} names no task or metric; give ${choices}.`);
      if (metric !== "loss" && !(t.metrics as string[]).includes(metric)) {
        throw new Error(`fit: earlyStopping.monitor ${JSON.stringify(name)}: task "${t.name}" does not compute "${metric}" (its metrics: ${t.metrics.length ? t.metrics.join(", ") : "none"}); add it to the task's metrics, or monitor "${t.name}.loss".`);
      }
      if (metric !== "loss" && !hasValidation) {
        throw new Error(`fit: earlyStopping.monitor ${JSON.stringify(name)} needs validation data: metrics are computed on the validation set. Give validation: { x, y }, or monitor a loss.`);
      }
    }
  }
  const mode = es?.mode ?? (HIGHER_IS_BETTER.has(metric) ? "max" : "min");
  if (mode !== "min" && mode !== "max") throw new Error(`fit: earlyStopping.mode must be "min" or "max", but got ${describe(mode)}.`);
  const value = (rows: readonly HistoryRow[]) => {
    const own = rows.filter((r) => r.split === split && (task === undefined || r.task === task));
    return own.reduce((a, r) => a + Number(r[metric]), 0);
  };
  return { name, mode, split, value };
}

function checkEarlyStopping(es: EarlyStoppingOptions | undefined): void {
  if (es === undefined) return;
  if (es === null || typeof es !== "object") throw new Error(`fit: earlyStopping must be an object such as { patience: 5, restoreBest: true }, but got ${describe(es)}.`);
  const p = es.patience;
  if (typeof p !== "number" || !(p === Infinity || (Number.isInteger(p) && p >= 0))) {
    throw new Error(`fit: earlyStopping.patience must be an integer >= 0 (epochs without improvement before stopping) or Infinity, but got ${describe(p)}.`);
  }
  const d = es.minDelta;
  if (d !== undefined && (typeof d !== "number" || !Number.isFinite(d) || d < 0)) {
    throw new Error(`fit: earlyStopping.minDelta must be a finite number >= 0, but got ${describe(d)}.`);
  }
}

/** What fit's checkpoint holds besides the trainer: the loop's position and bookkeeping (JSON). */
interface FitLoopState {
  settings: { rows: number; batchSize: number; shuffle: boolean; seed: number; tasks: string[]; validation: boolean };
  completed: number;
  rng: number;
  rows: HistoryRow[];
  stepRows: StepRow[];
  best: number;
  bestEpoch: number;
  sinceBest: number;
  stop: "early" | "callback" | undefined;
  /** Set for a checkpoint taken inside an epoch: where the next batch starts and the epoch's running sums. */
  position: { epoch: number; start: number; batch: number; order: number[]; sums: Record<string, number>; weightSums: Record<string, number> } | undefined;
}

function checkCheckpointOptions(ck: CheckpointOptions | undefined, resume: string | true | undefined): Required<Omit<CheckpointOptions, "everySteps">> & { everySteps?: number } | undefined {
  if (resume !== undefined && resume !== true && (typeof resume !== "string" || resume === "")) {
    throw new Error(`fit: resume must be a checkpoint folder (a string) or true (resume from checkpoint.dir when it holds one), but got ${describe(resume)}.`);
  }
  if (resume === true && ck === undefined) throw new Error("fit: resume: true resumes from checkpoint.dir, but no checkpoint option was given; pass checkpoint: { dir } too, or resume: \"<folder>\".");
  if (ck === undefined) return undefined;
  if (ck === null || typeof ck !== "object" || typeof ck.dir !== "string" || ck.dir === "") {
    throw new Error(`fit: checkpoint must be { dir, every?, everySteps? } with dir a folder path, but got ${describe(ck)}${ck && typeof ck === "object" ? ` (dir ${describe(ck.dir)})` : ""}.`);
  }
  const every = ck.every ?? 1;
  checkPositiveInt(every, "checkpoint.every", "checkpoint: { dir, every: 1 }");
  if (ck.everySteps !== undefined) checkPositiveInt(ck.everySteps, "checkpoint.everySteps", "checkpoint: { dir, everySteps: 100 }");
  return ck.everySteps !== undefined ? { dir: ck.dir, every, everySteps: ck.everySteps } : { dir: ck.dir, every };
}

/** Keras's default: a progress line in a terminal; silent where the output has another home. */
function defaultVerbosity(): Verbosity {
  // In a kernel the live chart shows progress; a worker thread reports through its pool's events.
  return inNotebook() || !isMainThread ? 0 : 1;
}

let warnedLiveOutsideKernel = false;

/**
 * Train jointly over epochs of shuffled mini-batches, with validation, early stopping, a progress
 * line on stderr (`verbose`) and, in a notebook kernel, a live chart. The returned history is an
 * arquero table, ready to chart with `lossCurvesSpec`.
 *
 * Every input is checked before training starts (row counts, empty data, masks, disposed tensors,
 * the trainer's options), with an error naming the place and the values. Plain arrays are accepted
 * in place of tensors (see {@link FitInputs}). An error after training started (a NaN loss, ...)
 * is thrown as a {@link FitError} that keeps the history of the completed epochs.
 *
 * @example
 * const run = await fit({ trainer: { model, tasks, optimizer: tf.train.adam(0.01) }, x, y, epochs: 20, verbose: 2 });
 */
export async function fit(options: FitOptions): Promise<FitResult> {
  await ensureBackend();
  if (options === null || typeof options !== "object") throw new Error(`fit: give the options as an object ({ trainer, x, y, epochs }), but got ${describe(options)}.`);
  checkPositiveInt(options.epochs, "epochs", "epochs: 20");
  const batchSize = options.batchSize ?? 32;
  checkPositiveInt(batchSize, "batchSize", "batchSize: 32");
  const verbose = options.verbose ?? defaultVerbosity();
  if (verbose !== 0 && verbose !== 1 && verbose !== 2) throw new Error(`fit: verbose must be 0 (silent), 1 (a progress line) or 2 (one line per epoch), but got ${describe(verbose)}.`);
  checkEarlyStopping(options.earlyStopping);
  const trainer = makeTrainer(options.trainer);
  // Tensors fit makes from plain arrays: disposed on every way out, an error included.
  const owned: tf.Tensor[] = [];
  try {
    const train = prepareData(trainer, options, "", owned);
    let validation: PreparedData | undefined;
    if (options.validation !== undefined) {
      if (options.validation === null || typeof options.validation !== "object") {
        throw new Error(`fit: validation must be { x, y, masks? }, but got ${describe(options.validation)}.`);
      }
      validation = prepareData(trainer, options.validation, "validation.", owned);
    }
    const monitor = resolveMonitor(trainer, options.earlyStopping, validation !== undefined);
    let live = options.live ?? inNotebook();
    if (live && !inNotebook()) {
      live = false;
      if (!warnedLiveOutsideKernel) {
        warnedLiveOutsideKernel = true;
        process.emitWarning("fit: live: true draws a chart only in a notebook kernel (tslab); outside one it is ignored. The progress line (verbose) shows training instead.", { type: "JointlyWarning", code: "JOINTLY_LIVE_OUTSIDE_NOTEBOOK" });
      }
    }
    return await train_(options, trainer, train, validation, monitor, { batchSize, verbose, live });
  } finally {
    tf.dispose(owned);
  }
}

async function train_(
  options: FitOptions,
  trainer: JointTrainer,
  data: PreparedData,
  validation: PreparedData | undefined,
  monitor: Monitor,
  settings: { batchSize: number; verbose: Verbosity; live: boolean },
): Promise<FitResult> {
  const { batchSize } = settings;
  const n = data.rows;
  const es = options.earlyStopping;
  const seed = options.seed ?? 0;
  const rng = new Rng(seed);
  const rows: HistoryRow[] = [];
  const stepRows: StepRow[] = [];
  const chart = settings.live ? liveChart() : undefined;
  const progress = new ProgressPrinter(settings.verbose, options.epochs, process.stderr);
  const batches = Math.ceil(n / batchSize);
  const better = (v: number, best: number) =>
    Number.isFinite(v) && (!Number.isFinite(best) || (monitor.mode === "min" ? v < best - (es?.minDelta ?? 0) : v > best + (es?.minDelta ?? 0)));
  let lastDraw = 0;
  let best = NaN;
  let bestEpoch = 0;
  let sinceBest = 0;
  let bestWeights: tf.Tensor[] | undefined;
  let stoppedEarly = false;
  let epoch = 0;
  let completed = 0;
  const restoreBest = (): boolean => {
    if (!bestWeights) return false;
    const vars = trainer.variables();
    bestWeights.forEach((w, i) => (vars[i] as tf.Variable).assign(w));
    return true;
  };
  const stepsTable = () => (stepRows.length ? historyTable(stepRows.map((r) => ({ ...r }))) : aq.table({ step: [], epoch: [], task: [], loss: [], weight: [] }));
  const ck = checkCheckpointOptions(options.checkpoint, options.resume);
  const runSettings = { rows: n, batchSize, shuffle: options.shuffle ?? true, seed, tasks: trainer.tasks.map((t) => t.name), validation: validation !== undefined };
  let stop: FitLoopState["stop"];
  let position: FitLoopState["position"];
  const saveLoop = (at?: FitLoopState["position"]) => {
    const loop: FitLoopState = { settings: runSettings, completed, rng: rng.getState(), rows, stepRows, best, bestEpoch, sinceBest, stop, position: at };
    return saveRun(ck!.dir, "fit", trainer, loop, bestWeights ? { best: bestWeights } : {});
  };
  // Before any epoch: an optimizer whose state cannot be saved would fail at the first save.
  if (ck) for (const g of trainer.groups.groupStates()) checkSupported(g.optimizer, "fit: checkpoint");
  const resumeDir = options.resume === true ? (ck && (await hasCheckpoint(ck.dir)) ? ck.dir : undefined) : options.resume;
  if (resumeDir !== undefined) {
    const { loop, extra } = await loadRun<FitLoopState>(resumeDir, "fit", trainer);
    for (const [k, v] of Object.entries(runSettings)) {
      const saved = (loop.settings as Record<string, unknown>)[k];
      if (JSON.stringify(saved) !== JSON.stringify(v)) {
        tf.dispose(Object.values(extra).flat());
        throw new Error(`fit: resume from ${resumeDir}: the run was saved with ${k} ${JSON.stringify(saved)}, but this call has ${JSON.stringify(v)}; resume with the same data and settings (only epochs may change).`);
      }
    }
    rng.setState(loop.rng);
    rows.push(...loop.rows);
    stepRows.push(...loop.stepRows);
    ({ best, bestEpoch, sinceBest, completed, stop, position } = loop);
    bestWeights = extra["best"];
  }
  try {
    for (epoch = completed + 1; epoch <= options.epochs && stop === undefined; epoch++) {
      // A checkpoint taken inside this epoch holds its order (the RNG is already past it) and sums.
      const inside = position?.epoch === epoch ? position : undefined;
      position = undefined;
      const order = inside ? inside.order : options.shuffle ?? true ? rng.permutation(n) : Array.from({ length: n }, (_, i) => i);
      const sums: Record<string, number> = inside ? { ...inside.sums } : Object.fromEntries(trainer.tasks.map((t) => [t.name, 0]));
      // Weights averaged over the epoch's steps: what an aggregator implied (the task weights otherwise).
      const weightSums: Record<string, number> = inside ? { ...inside.weightSums } : Object.fromEntries(trainer.tasks.map((t) => [t.name, 0]));
      progress.startEpoch(batches);
      for (let start = inside?.start ?? 0, b = inside?.batch ?? 1; start < n; start += batchSize, b++) {
        const idx = order.slice(start, start + batchSize);
        tf.tidy(() => {
          const rowsT = tf.tensor1d(idx, "int32");
          const pick = (r: Record<string, tf.Tensor> | undefined) =>
            r && Object.fromEntries(Object.entries(r).map(([k, t]) => [k, tf.gather(t, rowsT)]));
          const result = trainer.step(gatherInputs(data.x, rowsT), pick(data.y)!, pick(data.masks));
          for (const [k, v] of Object.entries(result.losses)) sums[k] = (sums[k] as number) + v * idx.length;
          for (const [k, w] of Object.entries(result.weights)) weightSums[k] = (weightSums[k] as number) + w * idx.length;
          if (options.recordSteps) {
            for (const t of trainer.tasks) {
              stepRows.push({ step: result.step, epoch, task: t.name, loss: result.losses[t.name] as number, weight: result.weights[t.name] as number });
            }
          }
        });
        progress.batchEnd(epoch, b);
        if (ck?.everySteps && trainer.stepCount % ck.everySteps === 0 && start + batchSize < n) {
          await saveLoop({ epoch, start: start + batchSize, batch: b + 1, order, sums, weightSums });
        }
      }
      const weights = trainer.hasAggregator ? Object.fromEntries(Object.entries(weightSums).map(([k, w]) => [k, w / n])) : trainer.weights();
      const epochRows: HistoryRow[] = trainer.tasks.map((t) => ({
        epoch,
        task: t.name,
        split: "train",
        loss: (sums[t.name] as number) / n,
        weight: weights[t.name] as number,
      }));
      let ev: Evaluation | undefined;
      if (validation) {
        ev = trainer.evaluate(validation.x, validation.y, validation.masks ? { masks: validation.masks } : {});
        for (const t of trainer.tasks) {
          epochRows.push({ epoch, task: t.name, split: "validation", weight: weights[t.name] as number, ...(ev[t.name] as { loss: number }) });
        }
      }
      // After the rows, so they show the weights used in this epoch; DWA's next-epoch weights are set here.
      trainer.epochEnd(Object.fromEntries(epochRows.filter((r) => r.split === "train").map((r) => [r.task, r.loss])));
      rows.push(...epochRows);
      completed = epoch;
      // The unweighted value (see EarlyStoppingOptions): a dynamic weighting's drift must not pick the epoch.
      const monitored = monitor.value(epochRows);
      if (better(monitored, best)) {
        best = monitored;
        bestEpoch = epoch;
        sinceBest = 0;
        if (es?.restoreBest) {
          tf.dispose(bestWeights ?? []);
          bestWeights = trainer.variables().map((v) => tf.clone(v));
        }
      } else sinceBest++;
      progress.endEpoch({
        epoch,
        train: Object.fromEntries(epochRows.filter((r) => r.split === "train").map((r) => [r.task, r.loss])),
        ...(ev ? { validation: ev } : {}),
      });
      if (chart && Date.now() - lastDraw > 400) {
        lastDraw = Date.now();
        await chart.update(lossCurvesSpec(rows, { logScale: options.logScale, title: `Training: epoch ${epoch}` }));
      }
      const verdict = options.onEpochEnd ? await options.onEpochEnd(epoch, epochRows) : undefined;
      if (verdict === false) stop = "callback";
      else if (es && sinceBest >= es.patience) stop = "early";
      if (ck && (stop !== undefined || epoch % ck.every === 0 || epoch === options.epochs)) await saveLoop();
      if (stop !== undefined) break;
      // Let timers and display messages through between epochs.
      await new Promise((r) => setImmediate(r));
    }
  } catch (err) {
    let restored = false;
    try {
      restored = restoreBest();
    } finally {
      tf.dispose(bestWeights ?? []);
      bestWeights = undefined;
    }
    const message = (err as Error)?.message ?? String(err);
    const kept = completed ? `the history of the ${completed} completed epoch${completed > 1 ? "s" : ""} is in error.history` : "no epoch completed";
    const restoredNote = restored ? `; the weights of epoch ${bestEpoch} (best ${monitor.name} ${formatNumber(best)}) were restored` : "";
    // End a half-drawn live line; the message itself travels with the error (printed once, by whoever catches it).
    progress.close();
    throw new FitError(`fit stopped in epoch ${epoch} of ${options.epochs}: ${message} (${kept}${restoredNote}.)`, {
      history: historyTable(rows),
      epochs: completed,
      failedEpoch: epoch,
      bestEpoch,
      restoredBest: restored,
      trainer,
      ...(options.recordSteps ? { steps: stepsTable() } : {}),
    }, err);
  }
  stoppedEarly = stop === "early";
  let restored = false;
  try {
    restored = restoreBest();
  } finally {
    tf.dispose(bestWeights ?? []);
  }
  if (stoppedEarly) {
    progress.close(`early stopping in epoch ${completed}: no better ${monitor.split} ${monitor.name} for ${es!.patience} epoch${es!.patience === 1 ? "" : "s"}; best ${formatNumber(best)} in epoch ${bestEpoch}${restored ? ", whose weights were restored" : ""}`);
  } else progress.close(restored && bestEpoch < completed ? `restored the weights of epoch ${bestEpoch} (best ${monitor.split} ${monitor.name} ${formatNumber(best)})` : undefined);
  if (chart) await chart.close(lossCurvesSpec(rows, { logScale: options.logScale, title: "Per-task loss" }));
  const result: FitResult = {
    trainer,
    history: historyTable(rows),
    epochs: completed,
    stoppedEarly,
    bestEpoch,
    monitor: { name: monitor.name, mode: monitor.mode, split: monitor.split, best },
  };
  if (options.recordSteps) result.steps = stepsTable();
  const diagnostics = trainer.diagnostics();
  if (diagnostics) result.diagnostics = diagnostics;
  return result;
}
