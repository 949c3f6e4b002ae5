/**
 * Checks of label and mask values for the per-task losses: class ids in range, probability rows
 * that are distributions, binary targets in [0, 1], masks of 0 and 1, and non-empty batches. The
 * same checks run on every backend and with or without the native addon, so a bad label is the same
 * error everywhere (without them the composite ops give a row with class id 5 of 3 a zero loss, and
 * the addon alone checked class ids).
 *
 * Cost: each check reads the label (and mask) tensor back once and scans it in JavaScript, no
 * kernels. Labels are inputs, so on cpu and wasm the read is a copy of memory the backend already
 * holds (no waiting for a computation). A tensor checked once is remembered (a WeakMap keyed by the
 * tensor and its data), so full-batch training, or a step that computes a task's loss in several
 * passes (aggregators, diagnostics), reads it once. NaN labels are left alone here: they belong to
 * the checks for non-finite values.
 */
import type * as tf from "@tensorflow/tfjs";

/** Absolute tolerance on a probability row's sum (float32 softmax rows of 1000 classes are within 1e-5). */
export const DISTRIBUTION_TOLERANCE = 1e-3;

/** What was checked for a tensor: its data and the check's key (kind, classes, mask). */
interface Checked {
  dataId: object;
  key: string;
  maskDataId?: object;
  /** Class ids only: a masked-out row holds an id outside [0, classes) (see checkClassIds). */
  fill?: boolean;
}

const checkedLabels = new WeakMap<tf.Tensor, Checked>();
const checkedMasks = new WeakMap<tf.Tensor, object>();

function dataIdOf(t: tf.Tensor): object {
  return (t as unknown as { dataId: object }).dataId;
}

/** The record of `labels` (with `mask`) having passed the check named by `key`, if it has. */
function alreadyChecked(labels: tf.Tensor, key: string, mask: tf.Tensor | undefined): Checked | undefined {
  const c = checkedLabels.get(labels);
  return c !== undefined && c.dataId === dataIdOf(labels) && c.key === key && c.maskDataId === (mask && dataIdOf(mask)) ? c : undefined;
}

function remember(labels: tf.Tensor, key: string, mask: tf.Tensor | undefined, fill?: boolean): void {
  checkedLabels.set(labels, { dataId: dataIdOf(labels), key, ...(mask ? { maskDataId: dataIdOf(mask) } : {}), ...(fill ? { fill } : {}) });
}

/** A label value as the user wrote it: float32 rounding undone (-0.1, not -0.10000000149011612). */
function shown(x: number, t: tf.Tensor): string {
  return t.dtype === "float32" ? String(Number(x.toPrecision(7))) : String(x);
}

/** The mask's values read back (each row's flag), or undefined without a mask. */
function maskValues(mask: tf.Tensor | undefined): ArrayLike<number> | undefined {
  return mask ? (mask.dataSync() as ArrayLike<number>) : undefined;
}

/** Throws naming the loss when the batch has no rows: a mean over no rows is not a loss (the stock mean returns garbage, e.g. 3.6e-41). */
export function checkNotEmpty(rows: number, loss: string, shape: readonly number[]): void {
  if (rows === 0) throw new Error(`${loss}: the batch is empty (batch size 0, predictions of shape [${shape}]); give at least one row.`);
}

/**
 * Mask values must be 0 (no label for this row) or 1 (labelled). Anything else (2, 0.5, -1) would
 * silently reweight rows. `owner` names the mask in the message, e.g. `mask for task "a"`, and
 * `where`, when given, what reads it (a loss's name).
 */
export function checkMaskValues(mask: tf.Tensor, owner: string, where?: string): void {
  const The = where ? `${where}: the` : "The";
  if (mask.isDisposed) throw new Error(`${The} ${owner} is a disposed tensor; pass a live tensor (one not yet disposed).`);
  if (checkedMasks.get(mask) === dataIdOf(mask)) return;
  const m = mask.dataSync() as ArrayLike<number>;
  for (let i = 0; i < m.length; i++) {
    const v = m[i] as number;
    if (v !== 0 && v !== 1) {
      throw new Error(`${The} ${owner} has the value ${shown(v, mask)} at row ${i}; a mask holds 1 (this row has a label) or 0 (missing label) only.`);
    }
  }
  checkedMasks.set(mask, dataIdOf(mask));
}

