import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { fusedDense, fusedOpsActive } from "../src/ops/fused.js";
import { setNativeKernelsEnabled } from "../src/backend/native.js";
import { mse, softmaxCrossEntropy, binaryCrossEntropy, type LossFn } from "../src/losses/per-task.js";

await initBackend({ backend: "wasm", report: false });

/** Runs `f` with the fused ops on (native addon) or off (the composite tfjs ops). */
function mode<T>(fused: boolean, f: () => T): T {
  setNativeKernelsEnabled(fused);
  try {
    assert.equal(fusedOpsActive(), fused);
    return f();
  } finally {
    setNativeKernelsEnabled(true);
  }
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, rel: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    const tol = rel * Math.max(1, Math.abs(b[i]!));
    assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/** Loss value and gradients with respect to predictions and labels. */
function lossAndGrads(loss: LossFn, labels: tf.Tensor, pred: tf.Tensor, mask?: tf.Tensor, withLabels = true): number[][] {
  return tf.tidy(() => {
    const xs = withLabels ? [pred, labels] : [pred];
    const { value, grads } = tf.valueAndGrads((...args: tf.Tensor[]) => loss(withLabels ? args[1]! : labels, args[0]!, mask))(xs);
    return [[value.dataSync()[0]!], ...grads.map((g) => Array.from(g.dataSync()))];
  });
}

const n = 37;
const logits = tf.randomNormal([n, 5], 0, 3, "float32", 1);
const ids = tf.randomUniform([n], 0, 5, "int32", 2);
const idsFloat = tf.cast(ids, "float32");
const pred = tf.randomNormal([n, 3], 0, 1, "float32", 3);
const target = tf.randomNormal([n, 3], 0, 1, "float32", 4);
const zeroOne = tf.cast(tf.randomUniform([n, 3], 0, 2, "int32", 5), "float32");
const mask = tf.cast(tf.randomUniform([n], 0, 2, "int32", 6), "float32");

for (const [name, loss, labels, p, withLabels] of [
  ["softmax CE, int32 ids", softmaxCrossEntropy, ids, logits, false],
  ["softmax CE, float32 ids [n,1]", softmaxCrossEntropy, tf.reshape(idsFloat, [n, 1]), logits, false],
  ["softmax CE, one-hot rows", softmaxCrossEntropy, tf.oneHot(ids, 5), logits, true],
  ["softmax CE, probability rows", softmaxCrossEntropy, tf.softmax(tf.randomNormal([n, 5], 0, 1, "float32", 7)), logits, true],
  ["mse", mse, target, pred, true],
  ["mse, rank-1", mse, tf.reshape(tf.slice(target, [0, 0], [n, 1]), [n]), tf.reshape(tf.slice(pred, [0, 0], [n, 1]), [n]), true],
  ["binary CE", binaryCrossEntropy, zeroOne, pred, true],
  ["binary CE, soft labels", binaryCrossEntropy, tf.sigmoid(target), tf.mul(pred, 4), true],
] as [string, LossFn, tf.Tensor, tf.Tensor, boolean][]) {
  test(`${name}: the fused op gives the composite ops' value and gradients (with and without a mask)`, () => {
    for (const m of [undefined, mask]) {
      const composite = mode(false, () => lossAndGrads(loss, labels, p, m, withLabels));
      const fused = mode(true, () => lossAndGrads(loss, labels, p, m, withLabels));
      composite.forEach((c, i) => close(fused[i]!, c, 2e-6, `${name} ${m ? "masked" : "plain"} ${i === 0 ? "value" : `grad ${i}`}`));
    }
  });
}

test("softmax CE: forward and backward are 2 kernels fused against 15+ composed, and nothing leaks", async () => {
  /** Kernels of one gradient computation, apart from the engine's clones and reshapes. */
  const count = async (fused: boolean): Promise<number> => {
    setNativeKernelsEnabled(fused);
    try {
      const v = tf.variable(logits);
      const prof = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => softmaxCrossEntropy(ids, v), [v]);
        tf.dispose([value, ...Object.values(grads)]);
      });
      v.dispose();
      return prof.kernels.filter((k) => k.name !== "Identity" && k.name !== "Reshape").length;
    } finally {
      setNativeKernelsEnabled(true);
    }
  };
  const composite = await count(false);
  const fused = await count(true);
  assert.ok(fused <= 3, `fused: ${fused} kernels`);
  assert.ok(composite >= 15, `composite: ${composite} kernels`);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) mode(true, () => lossAndGrads(softmaxCrossEntropy, ids, logits, undefined, false));
  assert.equal(tf.memory().numTensors, before, "no tensor growth");
});

