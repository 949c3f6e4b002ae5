import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { FusedAdam, FusedSGD, fusedAdam, fusedSgd } from "../src/optimizers/index.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { optimizerGroups, setLearningRate } from "../src/train/optimizer-groups.js";
import { initBackend } from "../src/backend/init.js";
import { activeNative, setNativeKernelsEnabled } from "../src/backend/native.js";

await initBackend({ backend: "wasm", report: false });

/** Absolute tolerance on every parameter and slot value (results are expected bit-identical; this is the bound asserted). */
const TOL = 1e-6;

let uid = 0;

/** A 6-16-16-3 MLP as raw variables (names unique to this copy), identical values for a given seed. */
function mlp(seed: number, tag: string): tf.Variable[] {
  const n = ++uid;
  const shapes: [number, number][] = [[6, 16], [16, 16], [16, 3]];
  return tf.tidy(() =>
    shapes.flatMap(([i, o], l) => [
      tf.variable(tf.randomUniform([i, o], -0.5, 0.5, "float32", seed + l), true, `${tag}_${n}_k${l}`),
      tf.variable(tf.randomUniform([o], -0.1, 0.1, "float32", seed + 10 + l), true, `${tag}_${n}_b${l}`),
    ]),
  );
}

const xData = tf.randomNormal([32, 6], 0, 1, "float32", 7);
const yData = tf.randomNormal([32, 3], 0, 1, "float32", 8);

function mlpLoss(vars: tf.Variable[]): () => tf.Scalar {
  return () => {
    let h: tf.Tensor = xData;
    for (let l = 0; l < 3; l++) {
      h = tf.add(tf.matMul(h as tf.Tensor2D, vars[2 * l] as tf.Tensor2D), vars[2 * l + 1]!);
      if (l < 2) h = tf.tanh(h);
    }
    return tf.mean(tf.squaredDifference(h, yData));
  };
}

/** One step: gradients of this copy's loss at its own weights, applied by `opt`. */
function step(vars: tf.Variable[], opt: tf.Optimizer): void {
  const { value, grads } = tf.variableGrads(mlpLoss(vars), vars);
  opt.applyGradients(grads);
  tf.dispose([value, ...Object.values(grads)]);
}

/** Largest absolute difference between two lists of tensors (same shapes), and how many elements differ at all. */
function compare(a: tf.Tensor[], b: tf.Tensor[]): { maxAbs: number; differing: number } {
  assert.equal(a.length, b.length, "tensor list lengths");
  let maxAbs = 0;
  let differing = 0;
  a.forEach((t, i) => {
    assert.deepEqual(t.shape, b[i]!.shape);
    const x = t.dataSync();
    const y = b[i]!.dataSync();
    for (let k = 0; k < x.length; k++) {
      const d = Math.abs(x[k]! - y[k]!);
      if (d > maxAbs) maxAbs = d;
      if (x[k] !== y[k]) differing++;
    }
  });
  return { maxAbs, differing };
}

async function slotTensors(opt: tf.Optimizer): Promise<tf.Tensor[]> {
  const [iterations, ...slots] = await opt.getWeights();
  iterations!.tensor.dispose();
  return slots.map((w) => w.tensor);
}

/** Runs `body` with the native addon on or off (the JS loop), then turns it back on. */
async function withNative<T>(native: boolean, body: () => T | Promise<T>): Promise<T> {
  setNativeKernelsEnabled(native);
  try {
    if (native) assert.ok(activeNative() !== undefined, "the native addon is built (npm run native) and loads");
    return await body();
  } finally {
    setNativeKernelsEnabled(true);
  }
}

for (const native of [false, true]) test(`FusedAdam on wasm (${native ? "native loop" : "JS loop"}): 50 steps give tf.train.adam's parameters and slots, bit for bit, on the in-place path`, () => withNative(native, async () => {
  assert.equal(tf.getBackend(), "wasm");
  const a = mlp(1, "stockA");
  const b = mlp(1, "fusedA");
  const stock = tf.train.adam(0.01);
  const fused = fusedAdam(0.01);
  for (let s = 0; s < 50; s++) {
    step(a, stock);
    step(b, fused);
  }
  const params = compare(a, b);
  assert.ok(params.maxAbs <= TOL, `max |param diff| ${params.maxAbs}`);
  const slots = compare(await slotTensors(stock), await slotTensors(fused));
  assert.ok(slots.maxAbs <= TOL, `max |slot diff| ${slots.maxAbs}`);
  console.log(`  adam: max |param diff| ${params.maxAbs} (${params.differing} elements differ), max |slot diff| ${slots.maxAbs}`);
  assert.equal(params.differing + slots.differing, 0, "same float32 operations in the same order as tf.train.adam: the same bits");
  assert.equal(fused.iterations, 50);
  assert.deepEqual(fused.counts, { inPlace: 50 * a.length, copied: 0, composite: 0, large: 0 });
  stock.dispose();
  fused.dispose();
  tf.dispose([...a, ...b]);
}));

