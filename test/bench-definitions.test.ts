/**
 * The benchmark compares like with like: for each workload the library's form and the raw
 * TensorFlow.js loop (and, for the fleet, the vectorised ensemble) compute the same losses on the
 * first step from the same seeds, and no form leaks tensors from one step to the next. The conv
 * workloads (W7, W8) are also checked against PyTorch's peer in bench/torch_bench.py started from
 * the same numbers, when PyTorch is installed. Tiny batches keep this cheap.
 *
 * Runs on wasm; `JOINTLY_BACKEND=cpu` runs it on the cpu backend instead.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs";
import { BACKEND_ENV, initBackend, type BackendName } from "../src/backend/init.js";
import { CONV_WORKLOAD_IDS, WORKLOADS, WORKLOAD_IDS, initialState, type ConvWorkloadId, type Form, type WorkloadId } from "../bench/workloads.js";

await initBackend({ backend: (process.env[BACKEND_ENV] as BackendName | undefined) || "wasm", report: false });

const BATCH = 8;
/** Small conv batches (W8: two 64x64x3 images, so batch norm still averages over the batch axis). */
const BATCHES: Partial<Record<WorkloadId, number>> = { W7: 4, W8: 2 };
const batchOf = (id: WorkloadId): number => BATCHES[id] ?? BATCH;

/** Kernels training W7/W8 needs: tfjs-wasm 4.22 lacks Conv2DBackpropFilter (jointly adds it in src/backend/kernels/). */
const CONV_TRAINING_KERNELS = ["Conv2D", "FusedConv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MaxPool", "MaxPoolGrad"];
const missingConvKernels = CONV_TRAINING_KERNELS.filter((k) => tf.getKernel(k, tf.getBackend()) === undefined);
const isConv = (id: WorkloadId): id is ConvWorkloadId => (CONV_WORKLOAD_IDS as readonly string[]).includes(id);
const skipConv = missingConvKernels.length ? `the ${tf.getBackend()} backend has no ${missingConvKernels.join(", ")} kernel: conv layers cannot be trained on it` : false;

function close(a: number[], b: number[], what: string, tol = 1e-4): void {
  assert.equal(a.length, b.length, `${what}: ${a.length} vs ${b.length} losses`);
  a.forEach((v, i) => {
    const w = b[i] as number;
    assert.ok(Number.isFinite(v) && Number.isFinite(w), `${what}: non-finite loss ${v} / ${w}`);
    assert.ok(Math.abs(v - w) <= tol * Math.max(1, Math.abs(w)), `${what}: loss ${i} differs, ${v} vs ${w}`);
  });
}

/** Losses of steps 1 to 3, and the tensor count after each; disposes everything afterwards. */
function run(id: WorkloadId, form: Form): { losses: number[][]; counts: number[]; leaked: number } {
  const start = tf.memory().numTensors;
  const r = WORKLOADS[id].make(form, { batch: batchOf(id) });
  const losses: number[][] = [];
  const counts: number[] = [];
  for (let i = 0; i < 3; i++) {
    losses.push(r.step());
    counts.push(tf.memory().numTensors);
  }
  r.dispose();
  return { losses, counts, leaked: tf.memory().numTensors - start };
}

/** The raw form's losses of steps 1 to 3 of the conv workloads, for the PyTorch comparison. */
const rawLosses = new Map<ConvWorkloadId, number[]>();

for (const id of WORKLOAD_IDS) {
  const def = WORKLOADS[id];
  test(`${id} (${def.title}): same first-step loss in every form, flat tensor count`, { skip: isConv(id) && skipConv }, () => {
    const results = def.forms.map((form) => ({ form, ...run(id, form) }));
    const raw = results.find((r) => r.form === "raw")!;
    for (const r of results) {
      // Adam's moment variables appear at the first update, so counts are compared from step 1 on.
      assert.deepEqual(r.counts, [r.counts[0], r.counts[0], r.counts[0]], `${id} ${r.form}: tensor count moved across steps ${r.counts.join(" -> ")}`);
      assert.equal(r.leaked, 0, `${id} ${r.form}: ${r.leaked} tensors left after dispose`);
      if (r !== raw) close(r.losses[0]!, raw.losses[0]!, `${id} ${r.form} vs raw`);
    }
    if (isConv(id)) {
      // The conv forms keep agreeing after Adam's first updates (and batch norm's moving averages).
      for (const r of results) if (r !== raw) close(r.losses.flat(), raw.losses.flat(), `${id} ${r.form} vs raw, steps 1 to 3`);
      rawLosses.set(id, raw.losses.map((l) => l[0]!));
    }
  });
}

/** A Python with torch, as bench/run.ts looks for one; undefined when there is none. */
function torchPython(): string | undefined {
  for (const py of [process.env.JOINTLY_PYTHON, "/usr/bin/python3", "python3"].filter((p): p is string => !!p)) {
    if (spawnSync(py, ["-c", "import torch"], { stdio: "ignore", timeout: 60_000 }).status === 0) return py;
  }
  return undefined;
}
const python = torchPython();

for (const id of CONV_WORKLOAD_IDS) {
  const skip = skipConv || (python === undefined ? "PyTorch not found (tried $JOINTLY_PYTHON, /usr/bin/python3, python3)" : false);
  test(`${id}: PyTorch's peer (bench/torch_bench.py) from the same weights and data gives the same losses on steps 1 to 3`, { skip }, () => {
    const ours = rawLosses.get(id);
    assert.ok(ours, `${id}: the forms test did not record the raw losses (did it fail?)`);
    const r = spawnSync(python!, ["bench/torch_bench.py", "--check", "--steps", "3"], { input: JSON.stringify(initialState(id, batchOf(id))), encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `torch_bench.py --check failed (exit ${r.status}): ${r.stderr}`);
    const theirs = (JSON.parse(r.stdout.trim().split("\n").pop() as string) as { losses: number[] }).losses;
    close(ours, theirs, `${id} tfjs raw vs PyTorch`);
  });
}

// W4 and W5 run library code with state between steps (turns, GradNorm's weights): the library and
// raw forms must keep agreeing after the first step, not only on it.
for (const id of ["W4", "W5"] as const) {
  test(`${id}: library forms and raw agree on the losses of steps 1 to 4`, () => {
    const forms = WORKLOADS[id].forms.filter((f) => f !== "ensemble");
    const runners = forms.map((f) => WORKLOADS[id].make(f, { batch: BATCH }));
    try {
      for (let s = 0; s < 4; s++) {
        const losses = runners.map((r) => r.step());
        const raw = losses[forms.indexOf("raw")] as number[];
        forms.forEach((f, i) => close(losses[i] as number[], raw, `${id} ${f} vs raw, step ${s + 1}`));
      }
    } finally {
      for (const r of runners) r.dispose();
    }
  });
}

test("W7/W8 labels are in range (class ids 0..9; attributes 0/1)", () => {
  const w7 = initialState("W7", 256);
  for (const l of w7.labels) assert.ok(l.every((v) => Number.isInteger(v) && v >= 0 && v <= 9) && new Set(l).size === 10, `W7 labels: ${[...new Set(l)].sort()}`);
  const w8 = initialState("W8", 64);
  assert.equal(w8.labels.length, 8);
  for (const l of w8.labels) assert.deepEqual([...new Set(l)].sort(), [0, 1], `W8 labels: ${[...new Set(l)]}`);
  assert.deepEqual(w7.x.shape, [256, 28, 28, 1]);
  assert.deepEqual(w8.x.shape, [64, 64, 64, 3]);
});
