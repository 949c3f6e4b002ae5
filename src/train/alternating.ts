/**
 * Training two or more models in turns (alternating optimisation), plus the two variants a notebook
 * compares it with: one joint objective with one optimizer, and a joint objective with a consistency
 * term between two outputs.
 *
 * Seed 003's "alternating" loop runs one forward pass, then two backward passes over it
 * (`retain_graph`): model B is updated from outputs computed before A's step, and each backward pass
 * computes gradients for both models. Here every step of a turn runs a fresh forward pass, so B's
 * turn sees A's updated output, and differentiates only the variables of the model being trained
 * (`tf.variableGrads` with that model's variable list); the other models are untouched.
 */
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "../losses/consistency.js";
import { OptimizerGroups } from "./optimizer-groups.js";
import { variableGradsShared } from "../layers/step-cache.js";
import type { Schedule } from "./schedules.js";
import { freeOnFailure } from "./step-scope.js";
import { checkBatchFinite, checkGradientsFinite, dataProblemIn, genericBatchItems } from "./finite-checks.js";

/** Named outputs of one forward pass of all the models, e.g. `{ a: A(x), b: B(A(x)) }`. */
export type ForwardFn<B> = (batch: B, training: boolean) => Record<string, tf.Tensor>;

/** Variables of one model: the variables themselves, a layer or model, or several layers. */
export type PartVariables = readonly tf.Variable[] | tf.layers.Layer | readonly tf.layers.Layer[];

/** One model's part of the objective: its variables and its loss on a forward pass's outputs. */
export interface ModelPart<B> {
  name: string;
  variables: PartVariables;
  loss: (outputs: Record<string, tf.Tensor>, batch: B) => tf.Scalar;
}

/** A turn of alternating optimisation: a model part, its own optimizer, and how many steps it takes in a row. */
export interface Turn<B> extends ModelPart<B> {
  /** Used for this turn only (tfjs optimizers keep state by position). */
  optimizer: tf.Optimizer;
  /** Steps per turn (k), default 1. */
  steps?: number;
  /** Learning rate by this turn's 0-based update count. */
  schedule?: Schedule;
}

/** An auxiliary term `weight · loss(outputs[a], outputs[b])` added to the objective (seed 003's third recipe). */
export interface ConsistencyTerm {
  outputs: [string, string];
  loss: ConsistencyFn;
  weight: number;
}

/** What one step did. */
export interface MultiStepResult {
  /** 1-based count of steps taken by this trainer. */
  step: number;
  /** The turn that was trained, or `"joint"`. */
  turn: string;
  /** Each loss computed on this step's forward pass (unweighted), and `consistency` when present. */
  losses: Record<string, number>;
  /** The minimised objective. */
  total: number;
}

function partVariables(v: PartVariables, owner: string): tf.Variable[] {
  const fromLayer = (l: tf.layers.Layer) => l.trainableWeights.map((w) => w.read() as tf.Variable);
  const raw =
    v instanceof tf.layers.Layer
      ? fromLayer(v)
      : Array.isArray(v)
        ? (v as readonly (tf.Variable | tf.layers.Layer)[]).flatMap((x) => {
            if (x instanceof tf.layers.Layer) return fromLayer(x);
            if (x instanceof tf.Variable) return [x];
            throw new Error(`${owner}: variables must be tf.Variables or layers, but got ${String(x)}.`);
          })
        : (() => {
            throw new Error(`${owner}: variables must be tf.Variables, a layer or model, or layers, but got ${String(v)}.`);
          })();
  const seen = new Set<number>();
  const out = raw.filter((x) => (seen.has(x.id) ? false : (seen.add(x.id), true)));
  if (out.length === 0) throw new Error(`${owner}: no trainable variables.`);
  return out;
}

function checkParts<B>(parts: readonly ModelPart<B>[], what: string) {
  const names = new Set<string>();
  for (const p of parts) {
    if (!p || typeof p.name !== "string" || !p.name) throw new Error(`${what}: every turn needs a name.`);
    if (names.has(p.name)) throw new Error(`${what}: two turns are named "${p.name}".`);
    names.add(p.name);
    if (typeof p.loss !== "function") throw new Error(`${what}: turn "${p.name}" needs a loss function (outputs, batch) => scalar.`);
  }
}

