import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import * as vegaLite from "vega-lite";
import { conflictShare, cosineMatrix, DiagnosticsRecorder, gradientDiagnostics, gradientNorms } from "../src/train/diagnostics.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { fit } from "../src/train/fit.js";
import { conflictShareSpec, cosineHeatmapSpec, gradientNormsSpec } from "../src/charts/index.js";
import { renderSVG } from "../src/charts/render.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const S = Math.SQRT1_2;

test("norms, cosine matrix and conflict share of a small J against hand values", () => {
  const J = [[3, 0], [0, 2], [-1, 1]];
  assert.deepEqual(gradientNorms(J), [3, 2, Math.SQRT2]);
  const C = cosineMatrix(J);
  const want = [[1, 0, -S], [0, 1, S], [-S, S, 1]];
  C.forEach((row, i) => row.forEach((c, j) => assert.ok(Math.abs(c - want[i]![j]!) < 1e-12, `cos[${i}][${j}] ${c} vs ${want[i]![j]}`)));
  // Pairs (0,1): 0, not a conflict; (0,2): -0.707, a conflict; (1,2): 0.707.
  assert.equal(conflictShare(C), 1 / 3);
  assert.equal(gradientDiagnostics([[1, 1], [-1, -1]]).conflictShare, 1);
  assert.equal(gradientDiagnostics([[1, 1]]).conflictShare, 0);
});

test("a zero gradient has no direction: NaN cosines, left out of the conflict share; ragged J is an error", () => {
  const C = cosineMatrix([[1, 0], [0, 0], [-1, 0]]);
  assert.ok(Number.isNaN(C[0]![1]!) && Number.isNaN(C[1]![1]!));
  assert.equal(C[0]![2], -1);
  assert.equal(conflictShare(C), 1);
  assert.throws(() => cosineMatrix([[1, 0], [1]]), /rectangular: row 0 has 2 columns but row 1 has 1/);
  assert.throws(() => cosineMatrix([]), /non-empty array of rows/);
});

test("the recorder keeps every ordered pair and one conflict row per step", () => {
  const rec = new DiagnosticsRecorder(["a", "b", "c"]);
  rec.record(5, [[3, 0], [0, 2], [-1, 1]]);
  const t = rec.tables();
  assert.equal(t.cosines.numRows(), 9);
  assert.deepEqual(t.conflicts.objects(), [{ step: 5, conflictShare: 1 / 3, pairs: 3 }]);
  const ac = t.cosines.objects().find((r) => (r as { task_i: string; task_j: string }).task_i === "c" && (r as { task_j: string }).task_j === "a") as { cosine: number };
  assert.ok(Math.abs(ac.cosine + S) < 1e-12);
  assert.throws(() => rec.record(6, [[1, 0]]), /J has 1 rows but there are 3 tasks/);
});

function net() {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunkLayer = tf.layers.dense({ units: 8, activation: "tanh", name: "trunk", kernelInitializer: init(1) });
  const trunk = trunkLayer.apply(input) as tf.SymbolicTensor;
  const a = tf.layers.dense({ units: 1, name: "a", kernelInitializer: init(2) }).apply(trunk) as tf.SymbolicTensor;
  const b = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(3) }).apply(trunk) as tf.SymbolicTensor;
  return { model: tf.model({ inputs: input, outputs: [a, b, trunk] }), trunkLayer };
}

test("diagnostics during training: every N steps, from the per-task gradients at that step (a task and its negation conflict)", () => {
  const { model, trunkLayer } = net();
  const x = tf.randomNormal([16, 4], 0, 1, "float32", 7);
  const target = tf.sum(x, 1, true);
  // Both tasks read the same output, b's target is a's negated: near the start their trunk gradients are nearly opposite.
  const y = { a: target, b: tf.neg(target) };
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", loss: "mse" }, { name: "b", output: "a", loss: "mse" }], optimizer: tf.train.sgd(0.01), shared: trunkLayer, diagnostics: { every: 2 } });
  const J0 = trainer.taskGradients(x, y).J;
  const want = cosineMatrix(J0);
  const r1 = trainer.step(x, y);
  assert.ok(r1.diagnostics, "step 1 records");
  assert.ok(Math.abs(r1.diagnostics!.cosines[0]![1]! - want[0]![1]!) < 1e-6);
  assert.deepEqual(r1.diagnostics!.norms.map((v) => +v.toFixed(5)), gradientNorms(J0).map((v) => +v.toFixed(5)));
  for (let s = 2; s <= 5; s++) assert.equal(trainer.step(x, y).diagnostics !== undefined, s % 2 === 1, `step ${s}`);
  const t = trainer.diagnostics()!;
  assert.deepEqual(t.conflicts.array("step"), [1, 3, 5]);
  assert.equal(t.norms.numRows(), 3 * 2);
  assert.equal(t.cosines.numRows(), 3 * 4);
  const share = t.conflicts.array("conflictShare") as number[];
  assert.equal(share[0], want[0]![1]! < 0 ? 1 : 0);
  assert.ok(want[0]![1]! < -0.5, `opposite targets conflict: cos ${want[0]![1]}`);
});

