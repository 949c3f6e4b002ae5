import type * as tf from "@tensorflow/tfjs";
import { resolveLoss, type LossFn, type LossName } from "../losses/per-task.js";
import type { MetricName } from "./metrics.js";

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
    return {
      name: t.name,
      output,
      loss: resolveLoss(t.loss, `Task "${t.name}"`),
      weight: checkWeight(t.weight ?? 1, `Task "${t.name}"`),
      metrics: t.metrics ?? [],
    };
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
