/**
 * The pooling and element-wise kernels of src/backend/kernels/ on wasm, with the native addon and
 * without it, against the cpu backend: MaxPoolGrad, MaxPool3D and MaxPool3DGrad (fixes of stock
 * kernels that are wrong on all-negative windows), the broadcasting Add / Sub / Multiply / RealDiv
 * overrides and the FusedBatchNorm override.
 *
 * What "agree" means: the binary ops are one float32 operation per element, so they must give the
 * cpu backend's bits; so must the batch norm, which evaluates the cpu backend's formula in its
 * order. Max pooling's gradient may differ from the cpu backend's only in the order overlapping
 * windows are summed (a float32 rounding), and the addon must give exactly the JavaScript loop's bits.
 *
 * Kernels are registered here directly (not through register-all.ts), each test puts the stock ones
 * back, and every test checks that no tensor (and no wasm buffer) is left behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Rng } from "../src/data/random.js";
import { activeNative, nativeKernels, setNativeKernelsEnabled, type NativeKernels } from "../src/backend/native.js";
import type { WasmKernel } from "../src/backend/kernels/types.js";
import { noLeaks, runKernel as run, withWasmKernels, type Named } from "./fixtures/wasm-kernels.js";
import { maxPoolGradKernel } from "../src/backend/kernels/MaxPoolGrad.js";
import { maxPool3DKernel } from "../src/backend/kernels/MaxPool3D.js";
import { maxPool3DGradKernel } from "../src/backend/kernels/MaxPool3DGrad.js";
import { addKernel } from "../src/backend/kernels/Add.js";
import { subKernel } from "../src/backend/kernels/Sub.js";
import { multiplyKernel } from "../src/backend/kernels/Multiply.js";
import { realDivKernel } from "../src/backend/kernels/RealDiv.js";
import { fusedBatchNormKernel } from "../src/backend/kernels/FusedBatchNorm.js";
import { broadcastPlan } from "../src/backend/kernels/broadcast-binary.js";

const KERNELS: WasmKernel[] = [maxPoolGradKernel, maxPool3DKernel, maxPool3DGradKernel, addKernel, subKernel, multiplyKernel, realDivKernel, fusedBatchNormKernel];

const rng = new Rng(20261207);
const randInt = (lo: number, hi: number): number => lo + Math.floor(rng.next() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[randInt(0, xs.length - 1)]!;
const size = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);
const randData = (n: number, lo = -1, hi = 1): Float32Array => Float32Array.from({ length: n }, () => lo + rng.next() * (hi - lo));

let native: NativeKernels | undefined;
/** Calls of each addon function made through the kernels under test (see {@link counted}). */
const calls: Record<string, number> = {};

/** The addon with every function counted, so a test can tell which path ran. */
function counted(n: NativeKernels): NativeKernels {
  const wrapped = { ...n };
  for (const name of ["maxPool", "maxPoolGrad", "binary", "batchNorm"] as const) {
    const f = n[name] as (...args: unknown[]) => unknown;
    (wrapped as Record<string, unknown>)[name] = (...args: unknown[]) => {
      calls[name] = (calls[name] ?? 0) + 1;
      return f(...args);
    };
  }
  return wrapped;
}

before(async () => {
  setNativeKernelsEnabled(true);
  native = activeNative();
  await tf.setBackend("wasm");
});

after(() => setNativeKernelsEnabled(true));

test("the native addon is built and has the pooling and element-wise functions (npm run native)", () => {
  assert.ok(native !== undefined, `native kernels unavailable: ${nativeKernels().reason}`);
  for (const name of ["maxPool", "maxPoolGrad", "binary", "batchNorm"] as const) assert.equal(typeof native[name], "function", name);
});

/** Registers the kernels made with the (counted) addon or without it around `fn`. */
const withKernels = <T>(withNative: boolean, fn: () => Promise<T> | T): Promise<T> =>
  withWasmKernels(KERNELS, withNative && native !== undefined ? counted(native) : undefined, fn);

/** The first position where two float32 arrays differ in bits (NaN equal to NaN), or -1. */
function firstBitDifference(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length, "output sizes differ");
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) return i;
  return -1;
}

