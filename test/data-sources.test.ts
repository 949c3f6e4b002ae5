import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { loadCars, CAR_FEATURES } from "../src/data/cars.js";
import { syntheticRecs, scoreCorrelation } from "../src/data/synthetic-recs.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

test("loadCars: 392 complete rows with short names, numeric years, three origins", () => {
  const cars = loadCars();
  assert.equal(cars.numRows(), 392);
  assert.deepEqual(cars.columnNames(), ["name", "mpg", "cylinders", "displacement", "horsepower", "weight", "acceleration", "year", "origin"]);
  for (const c of cars.columnNames()) {
    const col = Array.from(cars.array(c) as ArrayLike<unknown>);
    assert.ok(col.every((v) => v !== null && v !== undefined), `column ${c} has missing values`);
  }
  for (const c of CAR_FEATURES) assert.ok(Array.from(cars.array(c) as ArrayLike<unknown>).every((v) => typeof v === "number" && Number.isFinite(v)), c);
  const years = Array.from(cars.array("year") as ArrayLike<number>);
  assert.deepEqual([Math.min(...years), Math.max(...years)], [1970, 1982]);
  assert.deepEqual([...new Set(Array.from(cars.array("origin") as ArrayLike<string>))].sort(), ["Europe", "Japan", "USA"]);
  const first = cars.object(0) as Record<string, unknown>;
  assert.deepEqual(first, { name: "chevrolet chevelle malibu", mpg: 18, cylinders: 8, displacement: 307, horsepower: 130, weight: 3504, acceleration: 12, year: 1970, origin: "USA" });
});

test("syntheticRecs: seeded, sparse as asked, labels follow the planted logits exactly as documented", () => {
  const opts = { users: 40, items: 30, contexts: 5, ratingsPerUser: 6, factors: 3, contextDim: 2, scale: 3, seed: 11 };
  const d = syntheticRecs(opts);
  assert.equal(d.n, 240);
  assert.equal(d.density, 6 / 30);
  const again = syntheticRecs(opts);
  assert.deepEqual([again.user, again.item, again.context, again.a, again.b, again.planted], [d.user, d.item, d.context, d.a, d.b, d.planted]);
  assert.notDeepEqual(syntheticRecs({ ...opts, seed: 12 }).a, d.a);
  for (let u = 0; u < 40; u++) {
    const items = Array.from(d.item.filter((_, r) => d.user[r] === u));
    assert.equal(new Set(items).size, 6, `user ${u} has 6 distinct items`);
  }
  const { userFactors: U, itemFactors: V, contextFeatures: C, contextWeights: w } = d.planted;
  assert.deepEqual([U.length, U[0]!.length, V.length, C.length, C[0]!.length, w.length], [40, 3, 30, 5, 2, 2]);
  const dot = (x: number[], y: number[]) => x.reduce((s, xi, i) => s + xi * y[i]!, 0);
  for (const r of [0, 17, 239]) {
    const uv = dot(U[d.user[r]!]!, V[d.item[r]!]!);
    assert.ok(Math.abs(d.logitA[r]! - 3 * uv) < 1e-5);
    assert.ok(Math.abs(d.logitB[r]! - 3 * (uv + dot(C[d.context[r]!]!, w))) < 1e-5);
  }
  // labels: mostly 1 where the logit is high, mostly 0 where it is low
  const rate = (labels: Float32Array, logits: Float32Array, keep: (z: number) => boolean) => {
    const rows = Array.from(logits.keys()).filter((r) => keep(logits[r]!));
    return rows.reduce((s, r) => s + labels[r]!, 0) / rows.length;
  };
  assert.ok(rate(d.a, d.logitA, (z) => z > 2) > 0.8 && rate(d.a, d.logitA, (z) => z < -2) < 0.2, "task A labels follow u·v");
  assert.ok(rate(d.b, d.logitB, (z) => z > 2) > 0.8 && rate(d.b, d.logitB, (z) => z < -2) < 0.2, "task B labels follow u·v + c·w");
  // the factor scale makes u·v roughly unit variance
  const big = syntheticRecs({ users: 200, items: 100, contexts: 3, ratingsPerUser: 20, factors: 8, seed: 1 });
  const uvs = Array.from(big.logitA, (z) => z / 3);
  const variance = uvs.reduce((s, x) => s + x * x, 0) / uvs.length;
  assert.ok(variance > 0.7 && variance < 1.4, `var(u·v) = ${variance}`);
});

test("syntheticRecs tensors: shapes, values and ids", () => {
  const d = syntheticRecs({ users: 5, items: 4, contexts: 2, ratingsPerUser: 3, contextDim: 2, seed: 2 });
  const before = tf.memory().numTensors;
  const t = d.tensors();
  assert.deepEqual([t.user.shape, t.item.shape, t.context.shape, t.contextFeatures.shape, t.a.shape, t.b.shape], [[15, 1], [15, 1], [15, 1], [15, 2], [15, 1], [15, 1]]);
  assert.deepEqual(Array.from(t.item.dataSync()), Array.from(d.item));
  assert.deepEqual(Array.from(t.contextFeatures.dataSync()).slice(0, 2).map((x) => Math.fround(x)), d.planted.contextFeatures[d.context[0]!]!.map((x) => Math.fround(x)));
  tf.dispose(Object.values(t));
  assert.equal(tf.memory().numTensors, before);
});

test("scoreCorrelation is 1 for the planted factors under any rotation, low for unrelated ones", () => {
  const d = syntheticRecs({ users: 30, items: 20, contexts: 1, ratingsPerUser: 1, factors: 2, seed: 5 });
  const { userFactors: U, itemFactors: V } = d.planted;
  const th = 0.7;
  const rot = (m: number[][]) => m.map(([x, y]) => [Math.cos(th) * x! - Math.sin(th) * y!, Math.sin(th) * x! + Math.cos(th) * y!]);
  assert.ok(Math.abs(scoreCorrelation(U, V, rot(U), rot(V)) - 1) < 1e-9);
  const other = syntheticRecs({ users: 30, items: 20, contexts: 1, ratingsPerUser: 1, factors: 2, seed: 99 }).planted;
  assert.ok(Math.abs(scoreCorrelation(U, V, other.userFactors, other.itemFactors)) < 0.3);
  assert.throws(() => scoreCorrelation(U, V, U.slice(1), V), /scoreCorrelation: planted 30 users × 20 items but learned 29 × 20/);
});

test("syntheticRecs: bad options are errors naming the value", () => {
  const ok = { users: 3, items: 4, contexts: 2, ratingsPerUser: 2 };
  assert.throws(() => syntheticRecs({ ...ok, ratingsPerUser: 5 }), /syntheticRecs: ratingsPerUser \(5\) cannot exceed items \(4\)/);
  assert.throws(() => syntheticRecs({ ...ok, users: 0 }), /syntheticRecs: users must be a positive integer, but got 0/);
  assert.throws(() => syntheticRecs({ ...ok, factors: 1.5 }), /factors must be a positive integer, but got 1.5/);
  assert.throws(() => syntheticRecs({ ...ok, scale: -1 }), /scale must be a positive finite number, but got -1/);
  assert.throws(() => syntheticRecs({ ...ok, seed: 0.5 }), /Rng seed must be an integer, but got 0.5/);
});
