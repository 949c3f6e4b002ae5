/**
 * Per-task gradients: the T x d matrix J whose row i is the gradient of task i's loss alone, the
 * input of every gradient aggregator (`aggregate(name, J)`) and of the conflict diagnostics.
 *
 * Two modes:
 * - **parameters**: row i = ∇_θ L_i over the chosen SHARED variables θ, flattened and concatenated
 *   in the order given (d = their total size). T forward + T backward passes: TensorFlow.js has no
 *   retained graph, so each task's backward pass needs its own forward pass.
 * - **representation** (MGDA-UB, Sener & Koltun 2018): row i = ∇_z L_i for the shared
 *   representation z (the trunk's output), flattened PER EXAMPLE: d = batch rows x representation
 *   width, example after example, so the Gramian is Σ_b ⟨∇_{z_b} L_i, ∇_{z_b} L_j⟩. Each pass
 *   back-propagates through the heads only, so it is cheaper than parameters mode when the trunk
 *   is large; the aggregated direction in z is then back-propagated once through the trunk.
 *
 * Which methods use which mode: every aggregator works on any J (either mode). Weightings that need
 * `gradNorms` (GradNorm: ‖∇_W (w_i L_i)‖; DB-MTL: ‖∇_W log(L_i + ε)‖) need norms on a shared
 * layer's WEIGHTS, so parameters mode; weightings that need only losses need no J at all.
 */
import * as tf from "@tensorflow/tfjs";
import { variableGradsShared, withLookupCache } from "../layers/step-cache.js";
import { captureUpstream, heldDenseGrads, reuseUpstream, takeHeldDense, type UpstreamCapture } from "./direct-forward.js";

/** Shared parameters: variables, a layer or model (its trainable weights), or a list of either. */
export type SharedSelector = tf.Variable | tf.layers.Layer | readonly (tf.Variable | tf.layers.Layer)[];

/** Where per-task gradients are taken: the shared parameters, or the shared representation. */
export type GradientMode = "parameters" | "representation";

/** Resolve a {@link SharedSelector} to its variables, each once; an empty set is an error. */
export function resolveShared(shared: SharedSelector | undefined, who = "shared"): tf.Variable[] {
  if (shared === undefined || shared === null) throw new Error(`${who}: no shared variables given; pass variables or layers.`);
  const items: unknown[] = Array.isArray(shared) ? [...shared] : [shared];
  const out: tf.Variable[] = [];
  const seen = new Set<number>();
  for (const item of items) {
    let vars: tf.Variable[];
    if (item instanceof tf.Variable) vars = [item];
    else if (item instanceof tf.layers.Layer) vars = item.trainableWeights.map((w) => w.read() as tf.Variable);
    else throw new Error(`${who}: ${String(item)} is neither a tf.Variable nor a layer.`);
    for (const v of vars) if (!seen.has(v.id)) (seen.add(v.id), out.push(v));
  }
  if (out.length === 0) throw new Error(`${who}: the shared variable set is empty (${items.length} item(s) given, none with trainable weights).`);
  return out;
}

/** Gradients of each task's loss alone over a set of variables (one forward + backward pass per task). */
export interface PerTaskGrads {
  /** grads[i][variable name]: ∇ L_i for that variable (zeros where L_i does not depend on it). */
  grads: tf.NamedTensorMap[];
  /** The value of each loss. */
  losses: number[];
}

/**
 * Run `loss(i)` for each task i (it must do its own forward pass) and take its gradient over
 * `variables`. Variables a task's loss does not reach get zeros, so every map has every variable.
 * The caller owns (and disposes) the gradient tensors.
 */
export function perTaskVariableGrads(
  loss: (task: number) => tf.Scalar, numTasks: number, variables: readonly tf.Variable[], options: { upstream?: UpstreamCapture } = {},
): PerTaskGrads {
  if (variables.length === 0) throw new Error("perTaskVariableGrads: the variable set is empty.");
  const grads: tf.NamedTensorMap[] = [];
  const losses: number[] = [];
  const hold = holds(variables);
  try {
    // Layers that read none of the variables, directly or through their inputs, give the same values
    // in every task's pass: in a direct forward pass they are computed once for all T (reuseUpstream).
    // When the variables are one Dense layer's kernel (and bias), that layer is computed once too and
    // each pass runs only the layers after it (see heldPass).
    reuseUpstream(variables, () => {
      for (let i = 0; i < numTasks; i++) {
        // Each task's pass shares its models' identical table lookups (step-cache.ts); variable
        // gradients are the same sums either way. Passes over a representation do not: there the
        // gradient is taken at an intermediate tensor, which sharing a lookup could change.
        const { value, grads: g } = hold ? heldPass(() => loss(i), variables) : variableGradsShared(() => loss(i), [...variables]);
        losses.push(value.dataSync()[0] as number);
        value.dispose();
        // variableGrads leaves out variables the loss does not reach; a zero row keeps J rectangular.
        for (const v of variables) g[v.name] ??= tf.zerosLike(v);
        grads.push(g);
      }
    }, { holdDense: hold, ...(options.upstream ? { upstream: options.upstream } : {}) });
  } catch (e) {
    grads.forEach((g) => tf.dispose(g));
    throw e;
  }
  return { grads, losses };
}

