/**
 * The conv kernels of src/backend/kernels/ (Conv2D, FusedConv2D, Conv2DBackpropInput/Filter,
 * DepthwiseConv2dNative and its backprops) on wasm, with the native addon and without it, against
 * the cpu backend's kernels and a float64 reference written out here from the definition of a
 * convolution. The reference covers what the cpu backend cannot check: its depthwise backprops
 * ignore dilations, and tfjs's Conv2D backprops take none (ours honour one).
 *
 * The kernels are registered here directly (not through register-all.ts), each test puts the
 * stock kernels back, and every test checks that no tensor (and no wasm buffer) is left behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Rng } from "../src/data/random.js";
import { activeNative, nativeKernels, setNativeKernelsEnabled, type NativeKernels } from "../src/backend/native.js";
import type { WasmKernel } from "../src/backend/kernels/types.js";
import { noLeaks, runKernel as run, withWasmKernels, type Named } from "./fixtures/wasm-kernels.js";
import { conv2DKernel } from "../src/backend/kernels/Conv2D.js";
import { fusedConv2DKernel } from "../src/backend/kernels/FusedConv2D.js";
import { conv2DBackpropInputKernel } from "../src/backend/kernels/Conv2DBackpropInput.js";
import { conv2DBackpropFilterKernel } from "../src/backend/kernels/Conv2DBackpropFilter.js";
import { depthwiseConv2dNativeKernel } from "../src/backend/kernels/DepthwiseConv2dNative.js";
import { depthwiseConv2dNativeBackpropInputKernel } from "../src/backend/kernels/DepthwiseConv2dNativeBackpropInput.js";
import { depthwiseConv2dNativeBackpropFilterKernel } from "../src/backend/kernels/DepthwiseConv2dNativeBackpropFilter.js";

const KERNELS: WasmKernel[] = [
  conv2DKernel,
  fusedConv2DKernel,
  conv2DBackpropInputKernel,
  conv2DBackpropFilterKernel,
  depthwiseConv2dNativeKernel,
  depthwiseConv2dNativeBackpropInputKernel,
  depthwiseConv2dNativeBackpropFilterKernel,
];

const rng = new Rng(20261203);
const randInt = (lo: number, hi: number): number => lo + Math.floor(rng.next() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[randInt(0, xs.length - 1)]!;
const randData = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
const size = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

let native: NativeKernels | undefined;

before(async () => {
  setNativeKernelsEnabled(true);
  native = activeNative();
  await tf.setBackend("wasm");
});

after(() => setNativeKernelsEnabled(true));

test("the native addon is built and has the conv functions (npm run native)", () => {
  assert.ok(native !== undefined, `native kernels unavailable: ${nativeKernels().reason}`);
  for (const name of ["conv2d", "conv2dBackpropInput", "conv2dBackpropFilter", "depthwiseConv2d", "depthwiseConv2dBackpropInput", "depthwiseConv2dBackpropFilter"] as const) {
    assert.equal(typeof native[name], "function", name);
  }
});

/** Registers our kernels made with the addon (`withNative`) or without it around `fn`. */
const withKernels = <T>(withNative: boolean, fn: () => Promise<T> | T): Promise<T> => withWasmKernels(KERNELS, withNative ? native : undefined, fn);

/** max |a - b| / max |b|: the error relative to the reference's scale. */
function relError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(got.length, ref.length, "output sizes differ");
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(got[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return scale === 0 ? err : err / scale;
}

interface Case {
  batch: number;
  h: number;
  w: number;
  cin: number;
  k: number;
  kw: number;
  /** Output channels (conv2d) or the channel multiplier (depthwise). */
  cout: number;
  stride: [number, number];
  dilation: number;
  pad: "same" | "valid" | number;
  depthwise: boolean;
}

function describe(c: Case): string {
  return `${c.depthwise ? "depthwise" : "conv2d"} x[${c.batch},${c.h},${c.w},${c.cin}] k${c.k}x${c.kw} ${c.depthwise ? "mult" : "out"} ${c.cout} s${c.stride.join("x")} d${c.dilation} pad ${c.pad}`;
}

function info(c: Case): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo([c.batch, c.h, c.w, c.cin], [c.k, c.kw, c.cin, c.cout], c.stride, c.dilation, c.pad, undefined, c.depthwise);
}

