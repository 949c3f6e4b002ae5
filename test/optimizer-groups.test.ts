import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { optimizerGroups, setLearningRate, getLearningRate } from "../src/train/optimizer-groups.js";
import { constantLR, stepDecay, cosineDecay, linearWarmup, scheduleValues } from "../src/train/schedules.js";
import { mse, softmaxCrossEntropy } from "../src/losses/per-task.js";
import { l2 } from "../src/losses/regularization.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

let uid = 0;
/** Trunk (dense "trunk_N") and two heads ("head_a_N", "head_b_N"). */
function twoHeadModel(seed = 1) {
  const n = ++uid;
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunk = tf.layers.dense({ units: 6, activation: "tanh", name: `trunk_${n}`, kernelInitializer: init(seed) });
  const ha = tf.layers.dense({ units: 3, name: `head_a_${n}`, kernelInitializer: init(seed + 1) });
  const hb = tf.layers.dense({ units: 1, name: `head_b_${n}`, kernelInitializer: init(seed + 2) });
  const h = trunk.apply(input) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [ha.apply(h) as tf.SymbolicTensor, hb.apply(h) as tf.SymbolicTensor] });
  return { model, trunk, ha, hb, outs: model.outputNames };
}

function batch(rows = 12) {
  const x = tf.randomNormal([rows, 4], 0, 1, "float32", 3);
  return { x, ya: tf.argMax(tf.slice(x, [0, 0], [rows, 3]), 1), yb: tf.sum(x, 1, true) };
}

/** Hand gradient of CE(a) + MSE(b) with respect to [k1, b1, ka, ba, kb, bb]. */
function handGrads(vars: tf.Variable[], x: tf.Tensor, ya: tf.Tensor, yb: tf.Tensor, extra?: (ws: tf.Tensor[]) => tf.Scalar) {
  return tf.tidy(() =>
    tf.grads((...ws: tf.Tensor[]) => {
      const [k1, b1, ka, ba, kb, bb] = ws as tf.Tensor2D[];
      const h = tf.tanh(tf.add(tf.matMul(x as tf.Tensor2D, k1!), b1!));
      const loss = tf.add(softmaxCrossEntropy(ya, tf.add(tf.matMul(h, ka!), ba!)), mse(yb, tf.add(tf.matMul(h, kb!), bb!)));
      return (extra ? tf.add(loss, extra(ws)) : loss) as tf.Scalar;
    })(vars).map((g) => Array.from(g.dataSync())),
  );
}

