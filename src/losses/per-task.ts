/**
 * Per-task losses. Each takes labels and predictions with the same number of rows and an optional
 * mask (1 = this row has a label for this task, 0 = missing) and returns the mean over labelled rows.
 * A batch with no labelled rows contributes 0, not NaN.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedLoss, type FusedLossName } from "../ops/fused.js";
import { checkClassIds, checkDistributions, checkMaskValues, checkNotEmpty, checkUnitInterval } from "./label-checks.js";

/** (labels, predictions, mask?) => scalar loss. */
export type LossFn = (labels: tf.Tensor, predictions: tf.Tensor, mask?: tf.Tensor) => tf.Scalar;

/** Names accepted wherever a loss is expected. */
export type LossName = "mse" | "mae" | "huber" | "softmaxCrossEntropy" | "binaryCrossEntropy";

/**
 * What every loss checks first: live tensors, one label row per prediction row, a non-empty batch,
 * and a mask of 0s and 1s with one entry per row (the value checks are label-checks.ts's).
 */
function checkRows(labels: tf.Tensor, predictions: tf.Tensor, loss: string, mask?: tf.Tensor) {
  if (labels.isDisposed) throw new Error(`${loss}: the labels are a disposed tensor; pass a live tensor (one not yet disposed).`);
  if (predictions.isDisposed) throw new Error(`${loss}: the predictions are a disposed tensor; pass a live tensor (one not yet disposed).`);
  if (predictions.rank === 0) throw new Error(`${loss}: the predictions are a scalar; give one row per example (shape [rows, ...]).`);
  if (labels.shape[0] !== predictions.shape[0]) {
    throw new Error(`${loss}: labels have ${labels.shape[0]} rows but predictions have ${predictions.shape[0]} (shapes [${labels.shape}] and [${predictions.shape}]); give one label row per prediction row.`);
  }
  checkNotEmpty(predictions.shape[0] as number, loss, predictions.shape);
  if (mask) {
    if (mask.isDisposed) throw new Error(`${loss}: the mask is a disposed tensor; pass a live tensor (one not yet disposed).`);
    if (mask.size !== predictions.shape[0]) {
      throw new Error(`${loss}: the mask has ${mask.size} entries but the batch has ${predictions.shape[0]} rows (mask of shape [${mask.shape}]); give one 0/1 entry per row.`);
    }
    checkMaskValues(mask, "mask", loss);
  }
}

/** Mean over trailing axes, giving one value per row. */
function perRow(t: tf.Tensor): tf.Tensor1D {
  return (t.rank <= 1 ? t : tf.mean(t, Array.from({ length: t.rank - 1 }, (_, i) => i + 1))) as tf.Tensor1D;
}

