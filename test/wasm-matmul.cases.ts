/**
 * The matmul override's agreement tests, shared by test/wasm-matmul.test.ts (products through the
 * native addon's BLAS) and test/wasm-matmul-xnnpack.test.ts (the addon switched off: products
 * through XNNPACK). Importing this file registers the tests; the importer picks the path first.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Rng } from "../src/data/random.js";
import { registerWasmKernels } from "../src/backend/kernels/register-all.js";

/** Registers only the two matmul overrides (src/backend/kernels/BatchMatMul.ts, _FusedMatMul.ts). */
const registerMatMulKernels = () => registerWasmKernels({ only: ["BatchMatMul", "_FusedMatMul"] });

// Seeded, so every run draws the same shapes and values.
const rng = new Rng(20240611);
const rand = (): number => rng.next();
const randInt = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const randData = (n: number): Float32Array => Float32Array.from({ length: n }, () => rand() * 2 - 1);
const size = (shape: number[]): number => shape.reduce((p, d) => p * d, 1);

type Activation = "linear" | "relu" | "relu6" | "elu" | "sigmoid" | "leakyrelu" | "prelu";
const ACTIVATIONS: Activation[] = ["relu", "linear", "elu", "relu6", "sigmoid", "leakyrelu", "prelu"];

interface Case {
  aShape: number[];
  bShape: number[];
  aData: Float32Array;
  bData: Float32Array;
  transposeA: boolean;
  transposeB: boolean;
  bias?: { shape: number[]; data: Float32Array };
  activation: Activation;
  prelu?: { shape: number[]; data: Float32Array };
  leakyreluAlpha: number;
}

/** Plain float64 reference: numpy-style batch broadcasting, bias per column, prelu tiled over the output. */
function reference(c: Case): { shape: number[]; data: Float64Array } {
  const ra = c.aShape.length;
  const rb = c.bShape.length;
  const M = c.transposeA ? c.aShape[ra - 1] : c.aShape[ra - 2];
  const K = c.transposeA ? c.aShape[ra - 2] : c.aShape[ra - 1];
  const N = c.transposeB ? c.bShape[rb - 2] : c.bShape[rb - 1];
  const aB = c.aShape.slice(0, -2);
  const bB = c.bShape.slice(0, -2);
  const rank = Math.max(aB.length, bB.length);
  const pa = [...new Array<number>(rank - aB.length).fill(1), ...aB];
  const pb = [...new Array<number>(rank - bB.length).fill(1), ...bB];
  const outB = pa.map((d, i) => Math.max(d, pb[i]));
  const total = size(outB);
  const out = new Float64Array(total * M * N);
  for (let t = 0; t < total; t++) {
    let rem = t;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rem % outB[d];
      rem = Math.floor(rem / outB[d]);
      ia += (pa[d] === 1 ? 0 : coord) * sa;
      ib += (pb[d] === 1 ? 0 : coord) * sb;
      sa *= pa[d];
      sb *= pb[d];
    }
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const av = c.transposeA ? c.aData[ia * K * M + k * M + i] : c.aData[ia * M * K + i * K + k];
          const bv = c.transposeB ? c.bData[ib * N * K + j * K + k] : c.bData[ib * K * N + k * N + j];
          acc += av * bv;
        }
        if (c.bias) acc += c.bias.data.length === 1 ? c.bias.data[0] : c.bias.data[j];
        const flat = t * M * N + i * N + j;
        out[flat] = activate(acc, c, flat);
      }
    }
  }
  return { shape: [...outB, M, N], data: out };
}

function activate(x: number, c: Case, flat: number): number {
  switch (c.activation) {
    case "linear":
      return x;
    case "relu":
      return Math.max(x, 0);
    case "relu6":
      return Math.min(Math.max(x, 0), 6);
    case "elu":
      return x > 0 ? x : Math.exp(x) - 1;
    case "sigmoid":
      return 1 / (1 + Math.exp(-x));
    case "leakyrelu":
      return x < 0 ? c.leakyreluAlpha * x : x;
    case "prelu": {
      const w = c.prelu!.data;
      return x < 0 ? w[flat % w.length] * x : x;
    }
  }
}

