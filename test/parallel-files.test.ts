import { test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { fileSystemIO } from "../src/parallel/model-files.js";

await initBackend({ report: false });

const root = mkdtempSync(join(tmpdir(), "jointly-files-"));
test.after(() => rmSync(root, { recursive: true, force: true }));

function model(seed: number) {
  const input = tf.input({ shape: [3] });
  const h = tf.layers.dense({ units: 5, activation: "tanh", kernelInitializer: tf.initializers.glorotUniform({ seed }) }).apply(input) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }), biasInitializer: tf.initializers.constant({ value: 0.25 }) }).apply(h) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

/** The layout of src/io/atomic.ts: one complete version, `current` and the two links to it. */
function assertLayout(dir: string): void {
  const names = readdirSync(dir).sort();
  assert.equal(names.length, 4, `entries of ${dir}: ${names.join(", ")}`);
  const [current, modelJSON, version, weightsBin] = names as [string, string, string, string];
  assert.deepEqual([current, modelJSON, weightsBin], ["current", "model.json", "weights.bin"]);
  assert.match(version, /^v-\d{10}-[0-9a-f]{8}$/);
  assert.equal(readlinkSync(join(dir, "current")), version);
  assert.ok(lstatSync(join(dir, "model.json")).isSymbolicLink());
  assert.deepEqual(readdirSync(join(dir, version)).sort(), ["model.json", "weights.bin"]);
}

const probe = tf.tensor2d([[0.1, -2, 3], [1, 1, 1], [-0.5, 0.3, 0.9]]);

test("save then load gives a model that predicts identically, metadata included", async () => {
  const dir = join(root, "round-trip");
  const m = model(1);
  m.setUserDefinedMetadata({ note: "hello" });
  const result = await m.save(fileSystemIO(dir));
  assert.ok((result.modelArtifactsInfo.weightDataBytes ?? 0) > 0, "weights were written");
  assertLayout(dir);
  const loaded = await tf.loadLayersModel(fileSystemIO(dir));
  const a = tf.tidy(() => (m.predict(probe) as tf.Tensor).dataSync());
  const b = tf.tidy(() => (loaded.predict(probe) as tf.Tensor).dataSync());
  assert.deepEqual(Array.from(b), Array.from(a));
  assert.deepEqual(loaded.getUserDefinedMetadata(), { note: "hello" });
  m.dispose();
  loaded.dispose();
});

test("a failing weights write leaves no model.json and no temporary files", async () => {
  const dir = join(root, "fails");
  const io = fileSystemIO(dir, {
    fileOps: {
      writeFile: async (path) => {
        writeFileSync(path, "partial"); // the disk got some bytes, then the write failed
        throw new Error("disk full (simulated)");
      },
    },
  });
  const m = model(2);
  await assert.rejects(m.save(io), /saving the model to .*fails failed, nothing was published: disk full \(simulated\)/);
  assert.deepEqual(readdirSync(dir), []);
  await assert.rejects(tf.loadLayersModel(fileSystemIO(dir)), /no saved model in .*\(model.json is missing\)/);
  m.dispose();
});

test("a failed overwrite keeps the previous model loadable and unchanged", async () => {
  const dir = join(root, "overwrite");
  const first = model(3);
  await first.save(fileSystemIO(dir));
  const before = readFileSync(join(dir, "weights.bin"));
  let calls = 0;
  const failing = fileSystemIO(dir, {
    fileOps: {
      writeFile: async (path, data) => {
        // The weights file is written first; fail the second file (model.json).
        if (++calls === 2) throw new Error("interrupted (simulated)");
        writeFileSync(path, data);
      },
    },
  });
  const second = model(4);
  await assert.rejects(second.save(failing), /interrupted/);
  assertLayout(dir);
  assert.deepEqual(readFileSync(join(dir, "weights.bin")), before);
  const loaded = await tf.loadLayersModel(fileSystemIO(dir));
  const a = tf.tidy(() => Array.from((first.predict(probe) as tf.Tensor).dataSync()));
  const b = tf.tidy(() => Array.from((loaded.predict(probe) as tf.Tensor).dataSync()));
  assert.deepEqual(b, a);
  [first, second, loaded].forEach((x) => x.dispose());
});

test("a failing publishing rename keeps the previous model, and leaves no temporary files", async () => {
  const dir = join(root, "publish-fails");
  const first = model(5);
  await first.save(fileSystemIO(dir));
  const before = readdirSync(dir).sort();
  const io = fileSystemIO(dir, {
    fileOps: {
      rename: async (_from, to) => {
        if (/v-\d+-[0-9a-f]+$/.test(to)) throw new Error("power cut (simulated)");
        throw new Error(`unexpected rename to ${to}`);
      },
    },
  });
  await assert.rejects(model(6).save(io), /saving the model to .*publish-fails failed, nothing was published: power cut/);
  assert.deepEqual(readdirSync(dir).sort(), before);
  const loaded = await tf.loadLayersModel(fileSystemIO(dir));
  const a = tf.tidy(() => Array.from((first.predict(probe) as tf.Tensor).dataSync()));
  const b = tf.tidy(() => Array.from((loaded.predict(probe) as tf.Tensor).dataSync()));
  assert.deepEqual(b, a);
  [first, loaded].forEach((x) => x.dispose());
});

test("loading weights that do not match model.json is an error saying so", async () => {
  const dir = join(root, "mismatch");
  await model(7).save(fileSystemIO(dir));
  writeFileSync(join(dir, "weights.bin"), new Uint8Array(12));
  await assert.rejects(tf.loadLayersModel(fileSystemIO(dir)), /hold 12 bytes but model.json describes \d+/);
});
