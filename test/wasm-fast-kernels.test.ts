import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { registerWasmKernels } from "../src/backend/kernels/register-all.js";
import { unsortedSegmentSumKernel } from "../src/backend/kernels/UnsortedSegmentSum.js";
import { activeNative, setNativeKernelsEnabled } from "../src/backend/native.js";
import { fusedAdam } from "../src/optimizers/index.js";
import { Rng } from "../src/data/random.js";

const rng = new Rng(99);

before(async () => {
  await tf.setBackend("wasm");
  await tf.ready();
  // tf.gather's gradient needs UnsortedSegmentSum, which stock tfjs-wasm lacks: registered here for
  // the whole file (stock and fast runs alike), outside the registrations the tests make and restore.
  tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSumKernel.make(undefined, undefined)! });
});

/** Registers only the overrides of src/backend/kernels/{Identity,Cast,Sum,GatherV2,Concat,SplitV}.ts. */
const registerFastKernels = () => registerWasmKernels({ only: ["Identity", "Cast", "Sum", "GatherV2", "Concat", "SplitV"] });

interface Internals {
  dataIdMap: { get(id: object): { memoryOffset: number; refCount: number } | undefined };
}
const internals = (): Internals => tf.backend() as unknown as Internals;

test("Identity shares the buffer: a clone has the same memory, outlives its source, and nothing leaks", () => {
  const h = registerFastKernels();
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
  const h = registerFastKernels();
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
  const h = registerFastKernels();
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
  const h = registerFastKernels();
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

test("Cast to the same dtype shares the buffer; a real cast still converts", () => {
  const h = registerFastKernels();
  try {
    const x = tf.tensor1d([1.5, -2.5, 3]);
    const same = tf.cast(x, "float32");
    assert.equal(internals().dataIdMap.get(same.dataId)?.memoryOffset, internals().dataIdMap.get(x.dataId)?.memoryOffset);
    const asInt = tf.cast(x, "int32");
    assert.deepEqual(Array.from(asInt.dataSync()), [1, -2, 3]);
    x.dispose();
    assert.deepEqual(Array.from(same.dataSync()), [1.5, -2.5, 3]);
    tf.dispose([same, asInt]);
  } finally {
    h.restore();
  }
});

/** Every value of a list of kernel results, with their shapes, computed once with the stock kernels and once with ours. */
function bothWays(f: () => tf.Tensor[]): { stock: { shape: number[]; data: number[] }[]; fast: { shape: number[]; data: number[] }[] } {
  const read = (): { shape: number[]; data: number[] }[] => tf.tidy(() => f().map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) })));
  const stock = read();
  const h = registerFastKernels();
  try {
    return { stock, fast: read() };
  } finally {
    h.restore();
  }
}

test("GatherV2 on axis 0 (native rows) equals the stock kernel for float32 and int32 tables and any index shape", () => {
  assert.ok(activeNative() !== undefined);
  const table = tf.randomNormal([50, 3, 4], 0, 1, "float32", 11);
  const intTable = tf.randomUniform([50, 7], -100, 100, "int32", 12);
  const ids = [tf.tensor1d([0, 49, 3, 3, 17], "int32"), tf.tensor2d([[1, 2], [48, 0], [5, 5]], [3, 2], "int32"), tf.scalar(7, "int32"), tf.tensor1d([], "int32")];
  const { stock, fast } = bothWays(() => ids.flatMap((i) => [tf.gather(table, i), tf.gather(table, i, -3), tf.gather(intTable, i), tf.gather(table, i, 1 % 1)]));
  assert.deepEqual(fast, stock);
  tf.dispose([table, intTable, ...ids]);
});

test("GatherV2 with an index outside the table names the index, its position and the table's shape", () => {
  const h = registerFastKernels();
  try {
    const table = tf.zeros([10, 4]);
    const ids = tf.tensor1d([1, 2, 10, 3], "int32");
    const before = tf.memory().numBytes;
    assert.throws(() => tf.gather(table, ids), /GatherV2: index 10 \(at position 2 of the indices\) is not in \[0, 9\] for a tensor of shape \[10,4\]/);
    const neg = tf.tensor1d([-1], "int32");
    assert.throws(() => tf.gather(table, neg), /GatherV2: index -1 \(at position 0/);
    assert.equal(tf.memory().numBytes, before + 4, "the failed outputs were freed (only `neg` was added)");
    tf.dispose([table, ids, neg]);
  } finally {
    h.restore();
  }
});

test("Concat and SplitV (native row blocks) equal the stock kernels on every axis, with empty parts and int32", () => {
  assert.ok(activeNative() !== undefined);
  const a = tf.randomNormal([4, 3, 5], 0, 1, "float32", 21);
  const b = tf.randomNormal([4, 2, 5], 0, 1, "float32", 22);
  const c = tf.zeros([4, 0, 5]);
  const e = tf.randomNormal([4, 3, 1], 0, 1, "float32", 23);
  const i1 = tf.randomUniform([6, 2], -9, 9, "int32", 24);
  const i2 = tf.randomUniform([6, 5], -9, 9, "int32", 25);
  const big = tf.randomNormal([1024, 144], 0, 1, "float32", 26);
  const { stock, fast } = bothWays(() => [
    tf.concat([a, b, c], 1),
    tf.concat([a, a], 0),
    tf.concat([a, e], 2),
    tf.concat([a, e], -1),
    tf.concat([i1, i2], 1),
    ...tf.split(big, [64, 64, 16], 1),
    ...tf.split(a, [1, 0, 2], 1),
    ...tf.split(a, 2, 0),
    ...tf.split(i2, [2, 3], 1),
    ...tf.split(a, [2, -1], 2),
  ]);
  assert.deepEqual(fast, stock);
  tf.dispose([a, b, c, e, i1, i2, big]);
});

test("embedding-style training step (gather, concat, their gradients) is the same with and without the fast kernels, with no leaks", () => {
  const users = tf.variable(tf.randomNormal([100, 8], 0, 0.1, "float32", 31));
  const items = tf.variable(tf.randomNormal([60, 8], 0, 0.1, "float32", 32));
  const k = tf.variable(tf.randomNormal([16, 1], 0, 0.3, "float32", 33));
  const u = tf.randomUniform([64], 0, 100, "int32", 34);
  const it = tf.randomUniform([64], 0, 60, "int32", 35);
  const y = tf.randomUniform([64, 1], 0, 1, "float32", 36);
  const vars = [users, items, k];
  const grads = (): number[][] =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => tf.losses.sigmoidCrossEntropy(y, tf.matMul(tf.concat([tf.gather(users, u), tf.gather(items, it)], 1), k)), vars);
      value.dispose();
      return vars.map((v) => Array.from(grads[v.name]!.dataSync()));
    });
  const stock = grads();
  const h = registerFastKernels();
  try {
    grads();
    const before = tf.memory().numTensors;
    const fast = grads();
    assert.equal(tf.memory().numTensors, before);
    stock.forEach((s, i) => s.forEach((v, j) => assert.ok(Math.abs(v - fast[i]![j]!) <= 1e-7, `variable ${i} element ${j}: ${v} vs ${fast[i]![j]}`)));
  } finally {
    h.restore();
    tf.dispose([...vars, u, it, y]);
  }
});
