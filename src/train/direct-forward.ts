import * as tf from "@tensorflow/tfjs";
import { TableEmbedding } from "../layers/embedding.js";
import { fusedActivationGrad, fusedDense, isFusedActivation } from "../ops/fused.js";

/**
 * A direct forward pass for simple Layers models, bypassing tfjs-layers' graph executor (about a
 * fifth of a small MLP's training step on CPU).
 *
 * {@link directForward} compiles a functional or Sequential model made only of `InputLayer`,
 * `Dense` (rank-2 inputs), `Concatenate`, `Activation`, `Flatten` (channels last) and jointly's
 * `TableEmbedding` layers into a closure that computes the same outputs with `tf.fused.matMul` on
 * the layers' own variables (a `TableEmbedding` runs its own `call`, so lookups shared within a
 * trainer step stay shared), in the order the model's own graph gives. Anything else (dropout,
 * batch normalisation, `tf.layers.embedding`, nested models, custom or subclassed layers, layers
 * with masks or several outputs) gives `undefined`, and callers keep using `model.apply`.
 *
 * On wasm with the native addon, a Dense layer with a bias is jointly's fused Dense op instead
 * (src/ops/fused.ts): the same forward kernel, and a gradient of 4 kernels against ~9, which on small
 * models is most of a step's cost. Inside {@link reuseUpstream} (the per-task passes), layers that
 * cannot depend on the differentiated variables are computed once for all passes.
 *
 * Regularizers and constraints do not change a forward pass (tfjs-layers applies them only in
 * `model.fit`), so they are allowed.
 */
export type DirectForward = (inputs: tf.Tensor | tf.Tensor[], training: boolean, outputs?: readonly number[]) => tf.Tensor[];

interface LayerLike {
  name: string;
  inboundNodes: NodeLike[];
  constructor: unknown;
}
interface NodeLike {
  inboundLayers: LayerLike[];
  inputTensors: tf.SymbolicTensor[];
  outputTensors: tf.SymbolicTensor[];
  inputMasks?: unknown[];
}
interface ActivationObject {
  getClassName(): string;
  apply(x: tf.Tensor): tf.Tensor;
}
interface LayerVariableLike {
  read(): tf.Tensor;
  shape: number[];
}

/** The layer's own class name, only if its class registers it itself (a subclass that does not is refused). */
function className(layer: unknown): string | undefined {
  const ctor = (layer as { constructor?: unknown }).constructor as { className?: unknown } | undefined;
  if (!ctor || !Object.prototype.hasOwnProperty.call(ctor, "className")) return undefined;
  return typeof ctor.className === "string" ? ctor.className : undefined;
}

type Step = (values: Map<number, tf.Tensor>) => void;

/** Compile `model` into a direct forward closure, or `undefined` if it cannot be reproduced exactly. */
export function directForward(model: tf.LayersModel): DirectForward | undefined {
  try {
    return compile(model);
  } catch {
    return undefined;
  }
}