for (const native of [false, true]) test(`variables above maxFusedElements ${native ? "take the native loop" : "take the stock ops without the native addon"} and still match tf.train.adam / tf.train.sgd`, () => {
  setNativeKernelsEnabled(native);
  if (native) assert.ok(activeNative() !== undefined, "the native addon is built (npm run native) and loads");
  else assert.equal(activeNative(), undefined);
  // A 128x128 kernel (16384 elements) is above both default thresholds; the small bias stays fused.
  const make = (tag: string): tf.Variable[] =>
    tf.tidy(() => [
      tf.variable(tf.randomUniform([128, 128], -0.1, 0.1, "float32", 61), true, `${tag}_${++uid}_k`),
      tf.variable(tf.randomUniform([128], -0.1, 0.1, "float32", 62), true, `${tag}_${uid}_b`),
    ]);
  const x = tf.randomNormal([16, 128], 0, 1, "float32", 63);
  const y = tf.randomNormal([16, 128], 0, 1, "float32", 64);
  const lossOf = (v: tf.Variable[]) => (): tf.Scalar => tf.mean(tf.squaredDifference(tf.tanh(tf.add(tf.matMul(x, v[0] as tf.Tensor2D), v[1]!)), y));
  for (const [label, stock, fused] of [["adam", tf.train.adam(0.01), fusedAdam(0.01)], ["sgd", tf.train.sgd(0.05), fusedSgd(0.05)]] as const) {
    assert.ok(128 * 128 > fused.maxFusedElements && 128 <= fused.maxFusedElements, `${label}: thresholds put the kernel above and the bias below`);
    const a = make(`lgStock_${label}`);
    const b = make(`lgFused_${label}`);
    for (let s = 0; s < 20; s++) {
      for (const [vars, opt] of [[a, stock], [b, fused]] as [tf.Variable[], tf.Optimizer][]) {
        const { value, grads } = tf.variableGrads(lossOf(vars), vars);
        opt.applyGradients(grads);
        tf.dispose([value, ...Object.values(grads)]);
      }
    }
    const diff = compare(a, b);
    assert.ok(diff.maxAbs <= TOL, `${label}: max |param diff| ${diff.maxAbs}`);
    const expected = native ? { inPlace: 40, copied: 0, composite: 0, large: 0 } : { inPlace: 20, copied: 0, composite: 0, large: 20 };
    assert.deepEqual(fused.counts, expected, `${label}: ${native ? "kernel and bias fused natively" : "kernel on the stock path, bias fused"}`);
    stock.dispose();
    fused.dispose();
    tf.dispose([...a, ...b]);
  }
  tf.dispose([x, y]);
  setNativeKernelsEnabled(true);
});

test("after an in-place update, XNNPACK's cached matmul operator sees the new weights", () => {
  const [k, ...rest] = mlp(10, "cache") as [tf.Variable, ...tf.Variable[]];
  tf.dispose(rest);
  const x = tf.randomNormal([64, 6], 0, 1, "float32", 11); // batch 1, no transpose: the cached XNNPACK path
  const fresh = () => tf.tidy(() => Array.from(tf.matMul(x, tf.tensor2d(k.dataSync(), [6, 16])).dataSync()));
  const viaVariable = () => tf.tidy(() => Array.from(tf.matMul(x, k as tf.Tensor2D).dataSync()));
  assert.deepEqual(viaVariable(), fresh()); // caches an operator keyed on k's buffer
  const opt = fusedSgd(0.5);
  const g = tf.onesLike(k);
  opt.applyGradients([{ name: k.name, tensor: g }]);
  assert.equal(opt.counts.inPlace, 1);
  assert.deepEqual(viaVariable(), fresh());
  opt.dispose();
  tf.dispose([k, x, g]);
});

