import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { consistencyMSE, consistencyMAE, consistencyKL, consistencyCosine, stopGradient } from "../src/losses/consistency.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const A = [[1, 2, -1], [3, 5, 0.5]];
const B = [[0, 2, 1], [1, 1, 0]];
const value = (t: tf.Scalar) => t.dataSync()[0] as number;
const close = (got: number, want: number, tol = 1e-6, what = "") => assert.ok(Math.abs(got - want) <= tol, `${what} ${got} != ${want}`);
const closeAll = (got: number[][], want: number[][], tol = 1e-6, what = "") =>
  want.forEach((row, i) => row.forEach((w, j) => close(got[i]![j]!, w, tol, `${what}[${i}][${j}]`)));
/** Value and gradients with respect to a and b of loss(a, b). */
function evalGrads(loss: (a: tf.Tensor, b: tf.Tensor) => tf.Scalar, a = A, b = B) {
  return tf.tidy(() => {
    const ta = tf.tensor2d(a);
    const tb = tf.tensor2d(b);
    const { value: v, grads } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => loss(x, y))([ta, tb]);
    return { v: value(v), ga: grads[0]!.arraySync() as number[][], gb: grads[1]!.arraySync() as number[][] };
  });
}
const softmax = (r: number[]) => {
  const m = Math.max(...r);
  const e = r.map((x) => Math.exp(x - m));
  const s = e.reduce((p, q) => p + q, 0);
  return e.map((x) => x / s);
};
const n = A.length;
const w = A[0]!.length;

test("MSE and MAE: values and gradients match hand computations; masks drop rows", () => {
  const mse = evalGrads(consistencyMSE());
  const diff = A.map((r, i) => r.map((x, j) => x - B[i]![j]!));
  close(mse.v, diff.flat().reduce((s, d) => s + d * d, 0) / (n * w));
  closeAll(mse.ga, diff.map((r) => r.map((d) => (2 * d) / (n * w))), 1e-6, "dMSE/da");
  closeAll(mse.gb, diff.map((r) => r.map((d) => (-2 * d) / (n * w))), 1e-6, "dMSE/db");
  const mae = evalGrads(consistencyMAE());
  close(mae.v, diff.flat().reduce((s, d) => s + Math.abs(d), 0) / (n * w));
  closeAll(mae.ga, diff.map((r) => r.map((d) => Math.sign(d) / (n * w))), 1e-6, "dMAE/da");
  const masked = tf.tidy(() => value(consistencyMSE()(tf.tensor2d(A), tf.tensor2d(B), tf.tensor1d([0, 1]))));
  close(masked, diff[1]!.reduce((s, d) => s + d * d, 0) / w);
});

test("stopGradient: same values, zero gradient on the stopped side, full gradient on the other", () => {
  const both = evalGrads(consistencyMSE());
  const stopB = evalGrads(consistencyMSE({ stopGradient: "b" }));
  const stopA = evalGrads(consistencyMSE({ stopGradient: "a" }));
  close(stopB.v, both.v);
  closeAll(stopB.ga, both.ga, 1e-7);
  closeAll(stopB.gb, B.map((r) => r.map(() => 0)), 0);
  closeAll(stopA.ga, A.map((r) => r.map(() => 0)), 0);
  closeAll(stopA.gb, both.gb, 1e-7);
  // the raw helper: d/dx sum(x · stop(y)) = y, d/dy = 0
  const g = tf.tidy(() => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(x, stopGradient(y))))([tf.tensor1d([1, 2]), tf.tensor1d([3, 4])]).map((t) => t.arraySync()));
  assert.deepEqual(g, [[3, 4], [0, 0]]);
});

test("KL from logits: value, gradients (both sides) and the symmetric form match hand computations", () => {
  const pa = A.map(softmax);
  const pb = B.map(softmax);
  const klRow = (p: number[], q: number[]) => p.reduce((s, pi, j) => s + pi * Math.log(pi / q[j]!), 0);
  const kl = pa.map((p, i) => klRow(p, pb[i]!));
  const r = evalGrads(consistencyKL({ from: "logits" }));
  close(r.v, kl.reduce((s, x) => s + x, 0) / n);
  // d KL(a‖b)/d logits_b = (p_b − p_a)/n ; d/d logits_a = p_a ⊙ (log p_a − log p_b − KL)/n
  closeAll(r.gb, pb.map((q, i) => q.map((qj, j) => (qj - pa[i]![j]!) / n)), 1e-6, "dKL/db");
  closeAll(r.ga, pa.map((p, i) => p.map((pj, j) => (pj * (Math.log(pj / pb[i]![j]!) - kl[i]!)) / n)), 1e-6, "dKL/da");
  const sym = evalGrads(consistencyKL({ from: "logits", symmetric: true }));
  const klBA = pb.map((q, i) => klRow(q, pa[i]!));
  close(sym.v, kl.map((x, i) => 0.5 * (x + klBA[i]!)).reduce((s, x) => s + x, 0) / n);
  const teacher = evalGrads(consistencyKL({ from: "logits", stopGradient: "a" }));
  closeAll(teacher.ga, A.map((row) => row.map(() => 0)), 0);
  closeAll(teacher.gb, r.gb, 1e-7);
});

