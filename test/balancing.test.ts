import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { JointTrainer, type JointTrainerOptions } from "../src/train/joint-trainer.js";
import { fit } from "../src/train/fit.js";
import { aggregate } from "../src/aggregation/index.js";
import { createWeighting, dwaWeights, GradNorm } from "../src/weighting/index.js";
import { optimizerGroups } from "../src/train/optimizer-groups.js";
import { l2 } from "../src/losses/regularization.js";
import { taskWeightsSpec } from "../src/charts/loss-curves.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

function net(seed = 1) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunkLayer = tf.layers.dense({ units: 8, activation: "tanh", name: "trunk", kernelInitializer: init(seed) });
  const trunk = trunkLayer.apply(input) as tf.SymbolicTensor;
  const headA = tf.layers.dense({ units: 3, name: "a", kernelInitializer: init(seed + 1) });
  const headB = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(seed + 2) });
  const a = headA.apply(trunk) as tf.SymbolicTensor;
  const b = headB.apply(trunk) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [a, b, trunk] });
  return { model, trunkLayer, headA, headB, vars: model.trainableWeights.map((w) => w.read() as tf.Variable) };
}

function batch(rows = 16, seed = 3) {
  const x = tf.randomNormal([rows, 4], 0, 1, "float32", seed);
  const ya = tf.argMax(tf.slice(x, [0, 0], [rows, 3]), 1) as tf.Tensor1D;
  // Body-mass-like scale: the regression loss is much larger than the classification loss.
  const yb = tf.mul(tf.sum(x, 1, true), 5);
  return { x, y: { a: ya, b: yb } };
}

const tasks = (wa = 1, wb = 1) => [
  { name: "a", loss: "softmaxCrossEntropy" as const, weight: wa },
  { name: "b", loss: "mse" as const, weight: wb },
];

const snapshot = (vars: tf.Variable[]) => vars.map((v) => Array.from(v.dataSync()));

function assertClose(got: number[][], want: number[][], tol: number, what: string) {
  got.forEach((g, i) => g.forEach((v, j) => assert.ok(Math.abs(v - want[i]![j]!) <= tol, `${what}: variable ${i}[${j}] ${v} vs ${want[i]![j]}`)));
}

/** Run one step from the same initial weights with two configurations and return the variables after. */
function afterStep(wa: number, wb: number, extra: (n: ReturnType<typeof net>) => Partial<JointTrainerOptions> = () => ({})) {
  const n = net();
  const { x, y } = batch();
  const trainer = new JointTrainer({ model: n.model, optimizer: tf.train.sgd(0.1), tasks: tasks(wa, wb), ...extra(n) });
  const result = trainer.step(x, y);
  return { after: snapshot(n.vars), result, trainer };
}

test("aggregator mean: the step equals the plain joint step with weights 1/T (heads by task weights, or by the implied weights)", () => {
  const plain = afterStep(0.5, 0.5);
  const meanTaskWeights = afterStep(0.5, 0.5, (n) => ({ aggregator: "mean", shared: n.trunkLayer }));
  const meanImplied = afterStep(1, 1, (n) => ({ aggregator: "mean", shared: n.trunkLayer, heads: "implied" }));
  const meanRep = afterStep(1, 1, () => ({ aggregator: { name: "mean" }, mode: "representation", representation: "trunk", heads: "implied" }));
  assertClose(meanTaskWeights.after, plain.after, 1e-6, "mean, heads by task weights");
  assertClose(meanImplied.after, plain.after, 1e-6, "mean, heads implied");
  assertClose(meanRep.after, plain.after, 1e-6, "mean, representation mode");
  assert.deepEqual(meanImplied.result.weights, { a: 0.5, b: 0.5 });
  assert.ok(Math.abs(meanImplied.result.total - plain.result.total) < 1e-5);
  // With the default heads and weights 1, the heads move twice as far: the comparison above is not vacuous.
  const meanDefault = afterStep(1, 1, (n) => ({ aggregator: "mean", shared: n.trunkLayer }));
  assert.ok(Math.abs(meanDefault.after[2]![0]! - plain.after[2]![0]!) > 1e-5);
});

