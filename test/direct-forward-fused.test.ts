/**
 * The direct forward pass with jointly's fused Dense op (wasm with the native addon): the same
 * outputs and gradients as `model.apply`, fewer kernels per training step, no leaks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { directForward } from "../src/train/direct-forward.js";
import { trainable } from "../src/train/model.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { initBackend } from "../src/backend/init.js";
import { fusedOpsActive } from "../src/ops/fused.js";
import { setNativeKernelsEnabled } from "../src/backend/native.js";
import { fusedAdam } from "../src/optimizers/index.js";

await initBackend({ backend: "wasm", report: false });
// Everything below is about the fused path: it must be on, or these tests test nothing.
assert.ok(fusedOpsActive(), "the fused ops are not active (wasm with the native addon; run `npm run native`)");

const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
const binit = (s: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: s });

/** Runs `f` with the native addon (and so the fused ops) on or off. */
function native<T>(on: boolean, f: () => T): T {
  setNativeKernelsEnabled(on);
  try {
    return f();
  } finally {
    setNativeKernelsEnabled(true);
  }
}

/** Outputs, loss and gradients of every trainable variable, as plain numbers. */
function run(model: tf.LayersModel, x: tf.Tensor, forward: (x: tf.Tensor) => tf.Tensor[]): number[][] {
  return tf.tidy(() => {
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    // A loss weighting each output and element differently, so every gradient is generic.
    const loss = () =>
      forward(x)
        .map((o, i) => tf.sum(tf.mul(tf.square(o), tf.add(tf.range(0, o.shape[1] as number), i + 1))) as tf.Scalar)
        .reduce((a, b) => tf.add(a, b));
    const outs = forward(x).map((o) => Array.from(o.dataSync()));
    const { value, grads } = tf.variableGrads(loss, vars);
    return [...outs, [value.dataSync()[0] as number], ...vars.map((v) => Array.from((grads[v.name] as tf.Tensor).dataSync()))];
  });
}

function close(a: number[], b: number[], rel: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const scale = Math.max(1, ...b.map(Math.abs));
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= rel * scale, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

/** Kernel names of `f`'s run. */
async function kernels(f: () => void): Promise<string[]> {
  return (await tf.profile(f)).kernels.map((k) => k.name);
}

test("fused direct forward: outputs and gradients equal model.apply's (same bits for relu and linear)", async () => {
  const x = tf.randomNormal([33, 5], 0, 2, "float32", 3);
  const cases: [string, tf.LayersModel, boolean][] = [];
  for (const [i, act] of (["relu", "linear", "sigmoid", "elu", "relu6", "tanh"] as const).entries()) {
    const m = tf.sequential({
      layers: [
        tf.layers.dense({ inputShape: [5], units: 7, activation: act, kernelInitializer: init(i), biasInitializer: binit(i) }),
        tf.layers.dense({ units: 6, activation: act, kernelInitializer: init(i + 10), biasInitializer: binit(i + 10) }),
        // Without a bias: tf.fused.matMul as before.
        tf.layers.dense({ units: 4, activation: act, useBias: false, kernelInitializer: init(i + 20) }),
        tf.layers.dense({ units: 3, kernelInitializer: init(i + 30), biasInitializer: binit(i + 30) }),
      ],
    });
    cases.push([act, m, act === "relu" || act === "linear"]);
  }
  // A functional two-head model (trunk read by both heads).
  const input = tf.input({ shape: [5] });
  const h = tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(41), biasInitializer: binit(41) }).apply(input) as tf.SymbolicTensor;
  const h2 = tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(42), biasInitializer: binit(42) }).apply(h) as tf.SymbolicTensor;
  const heads = [
    tf.layers.dense({ units: 2, kernelInitializer: init(43), biasInitializer: binit(43) }).apply(h2) as tf.SymbolicTensor,
    tf.layers.dense({ units: 1, kernelInitializer: init(44), biasInitializer: binit(44) }).apply(h2) as tf.SymbolicTensor,
  ];
  cases.push(["two-head relu", tf.model({ inputs: input, outputs: heads }), true]);

  for (const [name, model, exact] of cases) {
    const direct = directForward(model);
    assert.ok(direct, `directForward refused ${name}`);
    const before = tf.memory().numTensors;
    const viaApply = run(model, x, (t) => {
      const r = model.apply(t, { training: true }) as tf.Tensor | tf.Tensor[];
      return Array.isArray(r) ? r : [r];
    });
    const viaDirect = run(model, x, (t) => direct(t, true));
    assert.equal(tf.memory().numTensors, before, `${name}: tensors leaked`);
    viaDirect.forEach((d, i) => {
      if (exact) assert.deepEqual(d, viaApply[i], `${name} part ${i}: same bits`);
      else close(d, viaApply[i] as number[], 1e-6, `${name} part ${i}`);
    });
    // The fused op is what ran: one per Dense layer with a bias, none with the addon off.
    const withBias = model.layers.filter((l) => (l as unknown as { bias: unknown }).bias).length;
    const step = () => void tf.tidy(() => tf.variableGrads(() => tf.sum(direct(x, true)[0] as tf.Tensor) as tf.Scalar));
    assert.equal((await kernels(step)).filter((k) => k.startsWith("JointlyDense")).length, withBias, `${name}: fused Dense ops`);
    setNativeKernelsEnabled(false);
    try {
      assert.equal((await kernels(step)).filter((k) => k.startsWith("JointlyDense")).length, 0, `${name}: fused Dense ops with the addon off`);
    } finally {
      setNativeKernelsEnabled(true);
    }
    model.dispose();
  }
  x.dispose();
});

