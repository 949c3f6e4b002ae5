import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isMainThread } from "node:worker_threads";
import { runTrainingJob, validateJobSpec, type TrainingJobSpec } from "../src/parallel/job.js";
import { trainMany, type PoolRow, type WorkerEvent } from "../src/parallel/pool.js";
import { serveTrainingJobs } from "../src/parallel/worker.js";

// This file doubles as a custom worker script: jobs named "crash-*" kill their worker thread. As a
// worker it must not load node:test (which would catch the simulated uncaught error), so the test
// API is imported on the main thread only, below.
if (!isMainThread) {
  serveTrainingJobs(async (spec, onProgress) => {
    if (spec.id === "crash-exit") process.exit(3);
    if (spec.id === "hang") return new Promise(() => setInterval(() => {}, 1000));
    if (spec.id === "crash-throw") {
      setTimeout(() => {
        throw new Error("uncaught in the worker (simulated)");
      }, 0);
      return new Promise(() => {});
    }
    return runTrainingJob(spec, onProgress);
  });
}

function spec(outDir: string, index: number, patch: Partial<TrainingJobSpec> & { label?: string } = {}): TrainingJobSpec {
  const { label = "species", ...rest } = patch;
  return {
    id: `penguins-${index}`,
    architecture: { hidden: [6], task: "classification" },
    hyper: { epochs: 3, batchSize: 32, learningRate: 0.03 },
    data: {
      dataset: "penguins",
      features: ["bill_length", "bill_depth", "flipper_length"],
      label,
      partition: { scheme: "stratified", parts: 4, index: index % 4, seed: 11 },
    },
    seed: 100 + index,
    outDir,
    ...rest,
  };
}

