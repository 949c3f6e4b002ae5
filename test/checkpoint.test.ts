/**
 * Checkpoint and resume: a run saved part-way and resumed (in this process, or in a child killed
 * with SIGKILL at random moments and started again) ends with weights bit-identical to the run
 * never interrupted, and the same history rows.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { fit, FitError } from "../src/train/fit.js";
import { initBackend } from "../src/backend/init.js";
import { decodeCheckpoint, encodeCheckpoint, parseExact, stringifyExact } from "../src/train/checkpoint.js";
import { Rng } from "../src/data/random.js";
import { createWeighting, isStateful, weightingNames, type MethodState, type Stateful } from "../src/weighting/index.js";
import { AlternatingTrainer, JointObjectiveTrainer } from "../src/train/alternating.js";
import { cosineDecay } from "../src/train/schedules.js";
import { loadAlternatingCheckpoint, loadEnsembleCheckpoint, loadJointObjectiveCheckpoint, saveAlternatingCheckpoint, saveEnsembleCheckpoint, saveJointObjectiveCheckpoint } from "../src/train/loop-checkpoint.js";
import { VectorizedEnsemble, fitEnsemble } from "../src/parallel/ensemble.js";
import { makeRun, runKinds, weightBytes, type RunKind } from "./fixtures/checkpoint-run.js";

await initBackend({ report: false });

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = () => mkdtempSync(path.join(tmpdir(), "jointly-ckpt-"));

/** The uninterrupted run's final weights and history, by kind (computed once each). */
const reference = new Map<string, { weights: Buffer; history: unknown[]; steps: unknown[]; epochs: number; bestEpoch: number }>();
async function uninterrupted(kind: RunKind, epochs: number) {
  const key = `${kind}/${epochs}`;
  if (!reference.has(key)) {
    const run = makeRun(kind, epochs);
    const r = await fit(run.options);
    reference.set(key, { weights: weightBytes(run.model), history: r.history.objects(), steps: r.steps!.objects(), epochs: r.epochs, bestEpoch: r.bestEpoch });
    run.dispose();
  }
  return reference.get(key)!;
}

test("exact JSON: NaN, ±Infinity and -0 come back as they were; tensors come back byte for byte", () => {
  const v = { a: [NaN, Infinity, -Infinity, -0, 0.1 + 0.2, 1e-310], b: { $x: 1 } };
  const back = parseExact(stringifyExact(v)) as typeof v;
  assert.ok(Number.isNaN(back.a[0]));
  assert.equal(back.a[1], Infinity);
  assert.equal(back.a[2], -Infinity);
  assert.ok(Object.is(back.a[3], -0));
  assert.equal(back.a[4], 0.1 + 0.2);
  assert.equal(back.a[5], 1e-310);
  const t = tf.tensor([1.5, -0, NaN, 3e-39], [2, 2]);
  const i = tf.tensor([1, -7, 2 ** 31 - 1], [3], "int32");
  const files = encodeCheckpoint({ n: 1 }, [{ key: "t", tensor: t }, { key: "i", tensor: i }]);
  const { tensors, state } = decodeCheckpoint<{ n: number }>(files, "memory");
  assert.deepEqual(state, { n: 1 });
  assert.deepEqual(Buffer.from(tensors.get("t")!.values.buffer), Buffer.from((t.dataSync() as Float32Array).buffer));
  assert.deepEqual(Array.from(tensors.get("i")!.values), [1, -7, 2 ** 31 - 1]);
  tf.dispose([t, i]);
});

test("Rng.getState / setState: the same numbers follow", () => {
  const a = new Rng(9);
  a.permutation(10);
  const b = new Rng(0);
  b.setState(a.getState());
  assert.deepEqual(b.permutation(50), a.permutation(50));
  assert.throws(() => b.setState(-1), /Rng\.setState: the state must be an integer in \[0, 2\^32\)/);
});