/** y, dx and dw of loss = Σ y·dy, in float64, from the definition of the convolution. */
function reference(c: Case, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const g = info(c);
  const { outHeight: OH, outWidth: OW, outChannels: OC } = g;
  const mult = c.depthwise ? c.cout : 0;
  const y = new Float64Array(c.batch * OH * OW * OC);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  for (let b = 0; b < c.batch; b++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++)
        for (let fy = 0; fy < c.k; fy++)
          for (let fx = 0; fx < c.kw; fx++) {
            const iy = oy * c.stride[0] - g.padInfo.top + fy * c.dilation;
            const ix = ox * c.stride[1] - g.padInfo.left + fx * c.dilation;
            if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
            for (let o = 0; o < OC; o++) {
              const ci = c.depthwise ? Math.floor(o / mult) : 0;
              const cis = c.depthwise ? [ci] : Array.from({ length: c.cin }, (_, i) => i);
              const yi = ((b * OH + oy) * OW + ox) * OC + o;
              for (const i of cis) {
                const xi = ((b * c.h + iy) * c.w + ix) * c.cin + i;
                const wi = c.depthwise ? ((fy * c.kw + fx) * c.cin + i) * mult + (o % mult) : ((fy * c.kw + fx) * c.cin + i) * OC + o;
                y[yi] += x[xi]! * w[wi]!;
                dx[xi] += dy[yi]! * w[wi]!;
                dw[wi] += x[xi]! * dy[yi]!;
              }
            }
          }
  return { y, dx, dw, outShape: g.outShape };
}

/**
 * A random case whose output is not empty: kernels 1/3/5 (a quarter of them not square), strides
 * 1/2 (a fifth of them different per axis), same / valid / a numeric pad, dilation 2 only with
 * stride 1 (as tfjs's ops require). Depthwise cases take square strides (tfjs's depthwise ops
 * demand them) and no numeric pad with a non-square kernel (tfjs sizes that output from the
 * filter height alone, which its depthwise backprops do not follow).
 */
function randomCase(depthwise: boolean): Case {
  for (;;) {
    const k = pick([1, 3, 5]);
    const s = pick([1, 2]);
    const stride: [number, number] = !depthwise && rng.next() < 0.2 ? pick([[1, 2], [2, 1]] as [number, number][]) : [s, s];
    const dilation = stride[0] === 1 && stride[1] === 1 ? pick([1, 2]) : 1;
    const kw = rng.next() < 0.25 ? pick([1, 3, 5]) : k;
    const c: Case = {
      batch: randInt(1, 3),
      h: randInt(4, 11),
      w: randInt(4, 11),
      cin: randInt(1, 5),
      k,
      kw,
      cout: depthwise ? pick([1, 2]) : randInt(1, 5),
      stride,
      dilation,
      pad: rng.next() < 0.2 && !(depthwise && kw !== k) ? randInt(0, 2) : pick(["same", "valid"] as const),
      depthwise,
    };
    const g = info(c);
    if (g.outHeight > 0 && g.outWidth > 0) return c;
  }
}

const TOL = 1e-4;