for (const native of [false, true]) test(`FusedSGD on wasm (${native ? "native loop" : "JS loop"}): 50 steps give tf.train.sgd's parameters, bit for bit, in place`, () => withNative(native, () => {
  const a = mlp(2, "stockS");
  const b = mlp(2, "fusedS");
  const stock = tf.train.sgd(0.05);
  const fused = fusedSgd(0.05);
  for (let s = 0; s < 50; s++) {
    step(a, stock);
    step(b, fused);
  }
  const params = compare(a, b);
  assert.ok(params.maxAbs <= TOL, `max |param diff| ${params.maxAbs}`);
  console.log(`  sgd: max |param diff| ${params.maxAbs} (${params.differing} elements differ)`);
  assert.equal(params.differing, 0, "same float32 operations as tf.train.sgd: the same bits");
  assert.deepEqual(fused.counts, { inPlace: 50 * a.length, copied: 0, composite: 0, large: 0 });
  stock.dispose();
  fused.dispose();
  tf.dispose([...a, ...b]);
}));

test("a learning-rate change mid-run is honoured (Adam via the field, SGD via setLearningRate)", () => {
  const [a1, b1, a2, b2] = [mlp(3, "lrStockA"), mlp(3, "lrFusedA"), mlp(4, "lrStockS"), mlp(4, "lrFusedS")] as [tf.Variable[], tf.Variable[], tf.Variable[], tf.Variable[]];
  const opts: [tf.Optimizer, tf.Optimizer, tf.Optimizer, tf.Optimizer] = [tf.train.adam(0.01), fusedAdam(0.01), tf.train.sgd(0.05), fusedSgd(0.05)];
  // A copy with a fused optimizer that never changes rate, to prove the change had an effect.
  const c = mlp(3, "lrConst");
  const constant = fusedAdam(0.01);
  for (let s = 0; s < 40; s++) {
    if (s === 20) for (const [o, lr] of [[opts[0], 0.002], [opts[1], 0.002], [opts[2], 0.2], [opts[3], 0.2]] as const) setLearningRate(o, lr);
    step(a1, opts[0]);
    step(b1, opts[1]);
    step(a2, opts[2]);
    step(b2, opts[3]);
    step(c, constant);
  }
  assert.ok(compare(a1, b1).maxAbs <= TOL, "adam after rate change");
  assert.ok(compare(a2, b2).maxAbs <= TOL, "sgd after rate change");
  assert.ok(compare(b1, c).maxAbs > 1e-4, "the rate change altered the trajectory");
  assert.equal((opts[1] as FusedAdam).learningRate, 0.002);
  for (const o of [...opts, constant]) o.dispose();
  tf.dispose([...a1, ...b1, ...a2, ...b2, ...c]);
});

/** Two-head Layers model with seeded initialisers: identical weights for the same seed. */
function twoHead(seed: number) {
  const n = ++uid;
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [6] });
  const trunk = tf.layers.dense({ units: 16, activation: "relu", name: `ft_trunk_${n}`, kernelInitializer: init(seed) });
  const ha = tf.layers.dense({ units: 3, name: `ft_ha_${n}`, kernelInitializer: init(seed + 1) });
  const hb = tf.layers.dense({ units: 1, name: `ft_hb_${n}`, kernelInitializer: init(seed + 2) });
  const h = trunk.apply(input) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [ha.apply(h) as tf.SymbolicTensor, hb.apply(h) as tf.SymbolicTensor] });
  const [oa, ob] = model.outputNames as [string, string];
  const tasks = [
    { name: "a", output: oa, loss: "softmaxCrossEntropy" as const },
    { name: "b", output: ob, loss: "mse" as const },
  ];
  return { model, trunk, ha, hb, tasks };
}

const ya = tf.argMax(tf.slice(xData, [0, 0], [32, 3]), 1);
const yb = tf.sum(xData, 1, true);
const weightsOf = (m: tf.LayersModel): tf.Tensor[] => m.trainableWeights.map((w) => w.read());

