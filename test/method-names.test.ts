/**
 * Weighting and aggregator names are literal unions in JointTrainerOptions: a misspelt name is a
 * compile-time error (the `@ts-expect-error` lines below fail `tsc -p tsconfig.test.json`, which the
 * test command runs, as soon as the name is accepted as a plain string), and still a run-time error
 * naming the valid names for plain JavaScript callers. Hand-made Weighting objects and classes, and
 * aggregator objects and functions, stay accepted.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { JointTrainer, type JointTrainerOptions } from "../src/train/joint-trainer.js";
import { weightingNames, type Weighting, type WeightingInput } from "../src/weighting/index.js";
import { aggregatorNames } from "../src/aggregation/index.js";

await initBackend({ report: false });

function net() {
  const input = tf.input({ shape: [3] });
  const trunk = tf.layers.dense({ units: 4, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) });
  const h = trunk.apply(input) as tf.SymbolicTensor;
  const a = tf.layers.dense({ units: 1, name: "a", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(h) as tf.SymbolicTensor;
  const b = tf.layers.dense({ units: 1, name: "b", kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(h) as tf.SymbolicTensor;
  return { model: tf.model({ inputs: input, outputs: [a, b] }), trunk };
}

/** A hand-made weighting class (not in the registry): fixed weights 2 and 1. */
class TwoToOne implements Weighting {
  readonly name = "two-to-one";
  readonly numTasks = 2;
  weights(_input?: WeightingInput): number[] {
    return [2, 1];
  }
  update(): void {}
}

test("misspelt weighting and aggregator names are compile-time errors, and run-time errors listing the valid names", () => {
  const n = net();
  const base = { model: n.model, tasks: [{ name: "a", loss: "mse" as const }, { name: "b", loss: "mse" as const }], optimizer: tf.train.sgd(0.1), shared: n.trunk };
  // @ts-expect-error "gradnrom" is not a WeightingName
  assert.throws(() => new JointTrainer({ ...base, weighting: "gradnrom" }), /Unknown weighting method "gradnrom"; valid names are: equal, static, gradnorm/);
  // @ts-expect-error "upgard" is not an AggregatorName
  assert.throws(() => new JointTrainer({ ...base, aggregator: "upgard" }), /unknown aggregator "upgard"; valid names are: mean, mgda, pcgrad/);
  // @ts-expect-error in { name, options } too
  assert.throws(() => new JointTrainer({ ...base, weighting: { name: "uncertanity" } }), /Unknown weighting method "uncertanity"/);
  // @ts-expect-error in { name, options } too
  assert.throws(() => new JointTrainer({ ...base, aggregator: { name: "mgdaa" } }), /unknown aggregator "mgdaa"/);
  // A name held in a plain string needs a cast (or a check against weightingNames) to compile.
  const fromConfig: string = "gradnorm";
  if ((weightingNames as readonly string[]).includes(fromConfig)) {
    const t = new JointTrainer({ ...base, weighting: fromConfig as JointTrainerOptions["weighting"] & string });
    assert.equal(t.weighting?.name, "gradnorm");
  }
});

test("every registry name compiles and constructs; hand-made weightings and aggregators are accepted", () => {
  const n = net();
  const base = { model: n.model, tasks: [{ name: "a", loss: "mse" as const }, { name: "b", loss: "mse" as const }], optimizer: tf.train.sgd(0.1), shared: n.trunk };
  for (const w of weightingNames) {
    const spec = w === "static" ? { name: w, options: { weights: [1, 1] } } : w;
    assert.equal(new JointTrainer({ ...base, weighting: spec }).weighting?.name, w);
  }
  for (const a of aggregatorNames) assert.ok(new JointTrainer({ ...base, aggregator: a }).hasAggregator);
  const custom = new JointTrainer({ ...base, weighting: new TwoToOne() });
  const x = tf.randomNormal([8, 3], 0, 1, "float32", 4);
  const y = { a: tf.randomNormal([8, 1], 0, 1, "float32", 5), b: tf.randomNormal([8, 1], 0, 1, "float32", 6) };
  assert.deepEqual(custom.step(x, y).weights, { a: 2, b: 1 });
  const byFunction = new JointTrainer({ ...base, aggregator: (J) => ({ direction: J[0]!.map((_, k) => J.reduce((s, r) => s + (r[k] as number), 0)), weights: [1, 1] }) });
  assert.deepEqual(byFunction.step(x, y).weights, { a: 1, b: 1 });
  const byObject = new JointTrainer({ ...base, aggregator: { aggregate: (J: number[][]) => ({ direction: J[1]!, weights: [0, 1] }) } });
  assert.deepEqual(byObject.step(x, y).weights, { a: 0, b: 1 });
  tf.dispose([x, y.a, y.b]);
});
