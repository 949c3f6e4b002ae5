/**
 * The Sum and Mean gradients (src/backend/gradients/reductions.ts) give tfjs's own values, dy·ones
 * (Mean: divided by the reduced size), bit for bit, on cpu and wasm, for every axis set.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";

const CASES: { shape: number[]; axis?: number | number[]; keepDims?: boolean }[] = [
  { shape: [4, 5, 6, 3], axis: [0, 1, 2], keepDims: true },
  { shape: [4, 5, 6, 3], axis: [0, 1, 2] },
  { shape: [7, 3], axis: 0 },
  { shape: [7, 3], axis: -1 },
  { shape: [2, 3, 4], axis: [1] },
  { shape: [2, 3, 4] },
  { shape: [5] },
];

/** tfjs-core's formula, written out with its ops: reshape(dy) · ones(x.shape), Mean's then / n. */
function tfjsFormula(x: tf.Tensor, dy: tf.Tensor, axis: number | number[] | undefined, mean: boolean): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis ?? null as unknown as number[], x.shape);
  const shape = x.shape.slice();
  for (const a of axes) shape[a] = 1;
  const g = tf.mul(tf.reshape(dy, shape), tf.ones(x.shape, "float32"));
  return mean ? tf.div(g, axes.reduce((p, a) => p * x.shape[a]!, 1)) : g;
}

for (const backend of ["cpu", "wasm"] as const) {
  test(`${backend}: Sum and Mean gradients equal tfjs's formula bit for bit, and leak nothing`, async () => {
    await initBackend({ backend, report: false });
    for (const c of CASES) {
      for (const mean of [false, true]) {
        const n0 = tf.memory().numTensors;
        tf.tidy(() => {
          const x = tf.randomNormal(c.shape, 0, 1, "float32", 3);
          const reduce = (t: tf.Tensor) => (mean ? tf.mean(t, c.axis, c.keepDims) : tf.sum(t, c.axis, c.keepDims));
          const dy = tf.randomNormal(reduce(x).shape, 0, 1, "float32", 4);
          const got = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(reduce(t), dy)))(x);
          const want = tfjsFormula(x, dy, c.axis, mean);
          assert.deepEqual(got.shape, x.shape);
          assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()), `${mean ? "Mean" : "Sum"} ${JSON.stringify(c)}`);
        });
        assert.equal(tf.memory().numTensors, n0);
      }
    }
    // An int32 sum's gradient is float32, as tfjs's.
    const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.sum(t, 0).toFloat()))(tf.tensor2d([[1, 2], [3, 4]], undefined, "int32")));
    assert.equal(g.dtype, "float32");
    g.dispose();
  });
}
