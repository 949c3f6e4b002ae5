import * as tf from "@tensorflow/tfjs";
import { trainable, uniqueVariables, type Inputs, type Trainable } from "./model.js";
import { checkLabels, checkMasks, checkWeight, resolveTasks, taskError, type ResolvedTask, type Task } from "./tasks.js";
import { checkStepBatch, freeOnFailure } from "./step-scope.js";
import { batchItems, checkBatchFinite, checkGradientsFinite, dataProblemIn, firstNonFinite, multiIndex, type BadGradient } from "./finite-checks.js";
import { computeMetric } from "./metrics.js";
import { OptimizerGroups } from "./optimizer-groups.js";
import { aggregate, aggregatorNames, aggregators, GradVac, type Aggregation, type AggregatorName } from "../aggregation/index.js";
import { createWeighting, isStateful, weightingNames, weightingRequirements, type MethodState, type Weighting, type WeightingName, type WeightingRequirement } from "../weighting/index.js";
import {
  captureForPerTask, gradientMatrix, perTaskVariableGrads, representationGradients, resolveShared, unflatten,
  type GradientMode, type SharedSelector,
} from "./task-gradients.js";
import { DiagnosticsRecorder, gradientNorms, type DiagnosticsTables, type GradientDiagnostics } from "./diagnostics.js";
import { variableGradsShared } from "../layers/step-cache.js";
import type { UpstreamCapture } from "./direct-forward.js";

/**
 * A loss weighting by registry name with its options (`numTasks` is filled in). The name is one of
 * {@link WeightingName}, so a misspelt name fails at compile time.
 */
export interface WeightingSpec {
  name: WeightingName;
  options?: Record<string, unknown>;
}

/** A gradient aggregator by registry name ({@link AggregatorName}: a typo fails at compile time) with its options. */
export interface AggregatorSpec {
  name: AggregatorName;
  options?: Record<string, unknown>;
}

/** A hand-made or stateful aggregator (e.g. a `GradVac` instance): J (T x d) in, direction and weights out. */
export type AggregatorObject = { aggregate(J: number[][]): Aggregation };
export type AggregatorFunction = (J: number[][]) => Aggregation;

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
  /**
   * A dynamic loss weighting (see `weightingNames`): a name, `{ name, options }`, or a `Weighting`
   * instance for as many tasks. Each step it gets what `weightingRequirements` says it needs (the
   * losses; for GradNorm the norms ‖∇_W (w_i L_i)‖ on the `shared` variables, each from that task's
   * own backward pass) and its weights become the task weights. Epoch-cadence methods (DWA) are
   * updated by {@link JointTrainer.epochEnd}, which `fit` calls. Not together with `aggregator`.
   */
  weighting?: WeightingName | WeightingSpec | Weighting;
  /**
   * A gradient aggregator (see `aggregatorNames`): a name, `{ name, options }`, an object with
   * `aggregate(J)` (e.g. `new GradVac()`), or a function of J. The shared variables move along the
   * aggregated direction of the per-task gradients; every other variable gets Σ_i c_i ∇L_i with c
   * set by `heads`. Not together with `weighting`.
   */
  aggregator?: AggregatorName | AggregatorSpec | AggregatorObject | AggregatorFunction;
  /** The shared parameters (variables, layers, or both) the per-task gradients are taken over, in mode "parameters". */
  shared?: SharedSelector;
  /**
   * Where per-task gradients are taken (default "parameters"): over `shared`, or, in
   * "representation" mode (MGDA-UB), over the forward-pass output named by `representation`, with
   * everything upstream of it treated as shared. See task-gradients.ts for the costs.
   */
  mode?: GradientMode;
  /** The output of the forward pass holding the shared representation (mode "representation"). */
  representation?: string;
  /**
   * With an aggregator, the coefficients of the non-shared variables' gradient Σ_i c_i ∇L_i:
   * "task-weights" (default, c = the task weights: each head gets its own task's gradient, as in
   * the plain step) or "implied" (c = the aggregator's weights: with a linear aggregator the whole
   * step is then the joint step with those weights, as in Sener & Koltun's MGDA-UB).
   */
  heads?: "task-weights" | "implied";
  /** Record per-task gradient norms and cosines every `every` steps (default 1); see {@link JointTrainer.diagnostics}. */
  diagnostics?: boolean | { every?: number };
}

/** What one joint step did. */
export interface StepResult {
  /** 1-based count of steps taken by this trainer. */
  step: number;
  /** Unweighted loss of each task on this batch. */
  losses: Record<string, number>;
  /** The combined (weighted) loss that was minimised, penalty included; with an aggregator Σ λ_i L_i (+ penalty) for its implied weights λ. */
  total: number;
  /** The value of the `penalty` term, when the trainer has one. */
  penalty?: number;
  /**
   * The task weights of this step: those the loss sum used or, with an aggregator, the weights it
   * implied for the shared update.
   */
  weights: Record<string, number>;
  /** Gradient norms, cosines and conflict share, on the steps diagnostics are recorded. */
  diagnostics?: GradientDiagnostics;
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
  private epochs = 0;
  private readonly lastFinite = new Map<string, { value: number; step: number }>();
  /** The weighting instance, when the options named one. */
  readonly weighting?: Weighting;
  private readonly requirement?: WeightingRequirement;
  private readonly aggregator?: ResolvedAggregator;
  /** The Layers models given, whose non-trainable weights (batch-norm statistics) a checkpoint also holds. */
  private readonly layersModels: tf.LayersModel[];
  /** Where per-task gradients are taken. */
  readonly mode: GradientMode;
  private readonly shared?: tf.Variable[];
  private readonly representation?: string;
  private readonly heads: "task-weights" | "implied";
  private readonly diagnosticsEvery: number;
  private readonly recorder?: DiagnosticsRecorder;
  private lastWeights?: number[];

