import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { batchPipeline, shardIndices, type PipelineBatch } from "../src/parallel/pipeline.js";

await initBackend({ report: false });

const N = 103;
const x = tf.tidy(() => tf.reshape(tf.range(0, N * 2, 1, "float32"), [N, 2]));
const y = tf.range(0, N, 1, "float32");

/** One epoch's row numbers, batch by batch, checking each batch's x and y rows match its row ids. */
async function epoch(ds: tf.data.Dataset<PipelineBatch>): Promise<number[][]> {
  const out: number[][] = [];
  await ds.forEachAsync((b) => {
    const rows = Array.from(b.rows.dataSync());
    assert.deepEqual(Array.from(b.ys.y!.dataSync()), rows);
    assert.deepEqual(Array.from(b.xs.dataSync()), rows.flatMap((r) => [2 * r, 2 * r + 1]));
    out.push(rows);
    tf.dispose(b);
  });
  return out;
}

test("the shards of one count are disjoint and cover every row", async () => {
  for (const count of [1, 2, 3, 4, 8]) {
    const seen = new Map<number, number>();
    for (let index = 0; index < count; index++) {
      const ds = batchPipeline(x, { y }, { batchSize: 10, seed: 3, shard: { index, count } });
      const rows = (await epoch(ds)).flat();
      assert.deepEqual([...rows].sort((a, b) => a - b), shardIndices(N, index, count));
      for (const r of rows) {
        assert.ok(!seen.has(r), `row ${r} in shards ${seen.get(r)} and ${index}`);
        seen.set(r, index);
      }
    }
    assert.equal(seen.size, N);
  }
});

test("shuffling is seeded: same seed same orders, new order each epoch, other seed other order", async () => {
  const make = (seed: number) => batchPipeline(x, { y }, { batchSize: 16, seed, shard: { index: 1, count: 2 } });
  const a = make(7);
  const b = make(7);
  const a1 = await epoch(a);
  const a2 = await epoch(a);
  assert.deepEqual(a1, await epoch(b));
  assert.deepEqual(a2, await epoch(b));
  assert.notDeepEqual(a1, a2);
  assert.notDeepEqual(a1, await epoch(make(8)));
  // Batch sizes: full batches, then the remainder.
  assert.deepEqual(a1.map((r) => r.length), [16, 16, 16, 3]);
});

test("no shuffle keeps row order; dropRemainder drops the short batch; prefetch 0 works", async () => {
  const rows = await epoch(batchPipeline(x, { y }, { batchSize: 25, shuffle: false, dropRemainder: true, prefetch: 0 }));
  assert.deepEqual(rows.map((r) => r.length), [25, 25, 25, 25]);
  assert.deepEqual(rows.flat(), Array.from({ length: 100 }, (_, i) => i));
});

test("the pipeline leaks no tensors over an epoch", async () => {
  const ds = batchPipeline(x, { y }, { batchSize: 8, seed: 1 });
  await epoch(ds);
  const before = tf.memory().numTensors;
  await epoch(ds);
  assert.equal(tf.memory().numTensors, before);
});

test("bad shard index, count, batch size and label rows are errors naming the value", () => {
  assert.throws(() => batchPipeline(x, { y }, { batchSize: 8, shard: { index: 4, count: 4 } }), /index must be an integer in \[0, 3\], but got 4/);
  assert.throws(() => batchPipeline(x, { y }, { batchSize: 8, shard: { index: 0, count: 0 } }), /count must be a positive integer, but got 0/);
  assert.throws(() => batchPipeline(x, { y }, { batchSize: 0 }), /batchSize must be a positive integer, but got 0/);
  assert.throws(() => batchPipeline(x, { y: tf.zeros([5]) }, { batchSize: 4 }), /"y" have 5 rows but x has 103/);
});
