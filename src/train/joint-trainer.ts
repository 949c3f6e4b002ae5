import * as tf from "@tensorflow/tfjs";
import { batchRows, trainable, uniqueVariables, type Inputs, type Trainable } from "./model.js";
import { checkLabels, checkWeight, resolveTasks, type ResolvedTask, type Task } from "./tasks.js";
import { computeMetric } from "./metrics.js";
import { OptimizerGroups } from "./optimizer-groups.js";

export interface JointTrainerOptions {
  /** A Layers model, several keyed by name, or a hand-made {@link Trainable}. */
  model: Trainable | tf.LayersModel | Record<string, tf.LayersModel>;
  tasks: Task[];
  /**
   * One optimizer for every variable, or {@link OptimizerGroups}: an optimizer (and schedule) per
   * variable group, covering each trained variable exactly once (e.g. the trunk and each head).
   */
  optimizer: tf.Optimizer | OptimizerGroups;
  /** Train only these variables (default: all of the model's trainable variables). */
  variables?: tf.Variable[];
  /** An extra term added to the minimised total at each step, e.g. `() => l2(kernels, 1e-4)`; reported as `penalty`. */
  penalty?: () => tf.Scalar;
}

/** What one joint step did. */
export interface StepResult {
  /** 1-based count of steps taken by this trainer. */
  step: number;
  /** Unweighted loss of each task on this batch. */
  losses: Record<string, number>;
  /** The combined (weighted) loss that was minimised, penalty included. */
  total: number;
  /** The value of the `penalty` term, when the trainer has one. */
  penalty?: number;
}

/** Loss and metrics of each task on a data set. */
export type Evaluation = Record<string, { loss: number } & Record<string, number>>;

/**
 * Trains any set of models on several tasks at once. Each step runs one forward pass, computes every
 * task's loss, minimises the weighted sum, and applies one gradient to each trainable variable: a
 * variable shared by several models or tasks gets the sum of its gradients, once.
 */
export class JointTrainer {
  readonly model: Trainable;
  readonly tasks: ResolvedTask[];
  /** The optimizer or groups given in the options. */
  readonly optimizer: tf.Optimizer | OptimizerGroups;
  /** The groups that apply the updates (one group "all" when a single optimizer was given). */
  readonly groups: OptimizerGroups;
  private readonly penalty?: () => tf.Scalar;
  private readonly vars: tf.Variable[];
  private steps = 0;
  private readonly lastFinite = new Map<string, { value: number; step: number }>();

  constructor(options: JointTrainerOptions) {
    this.model = trainable(options.model);
    this.tasks = resolveTasks(options.tasks, this.model.outputNames());
    this.optimizer = options.optimizer;
    this.vars = uniqueVariables(options.variables ?? this.model.variables());
    if (this.vars.length === 0) throw new Error("JointTrainer: the variable set is empty; there is nothing to train.");
    const opt = options.optimizer;
    if (!(opt instanceof tf.Optimizer) && !(opt instanceof OptimizerGroups)) {
      throw new Error(`JointTrainer: optimizer must be a tf.Optimizer or optimizerGroups(...), but got ${String(opt)}.`);
    }
    this.groups = (opt instanceof OptimizerGroups ? opt : new OptimizerGroups({ all: { variables: this.vars, optimizer: opt } })).bind(this.vars);
    if (options.penalty !== undefined && typeof options.penalty !== "function") {
      throw new Error(`JointTrainer: penalty must be a function returning a scalar, but got ${String(options.penalty)}.`);
    }
    this.penalty = options.penalty;
  }

  /** Current learning rate of each optimizer group ("all" for a single optimizer). */
  learningRates(): Record<string, number> {
    return this.groups.learningRates();
  }

  /** Number of steps taken. */
  get stepCount(): number {
    return this.steps;
  }

  /** The variables this trainer updates. */
  variables(): tf.Variable[] {
    return [...this.vars];
  }

  /** Current task weights by name. */
  weights(): Record<string, number> {
    return Object.fromEntries(this.tasks.map((t) => [t.name, t.weight]));
  }

  /** Change task weights (e.g. from a schedule); names must be known, weights finite and >= 0. */
  setWeights(weights: Record<string, number>): void {
    for (const [name, w] of Object.entries(weights)) {
      const task = this.tasks.find((t) => t.name === name);
      if (!task) throw new Error(`setWeights: unknown task "${name}"; tasks are ${this.tasks.map((t) => `"${t.name}"`).join(", ")}.`);
      task.weight = checkWeight(w, `Task "${name}"`);
    }
  }