function assertSameBits(got: Float32Array, want: Float32Array, label: string): void {
  const i = firstBitDifference(got, want);
  assert.equal(i, -1, `${label}: element ${i} is ${got[i]}, expected ${want[i]}`);
}

// ---------------------------------------------------------------------------------------------
// Max pooling

interface PoolCase {
  /** [batch, (depth,) height, width, channels] */
  shape: number[];
  filter: number[];
  strides: number[];
  pad: "same" | "valid";
}

/** Random 2-D (or 3-D) pooling cases with a non-empty output: filters 1-3, strides 1 or 2, same or valid padding. */
function randomPoolCase(threeD: boolean): PoolCase {
  for (;;) {
    const spatial = threeD ? 3 : 2;
    // Channels: few (the addon reads 16 lanes past them), or 16 and more (groups of 16 and an overlapping last group).
    const channels = rng.next() < 0.6 ? randInt(1, 15) : pick([16, 17, 20, 31, 32, 35]);
    const shape = [randInt(1, 3), ...Array.from({ length: spatial }, () => randInt(1, 6)), channels];
    const filter = Array.from({ length: spatial }, () => randInt(1, 3));
    const s = pick([1, 2]);
    const strides = Array.from({ length: spatial }, () => (rng.next() < 0.2 ? pick([1, 2]) : s));
    const pad = pick(["same", "valid"] as const);
    const out = outShape({ shape, filter, strides, pad });
    if (out.every((d) => d > 0)) return { shape, filter, strides, pad };
  }
}

function outShape(c: PoolCase): number[] {
  if (c.shape.length === 5) {
    return tf.backend_util.computePool3DInfo(c.shape as [number, number, number, number, number], c.filter as [number, number, number], c.strides as [number, number, number], 1, c.pad).outShape;
  }
  return tf.backend_util.computePool2DInfo(c.shape as [number, number, number, number], c.filter as [number, number], c.strides as [number, number], 1, c.pad).outShape;
}

/**
 * Input values that exercise the semantics: a third of the cases entirely negative (every window
 * all negative), some with values on a coarse grid (ties), and a few NaN.
 */
function poolData(n: number): Float32Array {
  const kind = randInt(0, 2);
  const x = kind === 0 ? randData(n, -4, -1) : randData(n, -1, 1);
  if (kind === 2) for (let i = 0; i < n; i++) x[i] = Math.round(x[i]! * 2) / 2;
  for (let i = 0; i < n; i++) if (rng.next() < 0.05) x[i] = NaN;
  return x;
}

const poolAttrs = (c: PoolCase) => ({ filterSize: c.filter, strides: c.strides, pad: c.pad, dimRoundingMode: undefined, dilations: 1 });

/** max |got - want| over max(1, max |want|). */
function maxError(got: Float32Array, want: Float32Array): number {
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
  return err;
}

/**
 * dx of max pooling from the definition, in float64: each window's maximum is its first position in
 * window order strictly greater than all before it (from -Infinity; NaN never is), and takes dy.
 */
function poolGradReference(c: PoolCase, x: Float32Array, dy: Float32Array): Float64Array {
  const threeD = c.shape.length === 5;
  const [B, D, H, W, C] = threeD ? c.shape : [c.shape[0]!, 1, c.shape[1]!, c.shape[2]!, c.shape[3]!];
  const [fd, fh, fw] = threeD ? c.filter : [1, ...c.filter];
  const [sd, sh, sw] = threeD ? c.strides : [1, ...c.strides];
  const out = outShape(c);
  const [OD, OH, OW] = threeD ? out.slice(1, 4) : [1, ...out.slice(1, 3)];
  const info = threeD
    ? tf.backend_util.computePool3DInfo(c.shape as [number, number, number, number, number], c.filter as [number, number, number], c.strides as [number, number, number], 1, c.pad).padInfo
    : { front: 0, ...tf.backend_util.computePool2DInfo(c.shape as [number, number, number, number], c.filter as [number, number], c.strides as [number, number], 1, c.pad).padInfo };
  const dx = new Float64Array(x.length);
  let o = 0;
  for (let b = 0; b < B!; b++)
    for (let od = 0; od < OD!; od++)
      for (let oh = 0; oh < OH!; oh++)
        for (let ow = 0; ow < OW!; ow++)
          for (let ch = 0; ch < C!; ch++, o++) {
            let best = -Infinity;
            let at = -1;
            for (let i = 0; i < fd!; i++)
              for (let j = 0; j < fh!; j++)
                for (let k = 0; k < fw!; k++) {
                  const d = od * sd! - info.front + i;
                  const h = oh * sh! - info.top + j;
                  const w = ow * sw! - info.left + k;
                  if (d < 0 || d >= D! || h < 0 || h >= H! || w < 0 || w >= W!) continue;
                  const idx = (((b * D! + d) * H! + h) * W! + w) * C! + ch;
                  if (x[idx]! > best) {
                    best = x[idx]!;
                    at = idx;
                  }
                }
            if (at >= 0) dx[at] += dy[o]!;
          }
  return dx;
}

