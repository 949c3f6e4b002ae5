import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { gradientMatrix, perTaskVariableGrads, representationGradients, resolveShared, taskGradients, unflatten } from "../src/train/task-gradients.js";
import { mse, softmaxCrossEntropy } from "../src/losses/per-task.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

/** Trunk (dense 8, tanh) and two heads; the trunk's output is also a model output, for representation mode. */
function net(seed = 1) {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  const input = tf.input({ shape: [4] });
  const trunkLayer = tf.layers.dense({ units: 8, activation: "tanh", name: "trunk", kernelInitializer: init(seed) });
  const trunk = trunkLayer.apply(input) as tf.SymbolicTensor;
  const a = tf.layers.dense({ units: 3, name: "a", kernelInitializer: init(seed + 1) }).apply(trunk) as tf.SymbolicTensor;
  const b = tf.layers.dense({ units: 1, name: "b", kernelInitializer: init(seed + 2) }).apply(trunk) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [a, b, trunk] });
  return { model, trunkLayer, vars: model.trainableWeights.map((w) => w.read() as tf.Variable) };
}

function batch(rows = 12) {
  const x = tf.randomNormal([rows, 4], 0, 1, "float32", 3);
  const ya = tf.argMax(tf.slice(x, [0, 0], [rows, 3]), 1) as tf.Tensor1D;
  const yb = tf.sum(x, 1, true);
  return { x, y: { a: ya, b: yb } };
}

const tasks = () => [
  { name: "a", loss: "softmaxCrossEntropy" as const },
  { name: "b", loss: "mse" as const },
];

/** Task losses written out by hand from the raw weights [k1, b1, ka, ba, kb, bb]. */
function handLosses(x: tf.Tensor, y: { a: tf.Tensor; b: tf.Tensor }) {
  const trunk = (k1: tf.Tensor, b1: tf.Tensor) => tf.tanh(tf.add(tf.matMul(x as tf.Tensor2D, k1 as tf.Tensor2D), b1));
  const la = (h: tf.Tensor, ka: tf.Tensor, ba: tf.Tensor) => softmaxCrossEntropy(y.a, tf.add(tf.matMul(h as tf.Tensor2D, ka as tf.Tensor2D), ba));
  const lb = (h: tf.Tensor, kb: tf.Tensor, bb: tf.Tensor) => mse(y.b, tf.add(tf.matMul(h as tf.Tensor2D, kb as tf.Tensor2D), bb));
  return { trunk, la, lb };
}

const close = (got: number[], want: number[], tol: number, what: string) => {
  assert.equal(got.length, want.length, `${what}: length ${got.length} vs ${want.length}`);
  got.forEach((g, i) => assert.ok(Math.abs(g - (want[i] as number)) <= tol, `${what}[${i}]: ${g} vs ${want[i]}`));
};

test("parameters mode: row i of J is tf.grads of task i's loss alone over the shared variables, flattened", () => {
  const { model, trunkLayer, vars } = net();
  const { x, y } = batch();
  const [k1, b1, ka, ba, kb, bb] = vars as tf.Variable[];
  const h = handLosses(x, y);
  const want = tf.tidy(() => [
    tf.grads((k: tf.Tensor, b: tf.Tensor) => h.la(h.trunk(k, b), ka!, ba!))([k1!, b1!]),
    tf.grads((k: tf.Tensor, b: tf.Tensor) => h.lb(h.trunk(k, b), kb!, bb!))([k1!, b1!]),
  ].map((gs) => gs.flatMap((g) => Array.from(g.dataSync()))));
  const trainer = new JointTrainer({ model, tasks: tasks(), optimizer: tf.train.sgd(0.1), shared: trunkLayer });
  const { J, losses } = trainer.taskGradients(x, y);
  assert.equal(J.length, 2);
  assert.equal(J[0]!.length, 4 * 8 + 8);
  close(J[0]!, want[0]!, 1e-6, "J[a]");
  close(J[1]!, want[1]!, 1e-6, "J[b]");
  // The two tasks pull the trunk differently, so a mix-up of rows would fail.
  assert.ok(Math.abs(J[0]![0]! - J[1]![0]!) > 1e-4);
  const la = tf.tidy(() => h.la(h.trunk(k1!, b1!), ka!, ba!).dataSync()[0]!);
  assert.ok(Math.abs(losses.a! - la) < 1e-6);

  // The functional form gives the same matrix.
  const direct = taskGradients((i) => {
    const out = model.apply(x, { training: true }) as tf.Tensor[];
    return i === 0 ? softmaxCrossEntropy(y.a, out[0]!) : mse(y.b, out[1]!);
  }, 2, [k1!, b1!]);
  close(Array.from(direct.J.dataSync()), J.flat(), 1e-6, "taskGradients");
  direct.J.dispose();
});

