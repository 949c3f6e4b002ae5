/** The worker command line (`npm run worker -- ...`), parsed apart from the CLI so importing it starts nothing. */
import { parseArgs } from "node:util";
import { DEFAULT_QUEUE_NAME } from "./connection.js";
import type { StartWorkerOptions } from "./worker.js";

/** The worker's usage text. */
export const WORKER_USAGE = `usage: npm run worker -- [--redis redis://HOST:6379] [--queue ${DEFAULT_QUEUE_NAME}] [--concurrency N]
       [--lock-duration MS] [--stalled-interval MS] [--max-stalled N] [--name NAME] [--grace MS]
       [--tls-ca FILE] [--redis-checks refuse|warn]
  --redis             Redis URL, redis://:PASSWORD@HOST:6379 (default: $JOINTLY_REDIS_URL, else redis://127.0.0.1:6379)
  --tls-ca            PEM file with the CA of a rediss:// server's certificate (default: $JOINTLY_REDIS_TLS_CA)
  --redis-checks      refuse (default): do not start unless Redis has maxmemory-policy noeviction; warn: only warn
  --queue             queue name (default: $JOINTLY_QUEUE, else ${DEFAULT_QUEUE_NAME})
  --concurrency       jobs at once in this process (default 1)
  --lock-duration     ms a job's lock lasts without renewal (default 30000)
  --stalled-interval  ms between checks for jobs of dead workers (default 30000)
  --max-stalled       times a job may be recovered from a dead worker (default 1)
  --name              worker name in logs and results (default host-pid)
  --grace             ms to let the running job finish after SIGINT/SIGTERM before handing it back (default 60000)`;

/** Parsed command line of the worker. */
export interface WorkerCliOptions extends Omit<StartWorkerOptions, "log"> {
  graceMs: number;
}

function number(flag: string, text: string | undefined, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`worker: --${flag} must be ${integer ? "a positive integer" : "a positive number"}, but got ${JSON.stringify(text)}.\n${WORKER_USAGE}`);
  }
  return value;
}

/** Parse the worker's flags (and `JOINTLY_REDIS_URL`, `JOINTLY_QUEUE`); throws with the usage on a bad flag. */
export function parseWorkerArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): WorkerCliOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        redis: { type: "string" },
        queue: { type: "string" },
        concurrency: { type: "string" },
        "lock-duration": { type: "string" },
        "stalled-interval": { type: "string" },
        "max-stalled": { type: "string" },
        name: { type: "string" },
        grace: { type: "string" },
        "tls-ca": { type: "string" },
        "redis-checks": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new Error(`worker: ${(err as Error).message}\n${WORKER_USAGE}`);
  }
  if (values.help) return "help";
  const str = (k: string): string | undefined => values[k] as string | undefined;
  // --max-stalled 0 is meaningful (never recover), so it is parsed apart from the positive flags.
  const maxStalledText = str("max-stalled");
  const maxStalled = maxStalledText === undefined ? undefined : Number(maxStalledText);
  if (maxStalled !== undefined && (!Number.isInteger(maxStalled) || maxStalled < 0 || maxStalledText?.trim() === "")) {
    throw new Error(`worker: --max-stalled must be an integer >= 0, but got ${JSON.stringify(maxStalledText)}.\n${WORKER_USAGE}`);
  }
  const concurrency = number("concurrency", str("concurrency"), true);
  const lockDuration = number("lock-duration", str("lock-duration"), false);
  const stalledInterval = number("stalled-interval", str("stalled-interval"), false);
  const checks = str("redis-checks");
  if (checks !== undefined && checks !== "refuse" && checks !== "warn") throw new Error(`worker: --redis-checks must be refuse or warn, but got ${JSON.stringify(checks)}.\n${WORKER_USAGE}`);
  const url = str("redis") || env.JOINTLY_REDIS_URL || "redis://127.0.0.1:6379";
  const tlsCa = str("tls-ca") ?? (env.JOINTLY_REDIS_TLS_CA || undefined);
  if (tlsCa !== undefined && !url.startsWith("rediss://")) throw new Error(`worker: --tls-ca is for a TLS connection, but the Redis URL is not rediss:// (got ${JSON.stringify(url.replace(/:[^:@/]*@/, ":***@"))}).\n${WORKER_USAGE}`);
  return {
    connection: tlsCa !== undefined ? { url, tlsCa } : url,
    ...(checks !== undefined ? { redisChecks: checks } : {}),
    queueName: str("queue") ?? env.JOINTLY_QUEUE ?? DEFAULT_QUEUE_NAME,
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(lockDuration !== undefined ? { lockDuration } : {}),
    ...(stalledInterval !== undefined ? { stalledInterval } : {}),
    ...(maxStalled !== undefined ? { maxStalledCount: maxStalled } : {}),
    ...(str("name") !== undefined ? { name: str("name") as string } : {}),
    graceMs: number("grace", str("grace"), false) ?? 60_000,
  };
}