/** Mean of per-row losses over rows whose mask is 1 (all rows without a mask). */
export function maskedMean(rowLoss: tf.Tensor1D, mask?: tf.Tensor): tf.Scalar {
  checkNotEmpty(rowLoss.shape[0] as number, "maskedMean", rowLoss.shape);
  if (!mask) return tf.mean(rowLoss);
  if (mask.size !== rowLoss.shape[0]) {
    throw new Error(`The mask has ${mask.size} entries but the batch has ${rowLoss.shape[0]} rows; give one 0/1 entry per row.`);
  }
  // Free after the loss's own check (remembered per tensor); here for losses built on maskedMean.
  checkMaskValues(mask, "mask");
  const m = tf.cast(tf.reshape(mask, [-1]), "float32");
  // where() rather than multiply: a masked-out row with a NaN label must not turn the sum into NaN.
  const kept = tf.where(tf.greater(m, 0), rowLoss, tf.zerosLike(rowLoss));
  return tf.div(tf.sum(kept), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
}

function sameShape(labels: tf.Tensor, predictions: tf.Tensor, loss: string): tf.Tensor {
  checkRows(labels, predictions, loss);
  if (labels.size === predictions.size && labels.shape.join() !== predictions.shape.join()) {
    return tf.reshape(labels, predictions.shape);
  }
  if (labels.size !== predictions.size) {
    throw new Error(`${loss}: labels of shape [${labels.shape}] do not match predictions of shape [${predictions.shape}]; give labels of shape [${predictions.shape}], one per prediction (or check which output this task reads).`);
  }
  return labels;
}

/**
 * The labels with every masked-out row set to 0. Why: where() in maskedMean drops such a row's loss,
 * but not its gradient: 0 · d(loss)/d(prediction) is NaN when the row's label is NaN ("no label"
 * written as NaN), and the NaN would reach the weights. Rows with mask 1 are untouched.
 */
function dropMaskedLabels(labels: tf.Tensor, mask: tf.Tensor | undefined): tf.Tensor {
  if (mask === undefined) return labels;
  const keep = tf.reshape(tf.greater(mask, 0), [labels.shape[0] as number, ...labels.shape.slice(1).map(() => 1)]);
  return tf.where(tf.broadcastTo(keep, labels.shape), labels, tf.zerosLike(labels));
}

/**
 * The loss as one fused op (wasm with jointly's native addon; src/ops/fused.ts): the mean
 * directly without a mask, else per-row values for {@link maskedMean}. Undefined where the fused op
 * does not apply, and the composite ops below run instead.
 */
function fused(kind: FusedLossName, labels: tf.Tensor, predictions: tf.Tensor, mask: tf.Tensor | undefined): tf.Scalar | undefined {
  const out = fusedLoss(kind, labels, predictions, mask === undefined);
  if (out === undefined || mask === undefined) return out as tf.Scalar | undefined;
  return maskedMean(out as tf.Tensor1D, mask);
}

/** Mean squared error. */
export const mse: LossFn = (labels, predictions, mask) =>
  tf.tidy(() => {
    checkRows(labels, predictions, "mse", mask);
    const y = dropMaskedLabels(sameShape(labels, predictions, "mse"), mask);
    return fused("mse", y, predictions, mask) ?? maskedMean(perRow(tf.squaredDifference(y, predictions)), mask);
  });

/** Mean absolute error. */
export const mae: LossFn = (labels, predictions, mask) =>
  tf.tidy(() => {
    checkRows(labels, predictions, "mae", mask);
    return maskedMean(perRow(tf.abs(tf.sub(dropMaskedLabels(sameShape(labels, predictions, "mae"), mask), predictions))), mask);
  });

/** Huber loss (smooth L1 when delta = 1): quadratic within `delta`, linear outside. */
export function huber(delta = 1): LossFn {
  if (!(delta > 0) || !Number.isFinite(delta)) throw new Error(`huber delta must be a positive finite number, but got ${delta}.`);
  return (labels, predictions, mask) =>
    tf.tidy(() => {
      checkRows(labels, predictions, "huber", mask);
      const err = tf.abs(tf.sub(dropMaskedLabels(sameShape(labels, predictions, "huber"), mask), predictions));
      const quad = tf.minimum(err, delta);
      const lin = tf.sub(err, quad);
      return maskedMean(perRow(tf.add(tf.mul(0.5, tf.square(quad)), tf.mul(delta, lin))), mask);
    });
}

/**
 * Softmax cross-entropy on logits. Labels are integer class ids `[n]` (or `[n, 1]`) in
 * [0, classes) or one-hot / probability rows `[n, classes]` (entries >= 0, rows summing to 1); any
 * other value is an error naming the row, on every backend (label-checks.ts).
 */
export const softmaxCrossEntropy: LossFn = (labels, logits, mask) =>
  tf.tidy(() => {
    checkRows(labels, logits, "softmaxCrossEntropy", mask);
    const classes = logits.shape[logits.rank - 1] as number;
    // Ids when there is one label per row (with one class, [n, 1] labels read as ids: a row of one
    // probability would have to be 1 anyway).
    if (labels.size === logits.shape[0]) {
      // Masked-out rows may hold anything ("-1 = no label"); they become class 0, whose loss the mask drops.
      if (checkClassIds(labels, classes, mask, "softmaxCrossEntropy", logits.shape)) {
        labels = tf.where(tf.greater(tf.reshape(mask!, labels.shape), 0), labels, tf.zerosLike(labels));
      }
    } else if (labels.shape.join() === logits.shape.join()) {
      checkDistributions(labels, mask, "softmaxCrossEntropy");
      labels = dropMaskedLabels(labels, mask);
    }
    if (labels.size === logits.shape[0]) {
      const ids = fused("softmaxCrossEntropy", labels, logits, mask);
      if (ids !== undefined) return ids;
    }
    if (labels.shape.join() === logits.shape.join()) {
      const rows = fused("softmaxCrossEntropyRows", tf.cast(labels, "float32"), logits, mask);
      if (rows !== undefined) return rows;
    }
    const target =
      labels.size === logits.shape[0]
        ? tf.oneHot(tf.cast(tf.reshape(labels, [-1]), "int32"), classes)
        : labels.shape.join() === logits.shape.join()
          ? labels
          : (() => {
              throw new Error(`softmaxCrossEntropy: labels of shape [${labels.shape}] must be class ids [${logits.shape[0]}] or rows [${logits.shape}].`);
            })();
    const rowLoss = tf.neg(tf.sum(tf.mul(tf.cast(target, "float32"), tf.logSoftmax(logits)), -1));
    return maskedMean(rowLoss as tf.Tensor1D, mask);
  });

/**
 * Sigmoid (binary) cross-entropy on logits, computed stably: max(x,0) - x·z + log(1 + e^-|x|).
 * Labels are probabilities in [0, 1]; others are an error naming the row.
 */
export const binaryCrossEntropy: LossFn = (labels, logits, mask) =>
  tf.tidy(() => {
    checkRows(labels, logits, "binaryCrossEntropy", mask);
    const y = sameShape(labels, logits, "binaryCrossEntropy");
    checkUnitInterval(labels, mask, "binaryCrossEntropy");
    const z = dropMaskedLabels(tf.cast(y, "float32"), mask);
    const viaFused = fused("binaryCrossEntropy", z, logits, mask);
    if (viaFused !== undefined) return viaFused;
    const x = logits;
    const l = tf.add(tf.sub(tf.relu(x), tf.mul(x, z)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
    return maskedMean(perRow(l), mask);
  });

const BY_NAME: Record<LossName, LossFn> = {
  mse,
  mae,
  huber: huber(1),
  softmaxCrossEntropy,
  binaryCrossEntropy,
};

/** The built-in name of a loss function (undefined for one of the caller's own). */
export function lossNameOf(fn: LossFn): LossName | undefined {
  for (const [name, f] of Object.entries(BY_NAME)) if (f === fn) return name as LossName;
  return undefined;
}

/** A loss by name or function. */
export function resolveLoss(loss: LossFn | LossName, owner: string): LossFn {
  if (typeof loss === "function") return loss;
  const fn = BY_NAME[loss];
  if (!fn) throw new Error(`${owner}: unknown loss "${String(loss)}"; use one of ${Object.keys(BY_NAME).join(", ")} or a function.`);
  return fn;
}
