/**
 * The producer side of the distributed job queue: enqueue training jobs on Redis (BullMQ), follow
 * them as workers on any machine run them, and collect one outcome per job.
 */
import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import type { Job, Queue, QueueEvents, JobsOptions } from "bullmq";
import { confineOutDir, defaultOutRoots } from "../parallel/confine.js";
import { validateJobSpec, type TrainingJobResult, type TrainingJobSpec } from "../parallel/job.js";
import { DEFAULT_QUEUE_NAME, connectionOptions, describeConnection, explainRedisError, loadBullMQ, probeRedis, type QueueConnection, type RedisChecks } from "./connection.js";
import type { TrainingProgress } from "./worker.js";

/** How a failed attempt is retried: a fixed delay in ms, or BullMQ's fixed/exponential backoff. */
export type RetryBackoff = number | { type: "fixed" | "exponential"; delay: number };

/** A progress report of one job, as its worker sent it. */
export interface JobProgressEvent extends TrainingProgress {
  id: string;
}

/** The final outcome of one submitted job; each submitted id gets exactly one. */
export interface JobOutcome {
  id: string;
  /** `ok`: trained and saved; `failed`: out of attempts (or stalled too often); `timeout`: not finished within `timeoutMs`. */
  status: "ok" | "failed" | "timeout";
  /** How many times a worker started the job (a job whose worker died counts that start too). */
  attempts: number;
  /** How many times the job was taken back from a worker that stopped renewing its lock (died or hung). */
  stalls: number;
  /** The final error, or for a timeout the state the job was still in; null when ok. */
  error: string | null;
  /** The name of the worker that finished (or last ran) the job. */
  worker: string | null;
  /** The job's result when ok. */
  result: TrainingJobResult | null;
}

/** Options of {@link submitJobs}. */
export interface SubmitJobsOptions {
  /** The Redis every worker also uses. */
  connection: QueueConnection;
  /** Default `"jointly-train"`. */
  queueName?: string;
  /** Attempts per job before it is reported failed (default 3); a worker's death does not use one up, see `maxStalledCount` on the worker. */
  attempts?: number;
  /** Delay before a retry (default `{ type: "exponential", delay: 1000 }`). */
  backoff?: RetryBackoff;
  /** Called with each progress report (about one per epoch, throttled by the worker). */
  onProgress?: (event: JobProgressEvent) => void;
  /** Called once per job as soon as its outcome is known. */
  onResult?: (outcome: JobOutcome, counts: { done: number; total: number }) => void;
  /** Stop waiting after this long; unfinished jobs are reported as `timeout` (they stay queued). Default: no limit. */
  timeoutMs?: number;
  /** Re-run jobs whose id already finished in this queue instead of reporting their stored outcome (default false). */
  rerunFinished?: boolean;
  /** How often job states are also polled, in case an event was missed (default 2000 ms). */
  pollMs?: number;
  /** How long to keep retrying a Redis that refuses connections or does not answer at start before giving up (default 5000 ms); a wrong password fails at once. */
  connectTimeoutMs?: number;
  /**
   * How long Redis may stay away (or keep refusing writes because its memory is full) during the
   * run before submitJobs gives up with an error naming it (default 60 000 ms). Shorter outages
   * (a restart) are ridden out: with persistence on, nothing is lost. The jobs stay queued either way.
   */
  redisOutageMs?: number;
  /** `refuse` (default): do not start on a Redis whose maxmemory-policy is not noeviction; `warn`: warn loudly and go on. */
  redisChecks?: Exclude<RedisChecks, "skip">;
  /** Where warnings about the server's settings go (default `console.warn`). */
  onWarning?: (line: string) => void;
  /**
   * The folders every spec's `outDir` must lie in (after `..` and symlinks), checked here before
   * anything is enqueued, as the workers check on their side (default: `JOINTLY_OUT_ROOT`, else the
   * current folder); `false` skips the check (a producer that does not see the workers' storage).
   */
  outRoots?: readonly string[] | false;
}

const FINAL_STATES = new Set(["completed", "failed"]);

function positiveInt(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new Error(`submitJobs: ${name} must be an integer >= 1, but got ${JSON.stringify(value)}.`);
  return value;
}

