/**
 * Different optimizers or learning rates for different variable groups, e.g. one per task head and
 * one for the shared trunk, each optionally on its own learning-rate schedule.
 *
 * Seed 004's task-specific learning rates give each head its own optimizer and never update the
 * shared trunk. Here every trainable variable must belong to exactly one group, so the trunk is
 * always updated (with its own rate): a variable in no group or in two groups is an error that lists
 * them. A joint step still computes one gradient over all variables (each shared variable gets the
 * sum of its gradients) and then each group's optimizer applies its part.
 */
import * as tf from "@tensorflow/tfjs";
import type { Schedule } from "./schedules.js";

/** Which variables a group holds: variables, a layer or model (its trainable weights), several layers, or a name RegExp / predicate over the trained variables. */
export type VariableSelector = readonly tf.Variable[] | tf.layers.Layer | readonly tf.layers.Layer[] | RegExp | ((v: tf.Variable) => boolean);

/** One group: its variables, its own optimizer, and optionally a learning-rate schedule. */
export interface OptimizerGroupSpec {
  variables: VariableSelector;
  /** Used by this group only: tfjs optimizers keep their state (Adam moments) by position in the gradient list. */
  optimizer: tf.Optimizer;
  /** Learning rate before each update of this group, from its 0-based update count. */
  schedule?: Schedule;
}

interface BoundGroup {
  name: string;
  vars: tf.Variable[];
  optimizer: tf.Optimizer;
  schedule?: Schedule;
  updates: number;
  /** The gradient list handed to the optimizer, reused across applies by the single-group fast path. */
  items?: { name: string; tensor: tf.Tensor | null }[];
}

/** The current learning rate of a tfjs optimizer (every built-in one has a numeric `learningRate`). */
export function getLearningRate(optimizer: tf.Optimizer): number {
  const lr = (optimizer as unknown as { learningRate?: unknown }).learningRate;
  if (typeof lr !== "number") throw new Error(`The optimizer ${optimizer.getClassName()} has no numeric learningRate field, so its rate cannot be read or scheduled.`);
  return lr;
}

/**
 * Set a tfjs optimizer's learning rate. SGD and momentum keep a cached `-lr` tensor, so they need
 * `setLearningRate`; the others read the `learningRate` field at each update.
 */
export function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) throw new Error(`setLearningRate: the learning rate must be a finite number >= 0, but got ${lr}.`);
  getLearningRate(optimizer);
  const o = optimizer as unknown as { setLearningRate?: (lr: number) => void; learningRate: number };
  if (typeof o.setLearningRate === "function") o.setLearningRate(lr);
  else o.learningRate = lr;
}

const list = (names: string[]) => names.map((n) => `"${n}"`).join(", ");

/**
 * Named optimizer groups. Give it to `JointTrainer` as its `optimizer`, or call {@link bind} with the
 * trained variables and {@link apply} with their gradients yourself.
 */
export class OptimizerGroups {
  private readonly specs: [string, OptimizerGroupSpec][];
  private bound: BoundGroup[] | undefined;
  private boundKey = "";

  constructor(groups: Record<string, OptimizerGroupSpec>) {
    this.specs = Object.entries(groups ?? {});
    if (this.specs.length === 0) throw new Error("optimizerGroups: no groups given.");
    const owners = new Map<tf.Optimizer, string>();
    for (const [name, spec] of this.specs) {
      if (!spec || !(spec.optimizer instanceof tf.Optimizer)) throw new Error(`optimizerGroups: group "${name}" needs a tf.Optimizer, but got ${String(spec?.optimizer)}.`);
      if (spec.schedule !== undefined && typeof spec.schedule !== "function") throw new Error(`optimizerGroups: the schedule of group "${name}" must be a function of the step, but got ${String(spec.schedule)}.`);
      if (spec.schedule) getLearningRate(spec.optimizer);
      const other = owners.get(spec.optimizer);
      if (other !== undefined) {
        throw new Error(`optimizerGroups: groups "${other}" and "${name}" use the same optimizer object; give each group its own (tfjs optimizers keep their state by position in the gradient list).`);
      }
      owners.set(spec.optimizer, name);
    }
  }