function compile(model: tf.LayersModel): DirectForward | undefined {
  // A Sequential model builds its inner model (and output names) on its first apply(); do it now,
  // since apply() is bypassed. This adds no variables: its layers are built already.
  if (model instanceof tf.Sequential && model.outputNames.length === 0) model.build();
  const modelInputs = model.inputs as tf.SymbolicTensor[] | undefined;
  const modelOutputs = model.outputs as tf.SymbolicTensor[] | undefined;
  if (!modelInputs?.length || !modelOutputs?.length) return undefined;
  // Every layer of the model must be one we reproduce.
  for (const layer of model.layers) {
    const c = className(layer);
    if (c !== "InputLayer" && c !== "Dense" && c !== "Concatenate" && c !== "Activation" && c !== "Flatten" && c !== TableEmbedding.className) return undefined;
  }
  const inputIds = new Map<number, number>(modelInputs.map((s, i) => [s.id, i]));
  const steps: CompiledStep[] = [];
  const done = new Set<number>(inputIds.keys());
  const visiting = new Set<number>();
  const layerSet = new Set<unknown>(model.layers);
  const outputSet = new Set<number>(modelOutputs.map((s) => s.id));
  // How many of this model's nodes read each symbolic tensor.
  const consumers = new Map<number, number>();
  for (const layer of model.layers as unknown as LayerLike[]) {
    for (const node of layer.inboundNodes) for (const t of node.inputTensors) consumers.set(t.id, (consumers.get(t.id) ?? 0) + 1);
  }

  // Depth-first from the outputs through each tensor's producing node: a topological order of the
  // nodes this model actually uses (a layer shared with other models may have other nodes too).
  const visit = (s: tf.SymbolicTensor): boolean => {
    if (done.has(s.id)) return true;
    if (visiting.has(s.id)) return false;
    visiting.add(s.id);
    const layer = s.sourceLayer as unknown as LayerLike;
    if (!layerSet.has(layer)) return false;
    const node = layer.inboundNodes[s.nodeIndex];
    if (!node || node.outputTensors.length !== 1 || s.tensorIndex !== 0) return false;
    if (node.inputMasks?.some((m) => m != null)) return false;
    const lookup = flattenedLookup(layer, node, layerSet, consumers, outputSet);
    const ins = lookup ? [lookup.ids] : node.inputTensors;
    for (const t of ins) if (!visit(t)) return false;
    const step = lookup ? lookupStep(lookup.emb, lookup.ids.id, s.id) : makeStep(layer, ins, s);
    if (!step) return false;
    // The variables the step reads: its layer's (for a skipped lookup, the table's).
    const owner = (lookup ? lookup.emb : layer) as unknown as { weights?: LayerVariableLike[] };
    const compiled: CompiledStep = { run: step, ins: ins.map((t) => t.id), out: s.id, vars: [...(owner.weights ?? [])] };
    const dense = lookup ? undefined : denseOf(layer);
    if (dense) compiled.dense = dense;
    steps.push(compiled);
    visiting.delete(s.id);
    done.add(s.id);
    return true;
  };
  for (const s of modelOutputs) if (!visit(s)) return undefined;

  const inputDtypes = modelInputs.map((s) => s.dtype);
  const outputIds = modelOutputs.map((s) => s.id);
  const inputSyms = modelInputs;
  const plans = new Map<string, ReusePlan | null>();
  // This compiled model's identity in a reuse scope's cache.
  const cacheKey = {};
  // The steps each subset of outputs needs (its ancestors), by the subset's indices.
  const neededSteps = new Map<string, Set<CompiledStep>>();
  const stepsFor = (wanted: readonly number[]): Set<CompiledStep> => {
    const key = wanted.join(",");
    let set = neededSteps.get(key);
    if (!set) {
      const byOut = new Map(steps.map((s) => [s.out, s]));
      set = new Set();
      const stack = wanted.map((k) => outputIds[k] as number);
      while (stack.length > 0) {
        const st = byOut.get(stack.pop() as number);
        if (!st || set.has(st)) continue;
        set.add(st);
        stack.push(...st.ins);
      }
      if (neededSteps.size >= 16) neededSteps.clear();
      neededSteps.set(key, set);
    }
    return set;
  };
  return (inputs, training, outputs) =>
    tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      if (list.length !== inputSyms.length) {
        throw new Error(`Model "${model.name}" has ${inputSyms.length} inputs; got ${list.length} tensors.`);
      }
      const values = new Map<number, tf.Tensor>();
      inputSyms.forEach((s, i) => {
        const t = list[i] as tf.Tensor;
        const dtype = inputDtypes[i];
        // As the Layers executor does: a feed of another dtype is cast to the input's.
        values.set(s.id, dtype != null && t.dtype !== dtype ? tf.cast(t, dtype) : t);
      });
      // Only the steps the wanted outputs need (all of them when none are named): the others' outputs are not returned.
      const needed = outputs && outputs.length < outputIds.length ? stepsFor(outputs) : undefined;
      const scope = activeReuse();
      const plan = scope && planFor(plans, scope, steps, outputIds, inputSyms.filter((_, i) => !constantInput(scope, list[i] as tf.Tensor)).map((sym) => sym.id));
      if (scope && plan) {
        for (const [id, t] of upstreamValues(scope, cacheKey, plan, list, training, values)) values.set(id, t);
        if (plan.held && (!needed || (plan.heldStep !== undefined && needed.has(plan.heldStep)))) holdUse(scope, plan.held, values);
        for (const step of plan.rest) if (!needed || needed.has(step)) step.run(values);
      } else {
        for (const step of steps) if (!needed || needed.has(step)) step.run(values);
        const cap = activeCapture();
        if (cap && !needed) capture(cap, plans, steps, outputIds, inputSyms.map((sym) => sym.id), cacheKey, list, training, values);
      }
      return outputIds.map((id) => values.get(id) as tf.Tensor);
    });
}

