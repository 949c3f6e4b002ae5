/**
 * The worker-thread side of {@link trainMany}: each worker brings up its own TensorFlow.js backend,
 * then runs the jobs the pool sends it, one at a time, and reports progress, results and errors.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { initBackend, type BackendName } from "../backend/init.js";
import * as tf from "@tensorflow/tfjs";
import { backendHealthy, isOutOfMemory } from "./health.js";
import { runTrainingJob, type RunJobOptions, type TrainingJobResult, type TrainingJobSpec } from "./job.js";

/** What the pool passes to a new worker. */
export interface PoolWorkerData {
  /** URL of the script the worker was started with: this module serves jobs only when it is the entry. */
  entry: string;
  /** Force a backend in every worker (default: the fastest that loads). */
  backend?: BackendName;
}

/** Messages from the pool to a worker. */
export type ToWorker = { type: "run"; spec: TrainingJobSpec; outRoots?: string[] };

/** Messages from a worker to the pool. */
export type FromWorker =
  | { type: "progress"; id: string; epoch: number; loss: number }
  | { type: "done"; result: TrainingJobResult }
  /**
   * `kind` says whether memory ran out; `rebuild` that this thread's backend is no longer usable
   * (out of memory, or a health check failed after the error), so the owner ends the thread.
   */
  | { type: "failed"; id: string; error: string; kind?: "error" | "outOfMemory"; rebuild?: boolean };

/** Runs one job; the default is {@link runTrainingJob}. `options` carries the owner's output roots. */
export type JobRunner = (spec: TrainingJobSpec, onProgress: (epoch: number, loss: number) => void, options: RunJobOptions) => Promise<TrainingJobResult>;

/**
 * Serve jobs from the pool on this worker thread. A custom worker script (the pool's `workerScript`
 * option) calls this with its own runner, e.g. to wrap {@link runTrainingJob} with setup of its own.
 */
export function serveTrainingJobs(run: JobRunner = runTrainingJob): void {
  const port = parentPort;
  if (isMainThread || !port) throw new Error("serveTrainingJobs: must be called on a worker thread started by trainMany.");
  const data = workerData as PoolWorkerData | undefined;
  // Each worker has its own TensorFlow.js engine: bring up its backend once, before the first job.
  const ready = initBackend({ report: false, ...(data?.backend ? { backend: data.backend } : {}) });
  // A backend that fails to load fails each job (below), not the thread as an unhandled rejection.
  ready.catch(() => undefined);
  port.on("message", async (msg: ToWorker) => {
    if (msg?.type !== "run") return;
    const id = String(msg.spec?.id);
    try {
      await ready;
      const result = await run(msg.spec, (epoch, loss) => port.postMessage({ type: "progress", id, epoch, loss } satisfies FromWorker), msg.outRoots ? { outRoots: msg.outRoots } : {});
      port.postMessage({ type: "done", result } satisfies FromWorker);
    } catch (err) {
      let error = err instanceof Error ? err.message : String(err);
      const oom = isOutOfMemory(err);
      // A custom runner's raw wasm error still says what happened and to which job.
      if (oom && !/out of memory/i.test(error)) error = `Job ${JSON.stringify(id)} ran out of memory on the ${tf.getBackend()} backend: ${error}`;
      // After running out of memory, or when the backend stopped computing, the next job would fail here too.
      const rebuild = oom || !backendHealthy();
      port.postMessage({ type: "failed", id, error, kind: oom ? "outOfMemory" : "error", ...(rebuild ? { rebuild } : {}) } satisfies FromWorker);
    }
  });
}

// Started by the pool with this file as its script: serve the stock runner.
if (!isMainThread && (workerData as PoolWorkerData | undefined)?.entry === import.meta.url) serveTrainingJobs();
