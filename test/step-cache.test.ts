import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { TableEmbedding } from "../src/layers/embedding.js";
import { cachedLookup, lookupCacheSize, withLookupCache } from "../src/layers/step-cache.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { AlternatingTrainer } from "../src/train/alternating.js";
import { trainable } from "../src/train/model.js";
import { binaryCrossEntropy } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const USERS = 20;
const ITEMS = 12;
const D = 4;
const B = 16;

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/**
 * bench W3 in small: a user and an item table shared by two models (flatten, concat, two dense
 * layers each; B also reads a context input), every weight from a fixed seed.
 */
function build() {
  const table = (rows: number, seed: number) => new TableEmbedding({ inputDim: rows, outputDim: D, embeddingsInitializer: tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed }) });
  const dense = (units: number, seed: number, activation?: "relu") =>
    tf.layers.dense({ units, activation, kernelInitializer: tf.initializers.glorotUniform({ seed }), biasInitializer: tf.initializers.randomNormal({ stddev: 0.1, seed: seed + 100 }) });
  const userT = table(USERS, 1);
  const itemT = table(ITEMS, 2);
  const flat = tf.layers.flatten();
  const embed = (u: tf.SymbolicTensor, i: tf.SymbolicTensor) => [flat.apply(userT.apply(u)) as tf.SymbolicTensor, flat.apply(itemT.apply(i)) as tf.SymbolicTensor];
  const uA = tf.input({ shape: [1], dtype: "int32" });
  const iA = tf.input({ shape: [1], dtype: "int32" });
  const catA = tf.layers.concatenate().apply(embed(uA, iA)) as tf.SymbolicTensor;
  const a = tf.model({ inputs: [uA, iA], outputs: dense(1, 4).apply(dense(8, 3, "relu").apply(catA)) as tf.SymbolicTensor });
  const uB = tf.input({ shape: [1], dtype: "int32" });
  const iB = tf.input({ shape: [1], dtype: "int32" });
  const cB = tf.input({ shape: [3] });
  const catB = tf.layers.concatenate().apply([...embed(uB, iB), cB]) as tf.SymbolicTensor;
  const b = tf.model({ inputs: [uB, iB, cB], outputs: dense(1, 6).apply(dense(8, 5, "relu").apply(catB)) as tf.SymbolicTensor });
  return { a, b, userT, itemT };
}

/** A batch with repeated ids (so scattered gradients add up), and binary labels. */
function batch() {
  return {
    user: tf.tensor2d(Array.from({ length: B }, (_, r) => [(r * 7) % 9]), [B, 1], "int32"),
    item: tf.tensor2d(Array.from({ length: B }, (_, r) => [(r * 5) % 6]), [B, 1], "int32"),
    ctx: tf.randomNormal([B, 3], 0, 1, "float32", 9),
    ya: tf.tensor2d(Array.from({ length: B }, (_, r) => [r % 2]), [B, 1]),
    yb: tf.tensor2d(Array.from({ length: B }, (_, r) => [(r >> 1) % 2]), [B, 1]),
  };
}

const route = (key: string, x: unknown): tf.Tensor[] => {
  const r = x as Record<string, tf.Tensor>;
  return key === "a" ? [r.user!, r.item!] : [r.user!, r.item!, r.ctx!];
};

test("a joint step looks each shared table up once and gives the parameters of the un-shared hand loop after 6 steps", async () => {
  const data = batch();
  const lib = build();
  const ref = build();
  const trainer = new JointTrainer({
    model: trainable({ a: lib.a, b: lib.b }, route),
    tasks: [{ name: "a", loss: "binaryCrossEntropy" }, { name: "b", loss: "binaryCrossEntropy", weight: 0.6 }],
    optimizer: tf.train.sgd(0.5),
  });
  // The reference: model.apply for each model (four lookups, no cache), tf.variableGrads, SGD.
  const refVars = [...new Map([...ref.a.trainableWeights, ...ref.b.trainableWeights].map((w) => [w.read().id, w.read() as tf.Variable])).values()];
  const refOpt = tf.train.sgd(0.5);
  const refLoss = (): tf.Scalar => {
    const pa = ref.a.apply([data.user, data.item], { training: true }) as tf.Tensor;
    const pb = ref.b.apply([data.user, data.item, data.ctx], { training: true }) as tf.Tensor;
    return tf.add(binaryCrossEntropy(data.ya, pa), tf.mul(binaryCrossEntropy(data.yb, pb), 0.6)) as tf.Scalar;
  };
  const refStep = () => {
    const { value, grads } = tf.variableGrads(refLoss, refVars);
    refOpt.applyGradients(grads);
    const v = value.dataSync()[0] as number;
    tf.dispose([value, ...Object.values(grads)]);
    return v;
  };
  const inputs = { user: data.user, item: data.item, ctx: data.ctx };
  const labels = { a: data.ya, b: data.yb };
  // tf.profile hands back one shared record, so each step's kernels are counted before the next profile.
  const kernels = async (f: () => void) => {
    const names = (await tf.profile(f)).kernels.map((k) => k.name);
    return { gathers: names.filter((n) => n === "GatherV2").length, scatters: names.filter((n) => n === "ScatterNd").length };
  };
  const libK = await kernels(() => void trainer.step(inputs, labels));
  const refK = await kernels(() => void refStep());
  // One gather forward and one scatter backward per table, against two each without the cache.
  assert.deepEqual(libK, { gathers: 2, scatters: 2 });
  assert.deepEqual(refK, { gathers: 4, scatters: 4 });
  for (let s = 2; s <= 6; s++) {
    const total = trainer.step(inputs, labels).total;
    const want = refStep();
    assert.ok(Math.abs(total - want) <= 1e-5 * Math.max(1, Math.abs(want)), `step ${s}: total ${total} vs ${want}`);
  }
  const got = [...lib.a.getWeights(), ...lib.b.getWeights()];
  const want = [...ref.a.getWeights(), ...ref.b.getWeights()];
  got.forEach((t, i) => assert.ok(maxDiff(t, want[i] as tf.Tensor) <= 1e-6, `weight ${i} differs by ${maxDiff(t, want[i] as tf.Tensor)}`));
  trainer.dispose();
  refOpt.dispose();
  tf.dispose(Object.values(data));
});

