/**
 * Dilated convolutions train on every backend (src/backend/gradients/conv.ts), checked
 * against a float64 reference written out here from the definition of a convolution; and the cpu
 * safety net (src/backend/kernels/cpu-fallback.ts) runs a kernel wasm lacks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { cpuFallbackCalls, kernelsMissingOnWasm, setFallbackNotice } from "../src/backend/kernels/cpu-fallback.js";
import { maxRelErr, reference, type Geometry } from "./conv-reference.js";

const CASES: Geometry[] = [
  { n: 2, h: 9, w: 8, cin: 3, k: 3, cout: 4, stride: 1, dilation: 2, pad: "same" },
  { n: 1, h: 11, w: 11, cin: 2, k: 3, cout: 2, stride: 1, dilation: 2, pad: "valid" },
  { n: 2, h: 12, w: 10, cin: 1, k: 5, cout: 3, stride: 1, dilation: 2, pad: "same" },
  { n: 1, h: 13, w: 13, cin: 2, k: 3, cout: 1, stride: 1, dilation: 3, pad: "valid" },
  { n: 2, h: 8, w: 8, cin: 3, k: 3, cout: 2, stride: 1, dilation: 1, pad: "same" },
];

function check(backend: string, depthwise: boolean): void {
  for (const g of CASES) {
    const x = tf.randomNormal([g.n, g.h, g.w, g.cin], 0, 1, "float32", 1) as tf.Tensor4D;
    const W = tf.randomNormal([g.k, g.k, g.cin, g.cout], 0, 1, "float32", 2) as tf.Tensor4D;
    const conv = (a: tf.Tensor4D, b: tf.Tensor4D) =>
      depthwise ? tf.depthwiseConv2d(a, b, g.stride, g.pad, "NHWC", g.dilation) : tf.conv2d(a, b, g.stride, g.pad, "NHWC", g.dilation);
    const yShape = conv(x, W).shape;
    const r = tf.randomNormal(yShape, 0, 1, "float32", 3);
    const ref = reference(g, depthwise, x.dataSync() as Float32Array, W.dataSync() as Float32Array, r.dataSync() as Float32Array);
    assert.deepEqual(yShape, ref.outShape);
    const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), r)))([x, W]);
    const label = `${backend} ${depthwise ? "depthwise" : "conv2d"} ${JSON.stringify(g)}`;
    assert.ok(maxRelErr(conv(x, W).dataSync(), ref.y) < 1e-5, `${label}: forward`);
    assert.ok(maxRelErr(gx!.dataSync(), ref.dx) < 1e-5, `${label}: dx off by ${maxRelErr(gx!.dataSync(), ref.dx)}`);
    assert.ok(maxRelErr(gw!.dataSync(), ref.dW) < 1e-5, `${label}: dW off by ${maxRelErr(gw!.dataSync(), ref.dW)}`);
    tf.dispose([x, W, r, gx!, gw!]);
  }
}

for (const backend of ["cpu", "wasm"] as const) {
  test(`${backend}: dilated conv2d and depthwise gradients match a float64 reference`, async () => {
    await initBackend({ backend, report: false });
    check(backend, false);
    check(backend, true);
  });

  test(`${backend}: a dilated tf.layers.conv2d with bias and relu trains (fused conv routed to the dilated gradient)`, async () => {
    await initBackend({ backend, report: false });
    const layer = tf.layers.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, activation: "relu", padding: "same", kernelInitializer: "ones" });
    const x = tf.randomNormal([1, 7, 7, 1], 0, 1, "float32", 4) as tf.Tensor4D;
    layer.apply(x);
    const [kernel, bias] = layer.trainableWeights.map((w) => w.read() as tf.Variable);
    const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x) as tf.Tensor) as tf.Scalar);
    // By hand: y = relu(conv(x, K) + b); dK = conv-filter-gradient of relu'(y).
    const pre = tf.add(tf.conv2d(x, kernel as tf.Tensor4D, 1, "same", "NHWC", 2), bias!);
    const mask = tf.cast(tf.greater(pre, 0), "float32");
    const g: Geometry = { n: 1, h: 7, w: 7, cin: 1, k: 3, cout: 2, stride: 1, dilation: 2, pad: "same" };
    const ref = reference(g, false, x.dataSync() as Float32Array, kernel!.dataSync() as Float32Array, mask.dataSync() as Float32Array);
    assert.ok(Math.abs(value.dataSync()[0]! - tf.sum(tf.relu(pre)).dataSync()[0]!) < 1e-4);
    assert.ok(maxRelErr(grads[kernel!.name]!.dataSync(), ref.dW) < 1e-5, "kernel gradient");
    assert.ok(Math.abs(grads[bias!.name]!.sum().dataSync()[0]! - mask.sum().dataSync()[0]!) < 1e-4, "bias gradient = count of active outputs");
    layer.dispose();
  });
}

test("the cpu safety net runs a kernel wasm lacks, says so once, and leaks nothing", async () => {
  await initBackend({ backend: "wasm", report: false });
  const lines: string[] = [];
  const previous = setFallbackNotice((l) => lines.push(l));
  try {
    // Einsum has no wasm kernel in tfjs-backend-wasm 4.22.
    assert.ok(tf.getKernel("Einsum", "cpu") !== undefined);
    const a = tf.randomNormal([3, 4], 0, 1, "float32", 5);
    const b = tf.randomNormal([4, 2], 0, 1, "float32", 6);
    const n0 = tf.memory().numTensors;
    const calls0 = cpuFallbackCalls().Einsum ?? 0;
    const viaEinsum = tf.einsum("ij,jk->ik", a, b);
    assert.equal(tf.getBackend(), "wasm");
    const product = tf.matMul(a, b);
    assert.ok(maxRelErr(viaEinsum.dataSync(), product.dataSync()) < 1e-5);
    product.dispose();
    viaEinsum.dispose();
    tf.einsum("ij,jk->ik", a, b).dispose();
    assert.equal(tf.memory().numTensors, n0, "tensors leaked by two fallback calls");
    assert.equal((cpuFallbackCalls().Einsum ?? 0) - calls0, 2);
    assert.ok(lines.filter((l) => l.includes("'Einsum'")).length <= 1, "the notice is printed once");
    assert.ok(!kernelsMissingOnWasm().includes("Einsum"), "registered for wasm");
  } finally {
    setFallbackNotice(previous);
  }
});