// ----- reuse of the upstream part across per-task passes --------------------------------------

interface CompiledStep {
  run: Step;
  /** Symbolic ids of the step's inputs and output. */
  ins: number[];
  out: number;
  /** The layer variables the step reads. */
  vars: LayerVariableLike[];
  /** For a Dense layer: its variables and activation (what a held output's gradient needs). */
  dense?: DenseInfo;
}

interface DenseInfo {
  kernel: LayerVariableLike;
  bias: LayerVariableLike | null;
  /** tfjs-layers' class name of the activation ("linear" when there is none). */
  activation: string;
}

/** The Dense layer a plan holds: the symbolic ids of its input and output. */
interface HeldStep {
  xId: number;
  yId: number;
  dense: DenseInfo;
}

/** A model's split for one set of differentiated variables. */
interface ReusePlan {
  /** Steps that cannot depend on the variables (in order), and the others. */
  upstream: CompiledStep[];
  rest: CompiledStep[];
  /** Outputs of upstream steps that a later step or the model's outputs read: what is kept. */
  frontier: number[];
  /** The variables the upstream steps read (a cached value is stale once one is assigned). */
  vars: LayerVariableLike[];
  /** In a holding scope: the one Dense step reading the variables, computed upstream with its output held. */
  held?: HeldStep;
  heldStep?: CompiledStep;
}

interface ReuseEntry {
  values: Map<number, tf.Tensor>;
  /** Data of the inputs and of the upstream variables when the values were computed. */
  data: object[];
  /** The plan whose frontier the values are. */
  plan: ReusePlan;
}

/** What a plan depends on: the differentiated variables and whether a Dense output is held. */
interface PlanScope {
  ids: Set<number>;
  key: string;
  hold: boolean;
  firstTensorId: number;
}

interface ReuseScope extends PlanScope {
  /** Gradient depth of the passes this scope serves (that of `tf.variableGrads`' function). */
  depth: number;
  /** tf.Variable ids of the differentiated variables, and the same as a key. */
  ids: Set<number>;
  key: string;
  /** Tensors with an id from this one on were made inside the scope, perhaps from the variables. */
  firstTensorId: number;
  /** Cached upstream values by compiled model, then by inputs. */
  entries: Map<object, Map<string, ReuseEntry>>;
  /** Values replaced after their inputs or variables changed: a pass may still read them, so freed at the end. */
  retired: tf.Tensor[];
  /** Whether a Dense layer reading exactly the variables has its output held (see {@link HeldDense}). */
  hold: boolean;
  /** Held outputs the forward passes used since {@link takeHeldDense} was last called. */
  used: HeldDense[];
  /** act'(Y) by the held output's tensor id, computed once for all passes. */
  slopes: Map<number, tf.Tensor>;
}

let reuse: ReuseScope | undefined;

/**
 * Run `passes` (several gradient passes over `variables` on the same inputs, e.g. one per task, as
 * `perTaskVariableGrads` does) with the part of each direct forward pass that cannot depend on
 * `variables` computed once and reused by every pass.
 *
 * Why: per-task gradients need one forward pass per task (tfjs keeps no graph between passes), and
 * with shared variables deep in a trunk (GradNorm's last trunk kernel) every pass recomputed the
 * layers before them with identical values. Here a layer that reads none of `variables`, directly or
 * through its inputs, is computed once per scope and its output held as a constant: outside the
 * gradient tape (so it is neither recorded nor saved for a backward pass), which changes no gradient
 * with respect to `variables`, since no path from them runs through it.
 *
 * Scope: only passes at the gradient depth just inside this call are served (a nested tf.grad, or a
 * forward pass outside any tape, computes everything); a value is reused only for the same input
 * tensors and while the upstream variables hold the same data (an update in between recomputes it),
 * and an input made inside the scope (another model's output, say) or one of `variables` itself
 * counts as depending on them. Models without a direct forward pass (`model.apply`, hand-written Trainables) compute everything,
 * as before. What the scope holds is freed when it returns or throws; scopes nest.
 */
