/**
 * Per-task passes (perTaskVariableGrads, GradNorm's norms) compute the layers upstream of the
 * differentiated variables once for all tasks (reuseUpstream in direct-forward.ts): same gradients,
 * losses and GradNorm weights as computing everything in every pass, fewer kernels, no leaks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { trainable, type Trainable } from "../src/train/model.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { perTaskVariableGrads } from "../src/train/task-gradients.js";
import { reuseUpstream, reusedUpstreamCount } from "../src/train/direct-forward.js";
import { variableGradsShared } from "../src/layers/step-cache.js";
import { mse } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
const binit = (s: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.3, seed: s });

/** A W5-like model: a relu trunk of `depth` layers and three regression heads. */
function trunkModel(seed: number, depth = 2, act: "relu" | "tanh" = "relu") {
  const input = tf.input({ shape: [6] });
  const trunk = Array.from({ length: depth }, (_, i) => tf.layers.dense({ units: 10, activation: act, kernelInitializer: init(seed + i), biasInitializer: binit(seed + i) }));
  let h: tf.SymbolicTensor = input;
  for (const l of trunk) h = l.apply(h) as tf.SymbolicTensor;
  const heads = [0, 1, 2].map((i) => tf.layers.dense({ units: 1, name: `y${i}_${seed}`, kernelInitializer: init(seed + 10 + i), biasInitializer: binit(seed + 10 + i) }));
  const model = tf.model({ inputs: input, outputs: heads.map((l) => l.apply(h) as tf.SymbolicTensor) });
  const kernel = (i: number) => (trunk[i] as tf.layers.Layer).trainableWeights[0]!.read() as tf.Variable;
  return { model, kernel };
}

const x = tf.randomNormal([16, 6], 0, 1, "float32", 1);
const ys = [2, 3, 4].map((s) => tf.randomNormal([16, 1], 0, 1, "float32", s));

/** Task i's loss from its own forward pass of `t`. */
const lossOf = (t: Trainable) => (i: number): tf.Scalar => mse(ys[i] as tf.Tensor, Object.values(t.forward(x, true))[i] as tf.Tensor);

/** The per-task passes as before: no reuse scope, one variableGrads per task. */
function plainPasses(loss: (i: number) => tf.Scalar, vars: tf.Variable[]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < 3; i++) {
    const { value, grads } = variableGradsShared(() => loss(i), vars);
    out.push([value.dataSync()[0] as number, ...vars.flatMap((v) => Array.from((grads[v.name] as tf.Tensor).dataSync()))]);
    tf.dispose([value, ...Object.values(grads)]);
  }
  return out;
}

function reusedPasses(loss: (i: number) => tf.Scalar, vars: tf.Variable[]): number[][] {
  const { grads, losses } = perTaskVariableGrads(loss, 3, vars);
  const out = grads.map((g, i) => [losses[i] as number, ...vars.flatMap((v) => Array.from((g[v.name] as tf.Tensor).dataSync()))]);
  grads.forEach((g) => tf.dispose(g));
  return out;
}

/** Products with the first trunk layer's kernel (JointlyDense, or _FusedMatMul / BatchMatMul without the addon): its forward passes. */
async function firstLayerForwards(f: () => void): Promise<number> {
  const info = await tf.profile(f);
  // The forward product's second operand is the [6, 10] kernel itself (rank 3 for BatchMatMul); the
  // kernel's gradient multiplies [rows, 6] by [rows, 10].
  return info.kernels.filter((k) => (k.name.startsWith("JointlyDense") || k.name === "_FusedMatMul" || k.name === "BatchMatMul") && k.inputShapes[1]?.slice(-2).join() === "6,10").length;
}

test("perTaskVariableGrads: same losses and gradients as one plain pass per task, for shared variables at any depth", () => {
  for (const [depth, act] of [[2, "relu"], [3, "relu"], [3, "tanh"]] as const) {
    const { model, kernel } = trunkModel(100 + depth, depth, act);
    const t = trainable(model);
    // The last trunk kernel (GradNorm's choice), a middle one with the last, and the first (nothing upstream).
    const sets = [[kernel(depth - 1)], [kernel(1), kernel(depth - 1)], [kernel(0)]];
    for (const vars of sets) {
      const before = tf.memory().numTensors;
      const reused = reusedPasses(lossOf(t), vars);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
      assert.equal(reusedUpstreamCount(), undefined, "the scope is closed");
      // Computing everything in every pass (direct forward, no scope) and through model.apply.
      const plain = plainPasses(lossOf(t), vars);
      const applied = plainPasses(lossOf(trainable(model, undefined, { direct: false })), vars);
      assert.deepEqual(reused, plain, `depth ${depth} ${act}, ${vars.map((v) => v.name)}: same bits as without reuse`);
      reused.forEach((r, i) => r.forEach((v, j) => assert.ok(Math.abs(v - (applied[i] as number[])[j]!) <= 1e-6 * Math.max(1, Math.abs(v)), `vs model.apply: task ${i} [${j}] ${v}`)));
    }
    model.dispose();
  }
});