/** The gradient through max pooling on wasm (both paths) and on cpu, for one case. */
async function poolGradients(c: PoolCase, x: Float32Array, dy: Float32Array) {
  const threeD = c.shape.length === 5;
  const name = threeD ? "MaxPool3DGrad" : "MaxPoolGrad";
  const out = outShape(c);
  const cpuOut = await run("cpu", threeD ? "MaxPool3D" : "MaxPool", { x: { shape: c.shape, data: x } }, poolAttrs(c));
  const inputs: Named = { dy: { shape: out, data: dy }, input: { shape: c.shape, data: x }, output: { shape: out, data: cpuOut.data } };
  const cpu = await run("cpu", name, inputs, poolAttrs(c));
  const withAddon = await withKernels(true, () => run("wasm", name, inputs, poolAttrs(c)));
  const without = await withKernels(false, () => run("wasm", name, inputs, poolAttrs(c)));
  return { cpu, withAddon, without, cpuOut };
}

function describePool(c: PoolCase): string {
  return `x[${c.shape}] filter ${c.filter} strides ${c.strides} ${c.pad}`;
}

for (const threeD of [false, true]) {
  const name = threeD ? "MaxPool3DGrad" : "MaxPoolGrad";
  test(`${name} on random shapes (all-negative windows, ties, NaN, same/valid, strides 1/2): the addon gives the JavaScript loop's bits, both agree with a float64 reference and cpu`, async () => {
    await noLeaks(async () => {
      const before = calls.maxPoolGrad ?? 0;
      const n = 40;
      let cpuChecked = 0;
      for (let k = 0; k < n; k++) {
        const c = randomPoolCase(threeD);
        const x = poolData(size(c.shape));
        const numbers = Array.from(x).filter((v) => !Number.isNaN(v));
        const hasTies = new Set(numbers).size < numbers.length;
        const dy = randData(size(outShape(c)));
        const { cpu, withAddon, without } = await poolGradients(c, x, dy);
        assert.deepEqual(withAddon.shape, c.shape);
        assertSameBits(withAddon.data, without.data, `${describePool(c)}: addon against the JavaScript loop`);
        // Overlapping windows sum in float32: rounding only against the float64 reference.
        const e = maxError(withAddon.data, Float32Array.from(poolGradReference(c, x, dy)));
        assert.ok(e <= 1e-6, `${describePool(c)}: differs from the reference by ${e}`);
        // The cpu backend's 3-D positions are right only for square windows without ties (it takes
        // the last of equal values and indexes a window row by the filter's height).
        if (!threeD || (c.filter[1] === c.filter[2] && !hasTies)) {
          const ec = maxError(withAddon.data, cpu.data);
          assert.ok(ec <= 1e-6, `${describePool(c)}: differs from cpu by ${ec}`);
          cpuChecked++;
        }
      }
      assert.ok(cpuChecked >= n / 8, `enough cases were checked against cpu (${cpuChecked})`);
      assert.equal((calls.maxPoolGrad ?? 0) - before, n, "every case ran through the addon once");
    });
  });
}

