// The matmul override's agreement tests with the native addon's BLAS doing the products (the test
// command builds the addon first, so it must load here).
import { test } from "node:test";
import assert from "node:assert/strict";
import { activeNative, nativeKernels, setNativeKernelsEnabled } from "../src/backend/native.js";

setNativeKernelsEnabled(true);

test("the native addon is built and loads (npm run native)", () => {
  const status = nativeKernels();
  assert.ok(activeNative() !== undefined, `native kernels unavailable: ${status.reason}`);
  assert.equal(status.threads, 1);
  assert.match(status.blas ?? "", /OpenBLAS/);
});

await import("./wasm-matmul.cases.js");

test("products go through the addon's gemm (and not through it when switched off)", async () => {
  const tf = await import("@tensorflow/tfjs");
  const { registerWasmKernels } = await import("../src/backend/kernels/register-all.js");
  await tf.setBackend("wasm");
  const native = activeNative()!;
  const original = native.gemm;
  let calls = 0;
  native.gemm = (...args: Parameters<typeof original>) => {
    calls++;
    original(...args);
  };
  const h = registerWasmKernels({ only: ["BatchMatMul", "_FusedMatMul"] });
  try {
    const a = tf.randomNormal([40, 30], 0, 1, "float32", 1);
    const b = tf.randomNormal([40, 20], 0, 1, "float32", 2);
    tf.matMul(a, b, true, false).dispose();
    assert.equal(calls, 1);
    setNativeKernelsEnabled(false);
    tf.matMul(a, b, true, false).dispose();
    assert.equal(calls, 1);
    tf.dispose([a, b]);
  } finally {
    setNativeKernelsEnabled(true);
    native.gemm = original;
    h.restore();
  }
});