test("perTaskVariableGrads: the upstream layers run once for all tasks, off the tape", async () => {
  const { model, kernel } = trunkModel(200, 2);
  const t = trainable(model);
  const vars = [kernel(1)];
  assert.equal(await firstLayerForwards(() => void plainPasses(lossOf(t), vars)), 3);
  assert.equal(await firstLayerForwards(() => void reusedPasses(lossOf(t), vars)), 1);
  // Differentiating the first layer too: nothing is upstream, every pass computes it.
  assert.equal(await firstLayerForwards(() => void reusedPasses(lossOf(t), [kernel(0), kernel(1)])), 3);
  // Hand-written models (no direct forward) and model.apply compute everything, as before.
  assert.equal(await firstLayerForwards(() => void reusedPasses(lossOf(trainable(model, undefined, { direct: false })), vars)), 3);
  // Fewer kernels in all: the first layer's forward and the clones of what its gradient would save.
  const count = async (f: () => void) => (await tf.profile(f)).kernels.length;
  const plain = await count(() => void plainPasses(lossOf(t), vars));
  const reused = await count(() => void reusedPasses(lossOf(t), vars));
  assert.ok(reused < plain - 4, `${reused} kernels with reuse against ${plain}`);
  model.dispose();
});

test("reuseUpstream: a changed input or variable is recomputed; nested gradients and untaped calls are not served", () => {
  const { model, kernel } = trunkModel(300, 2);
  const t = trainable(model);
  const vars = [kernel(1)];
  const first = kernel(0);
  const saved = first.clone();
  const before = tf.memory().numTensors;
  // The first layer's kernel changes between task 0's and task 1's pass: task 1 must see the new value.
  const changed = tf.tidy(() => tf.mul(first, 0.5));
  const viaScope = perTaskVariableGrads((i) => {
    if (i === 1) first.assign(changed);
    return lossOf(t)(i);
  }, 3, vars);
  first.assign(saved);
  const expected = (() => {
    const out: number[][] = [];
    for (let i = 0; i < 3; i++) {
      if (i === 1) first.assign(changed);
      const { value, grads } = tf.variableGrads(() => lossOf(t)(i), vars);
      out.push([value.dataSync()[0] as number, ...Array.from((grads[vars[0]!.name] as tf.Tensor).dataSync())]);
      tf.dispose([value, ...Object.values(grads)]);
    }
    first.assign(saved);
    return out;
  })();
  viaScope.grads.forEach((g, i) => assert.deepEqual([viaScope.losses[i], ...Array.from((g[vars[0]!.name] as tf.Tensor).dataSync())], expected[i], `task ${i}`));
  viaScope.grads.forEach((g) => tf.dispose(g));
  changed.dispose();
  // New input tensors each pass: recomputed each pass (same numbers), nothing held afterwards.
  const y = tf.clone(x);
  const fresh = perTaskVariableGrads((i) => mse(ys[i] as tf.Tensor, Object.values(t.forward(tf.add(y, 0), true))[i] as tf.Tensor), 3, vars);
  const ref = perTaskVariableGrads(lossOf(t), 3, vars);
  fresh.grads.forEach((g, i) => assert.deepEqual(Array.from((g[vars[0]!.name] as tf.Tensor).dataSync()), Array.from((ref.grads[i]![vars[0]!.name] as tf.Tensor).dataSync())));
  [...fresh.grads, ...ref.grads].forEach((g) => tf.dispose(g));
  y.dispose();
  // Inside a scope, a forward pass outside any tape and a nested gradient compute everything.
  reuseUpstream(vars, () => {
    const out = tf.tidy(() => Array.from((Object.values(t.forward(x, true))[0] as tf.Tensor).dataSync()));
    assert.equal(reusedUpstreamCount(), 0);
    const ref = tf.tidy(() => Array.from((model.apply(x) as tf.Tensor[])[0]!.dataSync()));
    assert.deepEqual(out, ref);
    // A gradient over W2 of a penalty on d/dW1 (second order): the first layer is on the inner tape,
    // so it is computed there, and the pass gives model.apply's numbers. (Composite loss: the fused
    // losses have no second-order gradient.)
    const nested = (m: Trainable) => {
      const { value, grads } = tf.variableGrads(() => {
        const inner = tf.variableGrads(() => tf.mean(tf.squaredDifference(Object.values(m.forward(x, true))[0] as tf.Tensor, ys[0] as tf.Tensor)) as tf.Scalar, [first]);
        const norm = tf.sum(tf.square(inner.grads[first.name] as tf.Tensor));
        return tf.add(inner.value, norm) as tf.Scalar;
      }, vars);
      const out = [value.dataSync()[0] as number, ...Array.from((grads[vars[0]!.name] as tf.Tensor).dataSync())];
      tf.dispose([value, ...Object.values(grads)]);
      return out;
    };
    const direct = nested(t);
    const viaApply = nested(trainable(model, undefined, { direct: false }));
    direct.forEach((v, j) => assert.ok(Math.abs(v - viaApply[j]!) <= 1e-6 * Math.max(1, Math.abs(v)), `second order [${j}]: ${v} vs ${viaApply[j]}`));
    assert.equal(reusedUpstreamCount(), 0);
  });
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  saved.dispose();
  model.dispose();
});