for (const kind of runKinds) {
  test(`${kind}: checkpoint at epoch 4, resume in a fresh trainer and model: bit-identical weights, same history and step rows`, async () => {
    const ref = await uninterrupted(kind, 14);
    const dir = tmp();
    const before = tf.memory().numTensors;
    // First leg: 4 epochs, saving after each.
    const first = makeRun(kind, 4);
    await fit({ ...first.options, checkpoint: { dir } });
    first.dispose();
    // Second leg: everything built afresh (as a new process would), resumed to the end.
    const second = makeRun(kind, 14);
    const r = await fit({ ...second.options, checkpoint: { dir }, resume: dir });
    assert.deepEqual(r.history.objects(), ref.history);
    assert.deepEqual(r.steps!.objects(), ref.steps);
    assert.equal(r.bestEpoch, ref.bestEpoch);
    assert.ok(weightBytes(second.model).equals(ref.weights), `${kind}: the resumed run's weights differ from the uninterrupted run's`);
    second.dispose();
    assert.equal(tf.memory().numTensors, before, "tensors left behind");
    rmSync(dir, { recursive: true, force: true });
  });
}

test("everySteps: a run stopped inside an epoch (an onEpochEnd throw after a mid-epoch save) resumes bit-identical", async () => {
  const ref = await uninterrupted("uncertainty", 14);
  const dir = tmp();
  const first = makeRun("uncertainty", 14);
  // 8 batches an epoch, a save every 3 steps: the last save before epoch 6's end is at step 45 (epoch 6, batch 5).
  const err = await fit({ ...first.options, checkpoint: { dir, every: 100, everySteps: 3 }, onEpochEnd: (e) => { if (e === 6) throw new Error("stop here"); } }).catch((e: unknown) => e);
  assert.ok(err instanceof FitError);
  first.dispose();
  const second = makeRun("uncertainty", 14);
  const r = await fit({ ...second.options, checkpoint: { dir, everySteps: 3 }, resume: dir });
  assert.deepEqual(r.history.objects(), ref.history);
  assert.deepEqual(r.steps!.objects(), ref.steps);
  assert.ok(weightBytes(second.model).equals(ref.weights));
  second.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test("resume: true starts afresh without a checkpoint; resume with other settings or a missing folder is an error naming it", async () => {
  const dir = tmp();
  const ref = await uninterrupted("dwa", 14);
  const run = makeRun("dwa", 14);
  const r = await fit({ ...run.options, checkpoint: { dir: path.join(dir, "none-yet") }, resume: true });
  assert.ok(weightBytes(run.model).equals(ref.weights));
  run.dispose();
  await assert.rejects(async () => {
    const again = makeRun("dwa", 14);
    try {
      await fit({ ...again.options, batchSize: 16, resume: path.join(dir, "none-yet") });
    } finally {
      again.dispose();
    }
  }, /fit: resume from .*none-yet: the run was saved with batchSize 8, but this call has 16/);
  await assert.rejects(async () => {
    const again = makeRun("dwa", 14);
    try {
      await fit({ ...again.options, resume: path.join(dir, "missing") });
    } finally {
      again.dispose();
    }
  }, /resume: .*missing holds no checkpoint/);
  assert.equal(r.epochs, ref.epochs);
  rmSync(dir, { recursive: true, force: true });
});

test("SIGKILL at random moments, resumed each time: final weights bit-identical to the uninterrupted run, same history", { timeout: 240_000 }, async (t) => {
  const dir = tmp();
  const out = path.join(dir, "result");
  const child = path.join(here, "fixtures", "checkpoint-child.ts");
  const runChild = (killAfterMs?: number) => new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", child, path.join(dir, "ckpt"), out, "dwa", "80"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += String(d)));
    p.stdout.on("data", (d) => {
      // Kill a random time after training started (the child prints "training" then).
      if (killAfterMs !== undefined && String(d).includes("training")) setTimeout(() => p.kill("SIGKILL"), killAfterMs);
    });
    p.on("exit", (code, signal) => resolve({ code, signal, stderr }));
  });
  const rng = new Rng(2026);
  let kills = 0;
  let runs = 0;
  let finished = false;
  while (!finished) {
    runs++;
    assert.ok(runs < 20, "the run did not finish after 20 starts");
    // Delays summing to less than the run's training time (about 3.5 s with its saves), so each kill lands.
    const r = await runChild(kills < 5 ? 30 + rng.int(400) : undefined);
    if (r.signal === "SIGKILL") kills++;
    else {
      assert.equal(r.code, 0, `the child failed: ${r.stderr}`);
      assert.equal(kills, 5, `the run finished after ${kills} kills, before the next kill landed`);
      finished = true;
    }
  }
  assert.equal(kills, 5);
  const result = JSON.parse(readFileSync(out, "utf8")) as { weights: string; history: unknown[]; steps: unknown[]; resumedFrom: number };
  const ref = await uninterrupted("dwa", 80);
  assert.deepEqual(result.history, ref.history);
  assert.deepEqual(result.steps, ref.steps);
  assert.ok(Buffer.from(result.weights, "base64").equals(ref.weights), "weights differ from the uninterrupted run");
  // Kills landed after some checkpoints: the final start resumed from a later epoch than 0.
  assert.ok(result.resumedFrom > 0, `the last start resumed from epoch ${result.resumedFrom}`);
  const starts = readFileSync(`${out}.starts`, "utf8").trim().split("\n").map((l) => l.split(" ").map(Number) as [number, number]);
  t.diagnostic(`${kills} kills; the starts resumed from (epochs completed, steps): ${starts.map(([e, s]) => `(${e}, ${s})`).join(" ")}`);
  // Saved steps only grow from start to start (a kill never loses a completed save).
  assert.ok(starts.every(([, s], i) => i === 0 || s >= starts[i - 1]![1]));
  // Leftovers of the killed saves were cleaned by the next save: one version, no temporary folders.
  const left = readdirSync(path.join(dir, "ckpt")).sort();
  assert.equal(left.filter((f) => f.startsWith("v-")).length, 1, `left in the checkpoint folder: ${left.join(", ")}`);
  assert.deepEqual(left.filter((f) => f.startsWith(".tmp-") || f.startsWith(".trash-")), [], `left in the checkpoint folder: ${left.join(", ")}`);
  assert.ok(existsSync(out));
  rmSync(dir, { recursive: true, force: true });
});