test("MaxPoolGrad routes an all-negative window's gradient to its maximum, skips NaN, and passes none from a window of only NaN", async () => {
  await noLeaks(async () => {
    // One 2x2 window per channel: channel 0 all negative (max -1 at position 2), channel 1 NaN
    // first then values (max 0.5 at position 3), channel 2 all NaN.
    const c: PoolCase = { shape: [1, 2, 2, 3], filter: [2, 2], strides: [2, 2], pad: "valid" };
    const x = Float32Array.from([-3, NaN, NaN, -2, 0.25, NaN, -1, -5, NaN, -4, 0.5, NaN]);
    const dy = Float32Array.from([10, 20, 30]);
    const { cpu, withAddon, without, cpuOut } = await poolGradients(c, x, dy);
    const want = Float32Array.from([0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 20, 0]);
    assertSameBits(withAddon.data, want, "addon");
    assertSameBits(without.data, want, "JavaScript loop");
    assertSameBits(cpu.data, want, "cpu (the semantics followed)");
    assert.deepEqual(Array.from(cpuOut.data), [-1, 0.5, -Infinity]);
  });
});

test("MaxPool3D on random shapes (all-negative windows, NaN): the addon and the JavaScript loop give the cpu backend's values", async () => {
  await noLeaks(async () => {
    const before = calls.maxPool ?? 0;
    const n = 30;
    for (let k = 0; k < n; k++) {
      const c = randomPoolCase(true);
      const x = poolData(size(c.shape));
      const inputs: Named = { x: { shape: c.shape, data: x } };
      const cpu = await run("cpu", "MaxPool3D", inputs, poolAttrs(c));
      const withAddon = await withKernels(true, () => run("wasm", "MaxPool3D", inputs, poolAttrs(c)));
      const without = await withKernels(false, () => run("wasm", "MaxPool3D", inputs, poolAttrs(c)));
      assert.deepEqual(withAddon.shape, cpu.shape);
      assertSameBits(withAddon.data, cpu.data, `${describePool(c)} (addon)`);
      assertSameBits(without.data, cpu.data, `${describePool(c)} (JavaScript)`);
    }
    assert.equal((calls.maxPool ?? 0) - before, n, "every case ran through the addon once");
  });
});

