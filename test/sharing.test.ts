import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { sharedEmbedding, sharedVariablesReport } from "../src/layers/sharing.js";
import { TableEmbedding } from "../src/layers/embedding.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { mse } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const glorot = (seed: number) => tf.initializers.glorotUniform({ seed });

/** A: one user id -> embedding -> head; B: three ids -> the same embedding -> mean -> head. */
function recModels() {
  const emb = sharedEmbedding({ inputDim: 6, outputDim: 4, name: "user_embedding", seed: 7 });
  const idsA = tf.input({ shape: [1], name: "ids_a" });
  const idsB = tf.input({ shape: [3], name: "ids_b" });
  const ea = tf.layers.flatten().apply(emb.apply(idsA)) as tf.SymbolicTensor; // [batch, 4]
  const eb = tf.layers.globalAveragePooling1d().apply(emb.apply(idsB)) as tf.SymbolicTensor; // [batch, 4]
  const a = tf.model({ inputs: idsA, outputs: tf.layers.dense({ units: 1, name: "head_a", kernelInitializer: glorot(1) }).apply(ea) as tf.SymbolicTensor, name: "A" });
  const b = tf.model({ inputs: idsB, outputs: tf.layers.dense({ units: 1, name: "head_b", kernelInitializer: glorot(2) }).apply(eb) as tf.SymbolicTensor, name: "B" });
  return { emb, a, b };
}

test("an embedding applied to [batch,1] ids in A and [batch,3] ids in B: one table, reported as shared", () => {
  const { emb, a, b } = recModels();
  assert.equal(emb.weights.length, 1);
  const report = sharedVariablesReport({ a, b });
  const table = report.find((r) => r.variable === "user_embedding/embeddings")!;
  assert.deepEqual({ models: table.models, shared: table.shared, shape: table.shape }, { models: ["a", "b"], shared: true, shape: [6, 4] });
  assert.equal(table.id, (emb.weights[0]!.read() as tf.Variable).id);
  assert.deepEqual(report.filter((r) => r.variable.startsWith("head_a")).map((r) => r.models), [["a"], ["a"]]);
  assert.equal(report.filter((r) => r.shared).length, 1);
  // two tables with the same name are NOT shared: the report goes by variable id
  const other = sharedEmbedding({ inputDim: 6, outputDim: 4, name: "user_embedding", seed: 7 });
  const i = tf.input({ shape: [1] });
  const c = tf.model({ inputs: i, outputs: other.apply(i) as tf.SymbolicTensor });
  const clash = sharedVariablesReport({ a, c }).filter((r) => r.variable.startsWith("user_embedding/embeddings"));
  assert.deepEqual(clash.map((r) => [r.models, r.shared]), [[["a"], false], [["c"], false]]);
  const ya = a.predict(tf.tensor2d([[2]])) as tf.Tensor;
  const yb = b.predict(tf.tensor2d([[2, 2, 2]])) as tf.Tensor;
  assert.deepEqual([ya.shape, yb.shape], [[1, 1], [1, 1]]);
});

test("a Dense layer on [batch,8] in one model and [batch,5,8] in another uses one kernel", () => {
  const dense = tf.layers.dense({ units: 2, name: "shared_dense", kernelInitializer: glorot(4), biasInitializer: "ones" });
  const i1 = tf.input({ shape: [8] });
  const i2 = tf.input({ shape: [5, 8] });
  const m1 = tf.model({ inputs: i1, outputs: dense.apply(i1) as tf.SymbolicTensor });
  const m2 = tf.model({ inputs: i2, outputs: dense.apply(i2) as tf.SymbolicTensor });
  const x = tf.randomNormal([3, 5, 8], 0, 1, "float32", 5);
  const y2 = m2.predict(x) as tf.Tensor;
  assert.deepEqual(y2.shape, [3, 5, 2]);
  // the row x[:, 2, :] through m1 equals slice 2 of m2's output
  const y1 = m1.predict(tf.reshape(tf.slice(x, [0, 2, 0], [3, 1, 8]), [3, 8])) as tf.Tensor;
  const want = tf.reshape(tf.slice(y2, [0, 2, 0], [3, 1, 2]), [3, 2]);
  assert.ok(tf.max(tf.abs(tf.sub(y1, want))).dataSync()[0]! < 1e-6);
  const report = sharedVariablesReport({ m1, m2 });
  assert.deepEqual(report.map((r) => [r.variable, r.models.join("+")]), [["shared_dense/kernel", "m1+m2"], ["shared_dense/bias", "m1+m2"]]);
});