test("AlternatingTrainer: save after 7 steps (mid-turn), load into a fresh trainer, 13 more steps: bit-identical to 20 steps straight", async () => {
  const { x, y } = tf.tidy(() => {
    const x = tf.randomNormal([32, 3], 0, 1, "float32", 4) as tf.Tensor2D;
    return { x, y: tf.sum(tf.square(x), 1, true) as tf.Tensor2D };
  });
  const build = () => {
    const A = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 6, activation: "tanh", kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) })] });
    const B = tf.sequential({ layers: [tf.layers.dense({ inputShape: [6], units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })] });
    const oa = tf.train.adam(0.03), ob = tf.train.rmsprop(0.01);
    const trainer = new AlternatingTrainer<{ x: tf.Tensor; y: tf.Tensor }>({
      forward: (b, training) => ({ out: B.apply(A.apply(b.x, { training }) as tf.Tensor, { training }) as tf.Tensor }),
      turns: [
        { name: "A", variables: A, loss: (o, b) => tf.losses.meanSquaredError(b.y, o.out!) as tf.Scalar, optimizer: oa, steps: 3, schedule: cosineDecay({ lr: 0.03, steps: 20 }) },
        { name: "B", variables: B, loss: (o, b) => tf.losses.meanSquaredError(b.y, o.out!) as tf.Scalar, optimizer: ob, steps: 2 },
      ],
    });
    const bytes = () => Buffer.concat([...A.weights, ...B.weights].map((w) => Buffer.from((w.read().dataSync() as Float32Array).buffer)));
    return { trainer, bytes, dispose: () => { oa.dispose(); ob.dispose(); A.dispose(); B.dispose(); } };
  };
  const batch = { x, y };
  const before = tf.memory().numTensors;
  const straight = build();
  const lossesStraight = Array.from({ length: 20 }, () => straight.trainer.step(batch).total);
  const want = straight.bytes();
  straight.dispose();
  const dir = tmp();
  const first = build();
  const lossesFirst = Array.from({ length: 7 }, () => first.trainer.step(batch).total);
  await saveAlternatingCheckpoint(dir, first.trainer as AlternatingTrainer<unknown>, { loop: { done: 7 } });
  first.dispose();
  const second = build();
  const loop = await loadAlternatingCheckpoint<{ done: number }>(dir, second.trainer as AlternatingTrainer<unknown>);
  assert.deepEqual(loop, { done: 7 });
  assert.equal(second.trainer.stepCount, 7);
  // Steps 6 and 7 were A's (A 3, B 2, A 3, ...): the resumed trainer is one step from the end of that turn.
  assert.equal(second.trainer.currentTurn, "A");
  assert.equal(second.trainer.exportState().inTurn, 2);
  const lossesSecond = Array.from({ length: 13 }, () => second.trainer.step(batch).total);
  assert.deepEqual([...lossesFirst, ...lossesSecond], lossesStraight);
  assert.ok(second.bytes().equals(want), "the resumed alternating run's weights differ");
  second.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors left behind");
  tf.dispose([x, y]);
  rmSync(dir, { recursive: true, force: true });
});