test("nothing is cached outside a step: tensors are flat across steps, predict matches a hand lookup", () => {
  const data = batch();
  const { a, b, userT, itemT } = build();
  const before = userT.getWeights()[0]!.clone();
  const trainer = new JointTrainer({ model: trainable({ a, b }, route), tasks: [{ name: "a", loss: "binaryCrossEntropy" }, { name: "b", loss: "binaryCrossEntropy" }], optimizer: tf.train.adam(0.05) });
  const inputs = { user: data.user, item: data.item, ctx: data.ctx };
  const labels = { a: data.ya, b: data.yb };
  for (let i = 0; i < 3; i++) trainer.step(inputs, labels);
  const at3 = tf.memory().numTensors;
  for (let i = 0; i < 30; i++) trainer.step(inputs, labels);
  assert.equal(tf.memory().numTensors, at3, "tensors leaked across steps");
  assert.equal(lookupCacheSize(), undefined, "a cache is left open after the steps");
  assert.ok(maxDiff(userT.getWeights()[0]!, before) > 1e-3, "the user table was trained");

  // predict after training: the rows of the current tables by id, concatenated, through A's layers.
  const [k1, b1, k2, b2] = a.layers.filter((l) => l.getClassName() === "Dense").flatMap((l) => l.getWeights());
  const hand = tf.tidy(() => {
    const rows = tf.concat([tf.gather(userT.getWeights()[0]!, tf.reshape(data.user, [-1])), tf.gather(itemT.getWeights()[0]!, tf.reshape(data.item, [-1]))], 1);
    return tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(rows, k1 as tf.Tensor2D), b1!)), k2 as tf.Tensor2D), b2!);
  });
  const pred = a.predict([data.user, data.item]) as tf.Tensor;
  assert.ok(maxDiff(pred, hand) <= 1e-6, `predict differs by ${maxDiff(pred, hand)}`);
  // Inside an open cache but outside its gradient pass (another depth), lookups are not cached.
  withLookupCache(() => {
    const again = a.predict([data.user, data.item]) as tf.Tensor;
    assert.equal(lookupCacheSize(), 0);
    assert.ok(maxDiff(again, hand) === 0);
    again.dispose();
  });
  trainer.dispose();
  tf.dispose([pred, hand, before, ...Object.values(data)]);
});