  constructor(options: JointTrainerOptions) {
    if (options === null || typeof options !== "object") throw new Error(`JointTrainer: options must be an object { model, tasks, optimizer }, but got ${String(options)}.`);
    // Before anything reads it: tf.Optimizer's instanceof reads .minimize, a TypeError on undefined.
    if (options.optimizer === undefined || options.optimizer === null) {
      throw new Error("JointTrainer: no optimizer given; pass one in the options, e.g. new JointTrainer({ model, tasks, optimizer: tf.train.adam(1e-3) }) (or optimizerGroups(...) for one per variable group).");
    }
    this.model = trainable(options.model);
    this.layersModels = options.model instanceof tf.LayersModel ? [options.model] : isTrainableLike(options.model) ? [] : Object.values(options.model as Record<string, tf.LayersModel>);
    this.tasks = resolveTasks(options.tasks, this.model.outputNames());
    this.optimizer = options.optimizer;
    this.vars = uniqueVariables(options.variables ?? this.model.variables());
    if (this.vars.length === 0) throw new Error("JointTrainer: the variable set is empty; there is nothing to train.");
    const opt = options.optimizer;
    if (typeof opt !== "object" || (!(opt instanceof tf.Optimizer) && !(opt instanceof OptimizerGroups))) {
      throw new Error(`JointTrainer: optimizer must be a tf.Optimizer or optimizerGroups(...), but got ${String(opt)}; e.g. tf.train.adam(1e-3).`);
    }
    this.groups = (opt instanceof OptimizerGroups ? opt : new OptimizerGroups({ all: { variables: this.vars, optimizer: opt } })).bind(this.vars);
    if (options.penalty !== undefined && typeof options.penalty !== "function") {
      throw new Error(`JointTrainer: penalty must be a function returning a scalar, but got ${String(options.penalty)}.`);
    }
    this.penalty = options.penalty;

    const T = this.tasks.length;
    if (options.weighting !== undefined && options.aggregator !== undefined) {
      throw new Error(`JointTrainer: give either weighting (${describeSpec(options.weighting)}) or aggregator (${describeSpec(options.aggregator)}), not both: a weighting sets the loss weights, an aggregator replaces the weighted sum on the shared variables.`);
    }
    if (options.weighting !== undefined) {
      this.weighting = resolveWeighting(options.weighting, T);
      // A hand-made weighting not in the registry is assumed to read only the losses.
      this.requirement = Object.hasOwn(weightingRequirements, this.weighting.name)
        ? weightingRequirements[this.weighting.name as keyof typeof weightingRequirements]
        : { needs: ["losses"], cadence: "step", objective: "losses", sum: "free" };
    }
    if (options.aggregator !== undefined) this.aggregator = resolveAggregator(options.aggregator);
    const mode = options.mode ?? "parameters";
    if (mode !== "parameters" && mode !== "representation") throw new Error(`JointTrainer: mode must be "parameters" or "representation", but got ${JSON.stringify(mode)}.`);
    this.mode = mode;
    const heads = options.heads ?? "task-weights";
    if (heads !== "task-weights" && heads !== "implied") throw new Error(`JointTrainer: heads must be "task-weights" or "implied", but got ${JSON.stringify(heads)}.`);
    this.heads = heads;
    const diag = options.diagnostics ?? false;
    const every = typeof diag === "object" && diag !== null ? diag.every ?? 1 : 1;
    if (!Number.isInteger(every) || every < 1) throw new Error(`JointTrainer: diagnostics.every must be a positive integer, but got ${every}.`);
    this.diagnosticsEvery = every;
    if (diag) this.recorder = new DiagnosticsRecorder(this.tasks.map((t) => t.name));
    const needsNorms = this.requirement?.needs.includes("gradNorms") ?? false;

    if (mode === "representation") {
      const outputs = this.model.outputNames();
      if (options.representation === undefined) {
        throw new Error(`JointTrainer: mode "representation" needs representation: the name of the forward-pass output holding the shared representation; the outputs are ${outputs.map((n) => `"${n}"`).join(", ")}.`);
      }
      if (!outputs.includes(options.representation)) {
        throw new Error(`JointTrainer: representation "${options.representation}" is not an output of the model; the outputs are ${outputs.map((n) => `"${n}"`).join(", ")}.`);
      }
      if (options.shared !== undefined) throw new Error(`JointTrainer: shared is for mode "parameters"; in mode "representation" everything upstream of "${options.representation}" is shared.`);
      if (needsNorms) {
        throw new Error(`JointTrainer: the weighting "${this.weighting!.name}" needs gradient norms on a shared layer's weights (${this.requirement!.gradNorms ?? "gradNorms"}); use mode "parameters" with shared.`);
      }
      this.representation = options.representation;
    } else {
      if (options.representation !== undefined) throw new Error(`JointTrainer: representation "${options.representation}" is only used with mode "representation", but the mode is "parameters".`);
      const why = this.aggregator ? `the aggregator "${this.aggregator.name}"` : needsNorms ? `the weighting "${this.weighting!.name}" (it needs gradient norms)` : diag ? "diagnostics" : undefined;
      if (options.shared !== undefined || why) {
        if (options.shared === undefined) throw new Error(`JointTrainer: ${why} needs shared: the shared variables or layers the per-task gradients are taken over (or mode "representation").`);
        this.shared = resolveShared(options.shared, "JointTrainer shared");
        const trained = new Set(this.vars.map((v) => v.id));
        const outside = this.shared.filter((v) => !trained.has(v.id)).map((v) => v.name);
        if (outside.length) throw new Error(`JointTrainer: the shared variables ${outside.join(", ")} are not among the variables being trained.`);
      }
    }
  }

  /**
   * Every variable whose value a checkpoint must hold: the trained ones, then the Layers models'
   * other weights (batch-norm moving statistics, frozen layers), each once.
   */
  stateVariables(): tf.Variable[] {
    const rest = this.layersModels.flatMap((m) => m.weights.map((w) => w.read() as tf.Variable));
    return uniqueVariables([...this.vars, ...rest]);
  }