export function reuseUpstream<T>(variables: readonly tf.Variable[], passes: () => T, options: { holdDense?: boolean; upstream?: UpstreamCapture } = {}): T {
  const outer = reuse;
  const ids = new Set(variables.map((v) => v.id));
  const hold = options.holdDense === true;
  const scope: ReuseScope = {
    depth: tf.engine().state.gradientDepth + 1, ids, key: scopeKey(ids, hold), firstTensorId: nextTensorId(),
    entries: new Map(), retired: [], hold, used: [], slopes: new Map(),
  };
  // Values an earlier forward pass captured for the same variable set: the scope's from now on.
  const from = options.upstream;
  if (from instanceof Capture && from.key === scope.key && from.depth === scope.depth) {
    for (const [model, byInputs] of from.entries) scope.entries.set(model, byInputs);
    from.entries = new Map();
  }
  reuse = scope;
  try {
    return passes();
  } finally {
    reuse = outer;
    for (const byInputs of scope.entries.values()) for (const e of byInputs.values()) tf.dispose([...e.values.values()]);
    tf.dispose(scope.retired);
    tf.dispose([...scope.slopes.values()]);
    scope.entries.clear();
    scope.slopes.clear();
    scope.retired = [];
    scope.used = [];
  }
}

function scopeKey(ids: Set<number>, hold: boolean): string {
  return `${hold ? "h" : ""}${[...ids].sort((a, b) => a - b).join(",")}`;
}

/**
 * Upstream values kept from a forward pass (see {@link captureUpstream}) for a later
 * {@link reuseUpstream} over the same variables; dispose it when done (a no-op once a scope took them).
 */
export interface UpstreamCapture {
  dispose(): void;
}

class Capture implements UpstreamCapture, PlanScope {
  entries = new Map<object, Map<string, ReuseEntry>>();
  constructor(readonly ids: Set<number>, readonly key: string, readonly hold: boolean, readonly firstTensorId: number, readonly depth: number) {}
  dispose(): void {
    for (const byInputs of this.entries.values()) for (const e of byInputs.values()) tf.dispose([...e.values.values()]);
    this.entries = new Map();
  }
}

let capturing: Capture | undefined;

function activeCapture(): Capture | undefined {
  return capturing && !reuse && tf.engine().state.gradientDepth === capturing.depth ? capturing : undefined;
}

/**
 * Run `f` (one gradient pass, e.g. a trainer's joint pass) and keep, from each direct forward pass
 * it makes with all outputs, the values a {@link reuseUpstream} scope over `variables` (with the same
 * `holdDense`) would compute upstream for the same inputs: passed to that scope as `upstream`, its
 * passes skip those layers altogether. Why: GradNorm's norms are taken on the same parameters as the
 * joint pass, which computed the trunk already. Values are checked as in a scope (same input tensors
 * and variable data, same plan), so a stale or unused capture only costs memory until disposed.
 * The caller disposes the capture (also when `f` throws, nothing is left).
 */
export function captureUpstream<T>(variables: readonly tf.Variable[], f: () => T, options: { holdDense?: boolean } = {}): { result: T; upstream: UpstreamCapture } {
  const ids = new Set(variables.map((v) => v.id));
  const hold = options.holdDense === true;
  const cap = new Capture(ids, scopeKey(ids, hold), hold, nextTensorId(), tf.engine().state.gradientDepth + 1);
  const outer = capturing;
  capturing = cap;
  try {
    return { result: f(), upstream: cap };
  } catch (e) {
    cap.dispose();
    throw e;
  } finally {
    capturing = outer;
  }
}

/** Keep clones of the frontier values of a forward pass that computed every step, for a later scope. */
function capture(
  cap: Capture, plans: Map<string, ReusePlan | null>, steps: CompiledStep[], outputIds: number[], inputIds: number[], model: object, inputs: tf.Tensor[], training: boolean, values: Map<number, tf.Tensor>,
): void {
  const plan = planFor(plans, cap, steps, outputIds, inputIds.filter((_, i) => !constantInput(cap, inputs[i] as tf.Tensor)));
  if (!plan) return;
  const key = `${training ? 1 : 0}:${inputs.map((t) => t.id).join(",")}`;
  let byInputs = cap.entries.get(model);
  if (!byInputs) cap.entries.set(model, (byInputs = new Map()));
  if (byInputs.has(key)) return;
  const data = [...inputs.map((t) => t.dataId), ...plan.vars.map((v) => v.read().dataId)];
  const kept = untaped(() => new Map(plan.frontier.map((id) => [id, tf.keep(tf.clone(values.get(id) as tf.Tensor))])));
  byInputs.set(key, { values: kept, data, plan });
}

/** Number of upstream values held by the innermost open scope (undefined when none is open), for tests. */
export function reusedUpstreamCount(): number | undefined {
  if (!reuse) return undefined;
  let n = 0;
  for (const byInputs of reuse.entries.values()) for (const e of byInputs.values()) n += e.values.size;
  return n;
}

