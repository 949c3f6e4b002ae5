import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import type { TrainingJobSpec } from "../src/parallel/job.js";
import { fileSystemIO } from "../src/parallel/model-files.js";
import { cleanupStack, spawnWorker, withTimeout, type WorkerProcess } from "./fixtures/queue-procs.js";
import {
  connectionOptions,
  parseWorkerArgs,
  queueStatus,
  startRedis,
  submitJobs,
  type JobOutcome,
  type JobProgressEvent,
} from "../src/queue/index.js";

// The producer (and the workers) accept output folders only under JOINTLY_OUT_ROOT, else the current folder.
process.env.JOINTLY_OUT_ROOT ??= tmpdir();

/** The worker CLI with this test's lock settings (the fixture allows output under the temp folder). */
function spawnQueueWorker(name: string, redisUrl: string, queueName: string): WorkerProcess {
  return spawnWorker(name, ["--redis", redisUrl, "--queue", queueName, "--lock-duration", "3000", "--stalled-interval", "1000", "--grace", "5000"]);
}

function spec(id: string, index: number, outDir: string, label = "species"): TrainingJobSpec {
  return {
    id,
    architecture: { hidden: [8], task: "classification" },
    hyper: { epochs: 60, batchSize: 16, learningRate: 0.01 },
    data: { dataset: "penguins", features: ["bill_length", "bill_depth", "flipper_length"], label, partition: { scheme: "stratified", parts: 3, index: index % 3, seed: 7 } },
    seed: 100 + index,
    outDir,
  };
}

