import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { registerWasmFastKernels } from "../src/backend/wasm-fast-kernels.js";
import { activeNative, setNativeKernelsEnabled } from "../src/backend/native.js";
import { fusedAdam } from "../src/backend/fused-optimizers.js";
import { Rng } from "../src/data/random.js";

const rng = new Rng(99);

before(async () => {
  await tf.setBackend("wasm");
  await tf.ready();
});

interface Internals {
  dataIdMap: { get(id: object): { memoryOffset: number; refCount: number } | undefined };
}
const internals = (): Internals => tf.backend() as unknown as Internals;

test("Identity shares the buffer: a clone has the same memory, outlives its source, and nothing leaks", () => {
  const h = registerWasmFastKernels();
  try {
    const before = tf.memory();
    const x = tf.tensor2d([[1, 2], [3, 4]]);
    const c = tf.clone(x);
    assert.equal(internals().dataIdMap.get(c.dataId)?.memoryOffset, internals().dataIdMap.get(x.dataId)?.memoryOffset);
    assert.equal(internals().dataIdMap.get(x.dataId)?.refCount, 2);
    x.dispose();
    assert.deepEqual(Array.from(c.dataSync()), [1, 2, 3, 4]);
    c.dispose();
    const after = tf.memory();
    assert.equal(after.numTensors, before.numTensors);
    assert.equal(after.numBytes, before.numBytes);
    assert.equal((after as unknown as { numDataBuffers: number }).numDataBuffers, (before as unknown as { numDataBuffers: number }).numDataBuffers);
  } finally {
    h.restore();
  }
});

test("a fused optimizer never writes into a buffer a clone still shares", () => {
  const h = registerWasmFastKernels();
  try {
    const v = tf.variable(tf.tensor1d([1, 2, 3]), true, `shared_${rng.next()}`);
    const snapshot = tf.clone(v); // shares v's buffer through the sharing Identity
    const g = tf.tensor1d([0.5, -0.5, 1]);
    const opt = fusedAdam(0.1);
    opt.applyGradients({ [v.name]: g });
    assert.deepEqual(Array.from(snapshot.dataSync()), [1, 2, 3], "the clone keeps the old values");
    assert.notDeepEqual(Array.from(v.dataSync()), [1, 2, 3], "the variable moved");
    assert.equal(opt.counts.copied, 1);
    tf.dispose([v, snapshot, g]);
    opt.dispose();
  } finally {
    h.restore();
  }
});

/** Stock Sum results for a list of cases, computed with the stock kernel in place. */
function sums(cases: { shape: number[]; data: Float32Array; axis: number | number[]; keepDims: boolean }[]): { shape: number[]; data: Float32Array }[] {
  return cases.map((c) =>
    tf.tidy(() => {
      const r = tf.sum(tf.tensor(c.data, c.shape), c.axis, c.keepDims);
      return { shape: r.shape, data: r.dataSync() as Float32Array };
    }),
  );
}

test("Sum over leading axes (native) gives the stock kernel's bits; other reductions are the stock kernel's", () => {
  assert.ok(activeNative() !== undefined, "the native addon is built (npm run native) and loads");
  const cases: { shape: number[]; data: Float32Array; axis: number | number[]; keepDims: boolean }[] = [];
  const shapes = [[1024, 512], [7, 3], [1, 9], [5, 1], [4, 3, 6], [2, 3, 4, 5], [0, 4], [6, 0]];
  for (const shape of shapes) {
    const n = shape.reduce((p, d) => p * d, 1);
    const data = Float32Array.from({ length: n }, () => rng.next() * 4 - 2);
    const rank = shape.length;
    const axesList: (number | number[])[] = [0, -rank, [0]];
    if (rank >= 3) axesList.push([0, 1], [1, 0], 1, [1, 2]);
    if (rank >= 2) axesList.push(rank - 1, [...Array(rank).keys()]);
    for (const axis of axesList) for (const keepDims of [false, true]) cases.push({ shape, data, axis, keepDims });
  }
  const stock = sums(cases);
  const h = registerWasmFastKernels();
  try {
    const fast = sums(cases);
    cases.forEach((c, i) => {
      const what = `sum of [${c.shape}] over ${JSON.stringify(c.axis)} keepDims=${c.keepDims}`;
      assert.deepEqual(fast[i]!.shape, stock[i]!.shape, `${what}: shape`);
      // Summing zero rows: the stock kernel leaves its output uninitialised; the answer is zeros.
      const expected = c.data.length === 0 ? new Array<number>(stock[i]!.data.length).fill(0) : Array.from(stock[i]!.data);
      assert.deepEqual(Array.from(fast[i]!.data), expected, `${what}: values`);
    });
    // And against a float64 reference for the big bias-gradient shape.
    const big = cases[0]!;
    const ref = new Float64Array(512);
    for (let r = 0; r < 1024; r++) for (let j = 0; j < 512; j++) ref[j] += big.data[r * 512 + j]!;
    fast[0]!.data.forEach((v, j) => assert.ok(Math.abs(v - ref[j]!) < 1e-3, `column ${j}: ${v} vs ${ref[j]}`));
  } finally {
    h.restore();
  }
});

test("gradients of a Dense model with relu are the same with and without the fast kernels", () => {
  const x = tf.randomNormal([64, 12], 0, 1, "float32", 5);
  const y = tf.randomNormal([64, 3], 0, 1, "float32", 6);
  const k1 = tf.variable(tf.randomNormal([12, 16], 0, 0.3, "float32", 7));
  const b1 = tf.variable(tf.randomNormal([16], 0, 0.1, "float32", 8));
  const k2 = tf.variable(tf.randomNormal([16, 3], 0, 0.3, "float32", 9));
  const b2 = tf.variable(tf.zeros([3]));
  const vars = [k1, b1, k2, b2];
  const grads = (): Float32Array[] => {
    const { value, grads } = tf.variableGrads(() => {
      const h = tf.fused.matMul({ a: x as tf.Tensor2D, b: k1 as tf.Tensor2D, bias: b1, activation: "relu" });
      const o = tf.fused.matMul({ a: h, b: k2 as tf.Tensor2D, bias: b2 });
      return tf.mean(tf.squaredDifference(o, y));
    }, vars);
    const out = vars.map((v) => grads[v.name]!.dataSync() as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  };
  setNativeKernelsEnabled(false);
  const stock = grads();
  setNativeKernelsEnabled(true);
  const h = registerWasmFastKernels();
  try {
    const before = tf.memory().numTensors;
    const fast = grads();
    for (let i = 0; i < 5; i++) grads();
    assert.equal(tf.memory().numTensors, before, "no tensor growth across gradient steps");
    stock.forEach((s, i) => s.forEach((v, j) => assert.ok(Math.abs(v - fast[i]![j]!) <= 1e-6, `variable ${i} element ${j}: ${v} vs ${fast[i]![j]}`)));
  } finally {
    h.restore();
    tf.dispose([x, y, ...vars]);
  }
});