/** Non-trainable variables get variableGrads' treatment (no gradient), which the held pass does not give. */
function holds(variables: readonly tf.Variable[]): boolean {
  return heldDenseEnabled && variables.every((v) => v.trainable);
}

/**
 * Run `f` (a gradient pass on the same inputs and variable values, e.g. a trainer's joint pass)
 * and keep what its direct forward passes computed that a later {@link perTaskVariableGrads} over
 * `variables` would compute again (the layers before the shared ones, and with a held Dense layer
 * that layer too): pass `upstream` to it, then dispose it (also if it was not used).
 */
export function captureForPerTask<T>(variables: readonly tf.Variable[], f: () => T): { result: T; upstream: UpstreamCapture } {
  return captureUpstream(variables, f, { holdDense: holds(variables) });
}

/**
 * Whether {@link perTaskVariableGrads} holds a shared Dense layer's output (on by default). Internal:
 * the tests turn it off to compare with the passes that recompute that layer in every pass.
 */
let heldDenseEnabled = true;
export function setHeldDensePasses(enabled: boolean): void {
  heldDenseEnabled = enabled;
}

/**
 * One task's pass in a holding scope: `tf.variableGrads(loss, variables)`, except that a direct
 * forward pass whose only use of `variables` is one Dense layer (W its kernel, perhaps b its bias)
 * computes that layer once for all passes, off the tape, and holds its output Y constant. The pass
 * then differentiates with respect to Y as well, back-propagating through the layers after it only,
 * and ∇W = Xᵀ·(∇Y ⊙ act'(Y)), ∇b = Σ_rows(∇Y ⊙ act'(Y)) (heldDenseGrads). Why: GradNorm's norms on a
 * wide trunk kernel recomputed the layer's X·W, its most expensive product, in every task's pass.
 * Uses of the variables not through a held layer (another model, a penalty) are differentiated as
 * usual and added. With nothing held it is exactly variableGrads.
 */
function heldPass(loss: () => tf.Scalar, variables: readonly tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  return withLookupCache(() => {
    const xs: tf.Tensor[] = [...variables];
    let held: ReturnType<typeof takeHeldDense> = [];
    takeHeldDense();
    // engine.gradients reads `xs` after running the forward function: the held outputs the pass used
    // are known only then (the same device as gradientAtRepresentation).
    const { value, grads } = tf.engine().gradients(
      () => {
        const l = loss();
        held = takeHeldDense();
        xs.push(...held.map((h) => h.output));
        return l;
      },
      xs,
      undefined,
      true,
    );
    const out: tf.NamedTensorMap = {};
    try {
      if (value.rank !== 0) throw new Error(`perTaskVariableGrads: the loss must be a scalar, but has shape [${value.shape}].`);
      variables.forEach((v, k) => {
        const g = grads[k];
        if (g) out[v.name] = g;
      });
      held.forEach((h, k) => {
        const dy = grads[variables.length + k];
        if (!dy) return;
        const withBias = h.bias !== null && variables.some((v) => v.id === h.bias!.id);
        const parts = heldDenseGrads(h, dy, withBias);
        dy.dispose();
        for (const [v, g] of [[h.kernel, parts.kernel], [h.bias, parts.bias]] as const) {
          if (!v || !g) continue;
          const before = out[v.name];
          out[v.name] = before ? tf.add(before, g) : g;
          if (before) tf.dispose([before, g]);
        }
      });
      if (Object.keys(out).length === 0) {
        throw new Error(`perTaskVariableGrads: the loss reaches none of the variables ${variables.map((v) => `"${v.name}"`).join(", ")}; compute it from them inside the loss function.`);
      }
    } catch (e) {
      // Disposing twice is harmless: whatever was made, once.
      tf.dispose([value, ...Object.values(out), ...grads.filter((g): g is tf.Tensor => g != null)]);
      throw e;
    }
    return { value: value as tf.Scalar, grads: out };
  });
}

/** Flatten each task's gradients of `variables` (in that order) into the rows of a T x d tensor. */
export function gradientMatrix(grads: readonly tf.NamedTensorMap[], variables: readonly tf.Variable[]): tf.Tensor2D {
  return tf.tidy(() =>
    tf.stack(
      grads.map((g, i) =>
        tf.concat(
          variables.map((v) => {
            const t = g[v.name];
            if (!t) throw new Error(`gradientMatrix: task ${i} has no gradient for variable "${v.name}".`);
            return tf.reshape(t, [-1]);
          }),
        ),
      ),
    ) as tf.Tensor2D,
  );
}

