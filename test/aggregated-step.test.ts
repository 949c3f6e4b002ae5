/**
 * JointTrainer's aggregated step (option `aggregator`): the variables in `shared` move along the
 * aggregated direction, every other variable by Σ_i c_i ∇L_i (c = the task weights, or the
 * aggregator's weights under `heads: "implied"`). The net has a two-layer trunk with only its TOP
 * layer shared, so the bottom layer is a non-shared variable that BOTH tasks reach: dropping any
 * task's term from the sum changes its update (on a head, only one task's term is non-zero).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { JointTrainer, type JointTrainerOptions } from "../src/train/joint-trainer.js";
import { aggregate } from "../src/aggregation/index.js";
import { mse, softmaxCrossEntropy } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

const LR = 0.1;
/** Variable order of {@link net}: bottom trunk, top trunk (shared), head a, head b; kernel then bias. */
const NAMES = ["bottom.kernel", "bottom.bias", "top.kernel", "top.bias", "a.kernel", "a.bias", "b.kernel", "b.bias"];
const SHARED = [2, 3];
const NON_SHARED = [0, 1, 4, 5, 6, 7];

/** Input 4 -> bottom 6 (tanh) -> top 5 (tanh) -> head a (3 logits) and head b (1 value). Seeded: same seed, same weights. */
function net(seed = 5) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const bottom = tf.layers.dense({ units: 6, activation: "tanh", name: "bottom", kernelInitializer: init(seed), biasInitializer: tf.initializers.randomNormal({ stddev: 0.1, seed: seed + 10 }) });
  const top = tf.layers.dense({ units: 5, activation: "tanh", name: "top", kernelInitializer: init(seed + 1), biasInitializer: tf.initializers.randomNormal({ stddev: 0.1, seed: seed + 11 }) });
  const headA = tf.layers.dense({ units: 3, name: "a", kernelInitializer: init(seed + 2) });
  const headB = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(seed + 3) });
  const h = top.apply(bottom.apply(input)) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [headA.apply(h) as tf.SymbolicTensor, headB.apply(h) as tf.SymbolicTensor] });
  const vars = [bottom, top, headA, headB].flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  return { model, top, vars };
}

/**
 * A fixed batch on which the two tasks' gradients on the shared layer conflict (cosine about −0.7
 * from the initial weights) and are of similar size, so MGDA and UPGrad give weights well inside
 * (0, 1) and away from uniform (asserted in the tests, which would otherwise prove less).
 */
function batch(rows = 16) {
  return tf.tidy(() => {
    const x = tf.randomNormal([rows, 4], 0, 1, "float32", 8);
    const ya = tf.argMax(tf.slice(x, [0, 0], [rows, 3]), 1) as tf.Tensor1D;
    const yb = tf.mul(tf.sum(x, 1, true), 0.5) as tf.Tensor2D;
    return { x, y: { a: ya, b: yb } };
  });
}

const tasks = (wa: number, wb: number) => [
  { name: "a", loss: "softmaxCrossEntropy" as const, weight: wa },
  { name: "b", loss: "mse" as const, weight: wb },
];

const snapshot = (vars: tf.Variable[]) => vars.map((v) => Array.from(v.dataSync()));
const deltas = (after: number[][], before: number[][]) => after.map((v, i) => v.map((w, j) => w - before[i]![j]!));
const dot = (u: number[], v: number[]) => u.reduce((s, x, k) => s + x * v[k]!, 0);

function assertClose(got: number[], want: number[], tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  got.forEach((g, j) => assert.ok(Math.abs(g - want[j]!) <= tol, `${what}[${j}]: ${g} vs ${want[j]} (tolerance ${tol})`));
}

/**
 * ∇L_a and ∇L_b over the eight variables, each from its own tf.variableGrads of the forward pass
 * written out by hand (not the trainer's or the model's code path), flattened per variable.
 */
function taskGradsByHand(vars: tf.Variable[], x: tf.Tensor, y: { a: tf.Tensor; b: tf.Tensor }): number[][][] {
  return tf.tidy(() => {
    const outputs = () => {
      const [k1, b1, k2, b2, ka, ba, kb, bb] = vars as tf.Tensor[] as tf.Tensor2D[];
      const h1 = tf.tanh(tf.add(tf.matMul(x as tf.Tensor2D, k1!), b1!));
      const h2 = tf.tanh(tf.add(tf.matMul(h1, k2!), b2!));
      return { a: tf.add(tf.matMul(h2, ka!), ba!), b: tf.add(tf.matMul(h2, kb!), bb!) };
    };
    const losses = [() => softmaxCrossEntropy(y.a, outputs().a), () => mse(y.b, outputs().b)];
    return losses.map((f) => {
      const { grads } = tf.variableGrads(f, vars);
      // The other head's variables, which this loss does not reach, get zeros (as in the trainer's J).
      return vars.map((v) => Array.from(grads[v.name]?.dataSync() ?? new Float32Array(v.size)));
    });
  });
}

