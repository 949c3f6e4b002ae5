/**
 * NaN and ±Infinity stopped before they land (issue 13): the fused relu kernels keep NaN as the cpu
 * backend does; a NaN input or label and a NaN gradient with a finite loss stop every trainer with
 * an error naming the step, the input (row, column) or the variable (and the task where known),
 * with no weight or optimizer slot changed and no tensor left behind; on wasm with the addon,
 * without it, and on cpu.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { backendConfigs, type BackendConfig } from "./fixtures/backend-configs.js";
import { nativeKernels, setNativeKernelsEnabled } from "../src/backend/native.js";
import { fusedOpsActive } from "../src/ops/fused.js";
import { dense } from "../src/ops/dense.js";
import { JointTrainer, type JointTrainerOptions } from "../src/train/joint-trainer.js";
import { AlternatingTrainer, JointObjectiveTrainer } from "../src/train/alternating.js";
import { fit } from "../src/train/fit.js";
import { mse, mae, huber, binaryCrossEntropy, softmaxCrossEntropy } from "../src/losses/per-task.js";
import { VectorizedEnsemble, fitEnsemble } from "../src/parallel/ensemble.js";

await initBackend({ report: false });
const addonLoaded = nativeKernels().kernels !== undefined;
const childOnly = process.env.JOINTLY_NAN_GUARD_CHILD === "1";

type Config = BackendConfig;
const CONFIGS = backendConfigs();

async function eachConfig(body: (c: Config) => void | Promise<void>): Promise<void> {
  try {
    for (const c of CONFIGS) {
      await c.enter();
      assert.equal(fusedOpsActive(), c.fused, `${c.name}: fused ops active`);
      await body(c);
    }
  } finally {
    await tf.setBackend("wasm");
    setNativeKernelsEnabled(true);
  }
}

/** Equal as numbers, NaN equal to NaN, within a relative tolerance. */
function sameValues(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-5): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (Number.isNaN(y)) assert.ok(Number.isNaN(x), `${what}[${i}]: ${x}, expected NaN`);
    else if (!Number.isFinite(y)) assert.equal(x, y, `${what}[${i}]`);
    else assert.ok(Math.abs(x - y) <= tol * Math.max(1, Math.abs(y)), `${what}[${i}]: ${x}, expected ${y}`);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. The fused activations keep NaN and ±Infinity as the cpu backend does.

const ACTIVATIONS = ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu", "prelu"] as const;

/** Everything the kernel test computes, by name, as plain arrays. */
function kernelOutputs(): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  tf.tidy(() => {
    for (const [M, K, N] of [[3, 4, 2], [40, 40, 40]] as const) {
      const xv = new Float32Array(M * K).map((_, i) => Math.sin(i + 1));
      xv[1] = NaN;
      xv[K + 2] = Infinity;
      xv[2 * K] = -Infinity;
      const x = tf.tensor2d(xv, [M, K]);
      const w = tf.tensor2d(new Float32Array(K * N).map((_, i) => Math.cos(i) * 0.5), [K, N]);
      const b = tf.tensor1d(new Float32Array(N).map((_, i) => 0.1 * i - 0.05));
      for (const act of ACTIVATIONS) {
        const y = tf.fused.matMul({ a: x, b: w, bias: b, activation: act, leakyreluAlpha: 0.2, ...(act === "prelu" ? { preluActivationWeights: tf.fill([N], 0.25) } : {}) });
        out.set(`fused.matMul ${M}x${K}x${N} ${act}`, y.dataSync() as Float32Array);
        const noBias = tf.fused.matMul({ a: x, b: w, activation: act, leakyreluAlpha: 0.2, ...(act === "prelu" ? { preluActivationWeights: tf.fill([N], 0.25) } : {}) });
        out.set(`fused.matMul no bias ${M}x${K}x${N} ${act}`, noBias.dataSync() as Float32Array);
      }
      for (const act of ["linear", "relu", "relu6", "elu", "sigmoid"] as const) {
        out.set(`dense ${M}x${K}x${N} ${act}`, dense(x, w, b, act).dataSync() as Float32Array);
        // The gradient through the activation (JointlyActGrad with the addon): NaN must reach it.
        const dy = tf.tensor2d(new Float32Array(M * N).map((_, i) => (i % 3) - 1), [M, N]);
        const [gx, gw, gb] = tf.grads((a: tf.Tensor, k: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dense(a as tf.Tensor2D, k as tf.Tensor2D, c, act), dy)))([x, w, b]);
        out.set(`dense grad x ${M}x${K}x${N} ${act}`, gx!.dataSync() as Float32Array);
        out.set(`dense grad w ${M}x${K}x${N} ${act}`, gw!.dataSync() as Float32Array);
        out.set(`dense grad b ${M}x${K}x${N} ${act}`, gb!.dataSync() as Float32Array);
      }
      const layer = tf.layers.dense({ units: N, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) });
      out.set(`layers.dense relu ${M}x${K}x${N}`, (layer.apply(x) as tf.Tensor).dataSync() as Float32Array);
    }
    // A fused conv2d with relu / relu6 (XNNPACK's clamp without the addon, im2col + sgemm with it).
    const img = new Float32Array(2 * 6 * 6 * 3).map((_, i) => Math.sin(i));
    img[5] = NaN;
    img[40] = Infinity;
    const xi = tf.tensor4d(img, [2, 6, 6, 3]);
    const f = tf.tensor4d(new Float32Array(3 * 3 * 3 * 4).map((_, i) => Math.cos(i) * 0.3), [3, 3, 3, 4]);
    for (const act of ["relu", "relu6", "elu", "linear"] as const) {
      out.set(`fused.conv2d ${act}`, tf.fused.conv2d({ x: xi, filter: f, strides: 1, pad: "same", bias: tf.fill([4], -0.1), activation: act }).dataSync() as Float32Array);
    }
  });
  return out;
}