/** Runs a case with tf.matMul (plain, linear, no bias) or tf.fused.matMul on the current backend. */
function run(c: Case, fused: boolean): { shape: number[]; data: Float32Array } {
  return tf.tidy(() => {
    const a = tf.tensor(c.aData, c.aShape);
    const b = tf.tensor(c.bData, c.bShape);
    const y = fused
      ? tf.fused.matMul({
          a,
          b,
          transposeA: c.transposeA,
          transposeB: c.transposeB,
          bias: c.bias ? tf.tensor(c.bias.data, c.bias.shape) : undefined,
          activation: c.activation,
          preluActivationWeights: c.prelu ? tf.tensor(c.prelu.data, c.prelu.shape) : undefined,
          leakyreluAlpha: c.leakyreluAlpha,
        })
      : tf.matMul(a, b, c.transposeA, c.transposeB);
    const data = y.dataSync() as Float32Array;
    return { shape: y.shape, data: Float32Array.from(data) };
  });
}

/** max |got-ref| must be within ~1e-4 of the output's scale (max |ref|, at least 1). */
function assertClose(got: { shape: number[]; data: ArrayLike<number> }, ref: { shape: number[]; data: ArrayLike<number> }, what: string): void {
  assert.deepEqual(got.shape, ref.shape, `${what}: shape`);
  let maxRef = 1;
  for (let i = 0; i < ref.data.length; i++) maxRef = Math.max(maxRef, Math.abs(ref.data[i]));
  let maxErr = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const e = Math.abs(got.data[i] - ref.data[i]);
    if (!(e <= maxErr)) maxErr = Number.isNaN(e) ? Infinity : e;
  }
  assert.ok(maxErr <= 1e-4 * maxRef, `${what}: max abs error ${maxErr} vs scale ${maxRef}`);
}

type BatchKind = "none" | "same" | "bcastA" | "bcastB" | "rank2A" | "multi";
const BATCH_KINDS: BatchKind[] = ["none", "same", "bcastA", "bcastB", "rank2A", "multi"];

/** Batch dims for a and b under each broadcasting pattern. */
function batchDims(kind: BatchKind): [number[], number[]] {
  const n = randInt(2, 4);
  switch (kind) {
    case "none":
      return [[], []];
    case "same":
      return [[n], [n]];
    case "bcastA":
      return [[1], [n]];
    case "bcastB":
      return [[n], [1]];
    case "rank2A":
      return [[], [n]];
    case "multi":
      return [[2, 1], [1, 3]];
  }
}

/** Dimension draws mixing tiny (stock fallback), mid and >48 shared dims (stock k-blocking). */
function dim(): number {
  const r = rand();
  return r < 0.2 ? randInt(1, 6) : r < 0.8 ? randInt(7, 40) : randInt(49, 90);
}

function makeCase(kind: BatchKind, transposeA: boolean, transposeB: boolean, opts: Partial<Case> = {}): Case {
  const [ab, bb] = batchDims(kind);
  const M = dim();
  const K = dim();
  const N = dim();
  const aShape = [...ab, ...(transposeA ? [K, M] : [M, K])];
  const bShape = [...bb, ...(transposeB ? [N, K] : [K, N])];
  return {
    aShape,
    bShape,
    aData: randData(size(aShape)),
    bData: randData(size(bShape)),
    transposeA,
    transposeB,
    activation: "linear",
    leakyreluAlpha: 0.2,
    ...opts,
  };
}

const TRANSPOSES: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

before(async () => {
  await tf.setBackend("wasm");
  await tf.ready();
});

test("registering the matmul kernels is idempotent and restore() puts back the stock kernels", () => {
  const stockBmm = tf.getKernel("BatchMatMul", "wasm");
  const stockFused = tf.getKernel("_FusedMatMul", "wasm");
  const h1 = registerMatMulKernels();
  const h2 = registerMatMulKernels();
  assert.equal(h1, h2);
  assert.notEqual(tf.getKernel("BatchMatMul", "wasm"), stockBmm);
  assert.notEqual(tf.getKernel("_FusedMatMul", "wasm"), stockFused);
  h1.restore();
  h1.restore();
  assert.equal(tf.getKernel("BatchMatMul", "wasm"), stockBmm);
  assert.equal(tf.getKernel("_FusedMatMul", "wasm"), stockFused);
});