test("VectorizedEnsemble: fitEnsemble 3 epochs, save, load into a fresh ensemble, 3 more: bit-identical to 6 epochs (unshuffled)", async () => {
  const x = tf.randomNormal([4, 24, 3], 0, 1, "float32", 8) as tf.Tensor3D;
  const y = tf.tidy(() => tf.sum(x, 2, true)) as tf.Tensor3D;
  const make = () => new VectorizedEnsemble({ members: 4, inputSize: 3, layers: [{ units: 5, activation: "tanh" }, { units: 1 }], baseSeed: 3, optimizer: "adam", learningRate: 0.02 });
  const bytes = (e: VectorizedEnsemble) => Buffer.concat(e.variables.map((v) => Buffer.from((v.dataSync() as Float32Array).buffer)));
  const before = tf.memory().numTensors;
  const straight = make();
  const all = fitEnsemble(straight, { x, y, epochs: 6, batchSize: 8, shuffle: false });
  const want = bytes(straight);
  straight.dispose();
  const dir = tmp();
  const first = make();
  const a = fitEnsemble(first, { x, y, epochs: 3, batchSize: 8, shuffle: false });
  await saveEnsembleCheckpoint(dir, first, { loop: { epochs: 3 } });
  first.dispose();
  const second = make();
  assert.deepEqual(await loadEnsembleCheckpoint(dir, second), { epochs: 3 });
  assert.equal(second.stepCount, 9);
  const b = fitEnsemble(second, { x, y, epochs: 3, batchSize: 8, shuffle: false });
  assert.deepEqual([...a, ...b].map((r) => r.loss), all.map((r) => r.loss));
  assert.ok(bytes(second).equals(want), "the resumed ensemble's weights differ");
  second.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors left behind");
  tf.dispose([x, y]);
  rmSync(dir, { recursive: true, force: true });
});

