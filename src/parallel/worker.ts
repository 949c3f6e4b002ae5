/**
 * The worker-thread side of {@link trainMany}: each worker brings up its own TensorFlow.js backend,
 * then runs the jobs the pool sends it, one at a time, and reports progress, results and errors.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { initBackend, type BackendName } from "../backend/init.js";
import { runTrainingJob, type TrainingJobResult, type TrainingJobSpec } from "./job.js";

/** What the pool passes to a new worker. */
export interface PoolWorkerData {
  /** URL of the script the worker was started with: this module serves jobs only when it is the entry. */
  entry: string;
  /** Force a backend in every worker (default: the fastest that loads). */
  backend?: BackendName;
}

/** Messages from the pool to a worker. */
export type ToWorker = { type: "run"; spec: TrainingJobSpec };

/** Messages from a worker to the pool. */
export type FromWorker =
  | { type: "progress"; id: string; epoch: number; loss: number }
  | { type: "done"; result: TrainingJobResult }
  | { type: "failed"; id: string; error: string };

/** Runs one job; the default is {@link runTrainingJob}. */
export type JobRunner = (spec: TrainingJobSpec, onProgress: (epoch: number, loss: number) => void) => Promise<TrainingJobResult>;

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
      const result = await run(msg.spec, (epoch, loss) => port.postMessage({ type: "progress", id, epoch, loss } satisfies FromWorker));
      port.postMessage({ type: "done", result } satisfies FromWorker);
    } catch (err) {
      port.postMessage({ type: "failed", id, error: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
    }
  });
}

// Started by the pool with this file as its script: serve the stock runner.
if (!isMainThread && (workerData as PoolWorkerData | undefined)?.entry === import.meta.url) serveTrainingJobs();