test("fused relu, relu6, elu, sigmoid, leakyrelu and prelu keep NaN and ±Infinity as cpu does (matMul, dense() and its gradient, layers.dense, conv2d), with and without the addon", { skip: childOnly }, async () => {
  await tf.setBackend("cpu");
  const reference = kernelOutputs();
  // The reference itself keeps the NaN a relu layer sees (the point of the fix).
  assert.ok(Number.isNaN(reference.get("layers.dense relu 3x4x2")![0]!), "cpu: relu(NaN) is NaN");
  let compared = 0;
  await eachConfig((c) => {
    if (c.name === "cpu") return;
    const got = kernelOutputs();
    for (const [name, want] of reference) {
      sameValues(got.get(name)!, want, `${c.name}: ${name}`, 1e-4);
      compared++;
    }
  });
  assert.ok(compared >= 2 * 60, `compared ${compared} outputs`);
});

// ---------------------------------------------------------------------------------------------
// 2. Trainers: a NaN input, a NaN label and a NaN gradient with a finite loss.

/** Trunk 4 -> 8 (relu), heads "c" (3 logits) and "r" (1 value), and the trunk's output "z". */
function net(seed = 1) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunk = tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(seed), biasInitializer: "zeros", name: `trunk_${seed}` });
  const h = trunk.apply(input) as tf.SymbolicTensor;
  const cHead = tf.layers.dense({ units: 3, name: `c_${seed}`, kernelInitializer: init(seed + 1) });
  const rHead = tf.layers.dense({ units: 1, name: `r_${seed}`, kernelInitializer: init(seed + 2) });
  const z = tf.layers.activation({ activation: "linear", name: `z_${seed}` }).apply(h) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [cHead.apply(h) as tf.SymbolicTensor, rHead.apply(h) as tf.SymbolicTensor, z] });
  return { model, trunk, outputs: { c: `c_${seed}`, r: `r_${seed}`, z: `z_${seed}` } };
}

/** Switches that turn a finite step into a NaN-gradient step with finite losses. */
interface Poison {
  penalty: boolean;
  taskR: boolean;
}