test("JointTrainer with fusedAdam(1e-3) matches tf.train.adam(1e-3) after 30 steps", () => {
  const s = twoHead(21);
  const f = twoHead(21);
  assert.equal(compare(weightsOf(s.model), weightsOf(f.model)).maxAbs, 0, "same initial weights");
  const stockOpt = tf.train.adam(1e-3);
  const fusedOpt = fusedAdam(1e-3);
  const ts = new JointTrainer({ model: s.model, tasks: s.tasks, optimizer: stockOpt });
  const tfu = new JointTrainer({ model: f.model, tasks: f.tasks, optimizer: fusedOpt });
  for (let i = 0; i < 30; i++) {
    const rs = ts.step(xData, { a: ya, b: yb });
    const rf = tfu.step(xData, { a: ya, b: yb });
    assert.ok(Math.abs(rs.total - rf.total) <= TOL, `step ${i + 1}: totals ${rs.total} vs ${rf.total}`);
  }
  assert.ok(compare(weightsOf(s.model), weightsOf(f.model)).maxAbs <= TOL);
  assert.equal(fusedOpt.counts.composite, 0);
  assert.ok(fusedOpt.counts.inPlace > 0);
  stockOpt.dispose();
  fusedOpt.dispose();
  s.model.dispose();
  f.model.dispose();
});

test("optimizer groups: fused Adam trunk + fused SGD heads with a schedule match the stock optimizers", () => {
  const s = twoHead(31);
  const f = twoHead(31);
  const groups = (m: ReturnType<typeof twoHead>, adam: tf.Optimizer, sgdA: tf.Optimizer, sgdB: tf.Optimizer) =>
    optimizerGroups({
      trunk: { variables: m.trunk, optimizer: adam },
      a: { variables: m.ha, optimizer: sgdA, schedule: (t) => (t < 10 ? 0.05 : 0.01) },
      b: { variables: [m.hb], optimizer: sgdB },
    });
  const stockOpts = [tf.train.adam(0.01), tf.train.sgd(0.05), tf.train.sgd(0.02)] as const;
  const fusedOpts = [fusedAdam(0.01), fusedSgd(0.05), fusedSgd(0.02)] as const;
  const ts = new JointTrainer({ model: s.model, tasks: s.tasks, optimizer: groups(s, ...stockOpts) });
  const tfu = new JointTrainer({ model: f.model, tasks: f.tasks, optimizer: groups(f, ...fusedOpts) });
  for (let i = 0; i < 25; i++) {
    ts.step(xData, { a: ya, b: yb });
    tfu.step(xData, { a: ya, b: yb });
  }
  assert.ok(compare(weightsOf(s.model), weightsOf(f.model)).maxAbs <= TOL);
  assert.deepEqual(tfu.learningRates(), { trunk: 0.01, a: 0.01, b: 0.02 });
  for (const o of [...stockOpts, ...fusedOpts]) o.dispose();
  s.model.dispose();
  f.model.dispose();
});

test("no tensor or byte growth: tf.memory() at step 10 equals step 200 (JointTrainer + fusedAdam)", () => {
  const m = twoHead(41);
  const opt = fusedAdam(1e-3);
  const trainer = new JointTrainer({ model: m.model, tasks: m.tasks, optimizer: opt });
  let at10 = { numTensors: -1, numBytes: -1 };
  for (let i = 1; i <= 200; i++) {
    trainer.step(xData, { a: ya, b: yb });
    if (i === 10) at10 = { numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes };
  }
  assert.deepEqual({ numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes }, at10);
  opt.dispose();
  m.model.dispose();
});

test("dispose frees the slots (two per variable) and later use is an error", () => {
  const vars = mlp(5, "disp");
  const before = tf.memory();
  const opt = fusedAdam(0.01);
  step(vars, opt);
  const bytes = vars.reduce((s, v) => s + v.size * 4, 0);
  assert.equal(tf.memory().numTensors - before.numTensors, 2 * vars.length);
  assert.equal(tf.memory().numBytes - before.numBytes, 2 * bytes);
  opt.dispose();
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
  assert.throws(() => step(vars, opt), /FusedAdam.applyGradients: this optimizer was disposed/);
  tf.dispose(vars);
});

