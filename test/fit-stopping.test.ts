/**
 * How fit stops: a NaN stop keeps the history of the epochs already trained (FitError) and, with
 * restoreBest, puts the best weights back first; early stopping watches the unweighted sum of the
 * validation losses (or a named metric), not a sum whose weights a dynamic weighting moves.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { fit, FitError, type HistoryRow } from "../src/train/fit.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { mse } from "../src/losses/per-task.js";
import { setLearningRate } from "../src/train/optimizer-groups.js";
import { initBackend } from "../src/backend/init.js";
import { twoHeadModel, twoTaskData, twoTasks } from "./fixtures/fit-data.js";

await initBackend({ report: false });

const snapshot = (model: tf.LayersModel) => model.getWeights().map((w) => Array.from(w.dataSync()));

test("a NaN loss in epoch 4 throws a FitError that keeps the 3 epochs' history (the onEpochEnd rows), the cause, and the last good weights", async () => {
  const { x, y } = twoTaskData(32);
  const model = twoHeadModel(21);
  // Task b's labels turn NaN from epoch 4 on (as a bad label in a later shard would).
  let poisoned = false;
  const b = (labels: tf.Tensor, predictions: tf.Tensor, mask?: tf.Tensor) =>
    tf.tidy(() => (poisoned ? tf.mul(mse(labels, predictions, mask), NaN) : mse(labels, predictions, mask)) as tf.Scalar);
  const trainer = new JointTrainer({ model, tasks: [{ name: "a", loss: "softmaxCrossEntropy" }, { name: "b", loss: b }], optimizer: tf.train.sgd(0.05) });
  const seen: HistoryRow[] = [];
  const weightsAt: number[][][] = [];
  const before = tf.memory().numTensors;
  const err = await fit({
    trainer, x, y, epochs: 10, batchSize: 8, verbose: 0,
    onEpochEnd: (epoch, rows) => {
      seen.push(...rows);
      weightsAt[epoch] = snapshot(model);
      if (epoch === 3) poisoned = true;
    },
  }).then(() => assert.fail("fit did not throw"), (e: unknown) => e);
  assert.ok(err instanceof FitError, `not a FitError: ${String(err)}`);
  assert.equal(err.name, "FitError");
  assert.equal(err.epochs, 3);
  assert.equal(err.failedEpoch, 4);
  assert.equal(err.restoredBest, false);
  assert.equal(err.trainer, trainer);
  assert.match(err.message, /^fit stopped in epoch 4 of 10: Task "b": the loss is NaN at step 13 \(last finite value [\d.e-]+ at step 12\); no update was applied\..* \(the history of the 3 completed epochs is in error\.history\.\)$/);
  assert.match((err.cause as Error).message, /^Task "b": the loss is NaN at step 13/);
  assert.deepEqual(err.history.objects(), seen.map((r) => ({ ...r })));
  assert.equal(err.history.numRows(), 3 * 2);
  // The failing step applied nothing: the model has the weights of the end of epoch 3.
  assert.deepEqual(snapshot(model), weightsAt[3]);
  assert.equal(tf.memory().numTensors, before, "tensors left behind by the failed fit");
  tf.dispose([x, y.a, y.b]);
});

test("a learning rate that blows up in epoch 4, with restoreBest: the best epoch's weights are restored before the FitError", async () => {
  const { x, y } = twoTaskData(32);
  const v = twoTaskData(16, 8);
  const model = twoHeadModel(22);
  const optimizer = tf.train.sgd(0.05);
  const trainer = new JointTrainer({ model, tasks: twoTasks(), optimizer });
  const weightsAt: number[][][] = [];
  const before = tf.memory().numTensors;
  const err = await fit({
    trainer, x, y, validation: v, epochs: 10, batchSize: 8, verbose: 0, shuffle: false,
    earlyStopping: { patience: 5, restoreBest: true },
    onEpochEnd: (epoch) => {
      weightsAt[epoch] = snapshot(model);
      if (epoch === 3) setLearningRate(optimizer, 1e8);
    },
  }).then(() => assert.fail("fit did not throw"), (e: unknown) => e);
  assert.ok(err instanceof FitError, String(err));
  assert.equal(err.epochs, 3);
  assert.match(err.message, /the loss is (NaN|Infinity)/);
  const rows = err.history.objects() as HistoryRow[];
  const sums = [1, 2, 3].map((e) => rows.filter((r) => r.epoch === e && r.split === "validation").reduce((a, r) => a + r.loss, 0));
  const best = sums.indexOf(Math.min(...sums)) + 1;
  assert.equal(err.bestEpoch, best);
  assert.equal(err.restoredBest, true);
  assert.match(err.message, new RegExp(`the weights of epoch ${best} \\(best loss [\\d.e-]+\\) were restored`));
  // Epoch 4's finite steps moved the weights far away; restoring put the best epoch's back exactly.
  assert.deepEqual(snapshot(model), weightsAt[best]);
  assert.equal(tf.memory().numTensors, before, "the best-weights copies were freed");
  tf.dispose([x, y.a, y.b, v.x, v.y.a, v.y.b]);
});

/** Per epoch: the unweighted and the weighted sums of the validation losses, from a history. */
function validationSums(rows: HistoryRow[]) {
  const epochs = [...new Set(rows.map((r) => r.epoch))];
  return epochs.map((e) => {
    const own = rows.filter((r) => r.epoch === e && r.split === "validation");
    return { epoch: e, raw: own.reduce((a, r) => a + r.loss, 0), weighted: own.reduce((a, r) => a + r.weight * r.loss, 0) };
  });
}
const argBest = (values: number[], mode: "min" | "max") => values.indexOf(mode === "min" ? Math.min(...values) : Math.max(...values)) + 1;