function checkConsistency(c: ConsistencyTerm | undefined, what: string) {
  if (!c) return;
  if (!Array.isArray(c.outputs) || c.outputs.length !== 2) throw new Error(`${what}: consistency.outputs must name two outputs, but got ${JSON.stringify(c.outputs)}.`);
  if (typeof c.loss !== "function") throw new Error(`${what}: consistency.loss must be a function (a, b) => scalar.`);
  if (typeof c.weight !== "number" || !Number.isFinite(c.weight) || c.weight < 0) throw new Error(`${what}: consistency.weight must be a finite number >= 0, but got ${c.weight}.`);
}

function scalarLoss(t: unknown, owner: string): tf.Scalar {
  if (!(t instanceof tf.Tensor) || t.rank !== 0) throw new Error(`${owner}: the loss must be a scalar tensor, but got ${t instanceof tf.Tensor ? `shape [${t.shape}]` : String(t)}.`);
  return t as tf.Scalar;
}

function consistencyValue(c: ConsistencyTerm, outputs: Record<string, tf.Tensor>, what: string): tf.Scalar {
  const [a, b] = c.outputs.map((n) => {
    const t = outputs[n];
    if (!t) throw new Error(`${what}: consistency reads the output "${n}", but the forward pass returned ${Object.keys(outputs).map((k) => `"${k}"`).join(", ")}.`);
    return t;
  }) as [tf.Tensor, tf.Tensor];
  return scalarLoss(c.loss(a, b), `${what} consistency`);
}

/** A step's objective: the minimised total and the named losses reported with it (each a scalar). */
type Objective = (outputs: Record<string, tf.Tensor>) => { total: tf.Scalar; parts: [string, tf.Scalar][] };

/**
 * One optimisation step: a fresh forward pass inside the gradient tape, the objective, gradients for
 * `vars` only, finiteness checks (no update if any loss, batch tensor or gradient holds NaN or
 * ±Infinity; see finite-checks.ts), then the update.
 * Written with plain loops and pair lists: it runs every step, and its bookkeeping is a measurable
 * part of a small model's step.
 */
function runStep<B>(
  what: string, stepNo: number, vars: tf.Variable[], groups: OptimizerGroups,
  objective: Objective, forward: ForwardFn<B>, batch: B,
): { losses: Record<string, number>; total: number } {
  checkBatchTensors(batch, what);
  // A step that throws frees the tensors it made (step-scope.ts).
  return freeOnFailure(() => stepBody(what, stepNo, vars, groups, objective, forward, batch));
}

/**
 * A disposed tensor in the batch (itself, an array entry or an object's value, one level deep),
 * named by its key: tfjs would fail later with "Cannot read properties of undefined".
 */
function checkBatchTensors(batch: unknown, what: string): void {
  const disposed = (t: unknown) => t instanceof tf.Tensor && t.isDisposed;
  let key: string | undefined;
  if (disposed(batch)) key = "the batch";
  else if (Array.isArray(batch)) {
    const i = batch.findIndex(disposed);
    if (i >= 0) key = `batch[${i}]`;
  } else if (batch !== null && typeof batch === "object" && !(batch instanceof tf.Tensor)) {
    const k = Object.keys(batch).find((k) => disposed((batch as Record<string, unknown>)[k]));
    if (k !== undefined) key = `batch "${k}"`;
  }
  if (key !== undefined) throw new Error(`${what}: ${key} is a disposed tensor; pass live tensors (dispose them after the step, not before).`);
}

