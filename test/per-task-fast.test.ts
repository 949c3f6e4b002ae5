/**
 * Per-task passes when the shared variables are one Dense layer's kernel (and bias): the layer is
 * computed once, each task's pass back-propagates from its held output through the heads only, and
 * the kernel's gradient is Xᵀ·(∇Y ⊙ act'(Y)) (heldPass in task-gradients.ts, reuseUpstream's
 * holdDense in direct-forward.ts). Same numbers as recomputing the layer in every pass, fewer
 * big products, no leaks; models that do not qualify take the old passes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { trainable, type Trainable } from "../src/train/model.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { perTaskVariableGrads, setHeldDensePasses } from "../src/train/task-gradients.js";
import { mse } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";
import { setNativeKernelsEnabled } from "../src/backend/native.js";

await initBackend({ report: false });

const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
const binit = (s: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.3, seed: s });
const ROWS = 16;

type Act = "relu" | "linear" | "sigmoid" | "elu" | "relu6" | "tanh";

/**
 * Input 6 -> Dense(12) "t1" -> Dense(8, act) "t2" (W: [12, 8]) -> three heads; with `branch`, the
 * heads read concat(t2, Dense(5)(t1)) and one head goes through an extra hidden layer.
 */
function makeModel(seed: number, act: Act, branch = false) {
  const input = tf.input({ shape: [6] });
  const t1 = tf.layers.dense({ units: 12, activation: "relu", kernelInitializer: init(seed), biasInitializer: binit(seed) });
  const t2 = tf.layers.dense({ units: 8, activation: act, kernelInitializer: init(seed + 1), biasInitializer: binit(seed + 1) });
  const a = t1.apply(input) as tf.SymbolicTensor;
  let h = t2.apply(a) as tf.SymbolicTensor;
  if (branch) {
    const side = tf.layers.dense({ units: 5, activation: "sigmoid", kernelInitializer: init(seed + 2), biasInitializer: binit(seed + 2) }).apply(a) as tf.SymbolicTensor;
    h = tf.layers.concatenate().apply([h, side]) as tf.SymbolicTensor;
  }
  const outputs = [0, 1, 2].map((i) => {
    const from = branch && i === 2 ? (tf.layers.dense({ units: 4, activation: "relu", kernelInitializer: init(seed + 20), biasInitializer: binit(seed + 20) }).apply(h) as tf.SymbolicTensor) : h;
    return tf.layers.dense({ units: 1, name: `y${i}_${seed}`, kernelInitializer: init(seed + 10 + i), biasInitializer: binit(seed + 10 + i) }).apply(from) as tf.SymbolicTensor;
  });
  const model = tf.model({ inputs: input, outputs });
  const w = (l: tf.layers.Layer, k: number) => l.trainableWeights[k]!.read() as tf.Variable;
  return { model, t1, t2, kernel: w(t2, 0), bias: w(t2, 1), firstKernel: w(t1, 0) };
}

const x = tf.randomNormal([ROWS, 6], 0, 1, "float32", 1);
const ys = [2, 3, 4].map((s) => tf.randomNormal([ROWS, 1], 0, 1, "float32", s));
const masks = [5, 6, 7].map((s) => tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([ROWS], 0, 1, "float32", s), 0.3), "float32")));

function withOldPasses<T>(f: () => T): T {
  setHeldDensePasses(false);
  try {
    return f();
  } finally {
    setHeldDensePasses(true);
  }
}

/** Losses and gradients (flattened per task, variable after variable) of perTaskVariableGrads. */
function passes(t: Trainable, vars: tf.Variable[], masked: boolean): { losses: number[]; grads: number[][] } {
  const loss = (i: number): tf.Scalar => mse(ys[i] as tf.Tensor, Object.values(t.forward(x, true))[i] as tf.Tensor, masked ? masks[i] : undefined);
  const r = perTaskVariableGrads(loss, 3, vars);
  const grads = r.grads.map((g) => vars.flatMap((v) => Array.from((g[v.name] as tf.Tensor).dataSync())));
  r.grads.forEach((g) => tf.dispose(g));
  return { losses: r.losses, grads };
}