  /**
   * The trainer's own state between steps, as JSON: step and epoch counters, task weights, the
   * weighting's and the aggregator's state. With the variables and the optimizers' state it is a
   * whole checkpoint (see fit's `checkpoint`). `unsaved` names state that could not be read
   * (a hand-made weighting or aggregator without `exportState`).
   */
  exportState(): TrainerState {
    const unsaved: string[] = [];
    let weighting: MethodState | null = null;
    if (this.weighting) {
      if (isStateful(this.weighting)) weighting = this.weighting.exportState();
      else if (!STATELESS_WEIGHTINGS.has(this.weighting.name)) unsaved.push(`weighting "${this.weighting.name}" (it has no exportState)`);
    }
    let aggregator: MethodState | null = null;
    if (this.aggregator) {
      if (this.aggregator.state) aggregator = this.aggregator.state.exportState();
      else if (this.aggregator.custom) unsaved.push(`aggregator "${this.aggregator.name}" (it has no exportState)`);
    }
    return {
      steps: this.steps,
      epochs: this.epochs,
      taskWeights: this.tasks.map((t) => t.weight),
      lastWeights: this.lastWeights ? [...this.lastWeights] : null,
      lastFinite: [...this.lastFinite.entries()].map(([task, v]) => ({ task, ...v })),
      weighting,
      aggregator,
      unsaved,
    };
  }

  /** Put back a state from {@link JointTrainer.exportState} (of a trainer with the same tasks, weighting and aggregator). */
  importState(state: TrainerState): void {
    const T = this.tasks.length;
    const count = (v: unknown, what: string) => {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new Error(`JointTrainer.importState: ${what} must be an integer >= 0, but got ${String(v)}.`);
      return v;
    };
    if (!Array.isArray(state?.taskWeights) || state.taskWeights.length !== T) {
      throw new Error(`JointTrainer.importState: the state has ${Array.isArray(state?.taskWeights) ? state.taskWeights.length : "no"} task weights, but this trainer has ${T} tasks (${this.tasks.map((t) => `"${t.name}"`).join(", ")}).`);
    }
    if ((state.weighting !== null) !== (this.weighting !== undefined && isStateful(this.weighting))) {
      throw new Error(`JointTrainer.importState: the state ${state.weighting !== null ? "holds" : "has no"} weighting state, but this trainer ${this.weighting ? `uses the weighting "${this.weighting.name}"` : "has no weighting"}; resume with the trainer options the run was started with.`);
    }
    if ((state.aggregator !== null) !== (this.aggregator?.state !== undefined)) {
      throw new Error(`JointTrainer.importState: the state ${state.aggregator !== null ? "holds" : "has no"} aggregator state, but this trainer ${this.aggregator ? `uses the aggregator "${this.aggregator.name}"` : "has no aggregator"}; resume with the trainer options the run was started with.`);
    }
    const steps = count(state.steps, "steps");
    const epochs = count(state.epochs, "epochs");
    this.tasks.forEach((t, i) => (t.weight = checkWeight(state.taskWeights[i] as number, `Task "${t.name}"`)));
    if (state.weighting !== null) (this.weighting as unknown as { importState(s: MethodState): void }).importState(state.weighting);
    if (state.aggregator !== null) this.aggregator!.state!.importState(state.aggregator);
    this.steps = steps;
    this.epochs = epochs;
    if (state.lastWeights) this.lastWeights = [...state.lastWeights];
    else delete this.lastWeights;
    this.lastFinite.clear();
    for (const { task, value, step } of state.lastFinite ?? []) this.lastFinite.set(task, { value, step });
  }

  /** Whether the shared variables follow an aggregator (then the step weights are implied, not set). */
  get hasAggregator(): boolean {
    return this.aggregator !== undefined;
  }

  /** Recorded diagnostics (cosines, norms, conflict share) as arquero tables, or undefined without `diagnostics`. */
  diagnostics(): DiagnosticsTables | undefined {
    return this.recorder?.tables();
  }

  /** The weights the last step used (or implied, with an aggregator), by task; undefined before the first step. */
  stepWeights(): Record<string, number> | undefined {
    return this.lastWeights && this.named(this.lastWeights);
  }

