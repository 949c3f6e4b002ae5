// Error messages name the parameter and the offending value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { aggregate, cagrad, GradVac, gradvac, graddrop, mgdaWeights, alignedMtl, upgrad, pcgrad } from "../src/aggregation/index.js";

const J = [[1, 0], [-0.5, 1]];

test("unknown method lists the valid names", () => {
  assert.throws(() => aggregate("adam", J), {
    message: 'Unknown aggregation method "adam"; valid names are: mean, mgda, pcgrad, cagrad, imtl-g, gradvac, graddrop, aligned-mtl, nash-mtl, upgrad, dualproj, config.',
  });
});

test("J must be non-empty, rectangular and finite", () => {
  assert.throws(() => aggregate("mean", []), { message: "J must be a non-empty array of rows, but got an array of length 0." });
  assert.throws(() => aggregate("mean", [[]]), { message: "J row 0 must be a non-empty array, but got an array of length 0." });
  assert.throws(() => aggregate("mgda", [[1, 2], [3]]), { message: "J must be rectangular: row 0 has 2 columns but row 1 has 1." });
  assert.throws(() => aggregate("upgrad", [[1, 2], [3, NaN]]), { message: "J[1][1] must be a finite number, but got NaN." });
  assert.throws(() => aggregate("upgrad", [[1, Infinity]]), { message: "J[0][1] must be a finite number, but got Infinity." });
  assert.throws(() => pcgrad([[1, 2], [3, "4" as unknown as number]]), { message: 'J[1][1] must be a finite number, but got "4".' });
});

test("method parameters are validated with their value", () => {
  assert.throws(() => aggregate("cagrad", J, { c: 1.5 }), { message: "CAGrad c must be in [0, 1), but got 1.5." });
  assert.throws(() => cagrad(J, { c: -0.1 }), { message: "CAGrad c must be in [0, 1), but got -0.1." });
  assert.throws(() => gradvac(J, { beta: 0 }), { message: "GradVac beta must be in (0, 1], but got 0." });
  assert.throws(() => new GradVac({ beta: 2 }), { message: "GradVac beta must be in (0, 1], but got 2." });
  assert.throws(() => gradvac(J, { targets: [[0]] }), { message: "GradVac targets must be 2 x 2 to match the 2 tasks, but got 1 x 1." });
  assert.throws(() => aggregate("pcgrad", J, { seed: 1.5 }), { message: "PCGrad seed must be an integer, but got 1.5." });
  assert.throws(() => graddrop(J, { leak: [0, 2] }), { message: "GradDrop leak[1] must be in [0, 1], but got 2." });
  assert.throws(() => graddrop(J, { leak: [0] }), { message: "GradDrop leak must be an array of 2 numbers (one per task), but got length 1." });
  assert.throws(() => mgdaWeights([[1, 0], [0, 1]], { maxIters: 0 }), { message: "MGDA maxIters must be a positive integer, but got 0." });
  assert.throws(() => alignedMtl(J, { scale: "max" as "min" }), { message: 'Aligned-MTL scale must be "min", "median" or "rmse", but got "max".' });
  assert.throws(() => upgrad(J, { preference: [1, -1] }), { message: "UPGrad preference[1] must be a number >= 0, but got -1." });
  assert.throws(() => aggregate("upgrad", J, { maxIters: 2.5 }), { message: "QP maxIters must be a non-negative integer, but got 2.5." });
  assert.throws(() => aggregate("nash-mtl", J, { tol: -1 }), { message: "Nash-MTL tol must be a number >= 0, but got -1." });
});

test("unknown options and non-symmetric Gramians are rejected", () => {
  assert.throws(() => aggregate("mgda", J, { seed: 1 }), { message: 'Unknown option "seed" for mgda; it accepts tol, maxIters.' });
  assert.throws(() => aggregate("mean", J, { c: 1 }), { message: 'Unknown option "c" for mean; it accepts no options.' });
  assert.throws(() => mgdaWeights([[1, 2], [0, 1]]), { message: "G must be symmetric, but G[1][0] = 0 and G[0][1] = 2." });
  assert.throws(() => mgdaWeights([[1, 2]]), { message: "G must be square, but got 1 x 2." });
});
