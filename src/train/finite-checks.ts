/**
 * Checks for NaN and ±Infinity before they land in the weights: a batch's inputs and labels, and
 * every gradient a step is about to apply.
 *
 * Why: a NaN input or a NaN gradient with a finite loss was applied silently. One NaN value in a
 * batch made 16 kernel values NaN and left the model dead at chance level; a penalty such as
 * `sum(sqrt(abs(bias)))` at 0 (or a loss with a sqrt at a zero residual) has a finite value and a
 * NaN gradient, and step 1 wrote NaN into up to 161 weights before step 2's NaN loss stopped it.
 *
 * How, and the cost: on the `wasm` and `cpu` backends a tensor's values are read where they lie (a
 * view of the wasm heap; cpu's own array), and scanned in JavaScript (`v - v !== 0` is true exactly
 * for NaN and ±Infinity): no kernel, no copy, no wait, about a nanosecond per value. On other
 * backends (webgl, tfjs-node) one reduction over all the tensors (the sum of their sums, which is
 * finite only when every value is) is read back once, and the tensors are scanned one by one only
 * when it is not finite. Integer and boolean tensors cannot hold NaN and are skipped.
 */
import * as tf from "@tensorflow/tfjs";
import type { Inputs } from "./model.js";
import type { WasmBackend } from "../backend/wasm-internals.js";

/** Where a non-finite value is: the position in the list of tensors, the flat index, the value. */
export interface NonFinite {
  which: number;
  index: number;
  value: number;
}

/** A float tensor's values without a copy where the backend allows it (wasm heap view, cpu array). */
function valuesOf(t: tf.Tensor): ArrayLike<number> {
  const backend = tf.engine().backend as unknown as Partial<WasmBackend>;
  const info = t as unknown as tf.TensorInfo;
  if (tf.getBackend() === "wasm" && backend.dataIdMap?.get(info.dataId) !== undefined) {
    return (backend as WasmBackend).typedArrayFromHeap(info);
  }
  return t.dataSync() as ArrayLike<number>;
}

/** Index of the first NaN or ±Infinity in `values`, or -1. */
function scan(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v - v !== 0) return i;
  }
  return -1;
}

/** The first non-finite value of one tensor (flat index and value), or undefined; non-float tensors are finite. */
export function firstNonFinite(t: tf.Tensor): { index: number; value: number } | undefined {
  if (t.dtype !== "float32" || t.size === 0) return undefined;
  const values = valuesOf(t);
  const index = scan(values);
  return index < 0 ? undefined : { index, value: values[index] as number };
}

/** Backends whose tensors can be scanned in place (no kernel, no transfer). */
function scansInPlace(): boolean {
  const b = tf.getBackend();
  return b === "wasm" || b === "cpu";
}

/**
 * The first tensor of `tensors` holding NaN or ±Infinity, with the flat index and the value, or
 * undefined when every value is finite. One reduction and one read on backends that cannot be
 * scanned in place; none on wasm and cpu.
 */
export function findNonFinite(tensors: readonly tf.Tensor[]): NonFinite | undefined {
  if (!scansInPlace()) {
    const floats = tensors.filter((t) => t.dtype === "float32" && t.size > 0);
    if (floats.length === 0) return undefined;
    // A finite sum of finite sums means every value is finite (NaN and ±Infinity survive addition);
    // a non-finite one may be an overflow of finite values, so the tensors are then scanned.
    const probe = tf.tidy(() => (floats.length === 1 ? tf.sum(floats[0]!) : tf.addN(floats.map((t) => tf.sum(t)))));
    const total = probe.dataSync()[0] as number;
    probe.dispose();
    if (Number.isFinite(total)) return undefined;
  }
  for (let which = 0; which < tensors.length; which++) {
    const found = firstNonFinite(tensors[which]!);
    if (found) return { which, ...found };
  }
  return undefined;
}

/** `[i, j, k]`: the multi-index of a flat index in a shape (row-major). */
export function multiIndex(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  let rem = index;
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d] as number;
    out[d] = rem % n;
    rem = Math.floor(rem / n);
  }
  return out;
}

/** "row 3, column 2" (rank 2), "row 3" (rank 1), "row 3, position [1, 2] of the row" (rank 3+), for a flat index. */
export function rowColumn(index: number, shape: readonly number[]): string {
  if (shape.length === 0) return "its only value";
  const at = multiIndex(index, shape);
  if (shape.length === 1) return `row ${at[0]}`;
  if (shape.length === 2) return `row ${at[0]}, column ${at[1]}`;
  return `row ${at[0]}, position [${at.slice(1).join(", ")}] of the row`;
}

/** A named tensor of a batch or data set; `mask` (one 0/1 per row) leaves rows without a label out of a label's check. */
export interface NamedData {
  name: string;
  tensor: tf.Tensor;
  mask?: tf.Tensor;
}

/** The first non-finite value of one named tensor, as "NaN at row r, column c of NAME", or undefined. */
function dataProblem(item: NamedData): string | undefined {
  const t = item.tensor;
  if (t.dtype !== "float32" || t.size === 0) return undefined;
  let found = firstNonFinite(t);
  if (!found) return undefined;
  if (item.mask !== undefined) {
    // A row whose mask is 0 has no label: its value is never read (maskedMean drops it), NaN included.
    const m = item.mask.dataSync() as ArrayLike<number>;
    const rows = t.shape[0] as number;
    const width = t.size / rows;
    const values = valuesOf(t);
    found = undefined;
    for (let r = 0; r < rows && !found; r++) {
      if (m[r] === 0) continue;
      for (let k = r * width; k < (r + 1) * width; k++) {
        const v = values[k] as number;
        if (v - v !== 0) {
          found = { index: k, value: v };
          break;
        }
      }
    }
    if (!found) return undefined;
  }
  return `${found.value} at ${rowColumn(found.index, t.shape)} of ${item.name}`;
}

