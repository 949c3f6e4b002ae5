/**
 * The benchmark compares like with like: for each workload the library's form and the raw
 * TensorFlow.js loop (and, for the fleet, the vectorised ensemble) compute the same losses on the
 * first step from the same seeds, and no form leaks tensors from one step to the next.
 * Tiny batches keep this cheap.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { WORKLOADS, WORKLOAD_IDS, type Form } from "../bench/workloads.js";

await initBackend({ backend: "wasm", report: false });

const BATCH = 8;

function close(a: number[], b: number[], what: string): void {
  assert.equal(a.length, b.length, `${what}: ${a.length} vs ${b.length} losses`);
  a.forEach((v, i) => {
    const w = b[i] as number;
    assert.ok(Number.isFinite(v) && Number.isFinite(w), `${what}: non-finite loss ${v} / ${w}`);
    assert.ok(Math.abs(v - w) <= 1e-4 * Math.max(1, Math.abs(w)), `${what}: loss ${i} differs, ${v} vs ${w}`);
  });
}

/** First-step losses, and the tensor count after steps 1, 2 and 3; disposes everything afterwards. */
function run(id: (typeof WORKLOAD_IDS)[number], form: Form): { first: number[]; counts: number[]; leaked: number } {
  const start = tf.memory().numTensors;
  const r = WORKLOADS[id].make(form, { batch: BATCH });
  const first = r.step();
  const counts = [tf.memory().numTensors];
  for (let i = 0; i < 2; i++) {
    r.step();
    counts.push(tf.memory().numTensors);
  }
  r.dispose();
  return { first, counts, leaked: tf.memory().numTensors - start };
}

for (const id of WORKLOAD_IDS) {
  const def = WORKLOADS[id];
  test(`${id} (${def.title}): same first-step loss in every form, flat tensor count`, () => {
    const results = def.forms.map((form) => ({ form, ...run(id, form) }));
    const raw = results.find((r) => r.form === "raw")!;
    for (const r of results) {
      // Adam's moment variables appear at the first update, so counts are compared from step 1 on.
      assert.deepEqual(r.counts, [r.counts[0], r.counts[0], r.counts[0]], `${id} ${r.form}: tensor count moved across steps ${r.counts.join(" -> ")}`);
      assert.equal(r.leaked, 0, `${id} ${r.form}: ${r.leaked} tensors left after dispose`);
      if (r !== raw) close(r.first, raw.first, `${id} ${r.form} vs raw`);
    }
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