function makeJoint(kind: string, poison: Poison) {
  const n = net();
  const trunkBias = n.trunk.trainableWeights[1]!.read() as tf.Variable;
  // sqrt(|b - b|): value 0, gradient NaN (the infinite slope of sqrt at 0 times 0).
  const penalty = () => (poison.penalty ? tf.sum(tf.sqrt(tf.abs(tf.sub(trunkBias, trunkBias)))) : tf.mul(tf.sum(trunkBias), 0)) as tf.Scalar;
  // Task r's loss with a sqrt at a zero residual (p - p) when poisoned: finite value, NaN gradient.
  const rLoss = (y: tf.Tensor, p: tf.Tensor, m?: tf.Tensor) => {
    const base = mse(y, p, m);
    return (poison.taskR ? tf.add(base, tf.mean(tf.sqrt(tf.abs(tf.sub(p, p))))) : base) as tf.Scalar;
  };
  const tasks: JointTrainerOptions["tasks"] = [
    { name: "c", output: n.outputs.c, loss: "softmaxCrossEntropy" },
    { name: "r", output: n.outputs.r, loss: rLoss },
  ];
  const optimizer = tf.train.adam(0.01);
  const base: JointTrainerOptions = { model: n.model, tasks, optimizer, penalty };
  const opts: Record<string, Partial<JointTrainerOptions>> = {
    equal: {},
    gradnorm: { weighting: "gradnorm", shared: n.trunk },
    uncertainty: { weighting: "uncertainty" },
    "db-mtl": { weighting: "db-mtl", shared: n.trunk },
    diagnostics: { diagnostics: true, shared: n.trunk },
    mean: { aggregator: "mean", shared: n.trunk },
    upgrad: { aggregator: "upgrad", shared: n.trunk },
    mgda: { aggregator: "mgda", shared: n.trunk },
    "pcgrad implied": { aggregator: "pcgrad", shared: n.trunk, heads: "implied" },
    representation: { aggregator: "mgda", mode: "representation", representation: n.outputs.z },
  };
  const trainer = new JointTrainer({ ...base, ...opts[kind]! });
  return { trainer, optimizer, variables: n.model.weights.map((w) => w.read()), trunkBias, model: n.model };
}

const JOINT_KINDS = ["equal", "gradnorm", "uncertainty", "db-mtl", "diagnostics", "mean", "upgrad", "mgda", "pcgrad implied", "representation"];

function batch(seed = 7) {
  return {
    x: tf.randomNormal([6, 4], 0, 1, "float32", seed),
    y: { c: tf.tensor1d([0, 1, 2, 1, 0, 2], "int32"), r: tf.randomNormal([6, 1], 0, 1, "float32", seed + 1) },
  };
}

/** A copy of `t` with `value` at flat index `at`. */
function withValue(t: tf.Tensor, at: number, value: number): tf.Tensor {
  const v = t.dataSync().slice() as Float32Array;
  v[at] = value;
  return tf.tensor(v, t.shape, t.dtype);
}

/** Every value of the variables and the optimizer's own weights (Adam's moments and step count). */
async function snapshot(variables: readonly tf.Tensor[], optimizers: readonly tf.Optimizer[]): Promise<number[][]> {
  const out = variables.map((v) => Array.from(v.dataSync()));
  for (const o of optimizers) for (const w of await o.getWeights()) out.push(Array.from(w.tensor.dataSync()));
  return out;
}

/** Runs `failing` three times: it must throw a message matching every pattern, change nothing and leak nothing. */
async function expectStopped(what: string, failing: () => unknown, patterns: RegExp[], variables: readonly tf.Tensor[], optimizers: readonly tf.Optimizer[]): Promise<string> {
  const before = await snapshot(variables, optimizers);
  let message = "";
  let tensors = -1;
  for (let k = 0; k < 3; k++) {
    try {
      failing();
      assert.fail(`${what}: the step did not throw`);
    } catch (err) {
      assert.ok(err instanceof Error && !(err instanceof assert.AssertionError), `${what}: ${String(err)}`);
      message = err.message;
    }
    if (k === 0) tensors = tf.memory().numTensors;
    else assert.equal(tf.memory().numTensors, tensors, `${what}: tensors after failing step ${k + 1}`);
  }
  for (const p of patterns) assert.match(message, p, what);
  assert.match(message, /no update was applied|nothing was trained/, what);
  const after = await snapshot(variables, optimizers);
  assert.equal(after.length, before.length, `${what}: optimizer weights count`);
  after.forEach((a, i) => assert.deepEqual(a, before[i], `${what}: weight ${i} changed`));
  return message;
}

let casesTested = 0;