if (isMainThread) {
  const { test } = await import("node:test");
  const root = mkdtempSync(join(tmpdir(), "jointly-pool-"));
  test.after(() => rmSync(root, { recursive: true, force: true }));

  /** Collects worker starts and exits; checks at most `max` run at once. */
  function workerLog(max: number) {
    const events: WorkerEvent[] = [];
    let alive = 0;
    return {
      events,
      onWorker: (e: WorkerEvent) => {
        events.push(e);
        alive += e.type === "start" ? 1 : -1;
        assert.ok(alive <= max, `${alive} workers alive, more than ${max}`);
      },
      assertAllExited() {
        const started = events.filter((e) => e.type === "start").map((e) => e.threadId).sort();
        const exited = events.filter((e) => e.type === "exit").map((e) => e.threadId).sort();
        assert.deepEqual(exited, started, "every worker thread the pool started has exited");
      },
    };
  }

  test("4 penguins jobs on 2 workers: 4 rows, distinct initial weights, disjoint training rows, saved models", async () => {
    const out = join(root, "fleet");
    const log = workerLog(2);
    const progress = new Map<string, number>();
    const seen: PoolRow[] = [];
    const table = await trainMany([0, 1, 2, 3].map((i) => spec(out, i)), {
      workers: 2,
      onWorker: log.onWorker,
      onProgress: (id, epoch) => progress.set(id, epoch),
      onResult: (r) => seen.push(r),
    });
    log.assertAllExited();
    // A clean run: every exit is one the pool asked for.
    assert.deepEqual(log.events.filter((e) => e.type === "exit").map((e) => e.requested), [true, true]);
    assert.equal(table.numRows(), 4);
    const rows = table.objects() as PoolRow[];
    assert.deepEqual(rows.map((r) => r.status), ["ok", "ok", "ok", "ok"], JSON.stringify(rows.map((r) => r.error)));
    assert.deepEqual(rows.map((r) => r.partition), [0, 1, 2, 3]);
    assert.equal(seen.length, 4);
    assert.deepEqual([...progress.values()], [3, 3, 3, 3]);
    // Distinct seeds give distinct first-layer kernels at initialisation.
    const hashes = rows.map((r) => r.initHash);
    assert.equal(new Set(hashes).size, 4, `init hashes ${hashes}`);
    assert.ok(rows.every((r) => typeof r.backend === "string" && r.backend !== ""), `backends ${rows.map((r) => r.backend)}`);
    assert.equal(new Set(rows.map((r) => r.worker)).size, 2, "both workers took jobs");
    // Each saved model records the rows it trained on: disjoint across partitions.
    const trained = new Map<number, string>();
    for (const r of rows) {
      const meta = JSON.parse(readFileSync(join(r.modelDir as string, "model.json"), "utf8")).userDefinedMetadata.jointly;
      assert.equal(meta.rowIds.length, r.trainRows);
      for (const id of meta.rowIds as number[]) {
        assert.ok(!trained.has(id), `row ${id} trained by ${trained.get(id)} and ${r.id}`);
        trained.set(id, r.id);
      }
    }
  });

  test("a throwing job and crashing workers are reported failed with their partition; the rest succeed; crashed workers are replaced", async () => {
    const out = join(root, "crashes");
    const log = workerLog(2);
    const specs = [
      spec(out, 0),
      spec(out, 1, { id: "bad-label", label: "beak_colour" }),
      spec(out, 2, { id: "crash-exit" }),
      spec(out, 3, { id: "crash-throw" }),
      spec(out, 5),
      spec(out, 6),
    ];
    const table = await trainMany(specs, {
      workers: 2,
      onWorker: log.onWorker,
      workerScript: new URL(import.meta.url),
      // A safety net: a crash the pool failed to notice becomes a failed row, not a hung test.
      timeoutSeconds: 60,
    });
    log.assertAllExited();
    const rows = table.objects() as PoolRow[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.equal(rows.length, 6);
    for (const id of ["penguins-0", "penguins-5", "penguins-6"]) assert.equal(byId.get(id)?.status, "ok", `${id}: ${byId.get(id)?.error}`);
    const bad = byId.get("bad-label")!;
    assert.equal(bad.status, "failed");
    assert.equal(bad.partition, 1);
    assert.match(bad.error as string, /data.label names the column "beak_colour"/);
    assert.equal(byId.get("crash-exit")!.partition, 2);
    assert.match(byId.get("crash-exit")!.error as string, /exited with code 3/);
    assert.equal(byId.get("crash-throw")!.partition, 3);
    assert.match(byId.get("crash-throw")!.error as string, /crashed: uncaught in the worker \(simulated\)/);
    // The worker lost with jobs still queued was replaced (the last crash left nothing to replace it for).
    const starts = log.events.filter((e) => e.type === "start").length;
    assert.ok(starts >= 3, `${starts} workers started; expected the 2 first ones and at least 1 replacement`);
    const crashedThreads = [byId.get("crash-exit")!.worker, byId.get("crash-throw")!.worker];
    assert.notEqual(crashedThreads[0], crashedThreads[1], "the job after the first crash ran on a new thread");
    // The two crashed workers' exits are reported as deaths, not as exits the pool asked for.
    const deaths = log.events.filter((e) => e.type === "exit" && !e.requested).map((e) => e.threadId).sort();
    assert.deepEqual(deaths, [...crashedThreads].sort());
  });

  test("a job over timeoutSeconds is stopped and reported; its worker is replaced for the next job", async () => {
    const out = join(root, "timeout");
    const log = workerLog(1);
    const table = await trainMany([spec(out, 0, { id: "hang" }), spec(out, 1)], {
      workers: 1, timeoutSeconds: 4, onWorker: log.onWorker, workerScript: new URL(import.meta.url),
    });
    log.assertAllExited();
    const rows = table.objects() as PoolRow[];
    assert.deepEqual(rows.map((r) => [r.id, r.status]), [["hang", "failed"], ["penguins-1", "ok"]]);
    assert.match(rows[0]!.error as string, /timed out after 4 s/);
  });

  test("runTrainingJob on a regression task reports r2 and mae in label units and saves a loadable model", async () => {
    const { initBackend } = await import("../src/backend/init.js");
    const tf = await import("@tensorflow/tfjs");
    const { fileSystemIO } = await import("../src/parallel/model-files.js");
    await initBackend({ report: false });
    const epochs: number[] = [];
    const result = await runTrainingJob({
      id: "cars-mpg",
      architecture: { hidden: [8], activation: "tanh", task: "regression" },
      hyper: { epochs: 30, batchSize: 32, learningRate: 0.03 },
      data: { dataset: "cars", features: ["weight", "horsepower"], label: "mpg", partition: { scheme: "shuffled", parts: 2, index: 1, seed: 4 }, testFraction: 0.25 },
      seed: 1,
      outDir: join(root, "single"),
    }, (epoch) => epochs.push(epoch));
    assert.equal(epochs.length, 30);
    assert.equal(result.trainRows + result.testRows, 196);
    assert.ok(result.metrics.r2! > 0.5, `r2 ${result.metrics.r2}`);
    assert.ok(result.metrics.mae! > 0.5 && result.metrics.mae! < 6, `mae ${result.metrics.mae} mpg`);
    const model = await tf.loadLayersModel(fileSystemIO(result.modelDir));
    assert.deepEqual(model.outputs[0]!.shape, [null, 1]);
    model.dispose();
  });

  test("pool options are checked: duplicate ids, bad worker count, missing script", async () => {
    const out = join(root, "opts");
    await assert.rejects(trainMany([spec(out, 0), spec(out, 0)]), /jobs 0 and 1 share the id "penguins-0"/);
    await assert.rejects(trainMany([spec(out, 0)], { workers: 0 }), /workers must be a positive integer, but got 0/);
    await assert.rejects(trainMany([spec(out, 0)], { workerScript: "/nope/worker.js" }), /worker script \/nope\/worker.js does not exist/);
    assert.equal((await trainMany([])).numRows(), 0);
  });

  test("validateJobSpec names the field and the value", () => {
    const good = spec("/tmp/x", 0);
    assert.deepEqual(validateJobSpec(good), good);
    const bad = (patch: (s: any) => void) => {
      const s = JSON.parse(JSON.stringify(good));
      patch(s);
      return () => validateJobSpec(s);
    };
    assert.throws(bad((s) => (s.hyper.epochs = 0)), /TrainingJobSpec.hyper.epochs must be an integer >= 1, but got 0/);
    assert.throws(bad((s) => (s.hyper.learningRate = -1)), /hyper.learningRate must be a finite number > 0, but got -1/);
    assert.throws(bad((s) => (s.data.dataset = "iris")), /data.dataset must be one of "penguins", "cars", but got "iris"/);
    assert.throws(bad((s) => (s.data.partition.index = 4)), /data.partition.index must be an integer in \[0, 3\] \(parts is 4\), but got 4/);
    assert.throws(bad((s) => (s.architecture.hidden = [8, "x"])), /architecture.hidden\[1\] must be an integer >= 1, but got "x"/);
    assert.throws(bad((s) => (s.id = "a/b")), /TrainingJobSpec.id must be a name without slashes/);
    assert.throws(bad((s) => delete s.outDir), /outDir must be a non-empty string, but got undefined/);
    assert.throws(bad((s) => (s.architecture.task = "regression")), /data.partition.scheme must be "contiguous" or "shuffled" for a regression task/);
    assert.throws(() => validateJobSpec(null), /TrainingJobSpec.\(spec\) must be an object, but got null/);
  });
}
