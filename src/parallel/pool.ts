/**
 * Train many independent models on a pool of worker threads, one job per model. Each worker has its
 * own TensorFlow.js backend; a job that throws is reported and the others go on; a worker that dies
 * (process.exit, an uncaught error), runs out of memory or passes a job's time limit fails only its
 * current job and is replaced by a fresh thread.
 */
import type { ColumnTable } from "arquero";
import { availableParallelism } from "node:os";
import type { BackendName } from "../backend/init.js";
import { historyTable } from "../train/fit.js";
import { OUT_ROOT_ENV, confineOutDir, defaultOutRoots, modelFolder } from "./confine.js";
import { JobThread, workerScriptURL, type JobFailureKind, type ThreadOutcome, type WorkerEvent } from "./job-thread.js";
import type { TrainingJobResult, TrainingJobSpec } from "./job.js";

export { defaultWorkerScript, type WorkerEvent } from "./job-thread.js";

/** trainMany's time limit per job unless the options or the spec say otherwise: one hour. */
export const DEFAULT_JOB_TIMEOUT_SECONDS = 3600;

/** One row of {@link trainMany}'s table: a job's outcome, with each metric as its own column. */
export interface PoolRow {
  id: string;
  /** The job's partition index (null when the spec did not say). */
  partition: number | null;
  seed: number | null;
  status: "ok" | "failed";
  /** Why the job failed (null when it succeeded). */
  error: string | null;
  /** What kind of failure: the job's own error, out of memory, its time limit, or its thread died (null when ok). */
  failure: JobFailureKind | null;
  seconds: number;
  trainRows: number | null;
  testRows: number | null;
  modelDir: string | null;
  backend: string | null;
  /** Thread id of the worker that ran the job. */
  worker: number;
  [metric: string]: string | number | null;
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
  /**
   * Stop a job (and replace its worker) after this many seconds, unless its spec has a
   * `timeoutSeconds` of its own; default {@link DEFAULT_JOB_TIMEOUT_SECONDS} (1 hour); `Infinity`
   * for no limit.
   */
  timeoutSeconds?: number;
  /**
   * Accept only model folders that resolve (after `..` and symlinks) under one of these folders;
   * other jobs fail with an error naming the folder. Default: the folders in `JOINTLY_OUT_ROOT`
   * when it is set, else no restriction (the caller wrote the specs; the queue worker, which takes
   * specs from others, confines to the folder it was started in by default).
   */
  outRoots?: readonly string[];
  /**
   * A worker script of your own (path or file URL) that calls `serveTrainingJobs(runner)`; default
   * jointly's worker. A `.ts` script is started with `--import tsx`.
   */
  workerScript?: string | URL;
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
    failure: null,
    seconds: result.seconds,
    trainRows: result.trainRows,
    testRows: result.testRows,
    modelDir: result.modelDir,
    backend: result.backend,
    worker,
    ...result.metrics,
  };
}

function failedRow(spec: unknown, index: number, failure: JobFailureKind, error: string, seconds: number, worker: number): PoolRow {
  return { ...describeSpec(spec, index), status: "failed", error, failure, seconds, trainRows: null, testRows: null, modelDir: null, backend: null, worker };
}

/** A job's time limit: its spec's `timeoutSeconds` (null meaning none), else the pool's. */
export function jobTimeLimit(spec: unknown, fallback: number): number {
  const own = (spec as Partial<TrainingJobSpec> | null)?.timeoutSeconds;
  if (own === null) return Infinity;
  return typeof own === "number" && own > 0 ? own : fallback;
}

/** The output roots a worker was given, checked; `undefined` stays undefined. */
export function checkOutRoots(roots: readonly string[] | undefined, who: string): string[] | undefined {
  if (roots === undefined) return undefined;
  if (!Array.isArray(roots) || roots.length === 0 || roots.some((r) => typeof r !== "string" || r.trim() === "")) {
    throw new Error(`${who}: outRoots must be a non-empty array of folder paths, but got ${JSON.stringify(roots)}.`);
  }
  return [...roots];
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
  const timeout = options.timeoutSeconds ?? DEFAULT_JOB_TIMEOUT_SECONDS;
  if (typeof timeout !== "number" || !(timeout > 0)) throw new Error(`trainMany: timeoutSeconds must be a positive number of seconds (Infinity for no limit), but got ${timeout}.`);
  const outRoots = checkOutRoots(options.outRoots, "trainMany") ?? (process.env[OUT_ROOT_ENV] ? defaultOutRoots() : undefined);
  if (specs.length === 0) return historyTable([]);
  const workerScript = workerScriptURL(options.workerScript);

  const rows: PoolRow[] = new Array(specs.length);
  const report = (index: number, row: PoolRow): void => {
    rows[index] = row;
    try {
      options.onResult?.(row);
    } catch {
      // A throwing callback must not lose the other jobs' results.
    }
  };
  let next = 0;
  // One lane per worker: it takes the next job, and starts a fresh thread whenever its last one ended.
  const lane = async (): Promise<void> => {
    let thread: JobThread | undefined;
    try {
      while (next < specs.length) {
        const index = next++;
        const spec = specs[index] as TrainingJobSpec;
        // Refused in the main thread, so a custom runner is confined too and no thread is spent on it.
        const refused = outRoots && typeof spec?.outDir === "string" && typeof spec?.id === "string" ? confinement(spec, outRoots) : undefined;
        if (refused) {
          report(index, failedRow(spec, index, "error", refused, 0, 0));
          continue;
        }
        if (!thread?.alive) thread = new JobThread({ workerScript, ...(options.backend ? { backend: options.backend } : {}), ...(options.onWorker ? { onWorker: options.onWorker } : {}) });
        const outcome: ThreadOutcome = await thread.run(spec, {
          timeoutSeconds: jobTimeLimit(spec, timeout),
          onProgress: (epoch, loss) => options.onProgress?.(String(spec.id), epoch, loss),
          ...(outRoots ? { outRoots } : {}),
        });
        report(index, outcome.ok ? okRow(outcome.result, outcome.threadId) : failedRow(spec, index, outcome.kind, outcome.error, outcome.seconds, outcome.threadId));
      }
    } finally {
      await thread?.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(requested, specs.length) }, lane));
  return historyTable(rows);
}

/** Why a job's model folder is refused by the output roots, or undefined when it is inside them. */
function confinement(spec: TrainingJobSpec, roots: readonly string[]): string | undefined {
  try {
    confineOutDir(modelFolder(spec.outDir, spec.id), roots);
    return undefined;
  } catch (err) {
    return `Job ${JSON.stringify(spec.id)}: ${(err as Error).message}`;
  }
}