test("JointTrainer (equal, gradnorm, uncertainty, db-mtl, diagnostics; mean, upgrad, mgda, pcgrad; representation mode): a NaN input, an infinite label and a NaN gradient stop the step naming step, input or variable and task, nothing applied, no leak", { skip: childOnly }, async () => {
  await eachConfig(async (c) => {
    for (const kind of JOINT_KINDS) {
      const poison: Poison = { penalty: false, taskR: false };
      const { trainer, optimizer, variables } = makeJoint(kind, poison);
      const b = batch();
      trainer.step(b.x, b.y); // a good step first, so Adam has moments to keep
      const what = `${c.name}, ${kind}`;
      // A NaN input at row 2, column 1 (with relu in the trunk: it must not vanish).
      const badX = withValue(b.x, 2 * 4 + 1, NaN);
      await expectStopped(`${what}: NaN input`, () => trainer.step(badX, b.y), [/step 2/, /NaN at row 2, column 1 of the input/], variables, [optimizer]);
      // An infinite label of task r at row 4.
      const badR = withValue(b.y.r, 4, Infinity);
      await expectStopped(`${what}: infinite label`, () => trainer.step(b.x, { c: b.y.c, r: badR }), [/step 2/, /Infinity at row 4, column 0 of the labels of task "r"/], variables, [optimizer]);
      // The penalty's NaN gradient (its value is 0): named as the trunk bias, from the penalty.
      poison.penalty = true;
      await expectStopped(`${what}: NaN penalty gradient`, () => trainer.step(b.x, b.y), [/step 2/, /the gradient of "trunk_1\/bias(_\d+)?" is NaN at \[0\]/, /from the penalty/], variables, [optimizer]);
      poison.penalty = false;
      // Task r's own NaN gradient (its loss is finite): named with the task.
      poison.taskR = true;
      const m = await expectStopped(`${what}: NaN task gradient`, () => trainer.step(b.x, b.y), [/step 2/, /gradient/, /NaN|not finite/], variables, [optimizer]);
      assert.match(m, /task "r"|Task "r"/, `${what}: names task r: ${m}`);
      poison.taskR = false;
      assert.equal(trainer.stepCount, 1, `${what}: no step counted`);
      // And the trainer goes on once the data and losses are good again.
      const ok = trainer.step(b.x, b.y);
      assert.equal(ok.step, 2);
      tf.dispose([badX, badR, b.x, b.y.c, b.y.r]);
      casesTested += 4;
    }
  });
});

test("a masked-out row may hold a NaN label: the input check lets it through, the step trains, the weights stay finite", { skip: childOnly }, async () => {
  await eachConfig((c) => {
    const { trainer } = makeJoint("equal", { penalty: false, taskR: false });
    const b = batch();
    const r = withValue(b.y.r, 3, NaN);
    const masks = { r: tf.tensor1d([1, 1, 1, 0, 1, 1]) };
    const before = trainer.variables().map((v) => Array.from(v.dataSync()));
    // The losses set masked-out labels to 0 before they meet the predictions, so the row's gradient
    // is 0, not 0 · NaN.
    const res = trainer.step(b.x, { c: b.y.c, r }, masks);
    assert.ok(Number.isFinite(res.losses.r!), `${c.name}: loss r finite`);
    assert.ok(trainer.variables().every((v) => v.dataSync().every(Number.isFinite)), `${c.name}: weights finite`);
    assert.ok(trainer.variables().some((v, i) => Array.from(v.dataSync()).some((x, j) => x !== before[i]![j])), `${c.name}: the step moved the weights`);
    tf.dispose([r, masks.r, b.x, b.y.c, b.y.r]);
  });
});

test("every built-in loss: a NaN label on a masked-out row gives a finite gradient, equal to the gradient with that row's label replaced by 0", { skip: childOnly }, async () => {
  await eachConfig((c) => {
    const mask = tf.tensor1d([1, 0, 1]);
    const pred = tf.tensor2d([[0.2, -0.4], [0.9, 0.1], [-0.3, 0.5]]);
    const cases: [string, (y: tf.Tensor, p: tf.Tensor) => tf.Scalar, tf.Tensor, tf.Tensor][] = [
      ["mse", (y, p) => mse(y, p, mask), tf.tensor2d([[1, 2], [NaN, NaN], [0, 1]]), tf.tensor2d([[1, 2], [0, 0], [0, 1]])],
      ["mae", (y, p) => mae(y, p, mask), tf.tensor2d([[1, 2], [NaN, 3], [0, 1]]), tf.tensor2d([[1, 2], [0, 0], [0, 1]])],
      ["huber", (y, p) => huber(1)(y, p, mask), tf.tensor2d([[1, 2], [NaN, 3], [0, 1]]), tf.tensor2d([[1, 2], [0, 0], [0, 1]])],
      ["binaryCrossEntropy", (y, p) => binaryCrossEntropy(y, p, mask), tf.tensor2d([[1, 0], [NaN, 1], [0, 1]]), tf.tensor2d([[1, 0], [0, 0], [0, 1]])],
      ["softmaxCrossEntropy rows", (y, p) => softmaxCrossEntropy(y, p, mask), tf.tensor2d([[1, 0], [NaN, NaN], [0, 1]]), tf.tensor2d([[1, 0], [0, 0], [0, 1]])],
    ];
    for (const [name, loss, nanLabels, zeroLabels] of cases) {
      const g = Array.from(tf.tidy(() => tf.grad((p: tf.Tensor) => loss(nanLabels, p))(pred)).dataSync());
      const ref = Array.from(tf.tidy(() => tf.grad((p: tf.Tensor) => loss(zeroLabels, p))(pred)).dataSync());
      assert.ok(g.every(Number.isFinite), `${c.name}, ${name}: gradient ${g}`);
      assert.deepEqual(g, ref, `${c.name}, ${name}`);
      tf.dispose([nanLabels, zeroLabels]);
    }
    tf.dispose([mask, pred]);
  });
});