/** One trainer on a fresh net (seeded, so every call starts from the same weights): the weights before and after one step. */
function oneStep(wa: number, wb: number, extra: (n: ReturnType<typeof net>) => Partial<JointTrainerOptions> = () => ({})) {
  const n = net();
  const { x, y } = batch();
  const trainer = new JointTrainer({ model: n.model, tasks: tasks(wa, wb), optimizer: tf.train.sgd(LR), ...extra(n) });
  const before = snapshot(n.vars);
  const byHand = taskGradsByHand(n.vars, x, y);
  const result = trainer.step(x, y);
  return { n, x, y, trainer, before, byHand, result, delta: deltas(snapshot(n.vars), before) };
}

/** A few more steps: the tensor count stays flat (compared from the second step on, after any first-step caches). */
function assertNoLeak(r: ReturnType<typeof oneStep>, what: string) {
  r.trainer.step(r.x, r.y);
  const at2 = tf.memory().numTensors;
  for (let s = 3; s <= 6; s++) r.trainer.step(r.x, r.y);
  assert.equal(tf.memory().numTensors, at2, `${what}: tensors after step 2 vs step 6`);
}

function dispose(r: ReturnType<typeof oneStep>) {
  tf.dispose([r.x, r.y.a, r.y.b]);
  r.n.model.dispose();
}

/** The guard that makes the comparisons bite: both tasks move the bottom (non-shared) trunk layer. */
function assertBothTasksReachBottom(byHand: number[][][]) {
  for (const i of [0, 1]) for (const t of [0, 1]) {
    const norm = Math.sqrt(dot(byHand[t]![i]!, byHand[t]![i]!));
    assert.ok(norm > 1e-3, `task ${t === 0 ? "a" : "b"}'s gradient on ${NAMES[i]} is ${norm}: the test would not see a dropped term`);
  }
}

test("aggregator mean, top trunk layer shared: the non-shared variables (bottom trunk included) move as in the plain sum with weights 1 and 1, the shared layer half as far", () => {
  const plain = oneStep(1, 1);
  const mean = oneStep(1, 1, (n) => ({ aggregator: "mean", shared: n.top }));
  plain.before.forEach((v, i) => assert.deepEqual(mean.before[i], v, `same initial ${NAMES[i]}`));
  assertBothTasksReachBottom(mean.byHand);
  // Non-shared: Σ_i w_i ∇L_i with w = (1, 1), exactly the plain step's gradient.
  for (const i of NON_SHARED) assertClose(mean.delta[i]!, plain.delta[i]!, 1e-6, `mean vs plain, ${NAMES[i]}`);
  // Shared: "mean" is the average (weights 1/T, src/aggregation/mean.ts), (∇L_a + ∇L_b) / 2: half the plain sum's step.
  for (const i of SHARED) assertClose(mean.delta[i]!, plain.delta[i]!.map((d) => d / 2), 1e-6, `mean vs plain / 2, ${NAMES[i]}`);
  assert.deepEqual(mean.result.weights, { a: 0.5, b: 0.5 });
  // The plain step itself against the hand-made gradients: the reference is right, and the shared layer does move.
  for (let i = 0; i < NAMES.length; i++) assertClose(plain.delta[i]!, plain.byHand[0]![i]!.map((g, j) => -LR * (g + plain.byHand[1]![i]![j]!)), 1e-6, `plain vs hand, ${NAMES[i]}`);
  assert.ok(Math.max(...plain.delta[2]!.map(Math.abs)) > 1e-3, "the shared kernel moves: halving it is visible");
  assertNoLeak(mean, "mean");
  dispose(plain);
  dispose(mean);
});

