/**
 * W6 on two cores: the fleet of 64 MLPs split across 2 `worker_threads` (32 models each, each worker
 * with its own tfjs-wasm backend, which is single-threaded), against one thread doing all 64.
 * Two splits: 32 JointTrainers with fusedAdam per worker (the library's fastest per-model form), and
 * a `VectorizedEnsemble` of 32 members per worker (src/parallel/ensemble.ts) against one of 64.
 *
 * The models are independent, so workers need no synchronisation within a step: each timed block
 * asks both workers for `n` steps and waits for both answers; ms/step = block time / n. The same
 * block is timed for one thread (in a third worker, so that the main thread's own tensors and JIT
 * state are not part of it). Blocks of the forms alternate, as in bench/run.ts.
 *
 * Used by bench/run.ts (the W6 child); also runnable alone: `node --import tsx bench/fleet-workers.ts`.
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";

type Kind = "fused" | "ensemble" | "spin";
interface Job {
  kind: Kind;
  members: [number, number];
}

const FLEET = 64;

// ---------------------------------------------------------------------------------------------
// Worker side: build its share of the fleet, then run blocks of steps on request.

async function workerMain(job: Job): Promise<void> {
  const tf = await import("@tensorflow/tfjs");
  const { initBackend } = await import("../src/backend/init.js");
  await initBackend({ backend: "wasm", report: false });
  let step: () => number;
  let dispose: () => void;
  if (job.kind === "spin") {
    // Control: pure JS arithmetic, work proportional to the share of the fleet. Its 1-thread/2-worker
    // ratio is the parallel speed-up the machine offers at that moment (2.0 on two idle cores).
    const n = (job.members[1] - job.members[0]) * 200_000;
    step = () => {
      let a = 0;
      for (let i = 0; i < n; i++) a = (a + Math.sqrt(i)) % 1e9;
      return a;
    };
    dispose = () => undefined;
  } else if (job.kind === "fused") {
    const { WORKLOADS } = await import("./workloads.js");
    const r = WORKLOADS.W6.make("fused", { members: job.members });
    step = () => r.step().reduce((a, b) => a + b, 0);
    dispose = () => r.dispose();
  } else {
    const { VectorizedEnsemble } = await import("../src/parallel/ensemble.js");
    const m = job.members[1] - job.members[0];
    const ens = new VectorizedEnsemble({ members: m, inputSize: 32, layers: [{ units: 64, activation: "relu" }, { units: 1 }], baseSeed: 1 + 1000 * job.members[0] });
    const x = tf.randomNormal([m, 256, 32], 0, 1, "float32", 3000 + job.members[0]) as import("@tensorflow/tfjs").Tensor3D;
    const y = tf.randomNormal([m, 256, 1], 0, 1, "float32", 4000 + job.members[0]) as import("@tensorflow/tfjs").Tensor3D;
    step = () => ens.step(x, y).reduce((a, b) => a + b, 0);
    dispose = () => {
      ens.dispose();
      tf.dispose([x, y]);
    };
  }
  parentPort!.on("message", (msg: { steps?: number; stop?: true }) => {
    if (msg.stop) {
      dispose();
      parentPort!.close();
      return;
    }
    let loss = 0;
    for (let i = 0; i < (msg.steps ?? 1); i++) loss = step();
    parentPort!.postMessage({ loss });
  });
  parentPort!.postMessage({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// Main side.

/** A `.ts` worker needs tsx's loader in its own thread: register it there before importing this file. */
function bootstrap(): string {
  const api = import.meta.resolve("tsx/esm/api");
  return `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); });`;
}

interface Handle {
  worker: Worker;
  run(steps: number): Promise<number>;
}

async function start(job: Job): Promise<Handle> {
  const worker = new Worker(bootstrap(), { eval: true, workerData: job, execArgv: [] });
  let pending: ((v: { loss?: number; ready?: boolean }) => void) | undefined;
  let failed: Error | undefined;
  worker.on("message", (m) => pending?.(m));
  worker.on("error", (e) => {
    failed = e;
    pending?.({});
  });
  const next = (): Promise<{ loss?: number; ready?: boolean }> =>
    new Promise((res, rej) => {
      if (failed) rej(failed);
      pending = (v) => (failed ? rej(failed) : res(v));
    });
  await next(); // ready
  return {
    worker,
    run: async (steps) => {
      const p = next();
      worker.postMessage({ steps });
      return (await p).loss ?? NaN;
    },
  };
}