test("the max pooling gradient rejects a dy of the wrong shape, naming both shapes", async () => {
  await noLeaks(async () => {
    const c: PoolCase = { shape: [1, 4, 4, 2], filter: [2, 2], strides: [2, 2], pad: "valid" };
    const x = randData(32);
    for (const withNative of [true, false]) {
      await withKernels(withNative, async () => {
        await assert.rejects(
          run("wasm", "MaxPoolGrad", { dy: { shape: [1, 2, 2, 3], data: randData(12) }, input: { shape: c.shape, data: x }, output: { shape: [1, 2, 2, 2], data: randData(8) } }, poolAttrs(c)),
          /dy of shape \[1,2,2,2\].*dy float32 \[1,2,2,3\]/,
        );
      });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Binary ops with broadcasting

const BINARY = ["Add", "Sub", "Multiply", "RealDiv"] as const;

/** Pairs of shapes: a full activation of rank 2..4 and a per-channel operand, a scalar, or [N,1,..,1,C]. */
function broadcastShapes(): [number[], number[]][] {
  const pairs: [number[], number[]][] = [];
  for (let rank = 2; rank <= 4; rank++) {
    for (let k = 0; k < 3; k++) {
      const full = Array.from({ length: rank }, () => randInt(1, 6));
      const C = full[rank - 1]!;
      const small: number[][] = [[C], [1, C], new Array<number>(rank - 1).fill(1).concat([C]), [], [1], [full[0]!, ...new Array<number>(rank - 2).fill(1), C]];
      for (const s of small) {
        pairs.push([full, s]);
        pairs.push([s, full]);
      }
    }
  }
  // Both operands broadcast ([N,1,C] against [1,H,C]) and a pattern of more than four collapsed axes.
  pairs.push([[3, 1, 4], [1, 5, 4]]);
  pairs.push([[2, 1, 3, 1, 2], [1, 2, 1, 3, 1]]);
  return pairs;
}

/** Operand values, with zeros, infinities and NaN among them so that division and NaN propagate. */
function binaryData(n: number): Float32Array {
  const x = randData(n, -2, 2);
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    if (r < 0.03) x[i] = 0;
    else if (r < 0.05) x[i] = pick([Infinity, -Infinity, NaN]);
  }
  return x;
}

test("broadcast plans: a per-channel vector, a scalar, [N,1,1,C]; equal shapes and more than four axes are left to the stock kernel", () => {
  assert.deepEqual(broadcastPlan([64, 8, 8, 32], [32]), { outShape: [64, 8, 8, 32], dims: [1, 1, 4096, 32], aStrides: [0, 0, 32, 1], bStrides: [0, 0, 0, 1] });
  assert.deepEqual(broadcastPlan([1, 1, 1, 32], [64, 8, 8, 32])?.aStrides, [0, 0, 0, 1]);
  assert.deepEqual(broadcastPlan([5, 3], [])?.dims, [1, 1, 1, 15]);
  assert.deepEqual(broadcastPlan([4, 1, 1, 6], [4, 2, 3, 6]), { outShape: [4, 2, 3, 6], dims: [1, 4, 6, 6], aStrides: [0, 6, 0, 1], bStrides: [0, 36, 6, 1] });
  assert.equal(broadcastPlan([4, 3], [4, 3]), undefined);
  assert.equal(broadcastPlan([2, 1, 3, 1, 2], [1, 2, 1, 3, 1]), undefined);
  assert.equal(broadcastPlan([4, 3], [2, 3]), undefined, "shapes that do not broadcast");
});

test("Add, Sub, Multiply, RealDiv with broadcasting ([C], [1,C], [1,..,1,C], scalars, [N,1,..,1,C], both ways, rank 2..4) give the cpu backend's bits through the addon", async () => {
  await noLeaks(async () => {
    const pairs = broadcastShapes();
    let expectNative = 0;
    const before = calls.binary ?? 0;
    for (const op of BINARY) {
      for (const [aShape, bShape] of pairs) {
        const inputs: Named = { a: { shape: aShape, data: binaryData(size(aShape)) }, b: { shape: bShape, data: binaryData(size(bShape)) } };
        const cpu = await run("cpu", op, inputs);
        const got = await withKernels(true, () => run("wasm", op, inputs));
        assert.deepEqual(got.shape, cpu.shape, `${op} [${aShape}] [${bShape}]: shape`);
        assertSameBits(got.data, cpu.data, `${op} [${aShape}] [${bShape}]`);
        if (broadcastPlan(aShape, bShape) !== undefined) expectNative++;
      }
    }
    assert.ok(expectNative > 100, `most pairs broadcast (${expectNative})`);
    assert.equal((calls.binary ?? 0) - before, expectNative, "every broadcasting call ran through the addon, the others through the stock kernel");
  });
});

test("binary ops on equal shapes, int32 operands and without the addon stay with the stock kernel (and stay right)", async () => {
  await noLeaks(async () => {
    for (const op of BINARY) assert.equal((KERNELS.find((k) => k.kernelName === op) as WasmKernel).make(undefined, () => ({}) as tf.TensorInfo), undefined, `${op}: nothing to register without the addon`);
    const before = calls.binary ?? 0;
    await withKernels(true, async () => {
      for (const op of BINARY) {
        const inputs: Named = { a: { shape: [3, 4], data: binaryData(12) }, b: { shape: [3, 4], data: binaryData(12) } };
        const cpu = await run("cpu", op, inputs);
        assertSameBits((await run("wasm", op, inputs)).data, cpu.data, `${op} equal shapes`);
        const ints = tf.tidy(() => {
          const fn = { Add: tf.add, Sub: tf.sub, Multiply: tf.mul, RealDiv: tf.div }[op];
          return Array.from(fn(tf.tensor2d([[6, -4], [8, 2]], [2, 2], "int32"), tf.tensor1d([2, -2], "int32")).dataSync());
        });
        const want = { Add: [8, -6, 10, 0], Sub: [4, -2, 6, 4], Multiply: [12, 8, 16, -4], RealDiv: [3, 2, 4, -1] }[op];
        assert.deepEqual(ints, want, `${op} int32`);
      }
    });
    assert.equal((calls.binary ?? 0) - before, 0, "the addon was not called");
  });
});

// ---------------------------------------------------------------------------------------------
// FusedBatchNorm

test("FusedBatchNorm (rank 2..4, parameters of one value or one per channel, offset / scale present or not) gives the cpu backend's bits through the addon", async () => {
  await noLeaks(async () => {
    const before = calls.batchNorm ?? 0;
    const n = 40;
    for (let k = 0; k < n; k++) {
      const rank = randInt(2, 4);
      const shape = Array.from({ length: rank }, () => randInt(1, 6));
      const C = shape[rank - 1]!;
      // The cpu kernel asks the parameters for one rank: [C] or [1,..,1,C]; each has C values or one.
      const full = rng.next() < 0.5;
      const param = (lo: number, hi: number) => {
        const n = rng.next() < 0.8 ? C : 1;
        const pShape = full ? [...new Array<number>(rank - 1).fill(1), n] : [n];
        return { shape: pShape, data: randData(n, lo, hi) };
      };
      const inputs: Named = { x: { shape, data: randData(size(shape), -3, 3) }, mean: param(-1, 1), variance: param(0, 2) };
      if (rng.next() < 0.7) inputs.offset = param(-1, 1);
      if (rng.next() < 0.7) inputs.scale = param(-2, 2);
      const attrs = { varianceEpsilon: pick([0.001, 1e-5, 0.1]) };
      const label = `x[${shape}] ${Object.entries(inputs).map(([key, v]) => `${key}[${v.shape}]`).join(" ")} eps ${attrs.varianceEpsilon}`;
      const cpu = await run("cpu", "FusedBatchNorm", inputs, attrs);
      const got = await withKernels(true, () => run("wasm", "FusedBatchNorm", inputs, attrs));
      const stock = await run("wasm", "FusedBatchNorm", inputs, attrs);
      assert.deepEqual(got.shape, shape);
      assertSameBits(got.data, cpu.data, label);
      // The stock kernel computes in float32: the same values to float32 rounding.
      const scale = Math.max(1, ...Array.from(cpu.data, Math.abs));
      assert.ok(maxError(stock.data, cpu.data) <= 1e-5 * scale, `${label}: the stock kernel is the reference's formula too`);
    }
    assert.equal((calls.batchNorm ?? 0) - before, n, "every case ran through the addon once");
  });
});

test("tf.batchNorm with varianceEpsilon unset uses the cpu backend's default (0.001)", async () => {
  await noLeaks(async () => {
    const inputs: Named = { x: { shape: [2, 3], data: randData(6) }, mean: { shape: [3], data: randData(3) }, variance: { shape: [3], data: randData(3, 0, 1) } };
    const cpu = await run("cpu", "FusedBatchNorm", inputs, {});
    assertSameBits((await withKernels(true, () => run("wasm", "FusedBatchNorm", inputs, {}))).data, cpu.data, "default epsilon");
  });
});

// ---------------------------------------------------------------------------------------------
// Together: a batch-norm + max-pool block's gradients

test("gradients of conv-free batch norm, broadcast scale and max pooling agree with cpu, with and without the addon", async () => {
  const shape = [4, 6, 6, 3];
  const xData = randData(size(shape), -2, 1);
  const gammaData = randData(3, 0.5, 1.5);
  const betaData = randData(3);
  const grads = async (backend: "wasm" | "cpu") => {
    const previous = tf.getBackend();
    await tf.setBackend(backend);
    try {
      return tf.tidy(() => {
        const x = tf.tensor4d(xData, shape as [number, number, number, number]);
        const gamma = tf.tensor1d(gammaData);
        const beta = tf.tensor1d(betaData);
        const f = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const { mean, variance } = tf.moments(xs, [0, 1, 2]);
          const y = tf.batchNorm(xs as tf.Tensor4D, mean, variance, b, g, 1e-3);
          const pooled = tf.maxPool(tf.mul(y, tf.scalar(0.5)) as tf.Tensor4D, 2, 2, "same");
          return tf.sum(tf.mul(pooled, tf.div(pooled, tf.add(g, 2))));
        };
        const gs = tf.grads(f)([x, gamma, beta]);
        return gs.map((t) => Float32Array.from(t.dataSync()));
      });
    } finally {
      await tf.setBackend(previous);
    }
  };
  const cpu = await grads("cpu");
  for (const withNative of [true, false]) {
    await noLeaks(async () => {
      const got = await withKernels(withNative, () => grads("wasm"));
      for (let i = 0; i < got.length; i++) {
        const scale = Math.max(1, ...Array.from(cpu[i]!, Math.abs));
        const e = maxError(got[i]!, cpu[i]!);
        assert.ok(e <= 1e-4 * scale, `gradient ${i} (${withNative ? "addon" : "no addon"}) differs from cpu by ${e}`);
      }
    });
  }
});
