/**
 * Train many independent models on a pool of worker threads, one job per model. Each worker has its
 * own TensorFlow.js backend; a job that throws is reported and the others go on; a worker that dies
 * (process.exit, an uncaught error, a timeout) fails only its current job and is replaced.
 */
import type { ColumnTable } from "arquero";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { BackendName } from "../backend/init.js";
import { historyTable } from "../train/fit.js";
import type { TrainingJobResult, TrainingJobSpec } from "./job.js";
import type { FromWorker, PoolWorkerData, ToWorker } from "./worker.js";

/** One row of {@link trainMany}'s table: a job's outcome, with each metric as its own column. */
export interface PoolRow {
  id: string;
  /** The job's partition index (null when the spec did not say). */
  partition: number | null;
  seed: number | null;
  status: "ok" | "failed";
  /** Why the job failed (null when it succeeded). */
  error: string | null;
  seconds: number;
  trainRows: number | null;
  testRows: number | null;
  modelDir: string | null;
  backend: string | null;
  /** Thread id of the worker that ran the job. */
  worker: number;
  [metric: string]: string | number | null;
}

/** A worker's life, for logging and for checking that none is left running. */
export interface WorkerEvent {
  type: "start" | "exit";
  threadId: number;
  /** Exit code, on `exit` (Node reports 1 for any worker ended with terminate()). */
  code?: number;
  /** On `exit`: true when the pool ended the worker itself (its work was done), false when it died or timed out. */
  requested?: boolean;
}

/** Options of {@link trainMany}. */
export interface TrainManyOptions {
  /** Worker threads (default `os.availableParallelism()`, never more than there are jobs). */
  workers?: number;
  /** Each epoch's mean training loss, by job id. */
  onProgress?: (id: string, epoch: number, loss: number) => void;
  /** Each job's row, as soon as it is known. */
  onResult?: (row: PoolRow) => void;
  /** Worker starts and exits. */
  onWorker?: (event: WorkerEvent) => void;
  /** Force this backend in every worker (default: the fastest that loads). */
  backend?: BackendName;
  /** Stop a job (and replace its worker) after this many seconds; default no limit. */
  timeoutSeconds?: number;
  /**
   * A worker script of your own (path or file URL) that calls `serveTrainingJobs(runner)`; default
   * jointly's worker. A `.ts` script is started with `--import tsx`.
   */
  workerScript?: string | URL;
}

/** jointly's worker script next to this module: `worker.js` when compiled, `worker.ts` under tsx. */
export function defaultWorkerScript(): URL {
  const js = new URL("./worker.js", import.meta.url);
  if (existsSync(fileURLToPath(js))) return js;
  const ts = new URL("./worker.ts", import.meta.url);
  if (existsSync(fileURLToPath(ts))) return ts;
  throw new Error(`trainMany: no worker script next to ${fileURLToPath(import.meta.url)} (looked for worker.js and worker.ts).`);
}

/**
 * JavaScript that starts a `.ts` worker script. On Node 20 the loader that `--import tsx` registers
 * does not reach a worker's modules (tried: "Unknown file extension .ts"), and a failed import is
 * cached, so the entry registers tsx in the worker itself (its ESM API) before importing the script.
 */
function tsBootstrap(script: URL): string {
  let api: string;
  try {
    api = import.meta.resolve("tsx/esm/api");
  } catch (err) {
    throw new Error(`trainMany: the worker script ${fileURLToPath(script)} is TypeScript, which needs tsx, but tsx cannot be found: ${(err as Error).message}`);
  }
  return `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(script.href)}); });`;
}

function scriptURL(script: string | URL): URL {
  const url = script instanceof URL ? script : /^file:/.test(script) ? new URL(script) : pathToFileURL(script);
  if (!existsSync(fileURLToPath(url))) throw new Error(`trainMany: the worker script ${fileURLToPath(url)} does not exist.`);
  return url;
}

/** The fields of a spec worth reporting even when the spec is malformed. */
function describeSpec(spec: unknown, index: number): { id: string; partition: number | null; seed: number | null } {
  const s = (typeof spec === "object" && spec !== null ? spec : {}) as Partial<TrainingJobSpec>;
  const idx = s.data?.partition?.index;
  return {
    id: typeof s.id === "string" && s.id !== "" ? s.id : `#${index}`,
    partition: typeof idx === "number" ? idx : null,
    seed: typeof s.seed === "number" ? s.seed : null,
  };
}

function okRow(result: TrainingJobResult, worker: number): PoolRow {
  return {
    id: result.id,
    partition: result.partition,
    seed: result.seed,
    status: "ok",
    error: null,
    seconds: result.seconds,
    trainRows: result.trainRows,
    testRows: result.testRows,
    modelDir: result.modelDir,
    backend: result.backend,
    worker,
    ...result.metrics,
  };
}

function failedRow(spec: unknown, index: number, error: string, seconds: number, worker: number): PoolRow {
  return { ...describeSpec(spec, index), status: "failed", error, seconds, trainRows: null, testRows: null, modelDir: null, backend: null, worker };
}

