/**
 * Every mistake in a step or a loss gets an error naming the task, the value and what to do, the
 * same on wasm with the native addon, wasm without it, and cpu (issue 11): class ids out of range,
 * an empty batch, soft labels that are not distributions, binary targets outside [0, 1], masks of
 * other values or for unknown tasks, a metric that does not fit the loss, a missing optimizer, a
 * disposed tensor; a failed step leaks no tensor; an output folder that cannot be written says so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, chmodSync, mkdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { backendConfigs, type BackendConfig } from "./fixtures/backend-configs.js";
import { setNativeKernelsEnabled } from "../src/backend/native.js";
import { fusedOpsActive } from "../src/ops/fused.js";
import { JointTrainer, type JointTrainerOptions } from "../src/train/joint-trainer.js";
import { AlternatingTrainer, JointObjectiveTrainer } from "../src/train/alternating.js";
import { binaryCrossEntropy, mse, softmaxCrossEntropy, maskedMean } from "../src/losses/per-task.js";
import { fileSystemIO } from "../src/parallel/model-files.js";

await initBackend({ report: false });

type Config = BackendConfig;
const CONFIGS = backendConfigs();

/** Runs `body` in each configuration (checking the fused kernels are on exactly where expected) and returns its results by name. */
async function eachConfig<R>(body: (c: Config) => R | Promise<R>): Promise<Map<string, R>> {
  const out = new Map<string, R>();
  try {
    for (const c of CONFIGS) {
      await c.enter();
      assert.equal(fusedOpsActive(), c.fused, `${c.name}: fused ops active`);
      out.set(c.name, await body(c));
    }
  } finally {
    await tf.setBackend("wasm");
    setNativeKernelsEnabled(true);
  }
  return out;
}

/** The message of the error `f` throws (failing the test if it returns, or throws a TypeError from inside tfjs). */
function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof Error, `threw a non-Error ${String(err)}`);
    assert.ok(!(err instanceof TypeError), `a TypeError from inside: ${err.message}`);
    return err.message;
  }
  assert.fail("expected an error, but the call returned");
}

/** All configurations gave the same message (the behaviour does not depend on the addon or backend). */
function sameEverywhere(messages: Map<string, string>, what: string): string {
  const values = [...messages.values()];
  for (const [name, m] of messages) assert.equal(m, values[0], `${what}: ${name} differs from ${[...messages.keys()][0]}`);
  return values[0] as string;
}

/** Trunk 4 -> 8 (relu), heads "c" (3 logits) and "r" (1 value). */
function net(seed = 1) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunk = tf.layers.dense({ units: 8, activation: "relu", kernelInitializer: init(seed), name: `trunk_${seed}` });
  const h = trunk.apply(input) as tf.SymbolicTensor;
  const cHead = tf.layers.dense({ units: 3, name: "c", kernelInitializer: init(seed + 1) });
  const rHead = tf.layers.dense({ units: 1, name: "r", kernelInitializer: init(seed + 2) });
  const model = tf.model({ inputs: input, outputs: [cHead.apply(h) as tf.SymbolicTensor, rHead.apply(h) as tf.SymbolicTensor] });
  return { model, trunk, cHead, rHead };
}

const TASKS: JointTrainerOptions["tasks"] = [
  { name: "c", loss: "softmaxCrossEntropy" },
  { name: "r", loss: "mse" },
];

function trainer(extra: Partial<JointTrainerOptions> = {}) {
  const n = net();
  return { ...n, t: new JointTrainer({ model: n.model, tasks: TASKS, optimizer: tf.train.sgd(0.05), ...extra }) };
}

function batch() {
  return { x: tf.randomNormal([4, 4], 0, 1, "float32", 7), r: tf.randomNormal([4, 1], 0, 1, "float32", 8), c: tf.tensor1d([0, 1, 1, 2], "int32") };
}