function assertClose(a: number[], b: number[], what: string, tol = 1e-6): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const scale = Math.max(1e-12, ...b.map(Math.abs));
  a.forEach((v, j) => assert.ok(Math.abs(v - b[j]!) <= tol * Math.max(scale, Math.abs(b[j]!)), `${what} [${j}]: ${v} vs ${b[j]}`));
}

const norm = (g: number[]) => Math.sqrt(g.reduce((s, v) => s + v * v, 0));

/** Forward products with W ([12, 8]) on t2's input ([ROWS, 12]): W's layer computed (its gradient's products have other shapes). */
async function wForwards(f: () => void): Promise<number> {
  const info = await tf.profile(f);
  return info.kernels.filter((k) => /^(JointlyDense|JointlyDenseLinear|_FusedMatMul|BatchMatMul)$/.test(k.name) && k.inputShapes[0]?.join() === `${ROWS},12` && k.inputShapes[1]?.slice(-2).join() === "12,8").length;
}

/** Forward products of the heads (output [ROWS, 1]; their gradients' products have other outputs). */
async function headForwards(f: () => void): Promise<number> {
  const info = await tf.profile(f);
  return info.kernels.filter((k) => /^(JointlyDense|JointlyDenseLinear|_FusedMatMul|BatchMatMul)$/.test(k.name) && k.outputShapes[0]?.join() === `${ROWS},1`).length;
}

for (const native of [true, false]) {
  test(`held passes equal the recomputing passes (relu, linear, sigmoid, elu, relu6; masks; kernel + bias; a branch), native kernels ${native ? "on" : "off"}`, () => {
    setNativeKernelsEnabled(native);
    try {
      let seed = 100;
      for (const act of ["relu", "linear", "sigmoid", "elu", "relu6"] as const) {
        for (const branch of [false, true]) {
          const m = makeModel((seed += 50), act, branch);
          const t = trainable(m.model);
          for (const vars of [[m.kernel], [m.kernel, m.bias]]) {
            for (const masked of [false, true]) {
              const what = `${act}${branch ? " branch" : ""} ${vars.length === 2 ? "kernel+bias" : "kernel"}${masked ? " masked" : ""}`;
              const before = tf.memory().numTensors;
              const fast = passes(t, vars, masked);
              assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
              const old = withOldPasses(() => passes(t, vars, masked));
              assertClose(fast.losses, old.losses, `${what} losses`);
              fast.grads.forEach((g, i) => {
                assertClose(g, old.grads[i]!, `${what} task ${i} gradient`);
                assertClose([norm(g)], [norm(old.grads[i]!)], `${what} task ${i} norm`);
              });
              assert.ok(fast.grads.every((g) => g.some((v) => v !== 0)), `${what}: every task reaches W`);
            }
          }
          m.model.dispose();
        }
      }
    } finally {
      setNativeKernelsEnabled(true);
    }
  });
}

test("held passes: W's layer is computed once for all tasks", async () => {
  const m = makeModel(900, "relu");
  const t = trainable(m.model);
  const run = () => void passes(t, [m.kernel], false);
  assert.equal(await withOldPasses(() => wForwards(run)), 3);
  assert.equal(await wForwards(run), 1);
  m.model.dispose();
});