function activeReuse(): ReuseScope | undefined {
  return reuse && tf.engine().state.gradientDepth === reuse.depth ? reuse : undefined;
}

/**
 * Whether a model input is a constant to the scope's passes: made before the scope opened (so not
 * from the variables inside a pass, as another model's output fed to this one would be), and not one
 * of the variables itself.
 */
function constantInput(scope: PlanScope, t: tf.Tensor): boolean {
  return t.id < scope.firstTensorId && !scope.ids.has(t.id);
}

/** The id the engine gives the next tensor it makes (ids only grow). */
function nextTensorId(): number {
  const engineClass = tf.engine().constructor as unknown as { nextTensorId?: unknown };
  if (typeof engineClass.nextTensorId === "number") return engineClass.nextTensorId;
  // Not where tfjs 4 keeps it: a tensor made now has the next id.
  const probe = tf.scalar(0);
  probe.dispose();
  return probe.id + 1;
}

/**
 * The plan of `steps` for the scope's variables and the symbolic ids of the inputs that may depend
 * on them (memoised per both), or null when nothing is upstream.
 */
function planFor(plans: Map<string, ReusePlan | null>, scope: PlanScope, steps: CompiledStep[], outputIds: number[], varying: number[]): ReusePlan | null {
  const key = `${scope.key}|${varying.join(",")}`;
  const known = plans.get(key);
  if (known !== undefined) return known;
  const dependent = new Set<number>(varying);
  const upstream: CompiledStep[] = [];
  const rest: CompiledStep[] = [];
  const held = scope.hold ? heldStep(scope, steps, varying) : undefined;
  for (const step of steps) {
    if (step === held) {
      // Computed once like an upstream layer, but its output is what the passes differentiate at:
      // the steps reading it are on the tape.
      upstream.push(step);
      dependent.add(step.out);
    } else if (step.vars.some((v) => scope.ids.has(v.read().id)) || step.ins.some((id) => dependent.has(id))) {
      dependent.add(step.out);
      rest.push(step);
    } else {
      upstream.push(step);
    }
  }
  let plan: ReusePlan | null = null;
  if (upstream.length > 0) {
    const made = new Set(upstream.map((s) => s.out));
    const read = new Set([...rest.flatMap((s) => s.ins), ...outputIds]);
    const frontier = [...made].filter((id) => read.has(id));
    plan = { upstream, rest, frontier, vars: [...new Set(upstream.flatMap((s) => s.vars))] };
    if (held) {
      const h: HeldStep = { xId: held.ins[0] as number, yId: held.out, dense: held.dense as DenseInfo };
      // The layer's input is kept too (the kernel's gradient is Xᵀ·δ), and its output even if only a model output.
      for (const id of [h.xId, h.yId]) if (!frontier.includes(id)) frontier.push(id);
      plan.held = h;
      plan.heldStep = held;
    }
  }
  // A trainer uses one or two variable sets; a caller cycling through many should not grow this.
  if (plans.size >= 16) plans.clear();
  plans.set(key, plan);
  return plan;
}

/**
 * The step of `steps` whose output a holding scope holds: the only step reading any of the scope's
 * variables, a Dense layer whose kernel (and perhaps bias) are exactly those variables, with an
 * activation whose derivative {@link heldDenseGrads} knows from the output, and an input that does
 * not depend on the variables (else holding it would cut a path to them). Otherwise undefined.
 */
function heldStep(scope: PlanScope, steps: CompiledStep[], varying: number[]): CompiledStep | undefined {
  const readers = steps.filter((s) => s.vars.some((v) => scope.ids.has(v.read().id)));
  const step = readers[0];
  if (readers.length !== 1 || !step?.dense || !(step.dense.activation in SLOPES)) return undefined;
  const { kernel, bias } = step.dense;
  const own = new Set([kernel.read().id, ...(bias ? [bias.read().id] : [])]);
  if (!scope.ids.has(kernel.read().id) || ![...scope.ids].every((id) => own.has(id))) return undefined;
  // Steps before it read none of the variables (it is the only reader): only varying inputs make X depend on them.
  const dependent = new Set<number>(varying);
  for (const s of steps) {
    if (s === step) break;
    if (s.ins.some((id) => dependent.has(id))) dependent.add(s.out);
  }
  return step.ins.length === 1 && !dependent.has(step.ins[0] as number) ? step : undefined;
}