for (const name of ["upgrad", "mgda"] as const) {
  test(`aggregator ${name}: the shared update is lr times aggregate("${name}", J) and each head gets its own task's gradient`, () => {
    const lr = 0.1;
    const n = net();
    const { x, y } = batch();
    const trainer = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(lr), aggregator: name, shared: n.trunkLayer });
    const probe = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(lr), shared: n.vars });
    const before = snapshot(n.vars);
    const J = probe.taskGradients(x, y).J; // rows over all six variables, in order
    const sharedSize = 4 * 8 + 8;
    const expected = aggregate(name, J.map((r) => r.slice(0, sharedSize)));
    const result = trainer.step(x, y);
    const after = snapshot(n.vars);
    const delta = after.map((v, i) => v.map((w, j) => w - before[i]![j]!));
    const flatShared = [...delta[0]!, ...delta[1]!];
    flatShared.forEach((d, j) => assert.ok(Math.abs(d + lr * expected.direction[j]!) < 1e-5, `shared[${j}]: ${d} vs ${-lr * expected.direction[j]!}`));
    // Heads: ka, ba from task a's row, kb, bb from task b's row.
    const headA = J[0]!.slice(sharedSize, sharedSize + 24 + 3);
    const headB = J[1]!.slice(sharedSize + 27);
    [...delta[2]!, ...delta[3]!].forEach((d, j) => assert.ok(Math.abs(d + lr * headA[j]!) < 1e-5, `head a[${j}]`));
    [...delta[4]!, ...delta[5]!].forEach((d, j) => assert.ok(Math.abs(d + lr * headB[j]!) < 1e-5, `head b[${j}]`));
    result.weights && Object.values(result.weights).forEach((w, i) => assert.ok(Math.abs(w - expected.weights[i]!) < 1e-6));
    // The aggregated direction is not the plain sum here (the regression gradient dominates the sum).
    const sum = J[0]!.slice(0, sharedSize).map((v, j) => v + J[1]![j]!);
    assert.ok(sum.some((s, j) => Math.abs(s - expected.direction[j]!) > 1e-3));
  });
}

test("representation mode with mgda: the trunk gets the aggregated representation direction back-propagated, the heads their own gradients", () => {
  const lr = 0.1;
  const n = net();
  const { x, y } = batch();
  const trainer = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(lr), aggregator: "mgda", mode: "representation", representation: "trunk" });
  const before = snapshot(n.vars);
  const Jz = trainer.taskGradients(x, y).J;
  const agg = aggregate("mgda", Jz);
  const [k1, b1, ka, ba, kb, bb] = n.vars as tf.Variable[];
  const want = tf.tidy(() => {
    const z = (k: tf.Tensor, b: tf.Tensor) => tf.tanh(tf.add(tf.matMul(x as tf.Tensor2D, k as tf.Tensor2D), b));
    const d = tf.reshape(tf.tensor1d(agg.direction), [16, 8]);
    const trunk = tf.grads((k: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(z(k, b), d)))([k1!, b1!]);
    const probe = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(lr), shared: [ka!, ba!, kb!, bb!] });
    const heads = probe.taskGradients(x, y).J;
    return [...trunk.map((g) => Array.from(g.dataSync())), [...heads[0]!.slice(0, 27)], [...heads[1]!.slice(27)]];
  });
  trainer.step(x, y);
  const delta = snapshot(n.vars).map((v, i) => v.map((w, j) => w - before[i]![j]!));
  const got = [delta[0]!, delta[1]!, [...delta[2]!, ...delta[3]!], [...delta[4]!, ...delta[5]!]];
  got.forEach((g, i) => g.forEach((d, j) => assert.ok(Math.abs(d + lr * want[i]![j]!) < 1e-5, `part ${i}[${j}]: ${d} vs ${-lr * want[i]![j]!}`)));
  assert.ok(agg.weights[0]! > 0.5, `mgda favours the small-gradient task, weights ${agg.weights}`);
});

