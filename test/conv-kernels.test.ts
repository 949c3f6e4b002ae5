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

/** Registers our kernels made with `withNative` (or without the addon), runs `fn`, puts the stock ones back. */
async function withKernels<T>(withNative: boolean, fn: () => Promise<T> | T): Promise<T> {
  const saved: { name: string; stock?: tf.KernelConfig }[] = [];
  for (const k of KERNELS) {
    const stock = tf.getKernel(k.kernelName, "wasm");
    const kernelFunc = k.make(withNative ? native : undefined, stock?.kernelFunc);
    if (kernelFunc === undefined) continue;
    if (stock !== undefined) tf.unregisterKernel(k.kernelName, "wasm");
    tf.registerKernel({ kernelName: k.kernelName, backendName: "wasm", kernelFunc, setupFunc: stock?.setupFunc });
    saved.push({ name: k.kernelName, stock });
  }
  try {
    return await fn();
  } finally {
    for (const s of saved) {
      tf.unregisterKernel(s.name, "wasm");
      if (s.stock !== undefined) tf.registerKernel(s.stock);
    }
  }
}

/** Asserts that `fn` leaves no tensor and no wasm buffer behind. */
async function noLeaks(fn: () => Promise<void>): Promise<void> {
  const wasm = tf.findBackend("wasm") as tf.KernelBackend;
  const tensors = tf.memory().numTensors;
  const buffers = wasm.numDataIds();
  await fn();
  assert.equal(tf.memory().numTensors, tensors, "tensors left behind");
  assert.equal(wasm.numDataIds(), buffers, "wasm buffers left behind");
}

type Named = Record<string, { shape: number[]; data: Float32Array }>;

/** Runs one kernel on the given backend from plain arrays; returns its output's values and shape. */
async function run(backend: "wasm" | "cpu", kernelName: string, inputs: Named, attrs: object): Promise<{ data: Float32Array; shape: number[] }> {
  const previous = tf.getBackend();
  if (previous !== backend) await tf.setBackend(backend);
  try {
    const ts = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.data, v.shape, "float32")]));
    try {
      const out = tf.engine().runKernel(kernelName, ts, attrs as tf.NamedAttrMap) as tf.Tensor;
      const data = out.dataSync() as Float32Array;
      const shape = out.shape;
      out.dispose();
      return { data: Float32Array.from(data), shape };
    } finally {
      tf.dispose(Object.values(ts));
    }
  } finally {
    if (previous !== backend) await tf.setBackend(previous);
  }
}

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
  stride: number;
  dilation: number;
  pad: "same" | "valid" | number;
  depthwise: boolean;
}

function describe(c: Case): string {
  return `${c.depthwise ? "depthwise" : "conv2d"} x[${c.batch},${c.h},${c.w},${c.cin}] k${c.k}x${c.kw} ${c.depthwise ? "mult" : "out"} ${c.cout} s${c.stride} d${c.dilation} ${c.pad}`;
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
            const iy = oy * c.stride - g.padInfo.top + fy * c.dilation;
            const ix = ox * c.stride - g.padInfo.left + fx * c.dilation;
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

/** A random case whose output is not empty; `dilation` 2 only with stride 1 (as tfjs's ops require). */
function randomCase(depthwise: boolean): Case {
  for (;;) {
    const k = pick([1, 3, 5]);
    const stride = pick([1, 2]);
    const dilation = stride === 1 ? pick([1, 2]) : 1;
    const c: Case = {
      batch: randInt(1, 3),
      h: randInt(4, 11),
      w: randInt(4, 11),
      cin: randInt(1, 5),
      k,
      kw: rng.next() < 0.25 ? pick([1, 3, 5]) : k,
      cout: depthwise ? pick([1, 2]) : randInt(1, 5),
      stride,
      dilation,
      pad: pick(["same", "valid"] as const),
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