test("BatchMatMul: random shapes, all transposes, batch 1 / >1 / broadcast, vs reference and stock", () => {
  const cases: { c: Case; kind: BatchKind }[] = [];
  for (const kind of BATCH_KINDS) for (const [ta, tb] of TRANSPOSES) for (let r = 0; r < 3; r++) cases.push({ c: makeCase(kind, ta, tb), kind });
  // A few larger ones, so the fast path certainly runs on non-trivial sizes.
  cases.push({ c: { ...makeCase("none", true, false), aShape: [130, 70], bShape: [130, 50], aData: randData(130 * 70), bData: randData(130 * 50) }, kind: "none" });
  cases.push({ c: { ...makeCase("none", false, true), aShape: [64, 100], bShape: [33, 100], aData: randData(6400), bData: randData(3300) }, kind: "none" });

  const stock = cases.map(({ c }) => run(c, false));
  const h = registerMatMulKernels();
  try {
    cases.forEach(({ c, kind }, i) => {
      const what = `case ${i} ${kind} a=${c.aShape} b=${c.bShape} tA=${c.transposeA} tB=${c.transposeB}`;
      const got = run(c, false);
      assertClose(got, reference(c), `${what} vs reference`);
      // The stock kernel gets two-sided batch broadcasting wrong, so it is only a reference elsewhere.
      if (kind !== "multi") assertClose(got, stock[i], `${what} vs stock`);
    });
  } finally {
    h.restore();
  }
});

test("_FusedMatMul: every activation, with and without bias, all transposes and batch kinds, vs reference", () => {
  const cases: Case[] = [];
  for (const activation of ACTIVATIONS) {
    for (const withBias of [false, true]) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const kind of ["none", "same", "bcastA", "bcastB"] as BatchKind[]) {
          const c = makeCase(kind, ta, tb, { activation, leakyreluAlpha: 0.1 + rand() * 0.3 });
          const N = c.transposeB ? c.bShape[c.bShape.length - 2] : c.bShape[c.bShape.length - 1];
          // Scale so that relu6 / sigmoid / elu see values on both sides of their kinks.
          c.aData = c.aData.map((v) => v * 3);
          if (withBias) {
            const biasSize = rand() < 0.2 ? 1 : N;
            c.bias = { shape: [biasSize], data: randData(biasSize) };
          }
          if (activation === "prelu") c.prelu = { shape: [N], data: randData(N) };
          cases.push(c);
        }
      }
    }
  }
  const h = registerMatMulKernels();
  try {
    cases.forEach((c, i) => {
      const what = `fused case ${i} ${c.activation} bias=${c.bias?.shape ?? "none"} a=${c.aShape} b=${c.bShape} tA=${c.transposeA} tB=${c.transposeB}`;
      assertClose(run(c, true), reference(c), what);
    });
  } finally {
    h.restore();
  }
});

test("_FusedMatMul: equals the stock kernel where the stock kernel takes its XNNPACK path", () => {
  const cases: Case[] = [];
  for (const activation of ACTIVATIONS) {
    for (let r = 0; r < 2; r++) {
      const c = makeCase("none", false, false, { activation, leakyreluAlpha: 0.25 });
      const N = c.bShape[1];
      c.bias = { shape: [N], data: randData(N) };
      if (activation === "prelu") c.prelu = { shape: [N], data: randData(N) };
      cases.push(c);
    }
  }
  const stock = cases.map((c) => run(c, true));
  const h = registerMatMulKernels();
  try {
    cases.forEach((c, i) => assertClose(run(c, true), stock[i], `fused stock-path case ${i} ${c.activation}`));
  } finally {
    h.restore();
  }
});

test("_FusedMatMul: prelu weights that tile only the whole batched output", () => {
  const h = registerMatMulKernels();
  try {
    for (const [ta, tb] of TRANSPOSES) {
      const c = makeCase("same", ta, tb, { activation: "prelu" });
      c.aShape = [3, ...(ta ? [40, 20] : [20, 40])];
      c.bShape = [3, ...(tb ? [30, 40] : [40, 30])];
      c.aData = randData(size(c.aShape));
      c.bData = randData(size(c.bShape));
      c.bias = { shape: [30], data: randData(30) };
      c.prelu = { shape: [3, 20, 30], data: randData(3 * 20 * 30) };
      assertClose(run(c, true), reference(c), `prelu full-shape tA=${ta} tB=${tb}`);
    }
  } finally {
    h.restore();
  }
});