test("class ids out of range (5, -1, 1.5 of 3 classes) are errors naming task, row, value and class count, with and without the addon", async () => {
  const cases: [string, tf.DataType, number][] = [["5", "int32", 5], ["-1", "int32", -1], ["1.5", "float32", 1.5]];
  const results = await eachConfig(() => {
    const { t } = trainer();
    const b = batch();
    const got: Record<string, string> = {};
    for (const [label, dtype, v] of cases) {
      const ids = tf.tensor1d([0, 1, v, 2], dtype);
      got[label] = messageOf(() => t.step(b.x, { c: ids, r: b.r }));
      // The loss alone names the same row and value (no task to name there).
      const logits = tf.zeros([4, 3]);
      got[`${label} alone`] = messageOf(() => softmaxCrossEntropy(ids, logits));
      got[`${label} [n,1]`] = messageOf(() => softmaxCrossEntropy(tf.reshape(ids, [4, 1]), logits));
      tf.dispose([ids, logits]);
    }
    assert.equal(t.stepCount, 0, "no step counted");
    // A masked-out row may hold any id ("-1 = no label"): its loss is dropped, as for a valid id there.
    const masked = tf.tensor1d([0, 1, -1, 2], "int32");
    const same = tf.tensor1d([0, 1, 0, 2], "int32");
    const mask = tf.tensor1d([1, 1, 0, 1]);
    const logits = tf.randomNormal([4, 3], 0, 1, "float32", 3);
    const a = softmaxCrossEntropy(masked, logits, mask).dataSync()[0] as number;
    const bb = softmaxCrossEntropy(same, logits, mask).dataSync()[0] as number;
    got.maskedLoss = String(a);
    assert.ok(Math.abs(a - bb) < 1e-6 && Number.isFinite(a), `masked-out -1 gives the loss of a valid id there: ${a} vs ${bb}`);
    tf.dispose([masked, same, mask, logits, b.x, b.r, b.c]);
    return got;
  });
  for (const [label, , v] of cases) {
    const m = sameEverywhere(new Map([...results].map(([k, r]) => [k, r[label] as string])), `id ${label}`);
    assert.match(m, new RegExp(`^Task "c" \\(loss softmaxCrossEntropy, output "c"\\): softmaxCrossEntropy: label ${String(v).replace(".", "\\.")} of row 2 is not a class id in \\[0, 2\\] \\(logits of shape \\[4,3\\]\\); with 3 classes, class ids are integers from 0 to 2`));
    const alone = sameEverywhere(new Map([...results].map(([k, r]) => [k, r[`${label} alone`] as string])), `id ${label} alone`);
    assert.match(alone, new RegExp(`^softmaxCrossEntropy: label ${String(v).replace(".", "\\.")} of row 2 is not a class id in \\[0, 2\\] \\(logits of shape \\[4,3\\]\\); with 3 classes`));
    sameEverywhere(new Map([...results].map(([k, r]) => [k, r[`${label} [n,1]`] as string])), `id ${label} [n,1]`);
  }
  // The masked loss agrees across backends up to the fused kernel's rounding.
  const losses = [...results.values()].map((r) => Number(r.maskedLoss));
  for (const l of losses) assert.ok(Math.abs(l - (losses[0] as number)) < 1e-5, `masked loss ${l} vs ${losses[0]}`);
});

test("an empty batch is an error naming batch size 0 (not 3.6e-41 or a gradient error), in the step and in each loss", async () => {
  const results = await eachConfig(() => {
    const { t } = trainer();
    const x = tf.zeros([0, 4]);
    const labels = { c: tf.zeros([0], "int32"), r: tf.zeros([0, 1]) };
    const got = {
      step: messageOf(() => t.step(x, labels)),
      mse: messageOf(() => mse(tf.zeros([0, 1]), tf.zeros([0, 1]))),
      sce: messageOf(() => softmaxCrossEntropy(tf.zeros([0], "int32"), tf.zeros([0, 3]))),
      bce: messageOf(() => binaryCrossEntropy(tf.zeros([0, 1]), tf.zeros([0, 1]))),
      masked: messageOf(() => maskedMean(tf.zeros([0]) as tf.Tensor1D)),
    };
    tf.dispose([x, labels.c, labels.r]);
    return got;
  });
  for (const k of ["step", "mse", "sce", "bce", "masked"] as const) {
    const m = sameEverywhere(new Map([...results].map(([c, r]) => [c, r[k]])), k);
    assert.match(m, /the batch is empty \(batch size 0, .*\); give at least one row\./, k);
  }
  assert.match(results.values().next().value!.step, /^JointTrainer\.step: the batch is empty \(batch size 0, inputs of shape \[0,4\]\)/);
});