/** The bench's W1 shape: a 32-64-64 relu trunk with a 2-class head and a regression head. */
function w1Model(seed: number): tf.LayersModel {
  const input = tf.input({ shape: [32] });
  const h1 = tf.layers.dense({ units: 64, activation: "relu", kernelInitializer: init(seed), biasInitializer: binit(seed) }).apply(input) as tf.SymbolicTensor;
  const h2 = tf.layers.dense({ units: 64, activation: "relu", kernelInitializer: init(seed + 1), biasInitializer: binit(seed + 1) }).apply(h1) as tf.SymbolicTensor;
  const cls = tf.layers.dense({ units: 2, name: `cls_${seed}`, kernelInitializer: init(seed + 2), biasInitializer: binit(seed + 2) }).apply(h2) as tf.SymbolicTensor;
  const reg = tf.layers.dense({ units: 1, name: `reg_${seed}`, kernelInitializer: init(seed + 3), biasInitializer: binit(seed + 3) }).apply(h2) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: [cls, reg] });
}

test("fused direct forward: a W1-like training step runs far fewer kernels, same weights as model.apply, no leaks", async () => {
  const x = tf.randomNormal([64, 32], 0, 1, "float32", 5);
  const y = { cls: tf.randomUniform([64], 0, 2, "int32", 6), reg: tf.randomNormal([64, 1], 0, 1, "float32", 7) };
  const make = (direct: boolean, seed: number) => {
    const model = w1Model(seed);
    const trainer = new JointTrainer({
      model: trainable(model, undefined, { direct }),
      tasks: [
        { name: "cls", output: model.outputNames[0] as string, loss: "softmaxCrossEntropy", weight: 0.7 },
        { name: "reg", output: model.outputNames[1] as string, loss: "mse", weight: 0.3 },
      ],
      optimizer: fusedAdam(0.01),
    });
    return { model, trainer };
  };
  const { model, trainer } = make(true, 100);
  for (let i = 0; i < 3; i++) trainer.step(x, y);
  const count = async (on: boolean): Promise<number> => {
    setNativeKernelsEnabled(on);
    try {
      return (await kernels(() => void trainer.step(x, y))).length;
    } finally {
      setNativeKernelsEnabled(true);
    }
  };
  const fused = await count(true);
  const composite = await count(false);
  const viaApply = make(false, 200);
  for (let i = 0; i < 3; i++) viaApply.trainer.step(x, y);
  const applied = (await kernels(() => void viaApply.trainer.step(x, y))).length;
  viaApply.model.dispose();
  // Measured with tfjs 4.22: 53 kernels fused, 91 through model.apply (tf.fused.matMul, fused
  // losses), 134 with the addon off. tf.fused.matMul runs unfused under a tape (matMul, add, relu)
  // and its relu gradient is ~9 kernels; the fused op is 1 forward and 4 backward.
  assert.ok(fused <= 56, `${fused} kernels per step with the fused ops`);
  assert.ok(applied - fused >= 30, `${applied} kernels through model.apply against ${fused} fused`);
  assert.ok(composite - fused >= 70, `${composite} kernels with the addon off against ${fused} fused`);
  assert.equal((await kernels(() => void trainer.step(x, y))).filter((k) => k.startsWith("JointlyDense")).length, 4);
  // Tensors flat across steps.
  const at = tf.memory().numTensors;
  for (let i = 0; i < 10; i++) trainer.step(x, y);
  assert.equal(tf.memory().numTensors, at, "tensors leaked across steps");
  // Same weights after 20 steps as through model.apply (same seeds): relu and linear only, so same bits.
  const ref = make(false, 100);
  const fresh = make(true, 100);
  for (let i = 0; i < 20; i++) {
    ref.trainer.step(x, y);
    fresh.trainer.step(x, y);
  }
  const a = fresh.model.getWeights().map((t) => Array.from(t.dataSync()));
  const b = ref.model.getWeights().map((t) => Array.from(t.dataSync()));
  a.forEach((w, i) => close(w, b[i] as number[], 1e-6, `weight ${i}`));
  for (const m of [model, ref.model, fresh.model]) m.dispose();
  tf.dispose([x, y.cls, y.reg]);
});

test("fused direct forward: second-order gradients (nested tapes) keep tf.fused.matMul and match model.apply", () => {
  const model = w1Model(300);
  const direct = directForward(model)!;
  const x = tf.randomNormal([8, 32], 0, 1, "float32", 9);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const first = vars[0] as tf.Variable;
  // A penalty on the gradient of the outputs' squares with respect to the first kernel, differentiated
  // over every variable: the forward pass runs under two tapes.
  const run = (forward: () => tf.Tensor[]): number[][] =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => {
        const inner = tf.variableGrads(() => forward().map((o) => tf.sum(tf.square(o)) as tf.Scalar).reduce((a, b) => tf.add(a, b)), [first]);
        return tf.add(inner.value, tf.sum(tf.square(inner.grads[first.name] as tf.Tensor))) as tf.Scalar;
      }, vars);
      return [[value.dataSync()[0] as number], ...vars.map((v) => Array.from((grads[v.name] as tf.Tensor).dataSync()))];
    });
  const viaDirect = run(() => direct(x, true));
  const viaApply = run(() => model.apply(x, { training: true }) as tf.Tensor[]);
  viaDirect.forEach((d, i) => close(d, viaApply[i] as number[], 1e-6, `second order part ${i}`));
  x.dispose();
  model.dispose();
});
