import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isOutOfMemory, mlpMemoryEstimate } from "../src/parallel/health.js";
import { validateJobSpec, type TrainingJobSpec } from "../src/parallel/job.js";
import { DEFAULT_JOB_TIMEOUT_SECONDS, jobTimeLimit, trainMany, type PoolRow, type WorkerEvent } from "../src/parallel/pool.js";

const root = mkdtempSync(join(tmpdir(), "jointly-health-"));
test.after(() => rmSync(root, { recursive: true, force: true }));

function spec(id: string, index: number, outDir: string, patch: Partial<TrainingJobSpec> = {}): TrainingJobSpec {
  return {
    id,
    architecture: { hidden: [6], task: "classification" },
    hyper: { epochs: 3, batchSize: 32, learningRate: 0.03 },
    data: { dataset: "penguins", features: ["bill_length", "bill_depth", "flipper_length"], label: "species", partition: { scheme: "stratified", parts: 4, index: index % 4, seed: 11 } },
    seed: 200 + index,
    outDir,
    ...patch,
  };
}

/** A Dense layer of 30000 x 30000 float32 (3.6 GB): more than the wasm heap's 4 GB once Adam's moments come in. */
const OVERSIZED = { architecture: { hidden: [30000, 30000], task: "classification" as const } };

test("out-of-memory errors are recognised; a time limit comes from the spec, else the worker's", () => {
  for (const message of ["memory access out of bounds", "Aborted(OOM)", "Aborted()", "Cannot enlarge memory arrays to size 4294967296 bytes", "Array buffer allocation failed", "Worker terminated due to reaching memory limit: JS heap out of memory"]) {
    assert.ok(isOutOfMemory(new Error(message)), message);
  }
  assert.ok(isOutOfMemory(new RangeError("WebAssembly.Memory.grow(): Maximum memory size exceeded")));
  assert.ok(isOutOfMemory(new RangeError("Invalid typed array length: 6000000000")));
  for (const message of ['TrainingJobSpec.data.label names the column "x"', "the loss is NaN", "Aborting the run"]) assert.ok(!isOutOfMemory(new Error(message)), message);
  assert.ok(!isOutOfMemory(new RangeError("Maximum call stack size exceeded")));

  const { parameters, bytes } = mlpMemoryEstimate(3, [30000, 30000], 3, 32);
  assert.equal(parameters, 3 * 30000 + 30000 + 30000 * 30000 + 30000 + 30000 * 3 + 3);
  assert.ok(bytes > 14e9 && bytes < 15e9, `${bytes} bytes`);

  assert.equal(DEFAULT_JOB_TIMEOUT_SECONDS, 3600);
  assert.equal(jobTimeLimit(spec("a", 0, root), 3600), 3600);
  assert.equal(jobTimeLimit(spec("a", 0, root, { timeoutSeconds: 3 }), 3600), 3);
  assert.equal(jobTimeLimit(spec("a", 0, root, { timeoutSeconds: null }), 3600), Infinity);
  assert.equal(jobTimeLimit(spec("a", 0, root, { timeoutSeconds: Infinity }), 3600), Infinity);
  assert.equal(validateJobSpec(spec("a", 0, root, { timeoutSeconds: 3 })).timeoutSeconds, 3);
  assert.equal(validateJobSpec(spec("a", 0, root, { timeoutSeconds: null })).timeoutSeconds, null);
  assert.equal("timeoutSeconds" in validateJobSpec(spec("a", 0, root)), false);
  assert.throws(() => validateJobSpec(spec("a", 0, root, { timeoutSeconds: -1 })), /TrainingJobSpec.timeoutSeconds must be a number of seconds > 0 \(Infinity or null for no limit\), but got -1/);
  assert.throws(() => validateJobSpec({ ...spec("a", 0, root), timeoutSeconds: "3" }), /timeoutSeconds must be .* but got "3"/);
});

