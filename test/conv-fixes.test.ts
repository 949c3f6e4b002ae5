/**
 * The forward convolutions are fixes, registered even with the fast paths off
 * (`JOINTLY_FAST_PATHS=0`): in geometries where the stock tfjs-wasm 4.22 kernels give wrong outputs
 * (a 1xk filter with strides 2 and "same" padding: off by up to 6.9 against cpu; a numeric pad
 * with a non-square filter), wasm agrees with cpu with the fast paths on and off. Each run is a
 * fresh process, since the backend and its kernels are chosen once per process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const SCRIPT = `
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "./src/backend/init.ts";
await initBackend({ backend: process.env.CASE_BACKEND, report: false });
const out = tf.tidy(() => {
  const x = tf.randomNormal([2, 4, 9, 2], 0, 1, "float32", 1);
  const w = tf.randomNormal([1, 5, 2, 3], 0, 1, "float32", 2);
  const xd = tf.randomNormal([1, 4, 4, 4], 0, 1, "float32", 5);
  const dw = tf.randomNormal([1, 3, 4, 1], 0, 1, "float32", 3);
  const bias = tf.randomNormal([3], 0, 1, "float32", 4);
  const x7 = tf.randomNormal([2, 7, 7, 2], 0, 1, "float32", 6);
  const w13 = tf.randomNormal([1, 3, 2, 3], 0, 1, "float32", 7);
  return [
    tf.conv2d(x, w, 2, "same"),
    tf.fused.conv2d({ x, filter: w, strides: 2, pad: "same", bias, activation: "relu" }),
    tf.depthwiseConv2d(xd, dw, 2, "same"),
    tf.conv2d(x7, w13, 1, 1),
  ].map((t) => Array.from(t.dataSync()));
});
console.log(JSON.stringify(out));
`;

function outputs(backend: string, env: Record<string, string> = {}): number[][] {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", SCRIPT], {
    cwd: ROOT, env: { ...process.env, ...env, CASE_BACKEND: backend }, encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as number[][];
}

test("strided 'same' 1xk and numeric-pad convolutions agree with cpu on wasm, fast paths on and off", () => {
  const want = outputs("cpu");
  for (const fast of ["1", "0"]) {
    const got = outputs("wasm", { JOINTLY_FAST_PATHS: fast });
    got.forEach((g, i) => {
      assert.equal(g.length, want[i]!.length);
      const worst = Math.max(...g.map((v, j) => Math.abs(v - want[i]![j]!)));
      assert.ok(worst < 1e-4, `JOINTLY_FAST_PATHS=${fast}, output ${i}: differs from cpu by ${worst}`);
    });
  }
});