function stepBody<B>(
  what: string, stepNo: number, vars: tf.Variable[], groups: OptimizerGroups,
  objective: Objective, forward: ForwardFn<B>, batch: B,
): { losses: Record<string, number>; total: number } {
  let parts: [string, tf.Scalar][] = [];
  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    result = variableGradsShared(() => {
      const o = objective(forward(batch, true));
      parts = o.parts;
      for (const [, v] of parts) tf.keep(v);
      return o.total;
    }, vars);
  } catch (err) {
    for (const [, v] of parts) v.dispose();
    throw new Error(`${what}, step ${stepNo}: ${(err as Error).message}`);
  }
  const value = result.value;
  const total = value.dataSync()[0] as number;
  const losses: Record<string, number> = {};
  let bad: string | undefined;
  for (const [k, v] of parts) {
    // A part that is the objective itself (a turn's loss with no consistency term) is not read twice.
    const x = v === value ? total : (v.dataSync()[0] as number);
    losses[k] = x;
    if (bad === undefined && !Number.isFinite(x)) bad = k;
    v.dispose();
  }
  value.dispose();
  if (bad !== undefined || !Number.isFinite(total)) {
    tf.dispose(result.grads);
    const cause = dataProblemIn(genericBatchItems(batch));
    throw new Error(`${what}: the loss ${bad !== undefined ? `"${bad}" is ${losses[bad]}` : `total is ${total}`} at step ${stepNo}; no update was applied.${cause ? ` The cause: ${cause} in this batch.` : ""}`);
  }
  try {
    checkBatchFinite(what, stepNo, genericBatchItems(batch));
    checkGradientsFinite(what, stepNo, result.grads, vars);
    groups.apply(result.grads);
  } finally {
    tf.dispose(result.grads);
  }
  return { losses, total };
}

export interface AlternatingOptions<B> {
  /** All models' outputs for a batch; called afresh on every step. */
  forward: ForwardFn<B>;
  /** Two or more turns, taken in order: `steps` steps of the first, then of the second, and so on. */
  turns: Turn<B>[];
  /** Add `weight · loss(outputs[a], outputs[b])` to every turn's loss. */
  consistency?: ConsistencyTerm;
}

/**
 * Alternating optimisation: k steps of the first model with the others frozen, then k steps of the
 * next, and so on, each step on a fresh forward pass and differentiating only the current turn's
 * variables. A variable may belong to one turn only.
 */
export class AlternatingTrainer<B> {
  private readonly forward: ForwardFn<B>;
  private readonly turns: { spec: Turn<B>; vars: tf.Variable[]; groups: OptimizerGroups; steps: number; what: string }[];
  private readonly consistency?: ConsistencyTerm;
  private steps = 0;
  private turnIndex = 0;
  private inTurn = 0;

  constructor(options: AlternatingOptions<B>) {
    const what = "AlternatingTrainer";
    if (typeof options?.forward !== "function") throw new Error(`${what}: forward must be a function (batch, training) => named outputs.`);
    if (!Array.isArray(options.turns) || options.turns.length < 2) throw new Error(`${what}: needs at least two turns, but got ${Array.isArray(options.turns) ? options.turns.length : String(options.turns)}.`);
    checkParts(options.turns, what);
    checkConsistency(options.consistency, what);
    const owner = new Map<number, string>();
    const optimizers = new Map<tf.Optimizer, string>();
    this.turns = options.turns.map((t) => {
      const steps = t.steps ?? 1;
      if (!Number.isInteger(steps) || steps < 1) throw new Error(`${what}: turn "${t.name}" steps must be a positive integer, but got ${steps}.`);
      // Checked before instanceof: tf.Optimizer's instanceof reads .minimize, a TypeError on undefined.
      if (t.optimizer === undefined || t.optimizer === null) {
        throw new Error(`${what}: turn "${t.name}" has no optimizer; give each turn its own, e.g. { name: "${t.name}", variables, loss, optimizer: tf.train.adam(1e-3) }.`);
      }
      if (typeof t.optimizer !== "object" || !(t.optimizer instanceof tf.Optimizer)) throw new Error(`${what}: turn "${t.name}" needs a tf.Optimizer, but got ${String(t.optimizer)}; e.g. tf.train.adam(1e-3).`);
      const other = optimizers.get(t.optimizer);
      if (other) throw new Error(`${what}: turns "${other}" and "${t.name}" use the same optimizer object; give each turn its own.`);
      optimizers.set(t.optimizer, t.name);
      const vars = partVariables(t.variables, `${what}: turn "${t.name}"`);
      for (const v of vars) {
        const prev = owner.get(v.id);
        if (prev) throw new Error(`${what}: the variable "${v.name}" is in turns "${prev}" and "${t.name}"; in one schedule each variable is trained in one turn only.`);
        owner.set(v.id, t.name);
      }
      const groups = new OptimizerGroups({ [t.name]: { variables: vars, optimizer: t.optimizer, schedule: t.schedule } }).bind(vars);
      return { spec: t, vars, groups, steps, what: `${what} turn "${t.name}"` };
    });
    this.forward = options.forward;
    this.consistency = options.consistency;
  }