/** Hand-written two-model forward pass for the turn-based trainers: A = dense(x) relu, B = dense(A). */
function turnModels(poison: Poison) {
  const Wa = tf.variable(tf.randomNormal([4, 5], 0, 0.5, "float32", 11), true, "Wa");
  const ba = tf.variable(tf.zeros([5]), true, "ba");
  const Wb = tf.variable(tf.randomNormal([5, 1], 0, 0.5, "float32", 12), true, "Wb");
  const bb = tf.variable(tf.zeros([1]), true, "bb");
  type Batch = { x: tf.Tensor2D; y: tf.Tensor2D };
  const forward = (b: Batch) => {
    const a = dense(b.x, Wa, ba, "relu");
    return { a, b: dense(a, Wb, bb) };
  };
  const nanTerm = () => (poison.penalty ? tf.sum(tf.sqrt(tf.abs(tf.sub(ba, ba)))) : tf.scalar(0));
  const lossA = (o: Record<string, tf.Tensor>, b: Batch) => tf.add(tf.mean(tf.square(tf.sub(o.b!, b.y))), nanTerm()) as tf.Scalar;
  const lossB = (o: Record<string, tf.Tensor>, b: Batch) => tf.mean(tf.square(tf.sub(o.b!, b.y))) as tf.Scalar;
  return { Wa, ba, Wb, bb, forward, lossA, lossB, vars: [Wa, ba, Wb, bb] };
}

test("AlternatingTrainer and JointObjectiveTrainer: a NaN input and a NaN gradient stop the step naming step, batch key and variable, nothing applied, no leak", { skip: childOnly }, async () => {
  await eachConfig(async (c) => {
    for (const kind of ["alternating", "joint objective"] as const) {
      const poison: Poison = { penalty: false, taskR: false };
      const m = turnModels(poison);
      const optA = tf.train.adam(0.01), optB = tf.train.adam(0.01), opt = tf.train.adam(0.01);
      const trainer = kind === "alternating"
        ? new AlternatingTrainer({ forward: m.forward, turns: [{ name: "A", variables: [m.Wa, m.ba], loss: m.lossA, optimizer: optA }, { name: "B", variables: [m.Wb, m.bb], loss: m.lossB, optimizer: optB }] })
        : new JointObjectiveTrainer({ forward: m.forward, parts: [{ name: "A", variables: [m.Wa, m.ba], loss: m.lossA }, { name: "B", variables: [m.Wb, m.bb], loss: m.lossB }], optimizer: opt });
      const x = tf.randomNormal([6, 4], 0, 1, "float32", 5) as tf.Tensor2D;
      const y = tf.randomNormal([6, 1], 0, 1, "float32", 6) as tf.Tensor2D;
      trainer.step({ x, y });
      if (kind === "alternating") trainer.step({ x, y }); // both turns once: both optimizers have moments
      const stepNo = trainer.stepCount + 1;
      const optimizers = kind === "alternating" ? [optA, optB] : [opt];
      const what = `${c.name}, ${kind}`;
      const badX = withValue(x, 3 * 4 + 2, NaN) as tf.Tensor2D;
      await expectStopped(`${what}: NaN input`, () => trainer.step({ x: badX, y }), [new RegExp(`step ${stepNo}`), /NaN at row 3, column 2 of batch "x"/], m.vars, optimizers);
      const badY = withValue(y, 1, -Infinity) as tf.Tensor2D;
      await expectStopped(`${what}: infinite label`, () => trainer.step({ x, y: badY }), [new RegExp(`step ${stepNo}`), /-Infinity at row 1, column 0 of batch "y"/], m.vars, optimizers);
      poison.penalty = true;
      await expectStopped(`${what}: NaN gradient`, () => trainer.step({ x, y }), [new RegExp(`step ${stepNo}`), /the gradient of "ba" is NaN at \[0\]/], m.vars, optimizers);
      if (kind === "alternating") assert.match(await messageOf(() => trainer.step({ x, y })), /AlternatingTrainer turn "A"/);
      poison.penalty = false;
      assert.equal(trainer.stepCount, stepNo - 1);
      tf.dispose([x, y, badX, badY, ...m.vars]);
      casesTested += 3;
    }
  });
});

