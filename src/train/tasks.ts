import type * as tf from "@tensorflow/tfjs";
import { lossNameOf, resolveLoss, type LossFn, type LossName } from "../losses/per-task.js";
import { checkMaskValues } from "../losses/label-checks.js";
import { checkMetricFits, type MetricName } from "./metrics.js";

/**
 * One objective of a joint model: which output it reads, its loss, its weight in the combined loss,
 * and the metrics reported for it.
 */
export interface Task {
  /** Unique name, used in histories, charts and errors. */
  name: string;
  /** The model output this task scores (an output name of the Trainable); defaults to `name`. */
  output?: string;
  loss: LossFn | LossName;
  /** Weight in the combined loss (default 1). Must be finite and >= 0. */
  weight?: number;
  metrics?: MetricName[];
}

/** A task with defaults filled in and its loss resolved. */
export interface ResolvedTask {
  name: string;
  output: string;
  loss: LossFn;
  weight: number;
  metrics: MetricName[];
  /** The built-in loss's name when the loss is one (given by name or as the exported function). */
  lossName?: LossName;
}

export function checkWeight(weight: number, owner: string): number {
  if (typeof weight !== "number" || !Number.isFinite(weight) || weight < 0) {
    throw new Error(`${owner}: the weight must be a finite number >= 0, but got ${weight}.`);
  }
  return weight;
}

/** Validate tasks against a model's outputs: unique names, known outputs, valid weights and losses. */
export function resolveTasks(tasks: readonly Task[], outputNames: readonly string[]): ResolvedTask[] {
  if (tasks.length === 0) throw new Error("At least one task is needed.");
  const seen = new Set<string>();
  return tasks.map((t) => {
    if (!t.name) throw new Error("Every task needs a name.");
    if (seen.has(t.name)) throw new Error(`Two tasks are named "${t.name}"; task names must be unique.`);
    seen.add(t.name);
    const output = t.output ?? t.name;
    if (!outputNames.includes(output)) {
      throw new Error(`Task "${t.name}" reads the output "${output}", but the model's outputs are ${outputNames.map((n) => `"${n}"`).join(", ")}.`);
    }
    const loss = resolveLoss(t.loss, `Task "${t.name}"`);
    const lossName = lossNameOf(loss);
    const metrics = t.metrics ?? [];
    if (!Array.isArray(metrics)) throw new Error(`Task "${t.name}": metrics must be an array of names (accuracy, mae, rmse, r2), but got ${String(metrics)}.`);
    for (const m of metrics) checkMetricFits(m, t.name, lossName);
    return { name: t.name, output, loss, weight: checkWeight(t.weight ?? 1, `Task "${t.name}"`), metrics, ...(lossName ? { lossName } : {}) };
  });
}

/** Labels (and optional masks) by task name; every task needs labels, and no unknown names are allowed. */
export function checkLabels(tasks: readonly ResolvedTask[], labels: Record<string, tf.Tensor>, rows: number, what = "labels") {
  const names = new Set(tasks.map((t) => t.name));
  for (const k of Object.keys(labels)) {
    if (!names.has(k)) throw new Error(`${what} name the task "${k}", which is not one of ${[...names].map((n) => `"${n}"`).join(", ")}.`);
  }
  for (const t of tasks) {
    const y = labels[t.name];
    if (!y) throw new Error(`No ${what} for the task "${t.name}".`);
    if (y.shape[0] !== rows) throw new Error(`The ${what} for task "${t.name}" have ${y.shape[0]} rows but the inputs have ${rows}.`);
  }
}

/**
 * Masks by task name: only known tasks (the message lists them all), one entry per row, values 0
 * and 1 only (read back once per mask tensor and remembered; label-checks.ts).
 */
export function checkMasks(tasks: readonly ResolvedTask[], masks: Record<string, tf.Tensor>, rows: number): void {
  const names = tasks.map((t) => t.name);
  for (const [k, m] of Object.entries(masks)) {
    if (!names.includes(k)) throw new Error(`masks name the task "${k}", which is not one of ${names.map((n) => `"${n}"`).join(", ")}.`);
    if (m.size !== rows) throw new Error(`The mask for task "${k}" has ${m.size} entries (shape [${m.shape}]) but the inputs have ${rows} rows; give one 0/1 entry per row.`);
    checkMaskValues(m, `mask for task "${k}"`);
  }
}

/**
 * An error from a task's loss, with the task named in front (its loss and output too) and, when the
 * message does not already give them, the shapes of the labels and predictions.
 */
export function taskError(t: ResolvedTask, err: unknown, labels: tf.Tensor | undefined, pred: tf.Tensor | undefined): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (msg.startsWith(`Task "${t.name}"`)) return err instanceof Error ? err : new Error(msg);
  const shapes = /shape \[/.test(msg) || !labels || !pred || labels.isDisposed || pred.isDisposed ? "" : ` (labels of shape [${labels.shape}], output "${t.output}" of shape [${pred.shape}])`;
  const e = new Error(`Task "${t.name}" (loss ${t.lossName ?? "custom"}, output "${t.output}"): ${msg}${shapes}`, { cause: err });
  return e;
}