  /** Steps taken. */
  get stepCount(): number {
    return this.steps;
  }

  /** The turn the next step will train. */
  get currentTurn(): string {
    return this.turns[this.turnIndex]!.spec.name;
  }

  /** The variables a turn trains. */
  variablesOf(turn: string): tf.Variable[] {
    const t = this.turns.find((x) => x.spec.name === turn);
    if (!t) throw new Error(`AlternatingTrainer: no turn "${turn}"; turns are ${this.turns.map((x) => `"${x.spec.name}"`).join(", ")}.`);
    return [...t.vars];
  }

  /** Current learning rate of each turn's optimizer. */
  learningRates(): Record<string, number> {
    return Object.assign({}, ...this.turns.map((t) => t.groups.learningRates()));
  }

  /** Where the schedule stands (steps taken, the current turn and steps into it), for checkpoints. */
  exportState(): { steps: number; turnIndex: number; inTurn: number; turns: string[] } {
    return { steps: this.steps, turnIndex: this.turnIndex, inTurn: this.inTurn, turns: this.turns.map((t) => t.spec.name) };
  }

  /** Put back a state from {@link AlternatingTrainer.exportState} (same turns, in the same order). */
  importState(state: { steps: number; turnIndex: number; inTurn: number; turns: string[] }): void {
    const names = this.turns.map((t) => t.spec.name);
    if (JSON.stringify(state?.turns) !== JSON.stringify(names)) throw new Error(`AlternatingTrainer.importState: the state is of turns ${JSON.stringify(state?.turns)}, but this trainer has ${JSON.stringify(names)}.`);
    const int = (v: unknown, max: number, what: string) => {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= max) throw new Error(`AlternatingTrainer.importState: ${what} must be an integer in [0, ${max}), but got ${String(v)}.`);
      return v;
    };
    this.steps = int(state.steps, Number.MAX_SAFE_INTEGER, "steps");
    this.turnIndex = int(state.turnIndex, this.turns.length, "turnIndex");
    this.inTurn = int(state.inTurn, this.turns[this.turnIndex]!.steps, "inTurn");
  }

  /** Each turn's variables and optimizer group, for checkpoints (see `saveAlternatingCheckpoint`). */
  turnParts(): { name: string; variables: tf.Variable[]; groups: OptimizerGroups }[] {
    return this.turns.map((t) => ({ name: t.spec.name, variables: [...t.vars], groups: t.groups }));
  }

  /** One step of the current turn on a fresh forward pass; then the schedule moves on. */
  step(batch: B): MultiStepResult {
    const t = this.turns[this.turnIndex]!;
    const stepNo = this.steps + 1;
    const what = t.what;
    const { losses, total } = runStep(what, stepNo, t.vars, t.groups, (outputs) => {
      const own = scalarLoss(t.spec.loss(outputs, batch), what);
      if (!this.consistency) return { total: own, parts: [[t.spec.name, own]] };
      const c = consistencyValue(this.consistency, outputs, what);
      return { total: tf.add(own, tf.mul(this.consistency.weight, c)) as tf.Scalar, parts: [[t.spec.name, own], ["consistency", c]] };
    }, this.forward, batch);
    this.steps = stepNo;
    if (++this.inTurn >= t.steps) {
      this.inTurn = 0;
      this.turnIndex = (this.turnIndex + 1) % this.turns.length;
    }
    return { step: stepNo, turn: t.spec.name, losses, total };
  }
}

export interface JointObjectiveOptions<B> {
  forward: ForwardFn<B>;
  /** The models' parts (turns may be passed as they are; their optimizers and steps are ignored). */
  parts: ModelPart<B>[];
  /** Weight of each part's loss (default 1 each). */
  weights?: Record<string, number>;
  /** One optimizer over every part's variables (seed 003's joint recipe), or optimizer groups over them. */
  optimizer: tf.Optimizer | OptimizerGroups;
  /** Add `weight · loss(outputs[a], outputs[b])` (seed 003's consistency recipe). */
  consistency?: ConsistencyTerm;
}

