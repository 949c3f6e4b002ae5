import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { directForward } from "../src/train/direct-forward.js";
import { trainable } from "../src/train/model.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { TableEmbedding } from "../src/layers/embedding.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
const binit = (s: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: s });

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/** Outputs and the gradients of every trainable variable equal model.apply's, to 1e-6. */
function checkSame(model: tf.LayersModel, inputs: tf.Tensor | tf.Tensor[]): void {
  const direct = directForward(model);
  assert.ok(direct, `directForward refused ${model.name}`);
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    const ref = model.apply(inputs, { training: true }) as tf.Tensor | tf.Tensor[];
    const refs = Array.isArray(ref) ? ref : [ref];
    const outs = direct(inputs, true);
    assert.equal(outs.length, refs.length);
    outs.forEach((o, i) => {
      assert.deepEqual(o.shape, (refs[i] as tf.Tensor).shape);
      assert.ok(maxDiff(o, refs[i] as tf.Tensor) <= 1e-6, `output ${i} differs by ${maxDiff(o, refs[i] as tf.Tensor)}`);
    });
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    // A loss weighting each output differently, so every variable gets a generic gradient.
    const lossOf = (xs: tf.Tensor[]) => () =>
      xs.map((x, i) => tf.sum(tf.mul(tf.square(x), i + 1)) as tf.Scalar).reduce((a, b) => tf.add(a, b));
    const g1 = tf.variableGrads(() => {
      const r = model.apply(inputs, { training: true }) as tf.Tensor | tf.Tensor[];
      return lossOf(Array.isArray(r) ? r : [r])();
    }, vars);
    const g2 = tf.variableGrads(() => lossOf(direct(inputs, true))(), vars);
    assert.ok(Math.abs((g1.value.dataSync()[0] as number) - (g2.value.dataSync()[0] as number)) <= 1e-4 * Math.max(1, Math.abs(g1.value.dataSync()[0] as number)));
    for (const v of vars) {
      const a = g1.grads[v.name];
      const b = g2.grads[v.name];
      assert.ok(a && b, `no gradient for ${v.name}`);
      const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0] as number));
      assert.ok(maxDiff(a, b) <= 1e-6 * scale, `gradient of ${v.name} differs by ${maxDiff(a, b)}`);
    }
  });
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
}

test("direct forward: Sequential MLP with every supported activation", () => {
  const acts = ["linear", "relu", "relu6", "elu", "sigmoid", "tanh", "softmax", "softplus", "selu", "swish"] as const;
  const x = tf.randomNormal([7, 5], 0, 2, "float32", 3);
  for (const [i, act] of acts.entries()) {
    const m = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [5], units: 6, activation: act, kernelInitializer: init(i), biasInitializer: binit(i) }),
        tf.layers.dense({ units: 4, activation: act, useBias: i % 2 === 0, kernelInitializer: init(i + 50), biasInitializer: binit(i + 50) }),
        tf.layers.activation({ activation: act }),
        tf.layers.dense({ units: 3, kernelInitializer: init(i + 100) }),
      ],
    });
    checkSame(m, x);
    m.dispose();
  }
  x.dispose();
});

test("direct forward: functional two-head model and concat of two inputs", () => {
  const a = tf.input({ shape: [4] });
  const b = tf.input({ shape: [3] });
  const ha = tf.layers.dense({ units: 5, activation: "relu", kernelInitializer: init(1), biasInitializer: binit(1) }).apply(a) as tf.SymbolicTensor;
  const cat = tf.layers.concatenate().apply([ha, b]) as tf.SymbolicTensor;
  const shared = tf.layers.dense({ units: 6, activation: "elu", kernelInitializer: init(2), biasInitializer: binit(2) });
  const h = shared.apply(cat) as tf.SymbolicTensor;
  const out1 = tf.layers.dense({ units: 2, activation: "softmax", kernelInitializer: init(3) }).apply(h) as tf.SymbolicTensor;
  const out2 = tf.layers.dense({ units: 1, kernelInitializer: init(4), biasInitializer: binit(4) }).apply(tf.layers.concatenate({ axis: 1 }).apply([h, cat]) as tf.SymbolicTensor) as tf.SymbolicTensor;
  const model = tf.model({ inputs: [a, b], outputs: [out1, out2] });
  const xa = tf.randomNormal([9, 4], 0, 1, "float32", 5);
  const xb = tf.randomNormal([9, 3], 0, 1, "float32", 6);
  checkSame(model, [xa, xb]);

  // A layer applied twice in the same model (weights shared between two paths).
  const i2 = tf.input({ shape: [6] });
  const d = tf.layers.dense({ units: 6, activation: "sigmoid", kernelInitializer: init(7), biasInitializer: binit(7) });
  const twice = d.apply(d.apply(i2)) as tf.SymbolicTensor;
  const m2 = tf.model({ inputs: i2, outputs: [twice, tf.layers.activation({ activation: "relu" }).apply(twice) as tf.SymbolicTensor] });
  const x2 = tf.randomNormal([4, 6], 0, 1, "float32", 8);
  checkSame(m2, x2);
  tf.dispose([xa, xb, x2]);
  model.dispose();
  m2.dispose();
});

