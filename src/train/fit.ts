import * as tf from "@tensorflow/tfjs";
import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { ensureBackend } from "../backend/init.js";
import { lossCurvesSpec } from "../charts/loss-curves.js";
import { liveChart } from "../charts/show.js";
import { Rng } from "../data/random.js";
import { batchRows, gatherInputs, type Inputs } from "./model.js";
import { JointTrainer, type JointTrainerOptions } from "./joint-trainer.js";
import type { DiagnosticsTables } from "./diagnostics.js";

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

export interface FitOptions {
  /** An existing trainer, or the options to make one. */
  trainer: JointTrainer | JointTrainerOptions;
  x: Inputs;
  /** Labels by task name. */
  y: Record<string, tf.Tensor>;
  /** Optional masks by task name (1 = labelled). */
  masks?: Record<string, tf.Tensor>;
  epochs: number;
  batchSize?: number;
  /** Reshuffle the rows each epoch (default true), reproducibly from `seed`. */
  shuffle?: boolean;
  seed?: number;
  validation?: { x: Inputs; y: Record<string, tf.Tensor>; masks?: Record<string, tf.Tensor> };
  /** Stop when the summed validation loss (training loss without validation) stops improving. */
  earlyStopping?: { patience: number; minDelta?: number; restoreBest?: boolean };
  /** Called after each epoch with its rows; return `false` to stop. */
  onEpochEnd?: (epoch: number, rows: HistoryRow[]) => void | boolean | Promise<void | boolean>;
  /** Draw a loss chart that updates while training, in a notebook (default true there). */
  live?: boolean;
  /** Log-scale y axis for the live chart. */
  logScale?: boolean;
  /** Also record one row per step and task (step, epoch, task, loss, weight) in `FitResult.steps`. */
  recordSteps?: boolean;
}

export interface FitResult {
  trainer: JointTrainer;
  /** One row per epoch, task and split: epoch, task, split, loss, weight and each task metric. */
  history: ColumnTable;
  epochs: number;
  stoppedEarly: boolean;
  /** Epoch with the lowest monitored loss (1-based). */
  bestEpoch: number;
  /** With `recordSteps`: step, epoch, task, loss, weight; chart with `taskWeightsSpec(steps, { x: "step" })`. */
  steps?: ColumnTable;
  /** With a trainer made with `diagnostics`: cosines, gradient norms and conflict share by step. */
  diagnostics?: DiagnosticsTables;
}

/** An arquero table with every column any row has (arquero infers columns from the first row only). */
export function historyTable(rows: readonly Record<string, unknown>[]): ColumnTable {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return aq.from(rows.map((r) => Object.fromEntries(names.map((k) => [k, r[k] ?? null]))), names);
}

function checkPositiveInt(value: number, name: string) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`fit: ${name} must be a positive integer, but got ${value}.`);
}

/**
 * Train jointly over epochs of shuffled mini-batches, with validation, early stopping and a live
 * chart in notebooks. The returned history is an arquero table, ready to chart with `lossCurvesSpec`.
 */