  private named(values: readonly number[]): Record<string, number> {
    return Object.fromEntries(this.tasks.map((t, i) => [t.name, values[i] as number]));
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

  /**
   * Σ_i w_i L_i as scalar ops, added in task order; a term of weight 1 is its loss itself (x·1 = x
   * exactly). Stacking the losses, multiplying by a weight vector and reducing it took three ops and
   * their gradients (about ten kernels a step) for a sum of T numbers. A weight other than 1 is a
   * scalar made in the step (and freed with it), so no tensor is kept between steps.
   */
  private weightedSum(losses: readonly tf.Scalar[], weights: readonly number[]): tf.Scalar {
    const terms = losses.map((l, i) => {
      const w = weights[i] as number;
      return w === 1 ? l : (tf.mul(l, w) as tf.Scalar);
    });
    if (terms.length === 1) return terms[0] as tf.Scalar;
    if (terms.length === 2) return tf.add(terms[0] as tf.Scalar, terms[1] as tf.Scalar) as tf.Scalar;
    return tf.addN(terms) as tf.Scalar;
  }

  /**
   * Frees what the trainer keeps between steps: nothing at present (the step makes its weight
   * scalars afresh), but callers that make a trainer should still call it. The model and optimizer
   * stay the caller's.
   */
  dispose(): void {}

  /**
   * Labels (and masks) checked like `checkLabels`, without its allocations on the common case:
   * exactly one entry per task with the batch's row count. Anything else goes to `checkLabels`,
   * which names the problem.
   */
  private checkStepLabels(labels: Record<string, tf.Tensor>, rows: number): void {
    const tasks = this.tasks;
    let ok = true;
    for (let i = 0; i < tasks.length && ok; i++) {
      const y = labels[(tasks[i] as ResolvedTask).name];
      ok = y !== undefined && y.shape[0] === rows;
    }
    // All T task names present and no more keys: then no key names an unknown task.
    if (!ok || Object.keys(labels).length !== tasks.length) checkLabels(tasks, labels, rows);
  }

  /** The per-task losses (unweighted), each a scalar, for use inside a gradient computation. */
  private taskLosses(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined, training: boolean): tf.Scalar[] {
    const outputs = this.model.forward(inputs, training);
    return this.tasks.map((t) => {
      const pred = outputs[t.output];
      if (!pred) throw new Error(`Task "${t.name}": the model produced no output "${t.output}".`);
      let l: tf.Scalar;
      try {
        l = t.loss(labels[t.name] as tf.Tensor, pred, masks?.[t.name]);
      } catch (err) {
        throw taskError(t, err, labels[t.name], pred);
      }
      if (!(l instanceof tf.Tensor) || l.rank !== 0) throw new Error(`Task "${t.name}": the loss must be a scalar tensor, but got ${l instanceof tf.Tensor ? `shape [${l.shape}]` : String(l)}.`);
      return l;
    });
  }

  /** A forward pass for task i's own loss: only its output is needed (a direct forward pass computes only that). */
  private taskForward(i: number, inputs: Inputs): Record<string, tf.Tensor> {
    return this.model.forward(inputs, true, [(this.tasks[i] as ResolvedTask).output]);
  }

  /** One task's loss from its own forward pass (for the per-task backward passes). */
  private taskLoss(i: number, outputs: Record<string, tf.Tensor>, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined): tf.Scalar {
    const t = this.tasks[i] as ResolvedTask;
    const pred = outputs[t.output];
    if (!pred) throw new Error(`Task "${t.name}": the model produced no output "${t.output}".`);
    try {
      return t.loss(labels[t.name] as tf.Tensor, pred, masks?.[t.name]);
    } catch (err) {
      throw taskError(t, err, labels[t.name], pred);
    }
  }

  /**
   * Throw (naming step, task and last finite value) if a loss is NaN or infinite; nothing has been
   * applied yet. With the step's batch, a NaN or ±Infinity in its inputs or labels is named as the
   * cause (scanned only then).
   */
  private checkFinite(values: ArrayLike<number>, stepNo: number, batch?: StepBatch): void {
    this.tasks.forEach((t, i) => {
      const v = values[i] as number;
      if (Number.isFinite(v)) return;
      const last = this.lastFinite.get(t.name);
      const cause = batch && dataProblemIn(batchItems(batch.inputs, batch.labels, batch.masks));
      throw new Error(
        `Task "${t.name}": the loss is ${v} at step ${stepNo}` +
          (last ? ` (last finite value ${last.value} at step ${last.step})` : " (no finite value seen yet)") +
          (cause ? `; no update was applied. The cause: ${cause} in this batch; remove or impute such values, or mask that row's label.` : "; no update was applied. Lower the learning rate, check the labels for NaN, or clip gradients."),
      );
    });
  }

  /** Throw if a row of J (a task's gradient) holds NaN or ±Infinity, naming the task and, where it can, the input or variable. */
  private checkFiniteRows(rows: number[][], stepNo: number, batch?: StepBatch, over?: readonly tf.Variable[]): void {
    rows.forEach((row, i) => {
      const k = row.findIndex((x) => !Number.isFinite(x));
      if (k < 0) return;
      let where = "";
      if (over) {
        // Map J's column back to its variable (J's columns are the shared variables, flattened in order).
        let start = 0;
        const v = over.find((x) => (k < start + x.size ? true : ((start += x.size), false)));
        if (v && batch) where = this.gradientCause(v, k - start, batch);
      } else if (batch) {
        const cause = dataProblemIn(batchItems(batch.inputs, batch.labels, batch.masks));
        if (cause) where = `: ${cause} in this batch`;
      }
      throw new Error(`Task "${(this.tasks[i] as ResolvedTask).name}": its gradient is not finite at step ${stepNo}${where}; no update was applied.`);
    });
  }

  /** ": the gradient of "v" is not finite at [i, j] (the cause: NaN at row 3, column 2 of the input "x" in this batch)" for a task's bad gradient value. */
  private gradientCause(v: tf.Variable, flat: number, batch: StepBatch): string {
    const cause = dataProblemIn(batchItems(batch.inputs, batch.labels, batch.masks));
    return `: the gradient of "${v.name}" is not finite at [${multiIndex(flat, v.shape).join(", ")}]${cause ? ` (the cause: ${cause} in this batch)` : ""}`;
  }

  /**
   * The last check before an update: the batch's inputs and labels finite (masked-out label rows
   * excepted), then every gradient finite; throws naming the step, the input or the variable (and
   * the task it came from, found by one pass per task, only then). Nothing is applied on a throw.
   */
  private guard(stepNo: number, grads: tf.NamedTensorMap, batch: StepBatch): void {
    checkBatchFinite("JointTrainer.step", stepNo, batchItems(batch.inputs, batch.labels, batch.masks));
    checkGradientsFinite("JointTrainer", stepNo, grads, this.vars, (bad) => this.blame(bad, batch));
  }

  /**
   * Which term a bad gradient came from: each task's loss (on its own forward pass) and the penalty
   * are differentiated with respect to that variable alone, and the first whose gradient is not
   * finite is named. Runs only when a step has already failed.
   */
  private blame(bad: BadGradient, batch: StepBatch): string | undefined {
    const v = this.vars.find((x) => x.name === bad.variable);
    if (!v) return undefined;
    const terms: [string, () => tf.Scalar][] = this.tasks.map((t, i) => [`from task "${t.name}"`, () => this.taskLoss(i, this.model.forward(batch.inputs, true), batch.labels, batch.masks)]);
    if (this.penalty) terms.push(["from the penalty", () => this.callPenalty()]);
    for (const [name, f] of terms) {
      try {
        const { value, grads } = tf.variableGrads(f, [v]);
        const g = grads[v.name];
        const nonFinite = g !== undefined && firstNonFinite(g) !== undefined;
        tf.dispose([value, ...Object.values(grads)]);
        if (nonFinite) return name;
      } catch {
        // The term does not reach the variable: not the culprit.
      }
    }
    return undefined;
  }

  /**
   * Per-task gradient matrix J for a batch, in the trainer's mode: rows over the shared variables
   * (parameters) or over the representation, flattened per example (representation); no update.
   */
  taskGradients(inputs: Inputs, labels: Record<string, tf.Tensor>, masks?: Record<string, tf.Tensor>): { J: number[][]; losses: Record<string, number> } {
    const rows = checkStepBatch("JointTrainer.taskGradients", inputs, labels, masks, this.tasks.map((t) => t.name));
    checkLabels(this.tasks, labels, rows);
    if (masks) checkMasks(this.tasks, masks, rows);
    if (this.mode === "parameters" && !this.shared) throw new Error("JointTrainer.taskGradients: give the trainer shared (variables or layers), or use mode \"representation\".");
    return freeOnFailure(() => {
      const r = this.jacobian(inputs, labels, masks);
      try {
        return { J: r.J.arraySync(), losses: this.named(r.losses) };
      } finally {
        r.J.dispose();
      }
    });
  }

  /** J (T x d tensor) and the losses, over the shared variables or the representation. */
  private jacobian(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined): { J: tf.Tensor2D; losses: number[]; shape?: number[] } {
    const T = this.tasks.length;
    if (this.mode === "representation") {
      const rep = this.representation as string;
      return representationGradients((i) => {
        const out = this.model.forward(inputs, true);
        return { loss: this.taskLoss(i, out, labels, masks), representation: out[rep] as tf.Tensor };
      }, T, this.tasks.map((t) => t.name));
    }
    const shared = this.shared as tf.Variable[];
    const { grads, losses } = perTaskVariableGrads((i) => this.taskLoss(i, this.taskForward(i, inputs), labels, masks), T, shared);
    try {
      return { J: gradientMatrix(grads, shared), losses };
    } finally {
      grads.forEach((g) => tf.dispose(g));
    }
  }

  /**
   * ‖∇L_i‖ over the shared variables, for a weighting that needs only the norms (GradNorm): each
   * gradient's values are read once and squared and summed in JS, in J's row order and in double
   * precision, so the norms equal `gradientNorms(J)` exactly, without building the T x d matrix J
   * and copying it into nested JS arrays (for W5's 256x256 kernel that was about 15 ms a step). A
   * sum is non-finite exactly when a value is (float32 squares cannot overflow a double).
   */
  private taskGradNorms(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined, stepNo: number, upstream?: UpstreamCapture): number[] {
    const shared = this.shared as tf.Variable[];
    const per = perTaskVariableGrads((i) => this.taskLoss(i, this.taskForward(i, inputs), labels, masks), this.tasks.length, shared, upstream ? { upstream } : {});
    try {
      this.checkFinite(per.losses, stepNo, { inputs, labels, masks });
      return per.grads.map((g, i) => {
        let a = 0;
        for (const v of shared) {
          const d = (g[v.name] as tf.Tensor).dataSync();
          for (let k = 0; k < d.length; k++) a += (d[k] as number) * (d[k] as number);
        }
        if (!Number.isFinite(a)) {
          const v = shared.find((x) => firstNonFinite(g[x.name] as tf.Tensor) !== undefined);
          const where = v ? this.gradientCause(v, firstNonFinite(g[v.name] as tf.Tensor)!.index, { inputs, labels, masks }) : "";
          throw new Error(`Task "${(this.tasks[i] as ResolvedTask).name}": its gradient is not finite at step ${stepNo}${where}; no update was applied.`);
        }
        return Math.sqrt(a);
      });
    } finally {
      per.grads.forEach((g) => tf.dispose(g));
    }
  }

  private diagnosticsDue(stepNo: number): boolean {
    return this.recorder !== undefined && (stepNo - 1) % this.diagnosticsEvery === 0;
  }

  /**
   * One joint training step on a batch. Throws, before any update is applied, if a task's loss is
   * NaN or infinite, naming the step, the task and its last finite value.
   *
   * On a diagnostics step (or with norms in representation mode), T per-task passes come first;
   * norms only (GradNorm, DB-MTL) are taken after the joint pass, before its update is applied; with an aggregator, the step is T per-task passes (plus one in representation mode).
   */
  step(inputs: Inputs, labels: Record<string, tf.Tensor>, masks?: Record<string, tf.Tensor>): StepResult {
    const rows = checkStepBatch("JointTrainer.step", inputs, labels, masks, this.tasks.map((t) => t.name));
    this.checkStepLabels(labels, rows);
    if (masks) checkMasks(this.tasks, masks, rows);
    const stepNo = this.steps + 1;
    // A step that throws (a bad label, a shape mismatch) frees what it made (step-scope.ts).
    return freeOnFailure(() => (this.aggregator ? this.aggregatedStep(inputs, labels, masks, stepNo) : this.plainStep(inputs, labels, masks, stepNo)));
  }

  /** The step without an aggregator: the weighted sum of the losses (weights from a weighting, if any). */
  private plainStep(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined, stepNo: number): StepResult {

    const needsNorms = this.requirement?.needs.includes("gradNorms") ?? false;
    let unweightedNorms: number[] | undefined;
    let diagnostics: GradientDiagnostics | undefined;
    // Norms only (GradNorm, DB-MTL): taken after the joint pass, on the same parameters (nothing is
    // applied before them), reusing the trunk values that pass computed (captureForPerTask).
    const normsAfter = needsNorms && !this.diagnosticsDue(stepNo) && this.mode === "parameters";
    if (!normsAfter && (needsNorms || this.diagnosticsDue(stepNo))) {
      const { J, losses } = this.jacobian(inputs, labels, masks);
      const rowsJ = J.arraySync();
      J.dispose();
      this.checkFinite(losses, stepNo, { inputs, labels, masks });
      this.checkFiniteRows(rowsJ, stepNo, { inputs, labels, masks }, this.mode === "parameters" ? this.shared : undefined);
      unweightedNorms = gradientNorms(rowsJ);
      if (this.diagnosticsDue(stepNo)) diagnostics = this.recorder!.record(stepNo, rowsJ);
    }

    let used = this.tasks.map((t) => t.weight);
    const weighting = this.weighting;
    // Weights that depend on this batch's losses (GLS, STCH, FAMO) are computed between the forward and backward pass.
    const weightsFor = (values: number[]): number[] => {
      if (!weighting || !values.every(Number.isFinite)) return used;
      const w = this.requirement!.objective === "log-losses" ? logLossWeights(weighting, values) : weighting.weights({ losses: values, step: this.steps });
      checkWeights(w, weighting.name, this.tasks.length);
      return w;
    };
    let kept: tf.Scalar[] = [];
    let penaltyT: tf.Scalar | undefined;
    let pass: { value: tf.Scalar; grads: tf.NamedTensorMap };
    let upstream: UpstreamCapture | undefined;
    try {
      // Lookups of a table shared by several models are made once in this pass (step-cache.ts).
      const joint = () => variableGradsShared(() => {
        const l = this.taskLosses(inputs, labels, masks, true);
        kept = l.map((x) => tf.keep(x));
        // Read the losses mid-pass only when a weighting needs them to set this step's weights.
        if (weighting) used = weightsFor(l.map((x) => x.dataSync()[0] as number));
        const weighted = this.weightedSum(l, used);
        if (!this.penalty) return weighted;
        const p = this.penalty();
        if (!(p instanceof tf.Tensor) || p.rank !== 0) throw new Error(`JointTrainer: penalty() must return a scalar tensor, but returned ${p instanceof tf.Tensor ? `shape [${p.shape}]` : String(p)}.`);
        penaltyT = tf.keep(p);
        return tf.add(weighted, p) as tf.Scalar;
      }, this.vars);
      if (normsAfter && this.shared) ({ result: pass, upstream } = captureForPerTask(this.shared, joint));
      else pass = joint();
    } catch (err) {
      tf.dispose(kept);
      penaltyT?.dispose();
      throw err;
    }
    const { value, grads } = pass;
    // Each loss read on its own: no stacking kernel just to read T numbers back.
    const values = kept.map((x) => x.dataSync()[0] as number);
    const total = value.dataSync()[0] as number;
    const penalty = penaltyT ? (penaltyT.dataSync()[0] as number) : undefined;
    tf.dispose([...kept, value]);
    penaltyT?.dispose();
    try {
      if (normsAfter) {
        try {
          unweightedNorms = this.taskGradNorms(inputs, labels, masks, stepNo, upstream);
        } finally {
          upstream?.dispose();
        }
      }
      this.checkFinite(values, stepNo, { inputs, labels, masks });
      if (penalty !== undefined && !Number.isFinite(penalty)) throw new Error(`JointTrainer: the penalty is ${penalty} at step ${stepNo}; no update was applied.`);
      this.guard(stepNo, grads, { inputs, labels, masks });
      this.groups.apply(grads);
    } finally {
      tf.dispose(grads);
    }
    if (weighting) {
      this.setWeights(this.named(used));
      if (this.requirement!.cadence === "step") {
        let gradNorms: number[] | undefined;
        if (unweightedNorms) {
          // GradNorm wants ‖∇(w_i L_i)‖ = w_i ‖∇L_i‖ with this step's weights; DB-MTL ‖∇ log(L_i + ε)‖ = ‖∇L_i‖ / (L_i + ε).
          const eps = epsilonOf(weighting);
          gradNorms = this.requirement!.objective === "log-losses" ? unweightedNorms.map((n, i) => n / ((values[i] as number) + eps)) : unweightedNorms.map((n, i) => (used[i] as number) * n);
        }
        weighting.update({ losses: values, step: this.steps, ...(gradNorms ? { gradNorms } : {}) });
      }
    }
    return this.finish(stepNo, values, total, penalty, used, diagnostics);
  }

  private finish(stepNo: number, values: number[], total: number, penalty: number | undefined, used: number[], diagnostics: GradientDiagnostics | undefined): StepResult {
    this.steps = stepNo;
    this.lastWeights = [...used];
    const losses = this.named(values);
    for (const [name, v] of Object.entries(losses)) this.lastFinite.set(name, { value: v, step: stepNo });
    const result: StepResult = { step: stepNo, losses, total, weights: this.named(used) };
    if (penalty !== undefined) result.penalty = penalty;
    if (diagnostics) result.diagnostics = diagnostics;
    return result;
  }

  /** The step with an aggregator: shared variables along the aggregated direction, the rest Σ c_i ∇L_i. */
  private aggregatedStep(inputs: Inputs, labels: Record<string, tf.Tensor>, masks: Record<string, tf.Tensor> | undefined, stepNo: number): StepResult {
    const T = this.tasks.length;
    const agg = this.aggregator!;
    const aggregateRows = (rowsJ: number[][]): Aggregation => {
      const a = agg.run(rowsJ);
      if (!a || !Array.isArray(a.direction) || a.direction.length !== (rowsJ[0] as number[]).length || !a.direction.every(Number.isFinite)) {
        throw new Error(`JointTrainer: the aggregator "${agg.name}" returned no finite direction of length ${(rowsJ[0] as number[]).length} at step ${stepNo}; no update was applied.`);
      }
      checkWeights(a.weights, `aggregator "${agg.name}"`, T, true);
      return a;
    };
    let grads: tf.NamedTensorMap = {};
    let implied: number[];
    let values: number[];
    let penalty: number | undefined;
    let diagnostics: GradientDiagnostics | undefined;
    try {
      if (this.mode === "parameters") {
        const shared = this.shared as tf.Variable[];
        const per = perTaskVariableGrads((i) => this.taskLoss(i, this.model.forward(inputs, true), labels, masks), T, this.vars);
        try {
          values = per.losses;
          this.checkFinite(values, stepNo, { inputs, labels, masks });
          const rowsJ = tf.tidy(() => gradientMatrix(per.grads, shared).arraySync());
          this.checkFiniteRows(rowsJ, stepNo, { inputs, labels, masks }, shared);
          if (this.diagnosticsDue(stepNo)) diagnostics = this.recorder!.record(stepNo, rowsJ);
          const a = aggregateRows(rowsJ);
          implied = a.weights;
          const c = this.heads === "implied" ? implied : this.tasks.map((t) => t.weight);
          const sharedIds = new Set(shared.map((v) => v.id));
          grads = unflatten(a.direction, shared);
          for (const v of this.vars) {
            if (sharedIds.has(v.id)) continue;
            grads[v.name] = tf.tidy(() => tf.addN(per.grads.map((g, i) => tf.mul(g[v.name] as tf.Tensor, c[i] as number))));
          }
        } finally {
          per.grads.forEach((g) => tf.dispose(g));
        }
        if (this.penalty) {
          const p = this.penaltyGrads(stepNo);
          penalty = p.value;
          for (const [name, g] of Object.entries(p.grads)) {
            const sum = tf.add(grads[name] as tf.Tensor, g);
            tf.dispose([grads[name] as tf.Tensor, g]);
            grads[name] = sum;
          }
        }
      } else {
        const rep = this.representation as string;
        const r = this.jacobian(inputs, labels, masks);
        let K: tf.Tensor;
        let c: number[];
        try {
          values = r.losses;
          this.checkFinite(values, stepNo, { inputs, labels, masks });
          const rowsJ = r.J.arraySync();
          this.checkFiniteRows(rowsJ, stepNo, { inputs, labels, masks });
          if (this.diagnosticsDue(stepNo)) diagnostics = this.recorder!.record(stepNo, rowsJ);
          const a = aggregateRows(rowsJ);
          implied = a.weights;
          c = this.heads === "implied" ? implied : this.tasks.map((t) => t.weight);
          const cs = c;
          // The last pass minimises Σ c_i L_i + ⟨z, K⟩ with K = d − Σ c_i J_i held constant: the heads
          // get Σ c_i ∇L_i, and everything upstream of z gets (∂z/∂θ)ᵀ d, the aggregated direction.
          K = tf.tidy(() => tf.reshape(tf.sub(tf.tensor1d(a.direction), tf.squeeze(tf.matMul(tf.tensor2d([cs]), r.J))), r.shape!));
        } finally {
          r.J.dispose();
        }
        let penaltyT: tf.Scalar | undefined;
        try {
          const out = variableGradsShared(() => {
            const o = this.model.forward(inputs, true);
            const terms = this.tasks.map((_, i) => tf.mul(this.taskLoss(i, o, labels, masks), c[i] as number));
            let y = tf.add(tf.addN(terms), tf.sum(tf.mul(o[rep] as tf.Tensor, K))) as tf.Scalar;
            if (this.penalty) {
              penaltyT = tf.keep(this.callPenalty());
              y = tf.add(y, penaltyT);
            }
            return y;
          }, this.vars);
          out.value.dispose();
          grads = out.grads;
        } finally {
          K.dispose();
        }
        if (penaltyT) {
          penalty = penaltyT.dataSync()[0] as number;
          penaltyT.dispose();
        }
      }
      if (penalty !== undefined && !Number.isFinite(penalty)) throw new Error(`JointTrainer: the penalty is ${penalty} at step ${stepNo}; no update was applied.`);
      this.guard(stepNo, grads, { inputs, labels, masks });
      this.groups.apply(grads);
    } finally {
      tf.dispose(grads);
    }
    const total = values.reduce((s, v, i) => s + v * (implied[i] as number), 0) + (penalty ?? 0);
    return this.finish(stepNo, values, total, penalty, implied, diagnostics);
  }

  private callPenalty(): tf.Scalar {
    const p = this.penalty!();
    if (!(p instanceof tf.Tensor) || p.rank !== 0) throw new Error(`JointTrainer: penalty() must return a scalar tensor, but returned ${p instanceof tf.Tensor ? `shape [${p.shape}]` : String(p)}.`);
    return p;
  }

  /** The penalty's value and its gradient over the trained variables it reaches. */
  private penaltyGrads(stepNo: number): { value: number; grads: tf.NamedTensorMap } {
    const { value, grads } = tf.variableGrads(() => this.callPenalty(), this.vars);
    const v = value.dataSync()[0] as number;
    value.dispose();
    if (!Number.isFinite(v)) {
      tf.dispose(grads);
      throw new Error(`JointTrainer: the penalty is ${v} at step ${stepNo}; no update was applied.`);
    }
    return { value: v, grads };
  }

  /**
   * Tell the trainer an epoch ended, with each task's average training loss: an epoch-cadence
   * weighting (DWA) is updated and its weights for the next epoch set. `fit` calls this.
   */
  epochEnd(losses: Record<string, number>): void {
    this.epochs++;
    if (!this.weighting || this.requirement!.cadence !== "epoch") return;
    const values = this.tasks.map((t) => {
      const v = losses[t.name];
      if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`JointTrainer.epochEnd: the loss of task "${t.name}" must be a finite number, but got ${v}.`);
      return v;
    });
    this.weighting.update({ losses: values, step: this.epochs - 1 });
    const w = this.weighting.weights({ losses: values, step: this.epochs });
    checkWeights(w, this.weighting.name, this.tasks.length);
    this.setWeights(this.named(w));
  }