interface Data {
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

function dataFor(c: Case): Data {
  const g = info(c);
  return { x: randData(size([c.batch, c.h, c.w, c.cin])), w: randData(size([c.k, c.kw, c.cin, c.cout])), dy: randData(size(g.outShape)) };
}

/** Runs the forward kernel and both backprops of case `c` on wasm and checks them against cpu and the reference. */
async function checkCase(c: Case, d: Data, label: string): Promise<void> {
  const xShape = [c.batch, c.h, c.w, c.cin];
  const wShape = [c.k, c.kw, c.cin, c.cout];
  const ref = reference(c, d.x, d.w, d.dy);
  const common = { strides: c.stride, pad: c.pad, dilations: c.dilation, dimRoundingMode: undefined };
  const names = c.depthwise
    ? { fwd: "DepthwiseConv2dNative", bi: "DepthwiseConv2dNativeBackpropInput", bf: "DepthwiseConv2dNativeBackpropFilter" }
    : { fwd: "Conv2D", bi: "Conv2DBackpropInput", bf: "Conv2DBackpropFilter" };
  const fwdAttrs = { ...common, dataFormat: "NHWC" };
  const biAttrs = { ...common, dataFormat: "NHWC", inputShape: xShape };
  const bfAttrs = { ...common, dataFormat: "NHWC", filterShape: wShape };
  const y = await run("wasm", names.fwd, { x: { shape: xShape, data: d.x }, filter: { shape: wShape, data: d.w } }, fwdAttrs);
  const dx = await run("wasm", names.bi, { dy: { shape: ref.outShape, data: d.dy }, filter: { shape: wShape, data: d.w } }, biAttrs);
  const dw = await run("wasm", names.bf, { x: { shape: xShape, data: d.x }, dy: { shape: ref.outShape, data: d.dy } }, bfAttrs);
  assert.deepEqual(y.shape, ref.outShape, `${label}: forward shape`);
  assert.deepEqual(dx.shape, xShape, `${label}: dx shape`);
  assert.deepEqual(dw.shape, wShape, `${label}: dw shape`);
  const errs = { y: relError(y.data, ref.y), dx: relError(dx.data, ref.dx), dw: relError(dw.data, ref.dw) };
  for (const [k, e] of Object.entries(errs)) assert.ok(e <= TOL, `${label}: ${k} differs from the float64 reference by ${e.toExponential(2)} (relative)`);
  // The cpu backend's kernels where they are right: its depthwise backprops ignore dilations, and
  // its Conv2D backprops have none.
  const cpuY = await run("cpu", names.fwd, { x: { shape: xShape, data: d.x }, filter: { shape: wShape, data: d.w } }, fwdAttrs);
  assert.ok(relError(y.data, cpuY.data) <= TOL, `${label}: forward differs from the cpu backend`);
  if (c.dilation === 1) {
    const cpuDx = await run("cpu", names.bi, { dy: { shape: ref.outShape, data: d.dy }, filter: { shape: wShape, data: d.w } }, biAttrs);
    const cpuDw = await run("cpu", names.bf, { x: { shape: xShape, data: d.x }, dy: { shape: ref.outShape, data: d.dy } }, bfAttrs);
    assert.ok(relError(dx.data, cpuDx.data) <= TOL, `${label}: dx differs from the cpu backend`);
    assert.ok(relError(dw.data, cpuDw.data) <= TOL, `${label}: dw differs from the cpu backend`);
  }
}

for (const withNative of [true, false]) {
  const path = withNative ? "native addon" : "without the addon";
  for (const depthwise of [false, true]) {
    test(`${depthwise ? "depthwise" : "conv2d"} forward and backprops on random shapes agree with cpu and float64 (${path})`, async () => {
      const cases = Array.from({ length: 30 }, () => randomCase(depthwise));
      await noLeaks(() =>
        withKernels(withNative, async () => {
          for (const c of cases) await checkCase(c, dataFor(c), `${describe(c)} (${path})`);
        }),
      );
    });
  }
}

for (const withNative of [true, false]) {
  const path = withNative ? "native addon" : "without the addon";

  test(`FusedConv2D: bias (per channel or one value) and every fusable activation agree with cpu (${path})`, async () => {
    const activations = ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu", "prelu"] as const;
    await noLeaks(() =>
      withKernels(withNative, async () => {
        for (const activation of activations) {
          const c = randomCase(false);
          const d = dataFor(c);
          const xShape = [c.batch, c.h, c.w, c.cin];
          const wShape = [c.k, c.kw, c.cin, c.cout];
          const outC = c.cout;
          const scalarBias = rng.next() < 0.3;
          const inputs: Named = {
            x: { shape: xShape, data: d.x },
            filter: { shape: wShape, data: d.w },
            bias: scalarBias ? { shape: [], data: randData(1) } : { shape: [outC], data: randData(outC) },
          };
          if (activation === "prelu") inputs.preluActivationWeights = { shape: [outC], data: randData(outC) };
          const attrs = { strides: c.stride, pad: c.pad, dilations: c.dilation, dataFormat: "NHWC", activation, leakyreluAlpha: 0.2, dimRoundingMode: undefined };
          const got = await run("wasm", "FusedConv2D", inputs, attrs);
          const ref = await run("cpu", "FusedConv2D", inputs, attrs);
          assert.deepEqual(got.shape, ref.shape);
          const e = relError(got.data, ref.data);
          assert.ok(e <= TOL, `${describe(c)} ${activation}${scalarBias ? " scalar bias" : ""} (${path}): differs from cpu by ${e.toExponential(2)}`);
        }
      }),
    );
  });

  test(`NCHW: Conv2D and both backprops transpose in and out and agree with cpu (${path})`, async () => {
    await noLeaks(() =>
      withKernels(withNative, async () => {
        for (let i = 0; i < 6; i++) {
          const c = { ...randomCase(false), dilation: 1 };
          const g = tf.backend_util.computeConv2DInfo([c.batch, c.cin, c.h, c.w], [c.k, c.kw, c.cin, c.cout], c.stride, 1, c.pad, undefined, false, "channelsFirst");
          if (g.outHeight <= 0 || g.outWidth <= 0) continue;
          const xShape = [c.batch, c.cin, c.h, c.w];
          const wShape = [c.k, c.kw, c.cin, c.cout];
          const x = { shape: xShape, data: randData(size(xShape)) };
          const filter = { shape: wShape, data: randData(size(wShape)) };
          const dy = { shape: g.outShape, data: randData(size(g.outShape)) };
          const attrs = { strides: c.stride, pad: c.pad, dataFormat: "NCHW", dilations: 1, dimRoundingMode: undefined };
          const calls: [string, Named, object][] = [
            ["Conv2D", { x, filter }, attrs],
            ["Conv2DBackpropInput", { dy, filter }, { ...attrs, inputShape: xShape }],
            ["Conv2DBackpropFilter", { x, dy }, { ...attrs, filterShape: wShape }],
          ];
          for (const [name, inputs, a] of calls) {
            // The stock wasm Conv2D refuses NCHW: without the addon our Conv2D is the one running here.
            const got = await run("wasm", name, inputs, a);
            const ref = await run("cpu", name, inputs, a);
            assert.deepEqual(got.shape, ref.shape, `${name} shape`);
            const e = relError(got.data, ref.data);
            assert.ok(e <= TOL, `${name} NCHW ${describe(c)} (${path}): differs from cpu by ${e.toExponential(2)}`);
          }
        }
      }),
    );
  });

  test(`tf.grads of conv2d, conv2dTranspose and depthwiseConv2d on wasm match cpu (${path})`, async () => {
    const xv = randData(2 * 9 * 9 * 3);
    const wv = randData(3 * 3 * 3 * 4);
    const dv = randData(3 * 3 * 3 * 2);
    const loss = (x: tf.Tensor4D, w: tf.Tensor4D, d: tf.Tensor4D): tf.Scalar =>
      tf.tidy(() => {
        const y = tf.relu(tf.conv2d(x, w, 2, "same"));
        const t = tf.conv2dTranspose(y, w, [2, 9, 9, 3], 2, "same");
        const z = tf.depthwiseConv2d(t, d, 1, "valid");
        return tf.sum(tf.mul(z, z));
      });
    const grads = async (backend: string): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      const x = tf.tensor4d(xv, [2, 9, 9, 3]);
      const w = tf.tensor4d(wv, [3, 3, 3, 4]);
      const d = tf.tensor4d(dv, [3, 3, 3, 2]);
      const gs = tf.grads((a, b, e) => loss(a as tf.Tensor4D, b as tf.Tensor4D, e as tf.Tensor4D))([x, w, d]);
      const out = gs.map((g) => Float32Array.from(g.dataSync()));
      tf.dispose([x, w, d, ...gs]);
      await tf.setBackend("wasm");
      return out;
    };
    await noLeaks(() =>
      withKernels(withNative, async () => {
        const got = await grads("wasm");
        const ref = await grads("cpu");
        for (let i = 0; i < 3; i++) {
          const e = relError(got[i]!, ref[i]!);
          assert.ok(e <= TOL, `gradient ${["x", "w", "d"][i]} differs from cpu by ${e.toExponential(2)} (${path})`);
        }
      }),
    );
  });
}