export async function fit(options: FitOptions): Promise<FitResult> {
  await ensureBackend();
  const trainer = options.trainer instanceof JointTrainer ? options.trainer : new JointTrainer(options.trainer);
  checkPositiveInt(options.epochs, "epochs");
  const batchSize = options.batchSize ?? 32;
  checkPositiveInt(batchSize, "batchSize");
  const n = batchRows(options.x);
  const rng = new Rng(options.seed ?? 0);
  const rows: HistoryRow[] = [];
  const stepRows: StepRow[] = [];
  const chart = options.live ?? true ? liveChart() : undefined;
  let lastDraw = 0;
  let best = Infinity;
  let bestEpoch = 0;
  let sinceBest = 0;
  let bestWeights: tf.Tensor[] | undefined;
  let stoppedEarly = false;
  let epoch = 0;
  try {
    for (epoch = 1; epoch <= options.epochs; epoch++) {
      const order = options.shuffle ?? true ? rng.permutation(n) : Array.from({ length: n }, (_, i) => i);
      const sums: Record<string, number> = Object.fromEntries(trainer.tasks.map((t) => [t.name, 0]));
      // Weights averaged over the epoch's steps: what an aggregator implied (the task weights otherwise).
      const weightSums: Record<string, number> = Object.fromEntries(trainer.tasks.map((t) => [t.name, 0]));
      for (let start = 0; start < n; start += batchSize) {
        const idx = order.slice(start, start + batchSize);
        tf.tidy(() => {
          const rowsT = tf.tensor1d(idx, "int32");
          const pick = (r: Record<string, tf.Tensor> | undefined) =>
            r && Object.fromEntries(Object.entries(r).map(([k, t]) => [k, tf.gather(t, rowsT)]));
          const result = trainer.step(gatherInputs(options.x, rowsT), pick(options.y)!, pick(options.masks));
          for (const [k, v] of Object.entries(result.losses)) sums[k] = (sums[k] as number) + v * idx.length;
          for (const [k, w] of Object.entries(result.weights)) weightSums[k] = (weightSums[k] as number) + w * idx.length;
          if (options.recordSteps) {
            for (const t of trainer.tasks) {
              stepRows.push({ step: result.step, epoch, task: t.name, loss: result.losses[t.name] as number, weight: result.weights[t.name] as number });
            }
          }
        });
      }
      const weights = trainer.hasAggregator ? Object.fromEntries(Object.entries(weightSums).map(([k, w]) => [k, w / n])) : trainer.weights();
      const epochRows: HistoryRow[] = trainer.tasks.map((t) => ({
        epoch,
        task: t.name,
        split: "train",
        loss: (sums[t.name] as number) / n,
        weight: weights[t.name] as number,
      }));
      if (options.validation) {
        const ev = trainer.evaluate(options.validation.x, options.validation.y, { masks: options.validation.masks });
        for (const t of trainer.tasks) {
          epochRows.push({ epoch, task: t.name, split: "validation", weight: weights[t.name] as number, ...(ev[t.name] as { loss: number }) });
        }
      }
      rows.push(...epochRows);
      // After the rows, so they show the weights used in this epoch; DWA's next-epoch weights are set here.
      trainer.epochEnd(Object.fromEntries(epochRows.filter((r) => r.split === "train").map((r) => [r.task, r.loss])));
      const monitorSplit = options.validation ? "validation" : "train";
      const monitored = epochRows.filter((r) => r.split === monitorSplit).reduce((a, r) => a + r.weight * r.loss, 0);
      if (monitored < best - (options.earlyStopping?.minDelta ?? 0)) {
        best = monitored;
        bestEpoch = epoch;
        sinceBest = 0;
        if (options.earlyStopping?.restoreBest) {
          tf.dispose(bestWeights ?? []);
          bestWeights = trainer.variables().map((v) => tf.clone(v));
        }
      } else sinceBest++;
      if (chart && Date.now() - lastDraw > 400) {
        lastDraw = Date.now();
        await chart.update(lossCurvesSpec(rows, { logScale: options.logScale, title: `Training: epoch ${epoch}` }));
      }
      const verdict = options.onEpochEnd ? await options.onEpochEnd(epoch, epochRows) : undefined;
      if (verdict === false) break;
      if (options.earlyStopping && sinceBest >= options.earlyStopping.patience) {
        stoppedEarly = true;
        break;
      }
      // Let timers and display messages through between epochs.
      await new Promise((r) => setImmediate(r));
    }
    if (bestWeights) {
      const vars = trainer.variables();
      bestWeights.forEach((w, i) => (vars[i] as tf.Variable).assign(w));
    }
  } finally {
    tf.dispose(bestWeights ?? []);
  }
  if (chart) await chart.close(lossCurvesSpec(rows, { logScale: options.logScale, title: "Per-task loss" }));
  const result: FitResult = { trainer, history: historyTable(rows), epochs: Math.min(epoch, options.epochs), stoppedEarly, bestEpoch };
  if (options.recordSteps) result.steps = stepRows.length ? historyTable(stepRows.map((r) => ({ ...r }))) : aq.table({ step: [], epoch: [], task: [], loss: [], weight: [] });
  const diagnostics = trainer.diagnostics();
  if (diagnostics) result.diagnostics = diagnostics;
  return result;
}