/**
 * Class ids for softmax cross-entropy: integers in [0, classes) on every row the mask keeps.
 * Throws naming the row, the value and the number of classes. Returns true when a masked-out row
 * holds an id outside the range (e.g. -1 for "no label"): the caller then replaces those ids before
 * a kernel that checks every row (the native one does).
 */
export function checkClassIds(ids: tf.Tensor, classes: number, mask: tf.Tensor | undefined, loss: string, logitsShape: readonly number[]): boolean {
  const key = `ids:${classes}`;
  const seen = alreadyChecked(ids, key, mask);
  if (seen) return seen.fill === true;
  const v = ids.dataSync() as ArrayLike<number>;
  const m = maskValues(mask);
  let fill = false;
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number;
    const bad = !Number.isInteger(x) || x < 0 || x >= classes;
    if (m && m[i] === 0) {
      fill ||= bad;
      continue;
    }
    if (Number.isNaN(x)) continue;
    if (bad) {
      throw new Error(
        `${loss}: label ${shown(x, ids)} of row ${i} is not a class id in [0, ${classes - 1}] (logits of shape [${logitsShape}]); with ${classes} classes, ` +
          `class ids are integers from 0 to ${classes - 1}${mask ? "" : ", or give a mask with 0 on rows without a label"}.`,
      );
    }
  }
  remember(ids, key, mask, fill);
  return fill;
}

/**
 * Probability rows for softmax cross-entropy: entries >= 0 and each kept row summing to 1 within
 * {@link DISTRIBUTION_TOLERANCE}. Throws naming the row and its bad entry or sum.
 */
export function checkDistributions(labels: tf.Tensor, mask: tf.Tensor | undefined, loss: string): void {
  const key = "rows";
  if (alreadyChecked(labels, key, mask)) return;
  const rows = labels.shape[0] as number;
  const width = rows > 0 ? labels.size / rows : 0;
  const v = labels.dataSync() as ArrayLike<number>;
  const m = maskValues(mask);
  for (let i = 0; i < rows; i++) {
    if (m && m[i] === 0) continue;
    let sum = 0;
    let nan = false;
    for (let j = 0; j < width; j++) {
      const x = v[i * width + j] as number;
      if (Number.isNaN(x)) nan = true;
      // A tiny negative from rounding (1 - 0.9 - 0.1) is not a mistake; -0.5 is.
      if (x < -1e-6) {
        throw new Error(`${loss}: label row ${i} has ${shown(x, labels)} in column ${j}; probability labels must be >= 0 with each row summing to 1 (or give class ids of shape [${rows}]).`);
      }
      sum += x;
    }
    if (!nan && Math.abs(sum - 1) > DISTRIBUTION_TOLERANCE) {
      throw new Error(`${loss}: label row ${i} sums to ${Number(sum.toPrecision(7))}, not 1 (tolerance ${DISTRIBUTION_TOLERANCE}); probability labels must be distributions: normalise each row, or give class ids of shape [${rows}].`);
    }
  }
  remember(labels, key, mask);
}

/** Targets for binary cross-entropy: every kept value in [0, 1]. Throws naming the row and the value. */
export function checkUnitInterval(labels: tf.Tensor, mask: tf.Tensor | undefined, loss: string): void {
  const key = "unit";
  if (alreadyChecked(labels, key, mask)) return;
  const rows = labels.shape[0] as number;
  const width = rows > 0 ? labels.size / rows : 0;
  const v = labels.dataSync() as ArrayLike<number>;
  const m = maskValues(mask);
  for (let k = 0; k < v.length; k++) {
    const i = Math.floor(k / width);
    if (m && m[i] === 0) continue;
    const x = v[k] as number;
    if (x < 0 || x > 1) {
      throw new Error(`${loss}: the label of row ${i} is ${shown(x, labels)}; binary cross-entropy labels are probabilities in [0, 1] (0 or 1 for hard labels); rescale them, or use mse for other targets.`);
    }
  }
  remember(labels, key, mask);
}
