// Hand-derived and independently computed values for the aggregators on small matrices.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  aggregate, alignedMtlBalance, cagrad, config, dualproj, graddrop, gradvac, GradVac, imtlg, mean, mgda,
  nashMtl, nonNegativeQP, pcgrad, projectWeights, symmetricEigen, pinvSymmetric, upgrad, alignedMtl,
} from "../src/aggregation/index.js";

const g1 = [1, 0];
const g2 = [-0.5, 1];
const J = [g1, g2]; // g1·g2 = -0.5: the two tasks conflict

const dotp = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
const len = (a: number[]) => Math.sqrt(dotp(a, a));
const add = (a: number[], b: number[], k = 1) => a.map((x, i) => x + k * b[i]);
const close = (actual: number, expected: number, tol = 1e-9, what = "") =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected}, got ${actual} (tol ${tol})`);
const closeVec = (actual: number[], expected: number[], tol = 1e-9, what = "") => {
  assert.equal(actual.length, expected.length, `${what} length`);
  actual.forEach((x, i) => close(x, expected[i], tol, `${what}[${i}]`));
};
const combineRows = (w: number[], rows: number[][]) => rows[0].map((_, k) => rows.reduce((s, r, i) => s + w[i] * r[k], 0));

/** Projection of g onto {x : rows·x >= 0} by trying every active set (independent of qp.ts). */
function bruteConeProjection(g: number[], rows: number[][]): number[] {
  let best: number[] | undefined;
  for (let mask = 0; mask < 1 << rows.length; mask++) {
    const S = rows.filter((_, i) => mask & (1 << i));
    const x = projectOntoNullSpace(g, S);
    if (!x || rows.some((r) => dotp(r, x) < -1e-12 * len(r) * (len(g) + 1))) continue;
    if (!best || len(add(x, g, -1)) < len(add(best, g, -1))) best = x;
  }
  return best!;
}

/** g minus its projection onto span(S) via the normal equations, or undefined if S is dependent. */
function projectOntoNullSpace(g: number[], S: number[][]): number[] | undefined {
  const n = S.length;
  if (n === 0) return [...g];
  const M = S.map((a) => [...S.map((b) => dotp(a, b)), dotp(a, g)]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (Math.abs(M[p][c]) < 1e-10) return undefined;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = 0; r < n; r++) if (r !== c) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const coef = M.map((row, i) => row[n] / row[i]);
  return add(g, combineRows(coef, S), -1);
}

test("mean weights every task 1/T", () => {
  const out = mean([[1, 2], [3, 4], [5, 9]]);
  closeVec(out.weights, [1 / 3, 1 / 3, 1 / 3]);
  closeVec(out.direction, [3, 5]);
});

test("MGDA finds the closed-form min-norm point of two conflicting gradients", () => {
  // For two gradients, γ* = (g2-g1)·g2 / ||g1-g2||² (Sener & Koltun, Algorithm 1), here 7/13.
  const diff = add(g2, g1, -1);
  const gamma = dotp(diff, g2) / dotp(diff, diff);
  close(gamma, 7 / 13, 1e-15);
  const out = mgda(J);
  closeVec(out.weights, [gamma, 1 - gamma], 1e-9, "weights");
  closeVec(out.direction, [4 / 13, 6 / 13], 1e-9, "direction");
  // The min-norm point is equally aligned with both gradients.
  close(dotp(out.direction, g1), dotp(out.direction, g2), 1e-9);
});

test("MGDA matches a grid search over the 3-task simplex", () => {
  const rows = [[1, 0.2, 0], [-0.5, 1, 0.3], [0.1, -0.9, -1]];
  let best = Infinity;
  const n = 300;
  for (let a = 0; a <= n; a++) for (let b = 0; a + b <= n; b++) {
    best = Math.min(best, len(combineRows([a / n, b / n, (n - a - b) / n], rows)));
  }
  const out = mgda(rows);
  assert.ok(len(out.direction) <= best + 1e-12, `MGDA norm ${len(out.direction)} above grid minimum ${best}`);
  close(len(out.direction), best, 2e-3, "norm vs grid");
  close(out.weights.reduce((s, x) => s + x, 0), 1, 1e-12, "weights sum");
  // Optimality (KKT): every gradient has inner product >= ||d||² with the min-norm point d.
  for (const g of rows) assert.ok(dotp(g, out.direction) >= dotp(out.direction, out.direction) - 1e-9);
});

test("MGDA returns (nearly) zero when zero is inside the convex hull", () => {
  const out = mgda([[1, 0], [0, 1], [-1, -1]]);
  closeVec(out.weights, [1 / 3, 1 / 3, 1 / 3], 1e-6);
  assert.ok(len(out.direction) < 1e-5, `norm ${len(out.direction)}`);
});

test("PCGrad projects each gradient onto the other's normal plane and sums", () => {
  // g1 - (g1·g2/||g2||²) g2 = [0.8, 0.4]; g2 - (g2·g1/||g1||²) g1 = [0, 1].
  const p1 = add(g1, g2, -dotp(g1, g2) / dotp(g2, g2));
  const p2 = add(g2, g1, -dotp(g2, g1) / dotp(g1, g1));
  closeVec(p1, [0.8, 0.4], 1e-15);
  closeVec(p2, [0, 1], 1e-15);
  const out = pcgrad(J);
  closeVec(out.direction, [0.8, 1.4], 1e-12, "direction");
  closeVec(out.weights, [1.5, 1.4], 1e-12, "weights");
  closeVec(combineRows(out.weights, J), out.direction, 1e-12, "weightsᵀJ");
});

test("PCGrad leaves non-conflicting gradients alone (weights 1)", () => {
  const out = pcgrad([[1, 0.1], [0.2, 1], [1, 1]], { seed: 3 });
  closeVec(out.weights, [1, 1, 1], 0);
});

test("UPGrad is the mean of the projections of each row onto the dual cone", () => {
  const p1 = bruteConeProjection(g1, J);
  const p2 = bruteConeProjection(g2, J);
  closeVec(p1, [0.8, 0.4], 1e-12, "p1");
  closeVec(p2, [0, 1], 1e-12, "p2");
  const out = upgrad(J);
  closeVec(out.direction, [0.4, 0.7], 1e-9, "direction");
  closeVec(combineRows(out.weights, J), out.direction, 1e-12);
});

test("UPGrad and DualProj agree with brute-force cone projections on 3 tasks in 3-D", () => {
  const rows = [[1, 0.2, 0], [-0.5, 1, 0.3], [0.1, -0.9, -1]];
  const projections = rows.map((g) => bruteConeProjection(g, rows));
  closeVec(upgrad(rows).direction, combineRows([1 / 3, 1 / 3, 1 / 3], projections), 1e-9, "UPGrad");
  const meanRow = combineRows([1 / 3, 1 / 3, 1 / 3], rows);
  closeVec(dualproj(rows).direction, bruteConeProjection(meanRow, rows), 1e-9, "DualProj");
});

test("DualProj keeps the mean when it already conflicts with nobody", () => {
  const out = dualproj(J); // mean [0.25, 0.5] has inner products 0.25 and 0.375 with the rows
  closeVec(out.weights, [0.5, 0.5], 1e-12);
  closeVec(out.direction, [0.25, 0.5], 1e-12);
});

test("projectWeights satisfies the KKT conditions of min vᵀGv s.t. v >= u", () => {
  const G = [[1, -0.5, 0.3], [-0.5, 1.25, -0.8], [0.3, -0.8, 2]];
  for (const u of [[1, 0, 0], [0, 1, 0], [0.2, 0.3, 0.5]]) {
    const v = projectWeights(u, G);
    const Gv = G.map((row) => dotp(row, v));
    v.forEach((vi, i) => {
      assert.ok(vi >= u[i] - 1e-12, `v[${i}] = ${vi} < u[${i}] = ${u[i]}`);
      assert.ok(Gv[i] >= -1e-9, `(Gv)[${i}] = ${Gv[i]} < 0`);
      close(Gv[i] * (vi - u[i]), 0, 1e-9, `complementarity ${i}`);
    });
  }
});

test("nonNegativeQP solves a problem with a known answer", () => {
  // min ½(z1² + z2²) - z1 + z2 over z >= 0: z1 = 1, z2 clipped at 0.
  closeVec(nonNegativeQP([[1, 0], [0, 1]], [-1, 1]), [1, 0], 1e-9);
});

test("IMTL-G gives equal projections onto the unit gradients, weights summing to 1", () => {
  const out = imtlg(J);
  close(out.weights[0] + out.weights[1], 1, 1e-12, "sum");
  close(dotp(out.direction, g1) / len(g1), dotp(out.direction, g2) / len(g2), 1e-12, "projections");
  // Hand solution: α ∝ G⁻¹ [1, √1.25] with G⁻¹ = [[1.25, 0.5], [0.5, 1]].
  const raw = [1.25 + 0.5 * Math.sqrt(1.25), 0.5 + Math.sqrt(1.25)];
  closeVec(out.weights, raw.map((x) => x / (raw[0] + raw[1])), 1e-12);
});

test("IMTL-G equal projections on 4 tasks", () => {
  const rows = [[1, 2, 0, 1], [-1, 0.5, 2, 0], [0, -1, 1, 3], [2, 0, 0, -1]];
  const out = imtlg(rows);
  const proj = rows.map((g) => dotp(out.direction, g) / len(g));
  proj.forEach((p) => close(p, proj[0], 1e-9));
  close(out.weights.reduce((s, x) => s + x, 0), 1, 1e-12);
});

test("Aligned-MTL turns the rows into orthogonal rows of equal norm √λmin", () => {
  const G = [[1, -0.5], [-0.5, 1.25]];
  // 2 x 2 eigenvalues in closed form.
  const lambdaMin = (2.25 - Math.sqrt(0.25 ** 2 + 4 * 0.25)) / 2;
  const B = alignedMtlBalance(G);
  const aligned = B.map((row) => combineRows(row, J));
  close(dotp(aligned[0], aligned[1]), 0, 1e-12, "orthogonal");
  close(len(aligned[0]), Math.sqrt(lambdaMin), 1e-12, "norm 0");
  close(len(aligned[1]), Math.sqrt(lambdaMin), 1e-12, "norm 1");
  const out = alignedMtl(J);
  closeVec(out.direction, combineRows([0.5, 0.5], aligned), 1e-12, "direction");
  const big = alignedMtlBalance(G, "rmse").map((row) => combineRows(row, J));
  close(len(big[0]), Math.sqrt(2.25 / 2), 1e-12, "rmse scale");
});

test("Nash-MTL solves G α = 1/α", () => {
  const rows = [[1, 0.2, 0], [-0.5, 1, 0.3], [0.1, -0.9, -1]];
  const out = nashMtl(rows);
  rows.forEach((g, i) => {
    assert.ok(out.weights[i] > 0);
    close(dotp(g, out.direction), 1 / out.weights[i], 1e-8, `task ${i}`);
  });
  // Orthogonal gradients: α_i = 1/||g_i||.
  closeVec(nashMtl([[3, 0], [0, 0.5]]).weights, [1 / 3, 2], 1e-8);
  // Two tasks: the product of α_i (G α)_i = 1 per task.
  const two = nashMtl(J);
  close(two.weights[0] * dotp(g1, two.direction), 1, 1e-8);
  close(two.weights[1] * dotp(g2, two.direction), 1, 1e-8);
});

test("CAGrad matches a grid search of its dual on two tasks", () => {
  const c = 0.5;
  const g0 = combineRows([0.5, 0.5], J);
  const r = c * len(g0);
  let bestW = 0, bestF = Infinity;
  for (let k = 0; k <= 100000; k++) {
    const w = k / 100000;
    const gw = combineRows([w, 1 - w], J);
    const f = dotp(gw, g0) + r * len(gw);
    if (f < bestF) (bestF = f), (bestW = w);
  }
  const gw = combineRows([bestW, 1 - bestW], J);
  const expected = add(g0, gw, r / len(gw)).map((x) => x / (1 + c * c));
  closeVec(cagrad(J, { c }).direction, expected, 1e-4);
  closeVec(cagrad(J, { c, rescale: false }).direction, expected.map((x) => x * (1 + c * c)), 1e-4);
  closeVec(cagrad(J, { c: 0 }).direction, g0, 1e-12, "c = 0 is the mean");
});

test("GradVac: first step is PCGrad, then it raises cosines exactly to the EMA targets", () => {
  const first = gradvac(J, { beta: 0.3 });
  closeVec(first.direction, [0.8, 1.4], 1e-12, "first step");
  const cos = dotp(g1, g2) / (len(g1) * len(g2));
  closeVec(first.targets.flat(), [0, 0.3 * cos, 0.3 * cos, 0], 1e-12, "targets");
  const second = gradvac(J, { beta: 0.3, targets: first.targets });
  // direction = (g1 + a g2) + (g2 + b g1): read a and b off the weights.
  const adjusted1 = add(g1, g2, second.weights[1] - 1);
  const adjusted2 = add(g2, g1, second.weights[0] - 1);
  close(dotp(adjusted1, g2) / (len(adjusted1) * len(g2)), 0.3 * cos, 1e-12, "cos(g1', g2)");
  close(dotp(adjusted2, g1) / (len(adjusted2) * len(g1)), 0.3 * cos, 1e-12, "cos(g2', g1)");
  // EMA: 0.7 * 0.3 cos + 0.3 cos (the cosine before adjustment is measured again).
  closeVec(second.targets.flat(), [0, 0.51 * cos, 0.51 * cos, 0], 1e-12, "targets after 2 steps");
  // The class keeps the same state.
  const agg = new GradVac({ beta: 0.3 });
  agg.aggregate(J);
  closeVec(agg.aggregate(J).direction, second.direction, 1e-12);
});

test("GradDrop keeps, per coordinate, only the positive or only the negative entries", () => {
  const rows = [[1, -2, 3, 0], [-1, -1, 2, 0], [0.5, 4, -1, 0]];
  for (let seed = 0; seed < 20; seed++) {
    const out = graddrop(rows, { seed });
    out.direction.forEach((x, k) => {
      const pos = rows.reduce((s, r) => s + Math.max(r[k], 0), 0);
      const neg = rows.reduce((s, r) => s + Math.min(r[k], 0), 0);
      assert.ok(x === pos || x === neg, `coordinate ${k}: ${x} is neither ${pos} nor ${neg}`);
    });
  }
  // Column 0 has purity ½(1 + 0.5/2.5) = 0.6: kept positive in about 60% of seeds.
  let positive = 0;
  for (let seed = 0; seed < 2000; seed++) if (graddrop(rows, { seed }).direction[0] > 0) positive++;
  close(positive / 2000, 0.6, 0.04, "positive fraction");
  // Full leak keeps everything: the plain sum.
  closeVec(graddrop(rows, { leak: [1, 1, 1] }).direction, [0.5, 1, 4, 0], 1e-12);
  // Weights are least squares: Jᵀw is the projection of the direction onto the row space.
  const out = graddrop(rows, { seed: 1 });
  const residual = add(out.direction, combineRows(out.weights, rows), -1);
  rows.forEach((r) => close(dotp(r, residual), 0, 1e-9, "residual ⟂ rows"));
});

test("ConFIG: equal cosine with every gradient, length = sum of projections", () => {
  for (const rows of [J, [[1, 0.2, 0], [-0.5, 1, 0.3], [0.1, -0.9, -1]]]) {
    const out = config(rows);
    const d = out.direction;
    const cosines = rows.map((g) => dotp(g, d) / (len(g) * len(d)));
    cosines.forEach((c) => close(c, cosines[0], 1e-9, "cosine"));
    assert.ok(cosines[0] > 0);
    close(len(d), rows.reduce((s, g) => s + dotp(g, d) / len(d), 0), 1e-9, "length");
  }
});

test("symmetricEigen and pinvSymmetric reconstruct their matrices", () => {
  const A = [[4, 1, -2], [1, 3, 0.5], [-2, 0.5, 1]];
  const { values, vectors } = symmetricEigen(A);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
    close(values.reduce((s, l, k) => s + l * vectors[i][k] * vectors[j][k], 0), A[i][j], 1e-12);
  }
  assert.ok(values[0] <= values[1] && values[1] <= values[2]);
  const P = pinvSymmetric(A);
  const AP = A.map((row) => P[0].map((_, j) => row.reduce((s, x, k) => s + x * P[k][j], 0)));
  AP.forEach((row, i) => row.forEach((x, j) => close(x, i === j ? 1 : 0, 1e-10)));
});

test("aggregate dispatches by name to the same functions", () => {
  assert.deepEqual(aggregate("pcgrad", J, { seed: 2 }), pcgrad(J, { seed: 2 }));
  assert.deepEqual(aggregate("mgda", J), mgda(J));
  assert.deepEqual(aggregate("imtl-g", J), imtlg(J));
});