/**
 * Run training jobs on a pool of `worker_threads` and return an arquero table with one row per job,
 * in the order given: id, partition, seed, status ("ok" or "failed"), error, seconds, rows, model
 * folder, backend, worker, and each metric (accuracy, r2, mae, trainLoss, testLoss, initHash).
 * Jobs are validated in their worker; a failing or crashing job does not stop the others. Every
 * worker is terminated before this resolves.
 *
 * @example
 * const table = await trainMany(specs, { workers: 2, onResult: (r) => console.log(r.id, r.status) });
 */
export async function trainMany(specs: readonly TrainingJobSpec[], options: TrainManyOptions = {}): Promise<ColumnTable> {
  if (!Array.isArray(specs)) throw new Error(`trainMany: specs must be an array of job specs, but got ${String(specs)}.`);
  const seen = new Map<string, number>();
  specs.forEach((s, i) => {
    const { id } = describeSpec(s, i);
    // Two jobs with one id would save into the same folder.
    if (seen.has(id)) throw new Error(`trainMany: jobs ${seen.get(id)} and ${i} share the id "${id}"; ids must be unique (each names its model folder).`);
    seen.set(id, i);
  });
  const requested = options.workers ?? availableParallelism();
  if (!Number.isInteger(requested) || requested < 1) throw new Error(`trainMany: workers must be a positive integer, but got ${requested}.`);
  const timeout = options.timeoutSeconds;
  if (timeout !== undefined && !(timeout > 0)) throw new Error(`trainMany: timeoutSeconds must be a positive number, but got ${timeout}.`);
  if (specs.length === 0) return historyTable([]);
  const script = options.workerScript ? scriptURL(options.workerScript) : defaultWorkerScript();
  // A TypeScript worker needs tsx's loader in its own thread (see tsBootstrap); compiled .js needs nothing.
  const typescript = /\.[mc]?ts$/.test(script.pathname);
  const workerData: PoolWorkerData = { entry: script.href, ...(options.backend ? { backend: options.backend } : {}) };

  const rows: (PoolRow | undefined)[] = new Array(specs.length);
  let next = 0;
  let remaining = specs.length;
  const live = new Set<Worker>();

  // Workers the pool ends itself once every job is done, so their exit is not reported as a death.
  const stopping = new Set<Worker>();
  return new Promise<ColumnTable>((resolve) => {
    const finish = (index: number, row: PoolRow) => {
      if (rows[index]) return;
      rows[index] = row;
      remaining--;
      try {
        options.onResult?.(row);
      } catch {
        // A throwing callback must not lose the other jobs' results.
      }
      if (remaining === 0) {
        void Promise.all([...live].map((w) => (stopping.add(w), w.terminate()))).then(() => resolve(historyTable(rows as PoolRow[])));
      }
    };

    const spawn = () => {
      // execArgv [] so workers do not inherit the parent's `--import tsx`, which fails there on Node 20.
      const worker = typescript
        ? new Worker(tsBootstrap(script), { eval: true, workerData, execArgv: [] })
        : new Worker(script, { workerData, execArgv: [] });
      const threadId = worker.threadId;
      live.add(worker);
      options.onWorker?.({ type: "start", threadId });
      let current: { index: number; started: number; timer?: NodeJS.Timeout } | undefined;
      let crash: string | undefined;
      let ended = false;

      const take = () => {
        if (next >= specs.length) {
          // Nothing left to hand out: this worker's part is done.
          ended = true;
          void worker.terminate();
          return;
        }
        const index = next++;
        current = { index, started: performance.now() };
        if (timeout !== undefined) {
          current.timer = setTimeout(() => {
            crash = `timed out after ${timeout} s`;
            void worker.terminate();
          }, timeout * 1000);
        }
        worker.postMessage({ type: "run", spec: specs[index] as TrainingJobSpec } satisfies ToWorker);
      };

      const settle = (row: (index: number, seconds: number) => PoolRow) => {
        if (!current) return;
        const { index, started, timer } = current;
        clearTimeout(timer);
        current = undefined;
        finish(index, row(index, (performance.now() - started) / 1000));
      };

      worker.on("message", (msg: FromWorker) => {
        if (msg.type === "progress") options.onProgress?.(msg.id, msg.epoch, msg.loss);
        else if (msg.type === "done") {
          settle(() => okRow(msg.result, threadId));
          take();
        } else if (msg.type === "failed") {
          settle((i, s) => failedRow(specs[i], i, msg.error, s, threadId));
          take();
        }
      });
      worker.on("error", (err) => {
        crash = `the worker crashed: ${err instanceof Error ? err.message : String(err)}`;
      });
      worker.on("exit", (code) => {
        live.delete(worker);
        options.onWorker?.({ type: "exit", threadId, code, requested: (ended || stopping.has(worker)) && crash === undefined });
        if (current) {
          const why = crash ?? `the worker exited with code ${code} during the job`;
          settle((i, s) => failedRow(specs[i], i, why, s, threadId));
          // Replace the lost worker while jobs are waiting.
          if (next < specs.length) spawn();
        }
      });
      take();
    };

    const count = Math.min(requested, specs.length);
    for (let i = 0; i < count; i++) spawn();
  });
}
