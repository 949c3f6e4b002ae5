// Hand-derived values for the loss weightings on small cases.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createWeighting, DBMTL, DWA, dwaWeights, EqualWeighting, FAMO, famoLogitGradient, geometricMean, GLS, glsWeights, GradNorm,
  gradnormGradient, gradnormLoss, IMTLL, inverseTrainingRates, RLW, StaticWeighting, STCH, UncertaintyWeighting, VectorOptimizer,
} from "../src/weighting/index.js";

const close = (actual: number, expected: number, tol = 1e-12, what = "") =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected}, got ${actual} (tol ${tol})`);
const closeVec = (actual: number[], expected: number[], tol = 1e-12, what = "") => {
  assert.equal(actual.length, expected.length, `${what} length`);
  actual.forEach((x, i) => close(x, expected[i], tol, `${what}[${i}]`));
};
const total = (x: number[]) => x.reduce((a, b) => a + b, 0);
/** Central differences of f at x. */
const numericGradient = (f: (x: number[]) => number, x: number[], h = 1e-6) =>
  x.map((_, i) => (f(x.map((v, k) => (k === i ? v + h : v))) - f(x.map((v, k) => (k === i ? v - h : v)))) / (2 * h));

test("equal and static weightings return their weights unchanged by updates", () => {
  const eq = new EqualWeighting({ numTasks: 3 });
  eq.update({ losses: [5, 1, 0.1] });
  assert.deepEqual(eq.weights(), [1, 1, 1]);
  const st = createWeighting("static", { weights: [0.7, 0.3] });
  st.update({ losses: [2, 9] });
  assert.deepEqual(st.weights(), [0.7, 0.3]);
  assert.equal(new StaticWeighting({ weights: [0, 2] }).numTasks, 2);
});

test("DWA: weights 1 for two epochs, then T·softmax(r/2) of the loss ratios", () => {
  const dwa = new DWA({ numTasks: 2 });
  assert.deepEqual(dwa.weights(), [1, 1]);
  dwa.update({ losses: [2, 1] });
  assert.deepEqual(dwa.weights(), [1, 1]);
  dwa.update({ losses: [1, 1] });
  // r = [1/2, 1/1]: w = 2 e^{r_i/2} / (e^{1/4} + e^{1/2}).
  const d = Math.exp(0.25) + Math.exp(0.5);
  closeVec(dwa.weights(), [(2 * Math.exp(0.25)) / d, (2 * Math.exp(0.5)) / d], 1e-15);
  close(dwa.weights()[0], 0.8756469982, 1e-9); // 2/(1+e^{1/4})
  dwa.update({ losses: [0.5, 0.9] }); // only the last two epochs count: r = [0.5, 0.9]
  const d2 = Math.exp(0.25) + Math.exp(0.45);
  closeVec(dwa.weights(), [(2 * Math.exp(0.25)) / d2, (2 * Math.exp(0.45)) / d2], 1e-15);
  // A large temperature flattens towards equal weights.
  closeVec(dwaWeights([1, 1], [2, 1], 1e6), [1, 1], 1e-6);
});

test("RLW: softmax of N(0, σ²) draws, |log(w1/w2)| averages 2σ/√π", () => {
  for (const sigma of [1, 0.5]) {
    const rlw = new RLW({ numTasks: 2, seed: 3, sigma });
    let acc = 0;
    const n = 4000;
    for (let k = 0; k < n; k++) {
      const w = rlw.weights();
      close(total(w), 1, 1e-15);
      acc += Math.abs(Math.log(w[0] / w[1])); // = |z1 - z2|, z1 - z2 ~ N(0, 2σ²)
      rlw.update();
    }
    close(acc / n, (2 * sigma) / Math.sqrt(Math.PI), 0.05 * sigma, `sigma ${sigma}`);
  }
  assert.deepEqual(new RLW({ numTasks: 1 }).weights(), [1]);
});

test("GLS: implied weights GM/(T L_i) are the gradient of the geometric mean", () => {
  closeVec(glsWeights([1, 4]), [1, 0.25], 1e-15); // GM = 2
  close(geometricMean([2, 8, 4]), 4, 1e-12);
  const L = [0.3, 2, 7, 1.1];
  closeVec(new GLS({ numTasks: 4 }).weights({ losses: L }), numericGradient(geometricMean, L), 1e-8);
  // Scale invariance of the product: multiplying one loss by 10 leaves the other tasks' share alone.
  const w = glsWeights([1, 1]), w10 = glsWeights([10, 1]);
  close(w10[0] * 10, w[0] * Math.sqrt(10), 1e-12);
});

test("STCH: softmax((L - z)/μ) weights, nadir scaling, gradient of the smoothed max", () => {
  const e = Math.E;
  closeVec(new STCH({ numTasks: 2 }).weights({ losses: [1, 2] }), [1 / (1 + e), e / (1 + e)], 1e-15);
  // Nadir [2, 4], ideal 0: both gaps 0.5, p = ½ each, w_i = p_i / n_i.
  const withNadir = new STCH({ numTasks: 2, nadir: [2, 4] });
  closeVec(withNadir.weights({ losses: [1, 2] }), [0.25, 0.125], 1e-15);
  const s = new STCH({ numTasks: 3, mu: 0.3, preference: [1, 2, 0.5], ideal: [0.1, 0, 0.2], nadir: [3, 2, 5] });
  const L = [1, 0.8, 2.5];
  closeVec(s.weights({ losses: L }), numericGradient((x) => s.value({ losses: x }), L), 1e-8);
  // Small μ: the worst task takes (nearly) all the weight.
  closeVec(new STCH({ numTasks: 3, mu: 1e-3 }).weights({ losses: [1, 3, 2] }), [0, 1, 0], 1e-12);
  // Running-min ideal: z_i = smallest loss so far, so a task at its best has gap 0.
  const rm = new STCH({ numTasks: 2, ideal: "running-min" });
  rm.update({ losses: [2, 3] });
  rm.update({ losses: [1, 4] });
  assert.deepEqual(rm.ideal([1.5, 3.5]), [1, 3]);
  closeVec(rm.weights({ losses: [1.5, 3.5] }), [0.5, 0.5], 1e-15); // gaps 0.5 and 0.5
});

test("uncertainty weighting: s_i → log L_i on constant losses, weights exp(-s), regulariser Σ s", () => {
  const L = [0.5, 2, 10];
  for (const [optimizer, lr, steps, tol] of [["sgd", 0.1, 400, 1e-9], ["adam", 0.05, 3000, 1e-3]] as const) {
    const u = new UncertaintyWeighting({ numTasks: 3, optimizer, lr });
    assert.deepEqual(u.weights(), [1, 1, 1]);
    for (let k = 0; k < steps; k++) u.update({ losses: L });
    closeVec(u.logVariances, L.map(Math.log), tol, optimizer);
    closeVec(u.weights(), L.map((l) => 1 / l), tol * 3, optimizer);
    close(u.regularizer(), total(L.map(Math.log)), 3 * tol);
    close(u.total(L), 3 + total(L.map(Math.log)), 4 * tol);
  }
  // One SGD step by hand: s = 0, L = 2: ∂/∂s = 1 - 2 = -1, so s = 0.1 with lr 0.1.
  const one = new UncertaintyWeighting({ numTasks: 1, optimizer: "sgd", lr: 0.1 });
  one.update({ losses: [2] });
  closeVec(one.logVariances, [0.1], 1e-15);
});

test("IMTL-L: s_i → -log L_i, so every scaled loss e^{s_i} L_i → 1", () => {
  const L = [0.25, 3, 40];
  const m = new IMTLL({ numTasks: 3, optimizer: "sgd", lr: 0.02 });
  for (let k = 0; k < 2000; k++) m.update({ losses: L });
  closeVec(m.scales, L.map((l) => -Math.log(l)), 1e-9);
  closeVec(m.weights().map((w, i) => w * L[i]), [1, 1, 1], 1e-9);
  close(m.regularizer(), total(L.map(Math.log)), 1e-8);
});

test("GradNorm: closed-form gradient equals finite differences (detached and full target)", () => {
  const w = [0.6, 1.7, 0.7];
  const g = [2, 0.5, 1.3];
  const r = inverseTrainingRates([0.8, 0.3, 0.5], [1, 0.5, 1]); // L̃ = [0.8, 0.6, 0.5]
  closeVec(r, [0.8 / (1.9 / 3), 0.6 / (1.9 / 3), 0.5 / (1.9 / 3)], 1e-15);
  const alpha = 1.5;
  const G = w.map((x, i) => x * g[i]);
  const target = r.map((ri) => (total(G) / 3) * ri ** alpha);
  const fixedTarget = numericGradient((x) => gradnormLoss(x, g, r, alpha, target), w);
  closeVec(gradnormGradient(G, g, r, alpha), fixedTarget, 1e-7, "detached");
  const moving = numericGradient((x) => gradnormLoss(x, g, r, alpha), w);
  closeVec(gradnormGradient(G, g, r, alpha, { detachTarget: false }), moving, 1e-7, "full");
  assert.ok(Math.abs(moving[0] - fixedTarget[0]) > 0.1, "the two gradients should differ here");
});

test("GradNorm: equal loss ratios drive the weighted norms G_i together", () => {
  const g = [1, 4, 0.5];
  const gn = new GradNorm({ numTasks: 3, alpha: 1.5, optimizer: "sgd", lr: 0.005 });
  const L0 = [2, 1, 3];
  for (let k = 0; k < 1500; k++) {
    const w = gn.weights();
    close(total(w), 3, 1e-12);
    gn.update({ losses: L0.map((l) => l * 0.999 ** k), gradNorms: w.map((x, i) => x * g[i]) }); // ratios stay equal
  }
  // Fixed point w ∝ 1/g_i with Σ w = 3: G_i all equal.
  closeVec(gn.weights(), [1, 0.25, 2].map((x) => (3 * x) / 3.25), 0.02);
  const G = gn.weights().map((x, i) => x * g[i]);
  assert.ok(Math.max(...G) / Math.min(...G) < 1.05, `G spread ${G}`);
});

test("GradNorm: with α = 1 the lagging task gets G_i ∝ its inverse training rate", () => {
  const gn = new GradNorm({ numTasks: 2, alpha: 1, optimizer: "sgd", lr: 0.002, initialLosses: [1, 1] });
  for (let k = 0; k < 2000; k++) {
    const w = gn.weights();
    gn.update({ losses: [1.5, 0.5], gradNorms: w }); // g = [1, 1], r = [1.5, 0.5]
  }
  closeVec(gn.weights(), [1.5, 0.5], 0.01);
});

test("FAMO: loss weights z_i/(c L_i), one logit step by hand, a stalled task gains weight", () => {
  const f = new FAMO({ numTasks: 2, optimizer: "sgd", lr: 0.1, weightDecay: 0 });
  closeVec(f.weights({ losses: [1, 4] }), [0.8, 0.2], 1e-8); // z = ½ each: ∝ [1/1, 1/4]
  f.update({ losses: [1, 1] });
  assert.deepEqual(f.logits, [0, 0]); // first update only records
  f.update({ losses: [Math.exp(-1), 1] }); // δ = [1, 0], z = ½: ∇ = [¼, -¼]
  closeVec(f.logits, [-0.025, 0.025], 1e-9);
  closeVec(famoLogitGradient([0, 0], [1, 0]), [0.25, -0.25], 1e-15);
  // Weight decay alone (no change in the losses) shrinks the logits by (1 - lr γ) per step.
  const d = new FAMO({ numTasks: 2, optimizer: "sgd", lr: 0.1, weightDecay: 0.5 });
  d.update({ losses: [1, 1] });
  d.update({ losses: [Math.exp(-1), 1] });
  const before = d.logits;
  d.update({ losses: [Math.exp(-1), 1] });
  closeVec(d.logits, before.map((x) => x * 0.95), 1e-12);

  const famo = new FAMO({ numTasks: 2 }); // defaults: Adam, lr 0.025, γ 0.001
  for (let k = 0; k < 100; k++) famo.update({ losses: [0.9 ** k, 1] }); // task 0 improves, task 1 stalls
  const z = famo.taskWeights();
  assert.ok(z[1] > 0.7, `stalled task should dominate z, got ${z}`);
  const w = famo.weights({ losses: [1, 1] });
  assert.ok(w[1] > 0.7 && Math.abs(total(w) - 1) < 1e-12, `loss weights ${w}`);
});

test("DB-MTL: weights max EMA norm / EMA norm on the log-losses", () => {
  const db = new DBMTL({ numTasks: 2, beta: 0.5, eps: 1e-12 });
  assert.deepEqual(db.weights(), [1, 1]);
  db.update({ gradNorms: [1, 2] }); // EMA [0.5, 1]
  closeVec(db.weights(), [2, 1], 1e-15);
  db.update({ gradNorms: [3, 2] }); // EMA [1.75, 1.5]
  closeVec(db.weights(), [1, 1.75 / 1.5], 1e-15);
  closeVec(db.lossWeights([1, 2]), [1, 1.75 / 1.5 / 2], 1e-11);
  closeVec(db.logLosses([1, Math.E]), [0, 1], 1e-11);
  // Rescaled log-loss gradients all have the largest EMA norm.
  const ema = [1.75, 1.5];
  closeVec(db.weights().map((w, i) => w * ema[i]), [1.75, 1.75], 1e-15);
});

test("the tiny Adam matches a hand-computed first and second step", () => {
  const adam = new VectorOptimizer("Test", { lr: 0.1 });
  // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to eps).
  const p1 = adam.step([1, -2], [4, -0.5]);
  closeVec(p1, [0.9, -1.9], 1e-8);
  // Step 2 with g = [-4, -0.5]: m = [0.4 - 0.4, ...]: m̂ = (0.9·0.1·4 + 0.1·(-4)) / 0.19 for x0.
  const p2 = adam.step(p1, [-4, -0.5]);
  const m0 = (0.9 * 0.4 + 0.1 * -4) / (1 - 0.81), v0 = (0.999 * 0.001 * 16 + 0.001 * 16) / (1 - 0.999 ** 2);
  close(p2[0], p1[0] - (0.1 * m0) / (Math.sqrt(v0) + 1e-8), 1e-12);
  close(p2[1], -1.9 + 0.1, 1e-8); // constant gradient: steps of lr
});