/** The first non-finite value among `items`, described ("NaN at row 3, column 2 of the input "x""), or undefined. */
export function dataProblemIn(items: readonly NamedData[]): string | undefined {
  for (const item of items) {
    const p = dataProblem(item);
    if (p !== undefined) return p;
  }
  return undefined;
}

/** A step's inputs, labels and masks as named items: `the input "x"`, `the labels of task "r"`. */
export function batchItems(inputs: Inputs, labels: Record<string, tf.Tensor | undefined>, masks?: Record<string, tf.Tensor | undefined>): NamedData[] {
  const items: NamedData[] = [];
  if (inputs instanceof tf.Tensor) items.push({ name: "the input", tensor: inputs });
  else if (Array.isArray(inputs)) inputs.forEach((t, i) => items.push({ name: `the input [${i}]`, tensor: t }));
  else for (const [k, t] of Object.entries(inputs)) items.push({ name: `the input "${k}"`, tensor: t });
  for (const [task, y] of Object.entries(labels)) {
    if (y === undefined) continue;
    const mask = masks?.[task];
    items.push({ name: `the labels of task "${task}"`, tensor: y, ...(mask ? { mask } : {}) });
  }
  return items.filter((x) => x.tensor instanceof tf.Tensor && !x.tensor.isDisposed);
}

/** Each tensor of a generic batch (itself, an array's entries, an object's values one level deep) with its name. */
export function genericBatchItems(batch: unknown): NamedData[] {
  if (batch instanceof tf.Tensor) return [{ name: "the batch", tensor: batch }];
  const entries: [string, unknown][] = Array.isArray(batch)
    ? batch.map((t, i) => [`batch[${i}]`, t])
    : batch !== null && typeof batch === "object"
      ? Object.entries(batch as Record<string, unknown>).map(([k, t]) => [`batch "${k}"`, t])
      : [];
  return entries.filter((e): e is [string, tf.Tensor] => e[1] instanceof tf.Tensor && !e[1].isDisposed).map(([name, tensor]) => ({ name, tensor }));
}

const DATA_HINT = "Remove or impute the missing or infinite values (drop the rows, or fill them, e.g. with the column mean), or mask that row's label.";

/**
 * Throws when an input or label of a step's batch holds NaN or ±Infinity (masked-out label rows
 * excepted): `OWNER: NaN at row 3, column 2 of the input "x" in the batch of step 5; no update
 * was applied.` Nothing is read on the common path but the values themselves (see the module comment).
 */
export function checkBatchFinite(owner: string, stepNo: number, items: readonly NamedData[]): void {
  const p = dataProblemIn(items);
  if (p !== undefined) throw new Error(`${owner}: ${p} in the batch of step ${stepNo}; no update was applied. ${DATA_HINT}`);
}

/**
 * Throws when a data set holds NaN or ±Infinity (masked-out label rows excepted), before training:
 * `fit: NaN at row 17, column 2 of x, checked before training; nothing was trained.` `items` name each
 * tensor as the caller's options do (`x`, `x["a"]`, `validation.y["r"]`).
 *
 * @example
 * checkDataFinite("fit", [{ name: "x", tensor: x }, { name: 'y["r"]', tensor: y.r }]);
 */
export function checkDataFinite(owner: string, items: readonly NamedData[]): void {
  const p = dataProblemIn(items);
  if (p !== undefined) throw new Error(`${owner}: ${p}, checked before training; nothing was trained. ${DATA_HINT}`);
}

/** A non-finite gradient: the variable, the multi-index of the first bad value, the value. */
export interface BadGradient {
  variable: string;
  at: number[];
  value: number;
}

/**
 * The first variable of `variables` whose gradient in `grads` holds NaN or ±Infinity, or undefined
 * (variables without a gradient are skipped). On wasm and cpu: one scan of each gradient in place.
 */
export function findBadGradient(grads: tf.NamedTensorMap, variables: readonly tf.Variable[]): BadGradient | undefined {
  const named = variables.filter((v) => grads[v.name] !== undefined);
  const found = findNonFinite(named.map((v) => grads[v.name] as tf.Tensor));
  if (!found) return undefined;
  const v = named[found.which]!;
  return { variable: v.name, at: multiIndex(found.index, v.shape), value: found.value };
}

/** "the gradient of "dense/kernel" is NaN at [2, 5]". */
export function describeBadGradient(b: BadGradient): string {
  return `the gradient of "${b.variable}" is ${b.value} at [${b.at.join(", ")}]`;
}

const GRADIENT_HINT =
  "A finite loss can have a NaN gradient where a function's slope is infinite (sqrt or a power below 1 at 0, log at 0, abs inside sqrt): add a small epsilon inside it (sqrt(x + 1e-12)), or check the inputs.";

/**
 * Throws, before any update, when a gradient about to be applied holds NaN or ±Infinity: `OWNER:
 * the gradient of "dense/bias" is NaN at [0] at step 1 (task "r"); no update was applied.` `culprit`
 * (called only then) names where it came from, e.g. the task, when the caller can tell.
 */
export function checkGradientsFinite(owner: string, stepNo: number, grads: tf.NamedTensorMap, variables: readonly tf.Variable[], culprit?: (bad: BadGradient) => string | undefined): void {
  const bad = findBadGradient(grads, variables);
  if (!bad) return;
  const from = culprit?.(bad);
  throw new Error(`${owner}: ${describeBadGradient(bad)} at step ${stepNo}${from ? ` (${from})` : ""}; no update was applied. ${GRADIENT_HINT}`);
}