test("each kernel made with the addon calls its native function, and made without it does not", async () => {
  assert.ok(native !== undefined);
  const names = ["conv2d", "conv2dBackpropInput", "conv2dBackpropFilter", "depthwiseConv2d", "depthwiseConv2dBackpropInput", "depthwiseConv2dBackpropFilter"] as const;
  const counts = Object.fromEntries(names.map((n) => [n, 0])) as Record<(typeof names)[number], number>;
  const spy = { ...native } as NativeKernels;
  for (const n of names) {
    const f = native[n] as (...a: unknown[]) => void;
    (spy as unknown as Record<string, unknown>)[n] = (...a: unknown[]) => {
      counts[n]++;
      f(...a);
    };
  }
  const c: Case = { batch: 2, h: 7, w: 6, cin: 3, k: 3, kw: 3, cout: 2, stride: [1, 1], dilation: 1, pad: "same", depthwise: false };
  const d = dataFor(c);
  const saved = native;
  native = spy;
  try {
    await noLeaks(async () => {
      await withKernels(true, () => checkCase(c, d, "spied conv2d"));
      await withKernels(true, () => checkCase({ ...c, depthwise: true }, dataFor({ ...c, depthwise: true }), "spied depthwise"));
      // The cpu references inside checkCase run the cpu kernels, not these.
      for (const n of names) assert.equal(counts[n], 1, `${n} calls`);
      await withKernels(false, () => checkCase(c, d, "conv2d without the addon"));
      for (const n of names) assert.equal(counts[n], 1, `${n} calls after the run without the addon`);
    });
  } finally {
    native = saved;
  }
});

