import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { fit } from "../src/train/fit.js";
import { mae, mse, softmaxCrossEntropy } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

function twoHeadModel(seed = 1) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunk = tf.layers.dense({ units: 8, activation: "tanh", kernelInitializer: init(seed) }).apply(input) as tf.SymbolicTensor;
  const a = tf.layers.dense({ units: 3, name: "a", kernelInitializer: init(seed + 1) }).apply(trunk) as tf.SymbolicTensor;
  const b = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(seed + 2) }).apply(trunk) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: [a, b] });
}

function batch(rows = 16) {
  const x = tf.randomNormal([rows, 4], 0, 1, "float32", 3);
  // Learnable targets: the class is the largest of the first three inputs, the value their sum.
  const ya = tf.argMax(tf.slice(x, [0, 0], [rows, 3]), 1) as tf.Tensor1D;
  const yb = tf.sum(x, 1, true);
  return { x, y: { a: ya, b: yb } };
}

test("a joint step applies exactly the SGD update of the weighted summed loss (checked with tf.grads by hand)", () => {
  const model = twoHeadModel();
  const { x, y } = batch();
  const lr = 0.1;
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const before = vars.map((v) => v.arraySync());
  // Gradient of 0.7·CE + 0.3·MSE written out by hand, against the same variables.
  const expectedGrads = tf.tidy(() => {
    const f = (...ws: tf.Tensor[]) => {
      const [k1, b1, ka, ba, kb, bb] = ws as tf.Tensor2D[];
      const h = tf.tanh(tf.add(tf.matMul(x, k1!), b1!));
      const la = softmaxCrossEntropy(y.a, tf.add(tf.matMul(h, ka!), ba!));
      const lb = mse(y.b, tf.add(tf.matMul(h, kb!), bb!));
      return tf.add(tf.mul(0.7, la), tf.mul(0.3, lb)) as tf.Scalar;
    };
    return tf.grads(f)(vars).map((g) => g.arraySync());
  });
  const trainer = new JointTrainer({
    model,
    tasks: [
      { name: "a", loss: "softmaxCrossEntropy", weight: 0.7 },
      { name: "b", loss: "mse", weight: 0.3 },
    ],
    optimizer: tf.train.sgd(lr),
  });
  const result = trainer.step(x, y);
  assert.equal(result.step, 1);
  assert.ok(Math.abs(result.total - (0.7 * result.losses.a! + 0.3 * result.losses.b!)) < 1e-5);
  vars.forEach((v, i) => {
    const after = (v.arraySync() as number[] | number[][]).flat();
    const b = (before[i] as number[] | number[][]).flat();
    const g = (expectedGrads[i] as number[] | number[][]).flat();
    after.forEach((value, j) => assert.ok(Math.abs(value - (b[j]! - lr * g[j]!)) < 1e-6, `variable ${v.name}[${j}]: ${value} vs ${b[j]! - lr * g[j]!}`));
  });
});

test("three tasks, weights 1, 0.5 and 0, then changed: each step is the SGD update of that step's weighted sum", () => {
  const model = twoHeadModel(11);
  const { x, y } = batch();
  const lr = 0.1;
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const trainer = new JointTrainer({
    model,
    tasks: [
      { name: "a", loss: "softmaxCrossEntropy" },
      { name: "b", loss: "mse", weight: 0.5 },
      { name: "c", output: "b", loss: "mae", weight: 0 },
    ],
    optimizer: tf.train.sgd(lr),
  });
  const labels = { a: y.a, b: y.b, c: y.b };
  const handStep = (w: [number, number, number]) => {
    const before = vars.map((v) => v.clone());
    // The weighted sum by hand, through model.apply, against the same variables.
    const grads = tf.tidy(() => {
      const f = () => {
        const [pa, pb] = model.apply(x, { training: true }) as tf.Tensor[];
        return tf.addN([tf.mul(softmaxCrossEntropy(y.a, pa!), w[0]), tf.mul(mse(y.b, pb!), w[1]), tf.mul(mae(y.b, pb!), w[2])]) as tf.Scalar;
      };
      const r = tf.variableGrads(f, vars);
      return vars.map((v) => r.grads[v.name] ?? tf.zerosLike(v));
    });
    return { before, grads };
  };
  for (const w of [[1, 0.5, 0], [0.25, 1, 2]] as [number, number, number][]) {
    trainer.setWeights({ a: w[0], b: w[1], c: w[2] });
    const { before, grads } = handStep(w);
    const r = trainer.step(x, labels);
    assert.ok(Math.abs(r.total - (w[0] * r.losses.a! + w[1] * r.losses.b! + w[2] * r.losses.c!)) < 1e-5, `total ${r.total}`);
    vars.forEach((v, i) => {
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(v, tf.sub(before[i]!, tf.mul(grads[i]!, lr))))).dataSync()[0]!);
      assert.ok(diff < 1e-6, `weights ${w}: ${v.name} differs by ${diff}`);
    });
    tf.dispose([...before, ...grads]);
  }
  const at = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) trainer.step(x, labels);
  assert.equal(tf.memory().numTensors, at, "tensors leaked across steps");
  trainer.dispose();
  // A loss that is not a scalar is named, not summed into a wrong shape.
  const bad = new JointTrainer({ model, tasks: [{ name: "a", loss: "softmaxCrossEntropy" }, { name: "rows", output: "b", loss: (yt, p) => tf.mean(tf.sub(yt, p), 1) as tf.Scalar }], optimizer: tf.train.sgd(lr) });
  assert.throws(() => bad.step(x, { a: y.a, rows: y.b }), /Task "rows": the loss must be a scalar tensor, but got shape \[16\]/);
  tf.dispose([x, y.a, y.b]);
});