test("a variable a task's loss does not reach gets a zero block in that task's row", () => {
  const { vars } = net();
  const { x, y } = batch();
  const [k1, b1, ka, ba, kb, bb] = vars as tf.Variable[];
  const h = handLosses(x, y);
  const { grads, losses } = perTaskVariableGrads((i) => (i === 0 ? h.la(h.trunk(k1!, b1!), ka!, ba!) : h.lb(h.trunk(k1!, b1!), kb!, bb!)), 2, [ka!, kb!]);
  const J = gradientMatrix(grads, [ka!, kb!]);
  const rows = J.arraySync();
  assert.equal(losses.length, 2);
  assert.ok(rows[0]!.slice(24).every((v) => v === 0), "task a does not reach head b's kernel");
  assert.ok(rows[1]!.slice(0, 24).every((v) => v === 0), "task b does not reach head a's kernel");
  assert.ok(rows[0]!.slice(0, 24).some((v) => v !== 0));
  const back = unflatten(rows[1]!, [ka!, kb!]);
  close(Array.from(back[kb!.name]!.dataSync()), Array.from(grads[1]![kb!.name]!.dataSync()), 0, "unflatten");
  tf.dispose([J, back, ...grads.flatMap((g) => Object.values(g))]);
});

test("representation mode: row i of J is the gradient of task i's loss with respect to the trunk output, flattened per example", () => {
  const { model, vars } = net();
  const { x, y } = batch(6);
  const [k1, b1, ka, ba, kb, bb] = vars as tf.Variable[];
  const h = handLosses(x, y);
  const want = tf.tidy(() => {
    const z = h.trunk(k1!, b1!);
    return [
      Array.from(tf.grad((zz: tf.Tensor) => h.la(zz, ka!, ba!))(z).dataSync()),
      Array.from(tf.grad((zz: tf.Tensor) => h.lb(zz, kb!, bb!))(z).dataSync()),
    ];
  });
  const trainer = new JointTrainer({ model, tasks: tasks(), optimizer: tf.train.sgd(0.1), mode: "representation", representation: "trunk" });
  const { J } = trainer.taskGradients(x, y);
  assert.equal(J[0]!.length, 6 * 8);
  close(J[0]!, want[0]!, 1e-6, "Jz[a]");
  close(J[1]!, want[1]!, 1e-6, "Jz[b]");
  // Per example: row entries 8..15 are example 1's representation gradient.
  assert.ok(J[0]!.slice(8, 16).some((v) => v !== 0));
});

test("representation gradients: a tensor the losses do not depend on is an error, naming what it must be", () => {
  const { vars } = net();
  const { x, y } = batch(4);
  const [k1, b1, ka, ba] = vars as tf.Variable[];
  const h = handLosses(x, y);
  const before = tf.memory().numTensors;
  assert.throws(
    () => representationGradients(() => {
      const z = h.trunk(k1!, b1!);
      return { loss: h.la(z, ka!, ba!), representation: tf.mul(z, 2) };
    }, 2),
    /no task's loss depends on the representation; it must be the very tensor the heads are computed from/,
  );
  assert.equal(tf.memory().numTensors, before, "no tensors left behind by the failed call");
});

test("resolveShared: layers and variables, each once; an empty set or a non-variable is an error", () => {
  const { trunkLayer, vars } = net();
  const got = resolveShared([trunkLayer, vars[0]!]);
  assert.deepEqual(got.map((v) => v.id), [vars[0]!.id, vars[1]!.id]);
  assert.throws(() => resolveShared([]), /shared variable set is empty \(0 item\(s\) given/);
  assert.throws(() => resolveShared([42 as never]), /42 is neither a tf.Variable nor a layer/);
});