async function messageOf(f: () => unknown): Promise<string> {
  try {
    f();
  } catch (err) {
    return (err as Error).message;
  }
  return "";
}

test("VectorizedEnsemble and fitEnsemble: a NaN input names member, row and column; a gradient that overflows with finite losses names member and variable; nothing applied, no leak", { skip: childOnly }, async () => {
  await eachConfig(async (c) => {
    const ens = new VectorizedEnsemble({ members: 3, inputSize: 4, layers: [{ units: 2, activation: "tanh" }, { units: 1 }], loss: "mse", learningRate: 0.01 });
    const x = tf.randomNormal([3, 6, 4], 0, 1, "float32", 9) as tf.Tensor3D;
    const y = tf.tensor3d(Array.from({ length: 18 }, (_, i) => i % 2), [3, 6, 1]);
    ens.step(x, y);
    const what = c.name;
    const badX = withValue(x, 1 * 24 + 2 * 4 + 3, NaN) as tf.Tensor3D;
    await expectStopped(`${what}: ensemble NaN input`, () => ens.step(badX, y), [/step 2/, /NaN at member 1, row 2, column 3 of x/], ens.variables, [ens.optimizer]);
    await expectStopped(`${what}: fitEnsemble NaN input`, () => fitEnsemble(ens, { x: badX, y, epochs: 1, batchSize: 3 }), [/fitEnsemble: NaN at member 1, row 2, column 3 of x/], ens.variables, [ens.optimizer]);
    // Member 2's two hidden units made identical (kernel columns and biases), its output kernel
    // [3e38, -3e38] (finite): its output is h0·3e38 − h1·3e38 = 0 exactly and its mse loss finite,
    // but the gradient into each hidden unit, dz · ±3e38, overflows float32.
    const k0 = ens.kernels[0]!.arraySync() as number[][][];
    const b0 = ens.biases[0]!.arraySync() as number[][][];
    for (const row of k0[2]!) row[1] = row[0]!;
    b0[2]![0]![1] = b0[2]![0]![0]!;
    const k1 = ens.kernels[1]!.arraySync() as number[][][];
    k1[2] = [[3e38], [-3e38]];
    tf.tidy(() => {
      ens.kernels[0]!.assign(tf.tensor3d(k0));
      ens.biases[0]!.assign(tf.tensor3d(b0));
      ens.kernels[1]!.assign(tf.tensor3d(k1));
    });
    const far = tf.fill([3, 6, 1], 5) as tf.Tensor3D;
    const m = await expectStopped(`${what}: ensemble overflowing gradient`, () => ens.step(x, far), [/step 2/, /member 2's gradient of "/, /its losses are finite/], ens.variables, [ens.optimizer]);
    assert.match(m, /is (Infinity|-Infinity|NaN) at/);
    assert.equal(ens.stepCount, 1);
    tf.dispose([x, y, badX, far]);
    ens.dispose();
    casesTested += 3;
  });
});

test("fit checks each data set once before training: a NaN in x or an infinite label is named by place, row and column, with nothing trained", { skip: childOnly }, async () => {
  await eachConfig(async (c) => {
    const { trainer, optimizer, variables } = makeJoint("equal", { penalty: false, taskR: false });
    const x = tf.randomNormal([10, 4], 0, 1, "float32", 3);
    const y = { c: tf.tensor1d([0, 1, 2, 1, 0, 2, 1, 1, 0, 2], "int32"), r: tf.randomNormal([10, 1], 0, 1, "float32", 4) };
    const badX = withValue(x, 7 * 4 + 3, NaN);
    const before = await snapshot(variables, [optimizer]);
    let err: unknown;
    try {
      await fit({ trainer, x: badX, y, epochs: 2, batchSize: 4, verbose: 0 });
    } catch (e) {
      err = e;
    }
    assert.match((err as Error).message, /fit: NaN at row 7, column 3 of x, checked before training; nothing was trained/, c.name);
    const badR = withValue(y.r, 5, Infinity);
    try {
      await fit({ trainer, x, y: { c: y.c, r: badR }, epochs: 2, batchSize: 4, verbose: 0, validation: { x, y } });
      err = undefined;
    } catch (e) {
      err = e;
    }
    assert.match((err as Error).message, /Infinity at row 5, column 0 of y\["r"\], checked before training/, c.name);
    try {
      await fit({ trainer, x, y, epochs: 1, batchSize: 4, verbose: 0, validation: { x: badX, y } });
      err = undefined;
    } catch (e) {
      err = e;
    }
    assert.match((err as Error).message, /NaN at row 7, column 3 of validation\.x/, c.name);
    assert.equal(trainer.stepCount, 0, "nothing trained");
    assert.deepEqual(await snapshot(variables, [optimizer]), before, "no weight changed");
    tf.dispose([x, badX, badR, y.c, y.r]);
    casesTested += 3;
  });
});

test("the same stops in a child process with JOINTLY_NATIVE=0", { skip: childOnly || !addonLoaded }, () => {
  const file = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-name-pattern", "child:", file], {
    // Without the parent runner's NODE_TEST_CONTEXT, so the child prints its own TAP report.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT")), JOINTLY_NATIVE: "0", JOINTLY_NAN_GUARD_CHILD: "1" },
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /# pass 1/);
});

test("child: without the addon, a NaN input and a NaN gradient stop JointTrainer and AlternatingTrainer", { skip: !childOnly }, async () => {
  assert.equal(nativeKernels().kernels, undefined, "the addon is off in the child");
  await tf.setBackend("wasm");
  const poison: Poison = { penalty: false, taskR: false };
  const { trainer, optimizer, variables } = makeJoint("upgrad", poison);
  const b = batch();
  trainer.step(b.x, b.y);
  const badX = withValue(b.x, 9, NaN);
  await expectStopped("child: NaN input", () => trainer.step(badX, b.y), [/NaN at row 2, column 1 of the input/], variables, [optimizer]);
  poison.penalty = true;
  await expectStopped("child: NaN gradient", () => trainer.step(b.x, b.y), [/the gradient of "trunk_1\/bias(_\d+)?" is NaN at \[0\] at step 2 \(from the penalty\)/], variables, [optimizer]);
});

test("report: cases tested and the cost of the checks per step (measured, not asserted)", { skip: childOnly }, async () => {
  await tf.setBackend("wasm");
  setNativeKernelsEnabled(true);
  const { trainer } = makeJoint("equal", { penalty: false, taskR: false });
  const b = batch();
  const x = tf.randomNormal([64, 4], 0, 1, "float32", 1);
  const y = { c: tf.tensor1d(Array.from({ length: 64 }, (_, i) => i % 3), "int32"), r: tf.randomNormal([64, 1], 0, 1, "float32", 2) };
  for (let i = 0; i < 30; i++) trainer.step(x, y);
  const steps = 200;
  let t0 = performance.now();
  for (let i = 0; i < steps; i++) trainer.step(x, y);
  const stepMs = (performance.now() - t0) / steps;
  // The checks alone, as the step runs them: inputs and labels, then every gradient.
  const { batchItems, checkBatchFinite, checkGradientsFinite } = await import("../src/train/finite-checks.js");
  const grads = Object.fromEntries(trainer.variables().map((v) => [v.name, tf.onesLike(v)]));
  t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    checkBatchFinite("x", i, batchItems(x, y));
    checkGradientsFinite("x", i, grads, trainer.variables());
  }
  const checkMs = (performance.now() - t0) / steps;
  console.log(`# nan-guard: ${casesTested} trainer cases; step ${stepMs.toFixed(3)} ms (64 rows, 4-8-3/1 model, wasm), checks ${(checkMs * 1000).toFixed(1)} µs a step (${((100 * checkMs) / stepMs).toFixed(1)} %)`);
  tf.dispose([x, y.c, y.r, b.x, b.y.c, b.y.r, ...Object.values(grads)]);
});