/**
 * The frontier values of `plan` for these inputs: from the scope's cache when they were computed
 * for the same input tensors and variable data, otherwise computed off the tape and cached.
 * `values` holds the (cast) inputs of this call.
 */
function upstreamValues(
  scope: ReuseScope, model: object, plan: ReusePlan, inputs: tf.Tensor[], training: boolean, values: Map<number, tf.Tensor>,
): Map<number, tf.Tensor> {
  const key = `${training ? 1 : 0}:${inputs.map((t) => t.id).join(",")}`;
  const data = [...inputs.map((t) => t.dataId), ...plan.vars.map((v) => v.read().dataId)];
  let byInputs = scope.entries.get(model);
  if (!byInputs) scope.entries.set(model, (byInputs = new Map()));
  const hit = byInputs.get(key);
  if (hit && hit.plan === plan && hit.data.every((d, i) => d === data[i]) && [...hit.values.values()].every((t) => !t.isDisposed)) return hit.values;
  const kept = untaped(() => {
    for (const step of plan.upstream) step.run(values);
    // Clones, kept: the step outputs belong to this call's tidy (or to a lookup cache, or are an
    // input itself, for a linear Activation); the clones share their data and are the scope's.
    return new Map(plan.frontier.map((id) => [id, tf.keep(tf.clone(values.get(id) as tf.Tensor))]));
  });
  if (hit) scope.retired.push(...hit.values.values());
  byInputs.set(key, { values: kept, data, plan });
  return kept;
}

/**
 * A Dense layer's output held constant in a holding scope's passes (see {@link reuseUpstream}): a
 * pass differentiates its loss with respect to `output`, and {@link heldDenseGrads} turns that
 * gradient into the kernel's and bias's.
 */
export interface HeldDense {
  /** The layer's input X and output Y = act(X·W + b), computed once for the scope's passes. */
  input: tf.Tensor;
  output: tf.Tensor;
  kernel: tf.Variable;
  bias: tf.Variable | null;
  activation: string;
}

function holdUse(scope: ReuseScope, h: HeldStep, values: Map<number, tf.Tensor>): void {
  const output = values.get(h.yId) as tf.Tensor;
  // The same model run twice on the same inputs in one pass reads the same held tensor: one entry,
  // since the pass's gradient at it already sums both uses.
  if (scope.used.some((u) => u.output === output)) return;
  const { kernel, bias, activation } = h.dense;
  scope.used.push({ input: values.get(h.xId) as tf.Tensor, output, kernel: kernel.read() as tf.Variable, bias: bias ? (bias.read() as tf.Variable) : null, activation });
}

/** The held outputs forward passes used since the last call, in the innermost scope at this gradient depth (none outside). */
export function takeHeldDense(): HeldDense[] {
  const scope = activeReuse();
  if (!scope) return [];
  const used = scope.used;
  scope.used = [];
  return used;
}

/**
 * act'(z) at z = act⁻¹(y), from the output y, as tfjs's gradients compute it: relu y > 0; relu6
 * 0 < y < 6; elu 1 for y > 0, else y + 1; sigmoid y(1 − y). Activations whose derivative cannot be
 * had from the output (tanh would, but is not in the fused set) are not held.
 */
const SLOPES: Record<string, ((y: tf.Tensor) => tf.Tensor) | null> = {
  linear: null,
  relu: (y) => tf.cast(tf.greater(y, 0), "float32"),
  relu6: (y) => tf.cast(tf.logicalAnd(tf.greater(y, 0), tf.less(y, 6)), "float32"),
  elu: (y) => tf.where(tf.greater(y, 0), tf.onesLike(y), tf.add(y, 1)),
  sigmoid: (y) => tf.mul(y, tf.sub(1, y)),
};

/**
 * The gradients of the held layer's kernel and (when `withBias`) bias, given a loss's gradient `dy`
 * at its output: δ = dy ⊙ act'(Y), ∇W = Xᵀ·δ, ∇b = Σ_rows δ. act'(Y) is computed once per scope.
 * The caller owns the results.
 */