test("fit returns the diagnostics tables; representation mode records cosines of the representation gradients", async () => {
  const { model } = net();
  const x = tf.randomNormal([32, 4], 0, 1, "float32", 8);
  const y = { a: tf.sum(x, 1, true), b: tf.slice(x, [0, 0], [32, 1]) };
  const run = await fit({
    trainer: { model, tasks: [{ name: "a", loss: "mse" }, { name: "b", loss: "mse" }], optimizer: tf.train.sgd(0.01), aggregator: "upgrad", mode: "representation", representation: "trunk", diagnostics: { every: 3 } },
    x, y, epochs: 2, batchSize: 8, live: false,
  });
  assert.deepEqual(run.diagnostics!.conflicts.array("step"), [1, 4, 7]);
  assert.equal(run.diagnostics!.cosines.numRows(), 3 * 4);
  const diag = (run.diagnostics!.cosines.objects() as { task_i: string; task_j: string; cosine: number }[]).filter((r) => r.task_i === r.task_j);
  diag.forEach((r) => assert.ok(Math.abs(r.cosine - 1) < 1e-9));
});

test("plain trainer: diagnostics need shared (or representation mode)", () => {
  const { model } = net();
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "a", loss: "mse" }], optimizer: tf.train.sgd(0.1), diagnostics: true }), /diagnostics needs shared/);
  assert.throws(() => new JointTrainer({ model, tasks: [{ name: "a", loss: "mse" }], optimizer: tf.train.sgd(0.1), diagnostics: { every: 0 }, shared: [] }), /diagnostics.every must be a positive integer, but got 0/);
});

const cosRows = (() => {
  const rec = new DiagnosticsRecorder(["species", "mass", "sex"]);
  rec.record(1, [[3, 0], [0, 2], [-1, 1]]);
  rec.record(2, [[1, 0], [1, 0.1], [1, 0.2]]);
  return rec.tables();
})();

test("cosine heatmap: valid vega-lite, one cell per ordered pair with its value written in, at the last, a given or the mean step", async () => {
  const spec = cosineHeatmapSpec(cosRows.cosines, { step: 1 }) as { data: { values: { task_i: string; task_j: string; cosine: number }[] }; layer: { mark: unknown }[] };
  assert.doesNotThrow(() => vegaLite.compile(spec as never));
  assert.equal(spec.data.values.length, 9);
  assert.deepEqual(spec.layer.map((l) => (typeof l.mark === "string" ? l.mark : (l.mark as { type: string }).type)), ["rect", "text"]);
  const cell = spec.data.values.find((r) => r.task_i === "species" && r.task_j === "sex")!;
  assert.ok(Math.abs(cell.cosine + S) < 1e-12);
  const last = cosineHeatmapSpec(cosRows.cosines) as { data: { values: { cosine: number }[] } };
  assert.ok(last.data.values.every((r) => r.cosine > 0.9), "step 2 (last): all aligned");
  const mean = cosineHeatmapSpec(cosRows.cosines, { step: "mean" }) as { data: { values: { task_i: string; task_j: string; cosine: number }[] } };
  const m = mean.data.values.find((r) => r.task_i === "species" && r.task_j === "sex")!;
  const atStep2 = (last.data.values as { task_i?: string; task_j?: string; cosine: number }[]).find((r) => r.task_i === "species" && r.task_j === "sex")!.cosine;
  assert.ok(Math.abs(m.cosine - (-S + atStep2) / 2) < 1e-12);
  assert.throws(() => cosineHeatmapSpec(cosRows.cosines, { step: 9 }), /no cosines recorded at step 9; recorded steps are 1, 2/);
  const svg = await renderSVG(spec);
  assert.ok(/[-−]0\.71/.test(svg), "the cell value is drawn");
});

test("norm and conflict-share lines: valid vega-lite; the share from the conflicts table equals the share from the cosines", async () => {
  const norms = gradientNormsSpec(cosRows.norms) as { data: { values: unknown[] } };
  assert.doesNotThrow(() => vegaLite.compile(norms as never));
  assert.equal(norms.data.values.length, 6);
  const fromTable = conflictShareSpec(cosRows.conflicts) as { data: { values: { step: number; conflictShare: number }[] } };
  const fromCos = conflictShareSpec(cosRows.cosines) as { data: { values: { step: number; conflictShare: number }[] } };
  assert.doesNotThrow(() => vegaLite.compile(fromTable as never));
  assert.deepEqual(fromCos.data.values, fromTable.data.values);
  assert.deepEqual(fromTable.data.values, [{ step: 1, conflictShare: 1 / 3 }, { step: 2, conflictShare: 0 }]);
  assert.ok((await renderSVG(fromTable)).includes("<svg"));
});
