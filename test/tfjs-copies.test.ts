// A second copy of TensorFlow.js (4.21.0, installed into a folder outside the repository and loaded
// by path) in the same process: its models must give an error naming both copies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { trainable } from "../src/train/model.js";
import { assertOwnTfjs, isForeignLayersModel, loadedTfjsCopies } from "../src/backend/tfjs-copies.js";

const SECOND = "4.21.0";
// Kept between runs (npm's cache makes the first install a few seconds); outside the repo so nothing resolves it by accident.
const DIR = join(tmpdir(), `jointly-tfjs-second-copy-${SECOND}`);

function secondCopy(): typeof tf {
  if (!existsSync(join(DIR, "node_modules", "@tensorflow", "tfjs", "package.json"))) {
    mkdirSync(DIR, { recursive: true });
    writeFileSync(join(DIR, "package.json"), JSON.stringify({ name: "second-copy", private: true }));
    execFileSync("npm", ["install", `@tensorflow/tfjs@${SECOND}`, "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: DIR, stdio: "pipe" });
  }
  // The second copy re-registers every kernel in the shared global engine: silence its warnings here.
  const warn = console.warn;
  console.warn = () => {};
  try {
    return createRequire(join(DIR, "package.json"))("@tensorflow/tfjs") as typeof tf;
  } finally {
    console.warn = warn;
  }
}

test("a model of another TensorFlow.js copy gets an error naming both versions and folders", async () => {
  await tf.setBackend("cpu");
  const tf2 = secondCopy();
  const before = tf.memory().numTensors;
  assert.equal(tf2.version.tfjs, SECOND);
  assert.notEqual(tf2.LayersModel, tf.LayersModel);

  const foreign = tf2.sequential({ layers: [tf2.layers.dense({ units: 2, inputShape: [3], name: "second_copy_dense" })] });
  const own = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3], name: "own_copy_dense" })] });
  assert.equal(isForeignLayersModel(foreign), true);
  assert.equal(isForeignLayersModel(own), false);

  const copies = loadedTfjsCopies();
  assert.deepEqual(copies.map((c) => c.version).sort(), ["4.21.0", "4.22.0"]);
  assert.ok(copies.some((c) => c.dir.startsWith(DIR)), JSON.stringify(copies));

  const expectForeign = (e: unknown, what: string): boolean => {
    const m = (e as Error).message;
    assert.ok(m.startsWith(`${what} is a tf.LayersModel from another copy of TensorFlow.js`), m);
    assert.match(m, /@tensorflow\/tfjs-layers 4\.22\.0 at \//);
    assert.ok(m.includes(`@tensorflow/tfjs-layers 4.21.0 at ${join(DIR, "node_modules", "@tensorflow", "tfjs-layers")}`), m);
    assert.ok(m.includes("npm ls @tensorflow/tfjs") && m.includes("peer dependency (^4.22.0)") && m.includes("npm dedupe"), m);
    return true;
  };
  // Alone (it used to be read as a record of models: '"_callHook" is not a tf.LayersModel') and under a key.
  assert.throws(() => trainable(foreign), (e) => expectForeign(e, "trainable(): the model"));
  assert.throws(() => trainable({ shared: own, head: foreign }), (e) => expectForeign(e, 'trainable(): "head"'));

  // Values that are neither keep their own errors; the own copy's models still work.
  assert.throws(() => trainable({ head: 5 as unknown as tf.LayersModel }), /^Error: trainable\(\): "head" is not a tf.LayersModel\.$/);
  assert.deepEqual(trainable({ a: own }).outputNames(), [`a/${own.outputNames[0]}`, "a"]);

  const t2 = tf2.tensor([1, 2, 3]);
  const t1 = tf.tensor([1, 2, 3]);
  // Tensors need no check: the shared global engine makes them with one Tensor class whichever copy asks.
  assert.equal(Object.getPrototypeOf(t2), Object.getPrototypeOf(t1));
  assert.doesNotThrow(() => assertOwnTfjs(t2, "x"));
  const sum = tf.add(t1, t2);
  assert.deepEqual(Array.from(sum.dataSync()), [2, 4, 6]);
  tf.dispose([t1, t2, sum]);
  own.dispose();
  foreign.dispose();
  assert.equal(tf.memory().numTensors, before, "no tensors left");
});