test("aggregator with a penalty and optimizer groups: the same update as the plain step with weights 1/T", () => {
  const make = (extra: (n: ReturnType<typeof net>) => Partial<JointTrainerOptions>) => {
    const n = net();
    const { x, y } = batch();
    const groups = optimizerGroups({ trunk: { variables: n.trunkLayer, optimizer: tf.train.sgd(0.05) }, heads: { variables: [n.headA, n.headB], optimizer: tf.train.sgd(0.2) } });
    const kernels = [n.vars[0]!, n.vars[2]!];
    // A large penalty weight, so dropping its gradient on the shared kernel would show.
    const trainer = new JointTrainer({ model: n.model, tasks: tasks(0.5, 0.5), optimizer: groups, penalty: () => l2(kernels, 0.5), ...extra(n) });
    const r = trainer.step(x, y);
    return { after: snapshot(n.vars), r, groups };
  };
  const plain = make(() => ({}));
  for (const [label, extra] of [
    ["parameters", (n: ReturnType<typeof net>) => ({ aggregator: "mean" as const, shared: n.trunkLayer })],
    ["representation", () => ({ aggregator: "mean" as const, mode: "representation" as const, representation: "trunk" })],
  ] as const) {
    const agg = make(extra);
    assertClose(agg.after, plain.after, 1e-6, `mean + penalty + groups, ${label}`);
    assert.ok(agg.r.penalty !== undefined && Math.abs(agg.r.penalty - plain.r.penalty!) < 1e-7);
    assert.deepEqual(agg.groups.updates(), { trunk: 1, heads: 1 });
  }
});

test("weighting gradnorm: trainer weights follow GradNorm fed with the losses and weighted per-task norms on the shared kernel", () => {
  const n = net();
  const { x, y } = batch();
  const kernel = n.vars[0]!;
  const trainer = new JointTrainer({
    model: n.model, tasks: tasks(), optimizer: tf.train.sgd(0.05),
    weighting: { name: "gradnorm", options: { alpha: 1.5, lr: 0.2 } }, shared: kernel,
  });
  const reference = new GradNorm({ numTasks: 2, alpha: 1.5, lr: 0.2 });
  const probe = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(0.05), shared: kernel });
  const seen: number[][] = [];
  for (let s = 0; s < 4; s++) {
    const w = reference.weights();
    const { J, losses } = probe.taskGradients(x, y);
    const norms = J.map((row, i) => w[i]! * Math.hypot(...row));
    const r = trainer.step(x, y);
    assert.deepEqual(Object.values(r.weights).map((v) => +v.toFixed(9)), w.map((v) => +v.toFixed(9)), `step ${s + 1} used the weights GradNorm gave`);
    reference.update({ losses: [losses.a!, losses.b!], gradNorms: norms });
    seen.push(Object.values(trainer.weights()));
    const next = trainer.weighting!.weights();
    next.forEach((v, i) => assert.ok(Math.abs(v - reference.weights()[i]!) < 1e-5, `after step ${s + 1}: ${next} vs ${reference.weights()}`));
  }
  assert.ok(Math.abs(seen[3]![0]! - 1) > 0.05, `the weights moved: ${JSON.stringify(seen)}`);
  assert.ok(Math.abs(seen[3]![0]! + seen[3]![1]! - 2) < 1e-6);
});

test("weighting dwa through fit: epoch weights are DWA of the two previous epochs' training losses; per-step rows chart by step", async () => {
  const n = net();
  const { x, y } = batch(32, 5);
  const run = await fit({ trainer: { model: n.model, tasks: tasks(), optimizer: tf.train.adam(0.02), weighting: "dwa" }, x, y, epochs: 4, batchSize: 16, live: false, recordSteps: true });
  const train = run.history.objects().filter((r) => (r as { split: string }).split === "train") as { epoch: number; task: string; loss: number; weight: number }[];
  const at = (epoch: number) => ["a", "b"].map((t) => train.find((r) => r.epoch === epoch && r.task === t)!);
  assert.deepEqual(at(1).map((r) => r.weight), [1, 1]);
  assert.deepEqual(at(2).map((r) => r.weight), [1, 1]);
  for (const e of [3, 4]) {
    const want = dwaWeights(at(e - 1).map((r) => r.loss), at(e - 2).map((r) => r.loss), 2);
    at(e).forEach((r, i) => assert.ok(Math.abs(r.weight - want[i]!) < 1e-9, `epoch ${e} ${r.task}: ${r.weight} vs ${want[i]}`));
    assert.ok(Math.abs(at(e)[0]!.weight - 1) > 1e-4);
  }
  const steps = run.steps!.objects() as { step: number; task: string; weight: number }[];
  assert.equal(steps.length, 4 * 2 * 2);
  assert.deepEqual([...new Set(steps.map((r) => r.step))], [1, 2, 3, 4, 5, 6, 7, 8]);
  const spec = taskWeightsSpec(run.steps!, { x: "step" }) as { data: { values: unknown[] } };
  assert.equal(spec.data.values.length, 16);
});