test("softmax CE: a class id outside [0, classes) or not an integer is an error naming it (not a silent zero loss)", () => {
  const bad = tf.tensor1d([0, 1, 5, 2], "int32");
  const l4 = tf.randomNormal([4, 5], 0, 1, "float32", 9);
  assert.throws(() => softmaxCrossEntropy(bad, l4), /softmaxCrossEntropy: label 5 of row 2 is not a class id in \[0, 4\] \(logits of shape \[4,5\]\)/);
  const frac = tf.tensor1d([0, 1.5, 2, 2]);
  assert.throws(() => softmaxCrossEntropy(frac, l4), /label 1\.5 of row 1 is not a class id/);
  tf.dispose([bad, l4, frac]);
});

for (const activation of ["linear", "relu", "relu6", "sigmoid", "elu"]) {
  test(`fusedDense (${activation}): same output and gradients as tf.fused.matMul`, () => {
    const x = tf.randomNormal([64, 12], 0, 2, "float32", 11);
    const k = tf.randomNormal([12, 9], 0, 1, "float32", 12);
    const b = tf.randomNormal([9], 0, 1, "float32", 13);
    const dy = tf.randomNormal([64, 9], 0, 1, "float32", 14);
    const run = (f: (x: tf.Tensor, k: tf.Tensor, b: tf.Tensor) => tf.Tensor): number[][] =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((x: tf.Tensor, k: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(x, k, b), dy)))([x, k, b]);
        return [Array.from(f(x, k, b).dataSync()), [value.dataSync()[0]!], ...grads.map((g) => Array.from(g.dataSync()))];
      });
    const reference = run((x, k, b) => tf.fused.matMul({ a: x as tf.Tensor2D, b: k as tf.Tensor2D, bias: b, activation: activation as "relu" }));
    const fused = run((x, k, b) => {
      const out = fusedDense(x, k, b, activation);
      assert.ok(out !== undefined, "fusedDense applies");
      return out;
    });
    reference.forEach((r, i) => {
      if (activation === "linear" || activation === "relu") assert.deepEqual(fused[i], r, `part ${i}: same bits`);
      else close(fused[i]!, r, 1e-5, `${activation} part ${i}`);
    });
    tf.dispose([x, k, b, dy]);
  });
}

test("fusedDense declines what it does not cover, and everything when the addon is off", () => {
  const x = tf.ones([2, 3]);
  const k = tf.ones([3, 4]);
  const b = tf.ones([4]);
  assert.equal(fusedDense(x, k, b, "tanh"), undefined);
  assert.equal(fusedDense(tf.ones([2, 3, 1]), k, b, "relu"), undefined);
  assert.equal(fusedDense(x, k, tf.ones([5]), "relu"), undefined);
  assert.equal(mode(false, () => fusedDense(x, k, b, "relu")), undefined);
  const y = fusedDense(x, k, b, "relu")!;
  assert.deepEqual(Array.from(y.dataSync()), new Array(8).fill(4));
  tf.dispose([x, k, b, y]);
});

test("dense(): fused with the addon, tf.fused.matMul without, same numbers up to rounding; bad shapes name the values", async () => {
  const { dense } = await import("../src/index.js");
  const x = tf.randomNormal([16, 5], 0, 1, "float32", 41);
  const k = tf.randomNormal([5, 3], 0, 1, "float32", 42);
  const b = tf.randomNormal([3], 0, 1, "float32", 43);
  const on = Array.from(dense(x, k, b, "relu").dataSync());
  const off = mode(false, () => Array.from(dense(x, k, b, "relu").dataSync()));
  // Off, the products run through XNNPACK instead of BLAS: equal up to float32 rounding.
  close(on, off, 1e-6, "dense relu with vs without the addon");
  assert.deepEqual(Array.from(dense(x, k).dataSync()), Array.from(tf.matMul(x, k).dataSync()));
  assert.throws(() => dense(x, tf.ones([4, 3])), /dense: x \[rows, in\] and kernel \[in, out\] must agree, but got x of shape \[16,5\] and kernel of shape \[4,3\]/);
  assert.throws(() => dense(x, k, tf.ones([4])), /dense: bias must have shape \[3\], but got \[4\]/);
  assert.throws(() => dense(x, k, b, "tanh" as "relu"), /dense: activation must be one of linear, relu, relu6, sigmoid, elu, but got "tanh"/);
  tf.dispose([x, k, b]);
});