async function stop(h: Handle): Promise<void> {
  const exited = new Promise((res) => h.worker.once("exit", res));
  h.worker.postMessage({ stop: true });
  await exited;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
}

export interface FleetWorkersResult {
  /** ms/step, 64 fusedAdam JointTrainers in one worker thread. */
  fused_1thread: number;
  /** ms/step, 2 workers x 32 fusedAdam JointTrainers. */
  fused_2workers: number;
  /** ms/step, VectorizedEnsemble of 64 in one worker thread. */
  ensemble_1thread: number;
  /** ms/step, 2 workers x VectorizedEnsemble of 32. */
  ensemble_2workers: number;
  /** Control (pure JS loop): 1 thread / 2 workers time, the speed-up two threads could get at the time. */
  spin_speedup: number;
  samples: Record<string, number[]>;
}

/** Time the four forms in alternating blocks (see the header). */
export async function measureFleetWorkers(quick = false): Promise<FleetWorkersResult> {
  const half: [number, number][] = [[0, FLEET / 2], [FLEET / 2, FLEET]];
  const forms: Record<string, Handle[]> = {};
  // Started one after another: two wasm instances compiling at once only slows both.
  forms.fused_1thread = [await start({ kind: "fused", members: [0, FLEET] })];
  forms.fused_2workers = [await start({ kind: "fused", members: half[0]! }), await start({ kind: "fused", members: half[1]! })];
  forms.ensemble_1thread = [await start({ kind: "ensemble", members: [0, FLEET] })];
  forms.ensemble_2workers = [await start({ kind: "ensemble", members: half[0]! }), await start({ kind: "ensemble", members: half[1]! })];
  forms.spin_1thread = [await start({ kind: "spin", members: [0, FLEET] })];
  forms.spin_2workers = [await start({ kind: "spin", members: half[0]! }), await start({ kind: "spin", members: half[1]! })];
  const block = async (hs: Handle[], steps: number): Promise<number> => {
    const t0 = performance.now();
    await Promise.all(hs.map((h) => h.run(steps)));
    return (performance.now() - t0) / steps;
  };
  const steps: Record<string, number> = {};
  for (const [k, hs] of Object.entries(forms)) {
    await block(hs, 3); // warm-up
    const est = await block(hs, 3);
    steps[k] = Math.max(1, Math.min(50, Math.round((quick ? 150 : 400) / Math.max(est, 0.01))));
  }
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(forms).map((k) => [k, []]));
  const reps = quick ? 3 : 7;
  for (let r = 0; r < reps; r++) {
    const order = r % 2 ? Object.keys(forms).reverse() : Object.keys(forms);
    for (const k of order) samples[k]!.push(await block(forms[k]!, steps[k]!));
  }
  for (const hs of Object.values(forms)) for (const h of hs) await stop(h);
  const m = (k: string): number => Number(median(samples[k]!).toFixed(3));
  return { fused_1thread: m("fused_1thread"), fused_2workers: m("fused_2workers"), ensemble_1thread: m("ensemble_1thread"), ensemble_2workers: m("ensemble_2workers"), spin_speedup: Number((median(samples.spin_1thread!) / median(samples.spin_2workers!)).toFixed(2)), samples };
}

if (!isMainThread) {
  await workerMain(workerData as Job);
} else if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const os = await import("node:os");
  console.log(`load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const r = await measureFleetWorkers(process.argv.includes("--quick"));
  console.log(JSON.stringify({ ...r, samples: undefined }));
  console.log(`fleet fused: 1 thread ${r.fused_1thread} ms, 2 workers ${r.fused_2workers} ms (${(r.fused_1thread / r.fused_2workers).toFixed(2)}x); ensemble: 1 thread ${r.ensemble_1thread} ms, 2 workers ${r.ensemble_2workers} ms (${(r.ensemble_1thread / r.ensemble_2workers).toFixed(2)}x); control (pure JS) speed-up ${r.spin_speedup}x`);
}