/**
 * The joint alternative to {@link AlternatingTrainer}: one forward pass, the weighted sum of every
 * part's loss (plus an optional consistency term), and one update of all parts' variables together.
 */
export class JointObjectiveTrainer<B> {
  private readonly forward: ForwardFn<B>;
  private readonly parts: ModelPart<B>[];
  private readonly weights: Record<string, number>;
  private readonly vars: tf.Variable[];
  private readonly consistency?: ConsistencyTerm;
  readonly groups: OptimizerGroups;
  private steps = 0;

  constructor(options: JointObjectiveOptions<B>) {
    const what = "JointObjectiveTrainer";
    if (typeof options?.forward !== "function") throw new Error(`${what}: forward must be a function (batch, training) => named outputs.`);
    if (!Array.isArray(options.parts) || options.parts.length === 0) throw new Error(`${what}: no parts given.`);
    checkParts(options.parts, what);
    checkConsistency(options.consistency, what);
    const names = options.parts.map((p) => p.name);
    for (const [k, w] of Object.entries(options.weights ?? {})) {
      if (!names.includes(k)) throw new Error(`${what}: the weight "${k}" names no part; parts are ${names.map((n) => `"${n}"`).join(", ")}.`);
      if (typeof w !== "number" || !Number.isFinite(w) || w < 0) throw new Error(`${what}: the weight of "${k}" must be a finite number >= 0, but got ${w}.`);
    }
    this.weights = Object.fromEntries(names.map((n) => [n, options.weights?.[n] ?? 1]));
    const seen = new Set<number>();
    // A variable shared by two parts is one variable: it gets the sum of both gradients, once.
    this.vars = options.parts.flatMap((p) => partVariables(p.variables, `${what}: part "${p.name}"`)).filter((v) => (seen.has(v.id) ? false : (seen.add(v.id), true)));
    const opt = options.optimizer;
    if (opt === undefined || opt === null) {
      throw new Error(`${what}: no optimizer given; pass one in the options, e.g. new JointObjectiveTrainer({ forward, parts, optimizer: tf.train.adam(1e-3) }).`);
    }
    if (typeof opt !== "object" || (!(opt instanceof tf.Optimizer) && !(opt instanceof OptimizerGroups))) throw new Error(`${what}: optimizer must be a tf.Optimizer or optimizerGroups(...), but got ${String(opt)}; e.g. tf.train.adam(1e-3).`);
    this.groups = (opt instanceof OptimizerGroups ? opt : new OptimizerGroups({ all: { variables: this.vars, optimizer: opt } })).bind(this.vars);
    this.forward = options.forward;
    this.parts = options.parts;
    this.consistency = options.consistency;
  }

  get stepCount(): number {
    return this.steps;
  }

  /** Every variable updated by a step. */
  variables(): tf.Variable[] {
    return [...this.vars];
  }

  /** One joint step on a fresh forward pass. */
  /** The step count, for checkpoints (the variables and `groups` hold the rest; see `saveJointObjectiveCheckpoint`). */
  exportState(): { steps: number } {
    return { steps: this.steps };
  }

  /** Put back a state from {@link JointObjectiveTrainer.exportState}. */
  importState(state: { steps: number }): void {
    const n = state?.steps;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw new Error(`JointObjectiveTrainer.importState: steps must be an integer >= 0, but got ${String(n)}.`);
    this.steps = n;
  }

  step(batch: B): MultiStepResult {
    const stepNo = this.steps + 1;
    const what = "JointObjectiveTrainer";
    const { losses, total } = runStep(what, stepNo, this.vars, this.groups, (outputs) => {
      const parts: [string, tf.Scalar][] = [];
      const terms = this.parts.map((p) => {
        const l = scalarLoss(p.loss(outputs, batch), `${what} part "${p.name}"`);
        parts.push([p.name, l]);
        return tf.mul(this.weights[p.name] as number, l);
      });
      if (this.consistency) {
        const c = consistencyValue(this.consistency, outputs, what);
        parts.push(["consistency", c]);
        terms.push(tf.mul(this.consistency.weight, c));
      }
      return { total: tf.addN(terms) as tf.Scalar, parts };
    }, this.forward, batch);
    this.steps = stepNo;
    return { step: stepNo, turn: "joint", losses, total };
  }
}