test("an aggregator's implied weights are the history's weight column (epoch mean) and the per-step weights", async () => {
  const n = net();
  const { x, y } = batch(32, 5);
  const run = await fit({ trainer: { model: n.model, tasks: tasks(), optimizer: tf.train.sgd(0.05), aggregator: "mgda", shared: n.trunkLayer }, x, y, epochs: 2, batchSize: 16, live: false, recordSteps: true, shuffle: false });
  const steps = run.steps!.objects() as { step: number; epoch: number; task: string; weight: number }[];
  const hist = run.history.objects() as { epoch: number; task: string; weight: number }[];
  for (const t of ["a", "b"]) {
    const s = steps.filter((r) => r.epoch === 1 && r.task === t).map((r) => r.weight);
    const mean = (s[0]! + s[1]!) / 2;
    assert.ok(Math.abs(hist.find((r) => r.epoch === 1 && r.task === t)!.weight - mean) < 1e-9);
  }
  const w = steps.filter((r) => r.step === 1).map((r) => r.weight);
  assert.ok(Math.abs(w[0]! + w[1]! - 1) < 1e-6 && w[0]! !== 0.5, `mgda weights on the simplex, not uniform: ${w}`);
});

test("no tensor leak over 200 steps: aggregators in both modes, and gradnorm with diagnostics", () => {
  const configs: [string, (n: ReturnType<typeof net>) => Partial<JointTrainerOptions>][] = [
    ["upgrad, parameters", (n) => ({ aggregator: "upgrad", shared: n.trunkLayer })],
    ["mgda, representation", () => ({ aggregator: "mgda", mode: "representation", representation: "trunk", diagnostics: true })],
    ["gradnorm + diagnostics", (n) => ({ weighting: "gradnorm", shared: n.trunkLayer, diagnostics: { every: 3 } })],
  ];
  for (const [label, extra] of configs) {
    const n = net();
    const { x, y } = batch();
    const trainer = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.adam(0.01), ...extra(n) });
    let at10 = 0;
    for (let s = 1; s <= 200; s++) {
      trainer.step(x, y);
      if (s === 10) at10 = tf.memory().numTensors;
    }
    assert.equal(tf.memory().numTensors, at10, `${label}: tensors at step 10 vs 200`);
  }
});

test("a NaN loss under an aggregator stops before any update, naming the task", () => {
  const n = net();
  const { x, y } = batch();
  const trainer = new JointTrainer({ model: n.model, tasks: tasks(), optimizer: tf.train.sgd(0.1), aggregator: "upgrad", shared: n.trunkLayer });
  const before = snapshot(n.vars);
  const bad = { a: y.a, b: tf.fill([16, 1], NaN) };
  assert.throws(() => trainer.step(x, bad), /Task "b": the loss is NaN at step 1 .*no update was applied/);
  assert.deepEqual(snapshot(n.vars), before);
  assert.equal(trainer.stepCount, 0);
});