test("early stopping under uncertainty weighting watches the unweighted validation sum, which falls while the drifting weighted sum rises", async () => {
  const { x, y } = twoTaskData(128, 3);
  const v = twoTaskData(64, 4);
  const run = await fit({
    trainer: { model: twoHeadModel(2), tasks: twoTasks(), optimizer: tf.train.adam(0.02), weighting: { name: "uncertainty", options: { lr: 0.05 } } },
    x, y, validation: v, epochs: 12, batchSize: 16, seed: 1, verbose: 0,
    earlyStopping: { patience: 2, restoreBest: true },
  });
  const sums = validationSums(run.history.objects() as HistoryRow[]);
  const rawBest = argBest(sums.map((s) => s.raw), "min");
  const weightedBest = argBest(sums.map((s) => s.weighted), "min");
  // The case only tests something if the two sums disagree, by more than the patience.
  assert.ok(rawBest - weightedBest > 2, `raw best ${rawBest}, weighted best ${weightedBest}: ${JSON.stringify(sums)}`);
  assert.equal(run.monitor.name, "loss");
  assert.equal(run.monitor.split, "validation");
  assert.equal(run.bestEpoch, rawBest);
  assert.ok(Math.abs(run.monitor.best - sums[rawBest - 1]!.raw) < 1e-9);
  // Not stopped at the weighted sum's turn (epoch weightedBest + patience).
  assert.ok(run.epochs > weightedBest + 2, `stopped after ${run.epochs} epochs`);
  // restoreBest put back the weights that scored the monitored best.
  const ev = run.trainer.evaluate(v.x, v.y);
  assert.ok(Math.abs(ev.a!.loss + ev.b!.loss - run.monitor.best) < 1e-4, `restored ${ev.a!.loss + ev.b!.loss} vs best ${run.monitor.best}`);
  tf.dispose([x, y.a, y.b, v.x, v.y.a, v.y.b]);
});

test("early stopping on a named task or metric: the best epoch is that column's, max for accuracy, min for a loss", async () => {
  const { x, y } = twoTaskData(64, 5);
  const v = twoTaskData(32, 6);
  for (const [monitor, column, task, mode] of [["a.accuracy", "accuracy", "a", "max"], ["b", "loss", "b", "min"], ["b.r2", "r2", "b", "max"]] as const) {
    const run = await fit({
      trainer: { model: twoHeadModel(3), tasks: twoTasks(true), optimizer: tf.train.adam(0.02) },
      x, y, validation: v, epochs: 8, batchSize: 16, seed: 2, verbose: 0,
      earlyStopping: { patience: Infinity, monitor },
    });
    const rows = (run.history.objects() as HistoryRow[]).filter((r) => r.split === "validation" && r.task === task);
    const values = rows.map((r) => r[column] as number);
    assert.equal(run.epochs, 8, "patience Infinity never stops");
    assert.equal(run.monitor.mode, mode);
    // The first epoch reaching the best value (a later tie is no improvement).
    assert.equal(run.bestEpoch, argBest(values, mode), `${monitor}: ${values.join(", ")}`);
  }
  await assert.rejects(
    fit({ trainer: { model: twoHeadModel(3), tasks: twoTasks(true), optimizer: tf.train.adam(0.02) }, x, y, epochs: 1, verbose: 0, earlyStopping: { patience: 1, monitor: "a.accuracy" } }),
    /^Error: fit: earlyStopping\.monitor "a\.accuracy" needs validation data: metrics are computed on the validation set\./,
  );
  tf.dispose([x, y.a, y.b, v.x, v.y.a, v.y.b]);
});