  /** Group names, in order. */
  names(): string[] {
    return this.specs.map(([n]) => n);
  }

  /**
   * Resolve each group's variables against the variables being trained, and check that each of
   * them is in exactly one group. Binding again to the same set is a no-op; to another set, an error.
   */
  bind(variables: readonly tf.Variable[]): this {
    const key = variables.map((v) => v.id).sort((a, b) => a - b).join(",");
    if (this.bound) {
      if (key !== this.boundKey) throw new Error(`optimizerGroups: these groups (${list(this.names())}) are already bound to another set of variables; make new groups for another trainer.`);
      return this;
    }
    const known = new Map(variables.map((v) => [v.id, v]));
    const groupsOf = new Map<number, string[]>();
    const bound = this.specs.map(([name, spec]) => {
      const vars = resolveSelector(spec.variables, variables, name);
      const outside = vars.filter((v) => !known.has(v.id));
      if (outside.length) throw new Error(`optimizerGroups: group "${name}" lists ${list(outside.map((v) => v.name))}, which ${outside.length > 1 ? "are" : "is"} not among the variables being trained.`);
      if (vars.length === 0) throw new Error(`optimizerGroups: group "${name}" selects no variables.`);
      for (const v of vars) groupsOf.set(v.id, [...(groupsOf.get(v.id) ?? []), name]);
      return { name, vars, optimizer: spec.optimizer, schedule: spec.schedule, updates: 0 };
    });
    const unassigned = variables.filter((v) => !groupsOf.has(v.id)).map((v) => v.name);
    const doubled = variables.filter((v) => (groupsOf.get(v.id)?.length ?? 0) > 1).map((v) => `${v.name} (in ${list(groupsOf.get(v.id)!)})`);
    if (unassigned.length || doubled.length) {
      throw new Error(
        "optimizerGroups: every trained variable must be in exactly one group." +
          (unassigned.length ? ` In no group: ${unassigned.join(", ")}.` : "") +
          (doubled.length ? ` In several groups: ${doubled.join("; ")}.` : ""),
      );
    }
    this.bound = bound;
    this.boundKey = key;
    return this;
  }

  private groups(): BoundGroup[] {
    if (!this.bound) throw new Error("optimizerGroups: call bind(variables) (or pass the groups to a trainer) before using them.");
    return this.bound;
  }

  /** The variables of one group (after binding). */
  variablesOf(name: string): tf.Variable[] {
    const g = this.groups().find((x) => x.name === name);
    if (!g) throw new Error(`optimizerGroups: no group "${name}"; groups are ${list(this.names())}.`);
    return [...g.vars];
  }

  /** Updates applied by each group so far. */
  updates(): Record<string, number> {
    return Object.fromEntries(this.groups().map((g) => [g.name, g.updates]));
  }

  /** Each group's name, optimizer and update count (which drives its schedule), for checkpoints. */
  groupStates(): { name: string; optimizer: tf.Optimizer; updates: number }[] {
    return this.groups().map((g) => ({ name: g.name, optimizer: g.optimizer, updates: g.updates }));
  }

  /** Set each group's update count (from {@link OptimizerGroups.groupStates}), so its schedule continues where it was. */
  setUpdates(updates: Record<string, number>): void {
    for (const g of this.groups()) {
      const u = updates[g.name];
      if (typeof u !== "number" || !Number.isInteger(u) || u < 0) throw new Error(`optimizerGroups: the update count of group "${g.name}" must be an integer >= 0, but got ${String(u)}; the groups are ${list(this.names())}.`);
      g.updates = u;
    }
  }

  /** Each group's current learning rate (the one used by its latest update). */
  learningRates(): Record<string, number> {
    return Object.fromEntries(this.specs.map(([n, s]) => [n, getLearningRate(s.optimizer)]));
  }