test("cache keys: same table and ids tensor only; a table assigned mid-pass is looked up again; a nested tape is not served", () => {
  const emb = new TableEmbedding({ inputDim: 5, outputDim: 2, embeddingsInitializer: tf.initializers.randomUniform({ minval: -1, maxval: 1, seed: 3 }) });
  emb.apply(tf.input({ shape: [1], dtype: "int32" }));
  const tableVar = emb.trainableWeights[0]!.read() as tf.Variable;
  const ids = tf.tensor1d([0, 3, 3, 1], "int32");
  const sameValues = tf.tensor1d([0, 3, 3, 1], "int32");
  const start = tf.memory().numTensors;
  let computed = 0;
  const look = (t: tf.Tensor, i: tf.Tensor) => cachedLookup(t, i, () => (computed++, tf.gather(t, i)));
  const { value, grads } = withLookupCache(() =>
    tf.variableGrads(() => {
      const r1 = look(tableVar, ids);
      const r2 = look(tableVar, ids);
      assert.equal(r1, r2, "an identical lookup is served from the cache");
      look(tableVar, sameValues);
      assert.equal(computed, 2, "another ids tensor (even with equal values) is another lookup");
      // A nested gradient pass is its own tape: not served, not stored.
      const inner = tf.variableGrads(() => tf.sum(emb.lookupRows(ids)) as tf.Scalar, [tableVar]);
      assert.equal(lookupCacheSize(), 2);
      // d/dE sum(E[ids]) counts each id's uses: row 3 twice.
      assert.deepEqual(Array.from(tf.sum(inner.grads[tableVar.name]!, 1).dataSync()), [2, 2, 0, 4, 0]);
      tf.dispose([inner.value, ...Object.values(inner.grads)]);
      return tf.add(tf.sum(r1), tf.sum(r2)) as tf.Scalar;
    }, [tableVar]),
  );
  // Both consumers' gradients are summed on the shared rows: each id use counts twice.
  assert.deepEqual(tf.tidy(() => Array.from(tf.sum(grads[tableVar.name]!, 1).dataSync())), [4, 4, 0, 8, 0]);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(lookupCacheSize(), undefined);
  assert.equal(tf.memory().numTensors, start, "the cached lookups were freed with the pass");

  // A table that changes within a pass is looked up again (and the stale lookup is freed at the end).
  tf.tidy(() => {
    const r = withLookupCache(() =>
      tf.variableGrads(() => {
        const r1 = look(tableVar, ids);
        tableVar.assign(tf.mul(tableVar, 2));
        const r2 = look(tableVar, ids);
        assert.notEqual(r1, r2);
        assert.ok(maxDiff(r2, tf.mul(r1, 2)) < 1e-6);
        return tf.sum(r2) as tf.Scalar;
      }, [tableVar]),
    );
    tf.dispose([r.value, ...Object.values(r.grads)]);
  });
  assert.equal(tf.memory().numTensors, start);

  // An error inside the pass closes the cache and frees what it held. (Not checked by tensor count:
  // tfjs itself leaves the tensors its tape saved for a backward pass that never ran.)
  let held: tf.Tensor | undefined;
  const boom = (): tf.Scalar => {
    held = look(tableVar, ids);
    throw new Error("boom");
  };
  assert.throws(() => withLookupCache(() => tf.variableGrads(boom, [tableVar])), /boom/);
  assert.equal(lookupCacheSize(), undefined);
  assert.ok(held?.isDisposed, "the cached lookup was freed");
  tf.dispose([ids, sameValues]);
  emb.dispose();
});

test("alternating turns over models sharing a table: each turn's update equals its hand tf.variableGrads step", () => {
  const data = batch();
  const lib = build();
  const ref = build();
  const varsOf = (m: tf.LayersModel) => m.trainableWeights.map((w) => w.read() as tf.Variable);
  // Turn "a" trains A's layers and both tables; turn "b" trains B's own dense layers.
  const bOwn = (m: tf.LayersModel) => m.layers.filter((l) => l.getClassName() === "Dense").flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  const lossOf = (m: { a: tf.LayersModel; b: tf.LayersModel }) => (o: Record<string, tf.Tensor>) => tf.add(binaryCrossEntropy(data.ya, o.a!), binaryCrossEntropy(data.yb, o.b!)) as tf.Scalar;
  const forwardOf = (m: { a: tf.LayersModel; b: tf.LayersModel }) => () => ({
    a: m.a.apply([data.user, data.item], { training: true }) as tf.Tensor,
    b: m.b.apply([data.user, data.item, data.ctx], { training: true }) as tf.Tensor,
  });
  const trainer = new AlternatingTrainer<null>({
    forward: forwardOf(lib),
    turns: [
      { name: "a", variables: varsOf(lib.a), optimizer: tf.train.sgd(0.3), loss: lossOf(lib) },
      { name: "b", variables: bOwn(lib.b), optimizer: tf.train.sgd(0.3), loss: lossOf(lib) },
    ],
  });
  const optA = tf.train.sgd(0.3);
  const optB = tf.train.sgd(0.3);
  const refTurn = (vars: tf.Variable[], opt: tf.Optimizer) => {
    const { value, grads } = tf.variableGrads(() => lossOf(ref)(forwardOf(ref)()), vars);
    opt.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
  };
  for (let s = 0; s < 4; s++) {
    trainer.step(null);
    refTurn(varsOf(ref.a), optA);
    trainer.step(null);
    refTurn(bOwn(ref.b), optB);
  }
  const got = [...lib.a.getWeights(), ...lib.b.getWeights()];
  const want = [...ref.a.getWeights(), ...ref.b.getWeights()];
  got.forEach((t, i) => assert.ok(maxDiff(t, want[i] as tf.Tensor) <= 1e-6, `weight ${i} differs by ${maxDiff(t, want[i] as tf.Tensor)}`));
  tf.dispose(Object.values(data));
});