test("a joint step adds both models' gradients into the shared table once (checked by hand)", () => {
  const { emb, a, b } = recModels();
  const idsA = tf.tensor2d([[0], [2], [5], [2]]);
  const idsB = tf.tensor2d([[1, 2, 3], [2, 2, 0], [5, 4, 4], [0, 1, 2]]);
  const ya = tf.tensor2d([[1], [0], [-1], [0.5]]);
  const yb = tf.tensor2d([[0.2], [1], [0], [-0.3]]);
  const lr = 0.5;
  const table = emb.weights[0]!.read() as tf.Variable;
  const [ka, ba] = a.getLayer("head_a").getWeights();
  const [kb, bb] = b.getLayer("head_b").getWeights();
  const before = table.arraySync() as number[][];
  // The summed loss written out with raw ops: gather rows of E, mean for B, matmul heads.
  const gE = tf.tidy(() => {
    const f = (E: tf.Tensor) => {
      // rows picked by one-hot products (not gather: an independent formulation of the lookup)
      const pick = (ids: tf.Tensor) => tf.matMul(tf.oneHot(tf.cast(tf.reshape(ids, [-1]), "int32"), 6), E as tf.Tensor2D);
      const fa = pick(idsA);
      const fb = tf.mean(tf.reshape(pick(idsB), [4, 3, 4]), 1);
      const la = mse(ya, tf.add(tf.matMul(fa, ka as tf.Tensor2D), ba!));
      const lb = mse(yb, tf.add(tf.matMul(fb as tf.Tensor2D, kb as tf.Tensor2D), bb!));
      return tf.add(la, lb) as tf.Scalar;
    };
    return tf.grad(f)(tf.clone(table)).arraySync() as number[][];
  });
  const trainer = new JointTrainer({
    model: { a, b },
    tasks: [{ name: "a", loss: "mse" }, { name: "b", loss: "mse" }],
    optimizer: tf.train.sgd(lr),
  });
  assert.equal(trainer.variables().filter((v) => v.id === table.id).length, 1, "the table is one variable of the trainer");
  trainer.step({ ids_a: idsA, ids_b: idsB }, { a: ya, b: yb });
  const after = table.arraySync() as number[][];
  let touched = 0;
  after.forEach((row, i) =>
    row.forEach((v, j) => {
      const want = before[i]![j]! - lr * gE[i]![j]!;
      assert.ok(Math.abs(v - want) < 1e-6, `E[${i}][${j}] ${v} vs ${want}`);
      if (Math.abs(gE[i]![j]!) > 1e-6) touched++;
    }),
  );
  assert.ok(touched > 10, "the hand gradient is not trivially zero");
  // row 2 is used by both models: its update is the sum of two non-zero contributions
  assert.ok(Math.abs(after[2]![0]! - before[2]![0]!) > 1e-4);
});

test("TableEmbedding: same values as tf.layers.embedding, and a gradient that sums repeated ids (on wasm too)", () => {
  const init = tf.initializers.randomUniform({ minval: -1, maxval: 1, seed: 3 });
  const ours = new TableEmbedding({ inputDim: 5, outputDim: 2, embeddingsInitializer: init });
  const ids = tf.tensor2d([[1, 1, 4], [0, 1, 3]]);
  const y = ours.apply(ids) as tf.Tensor;
  assert.deepEqual(y.shape, [2, 3, 2]);
  const table = ours.getWeights()[0]!;
  const ref = tf.layers.embedding({ inputDim: 5, outputDim: 2, weights: [table] });
  assert.deepEqual(y.arraySync(), (ref.apply(ids) as tf.Tensor).arraySync());
  // d/dE of sum(w ⊙ E[ids]) = for each row r, the sum of w over the positions holding id r
  const w = tf.tensor3d([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]]);
  const v = ours.trainableWeights[0]!.read() as tf.Variable;
  const { grads } = tf.variableGrads(() => tf.sum(tf.mul(w, ours.apply(ids) as tf.Tensor)) as tf.Scalar, [v]);
  assert.deepEqual(grads[v.name]!.arraySync(), [[7, 8], [1 + 3 + 9, 2 + 4 + 10], [0, 0], [11, 12], [5, 6]]);
});

test("bad options are errors naming the value", () => {
  assert.throws(() => new TableEmbedding({ inputDim: 2, outputDim: -1 }), /TableEmbedding: outputDim must be a positive integer, but got -1/);
  assert.throws(() => sharedEmbedding({ inputDim: 0, outputDim: 4, name: "e" }), /sharedEmbedding: inputDim must be a positive integer, but got 0/);
  assert.throws(() => sharedEmbedding({ inputDim: 3, outputDim: 2.5, name: "e" }), /outputDim must be a positive integer, but got 2.5/);
  assert.throws(() => sharedEmbedding({ inputDim: 3, outputDim: 2, name: "1bad name" }), /the name must start with a letter .* but got "1bad name"/);
  assert.throws(() => sharedEmbedding({ inputDim: 3, outputDim: 2, name: "e", seed: 0.5 }), /seed must be an integer, but got 0.5/);
  assert.throws(() => sharedVariablesReport({}), /sharedVariablesReport: no models given/);
  assert.throws(() => sharedVariablesReport({ x: {} as tf.LayersModel }), /"x" is not a tf.LayersModel/);
});
