/**
 * Every trainable tfjs-layers layer type trains through JointTrainer on every backend jointly sets
 * up: one SGD step of a two-task model built around the layer moves every trainable variable, and
 * the updated weights on wasm (with and without the native addon) agree with the cpu backend's.
 *
 * Also: no kernel of these layers runs through the cpu safety net on wasm (each has a wasm kernel of
 * its own), so the agreement is between two independent implementations.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { nativeKernels, setNativeKernelsEnabled } from "../src/backend/native.js";
import { cpuFallbackCalls, setFallbackNotice } from "../src/backend/kernels/cpu-fallback.js";
import { JointTrainer } from "../src/train/joint-trainer.js";

interface Case {
  name: string;
  /** Input shape without the batch axis. */
  input: number[];
  /** Integer ids as input (embedding). */
  ids?: number;
  body(x: tf.SymbolicTensor): tf.SymbolicTensor;
}

const L = tf.layers;
const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor) => layer.apply(x) as tf.SymbolicTensor;

const CASES: Case[] = [
  { name: "conv1d", input: [12, 3], body: (x) => apply(L.conv1d({ filters: 4, kernelSize: 3, activation: "relu" }), x) },
  { name: "conv1d dilated", input: [12, 3], body: (x) => apply(L.conv1d({ filters: 4, kernelSize: 3, dilationRate: 2 }), x) },
  { name: "conv2d", input: [8, 8, 2], body: (x) => apply(L.conv2d({ filters: 3, kernelSize: 3, activation: "relu" }), x) },
  { name: "conv2d strided same", input: [9, 9, 2], body: (x) => apply(L.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: "same" }), x) },
  { name: "conv2d dilated", input: [9, 9, 2], body: (x) => apply(L.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, padding: "same" }), x) },
  { name: "conv3d", input: [5, 5, 5, 2], body: (x) => apply(L.conv3d({ filters: 3, kernelSize: 3 }), x) },
  { name: "depthwiseConv2d", input: [8, 8, 3], body: (x) => apply(L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2 }), x) },
  { name: "separableConv2d", input: [8, 8, 3], body: (x) => apply(L.separableConv2d({ filters: 4, kernelSize: 3, padding: "same" }), x) },
  { name: "conv2dTranspose", input: [5, 5, 3], body: (x) => apply(L.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 2 }), x) },
  {
    name: "batchNormalization after conv2d",
    input: [8, 8, 2],
    // No bias before batch norm: its gradient is exactly zero (the norm subtracts the batch mean).
    body: (x) => apply(L.activation({ activation: "relu" }), apply(L.batchNormalization(), apply(L.conv2d({ filters: 4, kernelSize: 3, useBias: false }), x))),
  },
  { name: "lstm", input: [6, 3], body: (x) => apply(L.lstm({ units: 4 }), x) },
  { name: "gru", input: [6, 3], body: (x) => apply(L.gru({ units: 4 }), x) },
  { name: "bidirectional lstm", input: [6, 3], body: (x) => apply(L.bidirectional({ layer: L.lstm({ units: 3 }) as tf.RNN }), x) },
  { name: "convLstm2d", input: [3, 6, 6, 2], body: (x) => apply(L.convLstm2d({ filters: 2, kernelSize: 3 }), x) },
  { name: "embedding", input: [5], ids: 10, body: (x) => apply(L.embedding({ inputDim: 10, outputDim: 4 }), x) },
  { name: "layerNormalization", input: [6], body: (x) => apply(L.layerNormalization(), apply(L.dense({ units: 5 }), x)) },
  { name: "prelu", input: [6], body: (x) => apply(L.prelu(), apply(L.dense({ units: 5 }), x)) },
  { name: "maxPooling2d", input: [8, 8, 2], body: (x) => apply(L.maxPooling2d({ poolSize: 2 }), apply(L.conv2d({ filters: 3, kernelSize: 3 }), x)) },
  { name: "maxPooling3d", input: [4, 6, 6, 2], body: (x) => apply(L.maxPooling3d({ poolSize: 2 }), apply(L.conv3d({ filters: 3, kernelSize: 1 }), x)) },
  { name: "averagePooling3d", input: [4, 6, 6, 2], body: (x) => apply(L.averagePooling3d({ poolSize: 2 }), apply(L.conv3d({ filters: 3, kernelSize: 1 }), x)) },
  { name: "globalAveragePooling2d", input: [6, 6, 2], body: (x) => apply(L.globalAveragePooling2d({}), apply(L.conv2d({ filters: 3, kernelSize: 3 }), x)) },
  { name: "averagePooling2d", input: [8, 8, 2], body: (x) => apply(L.averagePooling2d({ poolSize: 2 }), apply(L.conv2d({ filters: 3, kernelSize: 3 }), x)) },
];

const ROWS = 6;