test("soft labels that are not distributions, binary targets outside [0, 1], bad mask values, masks for unknown tasks, unfitting metrics", async () => {
  const results = await eachConfig(() => {
    const { t, model } = trainer();
    const b = batch();
    const step = (c: tf.Tensor, masks?: Record<string, tf.Tensor>) => messageOf(() => t.step(b.x, { c, r: b.r }, masks));
    const negative = tf.tensor2d([[1, 0, 0], [0.5, 0.5, 0], [-0.5, 1.5, 0], [0, 0, 1]]);
    const sum = tf.tensor2d([[1, 0, 0], [0.5, 0.5, 0], [0.5, 1, 0], [0, 0, 1]]);
    const m2 = tf.tensor1d([1, 2, 0, 1]);
    const mHalf = tf.tensor1d([1, 1, 0.5, 1]);
    const ones = tf.ones([4]);
    const got = {
      negative: step(negative),
      sum: step(sum),
      mask2: step(b.c, { c: m2 }),
      maskHalf: step(b.c, { r: mHalf }),
      maskUnknown: step(b.c, { zz: ones }),
      bce: messageOf(() => binaryCrossEntropy(tf.tensor2d([[1], [0], [2], [0]]), tf.zeros([4, 1]))),
      bceNeg: messageOf(() => binaryCrossEntropy(tf.tensor2d([[1], [-0.1], [1], [0]]), tf.zeros([4, 1]))),
      maskAlone: messageOf(() => mse(tf.zeros([4, 1]), tf.zeros([4, 1]), tf.tensor1d([1, -1, 0, 1]))),
      accuracy: messageOf(() => new JointTrainer({ model, tasks: [TASKS[0]!, { name: "r", loss: "mse", metrics: ["accuracy"] }], optimizer: tf.train.sgd(0.1) })),
      r2OnClasses: messageOf(() => new JointTrainer({ model, tasks: [{ name: "c", loss: "softmaxCrossEntropy", metrics: ["r2"] }, TASKS[1]!], optimizer: tf.train.sgd(0.1) })),
      // @ts-expect-error "acuracy" is not a MetricName
      unknownMetric: messageOf(() => new JointTrainer({ model, tasks: [{ name: "c", loss: "softmaxCrossEntropy", metrics: ["acuracy"] }, TASKS[1]!], optimizer: tf.train.sgd(0.1) })),
    };
    // Valid soft labels and masks still train, and a masked-out row's soft label is not checked.
    const good = tf.tensor2d([[1, 0, 0], [0.2, 0.3, 0.5], [9, 9, 9], [0, 0, 1]]);
    const keep = tf.tensor1d([1, 1, 0, 1]);
    const r = t.step(b.x, { c: good, r: b.r }, { c: keep });
    assert.ok(Number.isFinite(r.losses.c!) && r.step === 1);
    tf.dispose([negative, sum, m2, mHalf, ones, good, keep, b.x, b.r, b.c]);
    return got;
  });
  const m = (k: string) => sameEverywhere(new Map([...results].map(([c, r]) => [c, (r as Record<string, string>)[k] as string])), k);
  assert.match(m("negative"), /^Task "c" \(loss softmaxCrossEntropy, output "c"\): softmaxCrossEntropy: label row 2 has -0\.5 in column 0; probability labels must be >= 0 with each row summing to 1/);
  assert.match(m("sum"), /^Task "c" .*label row 2 sums to 1\.5, not 1 \(tolerance 0\.001\); probability labels must be distributions: normalise each row, or give class ids of shape \[4\]/);
  assert.match(m("mask2"), /The mask for task "c" has the value 2 at row 1; a mask holds 1 \(this row has a label\) or 0 \(missing label\) only\./);
  assert.match(m("maskHalf"), /The mask for task "r" has the value 0\.5 at row 2/);
  assert.match(m("maskUnknown"), /masks name the task "zz", which is not one of the trainer's tasks "c", "r"\./);
  assert.match(m("bce"), /^binaryCrossEntropy: the label of row 2 is 2; binary cross-entropy labels are probabilities in \[0, 1\]/);
  assert.match(m("bceNeg"), /the label of row 1 is -0\.1;/);
  assert.match(m("maskAlone"), /^mse: .*mask has the value -1 at row 1/);
  assert.match(m("accuracy"), /^Task "r": the metric "accuracy" does not fit its loss mse \(a regression task\); use mae, rmse, r2\./);
  assert.match(m("r2OnClasses"), /^Task "c": the metric "r2" does not fit its loss softmaxCrossEntropy \(a classification task\); use accuracy\./);
  assert.match(m("unknownMetric"), /^Task "c": unknown metric "acuracy"; use one of accuracy, mae, rmse, r2\./);
});

test("no optimizer is a clear error at construction (not a TypeError from tfjs); a disposed input, label or mask is named by its key", () => {
  const n = net();
  assert.match(messageOf(() => new JointTrainer({ model: n.model, tasks: TASKS } as unknown as JointTrainerOptions)), /^JointTrainer: no optimizer given; pass one in the options, e.g\. new JointTrainer\(\{ model, tasks, optimizer: tf\.train\.adam\(1e-3\) \}\)/);
  assert.match(messageOf(() => new JointTrainer({ model: n.model, tasks: TASKS, optimizer: "adam" } as unknown as JointTrainerOptions)), /optimizer must be a tf\.Optimizer or optimizerGroups\(\.\.\.\), but got adam; e\.g\. tf\.train\.adam\(1e-3\)\./);
  const turns = [
    { name: "trunk", variables: n.trunk, loss: () => tf.scalar(0) },
    { name: "heads", variables: [n.cHead, n.rHead], loss: () => tf.scalar(0), optimizer: tf.train.sgd(0.1) },
  ];
  assert.match(messageOf(() => new AlternatingTrainer({ forward: () => ({}), turns } as never)), /^AlternatingTrainer: turn "trunk" has no optimizer; give each turn its own, e\.g\. \{ name: "trunk", variables, loss, optimizer: tf\.train\.adam\(1e-3\) \}/);
  assert.match(messageOf(() => new JointObjectiveTrainer({ forward: () => ({}), parts: turns } as never)), /^JointObjectiveTrainer: no optimizer given; pass one in the options, e\.g\./);

  const t = new JointTrainer({ model: n.model, tasks: TASKS, optimizer: tf.train.sgd(0.1) });
  const b = batch();
  const dead = () => {
    const d = tf.zeros([4, 1]);
    d.dispose();
    return d;
  };
  const deadX = tf.zeros([4, 4]);
  deadX.dispose();
  assert.match(messageOf(() => t.step(deadX, { c: b.c, r: b.r })), /^JointTrainer\.step: inputs is a disposed tensor; pass a live tensor/);
  assert.match(messageOf(() => t.step([deadX], { c: b.c, r: b.r })), /^JointTrainer\.step: inputs\[0\] is a disposed tensor/);
  assert.match(messageOf(() => t.step({ input1: deadX }, { c: b.c, r: b.r })), /^JointTrainer\.step: inputs "input1" is a disposed tensor/);
  assert.match(messageOf(() => t.step(b.x, { c: b.c, r: dead() })), /^JointTrainer\.step: the labels "r" is a disposed tensor/);
  assert.match(messageOf(() => t.step(b.x, { c: b.c, r: b.r }, { c: dead() })), /^JointTrainer\.step: the mask "c" is a disposed tensor/);
  assert.match(messageOf(() => t.step(b.x, { c: b.c, r: [1, 2, 3, 4] as unknown as tf.Tensor })), /^JointTrainer\.step: the labels "r" is a JavaScript array of length 4, not a tensor; convert them with tf\.tensor/);
  assert.match(messageOf(() => t.evaluate(b.x, { c: b.c, r: dead() })), /^JointTrainer\.evaluate: the labels "r" is a disposed tensor/);
  assert.match(messageOf(() => mse(dead(), tf.zeros([4, 1]))), /^mse: the labels are a disposed tensor/);

  const alt = new AlternatingTrainer<{ x: tf.Tensor; y: tf.Tensor }>({
    forward: (bt) => ({ r: (n.model.apply(bt.x) as tf.Tensor[])[1]! }),
    turns: [
      { name: "trunk", variables: n.trunk, optimizer: tf.train.sgd(0.1), loss: (o, bt) => mse(bt.y, o.r!) },
      { name: "heads", variables: [n.cHead, n.rHead], optimizer: tf.train.sgd(0.1), loss: (o, bt) => mse(bt.y, o.r!) },
    ],
  });
  assert.match(messageOf(() => alt.step({ x: b.x, y: dead() })), /^AlternatingTrainer turn "trunk": batch "y" is a disposed tensor/);
  assert.equal(alt.stepCount, 0);
  tf.dispose([b.x, b.r, b.c]);
});

/** A loss whose gradient throws: the failure happens in the backward pass, after the tape saved its tensors. */
const failingBackward = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: tf.mean(tf.square(x)) as tf.Scalar,
    gradFunc: () => {
      throw new Error("backward failed on purpose");
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Scalar;

test("a failed step leaks no tensor (plain weighted, weighting, aggregator, diagnostics, alternating); the mismatch names the task and both shapes", async () => {
  await eachConfig((c) => {
    const n = net(3);
    const b = batch();
    const wrong = tf.zeros([4, 2]);
    // Does not broadcast against [4, 1] predictions: tf.sub itself throws inside a custom loss.
    const wrong3 = tf.zeros([4, 2, 1]);
    const badIds = tf.tensor1d([0, 7, 1, 2], "int32");
    const tasksWith = (rLoss: JointTrainerOptions["tasks"][number]["loss"]) => [{ name: "c", loss: "softmaxCrossEntropy" as const, weight: 0.5 }, { name: "r", loss: rLoss, weight: 2 }];
    const trainers: [string, (rLoss: JointTrainerOptions["tasks"][number]["loss"]) => JointTrainer][] = [
      ["plain weighted", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01) })],
      ["weighting uncertainty", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01), weighting: "uncertainty" })],
      ["weighting gradnorm", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01), weighting: "gradnorm", shared: n.trunk })],
      ["aggregator upgrad", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01), aggregator: "upgrad", shared: n.trunk })],
      ["aggregator mgda, representation", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01), aggregator: "mgda", mode: "representation", representation: "r" })],
      ["diagnostics", (l) => new JointTrainer({ model: n.model, tasks: tasksWith(l), optimizer: tf.train.adam(0.01), shared: n.trunk, diagnostics: true })],
    ];
    const custom = (y: tf.Tensor, p: tf.Tensor) => tf.mean(tf.sub(y, p)) as tf.Scalar;
    const backward = (y: tf.Tensor, p: tf.Tensor) => failingBackward(tf.sub(y, p));
    for (const [label, make] of trainers) {
      for (const [failure, loss, labels, expect] of [
        ["label shape", "mse", { c: b.c, r: wrong }, /^Task "r" \(loss mse, output "r"\): mse: labels of shape \[4,2\] do not match predictions of shape \[4,1\]; give labels of shape \[4,1\]/],
        ["class id", "mse", { c: badIds, r: b.r }, /^Task "c" .*label 7 of row 1 is not a class id in \[0, 2\]/],
        ["custom loss broadcast", custom, { c: b.c, r: wrong3 }, /^Task "r" \(loss custom, output "r"\): .*\(labels of shape \[4,2,1\], output "r" of shape \[4,1\]\)$/],
        ["backward pass", backward, { c: b.c, r: b.r }, /backward failed on purpose/],
      ] as const) {
        // Representation mode differentiates the "r" output itself: a loss failing backward there is the same path.
        const t = make(loss as JointTrainerOptions["tasks"][number]["loss"]);
        const before = tf.memory().numTensors;
        const m = messageOf(() => t.step(b.x, labels as Record<string, tf.Tensor>));
        assert.match(m, expect, `${c.name}, ${label}, ${failure}`);
        assert.equal(tf.memory().numTensors, before, `${c.name}, ${label}, ${failure}: tensors leaked by the failed step`);
        assert.equal(t.stepCount, 0);
      }
      // After failures the trainer still trains, with a flat tensor count.
      const t = make("mse");
      t.step(b.x, { c: b.c, r: b.r });
      const before = tf.memory().numTensors;
      t.step(b.x, { c: b.c, r: b.r });
      assert.equal(tf.memory().numTensors, before, `${c.name}, ${label}: a good step after failures is flat`);
    }
    const alt = new AlternatingTrainer<{ x: tf.Tensor; y: tf.Tensor }>({
      forward: (bt) => ({ r: (n.model.apply(bt.x) as tf.Tensor[])[1]! }),
      turns: [
        { name: "trunk", variables: n.trunk, optimizer: tf.train.sgd(0.1), loss: (o, bt) => mse(bt.y, o.r!) },
        { name: "heads", variables: [n.cHead, n.rHead], optimizer: tf.train.sgd(0.1), loss: (o, bt) => backward(bt.y, o.r!) },
      ],
    });
    let before = tf.memory().numTensors;
    assert.match(messageOf(() => alt.step({ x: b.x, y: wrong })), /^AlternatingTrainer turn "trunk", step 1: mse: labels of shape \[4,2\] do not match predictions of shape \[4,1\]/);
    assert.equal(tf.memory().numTensors, before, `${c.name}, alternating: tensors leaked`);
    alt.step({ x: b.x, y: b.r });
    before = tf.memory().numTensors;
    assert.match(messageOf(() => alt.step({ x: b.x, y: b.r })), /^AlternatingTrainer turn "heads", step 2: backward failed on purpose/);
    assert.equal(tf.memory().numTensors, before, `${c.name}, alternating backward: tensors leaked`);
    const joint = new JointObjectiveTrainer<{ x: tf.Tensor; y: tf.Tensor }>({
      forward: (bt) => ({ r: (n.model.apply(bt.x) as tf.Tensor[])[1]! }),
      parts: [{ name: "r", variables: [n.trunk, n.rHead], loss: (o, bt) => mse(bt.y, o.r!) }],
      optimizer: tf.train.sgd(0.1),
    });
    before = tf.memory().numTensors;
    assert.match(messageOf(() => joint.step({ x: b.x, y: wrong })), /^JointObjectiveTrainer, step 1: mse: labels of shape \[4,2\]/);
    assert.equal(tf.memory().numTensors, before, `${c.name}, joint objective: tensors leaked`);
    tf.dispose([b.x, b.r, b.c, wrong, wrong3, badIds]);
  });
});