test("KL from probabilities equals KL from the logits' softmax; identical rows give 0", () => {
  const pa = A.map(softmax);
  const pb = B.map(softmax);
  const fromP = evalGrads(consistencyKL({ from: "probabilities" }), pa, pb).v;
  const fromL = evalGrads(consistencyKL({ from: "logits" })).v;
  close(fromP, fromL, 1e-5);
  close(evalGrads(consistencyKL({ from: "probabilities" }), pa, pa).v, 0, 1e-7);
});

test("cosine: 1 − cos per row, mean; gradient matches the hand formula; a zero row gives 1 and no NaN", () => {
  const dot = (x: number[], y: number[]) => x.reduce((s, xi, j) => s + xi * y[j]!, 0);
  const norm = (x: number[]) => Math.sqrt(dot(x, x));
  const cos = A.map((a, i) => dot(a, B[i]!) / (norm(a) * norm(B[i]!)));
  const r = evalGrads(consistencyCosine());
  close(r.v, cos.reduce((s, c) => s + (1 - c), 0) / n);
  // d(1 − cos)/da = −(b/(|a||b|) − cos·a/|a|²)/n
  const want = A.map((a, i) => a.map((aj, j) => -(B[i]![j]! / (norm(a) * norm(B[i]!)) - (cos[i]! * aj) / (norm(a) ** 2)) / n));
  closeAll(r.ga, want, 1e-6, "dcos/da");
  const zero = evalGrads(consistencyCosine(), [[0, 0, 0], [1, 0, 0]], [[1, 1, 1], [2, 0, 0]]);
  close(zero.v, 0.5, 1e-6);
  assert.ok([...zero.ga.flat(), ...zero.gb.flat()].every(Number.isFinite), `gradients ${zero.ga} / ${zero.gb}`);
});

test("bad inputs are errors naming the loss and the shapes", () => {
  const a = tf.zeros([4, 3]);
  const b = tf.zeros([4, 2]);
  assert.throws(() => consistencyMSE()(a, b), /consistencyMSE: a has shape \[4,3\] but b has shape \[4,2\]/);
  assert.throws(() => consistencyMAE()(a, tf.zeros([3, 3])), /consistencyMAE: a has shape \[4,3\] but b has shape \[3,3\]/);
  assert.throws(() => consistencyCosine()(tf.zeros([4]), tf.zeros([4])), /consistencyCosine: the outputs need rank >= 2 \(rows × values\), but have shape \[4\]/);
  assert.throws(() => consistencyKL({ from: "logits" })(a, b), /consistencyKL: a has shape \[4,3\] but b has shape \[4,2\]/);
  assert.throws(() => consistencyKL({} as never), /consistencyKL: say whether the outputs are "logits" or "probabilities"/);
  assert.throws(() => consistencyKL({ from: "probabilities", epsilon: 0 }), /epsilon must be in \(0, 1\), but got 0/);
  assert.throws(() => consistencyMSE({ stopGradient: "c" as never }), /consistencyMSE: stopGradient must be "a", "b" or "none", but got "c"/);
  assert.throws(() => consistencyMSE()(a, a, tf.ones([3])), /mask has 3 entries but the batch has 4 rows/);
  tf.dispose([a, b]);
});

test("no tensors are left behind", () => {
  const a = tf.randomNormal([5, 4]);
  const b = tf.randomNormal([5, 4]);
  const before = tf.memory().numTensors;
  for (const f of [consistencyMSE(), consistencyMAE(), consistencyKL({ from: "logits", symmetric: true }), consistencyCosine({ stopGradient: "b" })]) {
    tf.tidy(() => {
      tf.grads((x: tf.Tensor, y: tf.Tensor) => f(x, y))([a, b]);
    });
    f(a, b).dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([a, b]);
});