  /** Loss and metrics of each task on a whole data set (one forward pass), without training. */
  evaluate(inputs: Inputs, labels: Record<string, tf.Tensor>, options: { masks?: Record<string, tf.Tensor> } = {}): Evaluation {
    const rows = checkStepBatch("JointTrainer.evaluate", inputs, labels, options.masks, this.tasks.map((t) => t.name));
    checkLabels(this.tasks, labels, rows);
    if (options.masks) checkMasks(this.tasks, options.masks, rows);
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
        let loss: number;
        try {
          loss = tf.tidy(() => t.loss(y, pred, mask).dataSync()[0] as number);
        } catch (err) {
          throw taskError(t, err, y, pred);
        }
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

function describeSpec(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x);
  if (typeof x === "function") return "a function";
  const name = (x as { name?: unknown } | null)?.name;
  return typeof name === "string" ? JSON.stringify(name) : String(x);
}

/** A weighting from a name, `{ name, options }` or an instance, checked against the task count. */
function resolveWeighting(spec: WeightingName | WeightingSpec | Weighting, T: number): Weighting {
  if (typeof spec === "string") return createWeighting(spec, { numTasks: T });
  if (spec === null || typeof spec !== "object") throw new Error(`JointTrainer: weighting must be a name (${weightingNames.join(", ")}), { name, options } or a Weighting, but got ${String(spec)}.`);
  if (typeof (spec as Weighting).weights === "function" && typeof (spec as Weighting).update === "function") {
    const w = spec as Weighting;
    if (w.numTasks !== T) throw new Error(`JointTrainer: the weighting "${w.name}" is for ${w.numTasks} tasks, but the trainer has ${T}.`);
    return w;
  }
  const { name, options = {} } = spec as WeightingSpec;
  if (typeof name !== "string") throw new Error(`JointTrainer: weighting { name, options } needs a name (${weightingNames.join(", ")}), but got ${String(name)}.`);
  if (options.numTasks !== undefined && options.numTasks !== T) throw new Error(`JointTrainer: weighting "${name}" has numTasks ${String(options.numTasks)}, but the trainer has ${T} tasks.`);
  return createWeighting(name, { ...options, numTasks: T });
}

/** An aggregator from a name, `{ name, options }`, an object with `aggregate(J)` or a function. */
function resolveAggregator(spec: AggregatorName | AggregatorSpec | AggregatorObject | AggregatorFunction): ResolvedAggregator {
  if (typeof spec === "function") return { name: spec.name || "custom", run: spec, custom: true };
  const valid = aggregatorNames.join(", ");
  if (typeof spec === "string") spec = { name: spec };
  if (spec === null || typeof spec !== "object") throw new Error(`JointTrainer: aggregator must be a name (${valid}), { name, options }, an object with aggregate(J) or a function, but got ${String(spec)}.`);
  if (typeof (spec as AggregatorObject).aggregate === "function") {
    const obj = spec as AggregatorObject;
    const name = (obj as { constructor?: { name?: string } }).constructor?.name ?? "custom";
    return isStateful(obj) ? { name, run: (J) => obj.aggregate(J), state: obj } : { name, run: (J) => obj.aggregate(J), custom: true };
  }
  const { name, options = {} } = spec as AggregatorSpec;
  if (typeof name !== "string" || !Object.hasOwn(aggregators, name)) throw new Error(`JointTrainer: unknown aggregator ${JSON.stringify(name)}; valid names are: ${valid}.`);
  const accepted: readonly string[] = aggregators[name as AggregatorName].options;
  for (const key of Object.keys(options)) {
    if (!accepted.includes(key)) throw new Error(`JointTrainer: unknown option ${JSON.stringify(key)} for aggregator ${name}; it accepts ${accepted.length ? accepted.join(", ") : "no options"}.`);
  }
  // GradVac keeps targets between steps: one instance per trainer, not a fresh call each step.
  if (name === "gradvac") {
    const instance = new GradVac(options as { beta?: number; seed?: number });
    return { name, run: (J) => instance.aggregate(J), state: instance };
  }
  // PCGrad and GradDrop are random per step in their papers: advance the seed every call, so two
  // steps never reuse one projection order or drop mask (and a run stays reproducible by seed).
  if (name === "pcgrad" || name === "graddrop") {
    const base = typeof options.seed === "number" ? options.seed : 0;
    let calls = 0;
    const state = {
      exportState: () => ({ calls }),
      importState: (s: MethodState) => {
        const c = s?.calls;
        if (typeof c !== "number" || !Number.isInteger(c) || c < 0) throw new Error(`JointTrainer.importState: the ${name} state's calls must be an integer >= 0, but got ${String(c)}.`);
        calls = c;
      },
    };
    return { name, run: (J) => aggregate(name, J, { ...options, seed: base + calls++ }), state };
  }
  return { name, run: (J) => aggregate(name, J, options) };
}

/** An aggregator ready to run; `state` when it keeps state between steps, `custom` when it is hand-made without one. */
interface ResolvedAggregator {
  name: string;
  run: AggregatorFunction;
  state?: { exportState(): MethodState; importState(state: MethodState): void };
  custom?: boolean;
}

/** What {@link JointTrainer.exportState} returns: plain JSON. */
export interface TrainerState {
  steps: number;
  epochs: number;
  taskWeights: number[];
  lastWeights: number[] | null;
  lastFinite: { task: string; value: number; step: number }[];
  weighting: MethodState | null;
  aggregator: MethodState | null;
  /** State that could not be saved, by name (hand-made methods without exportState). */
  unsaved: string[];
}

/** Weightings that keep nothing between steps. */
const STATELESS_WEIGHTINGS = new Set(["equal", "static", "gls"]);

const isTrainableLike = (x: unknown): boolean => typeof x === "object" && x !== null && typeof (x as Trainable).forward === "function" && typeof (x as Trainable).variables === "function";

/** One step's batch, passed to the checks that name the input behind a non-finite value. */
interface StepBatch {
  inputs: Inputs;
  labels: Record<string, tf.Tensor>;
  masks: Record<string, tf.Tensor> | undefined;
}

/** Weights must be T finite numbers >= 0 (aggregators may imply negative ones: allowed when `signed`). */
function checkWeights(w: unknown, who: string, T: number, signed = false): asserts w is number[] {
  if (!Array.isArray(w) || w.length !== T || !w.every((x) => typeof x === "number" && Number.isFinite(x) && (signed || x >= 0))) {
    throw new Error(`JointTrainer: ${who} gave weights ${JSON.stringify(w)}; expected ${T} finite numbers${signed ? "" : " >= 0"}.`);
  }
}

/** ε of a log-loss weighting (DB-MTL's `eps`), default 1e-8. */
function epsilonOf(w: Weighting): number {
  const eps = (w as { eps?: unknown }).eps;
  return typeof eps === "number" ? eps : 1e-8;
}

/** Weights on the raw losses equivalent to weights on log(L_i + ε): w_i / (L_i + ε). */
function logLossWeights(w: Weighting, losses: number[]): number[] {
  const own = (w as { lossWeights?: (l: number[]) => number[] }).lossWeights;
  if (typeof own === "function") return own.call(w, losses);
  const eps = epsilonOf(w);
  return w.weights({ losses }).map((x, i) => x / ((losses[i] as number) + eps));
}
