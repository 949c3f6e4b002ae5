// Properties over many seeded random Jacobians (T in 2..5, d in 2..20).
import { test } from "node:test";
import assert from "node:assert/strict";
import { aggregate, aggregatorNames, seededRandom, upgrad, dualproj, mgda } from "../src/aggregation/index.js";

const dotp = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
const len = (a: number[]) => Math.sqrt(dotp(a, a));

/** 80 random matrices with Gaussian entries and random per-task scales (up to 100x apart). */
function randomJacobians(seed: number, count = 80): number[][][] {
  const rand = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return Array.from({ length: count }, () => {
    const T = 2 + Math.floor(rand() * 4);
    const d = 2 + Math.floor(rand() * 19);
    return Array.from({ length: T }, () => {
      const scale = 10 ** (2 * rand() - 1);
      return Array.from({ length: d }, () => scale * gauss());
    });
  });
}

const cases = randomJacobians(12345);
// Hand-made hard cases: zero in the hull, a duplicated row, a zero row, many tasks in 2-D.
const special = [
  [[1, 0], [0, 1], [-1, -1]],
  [[1, 2, 3], [1, 2, 3], [-1, 0, 1]],
  [[0, 0, 0], [1, -1, 2], [-2, 1, 0]],
  [[1, 0], [0.3, 1], [-1, 0.2], [-0.4, -1], [0.9, -0.9]],
];

/** True when some d has <g_i, d> > 0 for all i, i.e. the min-norm point of the hull is not 0. */
function hasCommonDescent(J: number[][]): boolean {
  return len(mgda(J).direction) > 1e-6 * Math.max(...J.map(len));
}

test("random cases cover the required shapes", () => {
  const Ts = new Set(cases.map((J) => J.length));
  const ds = cases.map((J) => J[0].length);
  assert.deepEqual([...Ts].sort(), [2, 3, 4, 5]);
  assert.ok(Math.min(...ds) === 2 && Math.max(...ds) >= 18, `d range ${Math.min(...ds)}..${Math.max(...ds)}`);
  // A few random cases have 0 in the hull (T > d); most must not, or the Nash-MTL test is empty.
  const withDescent = cases.filter(hasCommonDescent).length;
  assert.ok(withDescent >= 70 && withDescent < cases.length, `${withDescent} cases with a common descent direction`);
});

for (const method of ["mgda", "upgrad", "dualproj", "nash-mtl"]) {
  test(`${method}: aggregate never conflicts with a task gradient`, () => {
    // Nash-MTL has no solution when 0 is in the convex hull of the rows (MGDA's min norm is 0).
    const inputs = method === "nash-mtl" ? cases.filter(hasCommonDescent) : [...cases, ...special];
    for (const [n, J] of inputs.entries()) {
      const { direction, weights } = aggregate(method, J);
      const scale = Math.max(len(direction), ...J.map(len));
      J.forEach((g, i) => {
        const inner = dotp(g, direction);
        assert.ok(inner >= -1e-6 * len(g) * scale, `case ${n} task ${i}: <g, d> = ${inner}, |g| = ${len(g)}, |d| = ${len(direction)}`);
      });
      weights.forEach((w) => assert.ok(Number.isFinite(w)));
    }
  });
}

test("every method: finite weights, direction = weightsᵀJ for weightings, right lengths", () => {
  for (const method of aggregatorNames) {
    for (const [n, J] of [...cases, ...special].entries()) {
      if (method === "nash-mtl" && n >= cases.length) continue; // no Nash solution with a zero row
      const { direction, weights } = aggregate(method, J);
      assert.equal(weights.length, J.length, `${method} case ${n}`);
      assert.equal(direction.length, J[0].length, `${method} case ${n}`);
      assert.ok([...weights, ...direction].every(Number.isFinite), `${method} case ${n}: non-finite output`);
      if (method === "graddrop") continue; // a direction, not a weighting (weights are least squares)
      const scale = Math.max(1e-300, ...J.map(len)) * Math.max(1, ...weights.map(Math.abs));
      J[0].forEach((_, k) => {
        const combined = J.reduce((s, row, i) => s + weights[i] * row[k], 0);
        assert.ok(Math.abs(combined - direction[k]) <= 1e-9 * scale, `${method} case ${n} coordinate ${k}`);
      });
    }
  }
});

test("MGDA weights lie on the simplex; Nash-MTL weights are positive", () => {
  for (const J of [...cases, ...special]) {
    const m = aggregate("mgda", J).weights;
    assert.ok(m.every((w) => w >= 0));
    assert.ok(Math.abs(m.reduce((s, w) => s + w, 0) - 1) < 1e-12);
  }
  for (const J of cases.filter(hasCommonDescent)) assert.ok(aggregate("nash-mtl", J).weights.every((w) => w > 0));
});

test("UPGrad and DualProj lie in the dual cone and weights are at least the preference", () => {
  for (const J of cases) {
    const T = J.length;
    assert.ok(upgrad(J).weights.every((w) => w >= 1 / T - 1e-12));
    assert.ok(dualproj(J).weights.every((w) => w >= 1 / T - 1e-12));
  }
});

test("deterministic methods give identical results twice and in another order", () => {
  const deterministic = aggregatorNames.filter((m) => !["pcgrad", "graddrop", "gradvac"].includes(m));
  const first = deterministic.map((m) => cases.slice(0, 20).map((J) => aggregate(m, J)));
  const reversed = [...deterministic].reverse().map((m) => cases.slice(0, 20).reverse().map((J) => aggregate(m, J)).reverse()).reverse();
  assert.deepEqual(reversed, first);
  assert.ok(first.flat().some((r) => r.weights.some((w) => w !== 0)), "results should not be trivially zero");
});

test("seeded methods are reproducible by seed and depend on it", () => {
  const sample = cases.filter((J) => J.length >= 3).slice(0, 20);
  for (const method of ["pcgrad", "graddrop", "gradvac"]) {
    const runs = (seed: number) => sample.map((J) => aggregate(method, J, { seed }));
    assert.deepEqual(runs(7), runs(7), `${method}: same seed`);
    assert.notDeepEqual(runs(7), runs(8), `${method}: another seed should change something`);
  }
});
