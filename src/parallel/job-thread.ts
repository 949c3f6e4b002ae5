/**
 * One worker thread that runs training jobs one at a time, with its own TensorFlow.js backend. A job
 * that runs past its time limit, exhausts memory, leaves the backend broken or kills the thread is
 * reported with what happened, and the thread is ended: whoever owns it starts a fresh one for the
 * next job. Used by {@link trainMany} (many threads) and the queue worker (one a running job).
 */
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { BackendName } from "../backend/init.js";
import { isOutOfMemory } from "./health.js";
import type { TrainingJobResult, TrainingJobSpec } from "./job.js";
import type { FromWorker, PoolWorkerData, ToWorker } from "./worker.js";

/** Why a job failed: its own error, memory, its time limit, or its thread died under it. */
export type JobFailureKind = "error" | "outOfMemory" | "timeout" | "crash";

/** A worker's life, for logging and for checking that none is left running. */
export interface WorkerEvent {
  type: "start" | "exit";
  threadId: number;
  /** Exit code, on `exit` (Node reports 1 for any worker ended with terminate()). */
  code?: number;
  /** On `exit`: true when the owner ended the worker itself (its work was done), false when it died, timed out or was rebuilt. */
  requested?: boolean;
  /** On `exit` not requested: what ended it. */
  reason?: JobFailureKind;
}

/** What {@link JobThread.run} resolves to; it never rejects. */
export type ThreadOutcome =
  | { ok: true; result: TrainingJobResult; seconds: number; threadId: number }
  | { ok: false; kind: JobFailureKind; error: string; seconds: number; threadId: number };

/** Options of a {@link JobThread}. */
export interface JobThreadOptions {
  /** A worker script of one's own that calls `serveTrainingJobs(runner)`; default jointly's. */
  workerScript?: string | URL;
  /** Force this backend in the thread (default: the fastest that loads). */
  backend?: BackendName;
  /** Thread starts and exits. */
  onWorker?: (event: WorkerEvent) => void;
}

/** Options of one {@link JobThread.run}. */
export interface ThreadRunOptions {
  /** Stop the job (and end the thread) after this many seconds; `Infinity` for no limit. */
  timeoutSeconds: number;
  onProgress?: (epoch: number, loss: number) => void;
  /** Output roots the job's model folder must lie under (see `confineOutDir`). */
  outRoots?: readonly string[];
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

/** The worker script as a file URL, checked to exist. */
export function workerScriptURL(script: string | URL | undefined): URL {
  if (script === undefined) return defaultWorkerScript();
  const url = script instanceof URL ? script : /^file:/.test(script) ? new URL(script) : pathToFileURL(script);
  if (!existsSync(fileURLToPath(url))) throw new Error(`trainMany: the worker script ${fileURLToPath(url)} does not exist.`);
  return url;
}

/** setTimeout for any delay: Node fires delays above 2^31 - 1 ms at once, so long ones re-arm. */
function longTimeout(ms: number, fn: () => void): { clear(): void } {
  const MAX = 2 ** 31 - 1;
  let timer: NodeJS.Timeout;
  const arm = (left: number): void => {
    timer = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(left, MAX));
  };
  arm(ms);
  return { clear: () => clearTimeout(timer) };
}

interface Running {
  spec: TrainingJobSpec;
  started: number;
  options: ThreadRunOptions;
  resolve: (outcome: ThreadOutcome) => void;
  timer?: { clear(): void };
}

/** A worker thread serving training jobs; see the module comment. */
export class JobThread {
  readonly threadId: number;
  private readonly worker: Worker;
  private readonly onWorker: ((event: WorkerEvent) => void) | undefined;
  private current: Running | undefined;
  /** Set when the thread must end: why (undefined when the owner closed it). */
  private ending: { kind: JobFailureKind; error: string } | undefined;
  private crash: string | undefined;
  private requested = false;
  private exitCode: number | undefined;
  private readonly exited: Promise<number>;