test("no tensor leak: the tensor count after step 10 equals the count after step 300", async () => {
  const model = twoHeadModel(5);
  const { x, y } = batch(32);
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", loss: "softmaxCrossEntropy" }, { name: "b", loss: "mse" }], optimizer: tf.train.adam(0.01) });
  for (let i = 0; i < 10; i++) trainer.step(x, y);
  const at10 = tf.memory().numTensors;
  for (let i = 0; i < 290; i++) trainer.step(x, y);
  assert.equal(tf.memory().numTensors, at10);
  // and fit() leaves only what it returns behind
  const before = tf.memory().numTensors;
  await fit({ trainer, x, y, epochs: 5, batchSize: 8, live: false });
  assert.equal(tf.memory().numTensors, before);
});

test("a NaN loss stops with the step, the task and its last finite value, and applies nothing", () => {
  const model = twoHeadModel(7);
  const { x, y } = batch(8);
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", loss: "softmaxCrossEntropy" }, { name: "b", loss: "mse" }], optimizer: tf.train.sgd(0.01) });
  const first = trainer.step(x, y);
  const snapshot = model.getWeights().map((w) => w.arraySync());
  const badY = { a: y.a, b: tf.fill([8, 1], NaN) };
  assert.throws(
    () => trainer.step(x, badY),
    new RegExp(`Task "b": the loss is NaN at step 2 \\(last finite value ${first.losses.b} at step 1\\); no update was applied`),
  );
  assert.deepEqual(model.getWeights().map((w) => w.arraySync()), snapshot);
});

test("bad tasks and labels are clear errors", () => {
  const model = twoHeadModel();
  const opt = tf.train.sgd(0.1);
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "c", loss: "mse" }], optimizer: opt }), /Task "c" reads the output "c", but the model's outputs are "a", "b"/);
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "a", loss: "mse", weight: -1 }], optimizer: opt }), /Task "a": the weight must be a finite number >= 0, but got -1/);
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "a", loss: "mse", weight: Infinity }], optimizer: opt }), /but got Infinity/);
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "a", loss: "mse" }, { name: "a", output: "b", loss: "mse" }], optimizer: opt }), /Two tasks are named "a"/);
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", loss: "softmaxCrossEntropy" }, { name: "b", loss: "mse" }], optimizer: opt });
  const { x, y } = batch(8);
  assert.throws(() => trainer.step(x, { a: y.a }), /No labels for the task "b"/);
  assert.throws(() => trainer.step(x, { ...y, z: y.b }), /labels name the task "z", which is not one of "a", "b"/);
  assert.throws(() => trainer.step(x, { a: y.a, b: tf.zeros([5, 1]) }), /The labels for task "b" have 5 rows but the inputs have 8/);
  assert.throws(() => trainer.setWeights({ b: NaN }), /Task "b": the weight must be a finite number >= 0, but got NaN/);
});

test("fit: losses fall, history has a row per epoch, task and split with metrics, and early stopping restores the best", async () => {
  const model = twoHeadModel(11);
  const { x, y } = batch(64);
  const run = await fit({
    trainer: { model, tasks: [{ name: "a", loss: "softmaxCrossEntropy", metrics: ["accuracy"] }, { name: "b", loss: "mse", metrics: ["r2"] }], optimizer: tf.train.adam(0.02) },
    x, y, epochs: 30, batchSize: 16, seed: 3, live: false,
    validation: { x, y },
    earlyStopping: { patience: 3, restoreBest: true },
  });
  const rows = run.history.objects() as { epoch: number; task: string; split: string; loss: number; accuracy: number | null }[];
  assert.equal(rows.length, run.epochs * 4);
  const trainA = rows.filter((r) => r.task === "a" && r.split === "train");
  assert.ok(trainA.at(-1)!.loss < trainA[0]!.loss * 0.8, `loss a ${trainA[0]!.loss} -> ${trainA.at(-1)!.loss}`);
  const valA = rows.filter((r) => r.task === "a" && r.split === "validation");
  assert.ok(valA.every((r) => typeof r.accuracy === "number" && r.accuracy >= 0 && r.accuracy <= 1));
  assert.ok(run.bestEpoch >= 1 && run.bestEpoch <= run.epochs);
  await assert.rejects(fit({ trainer: run.trainer, x, y, epochs: 0 }), /fit: epochs must be a positive integer, but got 0/);
});
