/**
 * The worker side of the distributed job queue: take training jobs from Redis (BullMQ), run each
 * with `runTrainingJob` on a worker thread of its own, report progress, and hand a job back
 * when shutting down early.
 *
 * Why a thread: a job that exhausts the wasm heap leaves its TensorFlow.js backend broken for every
 * later job, and a job past its time limit can only be stopped from outside. The thread is ended
 * after such a job (or any job after which the backend fails a health check) and the next job gets a
 * fresh one, so the process itself (its Redis connection, its locks) never runs training code.
 */
import type { Job, Worker } from "bullmq";
import { hostname } from "node:os";
import { confineOutDir, defaultOutRoots, modelFolder } from "../parallel/confine.js";
import { JobThread } from "../parallel/job-thread.js";
import { validateJobSpec, type TrainingJobResult, type TrainingJobSpec } from "../parallel/job.js";
import { DEFAULT_JOB_TIMEOUT_SECONDS, checkOutRoots, jobTimeLimit } from "../parallel/pool.js";
import { DEFAULT_QUEUE_NAME, connectionOptions, describeConnection, loadBullMQ, probeRedis, type QueueConnection, type RedisChecks } from "./connection.js";

/** What a worker sends with `job.updateProgress` while training. */
export interface TrainingProgress {
  /** The epoch just finished (as `fit` counts them). */
  epoch: number;
  /** Epochs in the job. */
  epochs: number;
  /** Mean training loss of that epoch. */
  loss: number;
  /** The worker's name. */
  worker: string;
}

/** Options of {@link startWorker}. */
export interface StartWorkerOptions {
  connection: QueueConnection;
  /** Default `"jointly-train"`. */
  queueName?: string;
  /** Jobs run at once in this process (default 1; they share one thread, so more rarely helps). */
  concurrency?: number;
  /** How long a job's lock lasts without renewal (default 30 000 ms); the lock is renewed every half of it while the job runs. */
  lockDuration?: number;
  /** How often this worker looks for jobs whose worker stopped renewing the lock (default 30 000 ms). */
  stalledInterval?: number;
  /** How often a job may be taken back from a dead worker before it fails for good (default 1). */
  maxStalledCount?: number;
  /** Name shown in logs and in each result's `worker` column (default `host-pid`). */
  name?: string;
  /** Where log lines go (default `console.log`); `false` for none. */
  log?: ((line: string) => void) | false;
  /** How long to keep retrying a Redis that refuses connections or does not answer at start (default 5000 ms); a wrong password fails at once. */
  connectTimeoutMs?: number;
  /** `refuse` (default): do not start on a Redis whose maxmemory-policy is not noeviction; `warn`: log it loudly and go on. */
  redisChecks?: Exclude<RedisChecks, "skip">;
  /** Minimum time between two progress reports of one job (default 250 ms; the last epoch is always sent). */
  progressEveryMs?: number;
  /**
   * Accept only jobs whose model folder resolves (after `..` and symlinks) under one of these
   * folders; others fail at once, without retries. Default: `JOINTLY_OUT_ROOT` (`:`-separated),
   * else the folder the worker was started in.
   */
  outRoots?: readonly string[];
  /**
   * Time limit of a job whose spec has no `timeoutSeconds`, in seconds (default 3600; `Infinity`
   * for none). A job past its limit is stopped (its thread ended) and fails without retries.
   */
  jobTimeoutSeconds?: number;
  /** A worker-thread script of one's own that calls `serveTrainingJobs(runner)` (default jointly's). */
  workerScript?: string | URL;
}

/** A running worker. */
export interface QueueWorker {
  name: string;
  worker: Worker<TrainingJobSpec, TrainingJobResult>;
  /** Ids of the jobs this worker is running now. */
  running(): string[];
  /**
   * Stop taking jobs and close. By default running jobs are finished first; with `release: true`
   * they are handed back to the queue at once (another worker restarts them from scratch).
   */
  close(options?: { release?: boolean }): Promise<void>;
  /** Hand running jobs back to the queue now (used by a second Ctrl-C while closing). */
  release(): void;
}