test("queue: two worker processes, one SIGKILLed mid-job; every job reported exactly once, models load", { timeout: 120_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = await mkdtemp(join(tmpdir(), "jointly-queue-"));
  cleanup(() => rm(outDir, { recursive: true, force: true }));
  const queueName = `jointly-test-${process.pid}`;

  const victim = spawnQueueWorker("w1", redis.url, queueName);
  const survivor = spawnQueueWorker("w2", redis.url, queueName);
  cleanup(async () => {
    // JOINTLY_QUEUE_LOGS=1 shows what each worker did.
    if (process.env.JOINTLY_QUEUE_LOGS) for (const w of [victim, survivor]) console.log(`--- ${w.name}\n${w.lines.join("\n")}`);
    for (const w of [victim, survivor]) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
      await withTimeout(w.exited, 5000, `worker ${w.name} exit`).catch(() => {});
    }
  });
  await Promise.all([victim.waitFor(/ready on queue/, 45_000), survivor.waitFor(/ready on queue/, 45_000)]);

  const good = Array.from({ length: 6 }, (_, i) => spec(`m${i}`, i, outDir));
  const bad = spec("bad-label", 0, outDir, "no_such_column");
  const specs = [...good.slice(0, 3), bad, ...good.slice(3)];

  let killedJob: string | undefined;
  let killedAtEpoch = -1;
  const progress: JobProgressEvent[] = [];
  const results: JobOutcome[] = [];
  const table = await submitJobs(specs, {
    connection: redis.url,
    queueName,
    attempts: 3,
    backoff: 200,
    timeoutMs: 80_000,
    pollMs: 500,
    onProgress: (p) => {
      progress.push(p);
      // Kill w1 while it is training: it has reported an epoch and has more to go.
      if (killedJob === undefined && p.worker === "w1" && p.epoch < p.epochs) {
        killedJob = p.id;
        killedAtEpoch = p.epoch;
        victim.child.kill("SIGKILL");
      }
    },
    onResult: (o) => results.push(o),
  });

  // The kill happened mid-job, and w1 did not survive it.
  assert.ok(killedJob, `w1 never reported progress; w1 log:\n${victim.lines.join("\n")}`);
  assert.equal((await withTimeout(victim.exited, 5000, "w1 exit")).signal, "SIGKILL");
  assert.ok(!victim.lines.some((l) => l.includes(`finished job ${killedJob} `)), `w1 finished ${killedJob} before the kill (epoch ${killedAtEpoch})`);

  // Exactly one outcome per submitted id, in submission order.
  const ids = specs.map((s) => s.id);
  assert.deepEqual(table.array("id"), ids);
  assert.deepEqual(results.map((r) => r.id).sort(), [...ids].sort(), "onResult once per id");
  assert.equal(new Set(results.map((r) => r.id)).size, results.length, "no id reported twice");

  const rows = table.objects() as Record<string, unknown>[];
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  for (const s of good) {
    const row = byId.get(s.id) as Record<string, unknown>;
    assert.equal(row.status, "ok", `${s.id}: ${row.error}`);
    assert.equal(row.modelDir, join(outDir, s.id));
    assert.ok((row.accuracy as number) >= 0.5, `${s.id} accuracy ${row.accuracy}`);
  }
  // The killed job was taken back by the stalled-job check and finished by the other worker.
  const killedRow = byId.get(killedJob) as Record<string, unknown>;
  assert.equal(killedRow.status, "ok");
  assert.ok((killedRow.stalls as number) >= 1, `stalls ${killedRow.stalls}`);
  assert.ok((killedRow.attempts as number) >= 2, `attempts ${killedRow.attempts}`);
  assert.equal(killedRow.worker, "w2");
  await survivor.waitFor(new RegExp(`started job ${killedJob} `), 1000);

  // The job whose label column does not exist fails after its 3 attempts, with the error.
  const badRow = byId.get("bad-label") as Record<string, unknown>;
  assert.equal(badRow.status, "failed");
  assert.equal(badRow.attempts, 3);
  assert.match(badRow.error as string, /failed after 3 of 3 attempts/);
  assert.match(badRow.error as string, /no_such_column/);

  // Each saved model loads and predicts the 3 species.
  await initBackend({ backend: "cpu", report: false });
  for (const s of good) {
    const model = await tf.loadLayersModel(fileSystemIO(join(outDir, s.id)));
    const out = tf.tidy(() => model.predict(tf.zeros([2, 3])) as tf.Tensor);
    assert.deepEqual(out.shape, [2, 3]);
    out.dispose();
    model.dispose();
  }

  // The queue agrees, and the survivor shuts down cleanly on SIGTERM.
  assert.deepEqual(await queueStatus(redis.url, queueName), { waiting: 0, active: 0, delayed: 0, completed: 6, failed: 1 });
  assert.ok(progress.length > 0);
  survivor.child.kill("SIGTERM");
  assert.deepEqual(await withTimeout(survivor.exited, 10_000, "w2 exit after SIGTERM"), { code: 0, signal: null });
});

test("queue: resubmitting finished ids reports their stored outcome without re-running", { timeout: 60_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = await mkdtemp(join(tmpdir(), "jointly-queue-"));
  cleanup(() => rm(outDir, { recursive: true, force: true }));
  const queueName = "jointly-resubmit";
  const { startWorker } = await import("../src/queue/worker.js");
  const worker = await startWorker({ connection: redis.url, queueName, log: false, name: "inproc" });
  cleanup(() => worker.close({ release: true }));
  const specs = [spec("r0", 0, outDir), spec("r1", 1, outDir)].map((s) => ({ ...s, hyper: { ...s.hyper, epochs: 5 } }));
  const first = await submitJobs(specs, { connection: redis.url, queueName, timeoutMs: 40_000 });
  assert.deepEqual(first.array("status"), ["ok", "ok"]);
  const seen: string[] = [];
  const again = await submitJobs(specs, { connection: redis.url, queueName, timeoutMs: 5_000, onResult: (o) => seen.push(o.id) });
  assert.deepEqual(again.array("status"), ["ok", "ok"]);
  assert.deepEqual(again.array("seconds"), first.array("seconds"), "the stored results, not new runs");
  assert.deepEqual(seen.sort(), ["r0", "r1"]);
  assert.deepEqual(await queueStatus(redis.url, queueName), { waiting: 0, active: 0, delayed: 0, completed: 2, failed: 0 });
});