/** Split a flat direction (length d, ordered as {@link gradientMatrix}) back into per-variable tensors. */
export function unflatten(direction: tf.Tensor1D | readonly number[], variables: readonly tf.Variable[]): tf.NamedTensorMap {
  const d = variables.reduce((a, v) => a + v.size, 0);
  const length = direction instanceof tf.Tensor ? direction.size : direction.length;
  if (length !== d) throw new Error(`unflatten: the direction has length ${length}, but the variables hold ${d} numbers.`);
  return tf.tidy(() => {
    const flat = direction instanceof tf.Tensor ? direction : tf.tensor1d(direction as number[]);
    const parts = tf.split(flat, variables.map((v) => v.size));
    return Object.fromEntries(variables.map((v, k) => [v.name, tf.reshape(parts[k] as tf.Tensor, v.shape)]));
  });
}

/** The rows of a T x d tensor as plain numbers, for `aggregate` and the diagnostics. */
export function matrixRows(J: tf.Tensor2D): number[][] {
  return J.arraySync();
}

/**
 * Parameters mode: J (T x d tensor) with row i = ∇_θ L_i over the `shared` variables, and the
 * losses. `loss(i)` must run its own forward pass. The caller disposes `J`.
 */
export function taskGradients(loss: (task: number) => tf.Scalar, numTasks: number, shared: readonly tf.Variable[]): { J: tf.Tensor2D; losses: number[] } {
  const { grads, losses } = perTaskVariableGrads(loss, numTasks, shared);
  try {
    return { J: gradientMatrix(grads, shared), losses };
  } finally {
    grads.forEach((g) => tf.dispose(g));
  }
}

/** One task's pass in representation mode: its loss and the representation tensor it was computed from. */
export interface RepresentationPass {
  loss: tf.Scalar;
  representation: tf.Tensor;
}

/**
 * The gradient of a scalar with respect to a tensor produced INSIDE `run` (e.g. a trunk output).
 * TensorFlow.js differentiates only with respect to tensors named before the forward pass, so the
 * representation is registered in the list of differentiated tensors once `run` has made it
 * (engine.gradients reads that list after running the forward function). Returns undefined when
 * the loss does not depend on the representation.
 */
export function gradientAtRepresentation(run: () => RepresentationPass): { loss: number; grad: tf.Tensor | undefined; shape: number[] } {
  const placeholder = tf.scalar(0);
  const xs: tf.Tensor[] = [placeholder];
  let shape: number[] = [];
  try {
    const { value, grads } = tf.engine().gradients(
      () => {
        const { loss, representation } = run();
        if (!(representation instanceof tf.Tensor)) throw new Error(`The representation is ${String(representation)}, not a tensor.`);
        xs[0] = representation;
        shape = [...representation.shape];
        return loss;
      },
      xs,
      undefined,
      true,
    );
    const loss = value.dataSync()[0] as number;
    value.dispose();
    return { loss, grad: grads[0] ?? undefined, shape };
  } finally {
    placeholder.dispose();
  }
}

/**
 * Representation mode: J (T x (rows·width) tensor) with row i = ∇_z L_i flattened per example,
 * the losses, and z's shape. `pass(i)` runs the forward pass and returns task i's loss and z.
 * The caller disposes `J`.
 */
export function representationGradients(pass: (task: number) => RepresentationPass, numTasks: number, names?: readonly string[]): { J: tf.Tensor2D; losses: number[]; shape: number[] } {
  const rows: tf.Tensor[] = [];
  const losses: number[] = [];
  let shape: number[] = [];
  let reached = 0;
  try {
    for (let i = 0; i < numTasks; i++) {
      const r = gradientAtRepresentation(() => pass(i));
      if (i > 0 && r.shape.join() !== shape.join()) {
        throw new Error(`representationGradients: the representation has shape [${r.shape}] for task ${names?.[i] ?? i} but [${shape}] for the first task.`);
      }
      shape = r.shape;
      losses.push(r.loss);
      // A task whose loss ignores the representation has a zero gradient there (it conflicts with nothing).
      rows.push(r.grad ? tf.tidy(() => tf.reshape(r.grad!, [-1])) : tf.zeros([shape.reduce((a, b) => a * b, 1)]));
      if (r.grad) reached++;
      r.grad?.dispose();
    }
    if (reached === 0) {
      throw new Error("representationGradients: no task's loss depends on the representation; it must be the very tensor the heads are computed from (an output of the forward pass).");
    }
    return { J: tf.stack(rows) as tf.Tensor2D, losses, shape };
  } finally {
    tf.dispose(rows);
  }
}