export function heldDenseGrads(h: HeldDense, dy: tf.Tensor, withBias: boolean): { kernel: tf.Tensor; bias?: tf.Tensor } {
  const slope = SLOPES[h.activation];
  if (slope === undefined) throw new Error(`heldDenseGrads: no derivative for the activation "${h.activation}".`);
  if (slope) {
    // On wasm with the addon: the fused Dense gradient's own derivative kernel, one pass over dy and
    // Y, and the very numbers the recomputing passes' fused Dense gradient gives.
    const fused = tf.tidy(() => {
      const delta = fusedActivationGrad(dy, h.output, h.activation) as tf.Tensor2D | undefined;
      if (delta === undefined) return undefined;
      const kernel = tf.matMul(h.input as tf.Tensor2D, delta, true, false);
      return withBias ? { kernel, bias: tf.sum(delta, 0) } : { kernel };
    });
    if (fused !== undefined) return fused;
  }
  let s: tf.Tensor | undefined;
  let owned = false;
  if (slope) {
    s = reuse?.slopes.get(h.output.id);
    if (!s || s.isDisposed) {
      s = tf.keep(tf.tidy(() => slope(h.output)));
      // Freed with the scope; outside one, freed below.
      if (reuse) reuse.slopes.set(h.output.id, s);
      else owned = true;
    }
  }
  try {
    return tf.tidy(() => {
      const delta = s ? tf.mul(dy, s) : dy;
      const kernel = tf.matMul(h.input as tf.Tensor2D, delta as tf.Tensor2D, true, false);
      return withBias ? { kernel, bias: tf.sum(delta, 0) } : { kernel };
    });
  } finally {
    if (owned) s?.dispose();
  }
}

/**
 * Run `f` without recording its ops on the active gradient tape: the engine records nothing while a
 * kernel runs (its `kernelDepth` > 0; that is how a customGrad forward function runs untaped), so
 * `f`'s results are constants to any gradient being taken and nothing is saved for a backward pass.
 */
function untaped<T>(f: () => T): T {
  const state = tf.engine().state as unknown as { kernelDepth: number };
  state.kernelDepth++;
  try {
    return f();
  } finally {
    state.kernelDepth--;
  }
}

/**
 * A `Flatten` of a `TableEmbedding`'s output, when nothing else reads that output: its ids input
 * (`[batch, k]`) and the layer, so the flattened output can be computed from the lookup's rows
 * directly. Flatten(reshape(rows, [batch, k, D])) is reshape(rows, [batch, k·D]), and with k = 1
 * that is the rows themselves: no reshape forward or backward.
 */
function flattenedLookup(
  layer: LayerLike, node: NodeLike, layers: Set<unknown>, consumers: Map<number, number>, outputs: Set<number>,
): { emb: TableEmbedding; ids: tf.SymbolicTensor } | undefined {
  if (className(layer) !== "Flatten" || (layer as unknown as { dataFormat?: string }).dataFormat === "channelsFirst") return undefined;
  const t = node.inputTensors[0];
  if (node.inputTensors.length !== 1 || !t || t.tensorIndex !== 0 || consumers.get(t.id) !== 1 || outputs.has(t.id)) return undefined;
  const emb = t.sourceLayer as unknown;
  if (!(emb instanceof TableEmbedding) || className(emb) !== TableEmbedding.className || !layers.has(emb) || !emb.built) return undefined;
  const embNode = (emb as unknown as LayerLike).inboundNodes[t.nodeIndex];
  const ids = embNode?.inputTensors[0];
  if (!embNode || !ids || embNode.inputTensors.length !== 1 || embNode.outputTensors.length !== 1 || embNode.inputMasks?.some((m) => m != null)) return undefined;
  return ids.shape.length === 2 ? { emb, ids } : undefined;
}

function lookupStep(emb: TableEmbedding, idsId: number, outId: number): Step {
  return (v) => {
    const ids = v.get(idsId) as tf.Tensor;
    const rows = emb.lookupRows(ids);
    const width = (ids.shape[1] as number) * emb.outputDim;
    v.set(outId, rows.shape[1] === width ? rows : tf.reshape(rows, [ids.shape[0] as number, width]));
  };
}

/**
 * {@link fusedDense}, except under nested gradient tapes: the fused op's gradient kernels have no
 * gradients of their own, so a second-order gradient (a gradient penalty taken inside a training
 * pass, say) keeps tf.fused.matMul, whose gradient is made of differentiable ops.
 */
function firstOrderDense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, activation: string): tf.Tensor | undefined {
  return tf.engine().state.gradientDepth < 2 ? fusedDense(x, kernel, bias, activation) : undefined;
}

