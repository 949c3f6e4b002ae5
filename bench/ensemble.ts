/**
 * Vectorised ensemble vs the same M models trained one after another, in one process.
 *
 * Shape (W6): 32 -> Dense(64, relu) -> Dense(1), MSE, batch 256 per member, Adam(1e-3). One "step"
 * is a training step of every member, its loss read back as a number: for the ensemble one
 * `VectorizedEnsemble.step`, for the sequential form M `tf.LayersModel`s each minimised by its own
 * `tf.train.adam` with the loss read after each. Both start from the same seeded weights and data.
 *
 * Run: `node --import tsx bench/ensemble.ts` (`ENSEMBLE_BENCH_M=8,64` to pick sizes). Prints a table and
 * writes build/ensemble-bench.json. Timings are wall-clock on whatever else the machine is doing.
 */
import * as tf from "@tensorflow/tfjs";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { initBackend } from "../src/backend/init.js";
import { VectorizedEnsemble, ensembleSeed, type EnsembleLayerSpec } from "../src/parallel/ensemble.js";

const INPUT = 32;
const BATCH = 256;
const LR = 1e-3;
const BASE_SEED = 1;
const LAYERS: EnsembleLayerSpec[] = [
  { units: 64, activation: "relu" },
  { units: 1, activation: "linear" },
];
const SIZES = (process.env.ENSEMBLE_BENCH_M ?? "8,64,256").split(",").map((s) => Number(s.trim()));
// Each form is timed until it has at least MIN_REPS steps and MIN_MS of timed steps (at most MAX_REPS).
const WARMUP = 2;
const MIN_REPS = 5;
const MAX_REPS = 40;
const MIN_MS = 2000;

interface Row {
  members: number;
  ensembleMsPerStep: number;
  sequentialMsPerStep: number;
  speedup: number;
  ensembleReps: number;
  sequentialReps: number;
  /** Largest gap between the two forms' first-step losses (same weights, same data: should be ~0). */
  firstStepLossGap: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Warm up, then time `step` until enough repetitions; returns the first step's losses and the timings. */
function time(step: () => number[]): { first: number[]; ms: number[] } {
  const first = step();
  for (let i = 1; i < WARMUP; i++) step();
  const ms: number[] = [];
  let total = 0;
  while (ms.length < MAX_REPS && (ms.length < MIN_REPS || total < MIN_MS)) {
    const t0 = performance.now();
    step();
    const dt = performance.now() - t0;
    ms.push(dt);
    total += dt;
  }
  return { first, ms };
}

function runSize(M: number): Row {
  const x = tf.randomNormal([M, BATCH, INPUT], 0, 1, "float32", 3000 + M) as tf.Tensor3D;
  const y = tf.randomNormal([M, BATCH, 1], 0, 1, "float32", 4000 + M) as tf.Tensor3D;

  const ens = new VectorizedEnsemble({ members: M, inputSize: INPUT, layers: LAYERS, baseSeed: BASE_SEED, loss: "mse", optimizer: "adam", learningRate: LR });
  const e = time(() => ens.step(x, y));
  ens.dispose();

  // The sequential form: ordinary models with the ensemble's seeds, each with its own Adam.
  const fleet = Array.from({ length: M }, (_, i) => {
    const model = tf.sequential();
    LAYERS.forEach((l, k) =>
      model.add(
        tf.layers.dense({
          units: l.units,
          activation: l.activation ?? "linear",
          kernelInitializer: tf.initializers.glorotUniform({ seed: ensembleSeed(BASE_SEED, i, k) }),
          ...(k === 0 ? { inputShape: [INPUT] } : {}),
        }),
      ),
    );
    const xi = tf.tidy(() => tf.squeeze(tf.slice(x, [i, 0, 0], [1, BATCH, INPUT]), [0]));
    const yi = tf.tidy(() => tf.squeeze(tf.slice(y, [i, 0, 0], [1, BATCH, 1]), [0]));
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    return { model, opt: tf.train.adam(LR), xi, yi, vars };
  });
  const s = time(() =>
    fleet.map((m) => {
      const cost = m.opt.minimize(() => tf.mean(tf.squaredDifference(m.model.apply(m.xi) as tf.Tensor, m.yi)) as tf.Scalar, true, m.vars)!;
      const v = cost.dataSync()[0] as number;
      cost.dispose();
      return v;
    }),
  );
  for (const m of fleet) {
    m.model.dispose();
    m.opt.dispose();
    tf.dispose([m.xi, m.yi]);
  }
  tf.dispose([x, y]);

  const ensembleMsPerStep = median(e.ms);
  const sequentialMsPerStep = median(s.ms);
  return {
    members: M,
    ensembleMsPerStep,
    sequentialMsPerStep,
    speedup: sequentialMsPerStep / ensembleMsPerStep,
    ensembleReps: e.ms.length,
    sequentialReps: s.ms.length,
    firstStepLossGap: Math.max(...e.first.map((v, i) => Math.abs(v - (s.first[i] as number)))),
  };
}

const info = await initBackend();
for (const M of SIZES) {
  if (!Number.isInteger(M) || M < 1) throw new Error(`ENSEMBLE_BENCH_M must list integers >= 1, but got "${process.env.ENSEMBLE_BENCH_M}".`);
}
const rows: Row[] = [];
for (const M of SIZES) {
  const row = runSize(M);
  rows.push(row);
  console.log(
    `M=${M}: ensemble ${row.ensembleMsPerStep.toFixed(1)} ms/step, sequential ${row.sequentialMsPerStep.toFixed(1)} ms/step, speed-up ${row.speedup.toFixed(1)}x (first-step loss gap ${row.firstStepLossGap.toExponential(1)})`,
  );
}

console.log(`\nVectorised ensemble vs sequential models, ${INPUT}-64-1 MLP, MSE, batch ${BATCH} each, Adam; backend ${info.name}; load ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores`);
console.log("| M | ensemble ms/step (all M) | sequential ms/step (all M) | speed-up | ms per member: ensemble / sequential |");
console.log("|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.members} | ${r.ensembleMsPerStep.toFixed(1)} | ${r.sequentialMsPerStep.toFixed(1)} | ${r.speedup.toFixed(1)}x | ${(r.ensembleMsPerStep / r.members).toFixed(3)} / ${(r.sequentialMsPerStep / r.members).toFixed(3)} |`,
  );
}

mkdirSync("build", { recursive: true });
writeFileSync(
  "build/ensemble-bench.json",
  `${JSON.stringify(
    {
      workload: { input: INPUT, layers: LAYERS, loss: "mse", batchPerMember: BATCH, optimizer: "adam", learningRate: LR },
      backend: info.name,
      fastPaths: info.fastPaths,
      node: process.version,
      cores: cpus().length,
      loadAverage1m: loadavg()[0],
      date: new Date().toISOString(),
      statistic: "median wall-clock ms per training step of all M members, loss read back",
      results: rows,
    },
    null,
    2,
  )}\n`,
);
console.log("wrote build/ensemble-bench.json");
