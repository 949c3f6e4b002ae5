/**
 * Bad input to fit is an error naming the place, the value and what to do, before any training,
 * the same with and without the native addon, and leaving no tensor behind. Plain arrays are
 * accepted in place of tensors (converted, and freed when fit returns).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { fit } from "../src/train/fit.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { initBackend } from "../src/backend/init.js";
import { nativeKernels, setNativeKernelsEnabled } from "../src/backend/native.js";
import { badCases, caseTrainer, runBadCases } from "./fixtures/fit-bad-inputs.js";
import { twoHeadModel, twoTaskData, twoTasks } from "./fixtures/fit-data.js";

await initBackend({ report: false });
const trainer = caseTrainer();

test("every bad input gets its message, before training and with no tensor left behind (native addon as loaded)", async () => {
  const steps = trainer.stepCount;
  const results = await runBadCases(trainer);
  results.forEach((r, i) => {
    assert.match(r.message, badCases[i]!.expect, `case "${r.name}"`);
    assert.equal(r.leaked, 0, `case "${r.name}" leaked ${r.leaked} tensors`);
  });
  assert.equal(trainer.stepCount, steps, "no case trained a step");
});

test("the same messages with the native kernels switched off in process (setNativeKernelsEnabled(false))", async () => {
  const on = await runBadCases(trainer);
  setNativeKernelsEnabled(false);
  try {
    const off = await runBadCases(trainer);
    assert.deepEqual(off, on);
  } finally {
    setNativeKernelsEnabled(true);
  }
});

test("the same messages in a child process with JOINTLY_NATIVE=0", async () => {
  const main = fileURLToPath(new URL("./fixtures/fit-bad-inputs-main.ts", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", main], {
    env: { ...process.env, JOINTLY_NATIVE: "0" },
    cwd: fileURLToPath(new URL("..", import.meta.url)),
  });
  const child = JSON.parse(stdout) as { native: boolean; results: Awaited<ReturnType<typeof runBadCases>> };
  assert.equal(child.native, false, "the child ran without the addon");
  assert.deepEqual(child.results, await runBadCases(trainer));
  assert.ok(nativeKernels() !== undefined);
});

test("plain JS arrays for x, y and masks train exactly as the same tensors do, and the converted tensors are freed", async () => {
  const { x, y } = twoTaskData(24);
  const mask = tf.tensor1d(Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? 0 : 1)));
  const run = async (asArrays: boolean) => {
    const model = twoHeadModel(9);
    const t = new JointTrainer({ model, tasks: twoTasks(), optimizer: tf.train.sgd(0.1) });
    const before = tf.memory().numTensors;
    const result = await fit({
      trainer: t,
      x: asArrays ? (x.arraySync() as number[][]) : x,
      y: asArrays ? { a: y.a.arraySync() as number[], b: y.b.arraySync() as number[][] } : y,
      masks: asArrays ? { b: Array.from(mask.dataSync()) } : { b: mask },
      validation: asArrays ? { x: { [model.inputNames[0]!]: x.arraySync() as number[][] }, y: { a: Int32Array.from(y.a.dataSync()), b: y.b.arraySync() as number[][] } } : { x, y },
      epochs: 3, batchSize: 8, seed: 1, verbose: 0,
    });
    assert.equal(tf.memory().numTensors, before, "tensors left behind");
    const losses = result.history.array("loss") as number[];
    tf.dispose(model.weights.map((w) => w.read()));
    return losses;
  };
  const fromTensors = await run(false);
  const fromArrays = await run(true);
  assert.equal(fromArrays.length, 3 * 4);
  assert.deepEqual(fromArrays, fromTensors);
  tf.dispose([x, y.a, y.b, mask]);
});