/** A Dense layer's variables and activation name, or undefined for any other layer. */
function denseOf(layer: LayerLike): DenseInfo | undefined {
  if (className(layer) !== "Dense") return undefined;
  const d = layer as unknown as { kernel: LayerVariableLike | null; bias: LayerVariableLike | null; activation: ActivationObject | null };
  if (!d.kernel) return undefined;
  return { kernel: d.kernel, bias: d.bias, activation: d.activation ? d.activation.getClassName() : "linear" };
}

function makeStep(layer: LayerLike, ins: tf.SymbolicTensor[], out: tf.SymbolicTensor): Step | undefined {
  const kind = className(layer);
  const inIds = ins.map((t) => t.id);
  const outId = out.id;
  if (kind === "Dense") {
    const d = layer as unknown as { kernel: LayerVariableLike | null; bias: LayerVariableLike | null; activation: ActivationObject | null };
    if (ins.length !== 1 || (ins[0] as tf.SymbolicTensor).shape.length !== 2 || !d.kernel || d.kernel.shape.length !== 2) return undefined;
    const kernel = d.kernel;
    const bias = d.bias;
    const act = d.activation;
    // Activations that tf.fused.matMul and jointly's fused Dense compute themselves, by tfjs-layers class name.
    const actName = act ? act.getClassName() : "linear";
    const fused = isFusedActivation(actName) ? actName : undefined;
    const inId = inIds[0] as number;
    if (fused) {
      if (bias) {
        // jointly's fused Dense op where it applies (wasm with the native addon): the same forward
        // kernel, and a 4-kernel gradient against ~9 for tf.fused.matMul's (see src/ops/fused.ts).
        return (v) => {
          const x = v.get(inId) as tf.Tensor;
          const k = kernel.read();
          const b = bias.read();
          v.set(outId, firstOrderDense(x, k, b, fused) ?? tf.fused.matMul({ a: x as tf.Tensor2D, b: k as tf.Tensor2D, bias: b, activation: fused }));
        };
      }
      return (v) => {
        v.set(outId, tf.fused.matMul({ a: v.get(inId) as tf.Tensor2D, b: kernel.read() as tf.Tensor2D, activation: fused }));
      };
    }
    const activation = act as ActivationObject;
    return (v) => {
      const x = v.get(inId) as tf.Tensor;
      const k = kernel.read();
      const b = bias?.read();
      // The affine part fused as above (linear: bit-identical to tf.fused.matMul forward and backward), then the activation.
      const z = (b && firstOrderDense(x, k, b, "linear")) ?? tf.fused.matMul({ a: x as tf.Tensor2D, b: k as tf.Tensor2D, bias: b });
      v.set(outId, activation.apply(z));
    };
  }
  if (kind === "Activation") {
    const a = (layer as unknown as { activation: ActivationObject | null }).activation;
    if (ins.length !== 1 || !a) return undefined;
    const inId = inIds[0] as number;
    return (v) => v.set(outId, a.apply(v.get(inId) as tf.Tensor));
  }
  if (kind === "Flatten") {
    // As tfjs-layers' Flatten (input rank >= 3) with channels last: K.batchFlatten, one reshape.
    const f = layer as unknown as { dataFormat?: string };
    if (ins.length !== 1 || f.dataFormat === "channelsFirst" || (ins[0] as tf.SymbolicTensor).shape.length < 3) return undefined;
    const inId = inIds[0] as number;
    return (v) => {
      const x = v.get(inId) as tf.Tensor;
      const rows = x.shape[0] as number;
      v.set(outId, tf.reshape(x, [rows, x.shape.slice(1).reduce((a, b) => a * b, 1)]));
    };
  }
  if (kind === TableEmbedding.className) {
    if (ins.length !== 1 || !(layer instanceof TableEmbedding) || !layer.built) return undefined;
    const emb = layer;
    const inId = inIds[0] as number;
    return (v) => v.set(outId, emb.call(v.get(inId) as tf.Tensor));
  }
  if (kind === "Concatenate") {
    const axis0 = (layer as unknown as { axis: number }).axis;
    if (ins.length < 2 || typeof axis0 !== "number") return undefined;
    const ranks = new Set(ins.map((t) => t.shape.length));
    if (ranks.size !== 1) return undefined;
    const rank = ins[0]?.shape.length as number;
    // As tfjs-layers' K.concatenate: any negative axis means the last one.
    const axis = axis0 < 0 || axis0 === rank ? -1 : axis0;
    return (v) => v.set(outId, tf.concat(inIds.map((id) => v.get(id) as tf.Tensor), axis));
  }
  return undefined;
}