test("queue: a worker closed with release hands its running job back; another worker finishes it", { timeout: 60_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = await mkdtemp(join(tmpdir(), "jointly-queue-"));
  cleanup(() => rm(outDir, { recursive: true, force: true }));
  const queueName = "jointly-release";
  const { startWorker } = await import("../src/queue/worker.js");
  const first = await startWorker({ connection: redis.url, queueName, log: false, name: "first" });
  cleanup(() => first.close({ release: true }));
  let second: Awaited<ReturnType<typeof startWorker>> | undefined;
  cleanup(() => second?.close({ release: true }));
  let released = false;
  const long = { ...spec("long", 0, outDir), hyper: { epochs: 150, batchSize: 16, learningRate: 0.01 } };
  const table = await submitJobs([long], {
    connection: redis.url,
    queueName,
    timeoutMs: 45_000,
    pollMs: 500,
    onProgress: (p) => {
      if (released || p.worker !== "first") return;
      released = true;
      void (async () => {
        await first.close({ release: true });
        // Handed back, not stalled: it waits for a worker at once.
        assert.equal((await queueStatus(redis.url, queueName)).waiting, 1);
        second = await startWorker({ connection: redis.url, queueName, log: false, name: "second" });
      })();
    },
  });
  const row = table.objects()[0] as Record<string, unknown>;
  assert.equal(row.status, "ok", String(row.error));
  assert.equal(row.worker, "second");
  assert.equal(row.stalls, 0);
  assert.equal(row.attempts, 2);
});

test("queue: invalid input is refused with errors naming the value", async () => {
  const outDir = join(tmpdir(), "never-written");
  // Validation happens before any connection: this port has no Redis.
  const connection = "redis://127.0.0.1:1";
  await assert.rejects(submitJobs([spec("a", 0, outDir), spec("a", 1, outDir)], { connection }), /specs #0 and #1 share the id "a"/);
  await assert.rejects(submitJobs([{ ...spec("b", 0, outDir), hyper: { epochs: 0, batchSize: 1, learningRate: 0.1 } }], { connection }), /spec #0 \(id "b"\) is invalid: TrainingJobSpec\.hyper\.epochs/);
  await assert.rejects(submitJobs([spec("7", 0, outDir)], { connection }), /id "7"; a queue job id cannot be an integer/);
  await assert.rejects(submitJobs([spec("c", 0, outDir)], { connection, attempts: 0 }), /attempts must be an integer >= 1, but got 0/);
  await assert.rejects(submitJobs([spec("c", 0, outDir)], { connection, connectTimeoutMs: 1500 }), /submitJobs: cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(connect ECONNREFUSED/);
  assert.throws(() => connectionOptions("http://x:1"), /must start with redis:\/\/ or rediss:\/\/, but got "http:\/\/x:1"/);
  assert.deepEqual(connectionOptions("redis://:pw@10.0.0.5:6380/2"), { host: "10.0.0.5", port: 6380, password: "pw", db: 2 });
  assert.deepEqual(connectionOptions({ host: "127.0.0.1", port: 6379 }), { host: "127.0.0.1", port: 6379 });
  assert.throws(() => connectionOptions({ host: "h", port: 70000 }), /port must be an integer in \[1, 65535\], but got 70000/);
  assert.throws(() => parseWorkerArgs(["--concurrency", "two"]), /--concurrency must be a positive integer, but got "two"/);
  assert.throws(() => parseWorkerArgs(["--bogus"]), /Unknown option '--bogus'/);
  const parsed = parseWorkerArgs(["--queue", "q1", "--max-stalled", "0"], { JOINTLY_REDIS_URL: "redis://10.1.2.3:6379" });
  assert.ok(parsed !== "help");
  assert.equal(parsed.connection, "redis://10.1.2.3:6379");
  assert.equal(parsed.queueName, "q1");
  assert.equal(parsed.maxStalledCount, 0);
  await assert.rejects(startRedis({ command: "/nonexistent/redis-server" }), /install Debian's redis-server/);
});