function positive(value: number | undefined, name: string, integer: boolean): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !(value > 0) || (integer && !Number.isInteger(value)) || !Number.isFinite(value)) {
    throw new Error(`startWorker: ${name} must be ${integer ? "an integer >= 1" : "a number > 0"}, but got ${JSON.stringify(value)}.`);
  }
}

const RELEASED = Symbol("released");

/**
 * Start a BullMQ worker that runs training jobs: each job's data is a {@link TrainingJobSpec}, run
 * with `runTrainingJob` on a worker thread (which saves the model to `join(outDir, id)`,
 * atomically, so a retry overwrites the same folder); its return value is the
 * {@link TrainingJobResult}. A spec that is not valid, a model folder outside `outRoots`, a job that
 * runs out of memory and one past its time limit fail at once without retries; after the last two
 * the job's thread is ended and the next job runs on a fresh one (see the module comment). Logs
 * `started job ID`, `finished job ID`, `failed job ID`. Resolves once connected to Redis.
 */
export async function startWorker(options: StartWorkerOptions): Promise<QueueWorker> {
  const { queueName = DEFAULT_QUEUE_NAME, concurrency = 1, lockDuration, stalledInterval, maxStalledCount, progressEveryMs = 250 } = options;
  positive(concurrency, "concurrency", true);
  positive(lockDuration, "lockDuration", false);
  positive(stalledInterval, "stalledInterval", false);
  if (maxStalledCount !== undefined && (!Number.isInteger(maxStalledCount) || maxStalledCount < 0)) throw new Error(`startWorker: maxStalledCount must be an integer >= 0, but got ${JSON.stringify(maxStalledCount)}.`);
  const name = options.name ?? `${hostname()}-${process.pid}`;
  const log = options.log === false ? () => {} : options.log ?? ((line: string) => console.log(line));
  const say = (line: string): void => log(`[worker ${name}] ${line}`);
  const connection = connectionOptions(options.connection);
  const running = new Set<string>();
  const outRoots = checkOutRoots(options.outRoots, "startWorker") ?? defaultOutRoots();
  const jobTimeout = options.jobTimeoutSeconds ?? DEFAULT_JOB_TIMEOUT_SECONDS;
  if (typeof jobTimeout !== "number" || !(jobTimeout > 0)) throw new Error(`startWorker: jobTimeoutSeconds must be a number of seconds > 0 (Infinity for none), but got ${JSON.stringify(jobTimeout)}.`);
  // Threads between jobs; one that ended (time limit, memory, crash) is dropped and the next job starts a fresh one.
  const idle: JobThread[] = [];
  const busy = new Set<JobThread>();
  const takeThread = (): JobThread => {
    for (let t = idle.pop(); t; t = idle.pop()) if (t.alive) return t;
    return new JobThread(options.workerScript ? { workerScript: options.workerScript } : {});
  };
  await probeRedis(options.connection, options.connectTimeoutMs ?? 5000, "startWorker", { checks: options.redisChecks ?? "refuse", warn: say });
  const { UnrecoverableError, WaitingError, Worker } = await loadBullMQ();

  const processor = async (job: Job<TrainingJobSpec, TrainingJobResult>, token?: string, signal?: AbortSignal): Promise<TrainingJobResult> => {
    const id = job.id as string;
    let spec: TrainingJobSpec;
    try {
      spec = validateJobSpec(job.data);
    } catch (err) {
      // A malformed spec fails the same way every time: do not spend retries on it.
      throw new UnrecoverableError(`job ${id}: ${(err as Error).message}`);
    }
    let modelDir: string;
    try {
      modelDir = confineOutDir(modelFolder(spec.outDir, spec.id), outRoots);
    } catch (err) {
      // Another worker would refuse it too (or write where it should not): no retries.
      throw new UnrecoverableError(`job ${id}: ${(err as Error).message}`);
    }
    const limit = jobTimeLimit(spec, jobTimeout);
    say(`started job ${id} (attempt ${job.attemptsStarted}${job.opts.attempts ? ` of ${job.opts.attempts}` : ""}, ${spec.hyper.epochs} epochs, into ${modelDir}${Number.isFinite(limit) ? `, limit ${limit} s` : ""})`);
    running.add(id);
    let lastSent = 0;
    const onProgress = (epoch: number, loss: number): void => {
      const now = Date.now();
      if (now - lastSent < progressEveryMs && epoch < spec.hyper.epochs) return;
      lastSent = now;
      const progress: TrainingProgress = { epoch, epochs: spec.hyper.epochs, loss, worker: name };
      // Progress is advisory: a lost update must not fail the job (nor crash the process).
      job.updateProgress(progress).catch(() => {});
    };
    // Resolves when the worker is asked to hand its jobs back (close({ release: true }) or a 2nd signal).
    const released = new Promise<typeof RELEASED>((resolve) => {
      if (signal?.aborted) resolve(RELEASED);
      signal?.addEventListener("abort", () => resolve(RELEASED), { once: true });
    });
    const thread = takeThread();
    busy.add(thread);
    const training = thread.run(spec, { timeoutSeconds: limit, onProgress, outRoots });
    try {
      const outcome = await Promise.race([training, released]);
      if (outcome === RELEASED) {
        // Stop the training now: its result would be dropped, and the thread is needed no more.
        await thread.close();
        await job.moveToWait(token);
        say(`released job ${id} back to the queue`);
        throw new WaitingError();
      }
      if (!outcome.ok) {
        // Out of memory and over time fail the same way on any worker: no retries. A crash or an error may pass.
        if (outcome.kind === "outOfMemory" || outcome.kind === "timeout") {
          say(`job ${id} ${outcome.kind === "timeout" ? "timed out" : "ran out of memory"}; its thread was ended, the next job gets a fresh one`);
          throw new UnrecoverableError(`job ${id}: ${outcome.error}`);
        }
        throw new Error(outcome.error);
      }
      const result = outcome.result;
      say(`finished job ${id} in ${result.seconds.toFixed(1)} s (${Object.entries(result.metrics).filter(([k]) => k !== "initHash").map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")})`);
      return result;
    } finally {
      running.delete(id);
      busy.delete(thread);
      if (thread.alive) idle.push(thread);
    }
  };

  const worker = new Worker<TrainingJobSpec, TrainingJobResult>(queueName, processor, {
    connection,
    concurrency,
    name,
    ...(lockDuration !== undefined ? { lockDuration } : {}),
    ...(stalledInterval !== undefined ? { stalledInterval } : {}),
    ...(maxStalledCount !== undefined ? { maxStalledCount } : {}),
    autorun: false,
  });
  worker.on("failed", (job, err) => {
    if (!job || err?.name === "WaitingError") return;
    const left = (job.opts.attempts ?? 1) - job.attemptsMade;
    // attemptsStarted, as the producer's attempts column counts (attemptsMade leaves out starts a dead worker ended).
    say(`failed job ${job.id} (attempt ${Math.max(job.attemptsStarted ?? 0, job.attemptsMade)} of ${job.opts.attempts ?? 1}${left > 0 && err?.name !== "UnrecoverableError" ? ", will be retried" : ", final"}): ${err?.message}`);
  });
  worker.on("stalled", (jobId) => say(`job ${jobId} stalled (its worker stopped renewing the lock); moved back to the queue`));
  worker.on("error", (err) => say(`error: ${err.message}`));

  await worker.waitUntilReady();
  void worker.run().catch((err: Error) => say(`stopped: ${err.message}`));
  say(`ready on queue "${queueName}" at ${describeConnection(options.connection)} (concurrency ${concurrency})`);

  const release = (): void => {
    if (running.size > 0) say(`releasing ${[...running].join(", ")}`);
    worker.cancelAllJobs("worker shutting down");
  };
  return {
    name,
    worker,
    running: () => [...running],
    release,
    async close({ release: now = false } = {}) {
      const closing = worker.close();
      if (now) release();
      await closing;
      // No job runs any more: end the threads (a released job's thread was ended already).
      await Promise.all([...idle.splice(0), ...busy].map((t) => t.close()));
      say("closed");
    },
  };
}
