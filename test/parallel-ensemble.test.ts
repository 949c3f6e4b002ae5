import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import {
  VectorizedEnsemble,
  ensembleSeed,
  fitEnsemble,
  memberOrders,
  type EnsembleLayerSpec,
  type EnsembleLoss,
} from "../src/parallel/ensemble.js";

await initBackend({ report: false });

const LAYERS: EnsembleLayerSpec[] = [
  { units: 8, activation: "relu" },
  { units: 6, activation: "tanh" },
  { units: 3, activation: "linear" },
];
const INPUT = 5;

/** Member `i` built the ordinary way: tf.layers.dense with glorotUniform({ seed }) kernels and zero biases. */
function standalone(seeds: number[], layers = LAYERS): tf.Sequential {
  const model = tf.sequential();
  layers.forEach((l, k) =>
    model.add(
      tf.layers.dense({
        units: l.units,
        activation: l.activation ?? "linear",
        kernelInitializer: tf.initializers.glorotUniform({ seed: seeds[k] as number }),
        biasInitializer: "zeros",
        ...(k === 0 ? { inputShape: [INPUT] } : {}),
      }),
    ),
  );
  return model;
}

/** The same per-member losses the ensemble uses, written on one member's 2-D batch. */
function lossOf(kind: EnsembleLoss, out: tf.Tensor, y: tf.Tensor): tf.Scalar {
  if (kind === "mse") return tf.mean(tf.squaredDifference(out, y));
  if (kind === "softmaxCrossEntropy") return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(out)), 1))) as tf.Scalar;
  return tf.mean(tf.add(tf.sub(tf.relu(out), tf.mul(out, y)), tf.log1p(tf.exp(tf.neg(tf.abs(out))))));
}