test("an output folder that cannot be written says so and names the folder (not ENOENT ... mkdir)", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "jointly-save-"));
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 1, inputShape: [2] })] });
  try {
    // A regular file where a folder should be: ENOTDIR from mkdir.
    writeFileSync(join(root, "file"), "not a folder");
    await assert.rejects(model.save(fileSystemIO(join(root, "file", "model"))), (err: Error) => {
      assert.match(err.message, new RegExp(`^fileSystemIO: cannot save the model to ${join(root, "file", "model")}: ${join(root, "file")} is a file, not a folder \\(ENOTDIR`));
      assert.match(err.message, /choose another output folder/);
      return true;
    });
    await assert.rejects(model.save(fileSystemIO(join(root, "file"))), /is a file, not a folder/);

    // A folder without write permission: root writes anywhere, so the save runs as user "nobody".
    const canDrop = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;
    if (!canDrop) t.diagnostic("skipped the permission case: needs root and setpriv to run a child as nobody");
    else {
      const locked = join(root, "locked");
      mkdirSync(join(locked, "existing"), { recursive: true });
      chmodSync(root, 0o755);
      chmodSync(locked, 0o755);
      chmodSync(join(locked, "existing"), 0o755);
      const child = (dir: string) => {
        const r = spawnSync("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, "--import", "tsx", join(import.meta.dirname, "fixtures", "save-model-child.ts"), dir], { encoding: "utf8", cwd: join(import.meta.dirname, "..") });
        const line = r.stdout.split("\n").reverse().find((l) => l.startsWith("{"));
        assert.ok(line, `child printed no result: ${r.stderr.slice(-500)}`);
        return JSON.parse(line) as { ok?: true; error?: string };
      };
      const fresh = child(join(locked, "new", "model"));
      assert.match(fresh.error ?? "", new RegExp(`^fileSystemIO: cannot save the model to ${join(locked, "new", "model")}: the folder ${locked} is not writable by this process \\(EACCES: permission denied, mkdir`));
      assert.match(fresh.error ?? "", /choose a folder you can write to, or change its permissions/);
      const existing = child(join(locked, "existing"));
      assert.match(existing.error ?? "", new RegExp(`nothing was published: the folder ${join(locked, "existing")} is not writable by this process \\(EACCES`));
    }

    // A read-only file system: mkdir there reports ENOENT, the case of the issue.
    const ro = join(root, "ro");
    mkdirSync(ro);
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro]).status === 0;
    if (!mounted) t.diagnostic("skipped the read-only file system case: mount failed (needs root in a container that allows it)");
    else {
      try {
        await assert.rejects(model.save(fileSystemIO(join(ro, "a", "b"))), new RegExp(`cannot save the model to ${join(ro, "a", "b")}: the folder ${ro} is on a read-only file system \\(ENOENT: no such file or directory, mkdir`));
        await assert.rejects(model.save(fileSystemIO(ro)), new RegExp(`nothing was published: the folder ${ro} is on a read-only file system \\(EROFS`));
      } finally {
        spawnSync("umount", [ro]);
      }
    }
    // A writable folder still saves.
    await model.save(fileSystemIO(join(root, "ok", "model")));
    assert.ok(existsSync(join(root, "ok", "model", "model.json")));
  } finally {
    spawnSync("umount", [join(root, "ro")]);
    rmSync(root, { recursive: true, force: true });
  }
});