test("direct forward: refuses models it cannot reproduce", () => {
  const seq = (layers: tf.layers.Layer[]) => tf.sequential({ layers });
  const dropout = seq([tf.layers.dense({ inputShape: [4], units: 3 }), tf.layers.dropout({ rate: 0.5 })]);
  const bn = seq([tf.layers.dense({ inputShape: [4], units: 3 }), tf.layers.batchNormalization()]);
  const emb = seq([tf.layers.embedding({ inputDim: 10, outputDim: 3, inputLength: 2 }), tf.layers.flatten(), tf.layers.dense({ units: 1 })]);
  class Scale extends tf.layers.Layer {
    static className = "Scale";
    override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
      return tf.mul(Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs, 2);
    }
  }
  const custom = seq([tf.layers.dense({ inputShape: [4], units: 3 }), new Scale({})]);
  // A Dense subclass that does not register its own class name may change call(): refused too.
  const DenseClass = Object.getPrototypeOf(tf.layers.dense({ units: 1 })).constructor as new (args: { units: number; inputShape?: number[] }) => tf.layers.Layer;
  class MyDense extends DenseClass {}
  const sub = seq([new MyDense({ inputShape: [4], units: 3 })]);
  // Dense on a rank-3 input (layers reshape it; we do not).
  const rank3 = seq([tf.layers.dense({ inputShape: [2, 4], units: 3 })]);
  for (const m of [dropout, bn, emb, custom, sub, rank3]) {
    assert.equal(directForward(m), undefined, `${m.layers.map((l) => l.getClassName()).join(",")} should be refused`);
    m.dispose();
  }
});

test("direct forward: TableEmbedding and Flatten, with the lookup's reshape skipped where it can be", async () => {
  const table = (rows: number, seed: number) => new TableEmbedding({ inputDim: rows, outputDim: 3, embeddingsInitializer: tf.initializers.randomUniform({ minval: -1, maxval: 1, seed }) });
  const user = table(9, 41);
  const item = table(7, 42);
  const flat = tf.layers.flatten();
  // One id per row: Flatten(lookup) is the looked-up rows themselves.
  const u = tf.input({ shape: [1], dtype: "int32" });
  const i = tf.input({ shape: [1], dtype: "int32" });
  const c = tf.input({ shape: [2] });
  const cat = tf.layers.concatenate().apply([flat.apply(user.apply(u)) as tf.SymbolicTensor, flat.apply(item.apply(i)) as tf.SymbolicTensor, c]) as tf.SymbolicTensor;
  const one = tf.model({ inputs: [u, i, c], outputs: tf.layers.dense({ units: 2, activation: "relu", kernelInitializer: init(43), biasInitializer: binit(43) }).apply(cat) as tf.SymbolicTensor });
  // Three ids per row (Flatten reshapes [b·3, D] rows to [b, 3·D]), and a lookup read by two layers
  // (the Flatten and a second Flatten: the lookup's own output is computed, not skipped).
  const ids3 = tf.input({ shape: [3], dtype: "int32" });
  const e3 = user.apply(ids3) as tf.SymbolicTensor;
  const both = tf.layers.concatenate().apply([tf.layers.flatten().apply(e3) as tf.SymbolicTensor, tf.layers.flatten().apply(e3) as tf.SymbolicTensor]) as tf.SymbolicTensor;
  const three = tf.model({ inputs: ids3, outputs: [tf.layers.dense({ units: 1, kernelInitializer: init(44) }).apply(both) as tf.SymbolicTensor, e3] });
  const ids1 = tf.tensor2d([[0], [4], [4], [8], [2]], [5, 1], "int32");
  const itemIds = tf.tensor2d([[6], [1], [1], [0], [3]], [5, 1], "int32");
  const ctx = tf.randomNormal([5, 2], 0, 1, "float32", 45);
  const idsMany = tf.tensor2d([[0, 1, 1], [8, 8, 2], [3, 0, 5], [7, 7, 7], [4, 2, 0]], [5, 3], "int32");
  checkSame(one, [ids1, itemIds, ctx]);
  checkSame(three, idsMany);
  // The one-id model's lookups are not reshaped to [5, 1, 3] (and flattened back).
  const direct = directForward(one)!;
  const info = await tf.profile(() => void tf.tidy(() => direct([ids1, itemIds, ctx], true)));
  const rank3 = info.kernels.filter((k) => k.name === "Reshape" && k.outputShapes.some((s) => s?.join() === "5,1,3"));
  assert.equal(rank3.length, 0, "a lookup was reshaped to rank 3");
  assert.equal(info.kernels.filter((k) => k.name === "GatherV2").length, 2);
  // Flatten with channels first is not reproduced.
  const cf = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2, 3], units: 2 }), tf.layers.flatten({ dataFormat: "channelsFirst" })] });
  assert.equal(directForward(cf), undefined);
  tf.dispose([ids1, itemIds, ctx, idsMany]);
  one.dispose();
  three.dispose();
  cf.dispose();
});

