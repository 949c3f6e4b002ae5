// The matmul override's agreement tests with the native addon switched off, so every product takes
// the pure-wasm XNNPACK path (what users without a compiler or BLAS get).
import { test } from "node:test";
import assert from "node:assert/strict";
import { activeNative, setNativeKernelsEnabled } from "../src/backend/native.js";

setNativeKernelsEnabled(false);

test("the native kernels are off for this file", () => {
  assert.equal(activeNative(), undefined);
});

await import("./wasm-matmul.cases.js");