test("matches the cpu backend on fused batch-1 products", async () => {
  const cases: Case[] = [];
  for (const activation of ACTIVATIONS) {
    for (const [ta, tb] of TRANSPOSES) {
      const c = makeCase("none", ta, tb, { activation, leakyreluAlpha: 0.3 });
      const N = c.transposeB ? c.bShape[0] : c.bShape[1];
      c.bias = { shape: [N], data: randData(N) };
      if (activation === "prelu") c.prelu = { shape: [N], data: randData(N) };
      cases.push(c);
    }
  }
  await tf.setBackend("cpu");
  const cpu = cases.map((c) => run(c, true));
  await tf.setBackend("wasm");
  const h = registerMatMulKernels();
  try {
    cases.forEach((c, i) => assertClose(run(c, true), cpu[i], `cpu case ${i} ${c.activation} tA=${c.transposeA} tB=${c.transposeB}`));
  } finally {
    h.restore();
  }
});

test("gradients of a small Dense model are the same with and without the override", () => {
  const x = tf.tensor2d(randData(96 * 20), [96, 20]);
  const y = tf.tensor2d(randData(96 * 3), [96, 3]);
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [20], units: 48, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 40, activation: "elu", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
      tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
    ],
  });
  const grads = (): { loss: number; g: Map<string, Float32Array> } => {
    const { value, grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, model.apply(x) as tf.Tensor) as tf.Scalar);
    const g = new Map<string, Float32Array>();
    for (const [name, t] of Object.entries(grads)) g.set(name, Float32Array.from(t.dataSync()));
    const loss = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads)]);
    return { loss, g };
  };
  const stock = grads();
  const h = registerMatMulKernels();
  let fast: ReturnType<typeof grads>;
  try {
    fast = grads();
  } finally {
    h.restore();
  }
  assert.ok(Math.abs(fast.loss - stock.loss) <= 1e-5 * Math.max(1, Math.abs(stock.loss)), `loss ${fast.loss} vs ${stock.loss}`);
  assert.equal(fast.g.size, 6);
  for (const [name, gs] of stock.g) {
    const gf = fast.g.get(name);
    assert.ok(gf !== undefined, name);
    assertClose({ shape: [gf.length], data: gf }, { shape: [gs.length], data: gs }, `grad ${name}`);
  }
  tf.dispose([x, y]);
  model.dispose();
});