test("trainable() of several models computes each model's forward pass directly", () => {
  const mk = (seed: number) => tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, kernelInitializer: init(seed) })] });
  const a = mk(51);
  const b = mk(52);
  let applied = 0;
  for (const m of [a, b]) {
    const orig = m.apply.bind(m);
    m.apply = ((...args: Parameters<typeof m.apply>) => (applied++, orig(...args))) as typeof m.apply;
  }
  const x = tf.randomNormal([4, 3], 0, 1, "float32", 53);
  const out = (t: ReturnType<typeof trainable>) => tf.tidy(() => Object.fromEntries(Object.entries(t.forward(x, true)).map(([k, v]) => [k, v.arraySync()])));
  const direct = out(trainable({ a, b }));
  assert.equal(applied, 0);
  const viaApply = out(trainable({ a, b }, undefined, { direct: false }));
  assert.equal(applied, 2);
  assert.deepEqual(direct, viaApply);
  x.dispose();
  a.dispose();
  b.dispose();
});

test("trainable(): direct forward by default, off with { direct: false } or JOINTLY_DIRECT_FORWARD=0", () => {
  const m = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, activation: "relu", kernelInitializer: init(9) })] });
  const x = tf.randomNormal([5, 3], 0, 1, "float32", 10);
  let applied = 0;
  const orig = m.apply.bind(m);
  m.apply = ((...args: Parameters<typeof m.apply>) => {
    applied++;
    return orig(...args);
  }) as typeof m.apply;
  const run = (t: ReturnType<typeof trainable>) => tf.tidy(() => t.forward(x, false)[m.outputNames[0] as string]?.arraySync());
  const prev = process.env.JOINTLY_DIRECT_FORWARD;
  try {
    delete process.env.JOINTLY_DIRECT_FORWARD;
    const direct = run(trainable(m));
    assert.equal(applied, 0);
    const viaApply = run(trainable(m, undefined, { direct: false }));
    assert.equal(applied, 1);
    process.env.JOINTLY_DIRECT_FORWARD = "0";
    run(trainable(m));
    assert.equal(applied, 2);
    run(trainable(m, undefined, { direct: true }));
    assert.equal(applied, 2);
    assert.deepEqual(direct, viaApply);
  } finally {
    if (prev === undefined) delete process.env.JOINTLY_DIRECT_FORWARD;
    else process.env.JOINTLY_DIRECT_FORWARD = prev;
  }
  x.dispose();
  m.dispose();
});

test("direct forward: JointTrainer steps give the same parameters as model.apply, without leaks", () => {
  const build = () => {
    const input = tf.input({ shape: [6] });
    const h = tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(21), biasInitializer: binit(21) }).apply(input) as tf.SymbolicTensor;
    const h2 = tf.layers.dense({ units: 8, activation: "tanh", kernelInitializer: init(22), biasInitializer: binit(22) }).apply(h) as tf.SymbolicTensor;
    const a = tf.layers.dense({ units: 3, name: "a", kernelInitializer: init(23) }).apply(h2) as tf.SymbolicTensor;
    const b = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(24) }).apply(h2) as tf.SymbolicTensor;
    return tf.model({ inputs: input, outputs: [a, b] });
  };
  const x = tf.randomNormal([16, 6], 0, 1, "float32", 30);
  const y = { a: tf.oneHot(tf.randomUniform([16], 0, 3, "int32", 31) as tf.Tensor1D, 3), b: tf.randomNormal([16, 1], 0, 1, "float32", 32) };
  const run = (direct: boolean) => {
    const model = build();
    const trainer = new JointTrainer({
      model: trainable(model, undefined, { direct }),
      tasks: [{ name: "a", loss: "softmaxCrossEntropy", weight: 0.7 }, { name: "b", loss: "mse", weight: 0.3 }],
      optimizer: tf.train.adam(0.01),
    });
    for (let i = 0; i < 5; i++) trainer.step(x, y);
    const at5 = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) trainer.step(x, y);
    assert.equal(tf.memory().numTensors, at5, "tensors leaked across steps");
    const w = model.getWeights().map((t) => t.clone());
    trainer.dispose();
    model.dispose();
    return w;
  };
  const on = run(true);
  const off = run(false);
  on.forEach((t, i) => assert.ok(maxDiff(t, off[i] as tf.Tensor) <= 1e-6, `weight ${i} differs by ${maxDiff(t, off[i] as tf.Tensor)}`));
  tf.dispose([...on, ...off, x, y.a, y.b]);
});