test("what cannot be saved is said: Adamax is refused by name; a hand-made weighting without exportState is saved without its state, with one warning", async () => {
  const dir = tmp();
  const run = makeRun("dwa", 2);
  const opts = run.options.trainer as import("../src/train/joint-trainer.js").JointTrainerOptions;
  const adamax = tf.train.adamax(0.01);
  let epochs = 0;
  await assert.rejects(fit({ ...run.options, trainer: { ...opts, optimizer: adamax }, checkpoint: { dir }, onEpochEnd: () => void epochs++ }), /^Error: fit: checkpoint: the optimizer Adamax cannot be checkpointed \(its state is not readable through getWeights\); use one of SGD, Momentum, Adam, RMSProp, Adagrad, Adadelta, FusedAdam, FusedSGD\.$/);
  assert.equal(epochs, 0, "training started before the optimizer was checked");
  adamax.dispose();
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    const halves = { name: "halves", numTasks: 2, weights: () => [0.5, 0.5], update: () => {} };
    await fit({ ...run.options, trainer: { ...opts, weighting: halves }, checkpoint: { dir } });
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", onWarning);
  }
  const partial = warnings.filter((w) => (w as { code?: string }).code === "JOINTLY_CHECKPOINT_PARTIAL");
  assert.equal(partial.length, 1);
  assert.match(partial[0]!.message, /checkpoint: not saved: weighting "halves" \(it has no exportState\)/);
  run.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test("JointObjectiveTrainer: save after 6 steps, load into a fresh trainer, 9 more: bit-identical to 15 steps straight", async () => {
  const { x, y } = tf.tidy(() => {
    const x = tf.randomNormal([32, 3], 0, 1, "float32", 6) as tf.Tensor2D;
    return { x, y: tf.sum(tf.abs(x), 1, true) as tf.Tensor2D };
  });
  const build = () => {
    const A = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 6, activation: "tanh", kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) })] });
    const B = tf.sequential({ layers: [tf.layers.dense({ inputShape: [6], units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) })] });
    const opt = tf.train.adam(0.02);
    const mseLoss = (o: Record<string, tf.Tensor>, b: { y: tf.Tensor }) => tf.losses.meanSquaredError(b.y, o.out!) as tf.Scalar;
    const trainer = new JointObjectiveTrainer<{ x: tf.Tensor; y: tf.Tensor }>({
      forward: (b, training) => {
        const h = A.apply(b.x, { training }) as tf.Tensor;
        return { h, out: B.apply(h, { training }) as tf.Tensor };
      },
      parts: [{ name: "A", variables: A, loss: mseLoss }, { name: "B", variables: B, loss: (o, b) => tf.mul(mseLoss(o, b), 0.5) as tf.Scalar }],
      optimizer: opt,
    });
    const bytes = () => Buffer.concat([...A.weights, ...B.weights].map((w) => Buffer.from((w.read().dataSync() as Float32Array).buffer)));
    return { trainer, bytes, dispose: () => { opt.dispose(); A.dispose(); B.dispose(); } };
  };
  const batch = { x, y };
  const before = tf.memory().numTensors;
  const straight = build();
  const totals = Array.from({ length: 15 }, () => straight.trainer.step(batch).total);
  const want = straight.bytes();
  straight.dispose();
  const dir = tmp();
  const first = build();
  const a = Array.from({ length: 6 }, () => first.trainer.step(batch).total);
  await saveJointObjectiveCheckpoint(dir, first.trainer as JointObjectiveTrainer<unknown>);
  first.dispose();
  const second = build();
  await loadJointObjectiveCheckpoint(dir, second.trainer as JointObjectiveTrainer<unknown>);
  assert.equal(second.trainer.stepCount, 6);
  const b = Array.from({ length: 9 }, () => second.trainer.step(batch).total);
  assert.deepEqual([...a, ...b], totals);
  assert.ok(second.bytes().equals(want), "the resumed joint-objective run's weights differ");
  second.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors left behind");
  tf.dispose([x, y]);
  rmSync(dir, { recursive: true, force: true });
});

test("every registered weighting: a fresh instance given exportState() of one fed 7 updates gives the same weights for 5 more, bit for bit (JSON round trip)", () => {
  const T = 3;
  const input = (k: number) => ({ losses: [1 + Math.sin(k), 2 + Math.cos(k), 0.5 + k / 10], gradNorms: [0.3 + k / 7, 1.1, 0.8 - k / 20], step: k });
  for (const name of weightingNames) {
    const options: Record<string, unknown> = { numTasks: T, ...(name === "static" ? { weights: [1, 2, 3] } : {}), ...(name === "stch" ? { ideal: "running-min" } : {}) };
    const a = createWeighting(name, options);
    for (let k = 0; k < 7; k++) a.update(input(k));
    const b = createWeighting(name, options);
    if (isStateful(a)) (b as unknown as Stateful).importState(parseExact(stringifyExact(a.exportState())) as MethodState);
    else assert.ok(["equal", "static", "gls"].includes(name), `${name} keeps state but has no exportState`);
    for (let k = 7; k < 12; k++) {
      assert.deepEqual(b.weights(input(k)), a.weights(input(k)), `${name} at update ${k}`);
      a.update(input(k));
      b.update(input(k));
    }
  }
});
