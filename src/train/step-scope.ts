/**
 * What every trainer's step does before and around its work: the batch's tensors checked (live, not
 * empty, masks only for known tasks) with errors naming the key, and a scope that frees every tensor
 * a failed step made.
 *
 * Why the scope: a step that throws half way (a label of the wrong shape, a bad class id) left 9 to
 * 24 tensors behind: the tensors of the forward pass made outside any tidy, and the clones the
 * gradient tape keeps (`tf.keep`) for the backward pass that never ran. A long notebook session of
 * trial and error then grows without bound.
 */
import * as tf from "@tensorflow/tfjs";
import type { Inputs } from "./model.js";

/** The parts of tfjs's engine state read here (public fields of `tf.engine().state`, untyped in its declarations). */
interface EngineState {
  gradientDepth: number;
  activeTape: { saved?: tf.Tensor[] }[] | null;
  activeScope: { track: tf.Tensor[] } | null;
}

function engineState(): EngineState {
  return tf.engine().state as unknown as EngineState;
}

/**
 * Runs `fn` (one training step) so that, if it throws, every tensor it made and did not keep is
 * freed, and the clones the gradient tape saved for the backward pass are freed too. On success
 * nothing changes: the tensors it made are handed to the caller's scope as if there were no scope.
 * Cost on success: one pass over the list of tensors the step made (a few hundred on a small model).
 */
export function freeOnFailure<R>(fn: () => R): R {
  const engine = tf.engine();
  const outerTape = engineState().gradientDepth === 0;
  engine.startScope("jointly step");
  let result: R;
  try {
    result = fn();
  } catch (err) {
    engine.endScope();
    // The tape of a pass that failed is still the engine's active tape (a pass that finished freed
    // its own); only at depth 0, so a step called inside the caller's own gradient is left alone.
    const state = engineState();
    if (outerTape && state.gradientDepth === 0 && state.activeTape) {
      for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
      state.activeTape = null;
    }
    throw err;
  }
  // Everything still alive moves to the enclosing scope (none at top level), as without this scope.
  const scope = engineState().activeScope;
  engine.endScope(scope ? scope.track.filter((t) => !t.isDisposed) : undefined);
  return result;
}

/** Each tensor of `inputs` with the name a message should give it: `inputs`, `inputs[1]`, `inputs "x"`. */
function namedInputs(inputs: Inputs): [string, unknown][] {
  if (inputs instanceof tf.Tensor) return [["inputs", inputs]];
  if (Array.isArray(inputs)) return inputs.map((t, i) => [`inputs[${i}]`, t]);
  if (inputs !== null && typeof inputs === "object") return Object.entries(inputs).map(([k, t]) => [`inputs "${k}"`, t]);
  return [["inputs", inputs]];
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `a JavaScript array of length ${v.length}`;
  if (typeof v === "object") return `an object (${(v as object).constructor?.name ?? "Object"})`;
  return `${typeof v} ${String(v)}`;
}

function checkTensor(name: string, t: unknown, owner: string, hint: string): asserts t is tf.Tensor {
  if (!(t instanceof tf.Tensor)) throw new Error(`${owner}: ${name} is ${describeValue(t)}, not a tensor; ${hint}`);
  if (t.isDisposed) throw new Error(`${owner}: ${name} is a disposed tensor; pass a live tensor (dispose it after the step, or make a new one; e.g. call tf.tidy around the step, not around the tensor's creation).`);
}

/**
 * Checks a batch before a step: every input, label and mask a live tensor (naming the key of one
 * that is disposed or not a tensor), at least one row, and masks only for known tasks (listing
 * them). Returns the batch size.
 */
export function checkStepBatch(
  owner: string, inputs: Inputs, labels: Record<string, unknown>, masks: Record<string, unknown> | undefined, taskNames: readonly string[],
): number {
  const listed = taskNames.map((n) => `"${n}"`).join(", ");
  const entries = namedInputs(inputs);
  if (entries.length === 0) throw new Error(`${owner}: the inputs are empty; give the model's input tensor(s).`);
  for (const [name, t] of entries) checkTensor(name, t, owner, "convert data with tf.tensor(...) first.");
  if (labels === null || typeof labels !== "object" || labels instanceof tf.Tensor) {
    throw new Error(`${owner}: labels must be an object of tensors by task name (${listed}), but got ${describeValue(labels)}.`);
  }
  for (const [k, t] of Object.entries(labels)) {
    if (t !== undefined) checkTensor(`the labels "${k}"`, t, owner, "convert them with tf.tensor(...) first.");
  }
  if (masks !== undefined) {
    if (masks === null || typeof masks !== "object" || masks instanceof tf.Tensor) {
      throw new Error(`${owner}: masks must be an object of 0/1 tensors by task name (${listed}), but got ${describeValue(masks)}.`);
    }
    for (const [k, t] of Object.entries(masks)) {
      if (!taskNames.includes(k)) throw new Error(`${owner}: masks name the task "${k}", which is not one of the trainer's tasks ${listed}.`);
      checkTensor(`the mask "${k}"`, t, owner, "give a 0/1 tensor with one entry per row.");
    }
  }
  const first = entries[0]![1] as tf.Tensor;
  if (first.rank === 0) throw new Error(`${owner}: ${entries[0]![0]} is a scalar; give a batch with one row per example (shape [rows, ...]).`);
  const rows = first.shape[0] as number;
  if (rows === 0) throw new Error(`${owner}: the batch is empty (batch size 0, ${entries[0]![0]} of shape [${first.shape}]); give at least one row.`);
  return rows;
}
