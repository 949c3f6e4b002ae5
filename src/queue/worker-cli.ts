/**
 * `npm run worker -- --redis redis://HOST:6379 [--queue jointly-train] [--concurrency 1]`: a
 * training worker for the distributed job queue. Ctrl-C / SIGTERM finishes the running job, then
 * exits; a second signal (or `--grace` ms passing) hands the job back to the queue at once.
 */
import { WORKER_USAGE, parseWorkerArgs } from "./cli-args.js";
import { startWorker } from "./worker.js";

async function main(): Promise<void> {
  const parsed = parseWorkerArgs(process.argv.slice(2));
  if (parsed === "help") {
    console.log(WORKER_USAGE);
    return;
  }
  const { graceMs, ...options } = parsed;
  const worker = await startWorker(options);
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