  constructor(options: JobThreadOptions = {}) {
    const script = workerScriptURL(options.workerScript);
    const workerData: PoolWorkerData = { entry: script.href, ...(options.backend ? { backend: options.backend } : {}) };
    // execArgv [] so workers do not inherit the parent's `--import tsx`, which fails there on Node 20.
    this.worker = /\.[mc]?ts$/.test(script.pathname)
      ? new Worker(tsBootstrap(script), { eval: true, workerData, execArgv: [] })
      : new Worker(script, { workerData, execArgv: [] });
    this.threadId = this.worker.threadId;
    this.onWorker = options.onWorker;
    this.onWorker?.({ type: "start", threadId: this.threadId });
    this.exited = new Promise((resolve) => this.worker.once("exit", resolve));
    this.worker.on("message", (msg: FromWorker) => this.message(msg));
    this.worker.on("error", (err) => {
      this.crash = err instanceof Error ? err.message : String(err);
    });
    this.worker.once("exit", (code) => this.exit(code));
  }

  /** False once the thread has ended or is ending: start a new one for the next job. */
  get alive(): boolean {
    return this.exitCode === undefined && this.ending === undefined && !this.requested;
  }

  /** True while a job runs on this thread. */
  get busy(): boolean {
    return this.current !== undefined;
  }

  /**
   * Run one job on this thread. Resolves with the result, or with why it failed; when the thread had
   * to end (time limit, out of memory, a broken backend, a crash) it has exited before this resolves.
   */
  run(spec: TrainingJobSpec, options: ThreadRunOptions): Promise<ThreadOutcome> {
    if (this.current) throw new Error(`JobThread ${this.threadId}: already running job ${JSON.stringify(this.current.spec.id)}; a thread runs one job at a time.`);
    if (!this.alive) throw new Error(`JobThread ${this.threadId}: the thread has ended; start a new one.`);
    const limit = options.timeoutSeconds;
    return new Promise<ThreadOutcome>((resolve) => {
      const running: Running = { spec, started: performance.now(), options, resolve };
      this.current = running;
      if (Number.isFinite(limit)) {
        running.timer = longTimeout(limit * 1000, () => {
          this.end("timeout", `timed out after ${limit} s (the job's time limit, timeoutSeconds ${limit}); its worker thread was stopped`);
        });
      }
      this.worker.postMessage({ type: "run", spec, ...(options.outRoots ? { outRoots: [...options.outRoots] } : {}) } satisfies ToWorker);
    });
  }

  /** End the thread as its owner (work done, or shutting down); a running job fails as a crash. */
  async close(): Promise<void> {
    if (this.exitCode === undefined) {
      if (!this.ending) this.requested = true;
      await this.worker.terminate();
    }
    await this.exited;
  }

  private end(kind: JobFailureKind, error: string): void {
    if (this.ending || this.exitCode !== undefined) return;
    this.ending = { kind, error };
    void this.worker.terminate();
  }

  private settle(outcome: { ok: true; result: TrainingJobResult } | { ok: false; kind: JobFailureKind; error: string }): void {
    const running = this.current;
    if (!running) return;
    this.current = undefined;
    running.timer?.clear();
    running.resolve({ ...outcome, seconds: (performance.now() - running.started) / 1000, threadId: this.threadId });
  }

  private message(msg: FromWorker): void {
    const running = this.current;
    if (!running) return;
    if (msg.type === "progress") running.options.onProgress?.(msg.epoch, msg.loss);
    else if (msg.type === "done") this.settle({ ok: true, result: msg.result });
    else if (msg.type === "failed") {
      const kind: JobFailureKind = msg.kind ?? "error";
      // The backend cannot be trusted after this: end the thread, report once it is gone.
      if (msg.rebuild) this.end(kind, msg.error);
      else this.settle({ ok: false, kind, error: msg.error });
    }
  }

  private exit(code: number): void {
    this.exitCode = code;
    const why = this.ending;
    const crash = this.crash;
    const reason: JobFailureKind | undefined = why?.kind ?? (this.requested && crash === undefined ? undefined : "crash");
    this.onWorker?.({ type: "exit", threadId: this.threadId, code, requested: reason === undefined, ...(reason ? { reason } : {}) });
    if (!this.current) return;
    if (why) this.settle({ ok: false, ...why });
    else {
      const error = crash !== undefined ? `the worker crashed: ${crash}` : `the worker exited with code ${code} during the job`;
      // A thread killed by memory (V8's heap limit, an emscripten abort) is out of memory, not a bug of the job.
      if (isOutOfMemory(error)) this.settle({ ok: false, kind: "outOfMemory", error: `Job ${JSON.stringify(this.current.spec.id)} ran out of memory (${error})` });
      else this.settle({ ok: false, kind: "crash", error });
    }
  }
}
