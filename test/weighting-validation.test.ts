// Error messages name the parameter and the offending value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWeighting, DBMTL, DWA, dwaWeights, FAMO, GLS, GradNorm, IMTLL, RLW, StaticWeighting, STCH, UncertaintyWeighting } from "../src/weighting/index.js";

test("unknown method lists the valid names; unknown options are rejected", () => {
  assert.throws(() => createWeighting("pcgrad", { numTasks: 2 }), {
    message: 'Unknown weighting method "pcgrad"; valid names are: equal, static, gradnorm, uncertainty, dwa, rlw, gls, imtl-l, stch, famo, db-mtl.',
  });
  assert.throws(() => createWeighting("dwa", { numTasks: 2, alpha: 1 }), { message: 'Unknown option "alpha" for dwa; it accepts numTasks, temperature.' });
  assert.throws(() => createWeighting("equal", null as never), { message: "createWeighting options must be an object, but got null." });
});

test("method parameters are validated with their value", () => {
  assert.throws(() => new GradNorm({ numTasks: 2, alpha: -1 }), { message: "GradNorm alpha must be a finite number >= 0, but got -1." });
  assert.throws(() => createWeighting("gradnorm", { numTasks: 2, lr: 0 }), { message: "GradNorm lr must be a finite number > 0, but got 0." });
  assert.throws(() => new GradNorm({ numTasks: 2, initialLosses: [1, 0] }), { message: "GradNorm initialLosses[1] must be a finite number > 0, but got 0." });
  assert.throws(() => new GradNorm({ numTasks: 2, optimizer: "rmsprop" as "sgd" }), { message: 'GradNorm optimizer must be "adam" or "sgd", but got "rmsprop".' });
  assert.throws(() => new UncertaintyWeighting({ numTasks: 0 }), { message: "Uncertainty numTasks must be an integer >= 1, but got 0." });
  assert.throws(() => new UncertaintyWeighting({ numTasks: 2, betas: [0.9, 1] }), { message: "Uncertainty betas[1] must be in [0, 1), but got 1." });
  assert.throws(() => new IMTLL({ numTasks: 2, scales: [0, NaN] }), { message: "IMTL-L scales[1] must be a finite number, but got NaN." });
  assert.throws(() => new DWA({ numTasks: 2, temperature: 0 }), { message: "DWA temperature must be a finite number > 0, but got 0." });
  assert.throws(() => dwaWeights([1, 1], [1, 0]), { message: "DWA losses two epochs ago[1] must be a finite number > 0, but got 0." });
  assert.throws(() => new RLW({ numTasks: 2, seed: 0.5 }), { message: "RLW seed must be an integer, but got 0.5." });
  assert.throws(() => new RLW({ numTasks: 2, sigma: -1 }), { message: "RLW sigma must be a finite number > 0, but got -1." });
  assert.throws(() => new RLW({ numTasks: 2 }).weights({ step: -1 }), { message: "RLW step must be an integer >= 0, but got -1." });
  assert.throws(() => new StaticWeighting({ weights: [1, -0.5] }), { message: "Static weights[1] must be a finite number >= 0, but got -0.5." });
  assert.throws(() => new StaticWeighting({ weights: [] }), { message: "Static weights must be a non-empty array of numbers, but got an array of length 0." });
  assert.throws(() => new StaticWeighting({ weights: [1, 2], numTasks: 3 }), { message: "Static weights must be an array of 3 numbers (one per task), but got an array of length 2." });
  assert.throws(() => new STCH({ numTasks: 2, mu: 0 }), { message: "STCH mu must be a finite number > 0, but got 0." });
  assert.throws(() => new STCH({ numTasks: 2, preference: [1, 0] }), { message: "STCH preference[1] must be a finite number > 0, but got 0." });
  assert.throws(() => new STCH({ numTasks: 2, ideal: "max" as never }), { message: 'STCH ideal must be an array of 2 numbers or "running-min", but got "max".' });
  assert.throws(() => new STCH({ numTasks: 2, nadir: [0, 1] }).weights({ losses: [1, 2] }), { message: "STCH nadir[0] must exceed the ideal point 0, but got 0." });
  assert.throws(() => new STCH({ numTasks: 2, ideal: [0, 2], nadir: [1, 1] }).weights({ losses: [1, 2] }), { message: "STCH nadir[1] must exceed the ideal point 2, but got 1." });
  assert.throws(() => new FAMO({ numTasks: 2, weightDecay: -1 }), { message: "FAMO weightDecay must be a finite number >= 0, but got -1." });
  assert.throws(() => new FAMO({ numTasks: 2, minLosses: [0.5, 0] }).weights({ losses: [0.2, 1] }), { message: "FAMO losses[0] must be >= minLosses[0] = 0.5, but got 0.2." });
  // A loss a rounding error below its bound counts as the bound, not as bad input.
  const atBound = new FAMO({ numTasks: 2 }).weights({ losses: [-6e-17, 1] });
  assert.ok(atBound.every((w) => Number.isFinite(w) && w >= 0), `weights ${atBound}`);
  assert.throws(() => new FAMO({ numTasks: 2 }).weights({ losses: [-1e-6, 1] }), { message: "FAMO losses[0] must be >= minLosses[0] = 0, but got -0.000001." });
  assert.throws(() => new DBMTL({ numTasks: 2, beta: 1 }), { message: "DB-MTL beta must be in [0, 1), but got 1." });
});

test("inputs are checked: presence, length, sign and finiteness", () => {
  assert.throws(() => new GLS({ numTasks: 2 }).weights({ losses: [1, 0] }), { message: "GLS losses[1] must be a finite number > 0, but got 0." });
  assert.throws(() => new GLS({ numTasks: 2 }).weights(), { message: "GLS needs losses (one per task), but got undefined." });
  assert.throws(() => new GradNorm({ numTasks: 2 }).update({ losses: [1, 1] }), { message: "GradNorm needs gradNorms (one per task), but got undefined." });
  assert.throws(() => new GradNorm({ numTasks: 2 }).update({ losses: [1, 1], gradNorms: [1, -1] }), { message: "GradNorm gradNorms[1] must be a finite number >= 0, but got -1." });
  assert.throws(() => new GradNorm({ numTasks: 2 }).update({ losses: [0, 1], gradNorms: [1, 1] }), { message: "GradNorm initial losses (first update)[0] must be a finite number > 0, but got 0." });
  assert.throws(() => new DWA({ numTasks: 3 }).update({ losses: [1, 2] }), { message: "DWA losses must be an array of 3 numbers (one per task), but got an array of length 2." });
  assert.throws(() => new UncertaintyWeighting({ numTasks: 1 }).update({ losses: [Infinity] }), { message: "Uncertainty losses[0] must be a finite number >= 0, but got Infinity." });
  assert.throws(() => new DBMTL({ numTasks: 2 }).update({ gradNorms: [1, "2" as never] }), { message: 'DB-MTL gradNorms[1] must be a finite number >= 0, but got "2".' });
  assert.throws(() => createWeighting("equal", { numTasks: 2 }).update({ losses: [1, NaN] }), { message: "Equal losses[1] must be a finite number, but got NaN." });
});