test("reuseUpstream: a model fed another model's output (or a differentiated variable) is not cut from the gradient", () => {
  // A trunk model and a heads model chained by hand: the heads' layers read no shared variable, but
  // their input is the trunk's output, made in each pass from the shared kernel.
  const { model: trunkNet, kernel } = trunkModel(500, 2);
  const inH = tf.input({ shape: [1] });
  const heads = tf.model({ inputs: inH, outputs: [0, 1, 2].map((i) => tf.layers.dense({ units: 1, activation: "relu", kernelInitializer: init(510 + i), biasInitializer: binit(510 + i) }).apply(inH) as tf.SymbolicTensor) });
  const chain = (direct: boolean): Trainable => {
    const a = trainable(trunkNet, undefined, { direct });
    const b = trainable(heads, undefined, { direct });
    return {
      forward: (inputs, training) => b.forward(Object.values(a.forward(inputs, training))[0] as tf.Tensor, training),
      variables: () => [...a.variables(), ...b.variables()],
      outputNames: () => b.outputNames(),
    };
  };
  const vars = [kernel(1)];
  const reused = reusedPasses(lossOf(chain(true)), vars);
  const plain = plainPasses(lossOf(chain(false)), vars);
  reused.forEach((r, i) => r.forEach((v, j) => assert.ok(Math.abs(v - (plain[i] as number[])[j]!) <= 1e-6 * Math.max(1, Math.abs(v)), `task ${i} [${j}]: ${v} vs ${(plain[i] as number[])[j]}`)));
  assert.ok(reused.some((r) => r.slice(1).some((v) => v !== 0)), "the shared kernel gets a gradient");
  // A differentiated variable fed as an input.
  const v = tf.variable(tf.randomNormal([16, 1], 0, 1, "float32", 520));
  const loss = (m: Trainable) => (i: number) => mse(ys[i] as tf.Tensor, Object.values(m.forward(v, true))[i] as tf.Tensor);
  const r2 = reusedPasses(loss(trainable(heads)), [v]);
  const p2 = plainPasses(loss(trainable(heads, undefined, { direct: false })), [v]);
  r2.forEach((r, i) => r.forEach((x, j) => assert.ok(Math.abs(x - (p2[i] as number[])[j]!) <= 1e-6 * Math.max(1, Math.abs(x)), `variable input: task ${i} [${j}]`)));
  v.dispose();
  trunkNet.dispose();
  heads.dispose();
});

test("GradNorm: same weights and parameters after 15 steps as without reuse, the first trunk layer forward once a step instead of four times, no leaks", async () => {
  const run = async (direct: boolean) => {
    const { model, kernel } = trunkModel(400, 2);
    const trainer = new JointTrainer({
      model: trainable(model, undefined, { direct }),
      tasks: model.outputNames.map((n) => ({ name: n, loss: "mse" as const })),
      optimizer: tf.train.adam(0.01),
      weighting: { name: "gradnorm", options: { alpha: 1.5, lr: 0.05 } },
      shared: [kernel(1)],
    });
    const labels = Object.fromEntries(model.outputNames.map((n, i) => [n, ys[i] as tf.Tensor]));
    for (let i = 0; i < 5; i++) trainer.step(x, labels);
    const at = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) trainer.step(x, labels);
    assert.equal(tf.memory().numTensors, at, "tensors leaked across steps");
    const forwards = await firstLayerForwards(() => void trainer.step(x, labels));
    const weights = Object.values(trainer.weights());
    const params = model.getWeights().map((w) => Array.from(w.dataSync()));
    model.dispose();
    return { forwards, weights, params };
  };
  const reused = await run(true);
  const applied = await run(false);
  // T per-task passes + the joint pass: 0 + 1 with reuse (the joint pass's values are reused), 3 + 1 through model.apply.
  assert.equal(reused.forwards, 1);
  assert.equal(applied.forwards, 4);
  reused.weights.forEach((w, i) => assert.ok(Math.abs(w - applied.weights[i]!) <= 1e-6, `GradNorm weight ${i}: ${w} vs ${applied.weights[i]}`));
  reused.params.forEach((p, i) => p.forEach((v, j) => assert.ok(Math.abs(v - applied.params[i]![j]!) <= 1e-6, `parameter ${i}[${j}]`)));
});