test("no leaks: tensors, data buffers, bytes and wasm heap flat across repeated calls", () => {
  const h = registerMatMulKernels();
  try {
    const a = tf.tensor3d(randData(3 * 40 * 30), [3, 40, 30]);
    const b = tf.tensor3d(randData(3 * 50 * 40), [3, 50, 40]);
    const a1 = tf.tensor3d(randData(40 * 30), [1, 40, 30]);
    const bias = tf.tensor1d(randData(50));
    const bias1 = tf.tensor1d([0.5]);
    const alpha = tf.tensor1d(randData(50));
    const alphaFull = tf.tensor3d(randData(3 * 30 * 50), [3, 30, 50]);
    const round = (): void =>
      tf.tidy(() => {
        tf.matMul(a, b, true, true);
        tf.matMul(a1, b, true, true);
        tf.matMul(a, b.slice([0, 0, 0], [1, 50, 40]), true, true);
        tf.matMul(a.reshape([90, 40]), b.reshape([150, 40]), false, true);
        tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: "relu" });
        tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias: bias1, activation: "prelu", preluActivationWeights: alpha });
        tf.fused.matMul({ a, b, transposeA: true, transposeB: true, activation: "prelu", preluActivationWeights: alphaFull });
        // Backward of a fused Dense product: dx = dy.W^T and dW = x^T.dy through the override.
        tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.fused.matMul({ a: x, b: w, bias: tf.ones([7]) }).sum())([a.reshape([120, 30]), tf.ones([30, 7])]);
      });
    const backend = tf.backend() as unknown as {
      numDataIds(): number;
      wasm: {
        HEAPU8: Uint8Array;
        tfjs: { registerTensor(id: number, n: number, offset: number): void; disposeData(id: number): void };
      };
    };
    round();
    round();
    const m0 = tf.memory() as tf.MemoryInfo & { numDataBuffers: number };
    const ids0 = backend.numDataIds();
    const heap0 = backend.wasm.HEAPU8.length;
    for (let i = 0; i < 20; i++) {
      round();
    }
    // C++-side tensor ids (including the override's zero-copy views) must all be released too.
    const tfjsApi = backend.wasm.tfjs;
    const live = new Set<number>();
    const { registerTensor, disposeData } = tfjsApi;
    tfjsApi.registerTensor = (id, n, offset) => {
      live.add(id);
      registerTensor(id, n, offset);
    };
    tfjsApi.disposeData = (id) => {
      live.delete(id);
      disposeData(id);
    };
    try {
      round();
    } finally {
      tfjsApi.registerTensor = registerTensor;
      tfjsApi.disposeData = disposeData;
    }
    assert.deepEqual([...live], [], "wasm tensor ids left registered");
    const m1 = tf.memory() as tf.MemoryInfo & { numDataBuffers: number };
    assert.equal(m1.numTensors, m0.numTensors, "numTensors");
    assert.equal(m1.numDataBuffers, m0.numDataBuffers, "numDataBuffers");
    assert.equal(m1.numBytes, m0.numBytes, "numBytes");
    assert.equal(backend.numDataIds(), ids0, "backend data ids");
    assert.equal(backend.wasm.HEAPU8.length, heap0, "wasm heap size");
    tf.dispose([a, b, a1, bias, bias1, alpha, alphaFull]);
  } finally {
    h.restore();
  }
});

test("shape errors are still reported", () => {
  const h = registerMatMulKernels();
  try {
    assert.throws(() => tf.tidy(() => tf.matMul(tf.ones([4, 5]), tf.ones([6, 7]))), /inner shapes/);
    assert.throws(() => tf.tidy(() => tf.matMul(tf.ones([2, 4, 5]), tf.ones([3, 5, 7]))), /broadcast|Operands could not/i);
  } finally {
    h.restore();
  }
});

test("a bias reshaped from a rank-3 slice (same buffer, rank-1 tensor) is accepted", async () => {
  await tf.setBackend("wasm");
  const handle = registerMatMulKernels();
  try {
    const x = tf.tensor2d([[1, 2], [3, 4]]);
    const w = tf.tensor2d([[1, 0, 2], [0, 1, 3]]);
    const stacked = tf.tensor3d([[[10, 20, 30]]]);
    const bias = tf.reshape(stacked, [3]);
    const y = tf.fused.matMul({ a: x, b: w, bias, activation: "linear" });
    assert.deepEqual(Array.from(y.dataSync()), [11, 22, 38, 13, 24, 48]);
    tf.dispose([x, w, stacked, bias, y]);
  } finally {
    handle.restore();
  }
});

test("narrow products (a head's 1-4 outputs, its weight gradient, the gradient into its input), every transpose, with bias and relu, vs reference", () => {
  const h = registerMatMulKernels();
  try {
    // [M, K, N]: N narrow (forward of a head, and A^T B for its weight gradient), K narrow (dy W^T), plus
    // lengths that are not multiples of 8 and a long shared dimension.
    const dims: [number, number, number][] = [[1024, 512, 1], [300, 77, 2], [5, 1031, 4], [512, 1024, 2], [1024, 1, 512], [37, 3, 129], [64, 4, 4], [9, 2, 1]];
    for (const [M, K, N] of dims) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const fused of [false, true]) {
          const c: Case = {
            aShape: ta ? [K, M] : [M, K],
            bShape: tb ? [N, K] : [K, N],
            aData: randData(M * K),
            bData: randData(K * N),
            transposeA: ta,
            transposeB: tb,
            activation: fused ? "relu" : "linear",
            leakyreluAlpha: 0,
            ...(fused ? { bias: { shape: [N], data: randData(N) } } : {}),
          };
          assertClose(run(c, fused), reference(c), `narrow M=${M} K=${K} N=${N} tA=${ta} tB=${tb}${fused ? " bias+relu" : ""}`);
        }
      }
    }
  } finally {
    h.restore();
  }
});