test("per-group SGD rates: the trunk moves by its own rate, each head by its own (exact updates)", () => {
  const { model, trunk, ha, hb, outs } = twoHeadModel();
  const { x, ya, yb } = batch();
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const before = vars.map((v) => Array.from(v.dataSync()));
  const g = handGrads(vars, x, ya, yb);
  const rates = { trunk: 0.05, a: 0.3, b: 0.7 };
  const trainer = new JointTrainer({
    model,
    tasks: [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" }, { name: "b", output: outs[1], loss: "mse" }],
    optimizer: optimizerGroups({
      trunk: { variables: trunk, optimizer: tf.train.sgd(rates.trunk) },
      a: { variables: ha, optimizer: tf.train.sgd(rates.a) },
      b: { variables: [hb], optimizer: tf.train.sgd(rates.b) },
    }),
  });
  trainer.step(x, { a: ya, b: yb });
  const lrOf = [rates.trunk, rates.trunk, rates.a, rates.a, rates.b, rates.b];
  vars.forEach((v, i) => {
    const after = Array.from(v.dataSync());
    assert.ok(after.some((a, j) => a !== before[i]![j]), `${v.name} changed`);
    after.forEach((a, j) => {
      const want = before[i]![j]! - lrOf[i]! * g[i]![j]!;
      assert.ok(Math.abs(a - want) < 1e-6, `${v.name}[${j}] ${a} vs ${want} (lr ${lrOf[i]})`);
    });
  });
  assert.deepEqual(trainer.learningRates(), rates);
});

test("schedules give the exact expected learning-rate sequences", () => {
  assert.deepEqual(scheduleValues(constantLR(0.1), 3), [0.1, 0.1, 0.1]);
  assert.deepEqual(scheduleValues(stepDecay({ lr: 1, every: 2, factor: 0.5 }), 7), [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]);
  const cos = scheduleValues(cosineDecay({ lr: 1, steps: 4, min: 0.2 }), 6);
  [1, 0.2 + 0.8 * 0.5 * (1 + Math.cos(Math.PI / 4)), 0.6, 0.2 + 0.8 * 0.5 * (1 + Math.cos((3 * Math.PI) / 4)), 0.2, 0.2].forEach((w, i) =>
    assert.ok(Math.abs(cos[i]! - w) < 1e-12, `cosine step ${i}: ${cos[i]} vs ${w}`),
  );
  assert.deepEqual(scheduleValues(linearWarmup(0.8, 3), 5), [0.2, 0.4, 0.6000000000000001, 0.8, 0.8]);
  // composed: warm-up, then the decay starts from its own step 0
  assert.deepEqual(scheduleValues(linearWarmup(stepDecay({ lr: 1, every: 1, factor: 0.5 }), 1), 4), [0.5, 1, 0.5, 0.25]);
});

test("a schedule is applied before every update of its group, SGD included (whose rate is cached)", () => {
  const { model, trunk, ha, hb, outs } = twoHeadModel(4);
  const { x, ya, yb } = batch();
  const groups = optimizerGroups({
    trunk: { variables: trunk, optimizer: tf.train.sgd(123), schedule: stepDecay({ lr: 0.1, every: 2, factor: 0.5 }) },
    heads: { variables: [ha, hb], optimizer: tf.train.adam(0.01), schedule: linearWarmup(0.02, 2) },
  });
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" }, { name: "b", output: outs[1], loss: "mse" }], optimizer: groups });
  const seen: Record<string, number>[] = [];
  const kernel = trunk.trainableWeights[0]!.read() as tf.Variable;
  for (let s = 0; s < 5; s++) {
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const before = Array.from(kernel.dataSync());
    const g = handGrads(vars, x, ya, yb)[0]!;
    trainer.step(x, { a: ya, b: yb });
    seen.push(trainer.learningRates());
    // the trunk's SGD update really used the scheduled rate
    const lr = [0.1, 0.1, 0.05, 0.05, 0.025][s]!;
    Array.from(kernel.dataSync()).forEach((v, j) => assert.ok(Math.abs(v - (before[j]! - lr * g[j]!)) < 1e-6, `step ${s} kernel[${j}]`));
  }
  assert.deepEqual(seen.map((r) => r.trunk), [0.1, 0.1, 0.05, 0.05, 0.025]);
  assert.deepEqual(seen.map((r) => r.heads), [0.02 / 3, 0.04 / 3, 0.02, 0.02, 0.02]);
  assert.deepEqual(groups.updates(), { trunk: 5, heads: 5 });
});

test("penalty: an l2 term is added to the minimised total and its gradient applied", () => {
  const { model, trunk, outs } = twoHeadModel(9);
  const { x, ya, yb } = batch();
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const before = vars.map((v) => Array.from(v.dataSync()));
  const kernel = trunk.trainableWeights[0]!.read() as tf.Variable;
  const g = handGrads(vars, x, ya, yb, (ws) => tf.mul(0.1, tf.sum(tf.square(ws[0]!))) as tf.Scalar);
  const trainer = new JointTrainer({
    model, tasks: [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" }, { name: "b", output: outs[1], loss: "mse" }],
    optimizer: tf.train.sgd(0.1), penalty: () => l2([kernel], 0.1),
  });
  const r = trainer.step(x, { a: ya, b: yb });
  const want = 0.1 * before[0]!.reduce((s, w) => s + w * w, 0);
  assert.ok(Math.abs(r.penalty! - want) < 1e-5 && Math.abs(r.total - (r.losses.a! + r.losses.b! + r.penalty!)) < 1e-5);
  vars.forEach((v, i) => Array.from(v.dataSync()).forEach((a, j) => assert.ok(Math.abs(a - (before[i]![j]! - 0.1 * g[i]![j]!)) < 1e-6, `${v.name}[${j}]`)));
  const tasks = [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" as const }, { name: "b", output: outs[1], loss: "mse" as const }];
  const snapshot = vars.map((v) => Array.from(v.dataSync()));
  const nan = new JointTrainer({ model, tasks, optimizer: tf.train.sgd(0.1), penalty: () => tf.mul(NaN, l2([kernel], 1)) as tf.Scalar });
  assert.throws(() => nan.step(x, { a: ya, b: yb }), /JointTrainer: the penalty is NaN at step 1; no update was applied/);
  assert.deepEqual(vars.map((v) => Array.from(v.dataSync())), snapshot);
  const vec = new JointTrainer({ model, tasks, optimizer: tf.train.sgd(0.1), penalty: () => tf.square(kernel) as unknown as tf.Scalar });
  assert.throws(() => vec.step(x, { a: ya, b: yb }), /penalty\(\) must return a scalar tensor, but returned shape \[4,6\]/);
  assert.throws(() => new JointTrainer({ model, tasks, optimizer: tf.train.sgd(0.1), penalty: 3 as never }), /JointTrainer: penalty must be a function returning a scalar, but got 3/);
});

test("every trained variable in exactly one group: unassigned and doubly-assigned variables are listed", () => {
  const { model, trunk, ha, hb, outs } = twoHeadModel();
  const tasks = [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" as const }, { name: "b", output: outs[1], loss: "mse" as const }];
  const tn = trunk.name;
  // seed 004's mistake: heads only, the trunk left out
  assert.throws(
    () => new JointTrainer({ model, tasks, optimizer: optimizerGroups({ a: { variables: ha, optimizer: tf.train.sgd(0.1) }, b: { variables: hb, optimizer: tf.train.sgd(0.1) } }) }),
    new RegExp(`every trained variable must be in exactly one group. In no group: ${tn}/kernel, ${tn}/bias\\.`),
  );
  assert.throws(
    () => new JointTrainer({ model, tasks, optimizer: optimizerGroups({ all: { variables: model, optimizer: tf.train.sgd(0.1) }, a: { variables: ha, optimizer: tf.train.sgd(0.1) } }) }),
    new RegExp(`In several groups: ${ha.name}/kernel \\(in "all", "a"\\); ${ha.name}/bias \\(in "all", "a"\\)`),
  );
  const opt = tf.train.sgd(0.1);
  assert.throws(() => optimizerGroups({ a: { variables: ha, optimizer: opt }, b: { variables: hb, optimizer: opt } }), /groups "a" and "b" use the same optimizer object/);
  assert.throws(() => optimizerGroups({}), /optimizerGroups: no groups given/);
  assert.throws(() => optimizerGroups({ a: { variables: ha, optimizer: {} as tf.Optimizer } }), /group "a" needs a tf.Optimizer/);
  const stray = tf.variable(tf.zeros([2]), true, `stray_${uid}`);
  assert.throws(
    () => new JointTrainer({ model, tasks, optimizer: optimizerGroups({ all: { variables: model, optimizer: tf.train.sgd(0.1) }, x: { variables: [stray], optimizer: tf.train.sgd(0.1) } }) }),
    new RegExp(`group "x" lists "stray_${uid}", which is not among the variables being trained`),
  );
  assert.throws(
    () => new JointTrainer({ model, tasks, optimizer: optimizerGroups({ all: { variables: model, optimizer: tf.train.sgd(0.1) }, none: { variables: /nomatch/, optimizer: tf.train.sgd(0.1) } }) }),
    /group "none" selects no variables/,
  );
  const bad = new JointTrainer({ model, tasks, optimizer: optimizerGroups({ all: { variables: /./, optimizer: tf.train.sgd(0.1), schedule: () => NaN } }) });
  const { x, ya, yb } = batch(4);
  assert.throws(() => bad.step(x, { a: ya, b: yb }), /the schedule of group "all" gave NaN at update 0; a learning rate must be finite and >= 0/);
  assert.throws(() => stepDecay({ lr: 1, every: 0, factor: 0.5 }), /stepDecay: every must be a positive integer, but got 0/);
  assert.throws(() => stepDecay({ lr: 1, every: 2, factor: 1.5 }), /stepDecay: factor must be in \(0, 1\], but got 1.5/);
  assert.throws(() => cosineDecay({ lr: -1, steps: 3 }), /cosineDecay: lr must be a positive finite number, but got -1/);
  assert.throws(() => cosineDecay({ lr: 1, steps: 3, min: 2 }), /cosineDecay: min must be in \[0, lr = 1\], but got 2/);
  assert.throws(() => linearWarmup(0.1, 0), /linearWarmup: steps must be a positive integer, but got 0/);
  assert.throws(() => constantLR(0.1)(-1), /constantLR: the step must be an integer >= 0, but got -1/);
  assert.throws(() => setLearningRate(tf.train.adam(0.1), Infinity), /setLearningRate: the learning rate must be a finite number >= 0, but got Infinity/);
  assert.throws(() => new JointTrainer({ model, tasks, optimizer: "adam" as never }), /JointTrainer: optimizer must be a tf.Optimizer or optimizerGroups\(\.\.\.\), but got adam/);
  stray.dispose();
});

test("groups with Adam: no tensor leak (count after step 10 equals after step 200), rates settable on every optimizer kind", () => {
  const { model, trunk, ha, hb, outs } = twoHeadModel(12);
  const { x, ya, yb } = batch(16);
  const trainer = new JointTrainer({
    model, tasks: [{ name: "a", output: outs[0], loss: "softmaxCrossEntropy" }, { name: "b", output: outs[1], loss: "mse" }],
    optimizer: optimizerGroups({
      trunk: { variables: trunk, optimizer: tf.train.adam(0.01), schedule: linearWarmup(cosineDecay({ lr: 0.01, steps: 100 }), 5) },
      a: { variables: ha, optimizer: tf.train.momentum(0.01, 0.9), schedule: stepDecay({ lr: 0.01, every: 50, factor: 0.5 }) },
      b: { variables: hb, optimizer: tf.train.rmsprop(0.01) },
    }),
  });
  for (let i = 0; i < 10; i++) trainer.step(x, { a: ya, b: yb });
  const at10 = tf.memory().numTensors;
  for (let i = 10; i < 200; i++) trainer.step(x, { a: ya, b: yb });
  assert.equal(tf.memory().numTensors, at10);
  for (const o of [tf.train.sgd(1), tf.train.momentum(1, 0.9), tf.train.adam(1), tf.train.adagrad(1), tf.train.adadelta(1), tf.train.adamax(1), tf.train.rmsprop(1)]) {
    setLearningRate(o, 0.25);
    assert.equal(getLearningRate(o), 0.25, o.getClassName());
  }
});
