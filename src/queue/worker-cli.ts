/**
 * `npm run worker -- --redis redis://HOST:6379 [--queue jointly-train] [--concurrency 1]`: a
 * training worker for the distributed job queue. Ctrl-C / SIGTERM finishes the running job, then
 * exits; a second signal (or `--grace` ms passing) hands the job back to the queue at once.
 */
import { WORKER_USAGE, parseWorkerArgs } from "./cli-args.js";
import { startWorker } from "./worker.js";

/** Flags for where jobs may write and how long they may run (parsed here, before the other flags). */
const LIMIT_USAGE = `       [--out-root DIR]... [--job-timeout S]
  --out-root          a folder jobs may write models under; repeat for several (default: $JOINTLY_OUT_ROOT, else the current folder)
  --job-timeout       seconds a job may run unless its spec sets timeoutSeconds (default 3600; "none" for no limit)`;

/** Take `--out-root DIR` (repeatable) and `--job-timeout S` out of `argv`; the rest goes to parseWorkerArgs. */
function takeLimitFlags(argv: readonly string[]): { rest: string[]; outRoots?: string[]; jobTimeoutSeconds?: number } {
  const rest: string[] = [];
  const outRoots: string[] = [];
  let timeout: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--(out-root|job-timeout)(?:=(.*))?$/.exec(arg);
    if (!m) {
      rest.push(arg);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === "" || (m[2] === undefined && value.startsWith("--"))) throw new Error(`worker: --${m[1]} needs a value.\n${WORKER_USAGE}\n${LIMIT_USAGE}`);
    if (m[1] === "out-root") outRoots.push(value);
    else timeout = value;
  }
  let jobTimeoutSeconds: number | undefined;
  if (timeout !== undefined) {
    jobTimeoutSeconds = /^(none|infinity)$/i.test(timeout) ? Infinity : Number(timeout);
    if (!(jobTimeoutSeconds > 0)) throw new Error(`worker: --job-timeout must be a number of seconds > 0 or "none", but got ${JSON.stringify(timeout)}.\n${LIMIT_USAGE}`);
  }
  return { rest, ...(outRoots.length ? { outRoots } : {}), ...(jobTimeoutSeconds !== undefined ? { jobTimeoutSeconds } : {}) };
}

async function main(): Promise<void> {
  const { rest, ...limits } = takeLimitFlags(process.argv.slice(2));
  const parsed = parseWorkerArgs(rest);
  if (parsed === "help") {
    console.log(`${WORKER_USAGE}\n${LIMIT_USAGE}`);
    return;
  }
  const { graceMs, ...options } = parsed;
  const worker = await startWorker({ ...options, ...limits });
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      const busy = worker.running();
      console.log(`[worker ${worker.name}] ${signal}: ${busy.length ? `finishing ${busy.join(", ")} (signal again to hand it back now)` : "no job running"}; closing`);
      // After the grace period a still-running job is handed back rather than lost to a hard kill.
      setTimeout(() => worker.release(), graceMs).unref();
      worker.close().then(
        () => process.exit(0),
        (err: Error) => {
          console.error(`[worker ${worker.name}] close failed: ${err.message}`);
          process.exit(1);
        },
      );
    } else {
      worker.release();
    }
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(2);
});