function checkBackoff(backoff: RetryBackoff): JobsOptions["backoff"] {
  if (typeof backoff === "number") {
    if (!Number.isFinite(backoff) || backoff < 0) throw new Error(`submitJobs: backoff must be a delay in ms >= 0 or { type, delay }, but got ${JSON.stringify(backoff)}.`);
    return { type: "fixed", delay: backoff };
  }
  if (backoff === null || typeof backoff !== "object" || !["fixed", "exponential"].includes(backoff.type) || !(backoff.delay >= 0)) {
    throw new Error(`submitJobs: backoff must be { type: "fixed" | "exponential", delay: ms >= 0 }, but got ${JSON.stringify(backoff)}.`);
  }
  return { type: backoff.type, delay: backoff.delay };
}

/** Validate every spec up front: nothing is enqueued unless all are valid and their ids distinct. */
function validateAll(specs: readonly unknown[]): TrainingJobSpec[] {
  if (!Array.isArray(specs) || specs.length === 0) throw new Error(`submitJobs: specs must be a non-empty array of TrainingJobSpec, but got ${Array.isArray(specs) ? "[]" : JSON.stringify(specs)}.`);
  const seen = new Map<string, number>();
  return specs.map((raw, i) => {
    let spec: TrainingJobSpec;
    try {
      spec = validateJobSpec(raw);
    } catch (err) {
      const id = (raw as { id?: unknown } | null)?.id;
      throw new Error(`submitJobs: spec #${i}${id !== undefined ? ` (id ${JSON.stringify(id)})` : ""} is invalid: ${(err as Error).message}`);
    }
    // BullMQ refuses custom job ids that parse as integers or contain ":".
    if (`${Number.parseInt(spec.id, 10)}` === spec.id) throw new Error(`submitJobs: spec #${i} has id ${JSON.stringify(spec.id)}; a queue job id cannot be an integer, use a name such as "m${spec.id}".`);
    if (spec.id.includes(":")) throw new Error(`submitJobs: spec #${i} has id ${JSON.stringify(spec.id)}; a queue job id cannot contain ":".`);
    const before = seen.get(spec.id);
    if (before !== undefined) throw new Error(`submitJobs: specs #${before} and #${i} share the id ${JSON.stringify(spec.id)}; each job needs its own id (it names the model's folder).`);
    seen.set(spec.id, i);
    return spec;
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message())), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function parseResult(value: unknown): TrainingJobResult | null {
  if (typeof value === "string") {
    try {
      return JSON.parse(value) as TrainingJobResult;
    } catch {
      return null;
    }
  }
  return (value ?? null) as TrainingJobResult | null;
}

/** Close a BullMQ client; if Redis has gone away and closing hangs, drop the connection after 5 s. */
async function closeQuietly(client: Queue | QueueEvents): Promise<void> {
  const closed = await withTimeout(client.close().then(() => true), 5000, () => "close timed out").catch(() => false);
  if (!closed) void client.disconnect().catch(() => {});
}

/**
 * A finished job's outcome from its stored state. The message counts attempts as the `attempts`
 * column does (every start, those ended by a dead worker included), so the two always agree.
 */
export function outcomeOf(job: Pick<Job, "id" | "attemptsStarted" | "attemptsMade" | "stalledCounter" | "processedBy" | "returnvalue" | "failedReason" | "opts">, state: string, attemptsAllowed: number): JobOutcome {
  const base = { id: job.id as string, attempts: job.attemptsStarted ?? 0, stalls: job.stalledCounter ?? 0, worker: job.processedBy ?? null };
  if (state === "completed") {
    const result = parseResult(job.returnvalue);
    // Never report "ok" with the metrics silently missing.
    if (!result) return { ...base, status: "failed", error: `completed, but its result could not be read (return value ${JSON.stringify(job.returnvalue)})`, result: null };
    return { ...base, status: "ok", error: null, result };
  }
  let reason = job.failedReason || "(no reason recorded)";
  if (/stalled more than allowable limit/.test(reason)) reason += ` (its worker died or stopped renewing its lock ${base.stalls} times; see maxStalledCount)`;
  // attemptsMade counts only attempts that threw, not starts a dead worker ended: the column's
  // count (attemptsStarted) is the one to report, and "of N" only while it does not pass N.
  const allowed = job.opts.attempts ?? attemptsAllowed;
  const started = Math.max(base.attempts, job.attemptsMade ?? 0);
  base.attempts = started;
  const count = started <= allowed ? `${started} of ${allowed} attempts` : `${started} attempts (${allowed} allowed; starts ended by a dead worker do not use one up)`;
  return { ...base, status: "failed", error: `failed after ${count}: ${reason}`, result: null };
}

/** The outcomes as a table, in submission order, with each result's fields and metrics as columns. */
export function outcomesTable(outcomes: readonly JobOutcome[]): ColumnTable {
  const rows = outcomes.map((o) => ({
    id: o.id,
    status: o.status,
    attempts: o.attempts,
    stalls: o.stalls,
    error: o.error,
    worker: o.worker,
    partition: o.result?.partition ?? null,
    seed: o.result?.seed ?? null,
    trainRows: o.result?.trainRows ?? null,
    testRows: o.result?.testRows ?? null,
    seconds: o.result?.seconds ?? null,
    backend: o.result?.backend ?? null,
    modelDir: o.result?.modelDir ?? null,
    ...(o.result?.metrics ?? {}),
  }));
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return aq.from(rows.map((r) => Object.fromEntries(names.map((k) => [k, (r as Record<string, unknown>)[k] ?? null]))), names);
}

/**
 * Enqueue training jobs for the workers (`npm run worker`) and wait for all of them. Specs are
 * validated first (nothing is enqueued if one is invalid); each job's BullMQ id is its spec id, so
 * an id already in the queue is not enqueued twice (a finished one reports its stored outcome
 * unless `rerunFinished`). Failed attempts are retried up to `attempts` times with `backoff`; a job
 * whose worker dies is handed to another worker by the workers' stalled-job check. Returns an
 * arquero table with exactly one row per submitted spec, in order: `id`, `status` (ok / failed /
 * timeout), `attempts`, `stalls`, `error`, `worker`, the result's fields and its metrics.
 */
export async function submitJobs(specs: readonly TrainingJobSpec[], options: SubmitJobsOptions): Promise<ColumnTable> {
  const valid = validateAll(specs);
  // A missing bullmq is reported before anything about the folders or Redis.
  await loadBullMQ();
  if (options.outRoots !== false) {
    const roots = options.outRoots ?? defaultOutRoots();
    valid.forEach((spec, i) => {
      try {
        confineOutDir(spec.outDir, roots);
      } catch (err) {
        throw new Error(`submitJobs: spec #${i} (id ${JSON.stringify(spec.id)}): ${(err as Error).message}`, { cause: err });
      }
    });
  }
  const { queueName = DEFAULT_QUEUE_NAME, onProgress, onResult, rerunFinished = false, pollMs = 2000, connectTimeoutMs = 5000, redisOutageMs = 60_000 } = options;
  if (!(redisOutageMs > 0)) throw new Error(`submitJobs: redisOutageMs must be > 0, but got ${JSON.stringify(options.redisOutageMs)}.`);
  const attempts = positiveInt(options.attempts ?? 3, "attempts");
  const backoff = checkBackoff(options.backoff ?? { type: "exponential", delay: 1000 });
  const timeoutMs = options.timeoutMs ?? Infinity;
  if (!(timeoutMs > 0)) throw new Error(`submitJobs: timeoutMs must be > 0, but got ${JSON.stringify(options.timeoutMs)}.`);
  const connection = connectionOptions(options.connection);
  const where = describeConnection(options.connection);

  const ids = valid.map((s) => s.id);
  const wanted = new Set(ids);
  const outcomes = new Map<string, JobOutcome>();
  // Ids whose state is being looked up: one look-up at a time per id keeps outcomes single.
  const checking = new Set<string>();
  const recheck = new Set<string>();
  let allDone: () => void = () => {};
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  let problem: Error | undefined;
  let added = false;
  // Redis health during the run: when a command last succeeded, and since when writes fail with
  // OOM (noeviction and a full memory). Past redisOutageMs either way, the run ends with an error
  // rather than waiting for outcomes that cannot arrive.
  let lastOk = Date.now();
  let lastOutcomeAt = Date.now();
  let oomSince: number | undefined;
  let oomMessage = "";
  let failRun: (err: Error) => void = () => {};
  const failedRun = new Promise<never>((_, reject) => (failRun = reject));
  failedRun.catch(() => {});

  await probeRedis(options.connection, connectTimeoutMs, "submitJobs", { checks: options.redisChecks ?? "refuse", ...(options.onWarning ? { warn: options.onWarning } : {}) });
  const { Queue, QueueEvents } = await loadBullMQ();
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection });
  queue.on("error", (err) => (problem = err));
  events.on("error", (err) => (problem = err));

  // A throwing callback stops the wait (the jobs keep running) and is rethrown by submitJobs.
  let callbackError: Error | undefined;
  const callback = (name: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      callbackError ??= new Error(`submitJobs: ${name} threw: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      allDone();
    }
  };
  const record = (outcome: JobOutcome): void => {
    if (outcomes.has(outcome.id)) return;
    outcomes.set(outcome.id, outcome);
    lastOutcomeAt = Date.now();
    if (onResult) callback("onResult", () => onResult(outcome, { done: outcomes.size, total: ids.length }));
    if (outcomes.size === ids.length) allDone();
  };

  /** Record the job's outcome if (and only if) it is in a final state now. */
  const check = async (id: string): Promise<void> => {
    if (!wanted.has(id) || outcomes.has(id)) return;
    // An event during a look-up may mean the state changed since: look again right after.
    if (checking.has(id)) {
      recheck.add(id);
      return;
    }
    checking.add(id);
    try {
      // State first, then the job: BullMQ stores the return value and the final state in one step,
      // so a job read after its state is final carries its result. Read the other way round, a job
      // that finishes between the two reads would be recorded "completed" with no result.
      const state = await queue.getJobState(id);
      lastOk = Date.now();
      const job = state === "unknown" ? undefined : await queue.getJob(id);
      if (job && FINAL_STATES.has(state)) record(outcomeOf(job, state, attempts));
      // Someone removed or cleaned the job after we added it: it can no longer finish.
      else if (!job && added) record({ id, status: "failed", attempts: 0, stalls: 0, error: `the job was removed from queue "${queueName}" before it finished (removed or cleaned, or Redis restarted without persistence)`, worker: null, result: null });
    } catch (err) {
      problem = err as Error;
    } finally {
      checking.delete(id);
    }
    if (recheck.delete(id)) await check(id);
  };

  events.on("completed", ({ jobId }) => void check(jobId));
  // A retried attempt does not emit "failed": only the final failure does; check() confirms it.
  events.on("failed", ({ jobId }) => void check(jobId));
  events.on("progress", ({ jobId, data }) => {
    if (!onProgress || !wanted.has(jobId) || outcomes.has(jobId) || typeof data !== "object" || data === null) return;
    callback("onProgress", () => onProgress({ id: jobId, ...(data as TrainingProgress) }));
  });

  // A tiny write each poll: reads keep working when Redis is out of memory, writes do not.
  const heartbeatKey = `jointly:${queueName}:producer:${process.pid}:${Date.now()}`;
  let beating = false;
  const heartbeat = async (): Promise<void> => {
    if (beating) return;
    beating = true;
    try {
      const client = await queue.client;
      await client.set(heartbeatKey, String(Date.now()), { PX: 60_000 });
      lastOk = Date.now();
      oomSince = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (/\bOOM\b/.test(message)) {
        oomSince ??= Date.now();
        oomMessage = message;
        lastOk = Date.now();
      }
      problem = err as Error;
    } finally {
      beating = false;
    }
  };
  let redisGone = false;
  const watch = (): void => {
    const now = Date.now();
    const progress = `${outcomes.size} of ${ids.length} jobs finished`;
    // Some of BullMQ's scripts still get through a full Redis: give up only while nothing finishes.
    if (oomSince !== undefined && now - oomSince > redisOutageMs && now - lastOutcomeAt > redisOutageMs) {
      failRun(new Error(`submitJobs: ${explainRedisError(oomMessage, where)} Gave up after ${((now - oomSince) / 1000).toFixed(1)} s of refused writes and ${((now - lastOutcomeAt) / 1000).toFixed(1)} s without a job finishing (redisOutageMs ${redisOutageMs}), ${progress}; the others stay queued: submit the same specs again once Redis has room to collect them.`));
    } else if (now - lastOk > redisOutageMs) {
      redisGone = true;
      failRun(new Error(`submitJobs: lost Redis at ${where} for ${((now - lastOk) / 1000).toFixed(1)} s (redisOutageMs ${redisOutageMs}; last error: ${problem ? explainRedisError(problem.message, where) : "none, its commands did not return"}), ${progress}; the others stay queued in Redis (kept across a restart when its persistence is on): submit the same specs again once it is back to collect them.`));
    }
  };
  const watchdog = setInterval(() => {
    void heartbeat();
    watch();
  }, Math.min(pollMs, 1000));

  let poller: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  try {
    // Subscribe before adding, so no completion can slip by unseen.
    await withTimeout(Promise.all([queue.waitUntilReady(), events.waitUntilReady()]), connectTimeoutMs, () => `submitJobs: Redis at ${where} did not answer within ${connectTimeoutMs} ms${problem ? ` (${problem.message})` : ""}; is it running and reachable from this machine?`);
    const addAll = async (): Promise<void> => {
      for (const spec of valid) {
        try {
          if (rerunFinished) {
            const old = await queue.getJob(spec.id);
            if (old && FINAL_STATES.has(await old.getState())) await old.remove();
          }
          await queue.add("train", spec, { jobId: spec.id, attempts, backoff, removeOnComplete: false, removeOnFail: false });
          lastOk = Date.now();
        } catch (err) {
          throw new Error(`submitJobs: could not enqueue job ${JSON.stringify(spec.id)}: ${explainRedisError((err as Error).message, where)}`, { cause: err });
        }
      }
    };
    await Promise.race([addAll(), failedRun]);
    added = true;
    // Ids that had already finished (or finished while we were adding) are recorded now.
    await Promise.all(ids.map((id) => check(id)));
    poller = setInterval(() => {
      for (const id of ids) void check(id);
    }, pollMs);
    if (Number.isFinite(timeoutMs)) deadline = setTimeout(() => void expire(), timeoutMs);
    await Promise.race([finished, failedRun]);
  } finally {
    clearInterval(poller);
    clearInterval(watchdog);
    clearTimeout(deadline);
    // A graceful close would wait for the Redis that is gone: drop the connections at once then.
    if (redisGone) await Promise.all([events, queue].map((c) => withTimeout(c.disconnect(), 1000, () => "disconnect timed out").catch(() => {})));
    else await Promise.all([closeQuietly(events), closeQuietly(queue)]);
  }
  if (callbackError) throw callbackError;
  return outcomesTable(ids.map((id) => outcomes.get(id) as JobOutcome));

  async function expire(): Promise<void> {
    for (const id of ids) {
      if (outcomes.has(id)) continue;
      let state = "unknown";
      let job: Job | undefined;
      try {
        job = await queue.getJob(id);
        state = job ? await job.getState() : "missing";
      } catch (err) {
        state = `unknown (${(err as Error).message})`;
      }
      if (job && FINAL_STATES.has(state)) {
        record(outcomeOf(job, state, attempts));
        continue;
      }
      record({
        id,
        status: "timeout",
        attempts: job?.attemptsStarted ?? 0,
        stalls: job?.stalledCounter ?? 0,
        error: `not finished after ${timeoutMs} ms: still ${state} in queue "${queueName}" at ${where}${problem ? ` (last Redis error: ${problem.message})` : ""}`,
        worker: job?.processedBy ?? null,
        result: null,
      });
    }
  }
}

/** Job counts of a queue. */
export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
}

/** A queue handle for notebooks: counts and clean-up. */
export interface AttachedQueue {
  queue: Queue;
  name: string;
  /** Current counts (waiting, active, delayed, completed, failed). */
  status(): Promise<QueueCounts>;
  close(): Promise<void>;
}

/** Open a queue for inspection (see {@link queueStatus}); close it when done. */
export async function attachQueue(connection: QueueConnection, queueName: string = DEFAULT_QUEUE_NAME, connectTimeoutMs = 5000): Promise<AttachedQueue> {
  // Inspection only adds nothing: the server's settings are the producer's and workers' concern.
  await probeRedis(connection, connectTimeoutMs, "attachQueue", { checks: "skip" });
  const { Queue } = await loadBullMQ();
  const queue = new Queue(queueName, { connection: connectionOptions(connection) });
  let problem: Error | undefined;
  queue.on("error", (err) => (problem = err));
  try {
    await withTimeout(queue.waitUntilReady(), connectTimeoutMs, () => `attachQueue: Redis at ${describeConnection(connection)} did not answer within ${connectTimeoutMs} ms${problem ? ` (${problem.message})` : ""}.`);
  } catch (err) {
    await closeQuietly(queue);
    throw err;
  }
  return { queue, name: queueName, status: () => countsOf(queue), close: () => closeQuietly(queue) };
}

async function countsOf(queue: Queue): Promise<QueueCounts> {
  const c = await queue.getJobCounts("waiting", "active", "delayed", "completed", "failed", "prioritized");
  return { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0, delayed: c.delayed ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0 };
}

/** Counts of a queue (waiting, active, delayed, completed, failed), from an attached queue or a connection. */
export async function queueStatus(target: AttachedQueue | QueueConnection, queueName: string = DEFAULT_QUEUE_NAME): Promise<QueueCounts> {
  if (typeof target === "object" && target !== null && "status" in target && typeof target.status === "function") return target.status();
  const attached = await attachQueue(target as QueueConnection, queueName);
  try {
    return await attached.status();
  } finally {
    await attached.close();
  }
}