  /** The per-task losses (unweighted) as one vector, for use inside a gradient computation. */
  private taskLosses(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined, training: boolean): tf.Tensor1D {
    const outputs = this.model.forward(inputs, training);
    const losses = this.tasks.map((t) => {
      const pred = outputs[t.output];
      if (!pred) throw new Error(`Task "${t.name}": the model produced no output "${t.output}".`);
      return t.loss(labels[t.name] as tf.Tensor, pred, masks?.[t.name]);
    });
    return tf.stack(losses) as tf.Tensor1D;
  }

  /**
   * One joint training step on a batch. Throws, before any update is applied, if a task's loss is
   * NaN or infinite, naming the step, the task and its last finite value.
   */
  step(inputs: Inputs, labels: Record<string, tf.Tensor>, masks?: Record<string, tf.Tensor>): StepResult {
    const rows = batchRows(inputs);
    checkLabels(this.tasks, labels, rows);
    if (masks) checkLabels(this.tasks.filter((t) => masks[t.name]), masks, rows, "masks");
    const stepNo = this.steps + 1;
    const weights = tf.tensor1d(this.tasks.map((t) => t.weight));
    let lossVec: tf.Tensor1D | undefined;
    let penaltyT: tf.Scalar | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const l = this.taskLosses(inputs, labels, masks, true);
      lossVec = tf.keep(l);
      const weighted = tf.sum(tf.mul(l, weights)) as tf.Scalar;
      if (!this.penalty) return weighted;
      const p = this.penalty();
      if (!(p instanceof tf.Tensor) || p.rank !== 0) throw new Error(`JointTrainer: penalty() must return a scalar tensor, but returned ${p instanceof tf.Tensor ? `shape [${p.shape}]` : String(p)}.`);
      penaltyT = tf.keep(p);
      return tf.add(weighted, p) as tf.Scalar;
    }, this.vars);
    weights.dispose();
    const values = lossVec!.dataSync();
    const total = value.dataSync()[0] as number;
    const penalty = penaltyT ? (penaltyT.dataSync()[0] as number) : undefined;
    lossVec!.dispose();
    value.dispose();
    penaltyT?.dispose();
    const losses: Record<string, number> = {};
    this.tasks.forEach((t, i) => {
      const v = values[i] as number;
      if (!Number.isFinite(v)) {
        tf.dispose(grads);
        const last = this.lastFinite.get(t.name);
        throw new Error(
          `Task "${t.name}": the loss is ${v} at step ${stepNo}` +
            (last ? ` (last finite value ${last.value} at step ${last.step})` : " (no finite value seen yet)") +
            "; no update was applied. Lower the learning rate, check the labels for NaN, or clip gradients.",
        );
      }
      losses[t.name] = v;
    });
    if (penalty !== undefined && !Number.isFinite(penalty)) {
      tf.dispose(grads);
      throw new Error(`JointTrainer: the penalty is ${penalty} at step ${stepNo}; no update was applied.`);
    }
    try {
      this.groups.apply(grads);
    } finally {
      tf.dispose(grads);
    }
    this.steps = stepNo;
    for (const [name, v] of Object.entries(losses)) this.lastFinite.set(name, { value: v, step: stepNo });
    return penalty === undefined ? { step: stepNo, losses, total } : { step: stepNo, losses, total, penalty };
  }

  /** Loss and metrics of each task on a whole data set (one forward pass), without training. */
  evaluate(inputs: Inputs, labels: Record<string, tf.Tensor>, options: { masks?: Record<string, tf.Tensor> } = {}): Evaluation {
    const rows = batchRows(inputs);
    checkLabels(this.tasks, labels, rows);
    const outputs = tf.tidy(() => {
      const out = this.model.forward(inputs, false);
      return Object.fromEntries(this.tasks.map((t) => [t.name, tf.keep(out[t.output] as tf.Tensor)]));
    });
    try {
      const result: Evaluation = {};
      for (const t of this.tasks) {
        const pred = outputs[t.name] as tf.Tensor;
        const y = labels[t.name] as tf.Tensor;
        const mask = options.masks?.[t.name];
        const loss = tf.tidy(() => t.loss(y, pred, mask).dataSync()[0] as number);
        const entry: { loss: number } & Record<string, number> = { loss };
        if (t.metrics.length) {
          let yv = Array.from(y.dataSync());
          let pv = Array.from(pred.dataSync());
          const width = pred.shape.slice(1).reduce((a, b) => a * (b as number), 1);
          if (mask) {
            const m = mask.dataSync();
            const keep = Array.from(m, (x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
            const yw = yv.length / rows;
            yv = keep.flatMap((i) => yv.slice(i * yw, (i + 1) * yw));
            pv = keep.flatMap((i) => pv.slice(i * width, (i + 1) * width));
          }
          for (const m of t.metrics) entry[m] = computeMetric(m, yv, pv, width, t.name);
        }
        result[t.name] = entry;
      }
      return result;
    } finally {
      tf.dispose(Object.values(outputs));
    }
  }
}
