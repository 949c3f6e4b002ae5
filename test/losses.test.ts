import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { mse, mae, huber, softmaxCrossEntropy, binaryCrossEntropy, resolveLoss } from "../src/losses/per-task.js";

await tf.setBackend("cpu");
const val = (t: tf.Scalar) => {
  const v = t.dataSync()[0] as number;
  t.dispose();
  return v;
};
const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

test("mse, mae and huber match hand computations", () => {
  const y = tf.tensor2d([[1], [2], [4]]);
  const p = tf.tensor2d([[1.5], [2], [1]]);
  close(val(mse(y, p)), (0.25 + 0 + 9) / 3);
  close(val(mae(y, p)), (0.5 + 0 + 3) / 3);
  // huber(1): 0.5·0.25 for |e| = 0.5; 1·(3 - 0.5) for |e| = 3
  close(val(huber(1)(y, p)), (0.125 + 0 + 2.5) / 3);
  tf.dispose([y, p]);
});

test("masks: unlabelled rows contribute nothing, even when their label is NaN; no labels gives 0", () => {
  const y = tf.tensor1d([1, NaN, 3]);
  const p = tf.tensor1d([2, 5, 3]);
  close(val(mse(y, p, tf.tensor1d([1, 0, 1]))), 0.5);
  assert.equal(val(mse(y, p, tf.tensor1d([0, 0, 0]))), 0);
  assert.throws(() => mse(y, p, tf.tensor1d([1, 0])), /mask has 2 entries but the batch has 3 rows/);
});

test("softmax cross-entropy: class ids and one-hot rows agree with -log softmax", () => {
  const logits = tf.tensor2d([[2, 0, -1], [0, 1, 3]]);
  const ls = (row: number[], k: number) => -(row[k]! - Math.log(row.reduce((s, x) => s + Math.exp(x), 0)));
  const expected = (ls([2, 0, -1], 0) + ls([0, 1, 3], 1)) / 2;
  close(val(softmaxCrossEntropy(tf.tensor1d([0, 1], "int32"), logits)), expected, 1e-5);
  close(val(softmaxCrossEntropy(tf.tensor2d([[1, 0, 0], [0, 1, 0]]), logits)), expected, 1e-5);
  assert.throws(() => softmaxCrossEntropy(tf.tensor2d([[1, 0], [0, 1]]), logits), /labels of shape \[2,2\] must be class ids \[2\] or rows \[2,3\]/);
});

test("binary cross-entropy on logits is finite for large logits", () => {
  const z = tf.tensor1d([1, 0, 1]);
  const x = tf.tensor1d([0, 2, -100]);
  const bce = (xi: number, zi: number) => Math.max(xi, 0) - xi * zi + Math.log1p(Math.exp(-Math.abs(xi)));
  close(val(binaryCrossEntropy(z, x)), (bce(0, 1) + bce(2, 0) + bce(-100, 1)) / 3, 1e-4);
});

test("mismatched rows and unknown loss names are clear errors", () => {
  assert.throws(() => mse(tf.zeros([3, 1]), tf.zeros([2, 1])), /mse: labels have 3 rows but predictions have 2/);
  assert.throws(() => resolveLoss("hinge" as never, 'Task "t"'), /Task "t": unknown loss "hinge"; use one of mse, mae/);
});
