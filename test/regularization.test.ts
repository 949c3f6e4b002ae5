import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { l1, l2, selectVariables, KERNELS } from "../src/losses/regularization.js";
import { weightedSum } from "../src/losses/weighted.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const close = (got: number, want: number, tol = 1e-6) => assert.ok(Math.abs(got - want) <= tol, `${got} != ${want}`);

function twoModels() {
  const shared = tf.layers.dense({ units: 3, name: "reg_shared", kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), biasInitializer: "ones" });
  const ia = tf.input({ shape: [2] });
  const ib = tf.input({ shape: [2] });
  const ha = shared.apply(ia) as tf.SymbolicTensor;
  const a = tf.model({ inputs: ia, outputs: tf.layers.dense({ units: 1, name: "reg_head_a", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(ha) as tf.SymbolicTensor });
  const b = tf.model({ inputs: ib, outputs: tf.layers.dense({ units: 1, name: "reg_head_b", kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(shared.apply(ib) as tf.SymbolicTensor) as tf.SymbolicTensor });
  return { a, b, shared };
}

test("selectVariables: each shared variable once; KERNELS keeps kernels and drops biases", () => {
  const { a, b } = twoModels();
  const all = selectVariables({ a, b });
  assert.deepEqual(all.map((v) => v.name), ["reg_shared/kernel", "reg_shared/bias", "reg_head_a/kernel", "reg_head_a/bias", "reg_head_b/kernel", "reg_head_b/bias"]);
  assert.deepEqual(selectVariables({ a, b }, KERNELS).map((v) => v.name), ["reg_shared/kernel", "reg_head_a/kernel", "reg_head_b/kernel"]);
  assert.deepEqual(selectVariables([a, b], "head_b").map((v) => v.name), ["reg_head_b/kernel", "reg_head_b/bias"]);
  assert.deepEqual(selectVariables(a, (v) => v.shape.length === 1).map((v) => v.name), ["reg_shared/bias", "reg_head_a/bias"]);
  assert.ok(KERNELS.test("embedding_Embedding1/embeddings") && !KERNELS.test("dense_Dense1/bias"));
});

test("l2 = coeff·Σw², l1 = coeff·Σ|w|, with gradients 2·coeff·w and coeff·sign(w)", () => {
  const v1 = tf.variable(tf.tensor2d([[1, -2], [0.5, 3]]), true, "reg_v1");
  const v2 = tf.variable(tf.tensor1d([-1, 4]), true, "reg_v2");
  const vals = [1, -2, 0.5, 3, -1, 4];
  close(l2([v1, v2], 0.1).dataSync()[0]!, 0.1 * vals.reduce((s, x) => s + x * x, 0));
  close(l1([v1, v2], 0.1).dataSync()[0]!, 0.1 * vals.reduce((s, x) => s + Math.abs(x), 0));
  // a variable listed twice is penalised once
  close(l2([v1, v1], 1).dataSync()[0]!, 1 + 4 + 0.25 + 9);
  const { grads } = tf.variableGrads(() => tf.add(l2([v1, v2], 0.1), l1([v1], 0.5)) as tf.Scalar, [v1, v2]);
  const g1 = (grads[v1.name] as tf.Tensor).dataSync();
  const g2 = (grads[v2.name] as tf.Tensor).dataSync();
  [1, -2, 0.5, 3].forEach((w, i) => close(g1[i]!, 0.2 * w + 0.5 * Math.sign(w)));
  [-1, 4].forEach((w, i) => close(g2[i]!, 0.2 * w));
  tf.dispose([v1, v2, ...Object.values(grads)]);
});

test("l1/l2 errors: an empty set and a negative or non-finite coefficient", () => {
  const v = tf.variable(tf.ones([2]), true, "reg_v3");
  assert.throws(() => l2([], 0.1), /l2: the variable set is empty \(did the name filter match nothing\?\)/);
  assert.throws(() => l1(selectVariables([v], /nothing/), 0.1), /l1: the variable set is empty/);
  assert.throws(() => l2([v], -0.1), /l2: the coefficient must be a finite number >= 0, but got -0.1/);
  assert.throws(() => l1([v], NaN), /l1: the coefficient must be a finite number >= 0, but got NaN/);
  assert.throws(() => l2([v], Infinity), /but got Infinity/);
  assert.throws(() => selectVariables([v, 3 as never]), /selectVariables: expected variables or layers, but got 3/);
  v.dispose();
});

test("weightedSum: value and gradient of Σ w·loss; names and weights validated", () => {
  const x = tf.scalar(2);
  const { value, grads } = tf.valueAndGrads((t: tf.Tensor) =>
    weightedSum({ a: tf.square(t) as tf.Scalar, b: tf.mul(t, 3) as tf.Scalar, c: tf.exp(t) as tf.Scalar }, { a: 0.7, b: 0.3, c: 0 }),
  )([x]);
  close(value.dataSync()[0]!, 0.7 * 4 + 0.3 * 6);
  close(grads[0]!.dataSync()[0]!, 0.7 * 4 + 0.3 * 3);
  const la = tf.scalar(1);
  const lb = tf.scalar(2);
  assert.throws(() => weightedSum({ a: la, b: lb }, { a: 1 }), /weightedSum: no weight for the loss "b"; weights are given for "a"/);
  assert.throws(() => weightedSum({ a: la }, { a: 1, z: 2 }), /weightedSum: the weight "z" names no loss; the losses are "a"/);
  assert.throws(() => weightedSum({ a: la }, { a: -1 }), /weightedSum: the weight of "a" must be a finite number >= 0, but got -1/);
  assert.throws(() => weightedSum({ a: la }, { a: NaN }), /but got NaN/);
  assert.throws(() => weightedSum({ a: tf.ones([2]) as tf.Scalar }, { a: 1 }), /weightedSum: the loss "a" must be a scalar tensor, but has shape \[2\]/);
  assert.throws(() => weightedSum({}, {}), /weightedSum: no losses given/);
  tf.dispose([x, value, ...grads, la, lb]);
});