/** Seeded labels suited to each loss, [M, rows, out]. */
function labels(kind: EnsembleLoss, shape: [number, number, number], seed: number): tf.Tensor3D {
  return tf.tidy(() => {
    const r = tf.randomNormal(shape, 0, 1, "float32", seed);
    if (kind === "mse") return r as tf.Tensor3D;
    if (kind === "softmaxCrossEntropy") return tf.oneHot(tf.argMax(r, 2), shape[2]).toFloat() as tf.Tensor3D;
    return tf.cast(tf.greater(r, 0), "float32") as tf.Tensor3D;
  });
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

function trainableVars(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

for (const kind of ["mse", "softmaxCrossEntropy", "binaryCrossEntropy"] as const) {
  test(`${kind}: each of 4 members trained in the ensemble equals the same model trained alone with its own tf.train.adam (50 steps, 1e-4)`, () => {
    const M = 4;
    const batch = 16;
    const lr = 0.01;
    const baseSeed = 7;
    const ens = new VectorizedEnsemble({ members: M, inputSize: INPUT, layers: LAYERS, baseSeed, loss: kind, optimizer: "adam", learningRate: lr });
    const alone = Array.from({ length: M }, (_, i) => {
      const model = standalone(LAYERS.map((_, l) => ensembleSeed(baseSeed, i, l)));
      return { model, opt: tf.train.adam(lr), vars: trainableVars(model) };
    });
    // Same starting weights before any step.
    for (let i = 0; i < M; i++) {
      const w = ens.memberWeights(i);
      alone[i]!.model.getWeights().forEach((v, k) => assert.ok(maxAbsDiff(v, w[k]!) === 0, `member ${i} weight ${k} starts equal`));
      tf.dispose(w);
    }
    let worstLoss = 0;
    for (let s = 0; s < 50; s++) {
      const x = tf.randomNormal([M, batch, INPUT], 0, 1, "float32", 100 + s) as tf.Tensor3D;
      const y = labels(kind, [M, batch, 3], 500 + s);
      const losses = ens.step(x, y);
      alone.forEach((m, i) => {
        const xi = tf.tidy(() => tf.squeeze(tf.slice(x, [i, 0, 0], [1, batch, INPUT]), [0]));
        const yi = tf.tidy(() => tf.squeeze(tf.slice(y, [i, 0, 0], [1, batch, 3]), [0]));
        const cost = m.opt.minimize(() => lossOf(kind, m.model.apply(xi) as tf.Tensor, yi), true, m.vars)!;
        worstLoss = Math.max(worstLoss, Math.abs((cost.dataSync()[0] as number) - (losses[i] as number)));
        tf.dispose([xi, yi, cost]);
      });
      tf.dispose([x, y]);
    }
    assert.ok(worstLoss < 1e-4, `per-step losses agree (worst ${worstLoss})`);
    for (let i = 0; i < M; i++) {
      const w = ens.memberWeights(i);
      const a = alone[i]!.model.getWeights();
      a.forEach((v, k) => {
        const d = maxAbsDiff(v, w[k]!);
        assert.ok(d < 1e-4, `member ${i} weight ${k} after 50 steps differs by ${d}`);
      });
      // Training moved the weights, so the comparison is not trivially of the initial values.
      assert.ok(maxAbsDiff(a[a.length - 1]!, tf.zerosLike(a[a.length - 1]!)) > 1e-3, "biases moved");
      tf.dispose(w);
    }
    assert.equal(ens.stepCount, 50);
    ens.dispose();
    for (const m of alone) {
      m.model.dispose();
      m.opt.dispose();
    }
  });
}

test("explicit seeds: member i layer l starts from glorotUniform({ seed: seeds[i] + l }); sgd matches per-member tf.train.sgd", () => {
  const seeds = [11, 29, 4242];
  const ens = new VectorizedEnsemble({ members: 3, inputSize: INPUT, layers: LAYERS, seeds, optimizer: "sgd", learningRate: 0.05 });
  const x = tf.randomNormal([3, 10, INPUT], 0, 1, "float32", 3) as tf.Tensor3D;
  const y = labels("mse", [3, 10, 3], 4);
  for (let s = 0; s < 5; s++) ens.step(x, y);
  seeds.forEach((seed, i) => {
    const model = standalone(LAYERS.map((_, l) => seed + l));
    const opt = tf.train.sgd(0.05);
    const xi = tf.tidy(() => tf.squeeze(tf.slice(x, [i, 0, 0], [1, 10, INPUT]), [0]));
    const yi = tf.tidy(() => tf.squeeze(tf.slice(y, [i, 0, 0], [1, 10, 3]), [0]));
    for (let s = 0; s < 5; s++) opt.minimize(() => lossOf("mse", model.apply(xi) as tf.Tensor, yi), false, trainableVars(model));
    const w = ens.memberWeights(i);
    model.getWeights().forEach((v, k) => assert.ok(maxAbsDiff(v, w[k]!) < 1e-5, `member ${i} weight ${k}`));
    tf.dispose([...w, xi, yi]);
    model.dispose();
    opt.dispose();
  });
  tf.dispose([x, y]);
  ens.dispose();
});

test("toLayersModel(i) predicts what the ensemble's member i predicts", () => {
  const ens = new VectorizedEnsemble({ members: 3, inputSize: INPUT, layers: LAYERS, baseSeed: 3, loss: "softmaxCrossEntropy", learningRate: 0.02 });
  const x = tf.randomNormal([3, 12, INPUT], 0, 1, "float32", 8) as tf.Tensor3D;
  const y = labels("softmaxCrossEntropy", [3, 12, 3], 9);
  for (let s = 0; s < 10; s++) ens.step(x, y);
  const probe = tf.randomNormal([20, INPUT], 0, 1, "float32", 10) as tf.Tensor2D;
  const all = ens.predict(probe);
  assert.deepEqual(all.shape, [3, 20, 3]);
  for (let i = 0; i < 3; i++) {
    const model = ens.toLayersModel(i);
    const mine = model.predict(probe) as tf.Tensor;
    const fromEns = tf.tidy(() => tf.squeeze(tf.slice(all, [i, 0, 0], [1, 20, 3]), [0]));
    assert.ok(maxAbsDiff(mine, fromEns) < 1e-5, `member ${i}`);
    tf.dispose([mine, fromEns]);
    model.dispose();
  }
  tf.dispose([x, y, probe, all]);
  ens.dispose();
});

test("evaluate: members' losses and the loss of the averaged prediction, checked by hand for each loss", () => {
  for (const kind of ["mse", "softmaxCrossEntropy", "binaryCrossEntropy"] as const) {
    const ens = new VectorizedEnsemble({ members: 3, inputSize: INPUT, layers: LAYERS, baseSeed: 5, loss: kind });
    const x = tf.randomNormal([15, INPUT], 0, 1, "float32", 21) as tf.Tensor2D;
    const y3 = labels(kind, [1, 15, 3], 22);
    const y = tf.squeeze(y3, [0]) as tf.Tensor2D;
    const out = ens.predict(x).arraySync(); // [3][15][3]
    const yv = y.arraySync();
    const toSpace = (row: number[]): number[] => {
      if (kind === "mse") return row;
      if (kind === "binaryCrossEntropy") return row.map((z) => 1 / (1 + Math.exp(-z)));
      const m = Math.max(...row);
      const e = row.map((z) => Math.exp(z - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / s);
    };
    let expected = 0;
    for (let r = 0; r < 15; r++) {
      const mean = [0, 1, 2].map((c) => out.reduce((acc, member) => acc + (toSpace(member[r]!)[c] as number), 0) / 3);
      const clip = (p: number) => Math.min(Math.max(p, 1e-7), 1 - 1e-7);
      for (let c = 0; c < 3; c++) {
        const t = yv[r]![c]!;
        const p = mean[c]!;
        if (kind === "mse") expected += (p - t) ** 2 / 3;
        else if (kind === "softmaxCrossEntropy") expected += -t * Math.log(clip(p));
        else expected += -(t * Math.log(clip(p)) + (1 - t) * Math.log(1 - clip(p))) / 3;
      }
    }
    expected /= 15;
    const ev = ens.evaluate(x, y);
    assert.ok(Math.abs(ev.ensemble - expected) < 1e-5, `${kind}: ensemble loss ${ev.ensemble} vs ${expected}`);
    // Each member's loss equals the formula on its own output.
    ev.members.forEach((l, i) => {
      const own = tf.tidy(() => lossOf(kind, tf.tensor2d(out[i]!), y).dataSync()[0] as number);
      assert.ok(Math.abs(l - own) < 1e-5, `${kind}: member ${i} loss ${l} vs ${own}`);
    });
    const mean = ens.predictMean(x);
    assert.deepEqual(mean.shape, [15, 3]);
    tf.dispose([x, y3, y, mean]);
    ens.dispose();
  }
});

test("fitEnsemble: each member follows its own seeded shuffle of its own rows, and equals a standalone replay", () => {
  const M = 3;
  const rows = 20;
  const ens = new VectorizedEnsemble({ members: M, inputSize: INPUT, layers: LAYERS, baseSeed: 9, learningRate: 0.01 });
  const x = tf.randomNormal([M, rows, INPUT], 0, 1, "float32", 31) as tf.Tensor3D;
  const y = labels("mse", [M, rows, 3], 32);
  const seen: number[] = [];
  const history = fitEnsemble(ens, { x, y, epochs: 3, batchSize: 8, seed: 40, onEpochEnd: (r) => seen.push(r.epoch) });
  assert.deepEqual(seen, [0, 1, 2]);
  assert.equal(history.length, 3);
  assert.equal(ens.stepCount, 9); // 3 epochs x batches of 8, 8, 4
  const orders = memberOrders(M, rows, 3, 40);
  assert.notDeepEqual(orders[0]![0], orders[1]![0], "members shuffle differently");
  for (let i = 0; i < M; i++) {
    const model = standalone(LAYERS.map((_, l) => ensembleSeed(9, i, l)));
    const opt = tf.train.adam(0.01);
    const xi = tf.tidy(() => tf.squeeze(tf.slice(x, [i, 0, 0], [1, rows, INPUT]), [0]));
    const yi = tf.tidy(() => tf.squeeze(tf.slice(y, [i, 0, 0], [1, rows, 3]), [0]));
    let epochLoss = 0;
    for (let e = 0; e < 3; e++) {
      epochLoss = 0;
      const order = orders[i]![e]!;
      for (let start = 0; start < rows; start += 8) {
        const ids = tf.tensor1d(order.slice(start, start + 8), "int32");
        const xb = tf.gather(xi, ids);
        const yb = tf.gather(yi, ids);
        const cost = opt.minimize(() => lossOf("mse", model.apply(xb) as tf.Tensor, yb), true, trainableVars(model))!;
        epochLoss += (cost.dataSync()[0] as number) * ids.size;
        tf.dispose([ids, xb, yb, cost]);
      }
    }
    assert.ok(Math.abs(epochLoss / rows - history[2]!.loss[i]!) < 1e-4, `member ${i} last-epoch loss`);
    const w = ens.memberWeights(i);
    model.getWeights().forEach((v, k) => assert.ok(maxAbsDiff(v, w[k]!) < 1e-4, `member ${i} weight ${k}`));
    tf.dispose([...w, xi, yi]);
    model.dispose();
    opt.dispose();
  }
  // Shared rows ([rows, inputSize]) are accepted too.
  const x2 = tf.squeeze(tf.slice(x, [0, 0, 0], [1, rows, INPUT]), [0]) as tf.Tensor2D;
  const y2 = tf.squeeze(tf.slice(y, [0, 0, 0], [1, rows, 3]), [0]) as tf.Tensor2D;
  assert.equal(fitEnsemble(ens, { x: x2, y: y2, epochs: 1, batchSize: 32 }).length, 1);
  tf.dispose([x, y, x2, y2]);
  ens.dispose();
});

test("the tensor count stays flat across steps (step 10 vs step 200) and after dispose nothing is left", () => {
  const before = tf.memory().numTensors;
  const ens = new VectorizedEnsemble({ members: 8, inputSize: INPUT, layers: LAYERS, baseSeed: 2, loss: "binaryCrossEntropy" });
  const x = tf.randomNormal([8, 16, INPUT], 0, 1, "float32", 50) as tf.Tensor3D;
  const y = labels("binaryCrossEntropy", [8, 16, 3], 51);
  let at10 = 0;
  for (let s = 1; s <= 200; s++) {
    ens.step(x, y);
    if (s === 10) at10 = tf.memory().numTensors;
  }
  assert.equal(tf.memory().numTensors, at10);
  const x0 = tf.tidy(() => tf.squeeze(tf.slice(x, [0, 0, 0], [1, 16, INPUT]), [0])) as tf.Tensor2D;
  const y0 = tf.zeros([16, 3]) as tf.Tensor2D;
  const mean = ens.predictMean(x0);
  ens.evaluate(x0, y0);
  tf.dispose([x0, y0, mean, x, y]);
  ens.dispose();
  assert.equal(tf.memory().numTensors, before, "every tensor freed");
});

test("validation errors name the thing and the value", () => {
  const base = { inputSize: INPUT, layers: LAYERS };
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 0 }), /members must be an integer >= 1, but got 0/);
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 2.5 }), /members .* got 2\.5/);
  assert.throws(() => new VectorizedEnsemble({ members: 2, inputSize: INPUT, layers: [] }), /layers must list at least one layer/);
  assert.throws(() => new VectorizedEnsemble({ members: 2, inputSize: INPUT, layers: [{ units: 4, activation: "gelu" as "relu" }] }), /layers\[0\]\.activation .* got "gelu"/);
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 2, seeds: [1] }), /seeds must have one entry per member \(2\), but got 1/);
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 2, seeds: [1, 2], baseSeed: 3 }), /seeds or baseSeed, not both/);
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 2, loss: "hinge" as "mse" }), /loss must be one of .* got "hinge"/);
  assert.throws(() => new VectorizedEnsemble({ ...base, members: 2, learningRate: -1 }), /learningRate .* got -1/);

  const ens = new VectorizedEnsemble({ ...base, members: 3 });
  const x = tf.zeros([3, 4, INPUT]) as tf.Tensor3D;
  const badX = tf.zeros([2, 4, INPUT]) as tf.Tensor3D;
  const badY = tf.zeros([3, 5, 3]) as tf.Tensor3D;
  assert.throws(() => ens.step(badX, tf.zeros([2, 4, 3]) as tf.Tensor3D), /x must be \[3, batch, 5\] .* but got \[2, 4, 5\]/);
  assert.throws(() => ens.step(x, badY), /y must be \[3, 4, 3\] to match x \[3, 4, 5\], but got \[3, 5, 3\]/);
  assert.throws(() => ens.predict(tf.zeros([4, 7]) as tf.Tensor2D), /x must be \[rows, 5\] or \[3, rows, 5\], but got \[4, 7\]/);
  assert.throws(() => ens.toLayersModel(3), /member must be an integer in \[0, 2\], but got 3/);
  assert.throws(() => fitEnsemble(ens, { x, y: badY, epochs: 1, batchSize: 2 }), /fitEnsemble: y must be \[3, 4, 3\] to match x \[3, 4, 5\], but got \[3, 5, 3\]/);
  assert.throws(() => fitEnsemble(ens, { x, y: tf.zeros([3, 4, 3]) as tf.Tensor3D, epochs: 0, batchSize: 2 }), /epochs must be an integer >= 1, but got 0/);
  const nanY = tf.fill([3, 4, 3], NaN) as tf.Tensor3D;
  const w0 = ens.memberWeights(0);
  assert.throws(() => ens.step(x, nanY), /step 1: member 0's mse loss is NaN; no update was applied/);
  const w1 = ens.memberWeights(0);
  w0.forEach((v, k) => assert.equal(maxAbsDiff(v, w1[k]!), 0));
  assert.equal(ens.stepCount, 0);
  ens.dispose();
  assert.throws(() => ens.step(x, x), /disposed/);
  tf.dispose([x, badX, badY, nanY, ...w0, ...w1]);
});
