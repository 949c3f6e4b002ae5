/**
 * The Tile and Mean overrides for wasm (src/backend/kernels/Tile.ts, Mean.ts) against the cpu
 * backend on random shapes, with and without the native addon.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { setNativeKernelsEnabled } from "../src/backend/native.js";
import { Rng } from "../src/data/random.js";

type Case = { shape: number[]; reps?: number[]; axis?: number[]; keepDims?: boolean; dtype: "float32" | "int32" | "bool" };

const rng = new Rng(11);
const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
const tileCases: Case[] = [
  { shape: [1, 1, 1, 32], reps: [8, 9, 7, 1], dtype: "float32" },
  { shape: [3], reps: [4], dtype: "int32" },
  { shape: [], reps: [], dtype: "float32" },
  { shape: [2, 0, 3], reps: [2, 2, 2], dtype: "float32" },
  { shape: [2, 3], reps: [0, 2], dtype: "float32" },
  { shape: [2, 3, 1], reps: [1, 1, 1], dtype: "bool" },
];
for (let i = 0; i < 12; i++) {
  const rank = int(1, 5);
  tileCases.push({ shape: Array.from({ length: rank }, () => int(1, 4)), reps: Array.from({ length: rank }, () => int(1, 3)), dtype: (["float32", "int32", "bool"] as const)[i % 3]! });
}
const meanCases: Case[] = [
  { shape: [16, 8, 8, 5], axis: [0, 1, 2], keepDims: true, dtype: "float32" },
  { shape: [6, 7], axis: [0], dtype: "float32" },
  { shape: [4, 3, 2], axis: [0, 1], dtype: "float32" },
  { shape: [4, 3, 2], axis: [1, 2], dtype: "float32" },
  { shape: [4, 3, 2], axis: [1, 0], dtype: "float32" },
  { shape: [5, 3], axis: [0], dtype: "int32" },
];

function input(c: Case): tf.Tensor {
  const n = c.shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, (_, i) => (c.dtype === "float32" ? Math.sin(i * 1.7 + 0.3) * 3 : c.dtype === "int32" ? (i * 7) % 11 - 5 : i % 3 === 0 ? 1 : 0));
  return tf.tensor(values, c.shape, c.dtype);
}

async function run(backend: "cpu" | "wasm"): Promise<{ tile: number[][]; mean: number[][] }> {
  await initBackend({ backend, report: false });
  const tile = tileCases.map((c) => tf.tidy(() => Array.from(tf.tile(input(c), c.reps!).dataSync() as ArrayLike<number>)));
  const mean = meanCases.map((c) => tf.tidy(() => Array.from(tf.mean(input(c), c.axis, c.keepDims).dataSync() as ArrayLike<number>)));
  return { tile, mean };
}

const reference = await run("cpu");

for (const addon of [true, false]) {
  test(`wasm ${addon ? "with" : "without"} the addon: Tile equals cpu exactly and Mean to float32 rounding`, async () => {
    setNativeKernelsEnabled(addon);
    try {
      const got = await run("wasm");
      tileCases.forEach((c, i) => assert.deepEqual(got.tile[i], reference.tile[i], `Tile ${JSON.stringify(c)}`));
      meanCases.forEach((c, i) => {
        const want = reference.mean[i]!;
        assert.equal(got.mean[i]!.length, want.length);
        got.mean[i]!.forEach((v, j) => assert.ok(Math.abs(v - want[j]!) <= 1e-6 * Math.max(1, Math.abs(want[j]!)), `Mean ${JSON.stringify(c)}[${j}]: ${v} vs ${want[j]}`));
      });
      const n0 = tf.memory().numTensors;
      tf.tidy(() => tf.mean(tf.tile(tf.ones([1, 1, 1, 4]), [2, 3, 3, 1]), [0, 1, 2])).dispose();
      assert.equal(tf.memory().numTensors, n0);
    } finally {
      setNativeKernelsEnabled(true);
    }
  });
}