test('aggregator mean with heads "implied": every variable, shared or not, moves half as far as in the plain sum with weights 1 and 1', () => {
  const plain = oneStep(1, 1);
  const mean = oneStep(1, 1, (n) => ({ aggregator: "mean", shared: n.top, heads: "implied" }));
  assertBothTasksReachBottom(mean.byHand);
  // c = the implied weights (1/2, 1/2): the whole step is the plain step with weights 1/2.
  for (let i = 0; i < NAMES.length; i++) assertClose(mean.delta[i]!, plain.delta[i]!.map((d) => d / 2), 1e-6, `mean implied vs plain / 2, ${NAMES[i]}`);
  assertNoLeak(mean, "mean implied");
  dispose(plain);
  dispose(mean);
});

/**
 * The two-task weights of each aggregator, from the Gramian [[aa, ab], [ab, bb]] in closed form
 * (not the library's solvers): MGDA's minimum-norm point of the segment [g_a, g_b] is
 * α g_a + (1 − α) g_b with α = (bb − ab) / (aa − 2ab + bb) clipped to [0, 1]; UPGrad averages the
 * projections of g_a and g_b onto the dual cone {x : ⟨g_a, x⟩ ≥ 0, ⟨g_b, x⟩ ≥ 0}, which for two
 * conflicting rows (ab < 0) is g_a − (ab / bb) g_b and g_b − (ab / aa) g_a, and the rows themselves otherwise.
 */
function twoTaskWeights(method: "upgrad" | "mgda", ga: number[], gb: number[]): number[] {
  const aa = dot(ga, ga), bb = dot(gb, gb), ab = dot(ga, gb);
  if (method === "mgda") {
    const alpha = Math.min(1, Math.max(0, (bb - ab) / (aa - 2 * ab + bb)));
    return [alpha, 1 - alpha];
  }
  if (ab >= 0) return [0.5, 0.5];
  return [0.5 * (1 - ab / aa), 0.5 * (1 - ab / bb)];
}

for (const method of ["upgrad", "mgda"] as const) {
  for (const heads of ["task-weights", "implied"] as const) {
    test(`aggregator ${method}, heads "${heads}", top trunk layer shared: the shared layer moves by lr·aggregate("${method}", J), every other variable by lr·Σ c_i ∇L_i`, () => {
      // Task weights other than 1: under "task-weights" they are the c of the non-shared sum (and the aggregator never sees them).
      const w = [0.6, 1.5];
      const r = oneStep(w[0]!, w[1]!, (n) => ({ aggregator: method, shared: n.top, heads }));
      const [ga, gb] = r.byHand as [number[][], number[][]];
      assertBothTasksReachBottom(r.byHand);
      // J over the shared variables, rows flattened in the trainer's order (kernel, then bias).
      const J = [SHARED.flatMap((i) => ga[i]!), SHARED.flatMap((i) => gb[i]!)];
      const agg = aggregate(method, J);
      const closedForm = twoTaskWeights(method, J[0]!, J[1]!);
      assertClose(agg.weights, closedForm, 1e-6, `${method} weights: aggregate() vs closed form`);
      // The trainer reports the weights it used: those of its own J, the same up to float32 noise.
      assertClose([r.result.weights.a!, r.result.weights.b!], closedForm, 1e-6, `${method} weights: trainer vs closed form`);
      // Non-vacuous: the rows conflict, the weights are not uniform, and the direction is not the plain sum.
      assert.ok(dot(J[0]!, J[1]!) < 0, `the tasks conflict on the shared layer (⟨g_a, g_b⟩ = ${dot(J[0]!, J[1]!)})`);
      assert.ok(closedForm.every((c) => c > 0.01) && Math.abs(closedForm[0]! - closedForm[1]!) > 0.01, `weights inside and not uniform: ${closedForm}`);
      assert.ok(agg.direction.some((d, j) => Math.abs(d - J[0]![j]! - J[1]![j]!) > 1e-2), "the aggregated direction is not the plain sum");

      const shared = [...r.delta[2]!, ...r.delta[3]!];
      assertClose(shared, agg.direction.map((d) => -LR * d), 1e-6, `${method} ${heads}, shared (top trunk)`);
      const c = heads === "implied" ? closedForm : w;
      for (const i of NON_SHARED) {
        const want = ga[i]!.map((g, j) => -LR * (c[0]! * g + c[1]! * gb[i]![j]!));
        assertClose(r.delta[i]!, want, 1e-6, `${method} ${heads}, ${NAMES[i]} (c = ${c.map((x) => x.toFixed(4))})`);
      }
      assertNoLeak(r, `${method} ${heads}`);
      dispose(r);
    });
  }
}
