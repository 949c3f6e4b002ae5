import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { AlternatingTrainer, JointObjectiveTrainer, type Turn } from "../src/train/alternating.js";
import { consistencyMSE } from "../src/losses/consistency.js";
import { mse } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

type Batch = { x: tf.Tensor2D; ya: tf.Tensor2D; y: tf.Tensor2D };
const X = [[1, 0.5, -1], [0.2, -0.3, 2], [-1, 1, 0.5], [0.7, 0.1, -0.4]];
const YA = [[1], [0], [-1], [0.5]];
const Y = [[0.3], [1], [-0.5], [0.2]];
let uid = 0;

/** A: a = x·Wa ([3,1]); B consumes A's output: b = a·Wb + c. Raw variables, so the hand math is exact. */
function chain() {
  const n = ++uid;
  const Wa = tf.variable(tf.tensor2d([[0.2], [-0.4], [0.1]]), true, `Wa_${n}`);
  const Wb = tf.variable(tf.tensor2d([[0.7]]), true, `Wb_${n}`);
  const c = tf.variable(tf.scalar(0.05), true, `c_${n}`);
  const forward = (b: Batch) => {
    const a = tf.matMul(b.x, Wa);
    return { a, b: tf.add(tf.matMul(a, Wb), c) };
  };
  const batch: Batch = { x: tf.tensor2d(X), ya: tf.tensor2d(YA), y: tf.tensor2d(Y) };
  return { Wa, Wb, c, forward, batch };
}
const lossA = (o: Record<string, tf.Tensor>, b: Batch) => mse(b.ya, o.a!);
const lossB = (o: Record<string, tf.Tensor>, b: Batch) => mse(b.y, o.b!);
const arr = (v: tf.Tensor) => Array.from(v.dataSync());
const near = (got: number[], want: number[], tol = 1e-6, what = "") => want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) <= tol, `${what}[${i}] ${got[i]} vs ${w}`));

test("A's turn leaves B bit-identical; B's turn uses A's UPDATED output (fresh forward pass) and leaves A bit-identical", () => {
  const { Wa, Wb, c, forward, batch } = chain();
  const lr = 0.5;
  const trainer = new AlternatingTrainer<Batch>({
    forward,
    turns: [
      { name: "A", variables: [Wa], loss: lossA, optimizer: tf.train.sgd(lr) },
      { name: "B", variables: [Wb, c], loss: lossB, optimizer: tf.train.sgd(lr) },
    ],
  });
  const wa0 = arr(Wa), wb0 = arr(Wb), c0 = arr(c);
  // Hand gradients: dL_A/dWa at Wa0; dL_B/d[Wb, c] at a given Wa.
  const gA = tf.tidy(() => arr(tf.grad((w: tf.Tensor) => mse(batch.ya, tf.matMul(batch.x, w as tf.Tensor2D)))(tf.tensor2d(wa0, [3, 1]))));
  const gB = (wa: number[]) => tf.tidy(() => tf.grads((wb: tf.Tensor, cc: tf.Tensor) => mse(batch.y, tf.add(tf.matMul(tf.matMul(batch.x, tf.tensor2d(wa, [3, 1])), wb as tf.Tensor2D), cc)))([tf.tensor2d(wb0, [1, 1]), tf.scalar(c0[0]!)]).map(arr));
  const r1 = trainer.step(batch);
  assert.equal(r1.turn, "A");
  const wa1 = wa0.map((w, i) => w - lr * gA[i]!);
  near(arr(Wa), wa1, 1e-6, "Wa after A's step");
  assert.deepEqual(arr(Wb), wb0, "Wb is bit-identical after A's turn");
  assert.deepEqual(arr(c), c0, "c is bit-identical after A's turn");
  const r2 = trainer.step(batch);
  assert.equal(r2.turn, "B");
  const waAfterA = arr(Wa);
  const [fresh, cFresh] = gB(wa1);
  const [stale] = gB(wa0); // seed 003: B's gradient from the forward pass made before A's step
  near(arr(Wb), [wb0[0]! - lr * fresh![0]!], 1e-6, "Wb (fresh forward pass)");
  near(arr(c), [c0[0]! - lr * cFresh![0]!], 1e-6, "c");
  assert.ok(Math.abs(arr(Wb)[0]! - (wb0[0]! - lr * stale![0]!)) > 1e-3, "a stale forward pass would give a different update");
  assert.deepEqual(arr(Wa), waAfterA, "Wa is bit-identical during B's turn");
  // the reported loss is B's loss on the fresh pass (after A's update)
  const lb = tf.tidy(() => mse(batch.y, tf.add(tf.matMul(tf.matMul(batch.x, tf.tensor2d(wa1, [3, 1])), tf.tensor2d(wb0, [1, 1])), c0[0]!)).dataSync()[0]!);
  assert.ok(Math.abs(r2.losses.B! - lb) < 1e-6);
});