test("bad balancing options: unknown names list the valid ones; conflicting or missing pieces are named", () => {
  const n = net();
  const base = { model: n.model, tasks: tasks(), optimizer: tf.train.sgd(0.1) };
  // The names are typed (a typo fails at compile time too); the run-time check is for plain JavaScript.
  // @ts-expect-error "gradnrom" is not a WeightingName
  assert.throws(() => new JointTrainer({ ...base, weighting: "gradnrom", shared: n.trunkLayer }), /Unknown weighting method "gradnrom"; valid names are: equal, static, gradnorm/);
  // @ts-expect-error "upgard" is not an AggregatorName
  assert.throws(() => new JointTrainer({ ...base, aggregator: "upgard", shared: n.trunkLayer }), /unknown aggregator "upgard"; valid names are: mean, mgda, pcgrad/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: { name: "upgrad", options: { c: 1 } }, shared: n.trunkLayer }), /unknown option "c" for aggregator upgrad; it accepts tol, maxIters, preference/);
  assert.throws(() => new JointTrainer({ ...base, weighting: "dwa", aggregator: "mgda", shared: n.trunkLayer }), /give either weighting \("dwa"\) or aggregator \("mgda"\), not both/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda", shared: [] }), /shared variable set is empty/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda" }), /the aggregator "mgda" needs shared/);
  assert.throws(() => new JointTrainer({ ...base, weighting: "gradnorm" }), /the weighting "gradnorm" \(it needs gradient norms\) needs shared/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda", mode: "representation" }), /mode "representation" needs representation: .*the outputs are "a", "b", "trunk"/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda", mode: "representation", representation: "trunc" }), /representation "trunc" is not an output of the model/);
  assert.throws(() => new JointTrainer({ ...base, weighting: "gradnorm", mode: "representation", representation: "trunk" }), /needs gradient norms on a shared layer's weights .*use mode "parameters"/);
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda", mode: "sideways" as never, shared: n.trunkLayer }), /mode must be "parameters" or "representation", but got "sideways"/);
  assert.throws(() => new JointTrainer({ ...base, weighting: createWeighting("dwa", { numTasks: 3 }) }), /the weighting "dwa" is for 3 tasks, but the trainer has 2/);
  const stray = tf.variable(tf.zeros([2]), true, "stray_var");
  assert.throws(() => new JointTrainer({ ...base, aggregator: "mgda", shared: [stray] }), /shared variables stray_var are not among the variables being trained/);
  stray.dispose();
});

test("seeded and stateful aggregators by name keep per-trainer state: graddrop advances its seed, gradvac keeps its targets", async () => {
  const { GradVac } = await import("../src/aggregation/index.js");
  const run = (aggregator: JointTrainerOptions["aggregator"]) => {
    const n = net(21);
    const trainer = new JointTrainer({ model: n.model, optimizer: tf.train.sgd(0.05), tasks: tasks(), shared: n.trunkLayer, aggregator });
    const weights: number[][] = [];
    for (let s = 0; s < 6; s++) {
      const { x, y } = batch(16, 40 + s);
      weights.push(Object.values(trainer.step(x, y).weights));
      tf.dispose([x, y.a, y.b]);
    }
    return { weights, after: snapshot(n.vars) };
  };
  let calls = 0;
  // GradDrop (two tasks suffice: its sign mask is random) by name must draw a new mask each step.
  const dropByName = run("graddrop");
  const dropByHand = run((J: number[][]) => aggregate("graddrop", J, { seed: calls++ }));
  assertClose(dropByName.after, dropByHand.after, 0, "graddrop by name vs a seed advanced by hand");
  const dropFixedSeed = run((J: number[][]) => aggregate("graddrop", J, { seed: 0 }));
  assert.ok(dropByName.weights.some((w, i) => w.some((v, j) => v !== dropFixedSeed.weights[i]![j])), "graddrop by name reused one seed every step");
  const gradvacByName = run({ name: "gradvac", options: { beta: 0.5 } });
  const gradvacInstance = run(new GradVac({ beta: 0.5 }));
  assertClose(gradvacByName.after, gradvacInstance.after, 0, "gradvac by name vs one GradVac instance");
  // A fresh GradVac every step (the old behaviour) would forget its targets: check the state mattered.
  const gradvacForgetful = run((J: number[][]) => new GradVac({ beta: 0.5 }).aggregate(J));
  const differs = gradvacByName.weights.some((w, i) => w.some((v, j) => Math.abs(v - gradvacForgetful.weights[i]![j]!) > 1e-9));
  assert.ok(differs, "GradVac with kept targets gave the same weights as a fresh GradVac each step");
});