test("a variable sharing memory with another tensor (assigned a reshape view) is updated without touching that tensor", async () => {
  const base = tf.randomUniform([96], -0.5, 0.5, "float32", 51); // viewed as the [6,16] kernel of layer 0
  const baseCopy = Array.from(base.dataSync());
  for (const [label, make] of [["adam", () => [tf.train.adam(0.01), fusedAdam(0.01)]], ["sgd", () => [tf.train.sgd(0.05), fusedSgd(0.05)]]] as const) {
    const a = mlp(6, `shStock_${label}`);
    const b = mlp(6, `shFused_${label}`);
    const view = tf.reshape(base, [6, 16]);
    a[0]!.assign(view);
    b[0]!.assign(view);
    view.dispose();
    const [stock, fused] = make() as [tf.Optimizer, FusedAdam | FusedSGD];
    for (let s = 0; s < 5; s++) {
      step(a, stock);
      step(b, fused);
    }
    assert.deepEqual(Array.from(base.dataSync()), baseCopy, `${label}: the shared tensor kept its values`);
    assert.ok(compare(a, b).maxAbs <= TOL, `${label}: same parameters as stock`);
    // First step copies the shared kernel into its own buffer; from then on it is private and updated in place.
    assert.equal(fused.counts.copied, 1, `${label}: one copied update`);
    assert.equal(fused.counts.inPlace, 5 * b.length - 1);
    stock.dispose();
    fused.dispose();
    tf.dispose([...a, ...b]);
  }
  // A reshape of a slot from getWeights() shares the slot's buffer (a wasm clone would copy): it must keep the old moments.
  const v = mlp(7, "slotShare");
  const opt = fusedAdam(0.01);
  step(v, opt);
  const weights = await opt.getWeights();
  weights[0]!.tensor.dispose(); // the iterations scalar made by getWeights
  const snap = tf.reshape(weights[1]!.tensor, [-1]);
  const snapValues = Array.from(snap.dataSync());
  step(v, opt);
  assert.deepEqual(Array.from(snap.dataSync()), snapValues);
  assert.equal(opt.counts.copied, 1);
  snap.dispose();
  opt.dispose();
  tf.dispose([...v, base]);
});

test("setWeights takes stock Adam's getWeights() mid-run and continues identically", async () => {
  const a = mlp(8, "swStock");
  const b = mlp(8, "swFused");
  const stock = tf.train.adam(0.01);
  for (let s = 0; s < 7; s++) step(a, stock);
  tf.tidy(() => b.forEach((v, i) => v.assign(a[i]!)));
  const fused = fusedAdam(0.01);
  const saved = await stock.getWeights();
  await fused.setWeights(saved);
  saved[0]!.tensor.dispose();
  assert.equal(fused.iterations, 7);
  for (let s = 0; s < 10; s++) {
    step(a, stock);
    step(b, fused);
  }
  assert.ok(compare(a, b).maxAbs <= TOL);
  assert.ok(compare(await slotTensors(stock), await slotTensors(fused)).maxAbs <= TOL);
  const again = await stock.getWeights();
  await assert.rejects(fusedSgd(0.1).setWeights(again), /FusedSGD.setWeights: SGD has no weights besides the iterations count/);
  again[0]!.tensor.dispose();
  stock.dispose();
  fused.dispose();
  tf.dispose([...a, ...b]);
});

test("errors name the thing and the value", () => {
  assert.throws(() => fusedAdam(Number.NaN), /FusedAdam: learningRate must be a finite number, but got NaN/);
  assert.throws(() => fusedAdam(0.01, 1), /FusedAdam: beta1 must be a number in \[0, 1\), but got 1/);
  assert.throws(() => fusedSgd(0.1).applyGradients({ no_such_variable_xyz: tf.scalar(1) }), /no variable named "no_such_variable_xyz"/);
});

test("on the cpu backend the composite path gives the stock results (then back to wasm)", async () => {
  await tf.setBackend("cpu");
  try {
    const a = mlp(9, "cpuStock");
    const b = mlp(9, "cpuFused");
    const [sa, fa, ss, fs] = [tf.train.adam(0.01), fusedAdam(0.01), tf.train.sgd(0.05), fusedSgd(0.05)];
    for (let s = 0; s < 20; s++) {
      step(a, s % 2 ? ss : sa);
      step(b, s % 2 ? fs : fa);
    }
    assert.ok(compare(a, b).maxAbs <= TOL);
    assert.deepEqual(fa.counts, { inPlace: 0, copied: 0, composite: 10 * b.length, large: 0 });
    for (const o of [sa, fa, ss, fs]) o.dispose();
    tf.dispose([...a, ...b]);
  } finally {
    await tf.setBackend("wasm");
  }
});