  /**
   * Apply gradients (by variable name, as from `tf.variableGrads`): each group first sets its
   * scheduled rate, then its optimizer updates its own variables. A group none of whose variables has
   * a gradient is skipped (its schedule does not advance). Gradients are not disposed.
   */
  apply(grads: tf.NamedTensorMap): void {
    const groups = this.groups();
    // One group (a trainer given a single optimizer): fill a reused list instead of building the
    // name set, the stray list and a new item list every step. When every gradient in `grads` is
    // one of the group's, nothing is stray; otherwise the general path below reports it.
    if (groups.length === 1) {
      const g = groups[0] as BoundGroup;
      const items = (g.items ??= g.vars.map((v) => ({ name: v.name, tensor: null })));
      let present = 0;
      for (const item of items) {
        item.tensor = grads[item.name] ?? null;
        if (item.tensor !== null) present++;
      }
      let fast = false;
      try {
        if (present > 0 && present === Object.keys(grads).length) {
          fast = true;
          this.applyGroup(g, items as { name: string; tensor: tf.Tensor }[]);
        }
      } finally {
        // No references to this step's (soon disposed) gradients are kept.
        for (const item of items) item.tensor = null;
      }
      if (fast) return;
    }
    const names = new Set(groups.flatMap((g) => g.vars.map((v) => v.name)));
    const stray = Object.keys(grads).filter((n) => !names.has(n));
    if (stray.length) throw new Error(`optimizerGroups: gradients for ${list(stray)}, which no group holds.`);
    for (const g of groups) {
      // Always the group's full variable list in the same order, null where there is no gradient:
      // tfjs optimizers index their state by position.
      const items = g.vars.map((v) => ({ name: v.name, tensor: (grads[v.name] ?? null) as tf.Tensor }));
      if (items.every((i) => i.tensor === null)) continue;
      this.applyGroup(g, items);
    }
  }

  /** Set the group's scheduled rate, then let its optimizer update its variables. */
  private applyGroup(g: BoundGroup, items: { name: string; tensor: tf.Tensor }[]): void {
    if (g.schedule) {
      const lr = g.schedule(g.updates);
      if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) throw new Error(`optimizerGroups: the schedule of group "${g.name}" gave ${lr} at update ${g.updates}; a learning rate must be finite and >= 0.`);
      setLearningRate(g.optimizer, lr);
    }
    g.optimizer.applyGradients(items);
    g.updates++;
  }

  /** Dispose every group's optimizer (their state tensors). */
  dispose(): void {
    for (const [, s] of this.specs) s.optimizer.dispose();
  }
}

function resolveSelector(sel: VariableSelector, trained: readonly tf.Variable[], group: string): tf.Variable[] {
  const layerVars = (l: tf.layers.Layer) => l.trainableWeights.map((w) => w.read() as tf.Variable);
  let out: tf.Variable[];
  if (sel instanceof RegExp) {
    const re = new RegExp(sel.source, sel.flags.replace(/[gy]/g, "")); // a /g RegExp's test() is stateful
    out = trained.filter((v) => re.test(v.name));
  }
  else if (typeof sel === "function") out = trained.filter((v) => sel(v));
  else if (sel instanceof tf.layers.Layer) out = layerVars(sel);
  else if (Array.isArray(sel)) {
    out = (sel as readonly (tf.Variable | tf.layers.Layer)[]).flatMap((x) => {
      if (x instanceof tf.layers.Layer) return layerVars(x);
      if (x instanceof tf.Variable) return [x];
      throw new Error(`optimizerGroups: group "${group}" lists ${String(x)}, which is neither a variable nor a layer.`);
    });
  } else throw new Error(`optimizerGroups: group "${group}" has variables ${String(sel)}; use variables, layers, a RegExp or a predicate.`);
  const seen = new Set<number>();
  return out.filter((v) => (seen.has(v.id) ? false : (seen.add(v.id), true)));
}

/** Make {@link OptimizerGroups} from named group specs. */
export function optimizerGroups(groups: Record<string, OptimizerGroupSpec>): OptimizerGroups {
  return new OptimizerGroups(groups);
}