/** The model around a case's layer: its body, flatten, and two heads (3 classes and one value). */
function build(c: Case): tf.LayersModel {
  const input = tf.input({ shape: c.input, dtype: c.ids ? "int32" : "float32" });
  let h = c.body(input);
  if (h.shape.length > 2) h = apply(L.flatten(), h);
  const a = apply(L.dense({ units: 3, name: "a" }), h);
  const b = apply(L.dense({ units: 1, name: "b" }), h);
  const model = tf.model({ inputs: input, outputs: [a, b] });
  // Seeded weights (the layers' own initialisers draw on each backend differently).
  model.trainableWeights.forEach((w, i) => w.write(tf.randomUniform(w.shape as number[], -0.4, 0.4, "float32", 100 + i)));
  return model;
}

function data(c: Case) {
  const x = c.ids
    ? tf.randomUniform([ROWS, ...c.input], 0, c.ids, "int32", 7)
    : tf.randomNormal([ROWS, ...c.input], 0, 1, "float32", 7);
  return { x, y: { a: tf.tensor1d([0, 1, 2, 0, 1, 2], "int32"), b: tf.randomNormal([ROWS, 1], 0, 1, "float32", 8) } };
}

interface Outcome {
  before: Float32Array[];
  after: Float32Array[];
  names: string[];
  leaked: number;
}

/** One SGD step through JointTrainer (and two more to check for leaks), on the current backend. */
function trainOnce(c: Case): Outcome {
  const model = build(c);
  const { x, y } = data(c);
  const trainer = new JointTrainer({
    model,
    tasks: [
      { name: "a", loss: "softmaxCrossEntropy" },
      { name: "b", loss: "mse" },
    ],
    optimizer: tf.train.sgd(0.1),
  });
  const vars = model.trainableWeights;
  const before = vars.map((w) => w.read().dataSync() as Float32Array);
  trainer.step(x, y);
  const after = vars.map((w) => w.read().dataSync() as Float32Array);
  const n0 = tf.memory().numTensors;
  trainer.step(x, y);
  trainer.step(x, y);
  const leaked = tf.memory().numTensors - n0;
  const names = vars.map((w) => w.originalName);
  model.dispose();
  tf.dispose([x, y.a, y.b]);
  return { before, after, names, leaked };
}

setFallbackNotice(() => {});

async function runAll(): Promise<Map<string, Outcome>> {
  const out = new Map<string, Outcome>();
  for (const c of CASES) out.set(c.name, trainOnce(c));
  return out;
}

await initBackend({ backend: "cpu", report: false });
const reference = await runAll();

test("on cpu, one step of each layer type moves every trainable variable, without leaking tensors", () => {
  for (const [name, r] of reference) {
    r.before.forEach((b, i) => {
      let moved = 0;
      for (let j = 0; j < b.length; j++) moved = Math.max(moved, Math.abs(r.after[i]![j]! - b[j]!));
      assert.ok(moved > 1e-7, `${name}: variable ${r.names[i]} did not move (max change ${moved})`);
      assert.ok(r.after[i]!.every(Number.isFinite), `${name}: variable ${r.names[i]} is not finite`);
    });
    assert.equal(r.leaked, 0, `${name}: ${r.leaked} tensors leaked per two steps`);
  }
});

function compare(label: string, got: Map<string, Outcome>): void {
  for (const c of CASES) {
    const g = got.get(c.name)!;
    const r = reference.get(c.name)!;
    assert.equal(g.leaked, 0, `${label} ${c.name}: ${g.leaked} tensors leaked per two steps`);
    g.after.forEach((a, i) => {
      const before = r.before[i]!;
      // Compare the update (after - before), relative to the largest update of the variable.
      let scale = 0;
      let worst = 0;
      for (let j = 0; j < a.length; j++) scale = Math.max(scale, Math.abs(r.after[i]![j]! - before[j]!));
      for (let j = 0; j < a.length; j++) worst = Math.max(worst, Math.abs(a[j]! - r.after[i]![j]!));
      assert.ok(scale > 1e-7, `${c.name}: ${g.names[i]} did not move on cpu`);
      assert.ok(worst <= 1e-3 * scale + 1e-6, `${label} ${c.name}: ${g.names[i]} differs from cpu by ${worst} (update scale ${scale})`);
    });
  }
}

const native = nativeKernels();

test("on wasm with the native addon, every layer type trains and agrees with cpu", { skip: native.kernels ? false : `native addon not loaded: ${native.reason}` }, async () => {
  await initBackend({ backend: "wasm", report: false });
  setNativeKernelsEnabled(true);
  const before = cpuFallbackCalls();
  compare("wasm+addon", await runAll());
  assert.deepEqual(cpuFallbackCalls(), before, "kernels that ran through the cpu safety net");
});

test("on wasm without the native addon, every layer type trains and agrees with cpu", async () => {
  await initBackend({ backend: "wasm", report: false });
  setNativeKernelsEnabled(false);
  try {
    const before = cpuFallbackCalls();
    compare("wasm", await runAll());
    assert.deepEqual(cpuFallbackCalls(), before, "kernels that ran through the cpu safety net");
  } finally {
    setNativeKernelsEnabled(true);
  }
});