test("k steps per turn, in order; each turn's optimizer receives gradients for its own variables only", () => {
  const n = ++uid;
  const A = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3], name: `alt_a_${n}`, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) })] });
  const B = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [2], name: `alt_b_${n}`, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })] });
  const seen: string[][] = [];
  const spy = (o: tf.Optimizer) => {
    const orig = o.applyGradients.bind(o);
    o.applyGradients = (g) => {
      seen.push((Array.isArray(g) ? g.map((x) => x.name) : Object.keys(g)).sort());
      orig(g);
    };
    return o;
  };
  const trainer = new AlternatingTrainer<Batch>({
    forward: (b, training) => {
      const a = A.apply(b.x, { training }) as tf.Tensor;
      return { a, b: B.apply(a, { training }) as tf.Tensor };
    },
    turns: [
      { name: "A", variables: A, loss: (o, b) => mse(b.y, o.b!), optimizer: spy(tf.train.adam(0.05)), steps: 3 },
      { name: "B", variables: B, loss: (o, b) => mse(b.y, o.b!), optimizer: spy(tf.train.adam(0.05)), steps: 2 },
    ],
  });
  const batch: Batch = { x: tf.tensor2d(X), ya: tf.tensor2d(YA), y: tf.tensor2d(Y) };
  const order: string[] = [];
  for (let i = 0; i < 10; i++) {
    const frozen = trainer.currentTurn === "A" ? B : A;
    const before = frozen.getWeights().map(arr);
    order.push(trainer.step(batch).turn);
    assert.deepEqual(frozen.getWeights().map(arr), before, `step ${i + 1}: the frozen model changed`);
  }
  assert.equal(order.join(""), "AAABBAAABB");
  const aNames = [`alt_a_${n}/bias`, `alt_a_${n}/kernel`];
  const bNames = [`alt_b_${n}/bias`, `alt_b_${n}/kernel`];
  assert.deepEqual(seen, [aNames, aNames, aNames, bNames, bNames, aNames, aNames, aNames, bNames, bNames]);
  assert.deepEqual(trainer.variablesOf("B").map((v) => v.name), [`alt_b_${n}/kernel`, `alt_b_${n}/bias`]);
});

test("joint variant: one optimizer over both models equals the hand SGD step of the weighted sum; consistency variant adds w·MSE(a, b)", () => {
  for (const withConsistency of [false, true]) {
    const { Wa, Wb, c, forward, batch } = chain();
    const lr = 0.2;
    const before = [Wa, Wb, c].map(arr);
    const g = tf.tidy(() =>
      tf.grads((wa: tf.Tensor, wb: tf.Tensor, cc: tf.Tensor) => {
        const a = tf.matMul(batch.x, wa as tf.Tensor2D);
        const b = tf.add(tf.matMul(a, wb as tf.Tensor2D), cc);
        let total = tf.add(tf.mul(0.7, mse(batch.ya, a)), tf.mul(0.3, mse(batch.y, b)));
        if (withConsistency) total = tf.add(total, tf.mul(0.5, tf.mean(tf.squaredDifference(a, b))));
        return total as tf.Scalar;
      })([tf.tensor2d(before[0]!, [3, 1]), tf.tensor2d(before[1]!, [1, 1]), tf.scalar(before[2]![0]!)]).map(arr),
    );
    const turns: Turn<Batch>[] = [
      { name: "A", variables: [Wa], loss: lossA, optimizer: tf.train.sgd(1) },
      { name: "B", variables: [Wb, c], loss: lossB, optimizer: tf.train.sgd(1) },
    ];
    const trainer = new JointObjectiveTrainer<Batch>({
      forward, parts: turns, weights: { A: 0.7, B: 0.3 }, optimizer: tf.train.sgd(lr),
      consistency: withConsistency ? { outputs: ["a", "b"], loss: consistencyMSE(), weight: 0.5 } : undefined,
    });
    const r = trainer.step(batch);
    [Wa, Wb, c].forEach((v, i) => near(arr(v), before[i]!.map((w, j) => w - lr * g[i]![j]!), 1e-6, `${v.name} consistency=${withConsistency}`));
    assert.deepEqual(Object.keys(r.losses), withConsistency ? ["A", "B", "consistency"] : ["A", "B"]);
    const want = 0.7 * r.losses.A! + 0.3 * r.losses.B! + (withConsistency ? 0.5 * r.losses.consistency! : 0);
    assert.ok(Math.abs(r.total - want) < 1e-6);
  }
});

test("alternating with a consistency term: the term is added to each turn's loss, gradients still only for the turn's variables", () => {
  const { Wa, Wb, c, forward, batch } = chain();
  const before = [Wa, Wb, c].map(arr);
  const gA = tf.tidy(() =>
    arr(tf.grad((wa: tf.Tensor) => {
      const a = tf.matMul(batch.x, wa as tf.Tensor2D);
      const b = tf.add(tf.matMul(a, tf.tensor2d(before[1]!, [1, 1])), before[2]![0]!);
      return tf.add(mse(batch.ya, a), tf.mul(2, tf.mean(tf.squaredDifference(a, b)))) as tf.Scalar;
    })(tf.tensor2d(before[0]!, [3, 1]))),
  );
  const trainer = new AlternatingTrainer<Batch>({
    forward,
    turns: [
      { name: "A", variables: [Wa], loss: lossA, optimizer: tf.train.sgd(0.1) },
      { name: "B", variables: [Wb, c], loss: lossB, optimizer: tf.train.sgd(0.1) },
    ],
    consistency: { outputs: ["a", "b"], loss: consistencyMSE(), weight: 2 },
  });
  const r = trainer.step(batch);
  near(arr(Wa), before[0]!.map((w, j) => w - 0.1 * gA[j]!), 1e-6, "Wa");
  assert.deepEqual([arr(Wb), arr(c)], [before[1], before[2]]);
  assert.ok(Math.abs(r.total - (r.losses.A! + 2 * r.losses.consistency!)) < 1e-6);
});