test("trainMany, 1 worker: an oversized model fails alone with an out-of-memory error naming it; its thread is replaced and the 10 good jobs behind it all succeed", { timeout: 240_000 }, async () => {
  const out = join(root, "oom-pool");
  const events: WorkerEvent[] = [];
  const specs = [spec("big", 0, out, OVERSIZED), ...Array.from({ length: 10 }, (_, i) => spec(`good-${i}`, i + 1, out))];
  const table = await trainMany(specs, { workers: 1, backend: "wasm", onWorker: (e) => events.push(e) });
  const rows = table.objects() as PoolRow[];
  const big = rows[0]!;
  assert.equal(big.status, "failed");
  assert.equal(big.failure, "outOfMemory", String(big.error));
  assert.match(big.error as string, /^Job "big" ran out of memory on the wasm backend: its model has 900,240,003 parameters \(3\.6 GB of float32 weights, about 14\.\d GB to train with Adam; the wasm backend's heap holds at most 4\.3 GB\)/);
  const good = rows.slice(1);
  assert.deepEqual(good.map((r) => r.status), Array(10).fill("ok"), JSON.stringify(good.map((r) => r.error)));
  // The big job's thread was ended for memory; one fresh thread ran the 10 good jobs.
  const exits = events.filter((e) => e.type === "exit");
  assert.deepEqual(exits.map((e) => [e.threadId, e.requested, e.reason ?? null]), [[big.worker, false, "outOfMemory"], [good[0]!.worker, true, null]]);
  assert.equal(new Set(good.map((r) => r.worker)).size, 1);
  assert.notEqual(good[0]!.worker, big.worker);
  assert.equal(events.filter((e) => e.type === "start").length, 2);
});

test("trainMany, 1 worker: a job of 1e8 epochs with a 3 s limit is stopped and reported timed out; the next job runs", { timeout: 120_000 }, async () => {
  const out = join(root, "time-pool");
  const events: WorkerEvent[] = [];
  const slow = spec("slow", 0, out, { hyper: { epochs: 1e8, batchSize: 32, learningRate: 0.01 }, timeoutSeconds: 3 });
  const table = await trainMany([slow, spec("after", 1, out)], { workers: 1, onWorker: (e) => events.push(e) });
  const [s, after] = table.objects() as PoolRow[];
  assert.equal(s!.status, "failed");
  assert.equal(s!.failure, "timeout");
  assert.match(s!.error as string, /^timed out after 3 s \(the job's time limit, timeoutSeconds 3\); its worker thread was stopped$/);
  assert.ok(s!.seconds >= 3 && s!.seconds < 10, `stopped after ${s!.seconds} s`);
  assert.equal(after!.status, "ok", String(after!.error));
  assert.deepEqual(events.filter((e) => e.type === "exit").map((e) => e.reason ?? "done"), ["timeout", "done"]);

  // The pool's own limit applies to a spec without one; Infinity opts out; nonsense is refused.
  const pooled = await trainMany([spec("slow-2", 0, out, { hyper: { epochs: 1e8, batchSize: 32, learningRate: 0.01 } })], { workers: 1, timeoutSeconds: 2 });
  assert.match(String(pooled.get("error", 0)), /^timed out after 2 s/);
  const unlimited = await trainMany([spec("quick", 2, out)], { workers: 1, timeoutSeconds: Infinity });
  assert.equal(unlimited.get("status", 0), "ok");
  await assert.rejects(trainMany([spec("x", 0, out)], { timeoutSeconds: 0 }), /trainMany: timeoutSeconds must be a positive number of seconds \(Infinity for no limit\), but got 0/);
});

const hasRedis = spawnSync(process.env.JOINTLY_REDIS_SERVER ?? "redis-server", ["--version"]).status === 0;

test("queue, 1 worker process: the oversized job fails once with out of memory, a 1e8-epoch job times out at its limit, and the 10 good jobs all succeed", { timeout: 300_000, skip: hasRedis ? false : "redis-server is not installed" }, async (t) => {
  const { startRedis, startWorker, submitJobs } = await import("../src/queue/index.js");
  const redis = await startRedis();
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
  // The worker before the Redis it uses (a close against a stopped Redis waits for it).
  t.after(async () => {
    await worker?.close({ release: true });
    await redis.stop();
  });
  const out = join(root, "oom-queue");
  const lines: string[] = [];
  worker = await startWorker({ connection: redis.url, queueName: `health-${process.pid}`, name: "w1", outRoots: [out], log: (l) => lines.push(l) });
  const specs = [
    spec("big", 0, out, OVERSIZED),
    ...Array.from({ length: 5 }, (_, i) => spec(`good-${i}`, i + 1, out)),
    spec("slow", 0, out, { hyper: { epochs: 1e8, batchSize: 32, learningRate: 0.01 }, timeoutSeconds: 3 }),
    ...Array.from({ length: 5 }, (_, i) => spec(`good-${i + 5}`, i + 6, out)),
  ];
  const table = await submitJobs(specs, { connection: redis.url, queueName: `health-${process.pid}`, attempts: 3, backoff: 100, timeoutMs: 240_000, pollMs: 500, outRoots: [out] });
  const rows = new Map((table.objects() as { id: string; status: string; error: string | null; attempts: number }[]).map((r) => [r.id, r]));
  const big = rows.get("big")!;
  assert.equal(big.status, "failed", JSON.stringify(big));
  assert.match(big.error ?? "", /Job "big" ran out of memory on the \w+ backend: its model has 900,240,003 parameters/);
  assert.equal(big.attempts, 1, "out of memory is not retried");
  const slow = rows.get("slow")!;
  assert.equal(slow.status, "failed");
  assert.match(slow.error ?? "", /timed out after 3 s \(the job's time limit, timeoutSeconds 3\)/);
  assert.equal(slow.attempts, 1, "a timed-out job is not retried");
  const good = [...rows.values()].filter((r) => r.id.startsWith("good-"));
  assert.equal(good.length, 10);
  assert.deepEqual(good.map((r) => [r.id, r.status]), good.map((r) => [r.id, "ok"]), JSON.stringify(good.map((r) => r.error)));
  assert.ok(lines.some((l) => /job big ran out of memory; its thread was ended/.test(l)), lines.join("\n"));
});

test("a job stopped by its time limit leaves a checkpoint in its model folder; run again with the same id it continues from there and removes it", { timeout: 120_000 }, async () => {
  const { existsSync } = await import("node:fs");
  const out = join(root, "resume");
  const long = spec("long", 0, out, { hyper: { epochs: 3000, batchSize: 32, learningRate: 0.01 }, timeoutSeconds: 4 });
  const first: number[] = [];
  const stopped = await trainMany([long], { workers: 1, onProgress: (_id, epoch) => first.push(epoch) });
  assert.equal(stopped.get("failure", 0), "timeout", String(stopped.get("error", 0)));
  const reached = first.at(-1) ?? 0;
  assert.ok(reached >= 30 && reached < 3000, `first run reached epoch ${reached}`);
  assert.ok(existsSync(join(out, "long", ".checkpoint")), "a checkpoint was left behind");
  const second: number[] = [];
  const done = await trainMany([{ ...long, timeoutSeconds: null }], { workers: 1, onProgress: (_id, epoch) => second.push(epoch) });
  assert.equal(done.get("status", 0), "ok", String(done.get("error", 0)));
  // Checkpoints come every 30 epochs (3000 / 100): the rerun starts within 30 epochs of where the first stopped.
  assert.ok(second[0]! > 1 && second[0]! > reached - 31 && second[0]! <= reached + 1, `rerun started at epoch ${second[0]}, first run reached ${reached}`);
  assert.equal(second.at(-1), 3000);
  assert.ok(!existsSync(join(out, "long", ".checkpoint")), "the checkpoint is removed once the model is saved");
});