test("inputs that do not fit the kernel are refused with the kernel's name and the values", async () => {
  await withKernels(true, async () => {
    const x = tf.zeros([1, 5, 5, 2]);
    const xi = tf.zeros([1, 5, 5, 2], "int32");
    const dy = tf.zeros([1, 4, 4, 3]);
    try {
      assert.throws(
        () => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, { strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [3, 3, 2, 3] }),
        /Conv2DBackpropFilter \(wasm\): dy has shape \[1,4,4,3\], but the convolution's geometry needs \[1,3,3,3\]/,
      );
      assert.throws(
        () => tf.engine().runKernel("Conv2DBackpropFilter", { x: xi, dy }, { strides: 1, pad: "valid", dataFormat: "NHWC", filterShape: [2, 2, 2, 3] }),
        /Conv2DBackpropFilter \(wasm\): x must be float32, but got int32/,
      );
      assert.throws(
        () => tf.engine().runKernel("DepthwiseConv2dNativeBackpropFilter", { x, dy }, { strides: 1, pad: "valid", dilations: 1, filterShape: [2, 2, 3, 1] }),
        /DepthwiseConv2dNativeBackpropFilter \(wasm\): filterShape \[2,2,3,1\] has 3 input channels, but x has 2/,
      );
    } finally {
      tf.dispose([x, xi, dy]);
    }
  });
});

test("geometries the stock XNNPACK kernels get wrong (a 1xk filter with strides 2, a numeric pad with a non-square filter) agree with cpu on both paths", async () => {
  const cases: Case[] = [
    { batch: 2, h: 4, w: 9, cin: 2, k: 1, kw: 5, cout: 3, stride: [2, 2], dilation: 1, pad: "same", depthwise: false },
    { batch: 1, h: 4, w: 4, cin: 4, k: 1, kw: 3, cout: 1, stride: [2, 2], dilation: 1, pad: "same", depthwise: true },
    { batch: 2, h: 7, w: 7, cin: 2, k: 1, kw: 3, cout: 3, stride: [1, 1], dilation: 1, pad: 1, depthwise: false },
    { batch: 2, h: 8, w: 8, cin: 2, k: 3, kw: 3, cout: 3, stride: [1, 2], dilation: 1, pad: 1, depthwise: false },
  ];
  await noLeaks(async () => {
    for (const withNative of [true, false]) {
      await withKernels(withNative, async () => {
        for (const c of cases) await checkCase(c, dataFor(c), `${describe(c)} (${withNative ? "native" : "without the addon"})`);
      });
    }
  });
});