test("bad set-ups are errors naming the turn, variable or value; a NaN loss applies no update", () => {
  const { Wa, Wb, c, forward, batch } = chain();
  const t = (name: string, variables: tf.Variable[], extra: Partial<Turn<Batch>> = {}): Turn<Batch> => ({ name, variables, loss: lossB, optimizer: tf.train.sgd(0.1), ...extra });
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa, Wb]), t("B", [Wb, c])] }), new RegExp(`the variable "${Wb.name}" is in turns "A" and "B"`));
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa])] }), /AlternatingTrainer: needs at least two turns, but got 1/);
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa]), t("A", [Wb])] }), /two turns are named "A"/);
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa], { steps: 0 }), t("B", [Wb])] }), /turn "A" steps must be a positive integer, but got 0/);
  const opt = tf.train.sgd(0.1);
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa], { optimizer: opt }), t("B", [Wb], { optimizer: opt })] }), /turns "A" and "B" use the same optimizer object/);
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", []), t("B", [Wb])] }), /turn "A": no trainable variables/);
  assert.throws(() => new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa]), t("B", [Wb])], consistency: { outputs: ["a", "b"], loss: consistencyMSE(), weight: -1 } }), /consistency.weight must be a finite number >= 0, but got -1/);
  const missing = new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa]), t("B", [Wb])], consistency: { outputs: ["a", "z"], loss: consistencyMSE(), weight: 1 } });
  assert.throws(() => missing.step(batch), /consistency reads the output "z", but the forward pass returned "a", "b"/);
  const notScalar = new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa], { loss: (o) => o.a! as tf.Scalar }), t("B", [Wb])] });
  assert.throws(() => notScalar.step(batch), /turn "A".*the loss must be a scalar tensor, but got shape \[4,1\]/);
  assert.throws(() => new JointObjectiveTrainer<Batch>({ forward, parts: [t("A", [Wa])], weights: { Z: 1 }, optimizer: tf.train.sgd(0.1) }), /the weight "Z" names no part; parts are "A"/);
  assert.throws(() => new JointObjectiveTrainer<Batch>({ forward, parts: [t("A", [Wa])], weights: { A: NaN }, optimizer: tf.train.sgd(0.1) }), /the weight of "A" must be a finite number >= 0, but got NaN/);
  const nan = new AlternatingTrainer<Batch>({ forward, turns: [t("A", [Wa], { loss: (o) => tf.mul(NaN, tf.sum(o.a!)) as tf.Scalar }), t("B", [Wb])] });
  const wa = arr(Wa);
  assert.throws(() => nan.step(batch), /AlternatingTrainer turn "A": the loss "A" is NaN at step 1; no update was applied/);
  assert.deepEqual(arr(Wa), wa);
});

test("no tensor leak: the tensor count after step 10 equals the count after step 200 (alternating and joint)", () => {
  const n = ++uid;
  const A = tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [3], activation: "relu", name: `leak_a_${n}` }), tf.layers.dense({ units: 1, name: `leak_a2_${n}` })] });
  const B = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [1], name: `leak_b_${n}` })] });
  const forward = (b: Batch, training: boolean) => {
    const a = A.apply(b.x, { training }) as tf.Tensor;
    return { a, b: B.apply(a, { training }) as tf.Tensor };
  };
  const batch: Batch = { x: tf.tensor2d(X), ya: tf.tensor2d(YA), y: tf.tensor2d(Y) };
  const alt = new AlternatingTrainer<Batch>({
    forward,
    turns: [
      { name: "A", variables: A, loss: lossA, optimizer: tf.train.adam(0.01), steps: 3 },
      { name: "B", variables: B, loss: lossB, optimizer: tf.train.momentum(0.01, 0.9), steps: 2 },
    ],
    consistency: { outputs: ["a", "b"], loss: consistencyMSE({ stopGradient: "a" }), weight: 0.1 },
  });
  const joint = new JointObjectiveTrainer<Batch>({ forward, parts: [{ name: "A", variables: A, loss: lossA }, { name: "B", variables: B, loss: lossB }], optimizer: tf.train.adam(0.01) });
  for (let i = 0; i < 10; i++) { alt.step(batch); joint.step(batch); }
  const at10 = tf.memory().numTensors;
  for (let i = 10; i < 200; i++) { alt.step(batch); joint.step(batch); }
  assert.equal(tf.memory().numTensors, at10);
});