test("GradNorm through JointTrainer: same weights and parameters after 15 steps as the recomputing passes, W's product once a step instead of four times, each task's pass computes its own head only, no leaks", async () => {
  const run = async (held: boolean) => {
    setHeldDensePasses(held);
    try {
      const m = makeModel(700, "relu", true);
      const trainer = new JointTrainer({
        model: m.model,
        tasks: m.model.outputNames.map((n) => ({ name: n, loss: "mse" as const })),
        optimizer: tf.train.adam(0.01),
        weighting: { name: "gradnorm", options: { alpha: 1.5, lr: 0.05 } },
        shared: [m.kernel],
      });
      const labels = Object.fromEntries(m.model.outputNames.map((n, i) => [n, ys[i] as tf.Tensor]));
      const maskMap = Object.fromEntries(m.model.outputNames.map((n, i) => [n, masks[i] as tf.Tensor]));
      for (let i = 0; i < 5; i++) trainer.step(x, labels, maskMap);
      const at = tf.memory().numTensors;
      for (let i = 0; i < 9; i++) trainer.step(x, labels, maskMap);
      assert.equal(tf.memory().numTensors, at, "tensors leaked across steps");
      const forwards = await wForwards(() => void trainer.step(x, labels, maskMap));
      const heads = await headForwards(() => void trainer.step(x, labels, maskMap));
      const at2 = tf.memory().numTensors;
      trainer.step(x, labels, maskMap);
      assert.equal(tf.memory().numTensors, at2, "tensors leaked across a step");
      const weights = Object.values(trainer.weights());
      const params = m.model.getWeights().map((w) => Array.from(w.dataSync()));
      trainer.dispose();
      m.model.dispose();
      return { forwards, heads, weights, params };
    } finally {
      setHeldDensePasses(true);
    }
  };
  const fast = await run(true);
  const old = await run(false);
  // T per-task passes + the joint pass: the joint pass's values held (0 + 1), 3 + 1 recomputing.
  assert.equal(fast.forwards, 1);
  assert.equal(old.forwards, 4);
  // Heads: 3 in the joint pass, then task i's pass computes head i only: 3 + 3, not 3 + 3·3.
  assert.equal(fast.heads, 6);
  assert.equal(old.heads, 6);
  fast.weights.forEach((w, i) => assert.ok(Math.abs(w - old.weights[i]!) <= 1e-6, `GradNorm weight ${i}: ${w} vs ${old.weights[i]}`));
  fast.params.forEach((p, i) => p.forEach((v, j) => assert.ok(Math.abs(v - old.params[i]![j]!) <= 1e-6, `parameter ${i}[${j}]: ${v} vs ${old.params[i]![j]}`)));
});

test("models and variable sets that do not qualify take the recomputing passes, with the same numbers", async () => {
  const m = makeModel(1100, "relu");
  const tanh = makeModel(1200, "tanh");
  const cases: { what: string; t: Trainable; vars: tf.Variable[] }[] = [
    { what: "no direct forward (model.apply)", t: trainable(m.model, undefined, { direct: false }), vars: [m.kernel] },
    { what: "variables of two layers", t: trainable(m.model), vars: [m.firstKernel, m.kernel] },
    { what: "the bias alone", t: trainable(m.model), vars: [m.bias] },
    { what: "an activation whose derivative is not held (tanh)", t: trainable(tanh.model), vars: [tanh.kernel] },
  ];
  for (const { what, t, vars } of cases) {
    const before = tf.memory().numTensors;
    const fast = passes(t, vars, true);
    assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
    const old = withOldPasses(() => passes(t, vars, true));
    assertClose(fast.losses, old.losses, `${what} losses`);
    fast.grads.forEach((g, i) => assertClose(g, old.grads[i]!, `${what} task ${i}`));
    // W's layer (when it is [12, 8]) recomputed in every task's pass.
    const f = await wForwards(() => void passes(t, vars, false));
    if (vars.includes(m.kernel) || vars.includes(tanh.kernel)) assert.equal(f, 3, `${what}: recomputed per task`);
  }
  // A loss that also reads W directly (a penalty): the held path adds that gradient to Xᵀ·δ.
  const t = trainable(m.model);
  const withPenalty = (i: number): tf.Scalar => tf.add(mse(ys[i] as tf.Tensor, Object.values(t.forward(x, true))[i] as tf.Tensor), tf.mul(0.1, tf.sum(tf.square(m.kernel)))) as tf.Scalar;
  const run = () => {
    const r = perTaskVariableGrads(withPenalty, 3, [m.kernel]);
    const out = r.grads.map((g) => Array.from((g[m.kernel.name] as tf.Tensor).dataSync()));
    r.grads.forEach((g) => tf.dispose(g));
    return out;
  };
  const fast = run();
  const old = withOldPasses(run);
  fast.forEach((g, i) => assertClose(g, old[i]!, `penalty task ${i}`));
  m.model.dispose();
  tanh.model.dispose();
});
